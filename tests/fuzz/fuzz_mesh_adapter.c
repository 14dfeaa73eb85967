// fuzz-sources: src/providers/mesh.c src/providers/registry.c src/providers/openai.c src/providers/pjson.c
// fuzz-sources: src/providers/anthropic.c src/providers/anthropic_native.c src/providers/cloudflare.c src/providers/ocf.c src/providers/discovery.c
/* fuzz_mesh_adapter: libFuzzer driver for the mesh peer adapter
 * (src/providers/mesh.c), reached as the daemon reaches it: through
 * provider_ops_for() on a PROVIDER_MESH provider. The first byte picks
 * what the rest is (after a second byte, a seed):
 *
 *   0  a peer's 200 answer, for finish
 *   1  a peer's event stream, fed through the SSE reader in chunks of
 *      1-64 bytes (seeded) into stream_event; `event: error` events too
 *   2  a client's chat request, for prepare (after scan_request accepts
 *      it), with a hop count and x-aiproxy-via picked by the seed
 *
 * The peer's x-aiproxy object is cut out as cut_relay promises: the
 * answer comes back whole (the same pointer), or with exactly one span
 * taken out: `,"x-aiproxy":{...}` (blanks around the comma allowed), the
 * root object's last member, holding a whole relay (string node and
 * provider, integer cost_nanos >= 0; route: the array when there is one),
 * which is what the relay then says; no x-aiproxy key is left after the
 * cut, none appears that was not there, and a valid JSON answer stays
 * valid JSON of the same type. (When a cut must happen is tested in
 * tests/unit/mesh_adapter_test.c and the mesh integration tests.) finish
 * always returns 0.
 * mesh_relay_tail (the relay found from the answer's tail, with its
 * counts) on the same answer: when it takes a relay, its output is the
 * answer with one `,"x-aiproxy":{` span cut to the root's closing brace,
 * and what it says of the rest (close_off, root_empty) is what a scan of
 * its output says when that output is JSON; when the whole answer is
 * JSON too, it agrees with finish byte for byte, relay for relay, and its
 * counts are the relay's usage as the full scan reads it. When it takes
 * nothing, it changes nothing.
 * A stream's error event returns -1 with a reason, [DONE] ends it, and
 * every other event is emitted once.
 * prepare succeeds exactly when x-aiproxy-via is a valid header value;
 * its URL is the endpoint + /chat/completions, its headers are whole
 * CRLF lines carrying the hop count, the route and the peer secret, and
 * its body (when the client's was strict JSON) is a JSON object naming
 * the model the peer advertised and asking for usage on a stream. The
 * first call also checks prepare on a fixed request. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/scan.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/sse.h"
#include "providers/mesh.h"
#include "providers/provider.h"

/* An invariant: says which one failed, then aborts (libFuzzer keeps the input). */
#define check(ok) ((ok) ? (void)0 : failed(__LINE__, #ok))
static void failed(int line, const char *what)
{
    fprintf(stderr, "fuzz_mesh_adapter.c:%d: invariant failed: %s\n", line, what);
    abort();
}

/* The member's name; JSON allows blanks before its colon (and the gateway's
 * parser, yajl, takes \v and \f as blanks too). */
static const char key[] = "\"x-aiproxy\"";
#define KEY_LEN (sizeof key - 1)

/* After the name at p (p + KEY_LEN <= end): the byte past its colon, or
 * NULL when blanks then a colon do not follow. */
static const char *past_colon(const char *p, const char *end)
{
    const char *q = p + KEY_LEN;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r' || *q == '\v' || *q == '\f'))
        q++;
    return q < end && *q == ':' ? q + 1 : NULL;
}

static size_t count_key(const char *s, size_t n, const char **last)
{
    size_t c = 0;
    *last = NULL;
    for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), key, KEY_LEN)); p += KEY_LEN) {
        if (!past_colon(p, s + n)) continue;
        c++;
        *last = p;
    }
    return c;
}

