/* cloudflare: the adapter for Cloudflare Workers AI's native run endpoint
 * (APIS.md section 5): POST {endpoint}/accounts/{account_id}/ai/run/{model}
 * with a bearer token. Chat, embeddings and text-to-image bodies are built
 * from the OpenAI ones; the {result, success, errors, messages} envelope is
 * unwrapped (success false is an error with Cloudflare's message), and the
 * stream of {"response": ...} events becomes OpenAI chunks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "providers/internal.h"
#include "providers/provider.h"

/* ---- OpenAI request -> run request ---- */

/* Fields of an OpenAI chat body that Workers AI text models take as they are. */
static const char *const chat_passthrough[] = {
    "temperature", "top_p", "seed", "frequency_penalty", "presence_penalty", "tools", NULL,
};

static int chat_body(struct arena *a, const json_t *in, json_t *out, char *err, size_t cap)
{
    json_t *msgs = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(in, "messages"), i, m) {
        const char *role = pj_str(m, "role");
        if (!role) continue;
        json_t *c = json_object_get(m, "content");
        const char *bad = NULL;
        char *text = json_is_null(c) || !c ? "" : pj_content_text(a, c, "", &bad);
        if (!text) {
            json_decref(msgs);
            perr(err, cap, "content part type '%s' is not supported by Cloudflare providers",
                 bad ? bad : "(none)");
            return -1;
        }
        json_t *o = json_object();
        pj_set_str(o, "role", strcmp(role, "developer") == 0 ? "system" : role);
        pj_set_str(o, "content", text);
        static const char *const keep[] = {"tool_calls", "tool_call_id", "name", NULL};
        for (const char *const *k = keep; *k; k++)
            if (json_object_get(m, *k)) json_object_set(o, *k, json_object_get(m, *k));
        json_array_append_new(msgs, o);
    }
    json_object_set_new(out, "messages", msgs);
    int64_t max_tokens;
    if (pj_int(in, "max_completion_tokens", &max_tokens) || pj_int(in, "max_tokens", &max_tokens))
        pj_set_int(out, "max_tokens", max_tokens);
    for (const char *const *k = chat_passthrough; *k; k++) {
        json_t *v = json_object_get(in, *k);
        if (v && !json_is_null(v)) json_object_set(out, *k, v);
    }
    if (pj_true(in, "stream")) json_object_set_new(out, "stream", json_true());
    return 0;
}

static int embeddings_body(const json_t *in, json_t *out, char *err, size_t cap)
{
    json_t *input = json_object_get(in, "input");
    if (json_is_string(input)) {
        json_object_set(out, "text", input);
        return 0;
    }
    size_t i;
    json_t *v;
    json_array_foreach(input, i, v) {
        if (!json_is_string(v)) {
            perr(err, cap, "Cloudflare embeddings take text inputs only, not token arrays");
            return -1;
        }
    }
    json_object_set(out, "text", input);
    return 0;
}

static int images_body(const json_t *in, json_t *out, char *err, size_t cap)
{
    const char *prompt = pj_str(in, "prompt");
    if (!prompt || !*prompt) {
        perr(err, cap, "an image request needs a prompt");
        return -1;
    }
    int64_t n = 1;
    if (pj_int(in, "n", &n) && n != 1) {
        perr(err, cap, "Cloudflare image models make one image per request (n must be 1)");
        return -1;
    }
    pj_set_str(out, "prompt", prompt);
    const char *size = pj_str(in, "size");
    if (size && strcmp(size, "auto") != 0) {
        unsigned w = 0, h = 0;
        char tail;
        if (sscanf(size, "%ux%u%c", &w, &h, &tail) != 2 || w == 0 || h == 0 || w > 8192 ||
            h > 8192) {
            perr(err, cap, "size must look like 1024x1024");
            return -1;
        }
        pj_set_int(out, "width", w);
        pj_set_int(out, "height", h);
    }
    return 0;
}

