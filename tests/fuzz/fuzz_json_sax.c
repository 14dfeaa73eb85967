/* fuzz_json_sax: libFuzzer driver for core/json_sax, checked against jansson
 * (json_loadb, JSON_DECODE_ANY | JSON_ALLOW_NUL) as the oracle:
 *  (a) what jansson accepts, json_sax accepts (jansson's depth limit,
 *      JSON_PARSER_MAX_DEPTH = 2048, is below JSON_SAX_MAX_DEPTH), except
 *      input holding a raw NUL byte: jansson drops one it reads ahead and
 *      puts back ("10\0" loads), json_sax must refuse it;
 *  (b) what json_sax accepts, jansson accepts, unless it holds what jansson
 *      refuses by design: a lone-surrogate \u escape (json_sax gives U+FFFD),
 *      a NUL in an object key, a number jansson cannot hold (an integer past
 *      64 bits, a real past DBL_MAX), or values nested deeper than 2048;
 *  (c) when both accept, the tree rebuilt from json_sax's events is
 *      json_equal to jansson's. A number becomes json_loadb of its raw text
 *      alone, so it is an integer or a real exactly as jansson types it in
 *      place; duplicate keys keep the last value, as jansson's
 *      json_object_setn_new_nocheck does;
 *  (d) each callback's token: buf[token_start] and buf[consumed - 1] are its
 *      first and last bytes ('{' '[' '}' ']', the quotes of a string or key,
 *      a number's or literal's own text), tokens follow each other with only
 *      whitespace and the one ',' or ':' the grammar puts between them, and
 *      a string's bytes are those of an independent decode of its raw token
 *      (a pointer into the buffer when it holds no escape).
 * The same input is then parsed without callbacks (same outcome) and with a
 * callback that stops at event k (k from the input's length): JSON_SAX_CANCELED
 * after exactly k + 1 events when there are that many.
 * And once more recording every event (kind and token offsets), then with
 * JSON_SAX_SKIP_CONTENTS returned for the containers a hash of their offset
 * picks: the same outcome and error, and exactly the first run's events
 * without those strictly inside a skipped container (its start and end
 * stay).
 * Build: see scripts/fuzz.sh (src/core/*.c and jansson are linked). */
#include <assert.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_sax.h"

struct fz {
    struct json_sax p;
    const uint8_t *buf;
    size_t len;
    size_t prev_end; /* consumed of the previous token */
    char prev;       /* the previous event: 0 none, 'o' open, 'k' key, 'v' a value ended */
    size_t depth, max_value_depth;
    json_t *stack[JSON_SAX_MAX_DEPTH + 1]; /* borrowed: the parent owns each */
    char *key[JSON_SAX_MAX_DEPTH + 1];     /* the pending key of each open object */
    size_t key_len[JSON_SAX_MAX_DEPTH + 1];
    json_t *root;
    bool lone_surrogate, nul_key, bad_number;
    long events;
};

static bool is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* (d): the token lies in the buffer after the previous one, with only
 * whitespace and the expected separator between them. */
static void check_token(struct fz *f, char kind, uint8_t first, uint8_t last)
{
    size_t tok = json_sax_token_start(&f->p), end = json_sax_consumed(&f->p);
    assert(tok < end && end <= f->len);
    assert(tok >= f->prev_end);
    char want = 0;
    if (f->prev == 'k') want = ':';
    else if (f->prev == 'v' && kind != 'c') want = ',';
    int seps = 0;
    for (size_t i = f->prev_end; i < tok; i++) {
        if (f->buf[i] == ',' || f->buf[i] == ':') {
            assert(f->buf[i] == want);
            seps++;
        } else {
            assert(is_ws(f->buf[i]));
        }
    }
    assert(seps == (want ? 1 : 0));
    if (first) assert(f->buf[tok] == first);
    if (last) assert(f->buf[end - 1] == last);
    f->prev_end = end;
    f->events++;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static unsigned hex4_at(const uint8_t *b)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int d = hexval(b[k]);
        assert(d >= 0);
        v = v << 4 | (unsigned)d;
    }
    return v;
}