static bool blank(char c, bool cr)
{
    return c == ' ' || c == '\n' || c == '\t' || (cr && c == '\r');
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* str_eq, with a's bytes past ASCII read as 'x' when `masked` (b was read
 * from text masked that way: see valid_cut). */
static bool masked_eq(const char *a, const char *b, bool masked)
{
    if (!masked) return str_eq(a, b);
    if (!a || !b || strlen(a) != strlen(b)) return false;
    for (; *a; a++, b++)
        if (((unsigned char)*a >= 0x80 ? 'x' : *a) != *b) return false;
    return true;
}

/* A JSON integer's value (-1 when it is not one, or negative). Parsed with
 * JSON_DECODE_INT_AS_REAL (see valid_cut), an integral real below 2^53. */
static long long integer_of(const json_t *v)
{
    if (json_is_integer(v)) return json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
    if (!json_is_real(v)) return -1;
    double d = json_real_value(v);
    return d >= 0 && d < 9007199254740992.0 && d == (double)(long long)d ? (long long)d : -1;
}

/* Whether `v` is the object cut_relay takes a relay from. */
static bool relay_object(const json_t *v)
{
    return json_is_object(v) && integer_of(json_object_get(v, "cost_nanos")) >= 0 &&
           json_is_string(json_object_get(v, "node")) &&
           json_is_string(json_object_get(v, "provider"));
}

