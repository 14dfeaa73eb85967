/* pj_span: finds one top-level member of a JSON object text without
 * parsing the rest (internal.h: pj_member_span), so that a translator can
 * copy the gateway's x-aiproxy object as bytes instead of loading and
 * dumping it. The member's value is checked against a strict subset of
 * JSON that jansson accepts and writes back as the same value; anything
 * outside it answers "cannot tell" and the caller parses the whole text. */
#include <string.h>

#include "providers/internal.h"

#define SPAN_MAX_DEPTH 32
#define SPAN_MAX_NUMBER 15 /* digits and signs: exact as int64 and double */

struct cur {
    const unsigned char *p, *end;
};

static void ws(struct cur *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static bool eat(struct cur *c, unsigned char ch)
{
    ws(c);
    if (c->p >= c->end || *c->p != ch) return false;
    c->p++;
    return true;
}

/* A string's bytes (the cursor after its opening quote): strict checks
 * valid UTF-8 and simple escapes (\uXXXX is left to jansson: false). */
static bool string_body(struct cur *c, bool strict)
{
    while (c->p < c->end) {
        unsigned ch = *c->p++;
        if (ch == '"') return true;
        if (ch == '\\') {
            if (c->p >= c->end) return false;
            unsigned e = *c->p++;
            if (strict && (e == 0 || !strchr("\"\\/bfnrt", (int)e))) return false;
        } else if (strict && ch < 0x20) {
            return false;
        } else if (strict && ch >= 0x80) {
            size_t len = (ch & 0xE0) == 0xC0 ? 2 : (ch & 0xF0) == 0xE0 ? 3 : (ch & 0xF8) == 0xF0 ? 4 : 0;
            if (len == 0 || (size_t)(c->end - c->p) < len - 1) return false;
            unsigned cp = ch & (0x7Fu >> len);
            for (size_t i = 1; i < len; i++) {
                if ((*c->p & 0xC0) != 0x80) return false;
                cp = (cp << 6) | (*c->p++ & 0x3F);
            }
            unsigned min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
            if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        }
    }
    return false;
}

static bool digits(struct cur *c)
{
    const unsigned char *s = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') c->p++;
    return c->p > s;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)? of at most SPAN_MAX_NUMBER bytes. */
static bool number(struct cur *c)
{
    const unsigned char *s = c->p;
    if (*c->p == '-') c->p++;
    if (c->p < c->end && *c->p == '0') c->p++;
    else if (!digits(c)) return false;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!digits(c)) return false;
    }
    return c->p - s <= SPAN_MAX_NUMBER &&
           !(c->p < c->end && (*c->p == 'e' || *c->p == 'E' || (*c->p >= '0' && *c->p <= '9')));
}

static bool literal(struct cur *c, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return false;
    c->p += n;
    return true;
}

/* One value in the strict subset. */
static bool strict_value(struct cur *c, int depth)
{
    ws(c);
    if (c->p >= c->end || depth > SPAN_MAX_DEPTH) return false;
    unsigned ch = *c->p;
    if (ch == '"') {
        c->p++;
        return string_body(c, true);
    }
    if (ch == '{' || ch == '[') {
        bool obj = ch == '{';
        c->p++;
        if (eat(c, obj ? '}' : ']')) return true;
        do {
            if (obj && !(eat(c, '"') && string_body(c, true) && eat(c, ':'))) return false;
            if (!strict_value(c, depth + 1)) return false;
        } while (eat(c, ','));
        return eat(c, obj ? '}' : ']');
    }
    if (ch == 't') return literal(c, "true");
    if (ch == 'f') return literal(c, "false");
    if (ch == 'n') return literal(c, "null");
    return number(c);
}

/* Skips one value without checking it (jansson checks the rest later). */
static bool skip_value(struct cur *c)
{
    ws(c);
    if (c->p >= c->end) return false;
    if (*c->p == '"') {
        c->p++;
        return string_body(c, false);
    }
    if (*c->p != '{' && *c->p != '[') {
        while (c->p < c->end && *c->p && !strchr(",}] \t\r\n", *c->p)) c->p++;
        return true;
    }
    size_t depth = 0;
    while (c->p < c->end) {
        unsigned ch = *c->p++;
        if (ch == '"') {
            if (!string_body(c, false)) return false;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if ((ch == '}' || ch == ']') && --depth == 0) {
            return true;
        }
    }
    return false;
}

int pj_member_span(const char *s, size_t len, const char *key, struct pj_span *out)
{
    struct cur c = {(const unsigned char *)s, (const unsigned char *)s + len};
    size_t klen = strlen(key);
    int found = 0;
    if (!eat(&c, '{')) return -1;
    if (eat(&c, '}')) return 0;
    const unsigned char *prev_comma = NULL;
    do {
        ws(&c);
        const unsigned char *kstart = c.p;
        if (!eat(&c, '"') || !string_body(&c, false) || !eat(&c, ':')) return -1;
        bool match = (size_t)(c.p - kstart) >= klen + 2 && memcmp(kstart + 1, key, klen) == 0 &&
                     kstart[klen + 1] == '"';
        if (match) {
            ws(&c);
            if (found || c.p >= c.end || *c.p != '{') return -1;
            const unsigned char *vstart = c.p;
            if (!strict_value(&c, 0)) return -1;
            found = 1;
            out->value_off = (size_t)(vstart - (const unsigned char *)s);
            out->value_len = (size_t)(c.p - vstart);
            /* the member and one comma next to it */
            out->cut_off = (size_t)((prev_comma ? prev_comma : kstart) - (const unsigned char *)s);
            out->cut_end = (size_t)(c.p - (const unsigned char *)s);
            ws(&c);
            if (!prev_comma && c.p < c.end && *c.p == ',') out->cut_end = (size_t)(c.p + 1 - (const unsigned char *)s);
        } else if (!skip_value(&c)) {
            return -1;
        }
        ws(&c);
        prev_comma = c.p;
    } while (eat(&c, ','));
    if (!eat(&c, '}')) return -1;
    ws(&c);
    return c.p == c.end ? found : -1;
}