static int cloudflare_prepare(const struct provider_call *call, struct provider_request *out,
                              char *err, size_t cap)
{
    const struct config_provider *p = call->provider;
    const char *token = p->api_token ? p->api_token : p->api_key;
    if (!header_value_ok(token)) {
        perr(err, cap, "provider %s has no usable api_token", p->name);
        return -1;
    }
    if (!p->account_id || !*p->account_id || strpbrk(p->account_id, "/?#% \r\n")) {
        perr(err, cap, "provider %s has no usable account_id", p->name);
        return -1;
    }
    if (call->kind == API_COMPLETIONS) {
        perr(err, cap, "provider %s (type cloudflare) does not serve legacy completions", p->name);
        return -1;
    }
    json_t *in = pj_load(call->body, call->body_len);
    json_t *body = json_object();
    int rc = -1;
    if (!json_is_object(in)) {
        perr(err, cap, "the request body is not a JSON object");
        goto done;
    }
    int r = call->kind == API_CHAT         ? chat_body(call->arena, in, body, err, cap)
            : call->kind == API_EMBEDDINGS ? embeddings_body(in, body, err, cap)
                                           : images_body(in, body, err, cap);
    if (r != 0) goto done;
    out->stream = call->kind == API_CHAT && pj_true(in, "stream");
    out->body = pj_dump(call->arena, body, &out->body_len);
    out->url = arena_printf(call->arena, "%s/accounts/%s/ai/run/%s", provider_call_endpoint(call),
                            p->account_id, call->model->upstream_id);
    out->headers = arena_printf(call->arena,
                                "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                                "Accept: %s\r\n",
                                token, out->stream ? "text/event-stream" : "*/*");
    rc = 0;
done:
    json_decref(in);
    json_decref(body);
    return rc;
}

/* ---- answers ---- */

/* Cloudflare's reason for a failure: errors[0].message (with its code), or
 * an {"error": ...} object or string. */
static void cf_error(const json_t *root, char *err, size_t cap)
{
    json_t *e0 = json_array_get(json_object_get(root, "errors"), 0);
    json_t *e = json_object_get(root, "error");
    const char *msg = pj_str(e0, "message");
    int64_t code = 0;
    if (msg) {
        if (pj_int(e0, "code", &code)) perr(err, cap, "cloudflare error %lld: %s", (long long)code, msg);
        else perr(err, cap, "cloudflare error: %s", msg);
    } else if (json_is_string(e)) {
        perr(err, cap, "cloudflare error: %s", json_string_value(e));
    } else if (pj_str(e, "message")) {
        perr(err, cap, "cloudflare error: %s", pj_str(e, "message"));
    } else {
        perr(err, cap, "cloudflare reported a failure without a message");
    }
}

static json_t *usage_of(const json_t *u, struct provider_usage *pu)
{
    int64_t in = 0, outt = 0;
    if (!json_is_object(u) || !pj_int(u, "prompt_tokens", &in)) return NULL;
    (void)pj_int(u, "completion_tokens", &outt);
    json_t *r = json_object();
    pj_set_int(r, "prompt_tokens", in);
    pj_set_int(r, "completion_tokens", outt);
    pj_set_int(r, "total_tokens", in + outt);
    if (pu) {
        pu->present = true;
        pu->prompt_tokens = in;
        pu->completion_tokens = outt;
    }
    return r;
}

/* Workers AI tool calls ({name, arguments: object}) -> OpenAI's. */
static json_t *tool_calls_of(struct arena *a, const json_t *calls)
{
    json_t *list = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        json_t *fn = json_object_get(c, "function");
        const json_t *src = json_is_object(fn) ? fn : c;
        const char *name = pj_str(src, "name");
        if (!name) continue;
        json_t *args = json_object_get(src, "arguments");
        json_t *oc = json_object();
        const char *id = pj_str(c, "id");
        pj_set_str(oc, "id", id ? id : arena_printf(a, "call_%zu", i));
        pj_set_str(oc, "type", "function");
        json_t *ofn = json_object();
        pj_set_str(ofn, "name", name);
        if (json_is_string(args)) json_object_set(ofn, "arguments", args);
        else pj_set_str(ofn, "arguments", args ? pj_dump(a, args, NULL) : "{}");
        json_object_set_new(oc, "function", ofn);
        json_array_append_new(list, oc);
    }
    return list;
}

