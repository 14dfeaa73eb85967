/* openai: the adapter for OpenAI and every OpenAI-compatible server (the
 * `openai` and `local` types). The client's body is forwarded as it is,
 * spliced rather than re-serialised: the model token is swapped for the
 * upstream id, and a stream asks for usage when the client did not. */
#include <string.h>

#include "config/config.h"
#include "core/jsonw.h"
#include "providers/provider.h"

static const char *path_for(enum api_kind kind)
{
    switch (kind) {
    case API_CHAT: return "/chat/completions";
    case API_COMPLETIONS: return "/completions";
    case API_EMBEDDINGS: return "/embeddings";
    case API_IMAGES: return "/images/generations";
    }
    return "/chat/completions";
}

static const char include_usage[] = "\"stream_options\":{\"include_usage\":true},";

static int openai_prepare(const struct provider_call *call, struct provider_request *out,
                          char *err, size_t err_cap)
{
    const struct req_facts *f = call->facts;
    const char *upstream_id = call->model->upstream_id;
    char quoted[600];
    struct jsonw w;
    jsonw_init(&w, quoted, sizeof quoted);
    jsonw_str(&w, upstream_id);
    size_t qlen = jsonw_len(&w);

    bool want_usage = f->stream && !f->has_stream_options &&
                      (call->kind == API_CHAT || call->kind == API_COMPLETIONS);
    size_t extra = want_usage ? sizeof include_usage - 1 : 0;
    size_t len = call->body_len - f->model_len + qlen + extra;
    char *body = arena_alloc(call->arena, len + 1);
    char *p = body;
    /* Pieces in body order: [0, root+1) [usage] [root+1, model) model' [model end, len) */
    size_t root_end = f->root_open_off + 1;
    memcpy(p, call->body, root_end);
    p += root_end;
    if (want_usage) {
        memcpy(p, include_usage, extra);
        p += extra;
    }
    memcpy(p, call->body + root_end, f->model_off - root_end);
    p += f->model_off - root_end;
    memcpy(p, quoted, qlen);
    p += qlen;
    size_t tail = f->model_off + f->model_len;
    memcpy(p, call->body + tail, call->body_len - tail);
    p += call->body_len - tail;
    *p = '\0';
    out->body = body;
    out->body_len = (size_t)(p - body);
    out->stream = f->stream && (call->kind == API_CHAT || call->kind == API_COMPLETIONS);

    out->url = arena_printf(call->arena, "%s%s", call->provider->endpoint, path_for(call->kind));
    const char *key = call->provider->api_key;
    if (key && *key) {
        if (strpbrk(key, "\r\n")) {
            (void)snprintf(err, err_cap, "provider %s has an invalid credential", call->provider->name);
            return -1;
        }
        out->headers = arena_printf(call->arena,
                                    "Content-Type: application/json\r\nAccept: %s\r\n"
                                    "Authorization: Bearer %s\r\n",
                                    out->stream ? "text/event-stream" : "application/json", key);
    } else {
        out->headers = arena_printf(call->arena, "Content-Type: application/json\r\nAccept: %s\r\n",
                                    out->stream ? "text/event-stream" : "application/json");
    }
    return 0;
}

const struct provider_ops provider_openai_ops = {
    .type = "openai",
    .stream_mode = SSE_MODE_SSE,
    .prepare = openai_prepare,
};
