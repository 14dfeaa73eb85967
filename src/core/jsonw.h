/* jsonw: a tiny bounded JSON writer into a caller's fixed buffer. Output that
 * does not fit is truncated and flagged, never overflowed. Used for log
 * lines, error bodies and the x-aiproxy object. jsonw_init_arena makes one
 * that grows in an arena instead (the Responses translation's output). */
#ifndef AIPROXY_CORE_JSONW_H
#define AIPROXY_CORE_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct arena;

struct jsonw {
    char *buf;
    size_t cap, len;
    bool truncated;
    struct arena *arena; /* NULL: a fixed buffer */
};

void jsonw_init(struct jsonw *w, char *buf, size_t cap);
/* A writer whose buffer (w->buf, NUL-terminated) comes from `a` and grows
 * there as needed (never truncated); `cap` is the first size. */
void jsonw_init_arena(struct jsonw *w, struct arena *a, size_t cap);
/* Appends bytes as they are. The common case (they fit) is inline: the
 * gateway writes its replies with many short appends. */
void jsonw_rawn_slow(struct jsonw *w, const char *s, size_t n);
static inline void jsonw_rawn(struct jsonw *w, const char *s, size_t n)
{
    if (w->len + n + 1 <= w->cap) {
        memcpy(w->buf + w->len, s, n);
        w->len += n;
        w->buf[w->len] = '\0';
        return;
    }
    jsonw_rawn_slow(w, s, n);
}
/* (strlen of a literal folds to a constant) */
static inline void jsonw_raw(struct jsonw *w, const char *s)
{
    jsonw_rawn(w, s, strlen(s));
}
/* Appends a quoted JSON string (escaping quotes, backslashes, control bytes;
 * invalid UTF-8 bytes become U+FFFD). */
void jsonw_str(struct jsonw *w, const char *s);
void jsonw_strn(struct jsonw *w, const char *s, size_t n);
/* Appends the escaped contents without the quotes. */
void jsonw_escaped(struct jsonw *w, const char *s);
void jsonw_int(struct jsonw *w, int64_t v);
size_t jsonw_len(const struct jsonw *w);

#endif
