/* jsonw: bounded JSON text writer (see jsonw.h). */
#include "core/jsonw.h"

#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "core/str.h"

void jsonw_init(struct jsonw *w, char *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->truncated = false;
    w->arena = NULL;
    if (cap) buf[0] = '\0';
}

void jsonw_init_arena(struct jsonw *w, struct arena *a, size_t cap)
{
    if (cap < 16) cap = 16;
    jsonw_init(w, arena_alloc(a, cap), cap);
    w->arena = a;
}

/* An arena writer's buffer, at least `need` bytes (the old one stays in
 * the arena: doubling bounds the waste). */
static void grow(struct jsonw *w, size_t need)
{
    size_t cap = w->cap * 2;
    while (cap < need) cap *= 2;
    char *nb = arena_alloc(w->arena, cap);
    memcpy(nb, w->buf, w->len + 1);
    w->buf = nb;
    w->cap = cap;
}

void jsonw_rawn_slow(struct jsonw *w, const char *s, size_t n)
{
    if (w->len + n + 1 > w->cap && w->arena) grow(w, w->len + n + 1);
    if (w->len + n + 1 > w->cap) {
        w->truncated = true;
        n = w->cap > w->len + 1 ? w->cap - w->len - 1 : 0;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    if (w->cap) w->buf[w->len] = '\0';
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) len = 2, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static void escape_into(struct jsonw *w, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            jsonw_rawn(w, e, 2);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            char e[8];
            const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
            if (named) jsonw_raw(w, named);
            else {
                snprintf(e, sizeof e, "\\u%04x", c);
                jsonw_raw(w, e);
            }
            i++;
        } else if (c < 0x80) {
            size_t j = i;
            while (j < n && p[j] >= 0x20 && p[j] < 0x7F && p[j] != '"' && p[j] != '\\') j++;
            jsonw_rawn(w, s + i, j - i);
            i = j;
        } else {
            size_t len = utf8_seq_len(p + i, n - i);
            if (len == 0) {
                jsonw_raw(w, "\\ufffd");
                i++;
            } else {
                jsonw_rawn(w, s + i, len);
                i += len;
            }
        }
    }
}

/* Bytes that go into a JSON string as they are. */
static const unsigned char plain[256] = {
    [' ' ... '!'] = 1, ['#' ... '['] = 1, [']' ... '~'] = 1,
};

void jsonw_strn(struct jsonw *w, const char *s, size_t n)
{
    if (w->len + n + 3 <= w->cap) {
        /* The common case: it fits and holds nothing to escape, so one loop
         * checks and copies; at the first other byte, escape_into goes on. */
        char *o = w->buf + w->len;
        *o++ = '"';
        size_t i = 0;
        while (i < n && plain[(unsigned char)s[i]]) {
            o[i] = s[i];
            i++;
        }
        if (i == n) {
            o[n] = '"';
            w->len += n + 2;
            w->buf[w->len] = '\0';
            return;
        }
        w->len += 1 + i;
        w->buf[w->len] = '\0';
        escape_into(w, s + i, n - i);
        jsonw_rawn(w, "\"", 1);
        return;
    }
    jsonw_rawn(w, "\"", 1);
    escape_into(w, s, n);
    jsonw_rawn(w, "\"", 1);
}

void jsonw_str(struct jsonw *w, const char *s)
{
    if (!s) {
        jsonw_raw(w, "null");
        return;
    }
    jsonw_strn(w, s, strlen(s));
}

void jsonw_escaped(struct jsonw *w, const char *s)
{
    escape_into(w, s, strlen(s));
}

void jsonw_int(struct jsonw *w, int64_t v)
{
    char b[STR_I64_LEN];
    const char *p = str_i64(v, b);
    jsonw_rawn(w, p, (size_t)(b + STR_I64_LEN - 1 - p));
}

size_t jsonw_len(const struct jsonw *w)
{
    return w->len;
}
