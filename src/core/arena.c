/* arena: bump allocation in 4 KB-or-larger blocks, freed together; each
 * thread keeps a few freed standard blocks for its next arenas. */
#include "core/arena.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define ARENA_BLOCK 4096
/* Standard blocks a thread keeps for its next arenas instead of giving them
 * back to malloc: a request's arena takes and returns a few every time. */
#define ARENA_SPARE_MAX 8

struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

struct arena_cleanup {
    struct arena_cleanup *next;
    arena_cleanup_cb cb;
    void *data;
};

static _Thread_local struct arena_block *spare;
static _Thread_local unsigned n_spare;

static struct arena_block *block_new(size_t cap)
{
    if (cap == ARENA_BLOCK && spare) {
        struct arena_block *b = spare;
        spare = b->next;
        n_spare--;
        return b;
    }
    struct arena_block *b = xmalloc(sizeof *b + cap);
    b->cap = cap;
    return b;
}

/* A thread's spares are freed when it exits (the key's destructor). */
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void spares_free(void *unused)
{
    (void)unused;
    while (spare) {
        struct arena_block *b = spare;
        spare = b->next;
        free(b);
    }
    n_spare = 0;
}

static void spare_key_create(void)
{
    pthread_key_create(&spare_key, spares_free);
}

static void block_free(struct arena_block *b)
{
    if (b->cap == ARENA_BLOCK && n_spare < ARENA_SPARE_MAX) {
        if (!spare) {
            pthread_once(&spare_once, spare_key_create);
            pthread_setspecific(spare_key, &spare); /* non-NULL: the destructor runs */
        }
        b->next = spare;
        spare = b;
        n_spare++;
        return;
    }
    free(b);
}

void arena_init(struct arena *a)
{
    a->blocks = NULL;
    a->cleanups = NULL;
}

void *arena_alloc(struct arena *a, size_t n)
{
    size_t align = alignof(max_align_t);
    n = (n + align - 1) & ~(align - 1);
    struct arena_block *b = a->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
        b = block_new(cap);
        b->used = 0;
        b->next = a->blocks;
        a->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    char *s = arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

char *arena_concat(struct arena *a, ...)
{
    va_list ap;
    size_t total = 0;
    va_start(ap, a);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) total += strlen(s);
    va_end(ap);
    char *out = arena_alloc(a, total + 1);
    char *p = out;
    va_start(ap, a);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) {
        size_t n = strlen(s);
        memcpy(p, s, n);
        p += n;
    }
    va_end(ap);
    *p = '\0';
    return out;
}

void arena_on_free(struct arena *a, arena_cleanup_cb cb, void *data)
{
    struct arena_cleanup *c = arena_alloc(a, sizeof *c);
    c->cb = cb;
    c->data = data;
    c->next = a->cleanups;
    a->cleanups = c;
}

void arena_free(struct arena *a)
{
    while (a->cleanups) {
        struct arena_cleanup *c = a->cleanups;
        a->cleanups = c->next;
        c->cb(c->data);
    }
    while (a->blocks) {
        struct arena_block *b = a->blocks;
        a->blocks = b->next;
        block_free(b);
    }
}
