/* openai: the adapter for OpenAI and every OpenAI-compatible server (the
 * `openai` and `local` types; ocf.c reuses the request builder). The
 * client's body is forwarded as it is, spliced rather than re-serialised:
 * the model token is swapped for the upstream id, and a stream asks for
 * usage when the client did not. A preset whose server rejects parts of the
 * OpenAI shape (a small table below) has its body rewritten instead, only
 * when the body holds what that server rejects; so has a body carrying
 * Anthropic's prompt-caching `cache_control` marks, which OpenAI refuses. */
#include <string.h>

#include "config/config.h"
#include "core/jsonw.h"
#include "providers/internal.h"
#include "providers/provider.h"

const char *openai_path_for(enum api_kind kind)
{
    switch (kind) {
    case API_CHAT: return "/chat/completions";
    case API_COMPLETIONS: return "/completions";
    case API_EMBEDDINGS: return "/embeddings";
    case API_IMAGES: return "/images/generations";
    }
    return "/chat/completions";
}

/* ---- preset quirks ---- */

/* What a preset's server refuses in an OpenAI body. Mistral validates with
 * extra fields forbidden (HTTP 422): it has no stream_options (and sends
 * usage in the last chunk anyway), no max_completion_tokens, and spells
 * tool_choice "required" as "any". */
struct quirk {
    const char *preset;
    bool no_stream_options;     /* never send stream_options */
    bool max_tokens_only;       /* max_completion_tokens -> max_tokens */
    bool tool_choice_any;       /* tool_choice "required" -> "any" */
};

static const struct quirk quirks[] = {
    {"mistral", true, true, true},
    {NULL, false, false, false},
};

static const struct quirk *quirk_for(const struct config_provider *p)
{
    if (!p->preset) return NULL;
    for (const struct quirk *q = quirks; q->preset; q++)
        if (strcmp(q->preset, p->preset) == 0) return q;
    return NULL;
}

/* Whether the body holds anything the quirk must rewrite. */
static bool quirk_applies(const struct quirk *q, const struct provider_call *call)
{
    const struct req_facts *f = call->facts;
    if (q->no_stream_options && f->has_stream_options) return true;
    if (q->max_tokens_only && memmem(call->body, call->body_len, "\"max_completion_tokens\"", 23))
        return true;
    if (q->tool_choice_any && memmem(call->body, call->body_len, "\"required\"", 10)) return true;
    return false;
}

/* ---- Anthropic's cache_control ---- */

/* Whether the body has cache_control marks (SPEC section 9) this upstream
 * must not see: OpenAI answers unknown fields in content parts with a 400.
 * A mesh peer gets them (its provider may be Anthropic), and so does
 * OpenRouter, which passes them on to Anthropic models. The scan saw any
 * in the messages; tools are searched only when there are some. */
static bool strips_cache_control(const struct provider_call *call)
{
    const struct req_facts *f = call->facts;
    if (!f->has_cache_control &&
        !(f->has_tools && memmem(call->body, call->body_len, "\"cache_control\"", 15)))
        return false;
    const struct config_provider *p = call->provider;
    if (p->type == PROVIDER_MESH) return false;
    return !(p->preset && strcmp(p->preset, "openrouter") == 0);
}

/* Takes cache_control out of the messages, their content parts and the tools. */
static void strip_cache_control(json_t *root)
{
    size_t i, j;
    json_t *m, *part, *tool;
    json_array_foreach(json_object_get(root, "messages"), i, m) {
        json_object_del(m, "cache_control");
        json_array_foreach(json_object_get(m, "content"), j, part)
            json_object_del(part, "cache_control");
    }
    json_array_foreach(json_object_get(root, "tools"), i, tool) {
        json_object_del(tool, "cache_control");
        json_object_del(json_object_get(tool, "function"), "cache_control");
    }
}

/* The body re-serialised: the quirk's rewrites (`q` may be NULL), and
 * without cache_control when `strip`. */
