/* json_sax: the strict JSON event parser (see json_sax.h). One loop over
 * the buffer with an explicit container stack (one bit per level); a byte
 * class table keeps the string scan to a load and a compare per byte. */
#include "core/json_sax.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* Byte classes inside a string. */
enum { C_PLAIN = 0, C_QUOTE, C_ESCAPE, C_CONTROL, C_HIGH };

static const unsigned char string_class[256] = {
    [0x00 ... 0x1f] = C_CONTROL,
    ['"'] = C_QUOTE,
    ['\\'] = C_ESCAPE,
    [0x80 ... 0xff] = C_HIGH,
};

/* Nonzero when one of the 8 bytes of `v` is not C_PLAIN: below 0x20, '"',
 * '\\' or 0x80 and above. (The zero-byte trick may also flag a plain byte
 * next to a flagged one; the byte loop after it decides exactly.) */
static uint64_t special_in_word(uint64_t v)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t quote = v ^ (ones * '"'), backslash = v ^ (ones * '\\');
    uint64_t control = (v - ones * 0x20) & ~v;
    uint64_t q = (quote - ones) & ~quote, bs = (backslash - ones) & ~backslash;
    return (control | q | bs | v) & highs;
}

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static size_t skip_ws(const struct json_sax *p, size_t i)
{
    const unsigned char *b = (const unsigned char *)p->buf;
    while (i < p->len && is_ws(b[i])) i++;
    return i;
}

static enum json_sax_status fail(struct json_sax *p, const char *why, size_t at)
{
    p->error = why;
    p->error_at = at;
    return JSON_SAX_ERROR;
}

/* Length of the strict UTF-8 sequence at b[i] (a byte >= 0x80), or 0 when
 * it is not one. */