static json_t *chat_result(const struct provider_call *call, const json_t *result,
                           struct provider_usage *pu, char *err, size_t cap)
{
    struct arena *a = call->arena;
    json_t *resp = json_object_get(result, "response");
    json_t *calls = tool_calls_of(a, json_object_get(result, "tool_calls"));
    bool has_calls = json_array_size(calls) > 0;
    if (!resp && !has_calls) {
        json_decref(calls);
        perr(err, cap, "cloudflare answer has no result.response");
        return NULL;
    }
    json_t *msg = json_object();
    pj_set_str(msg, "role", "assistant");
    if (json_is_string(resp)) json_object_set(msg, "content", resp);
    else if (resp && !json_is_null(resp)) pj_set_str(msg, "content", pj_dump(a, resp, NULL));
    else json_object_set_new(msg, "content", has_calls ? json_null() : json_string(""));
    if (has_calls) json_object_set(msg, "tool_calls", calls);
    json_decref(calls);
    json_t *choice = json_object();
    pj_set_int(choice, "index", 0);
    json_object_set_new(choice, "message", msg);
    json_object_set_new(choice, "logprobs", json_null());
    pj_set_str(choice, "finish_reason", has_calls ? "tool_calls" : "stop");
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_t *r = json_object();
    pj_set_str(r, "id", arena_printf(a, "chatcmpl-%s", call->request_id ? call->request_id : ""));
    pj_set_str(r, "object", "chat.completion");
    pj_set_int(r, "created", pj_now());
    pj_set_str(r, "model", call->model->upstream_id);
    json_object_set_new(r, "choices", choices);
    json_t *u = usage_of(json_object_get(result, "usage"), pu);
    if (u) json_object_set_new(r, "usage", u);
    return r;
}