static bool same_relay(const struct provider_relay *a, const struct provider_relay *b)
{
    if (a->present != b->present) return false;
    if (!a->present) return true;
    return a->cost == b->cost && str_eq(a->node, b->node) && str_eq(a->provider, b->provider) &&
           ((!a->route && !b->route) || str_eq(a->route, b->route));
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The code unit of the \u escape at s[i] (s[i] == '\\'), or -1. */
static long unit_at(const char *s, size_t n, size_t i)
{
    if (i + 6 > n || s[i] != '\\' || s[i + 1] != 'u') return -1;
    long v = 0;
    for (size_t k = 2; k < 6; k++) {
        int h = hex_value(s[i + k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Rewrites each \u escape of a lone surrogate in s[0, n) as \ufffd (the
 * same length). Returns whether it rewrote any. */
static bool fffd_lone_surrogates(char *s, size_t n)
{
    bool any = false;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        long u = unit_at(s, n, i);
        if (u < 0) {
            i++; /* another escape: skip its character (it may be a backslash) */
            continue;
        }
        if (u >= 0xD800 && u <= 0xDBFF) {
            long lo = unit_at(s, n, i + 6);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                i += 11; /* a proper pair */
                continue;
            }
        }
        if (u >= 0xD800 && u <= 0xDFFF) {
            memcpy(s + i, "\\ufffd", 6);
            any = true;
        }
        i += 5;
    }
    return any;
}

/* A relay's route as jansson reads it: its text is passed on raw, and
 * lone-surrogate escapes in it (which JSON's grammar allows) written as
 * \ufffd for jansson, which refuses them. */
static json_t *load_route(const char *route)
{
    size_t n = strlen(route);
    char *c = malloc(n + 1);
    check(c != NULL);
    memcpy(c, route, n + 1);
    fffd_lone_surrogates(c, n);
    json_t *r = json_loads(c, 0, NULL);
    free(c);
    return r;
}

/* Whether taking in[h, h + d) out is a cut cut_relay may make, with the
 * relay going from `before` to `after`. */
static bool valid_cut(const char *in, size_t len, size_t h, size_t d,
                      const struct provider_relay *before, const struct provider_relay *after)
{
    const char *s = in + h, *e = in + h + d, *k = s;
    bool comma = *k == ',';
    if (!comma) return false; /* only a member after another is ever cut */
    k++;
    while (k < e && blank(*k, true)) k++; /* JSON blanks, \r included */
    if ((size_t)(e - k) <= KEY_LEN || memcmp(k, key, KEY_LEN) != 0) return false;
    const char *colon_end = past_colon(k, e);
    if (!colon_end) return false;
    if (!comma) {
        /* the only member: the object's brace before it */
        if (k != s && !blank(*s, false)) return false;
        if (h == 0 || in[h - 1] != '{') return false;
    }
    /* what follows: blanks, then a closing brace */
    const char *q = e;
    while (q < in + len && blank(*q, true)) q++;
    if (q == in + len || *q != '}') return false;
    /* the value: one object or array ending the span */
    const char *v = colon_end;
    /* The gateway reads it with yajl, which takes \v and \f as blanks
     * between tokens; jansson (this oracle) does not: blank them (inside a
     * string a raw control byte is refused by both anyway). */
    size_t vn = (size_t)(e - v);
    char *vc = malloc(vn ? vn : 1);
    check(vc != NULL);
    for (size_t i = 0; i < vn; i++) vc[i] = v[i] == '\v' || v[i] == '\f' ? ' ' : v[i];
    json_error_t je;
    json_t *val = json_loadb(vc, vn, 0, &je);
    /* JSON has integers of any size (the gateway's parser takes them);
     * jansson refuses those past 64 bits unless read as reals */
    if (!val) val = json_loadb(vc, vn, JSON_DECODE_INT_AS_REAL, &je);
    /* The gateway's parser (core/json_sax) reads a \u escape of a lone
     * surrogate as U+FFFD; jansson refuses it: written as \ufffd here. */
    if (!val && fffd_lone_surrogates(vc, vn)) {
        val = json_loadb(vc, vn, 0, &je);
        if (!val) val = json_loadb(vc, vn, JSON_DECODE_INT_AS_REAL, &je);
    }
    /* Bytes that are not UTF-8 inside strings: read as ASCII ('x'), and
     * strings compared the same way (masked_eq). (The gateway's parser now
     * refuses them, so no such cut should happen at all.) */
    bool masked = false;
    if (!val) {
        for (size_t i = 0; i < vn; i++)
            if ((unsigned char)vc[i] >= 0x80) vc[i] = 'x', masked = true;
        if (masked) val = json_loadb(vc, vn, JSON_DECODE_INT_AS_REAL, &je);
    }
    free(vc);
    if (!val) return false;
    bool ok = e[-1] == '}' || e[-1] == ']';
    if (relay_object(val)) {
        const json_t *route = json_object_get(val, "route");
        ok = ok && after->present &&
             after->cost == (nanos_t)integer_of(json_object_get(val, "cost_nanos")) &&
             masked_eq(after->node, json_string_value(json_object_get(val, "node")), masked) &&
             masked_eq(after->provider, json_string_value(json_object_get(val, "provider")), masked);
        if (ok && json_is_array(route)) {
            /* the same array (reals are rewritten with 15 digits) */
            json_t *r = after->route ? load_route(after->route) : NULL;
            ok = json_is_array(r) && json_array_size(r) == json_array_size(route);
            json_decref(r);
        } else if (ok) {
            ok = after->route == NULL;
        }
    } else {
        ok = false; /* only a whole relay (node, provider, cost_nanos) is cut */
    }
    json_decref(val);
    return ok;
}

static void check_cut(const char *in, size_t len, const char *out, size_t out_len,
                      const struct provider_relay *before, const struct provider_relay *after)
{
    check(out != NULL);
    check(out_len <= len);
    if (after->present) {
        check(after->node && after->provider && after->cost >= 0);
        if (after->route) {
            json_t *r = load_route(after->route);
            check(json_is_array(r));
            json_decref(r);
        }
    }
    if (out == in) {
        check(out_len == len);
        check(same_relay(before, after));
        /* (no cut: nothing more to check; what must be cut is tested by
         * tests/unit and the mesh integration tests) */
        return;
    }
    check(!memchr(in, '\0', len));
    check(out_len < len && out[out_len] == '\0');
    const char *last_in, *last_out;
    size_t n_in = count_key(in, len, &last_in), n_out = count_key(out, out_len, &last_out);
    check(n_in >= 1 && n_out < n_in);
    /* out = in[0, h) + in[h + d, len) for some h */
    size_t d = len - out_len, pre = 0, suf = 0;
    while (pre < out_len && out[pre] == in[pre]) pre++;
    while (suf < out_len && out[out_len - 1 - suf] == in[len - 1 - suf]) suf++;
    check(pre + suf >= out_len);
    /* the last key of the answer was in the span taken out */
    check(!last_out || (size_t)(last_out - out) + KEY_LEN <= pre);
    bool found = false;
    for (size_t h = out_len - suf; h <= pre && !found; h++)
        found = valid_cut(in, len, h, d, before, after);
    check(found);
    /* valid JSON stays valid JSON of the same type */
    json_t *a = json_loadb(in, len, 0, NULL);
    if (a) {
        json_t *b = json_loadb(out, out_len, 0, NULL);
        check(b && json_typeof(a) == json_typeof(b));
        json_decref(b);
        json_decref(a);
    }
}

/* ---- the call ---- */

static struct config_model model = {.name = "gpt-test", .upstream_id = "gpt-test"};
static struct config_provider peer = {
    .name = "mesh:node-b",
    .type = PROVIDER_MESH,
    .enabled = true,
    .available = true,
    .endpoint = "http://127.0.0.1:18782/v1",
    .api_key = "mesh-secret-for-tests",
    .max_tokens_default = 4096,
    .models = &model,
    .n_models = 1,
    .mesh_node = "node-b",
};

/* ---- prepare ---- */

static void check_headers(const char *h, int hops, const char *via)
{
    bool seen_hops = false, seen_via = false, seen_auth = false;
    char want[128];
    while (*h) {
        const char *crlf = strstr(h, "\r\n");
        check(crlf && crlf > h);
        size_t n = (size_t)(crlf - h);
        check(!memchr(h, '\r', n) && !memchr(h, '\n', n) && memchr(h, ':', n));
        snprintf(want, sizeof want, "x-aiproxy-hops: %d", hops);
        if (n == strlen(want) && memcmp(h, want, n) == 0) seen_hops = true;
        if (n == 15 + strlen(via) && memcmp(h, "x-aiproxy-via: ", 15) == 0 &&
            memcmp(h + 15, via, n - 15) == 0)
            seen_via = true;
        snprintf(want, sizeof want, "Authorization: Bearer %s", peer.api_key);
        if (n == strlen(want) && memcmp(h, want, n) == 0) seen_auth = true;
        h = crlf + 2;
    }
    check(seen_hops && seen_via && seen_auth);
}

static const char *const vias[] = {"node-a", "node-c,node-a", "node-a\r\nx-injected: 1", "",
                                   NULL,     "node-a\n"};

/* Prepares `body` (scanned already); returns prepare's result. */
static int try_prepare(const char *body, size_t len, const struct req_facts *f, const char *endpoint,
                       int hops, const char *via)
{
    struct arena a;
    arena_init(&a);
    struct provider_call call = {.kind = API_CHAT, .body = body, .body_len = len, .facts = f,
                                 .provider = &peer, .model = &model, .endpoint = endpoint,
                                 .arena = &a, .request_id = "req_1", .mesh_hops = hops,
                                 .mesh_via = via};
    const struct provider_ops *ops = provider_ops_for(&peer);
    struct provider_request pr;
    memset(&pr, 0, sizeof pr);
    char err[256] = "";
    int rc = ops->prepare(&call, &pr, err, sizeof err);
    bool via_ok = via && *via && !strpbrk(via, "\r\n");
    check((rc == 0) == via_ok);
    if (rc != 0) {
        check(err[0] != '\0');
    } else {
        char url[128];
        snprintf(url, sizeof url, "%s/chat/completions", endpoint ? endpoint : peer.endpoint);
        check(str_eq(pr.url, url));
        check_headers(pr.headers, hops, via);
        check(pr.stream == f->stream);
        /* The body is the client's, spliced: strict JSON when the client's
         * was (scan_request, with yajl, also takes \v and \f for blanks). */
        json_t *c = json_loadb(body, len, 0, NULL);
        if (c) {
            json_t *b = json_loadb(pr.body, pr.body_len, 0, NULL);
            check(json_is_object(b));
            check(str_eq(json_string_value(json_object_get(b, "model")), model.upstream_id));
            if (f->stream && !f->has_stream_options)
                check(json_is_true(
                    json_object_get(json_object_get(b, "stream_options"), "include_usage")));
            json_decref(b);
            json_decref(c);
        }
    }
    arena_free(&a);
    return rc;
}

static void prepare_once(void)
{
    static bool done;
    if (done) return;
    done = true;
    static const char body[] =
        "{\"model\":\"gpt-test\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}";
    struct req_facts f;
    struct scan_error se;
    check(scan_request(SCAN_CHAT, body, sizeof body - 1, &f, &se) == 0);
    check(try_prepare(body, sizeof body - 1, &f, NULL, 1, "node-a") == 0);
}

/* ---- the stream ---- */

struct ctx {
    struct provider_call *call;
    const struct provider_ops *ops;
    struct provider_stream st;
    int rc;
    size_t emitted;
    const char *out;
    size_t out_len;
};

static void on_chunk(void *p, const char *json, size_t len)
{
    struct ctx *c = p;
    c->emitted++;
    c->out = json;
    c->out_len = len;
}

static int on_event(void *p, const struct sse_event *ev)
{
    struct ctx *c = p;
    if (c->rc != 0 || c->st.done) return 0;
    struct provider_relay before = c->st.relay;
    c->emitted = 0;
    c->rc = c->ops->stream_event(c->call, &c->st, ev, on_chunk, c);
    if (ev->event_len == 5 && memcmp(ev->event, "error", 5) == 0) {
        check(c->rc == -1 && c->st.error[0] != '\0' && c->emitted == 0);
        return 0;
    }
    check(c->rc == 0);
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0) {
        check(c->st.done && c->emitted == 0);
        return 0;
    }
    check(!c->st.done && c->emitted == 1);
    check_cut(ev->data, ev->data_len, c->out, c->out_len, &before, &c->st.relay);
    return 0;
}

static bool blank4(char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

/* mesh_relay_tail against finish's cut (fin_out, fin_relay) of the same
 * answer: see the file's comment. */
static void check_tail(struct arena *a, const char *in, size_t len, const char *fin_out,
                       size_t fin_len, const struct provider_relay *fin_relay)
{
    struct resp_facts rf;
    memset(&rf, 0x5a, sizeof rf);
    struct provider_relay r;
    memset(&r, 0, sizeof r);
    char *out = NULL;
    size_t n = 0;
    if (!mesh_relay_tail(a, in, len, &rf, &out, &n, &r)) {
        check(out == NULL && !r.present && ((unsigned char *)&rf)[0] == 0x5a);
        return;
    }
    check(out != NULL && n < len && r.present && r.node && r.provider && r.cost >= 0);
    check(rf.usage.present && !rf.has_error);
    /* one span cut: a common head, then `,"x-aiproxy":{`, then a common tail */
    size_t h = 0;
    while (h < n && out[h] == in[h]) h++;
    size_t cut = len - n;
    check(memcmp(out + h, in + h + cut, n - h) == 0);
    /* the head may have matched into the span: the span starts at the key */
    static const char k[] = ",\"x-aiproxy\":{";
    bool found = false;
    for (size_t st = 0; st <= h && !found; st++)
        found = st + cut <= len && cut >= sizeof k - 1 && memcmp(in + st, k, sizeof k - 1) == 0 &&
                memcmp(out, in, st) == 0 && memcmp(out + st, in + st + cut, n - st) == 0;
    check(found);
    /* the root's closing brace where it says, blanks after it */
    check(rf.close_off < n && out[rf.close_off] == '}');
    for (size_t i = rf.close_off + 1; i < n; i++) check(blank4(out[i]));
    struct resp_facts scanned;
    if (scan_response(out, n, &scanned) == 0) {
        check(scanned.close_off == rf.close_off);
        check(scanned.root_empty == rf.root_empty);
    }
    struct resp_facts whole;
    if (scan_response(in, len, &whole) == 0 && whole.relay.present) {
        check(fin_len == n && memcmp(fin_out, out, n) == 0);
        check(same_relay(fin_relay, &r));
        check(whole.relay.usage.present);
        check(whole.relay.usage.prompt_tokens == rf.usage.prompt_tokens &&
              whole.relay.usage.completion_tokens == rf.usage.completion_tokens &&
              whole.relay.usage.total_tokens == rf.usage.total_tokens &&
              whole.relay.usage.cached_tokens == rf.usage.cached_tokens &&
              whole.relay.usage.cache_write_tokens == rf.usage.cache_write_tokens);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    prepare_once();
    if (size < 2) return 0;
    int mode = data[0] % 3;
    uint32_t seed = data[1] | 1u;
    size_t len = size - 2;
    /* A buffer of its own size, without a NUL (ASan sees overreads). */
    char *body = malloc(len ? len : 1);
    check(body != NULL);
    memcpy(body, data + 2, len);

    struct req_facts f;
    memset(&f, 0, sizeof f);
    struct arena a;
    arena_init(&a);
    struct provider_call call = {.kind = API_CHAT, .body = "{}", .body_len = 2, .facts = &f,
                                 .provider = &peer, .model = &model, .arena = &a,
                                 .request_id = "req_1", .mesh_hops = 1, .mesh_via = "node-a"};
    const struct provider_ops *ops = provider_ops_for(&peer);
    check(ops != NULL && strcmp(ops->type, "mesh") == 0 && ops->stream_mode == SSE_MODE_SSE);
    if (mode == 0) {
        struct provider_response resp = {.status = 200, .content_type = "application/json",
                                         .body = body, .len = len};
        struct provider_usage u;
        memset(&u, 0, sizeof u);
        struct provider_relay none = u.relay;
        char *out = NULL;
        size_t out_len = 0;
        char err[256] = "";
        check(ops->finish(&call, &resp, &out, &out_len, &u, err, sizeof err) == 0);
        check_cut(body, len, out, out_len, &none, &u.relay);
        check_tail(&a, body, len, out, out_len, &u.relay);
    } else if (mode == 1) {
        struct ctx c = {.call = &call, .ops = ops};
        struct sse_reader r;
        sse_reader_init(&r, ops->stream_mode, 1 << 16, on_event, &c);
        for (size_t off = 0; off < len;) {
            seed = seed * 1103515245u + 12345u;
            size_t n = 1 + (seed >> 16) % 64;
            if (n > len - off) n = len - off;
            if (sse_reader_feed(&r, body + off, n) != SSE_OK) break;
            off += n;
        }
        (void)sse_reader_finish(&r);
        sse_reader_cleanup(&r);
    } else {
        /* prepare reads the body NUL-terminated, as the server keeps it */
        char *req = malloc(len + 1);
        check(req != NULL);
        memcpy(req, body, len);
        req[len] = '\0';
        struct scan_error se;
        unsigned flags = (seed & 2) ? SCAN_MODEL_OPTIONAL : 0;
        if (scan_request_flags(SCAN_CHAT, req, len, &f, &se, flags) == 0) {
            const char *via = vias[(seed >> 2) % (sizeof vias / sizeof vias[0])];
            const char *endpoint = (seed & 32) ? "https://10.0.0.7:7443/v1" : NULL;
            (void)try_prepare(req, len, &f, endpoint, (int)(seed >> 6), via);
        }
        free(req);
    }
    arena_free(&a);
    free(body);
    return 0;
}