static size_t utf8_seq(const unsigned char *b, size_t i, size_t len)
{
    unsigned c = b[i];
    size_t n;
    unsigned min, cp;
    if (c >= 0xC2 && c <= 0xDF) n = 2, min = 0x80, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) n = 3, min = 0x800, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, min = 0x10000, cp = c & 0x07;
    else return 0;
    if (len - i < n) return 0;
    for (size_t j = 1; j < n; j++) {
        if ((b[i + j] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (b[i + j] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

static int hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The four hex digits at b[i], or -1. */
static long hex4(const unsigned char *b, size_t i, size_t len)
{
    if (len - i < 4) return -1;
    long v = 0;
    for (int k = 0; k < 4; k++) {
        int d = hex_digit(b[i + k]);
        if (d < 0) return -1;
        v = (v << 4) | d;
    }
    return v;
}

static size_t put_utf8(char *o, unsigned long cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes the escaped string whose raw text (between the quotes) is
 * b[from, to) into p->scratch; the text was validated by scan_string. */
static size_t unescape(struct json_sax *p, size_t from, size_t to)
{
    const unsigned char *b = (const unsigned char *)p->buf;
    /* escapes only shrink text: "\u00e9" (6 bytes) is 2, "\n" is 1 */
    if (p->scratch_cap < to - from + 1) {
        size_t cap = p->scratch_cap ? p->scratch_cap : 256;
        while (cap < to - from + 1) cap *= 2;
        free(p->scratch);
        p->scratch = xmalloc(cap);
        p->scratch_cap = cap;
    }
    char *o = p->scratch;
    size_t n = 0;
    for (size_t i = from; i < to;) {
        if (b[i] != '\\') {
            o[n++] = (char)b[i++];
            continue;
        }
        unsigned char e = b[i + 1];
        i += 2;
        switch (e) {
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'n': o[n++] = '\n'; break;
        case 'r': o[n++] = '\r'; break;
        case 't': o[n++] = '\t'; break;
        case 'u': {
            unsigned long cp = (unsigned long)hex4(b, i, p->len);
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && to - i >= 6 && b[i] == '\\' && b[i + 1] == 'u') {
                long lo = hex4(b, i + 2, p->len);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
                    i += 6;
                }
            }
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD; /* a lone surrogate */
            n += put_utf8(o + n, cp);
            break;
        }
        default: o[n++] = (char)e; break; /* '"', '\\', '/' */
        }
    }
    return n;
}

/* Scans the string whose opening quote is at b[i]: validates it, sets
 * *text / *n to its (unescaped) content and returns the offset past its
 * closing quote, or 0 with the error set. */
static size_t scan_string(struct json_sax *p, size_t i, const char **text, size_t *n)
{
    const unsigned char *b = (const unsigned char *)p->buf;
    size_t len = p->len, start = i + 1;
    bool escaped = false;
    i = start;
    for (;;) {
        for (uint64_t v, m; len - i >= 8; i += 8) {
            memcpy(&v, b + i, 8);
            if ((m = special_in_word(v))) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                /* The lowest flag is a real one (a borrow only flags bytes
                 * above a real one): the first special byte. */
                i += (size_t)__builtin_ctzll(m) / 8;
#endif
                break;
            }
        }
        while (i < len && string_class[b[i]] == C_PLAIN) i++;
        if (i >= len) {
            fail(p, "unterminated string", len);
            return 0;
        }
        switch (string_class[b[i]]) {
        case C_QUOTE:
            if (escaped) {
                *n = unescape(p, start, i);
                *text = p->scratch;
            } else {
                *text = p->buf + start;
                *n = i - start;
            }
            return i + 1;
        case C_ESCAPE: {
            if (i + 1 >= len) {
                fail(p, "unterminated string", len);
                return 0;
            }
            unsigned char e = b[i + 1];
            if (e == 'u') {
                if (hex4(b, i + 2, len) < 0) {
                    fail(p, "invalid \\u escape in a string", i);
                    return 0;
                }
                i += 6;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                i += 2;
            } else {
                fail(p, "invalid escape in a string", i);
                return 0;
            }
            escaped = true;
            break;
        }
        case C_CONTROL:
            fail(p, "control character in a string", i);
            return 0;
        default: { /* C_HIGH */
            size_t k = utf8_seq(b, i, len);
            if (!k) {
                fail(p, "invalid UTF-8 in a string", i);
                return 0;
            }
            i += k;
            break;
        }
        }
    }
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* The offset past the number starting at b[i], or 0 when it is not one:
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static size_t scan_number(const struct json_sax *p, size_t i)
{
    const unsigned char *b = (const unsigned char *)p->buf;
    size_t len = p->len;
    if (i < len && b[i] == '-') i++;
    if (i >= len || !is_digit(b[i])) return 0;
    if (b[i] == '0') {
        i++;
    } else {
        while (i < len && is_digit(b[i])) i++;
    }
    if (i < len && b[i] == '.') {
        i++;
        if (i >= len || !is_digit(b[i])) return 0;
        while (i < len && is_digit(b[i])) i++;
    }
    if (i < len && (b[i] == 'e' || b[i] == 'E')) {
        i++;
        if (i < len && (b[i] == '+' || b[i] == '-')) i++;
        if (i >= len || !is_digit(b[i])) return 0;
        while (i < len && is_digit(b[i])) i++;
    }
    /* "01", "1x": what follows a number must end it */
    if (i < len && (is_digit(b[i]) || b[i] == '.' || b[i] == 'e' || b[i] == 'E' ||
                    ((b[i] | 0x20) >= 'a' && (b[i] | 0x20) <= 'z')))
        return 0;
    return i;
}

static bool literal(const struct json_sax *p, size_t i, const char *word, size_t n)
{
    return p->len - i >= n && memcmp(p->buf + i, word, n) == 0 &&
           (p->len - i == n || !(((unsigned char)p->buf[i + n] | 0x20) >= 'a' &&
                                 ((unsigned char)p->buf[i + n] | 0x20) <= 'z'));
}

static void push(struct json_sax *p, size_t depth, bool is_map)
{
    unsigned char bit = (unsigned char)(1u << (depth & 7));
    if (is_map) p->kinds[depth >> 3] |= bit;
    else p->kinds[depth >> 3] &= (unsigned char)~bit;
}

static bool top_is_map(const struct json_sax *p, size_t depth)
{
    return (p->kinds[(depth - 1) >> 3] >> ((depth - 1) & 7)) & 1;
}

/* A value's callback, unless inside a container whose contents are skipped. */
#define CALL(fn, ...)                                                                              \
    do {                                                                                           \
        if (!quiet && cb->fn && !cb->fn(__VA_ARGS__)) return JSON_SAX_CANCELED;                    \
    } while (0)

/* A container's start: its callback may ask to skip its contents. */
#define CALL_START(fn)                                                                             \
    do {                                                                                           \
        if (!quiet && cb->fn) {                                                                    \
            int r_ = cb->fn(ctx);                                                                  \
            if (!r_) return JSON_SAX_CANCELED;                                                     \
            if (r_ == JSON_SAX_SKIP_CONTENTS) quiet = depth;                                       \
        }                                                                                          \
    } while (0)

/* A container's end, `depth` still counting it: reported when its contents
 * were (or when it is the skipped container itself). */
#define CALL_END(fn)                                                                               \
    do {                                                                                           \
        if (quiet == depth) quiet = 0;                                                             \
        depth--;                                                                                   \
        CALL(fn, ctx);                                                                             \
    } while (0)

const char json_sax_too_deep[] = "nesting too deep";

static enum json_sax_status run(struct json_sax *p, const struct json_sax_callbacks *cb, void *ctx,
                                size_t max_depth)
{
    const unsigned char *b = (const unsigned char *)p->buf;
    size_t len = p->len, depth = 0, i = 0;
    size_t quiet = 0; /* nonzero: the depth of the container whose contents are skipped */
    const char *text;
    size_t n;

value:
    i = skip_ws(p, i);
    if (i >= len) return fail(p, "unexpected end of input: a value was expected", i);
    p->tok = i;
    switch (b[i]) {
    case '{':
        if (depth >= max_depth) return fail(p, json_sax_too_deep, i);
        push(p, depth++, true);
        p->pos = ++i;
        CALL_START(start_map);
        i = skip_ws(p, i);
        if (i < len && b[i] == '}') {
            p->tok = i;
            p->pos = ++i;
            CALL_END(end_map);
            goto after;
        }
        goto key;
    case '[':
        if (depth >= max_depth) return fail(p, json_sax_too_deep, i);
        push(p, depth++, false);
        p->pos = ++i;
        CALL_START(start_array);
        i = skip_ws(p, i);
        if (i < len && b[i] == ']') {
            p->tok = i;
            p->pos = ++i;
            CALL_END(end_array);
            goto after;
        }
        goto value;
    case '"':
        if (!(i = scan_string(p, i, &text, &n))) return JSON_SAX_ERROR;
        p->pos = i;
        CALL(string, ctx, text, n);
        goto after;
    case 't':
    case 'f':
        if (literal(p, i, "true", 4)) {
            p->pos = i += 4;
            CALL(boolean, ctx, 1);
        } else if (literal(p, i, "false", 5)) {
            p->pos = i += 5;
            CALL(boolean, ctx, 0);
        } else {
            return fail(p, "invalid literal", i);
        }
        goto after;
    case 'n':
        if (!literal(p, i, "null", 4)) return fail(p, "invalid literal", i);
        p->pos = i += 4;
        CALL(null_value, ctx);
        goto after;
    default: {
        size_t end = scan_number(p, i);
        if (!end) return fail(p, b[i] == '-' || is_digit(b[i]) ? "invalid number" : "invalid character", i);
        p->pos = end;
        CALL(number, ctx, p->buf + i, end - i);
        i = end;
        goto after;
    }
    }

key:
    if (i >= len) return fail(p, "unexpected end of input: a key was expected", i);
    if (b[i] != '"') return fail(p, "an object key must be a string", i);
    p->tok = i;
    if (!(i = scan_string(p, i, &text, &n))) return JSON_SAX_ERROR;
    p->pos = i;
    CALL(map_key, ctx, text, n);
    i = skip_ws(p, i);
    if (i >= len || b[i] != ':') return fail(p, "':' expected after an object key", i);
    i++;
    goto value;

after:
    i = skip_ws(p, i);
    if (depth == 0) {
        if (i != len) return fail(p, "trailing garbage after the value", i);
        p->pos = i;
        return JSON_SAX_OK;
    }
    if (i >= len) return fail(p, "unexpected end of input in a container", i);
    if (top_is_map(p, depth)) {
        if (b[i] == ',') {
            i = skip_ws(p, i + 1);
            goto key;
        }
        if (b[i] != '}') return fail(p, "',' or '}' expected in an object", i);
        p->tok = i;
        p->pos = ++i;
        CALL_END(end_map);
        goto after;
    }
    if (b[i] == ',') {
        i++;
        goto value;
    }
    if (b[i] != ']') return fail(p, "',' or ']' expected in an array", i);
    p->tok = i;
    p->pos = ++i;
    CALL_END(end_array);
    goto after;
}

enum json_sax_status json_sax_parse(struct json_sax *p, const struct json_sax_callbacks *cb,
                                    void *ctx, const char *buf, size_t len)
{
    return json_sax_parse_depth(p, cb, ctx, buf, len, JSON_SAX_MAX_DEPTH);
}

enum json_sax_status json_sax_parse_depth(struct json_sax *p, const struct json_sax_callbacks *cb,
                                          void *ctx, const char *buf, size_t len, size_t max_depth)
{
    if (max_depth == 0 || max_depth > JSON_SAX_MAX_DEPTH) max_depth = JSON_SAX_MAX_DEPTH;
    p->buf = buf ? buf : "";
    p->len = buf ? len : 0;
    p->pos = p->tok = 0;
    p->error = NULL;
    p->error_at = 0;
    p->scratch = NULL;
    p->scratch_cap = 0;
    enum json_sax_status st = run(p, cb, ctx, max_depth);
    free(p->scratch);
    p->scratch = NULL;
    p->scratch_cap = 0;
    return st;
}