static json_t *embeddings_result(const struct provider_call *call, const json_t *result,
                                 struct provider_usage *pu, char *err, size_t cap)
{
    json_t *data = json_object_get(result, "data");
    if (!json_is_array(data)) {
        perr(err, cap, "cloudflare answer has no result.data");
        return NULL;
    }
    json_t *list = json_array();
    size_t i;
    json_t *vec;
    json_array_foreach(data, i, vec) {
        if (!json_is_array(vec)) {
            json_decref(list);
            perr(err, cap, "cloudflare result.data[%zu] is not a vector", i);
            return NULL;
        }
        json_t *e = json_object();
        pj_set_str(e, "object", "embedding");
        pj_set_int(e, "index", (int64_t)i);
        json_object_set(e, "embedding", vec);
        json_array_append_new(list, e);
    }
    json_t *r = json_object();
    pj_set_str(r, "object", "list");
    pj_set_str(r, "model", call->model->upstream_id);
    json_object_set_new(r, "data", list);
    json_t *u = usage_of(json_object_get(result, "usage"), pu);
    if (u) json_object_set_new(r, "usage", u);
    return r;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64(struct arena *a, const unsigned char *p, size_t n)
{
    char *out = arena_alloc(a, (n + 2) / 3 * 4 + 1);
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0);
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

static json_t *image_answer(const char *b64_json)
{
    json_t *item = json_object();
    pj_set_str(item, "b64_json", b64_json);
    json_t *data = json_array();
    json_array_append_new(data, item);
    json_t *r = json_object();
    pj_set_int(r, "created", pj_now());
    json_object_set_new(r, "data", data);
    return r;
}

static int cloudflare_finish(const struct provider_call *call, const struct provider_response *resp,
                             char **out, size_t *out_len, struct provider_usage *usage, char *err,
                             size_t cap)
{
    struct arena *a = call->arena;
    if (call->kind == API_IMAGES && resp->content_type &&
        strncasecmp(resp->content_type, "image/", 6) == 0) {
        if (resp->len == 0) {
            perr(err, cap, "cloudflare sent an empty image");
            return -1;
        }
        json_t *r = image_answer(base64(a, (const unsigned char *)resp->body, resp->len));
        *out = pj_dump(a, r, out_len);
        json_decref(r);
        return 0;
    }
    json_t *root = pj_load(resp->body, resp->len);
    json_t *r = NULL;
    if (!json_is_object(root)) {
        perr(err, cap, "cloudflare answer is not a JSON object");
        goto fail;
    }
    json_t *ok = json_object_get(root, "success");
    json_t *result = json_object_get(root, "result");
    if (json_is_false(ok) || (json_object_get(root, "error") && !result)) {
        cf_error(root, err, cap);
        goto fail;
    }
    if (!json_is_object(result)) {
        perr(err, cap, "cloudflare answer has no result object");
        goto fail;
    }
    switch (call->kind) {
    case API_CHAT: r = chat_result(call, result, usage, err, cap); break;
    case API_EMBEDDINGS: r = embeddings_result(call, result, usage, err, cap); break;
    case API_IMAGES:
        if (!pj_str(result, "image")) perr(err, cap, "cloudflare answer has no result.image");
        else r = image_answer(pj_str(result, "image"));
        break;
    case API_COMPLETIONS: perr(err, cap, "legacy completions are not served"); break;
    }
    if (!r) goto fail;
    *out = pj_dump(a, r, out_len);
    json_decref(r);
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    return -1;
}

/* ---- the stream ---- */

struct stream_state {
    char *id;
    int64_t created;
    bool started;
    int tools; /* tool calls so far: the next OpenAI tool index */
};

static void emit_chunk(const struct provider_call *call, struct stream_state *s, json_t *delta,
                       const char *finish, json_t *usage, provider_emit_cb emit, void *ctx)
{
    pj_emit_chunk(call->arena, s->id, s->created, call->model->upstream_id, delta, finish, usage, emit, ctx);
}

static void start_once(const struct provider_call *call, struct stream_state *s, const char *text,
                       provider_emit_cb emit, void *ctx)
{
    if (s->started) {
        if (text && *text) {
            json_t *d = json_object();
            pj_set_str(d, "content", text);
            emit_chunk(call, s, d, NULL, NULL, emit, ctx);
        }
        return;
    }
    s->started = true;
    json_t *d = json_object();
    pj_set_str(d, "role", "assistant");
    pj_set_str(d, "content", text ? text : "");
    emit_chunk(call, s, d, NULL, NULL, emit, ctx);
}

static int cloudflare_stream_event(const struct provider_call *call, struct provider_stream *st,
                                   const struct sse_event *ev, provider_emit_cb emit, void *ctx)
{
    struct stream_state *s = st->state;
    if (!s) {
        s = arena_alloc(call->arena, sizeof *s);
        memset(s, 0, sizeof *s);
        s->id = arena_printf(call->arena, "chatcmpl-%s", call->request_id ? call->request_id : "");
        s->created = pj_now();
        st->state = s;
    }
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0) {
        start_once(call, s, NULL, emit, ctx);
        emit_chunk(call, s, json_object(), s->tools ? "tool_calls" : "stop", NULL, emit, ctx);
        if (st->usage.present) {
            json_t *u = json_object();
            pj_set_int(u, "prompt_tokens", st->usage.prompt_tokens);
            pj_set_int(u, "completion_tokens", st->usage.completion_tokens);
            pj_set_int(u, "total_tokens", st->usage.prompt_tokens + st->usage.completion_tokens);
            emit_chunk(call, s, NULL, NULL, u, emit, ctx);
        }
        st->done = true;
        return 0;
    }
    json_t *data = pj_load(ev->data, ev->data_len);
    if (!json_is_object(data)) {
        json_decref(data);
        perr(st->error, sizeof st->error, "cloudflare stream event is not a JSON object");
        return -1;
    }
    if (json_is_false(json_object_get(data, "success")) || json_object_get(data, "error") ||
        json_object_get(data, "errors")) {
        cf_error(data, st->error, sizeof st->error);
        json_decref(data);
        return -1;
    }
    struct provider_usage pu = {0};
    json_t *u = usage_of(json_object_get(data, "usage"), &pu);
    json_decref(u);
    if (pu.present) st->usage = pu;
    const char *text = pj_str(data, "response");
    if (text && *text) start_once(call, s, text, emit, ctx);
    json_t *calls = json_object_get(data, "tool_calls");
    if (json_array_size(calls) > 0) {
        start_once(call, s, NULL, emit, ctx);
        json_t *list = tool_calls_of(call->arena, calls);
        size_t i;
        json_t *c;
        json_array_foreach(list, i, c) pj_set_int(c, "index", (int64_t)s->tools++);
        json_t *d = json_object();
        json_object_set_new(d, "tool_calls", list);
        emit_chunk(call, s, d, NULL, NULL, emit, ctx);
    }
    json_decref(data);
    return 0;
}

const struct provider_ops provider_cloudflare_ops = {
    .type = "cloudflare",
    .stream_mode = SSE_MODE_SSE,
    .prepare = cloudflare_prepare,
    .finish = cloudflare_finish,
    .stream_event = cloudflare_stream_event,
};
