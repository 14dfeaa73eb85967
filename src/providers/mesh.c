/* mesh: the adapter for a mesh peer (PROVIDER_MESH, see mesh/peers.h). A
 * peer speaks this gateway's own OpenAI-shaped API on its mesh listener,
 * so the request is the OpenAI one (the model token set to the name the
 * peer advertised, usage asked for on streams) plus the mesh headers:
 * the secret as a bearer token, x-aiproxy-hops and x-aiproxy-via. Its
 * answers are OpenAI-shaped already; the only translation is taking out
 * the peer's own x-aiproxy object (whole answers, and a stream's last
 * chunk) and keeping what it says (serving node, its provider, the route,
 * the cost it paid, in integer nano-dollars) for this node's x-aiproxy and
 * ledger. Pure: no I/O. */
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "providers/internal.h"
#include "providers/provider.h"

static const char *path_for(enum api_kind kind)
{
    switch (kind) {
    case API_CHAT:
        return "/chat/completions";
    case API_COMPLETIONS:
        return "/completions";
    case API_EMBEDDINGS:
        return "/embeddings";
    case API_IMAGES:
        return "/images/generations";
    }
    return "/chat/completions";
}

static int mesh_prepare(const struct provider_call *call, struct provider_request *out, char *err,
                        size_t err_cap)
{
    const char *url =
        arena_concat(call->arena, provider_call_endpoint(call), path_for(call->kind), NULL);
    if (openai_build_request(call, url, out, err, err_cap) != 0) return -1;
    char hops[16];
    snprintf(hops, sizeof hops, "%d", call->mesh_hops);
    const char *via = call->mesh_via;
    if (!via || !header_value_ok(via)) {
        perr(err, err_cap, "invalid mesh route");
        return -1;
    }
    out->headers = arena_concat(call->arena, out->headers, "x-aiproxy-hops: ", hops,
                                "\r\nx-aiproxy-via: ", via, "\r\n", NULL);
    return 0;
}

/* Reads the peer's x-aiproxy object into `r`. */
static void read_relay(struct arena *a, const json_t *meta, struct provider_relay *r)
{
    if (!json_is_object(meta)) return;
    const json_t *cost = json_object_get(meta, "cost_nanos");
    const char *node = pj_str(meta, "node"), *prov = pj_str(meta, "provider");
    if (!json_is_integer(cost) || json_integer_value(cost) < 0 || !node || !prov) return;
    r->present = true;
    r->cost = (nanos_t)json_integer_value(cost);
    r->node = arena_strdup(a, node);
    r->provider = arena_strdup(a, prov);
    const json_t *route = json_object_get(meta, "route");
    r->route = json_is_array(route) ? pj_dump(a, route, NULL) : NULL;
}

/* Finds the last `,"x-aiproxy":{...}` when a closing brace follows it
 * (every aiproxy node puts it last in the root object) and cuts it out of
 * `text`. Returns
 * the text without it (arena) and fills `r`; the text itself when absent. */
static const char *cut_relay(struct arena *a, const char *text, size_t len, size_t *out_len,
                             struct provider_relay *r)
{
    static const char key[] = "\"x-aiproxy\":";
    *out_len = len;
    /* jansson skips a NUL after a number without counting it in the
     * position: text holding one is left whole (no aiproxy node sends it). */
    if (memchr(text, '\0', len)) return text;
    const char *at = NULL;
    for (const char *p = text; (p = memmem(p, len - (size_t)(p - text), key, sizeof key - 1));
         p += sizeof key - 1)
        at = p;
    if (!at) return text;
    const char *obj = at + sizeof key - 1;
    json_error_t je;
    json_t *meta = json_loadb(obj, len - (size_t)(obj - text), JSON_DISABLE_EOF_CHECK, &je);
    if (!meta) return text;
    const char *end = obj + je.position;
    const char *q = end;
    while (q < text + len && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t'))
        q++;
    /* What precedes: a comma (or the root's brace), spaces aside. */
    const char *start = at;
    while (start > text && (start[-1] == ' ' || start[-1] == '\n' || start[-1] == '\t'))
        start--;
    bool comma = start > text && start[-1] == ',';
    if (q >= text + len || *q != '}' || (!comma && !(start > text && start[-1] == '{'))) {
        json_decref(meta);
        return text;
    }
    if (comma) start--;
    read_relay(a, meta, r);
    json_decref(meta);
    size_t head = (size_t)(start - text), tail = len - (size_t)(end - text);
    char *o = arena_alloc(a, head + tail + 1);
    memcpy(o, text, head);
    memcpy(o + head, end, tail);
    o[head + tail] = '\0';
    *out_len = head + tail;
    return o;
}

static int mesh_finish(const struct provider_call *call, const struct provider_response *resp,
                       char **out, size_t *out_len, struct provider_usage *usage, char *err,
                       size_t err_cap)
{
    (void)err;
    (void)err_cap;
    *out = (char *)cut_relay(call->arena, resp->body, resp->len, out_len, &usage->relay);
    return 0;
}

static int mesh_stream_event(const struct provider_call *call, struct provider_stream *st,
                             const struct sse_event *ev, provider_emit_cb emit, void *emit_ctx)
{
    if (ev->event_len == 5 && memcmp(ev->event, "error", 5) == 0) {
        snprintf(st->error, sizeof st->error, "the peer sent an error event");
        return -1;
    }
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0) {
        st->done = true;
        return 0;
    }
    if (!memmem(ev->data, ev->data_len, "\"x-aiproxy\":", 12)) {
        emit(emit_ctx, ev->data, ev->data_len);
        return 0;
    }
    size_t n;
    const char *data = cut_relay(call->arena, ev->data, ev->data_len, &n, &st->relay);
    emit(emit_ctx, data, n);
    return 0;
}

/* A peer answers 4xx for the client's faults (passed through) and for its
 * own refusals: 401 (our secret), 404 (the model left it), 429 (its budget
 * or limits) and 508 (a loop) mean "try elsewhere". */
static bool mesh_retryable(int status)
{
    return !(status == 400 || status == 413 || status == 422);
}

const struct provider_ops provider_mesh_ops = {
    .type = "mesh",
    .stream_mode = SSE_MODE_SSE,
    .prepare = mesh_prepare,
    .finish = mesh_finish,
    .stream_event = mesh_stream_event,
    .retryable_status = mesh_retryable,
};
