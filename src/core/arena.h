/* arena: a per-request bump allocator with registered cleanups (STYLE rule
 * 5). Everything a request allocates is freed in one go by arena_free. */
#ifndef AIPROXY_CORE_ARENA_H
#define AIPROXY_CORE_ARENA_H

#include <stddef.h>

struct arena_block;
struct arena_cleanup;

struct arena {
    struct arena_block *blocks;
    struct arena_cleanup *cleanups;
};

typedef void (*arena_cleanup_cb)(void *data);

void arena_init(struct arena *a);
/* Returns `n` bytes aligned for any type, owned by the arena. */
void *arena_alloc(struct arena *a, size_t n);
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_strdup(struct arena *a, const char *s);
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Concatenates the NUL-terminated strings given, up to a NULL, into one
 * arena string (no format parsing: for the hot path). */
char *arena_concat(struct arena *a, ...) __attribute__((sentinel));
/* Registers `cb(data)` to run (last registered first) when the arena is freed. */
void arena_on_free(struct arena *a, arena_cleanup_cb cb, void *data);
/* Runs the cleanups and frees every block; the arena can be reused after. */
void arena_free(struct arena *a);
/* (a thread keeps up to 8 freed 4 KB blocks for its next arenas; they are
 * freed when it exits) */

#endif
