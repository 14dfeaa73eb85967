/* mesh: the adapter for a mesh peer (PROVIDER_MESH, see mesh/peers.h). A
 * peer speaks this gateway's own OpenAI-shaped API on its mesh listener,
 * so the request is the OpenAI one (the model token set to the name the
 * peer advertised, usage asked for on streams) plus the mesh headers:
 * the secret as a bearer token, x-aiproxy-hops and x-aiproxy-via. Its
 * answers are OpenAI-shaped already; the only translation is taking out
 * the peer's own x-aiproxy object (whole answers, and a stream's last
 * chunk) and keeping what it says (serving node, its provider, the route,
 * the cost it paid, in integer nano-dollars) for this node's x-aiproxy and
 * ledger. A whole answer is scanned once, by the request flow, which then
 * calls mesh_relay_take (mesh.h); `finish` does the same for callers that
 * have not scanned. Pure: no I/O. */
#include <stdio.h>
#include <string.h>

#include "api/scan.h"
#include "config/config.h"
#include "providers/internal.h"
#include "providers/mesh.h"
#include "providers/provider.h"

static int mesh_prepare(const struct provider_call *call, struct provider_request *out, char *err,
                        size_t err_cap)
{
    const char *url =
        arena_concat(call->arena, provider_call_endpoint(call), openai_path_for(call->kind), NULL);
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

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Whether only blanks lie in text[from, to). */
static bool only_blanks(const char *text, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (!is_blank(text[i])) return false;
    return true;
}

/* What the relay `rl` says, copied into the arena (`text`: what it was
 * scanned in, for its route's offsets). */
static void keep_relay(struct arena *a, const struct resp_relay *rl, const char *text,
                       struct provider_relay *r)
{
    r->present = true;
    r->cost = rl->cost_nanos;
    r->node = arena_strdup(a, rl->node);
    r->provider = arena_strdup(a, rl->provider);
    r->route = rl->route_len ? arena_strndup(a, text + rl->route_off, rl->route_len) : NULL;
}

/* `text` without text[from, to), NUL-terminated, in the arena. */
static void cut_span(struct arena *a, const char *text, size_t len, size_t from, size_t to,
                     char **out, size_t *out_len)
{
    size_t rest = len - to;
    char *o = arena_alloc(a, from + rest + 1);
    memcpy(o, text, from);
    memcpy(o + from, text + to, rest);
    o[from + rest] = '\0';
    *out = o;
    *out_len = from + rest;
}

bool mesh_relay_take(struct arena *a, const char *text, size_t len, const struct resp_facts *rf,
                     char **out, size_t *out_len, struct provider_relay *r)
{
    const struct resp_relay *rl = &rf->relay;
    if (!rl->present || !rl->cuttable || rl->end_off > rf->close_off || rf->close_off >= len)
        return false;
    /* Only blanks between the object and the root's closing brace. */
    if (!only_blanks(text, rl->end_off, rf->close_off)) return false;
    keep_relay(a, rl, text, r);
    cut_span(a, text, len, rl->start_off, rl->end_off, out, out_len);
    return true;
}

/* The last `,"x-aiproxy":{` in text[from, to), or SIZE_MAX. */
static size_t find_relay_key(const char *text, size_t from, size_t to)
{
    static const char key[] = ",\"x-aiproxy\":{";
    size_t last = SIZE_MAX;
    for (const char *p = text + from, *end = text + to;
         (p = memmem(p, (size_t)(end - p), key, sizeof key - 1)); p++)
        last = (size_t)(p - text);
    return last;
}

bool mesh_relay_tail(struct arena *a, const char *text, size_t len, struct resp_facts *rf,
                     char **out, size_t *out_len, struct provider_relay *r)
{
    /* The root's braces: the first and the last byte but blanks. */
    size_t open = 0, close = len;
    while (open < len && is_blank(text[open])) open++;
    while (close > open && is_blank(text[close - 1])) close--;
    if (open >= len || text[open] != '{' || close == 0 || text[close - 1] != '}') return false;
    close--; /* at the root's '}' */
    size_t from = close > MESH_RELAY_TAIL_MAX ? close - MESH_RELAY_TAIL_MAX : open + 1;
    if (from <= open) from = open + 1;
    size_t start = find_relay_key(text, from, close);
    if (start == SIZE_MAX) return false;
    /* Scan `{` + `"x-aiproxy":{...}` + blanks + `}` on its own. */
    size_t tail = close + 1 - (start + 1);
    char small[MESH_RELAY_TAIL_MAX + 2];
    small[0] = '{';
    memcpy(small + 1, text + start + 1, tail);
    struct resp_facts t;
    if (scan_response(small, tail + 1, &t) != 0) return false;
    const struct resp_relay *rl = &t.relay;
    if (!rl->present || !rl->usage.present || rl->end_off == 0 || rl->end_off > t.close_off) return false;
    if (!only_blanks(small, rl->end_off, t.close_off)) return false; /* the root's last member */
    keep_relay(a, rl, small, r);
    /* The answer without `,"x-aiproxy":{...}`: what a scan would have said
     * of it, from the relay's own counts. */
    size_t relay_end = start + rl->end_off; /* in text */
    cut_span(a, text, len, start, relay_end, out, out_len);
    memset(rf, 0, sizeof *rf);
    rf->usage = rl->usage;
    rf->close_off = start + (close - relay_end);
    size_t before = start;
    while (before > open + 1 && is_blank(text[before - 1])) before--;
    rf->root_empty = before == open + 1;
    return true;
}

/* The same for text not scanned yet (a stream's last chunk). */
static const char *cut_relay(struct arena *a, const char *text, size_t len, size_t *out_len,
                             struct provider_relay *r)
{
    struct resp_facts rf;
    char *out;
    *out_len = len;
    if (scan_response(text, len, &rf) != 0 || !mesh_relay_take(a, text, len, &rf, &out, out_len, r))
        return text;
    return out;
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