static size_t put_utf8(uint8_t *o, unsigned cp)
{
    if (cp < 0x80) return o[0] = (uint8_t)cp, 1;
    if (cp < 0x800) return o[0] = (uint8_t)(0xC0 | cp >> 6), o[1] = (uint8_t)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Strict UTF-8 with no control characters: the raw bytes of a string. */
static size_t utf8_char(const uint8_t *p, size_t n)
{
    uint32_t c = p[0], min;
    size_t extra;
    if (c < 0x80) return c >= 0x20 ? 1 : 0;
    if ((c & 0xE0) == 0xC0) extra = 1, min = 0x80, c &= 0x1F;
    else if ((c & 0xF0) == 0xE0) extra = 2, min = 0x800, c &= 0x0F;
    else if ((c & 0xF8) == 0xF0) extra = 3, min = 0x10000, c &= 0x07;
    else return 0;
    if (n <= extra) return 0;
    for (size_t j = 1; j <= extra; j++) {
        if ((p[j] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (p[j] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    return extra + 1;
}

/* (d): the string token at [tok, end) decoded independently must be s[0, n). */
static void check_string(struct fz *f, const char *s, size_t n)
{
    size_t tok = json_sax_token_start(&f->p), end = json_sax_consumed(&f->p);
    const uint8_t *b = f->buf + tok + 1;
    size_t rn = end - tok - 2;
    if (!memchr(b, '\\', rn)) {
        assert((const uint8_t *)s == b && n == rn); /* unescaped: a pointer into the buffer */
    }
    uint8_t *out = malloc(rn + 1);
    size_t o = 0;
    for (size_t i = 0; i < rn;) {
        if (b[i] == '"') assert(0); /* no raw quote inside */
        if (b[i] != '\\') {
            size_t k = utf8_char(b + i, rn - i);
            assert(k);
            memcpy(out + o, b + i, k);
            o += k, i += k;
            continue;
        }
        assert(i + 1 < rn);
        uint8_t e = b[i + 1];
        i += 2;
        switch (e) {
        case '"': case '\\': case '/': out[o++] = e; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            assert(i + 4 <= rn);
            unsigned cp = hex4_at(b + i);
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= rn && b[i] == '\\' && b[i + 1] == 'u') {
                unsigned lo = hex4_at(b + i + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
            }
            if (cp >= 0xD800 && cp <= 0xDFFF) {
                f->lone_surrogate = true;
                cp = 0xFFFD;
            }
            o += put_utf8(out + o, cp);
            break;
        }
        default: assert(0);
        }
    }
    assert(o == n && memcmp(out, s, n) == 0);
    free(out);
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? exactly */
static bool number_grammar(const char *t, size_t n)
{
    size_t i = 0;
    if (i < n && t[i] == '-') i++;
    if (i >= n) return false;
    if (t[i] == '0') i++;
    else if (t[i] >= '1' && t[i] <= '9') while (i < n && t[i] >= '0' && t[i] <= '9') i++;
    else return false;
    if (i < n && t[i] == '.') {
        if (++i >= n || t[i] < '0' || t[i] > '9') return false;
        while (i < n && t[i] >= '0' && t[i] <= '9') i++;
    }
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < n && (t[i] == '+' || t[i] == '-')) i++;
        if (i >= n || t[i] < '0' || t[i] > '9') return false;
        while (i < n && t[i] >= '0' && t[i] <= '9') i++;
    }
    return i == n;
}

/* Adds a finished (or just opened) value to the tree being rebuilt. */
static void add(struct fz *f, json_t *v)
{
    if (f->depth + 1 > f->max_value_depth) f->max_value_depth = f->depth + 1;
    if (f->depth == 0) {
        assert(!f->root);
        f->root = v;
        return;
    }
    json_t *top = f->stack[f->depth - 1];
    if (json_is_array(top)) {
        assert(!f->key[f->depth - 1]);
        assert(json_array_append_new(top, v) == 0);
    } else {
        assert(json_is_object(top) && f->key[f->depth - 1]);
        /* as jansson: the last of duplicate keys wins */
        assert(json_object_setn_new_nocheck(top, f->key[f->depth - 1], f->key_len[f->depth - 1], v) == 0);
        free(f->key[f->depth - 1]);
        f->key[f->depth - 1] = NULL;
    }
}

static int on_null(void *ctx)
{
    struct fz *f = ctx;
    check_token(f, 'v', 'n', 'l');
    assert(json_sax_consumed(&f->p) - json_sax_token_start(&f->p) == 4);
    assert(memcmp(f->buf + json_sax_token_start(&f->p), "null", 4) == 0);
    add(f, json_null());
    f->prev = 'v';
    return 1;
}

static int on_bool(void *ctx, int v)
{
    struct fz *f = ctx;
    const char *w = v ? "true" : "false";
    check_token(f, 'v', (uint8_t)w[0], 'e');
    assert(json_sax_consumed(&f->p) - json_sax_token_start(&f->p) == strlen(w));
    assert(memcmp(f->buf + json_sax_token_start(&f->p), w, strlen(w)) == 0);
    add(f, json_boolean(v));
    f->prev = 'v';
    return 1;
}

static int on_number(void *ctx, const char *t, size_t n)
{
    struct fz *f = ctx;
    check_token(f, 'v', 0, 0);
    assert((const uint8_t *)t == f->buf + json_sax_token_start(&f->p));
    assert(n == json_sax_consumed(&f->p) - json_sax_token_start(&f->p));
    assert(number_grammar(t, n));
    json_t *v = json_loadb(t, n, JSON_DECODE_ANY, NULL);
    if (!v) {
        f->bad_number = true; /* out of jansson's range */
        v = json_null();
    } else {
        assert(json_is_number(v));
    }
    add(f, v);
    f->prev = 'v';
    return 1;
}

static int on_string(void *ctx, const char *s, size_t n)
{
    struct fz *f = ctx;
    check_token(f, 'v', '"', '"');
    check_string(f, s, n);
    add(f, json_stringn_nocheck(s, n));
    f->prev = 'v';
    return 1;
}

static int on_key(void *ctx, const char *s, size_t n)
{
    struct fz *f = ctx;
    check_token(f, 'k', '"', '"');
    check_string(f, s, n);
    assert(f->depth > 0 && json_is_object(f->stack[f->depth - 1]) && !f->key[f->depth - 1]);
    if (memchr(s, '\0', n)) f->nul_key = true;
    f->key[f->depth - 1] = malloc(n + 1);
    memcpy(f->key[f->depth - 1], s, n);
    f->key[f->depth - 1][n] = '\0';
    f->key_len[f->depth - 1] = n;
    f->prev = 'k';
    return 1;
}

static void open_container(struct fz *f, json_t *c)
{
    assert(json_sax_consumed(&f->p) == json_sax_token_start(&f->p) + 1);
    add(f, c);
    assert(f->depth < JSON_SAX_MAX_DEPTH);
    f->stack[f->depth] = c;
    f->key[f->depth] = NULL;
    f->depth++;
    f->prev = 'o';
}

static int on_start_map(void *ctx)
{
    struct fz *f = ctx;
    check_token(f, 'v', '{', '{');
    open_container(f, json_object());
    return 1;
}

static int on_start_array(void *ctx)
{
    struct fz *f = ctx;
    check_token(f, 'v', '[', '[');
    open_container(f, json_array());
    return 1;
}

static int on_end_map(void *ctx)
{
    struct fz *f = ctx;
    check_token(f, 'c', '}', '}');
    assert(json_sax_consumed(&f->p) == json_sax_token_start(&f->p) + 1);
    assert(f->depth > 0 && json_is_object(f->stack[f->depth - 1]) && !f->key[f->depth - 1]);
    f->depth--;
    f->prev = 'v';
    return 1;
}

static int on_end_array(void *ctx)
{
    struct fz *f = ctx;
    check_token(f, 'c', ']', ']');
    assert(json_sax_consumed(&f->p) == json_sax_token_start(&f->p) + 1);
    assert(f->depth > 0 && json_is_array(f->stack[f->depth - 1]));
    f->depth--;
    f->prev = 'v';
    return 1;
}

static const struct json_sax_callbacks CB = {
    .null_value = on_null,
    .boolean = on_bool,
    .number = on_number,
    .string = on_string,
    .start_map = on_start_map,
    .map_key = on_key,
    .end_map = on_end_map,
    .start_array = on_start_array,
    .end_array = on_end_array,
};

/* The counting, cancelling pass. */
struct stop {
    long events, stop_at;
};
static int s_tick(void *ctx)
{
    struct stop *s = ctx;
    return s->events++ != s->stop_at;
}
static int s_bool(void *ctx, int v)
{
    return s_tick(ctx);
}
static int s_text(void *ctx, const char *t, size_t n)
{
    return s_tick(ctx);
}
static const struct json_sax_callbacks STOP = {
    .null_value = s_tick,
    .boolean = s_bool,
    .number = s_text,
    .string = s_text,
    .start_map = s_tick,
    .map_key = s_text,
    .end_map = s_tick,
    .start_array = s_tick,
    .end_array = s_tick,
};

/* The recording passes. */
struct rec_ev {
    char kind;
    size_t tok, end;
};
struct rec {
    struct json_sax p;
    struct rec_ev *ev;
    size_t n, cap;
    bool skipping;
    uint32_t salt;
};
static bool skip_here(uint32_t salt, size_t tok)
{
    return (((uint32_t)tok * 2654435761u) ^ salt) % 3 == 0;
}
static int r_push(struct rec *r, char kind)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->ev = realloc(r->ev, r->cap * sizeof *r->ev);
        assert(r->ev);
    }
    r->ev[r->n++] = (struct rec_ev){kind, json_sax_token_start(&r->p), json_sax_consumed(&r->p)};
    return 1;
}
static int r_start(struct rec *r, char kind)
{
    r_push(r, kind);
    return r->skipping && skip_here(r->salt, json_sax_token_start(&r->p)) ? JSON_SAX_SKIP_CONTENTS : 1;
}
static int r_null(void *c) { return r_push(c, 'n'); }
static int r_bool(void *c, int v) { return r_push(c, v ? 't' : 'f'); }
static int r_number(void *c, const char *t, size_t n) { return r_push(c, '0'); }
static int r_string(void *c, const char *t, size_t n) { return r_push(c, 's'); }
static int r_key(void *c, const char *t, size_t n) { return r_push(c, 'k'); }
static int r_start_map(void *c) { return r_start(c, '{'); }
static int r_start_array(void *c) { return r_start(c, '['); }
static int r_end_map(void *c) { return r_push(c, '}'); }
static int r_end_array(void *c) { return r_push(c, ']'); }
static const struct json_sax_callbacks REC = {
    .null_value = r_null,
    .boolean = r_bool,
    .number = r_number,
    .string = r_string,
    .start_map = r_start_map,
    .map_key = r_key,
    .end_map = r_end_map,
    .start_array = r_start_array,
    .end_array = r_end_array,
};

static void check_skipping(const uint8_t *data, size_t size)
{
    struct rec all = {.salt = (uint32_t)size * 40503u};
    struct rec some = {.skipping = true, .salt = all.salt};
    enum json_sax_status st1 = json_sax_parse(&all.p, &REC, &all, (const char *)data, size);
    enum json_sax_status st2 = json_sax_parse(&some.p, &REC, &some, (const char *)data, size);
    assert(st1 == st2);
    if (st1 == JSON_SAX_ERROR) assert(all.p.error == some.p.error && all.p.error_at == some.p.error_at);
    size_t k = 0, hidden = 0; /* hidden: open containers inside a skipped one, itself included */
    for (size_t i = 0; i < all.n; i++) {
        const struct rec_ev *e = &all.ev[i];
        bool open = e->kind == '{' || e->kind == '[', close = e->kind == '}' || e->kind == ']';
        bool kept = true;
        if (hidden) {
            if (open) hidden++;
            kept = close && --hidden == 0; /* only the skipped container's end */
        } else if (open && skip_here(all.salt, e->tok)) {
            hidden = 1;
        }
        if (!kept) continue;
        assert(k < some.n);
        assert(some.ev[k].kind == e->kind && some.ev[k].tok == e->tok && some.ev[k].end == e->end);
        k++;
    }
    assert(k == some.n);
    free(all.ev);
    free(some.ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fz f;
    json_error_t je;
    json_t *jv = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);

    memset(&f, 0, sizeof f);
    f.buf = data;
    f.len = size;
    enum json_sax_status st = json_sax_parse(&f.p, &CB, &f, (const char *)data, size);
    assert(f.p.scratch == NULL);
    if (st == JSON_SAX_OK) {
        assert(f.p.error == NULL && f.depth == 0 && f.root);
        assert(json_sax_consumed(&f.p) == size);
        for (size_t i = f.prev_end; i < size; i++) assert(is_ws(data[i]));
    } else {
        assert(st == JSON_SAX_ERROR && f.p.error && f.p.error[0]);
        assert(f.p.error_at <= size && f.p.error_at >= f.prev_end);
    }

    /* A raw NUL byte is never JSON (no whitespace, a control character in a
     * string), but jansson's reader loses one it has to put back ("10\0"
     * loads as 10): json_sax must refuse it, and jansson is no oracle then. */
    if (memchr(data, 0, size)) {
        assert(st == JSON_SAX_ERROR);
        json_decref(jv);
        jv = NULL;
    }
    /* (a) */
    if (jv) assert(st == JSON_SAX_OK);
    /* (b) */
    bool jansson_refuses = f.lone_surrogate || f.nul_key || f.bad_number ||
                           f.max_value_depth > JSON_PARSER_MAX_DEPTH;
    if (st == JSON_SAX_OK && !jv) assert(jansson_refuses);
    /* (c) */
    if (st == JSON_SAX_OK && jv) {
        assert(!jansson_refuses);
        assert(json_equal(jv, f.root));
    }

    /* without callbacks: the same outcome */
    struct json_sax q;
    static const struct json_sax_callbacks none;
    enum json_sax_status st2 = json_sax_parse(&q, &none, NULL, (const char *)data, size);
    assert(st2 == st);
    if (st == JSON_SAX_ERROR) assert(q.error == f.p.error && q.error_at == f.p.error_at);

    /* stopped at event k */
    struct stop s = {0, f.events ? (long)(size % (size_t)(f.events + 1)) : 0};
    enum json_sax_status st3 = json_sax_parse(&q, &STOP, &s, (const char *)data, size);
    if (s.stop_at < f.events) {
        assert(st3 == JSON_SAX_CANCELED && s.events == s.stop_at + 1);
    } else {
        assert(st3 == st && s.events == f.events);
    }
    assert(q.scratch == NULL);

    check_skipping(data, size);

    for (size_t i = 0; i <= JSON_SAX_MAX_DEPTH; i++) free(f.key[i]);
    json_decref(f.root);
    json_decref(jv);
    return 0;
}