static int rewrite_body(const struct quirk *q, bool strip, const struct provider_call *call,
                        struct provider_request *out, char *err, size_t err_cap)
{
    json_t *root = pj_load(call->body, call->body_len);
    if (!json_is_object(root)) {
        json_decref(root);
        perr(err, err_cap, "the request body could not be rewritten for provider %s",
             call->provider->name);
        return -1;
    }
    pj_set_str(root, "model", call->model->upstream_id);
    if (strip) strip_cache_control(root);
    const struct req_facts *f = call->facts;
    bool textual = call->kind == API_CHAT || call->kind == API_COMPLETIONS;
    if (!q) {
        /* as splice_body does: a stream asks for usage */
        if (f->stream && !f->has_stream_options && textual) {
            json_t *so = json_object();
            json_object_set_new(so, "include_usage", json_true());
            json_object_set_new(root, "stream_options", so);
        }
        goto dump;
    }
    if (q->no_stream_options) json_object_del(root, "stream_options");
    json_t *mct = json_object_get(root, "max_completion_tokens");
    if (q->max_tokens_only && mct) {
        json_object_set(root, "max_tokens", mct);
        json_object_del(root, "max_completion_tokens");
    }
    json_t *tc = json_object_get(root, "tool_choice");
    if (q->tool_choice_any && json_is_string(tc) && strcmp(json_string_value(tc), "required") == 0)
        pj_set_str(root, "tool_choice", "any");
dump:
    out->body = pj_dump(call->arena, root, &out->body_len);
    json_decref(root);
    return 0;
}

/* ---- the request ---- */

static const char include_usage[] = "\"stream_options\":{\"include_usage\":true},";

static void splice_body(const struct provider_call *call, bool want_usage,
                        struct provider_request *out)
{
    const struct req_facts *f = call->facts;
    char quoted[600];
    struct jsonw w;
    jsonw_init(&w, quoted, sizeof quoted);
    jsonw_str(&w, call->model->upstream_id);
    size_t qlen = jsonw_len(&w);

    size_t extra = want_usage ? sizeof include_usage - 1 : 0;
    /* No model in the body (routing.auto_tier chose it): insert one. */
    bool insert_model = f->model_len == 0;
    size_t len = call->body_len - f->model_len + qlen + extra + (insert_model ? 9 : 0);
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
    if (insert_model) {
        memcpy(p, "\"model\":", 8);
        p += 8;
        memcpy(p, quoted, qlen);
        p += qlen;
        *p++ = ',';
        memcpy(p, call->body + root_end, call->body_len - root_end);
        p += call->body_len - root_end;
        *p = '\0';
        out->body = body;
        out->body_len = (size_t)(p - body);
        return;
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
}

int openai_build_request(const struct provider_call *call, const char *url,
                         struct provider_request *out, char *err, size_t err_cap)
{
    const struct req_facts *f = call->facts;
    const struct quirk *q = quirk_for(call->provider);
    bool textual = call->kind == API_CHAT || call->kind == API_COMPLETIONS;
    out->stream = f->stream && textual;

    bool strip = strips_cache_control(call);
    if ((q && quirk_applies(q, call)) || strip) {
        if (rewrite_body(q, strip, call, out, err, err_cap) != 0) return -1;
    } else {
        bool want_usage = f->stream && !f->has_stream_options && textual &&
                          !(q && q->no_stream_options);
        splice_body(call, want_usage, out);
    }

    out->url = arena_strdup(call->arena, url);
    const char *accept = out->stream ? "text/event-stream" : "application/json";
    const char *key = call->provider->api_key;
    if (key && *key) {
        if (!header_value_ok(key)) {
            perr(err, err_cap, "provider %s has an invalid credential", call->provider->name);
            return -1;
        }
        out->headers = arena_concat(call->arena, "Content-Type: application/json\r\nAccept: ",
                                    accept, "\r\nAuthorization: Bearer ", key, "\r\n", NULL);
    } else {
        out->headers = arena_concat(call->arena, "Content-Type: application/json\r\nAccept: ",
                                    accept, "\r\n", NULL);
    }
    return 0;
}

static int openai_prepare(const struct provider_call *call, struct provider_request *out,
                          char *err, size_t err_cap)
{
    const char *url =
        arena_concat(call->arena, provider_call_endpoint(call), openai_path_for(call->kind), NULL);
    return openai_build_request(call, url, out, err, err_cap);
}

const struct provider_ops provider_openai_ops = {
    .type = "openai",
    .stream_mode = SSE_MODE_SSE,
    .prepare = openai_prepare,
};
