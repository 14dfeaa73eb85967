/* cache: the response cache's process-wide state and counters (see cache.h). */
#include "cache/cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "cache/entry.h"
#include "cache/memstore.h"
#include "cache/semantic.h"
#include "config/config.h"

static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(struct cache_mem *) store;
static _Atomic(struct cache_mem *) aliases;
static _Atomic(struct sem_index *) index_;

static atomic_uint_fast64_t hits, semantic_hits, misses, stores, not_stored, embed_errors,
    backend_errors;
static atomic_int_fast64_t saved;

struct cache_mem *cache_store(const struct config *cfg)
{
    struct cache_mem *m = atomic_load_explicit(&store, memory_order_acquire);
    if (m) return m;
    pthread_mutex_lock(&create_lock);
    m = atomic_load_explicit(&store, memory_order_acquire);
    if (!m) {
        /* Seven eighths of the memory for the entries, the rest for the
         * aliases (cache_aliases): together they hold max_memory. */
        int64_t bytes = cfg->cache.backend_redis ? cfg->cache.front_memory : cfg->cache.max_memory;
        bytes -= bytes / 8;
        if (bytes < 56 * 1024) bytes = 56 * 1024;
        m = cache_mem_new((size_t)bytes);
        atomic_store_explicit(&store, m, memory_order_release);
    }
    pthread_mutex_unlock(&create_lock);
    return m;
}

struct cache_mem *cache_aliases(const struct config *cfg)
{
    struct cache_mem *m = atomic_load_explicit(&aliases, memory_order_acquire);
    if (m) return m;
    pthread_mutex_lock(&create_lock);
    m = atomic_load_explicit(&aliases, memory_order_acquire);
    if (!m) {
        int64_t bytes = (cfg->cache.backend_redis ? cfg->cache.front_memory : cfg->cache.max_memory) / 8;
        if (bytes < 8 * 1024) bytes = 8 * 1024;
        m = cache_mem_new((size_t)bytes);
        atomic_store_explicit(&aliases, m, memory_order_release);
    }
    pthread_mutex_unlock(&create_lock);
    return m;
}

struct sem_index *cache_index(void)
{
    return atomic_load_explicit(&index_, memory_order_acquire);
}

struct sem_index *cache_index_create(const struct config *cfg)
{
    struct sem_index *s = cache_index();
    if (s) return s;
    pthread_mutex_lock(&create_lock);
    s = atomic_load_explicit(&index_, memory_order_acquire);
    if (!s) {
        s = sem_index_new((size_t)cfg->cache.semantic.max_entries);
        atomic_store_explicit(&index_, s, memory_order_release);
    }
    pthread_mutex_unlock(&create_lock);
    return s;
}

void cache_count_hit(bool semantic, nanos_t saved_nanos)
{
    atomic_fetch_add_explicit(semantic ? &semantic_hits : &hits, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&saved, saved_nanos, memory_order_relaxed);
}

void cache_count_miss(void)
{
    atomic_fetch_add_explicit(&misses, 1, memory_order_relaxed);
}

void cache_count_store(void)
{
    atomic_fetch_add_explicit(&stores, 1, memory_order_relaxed);
}

void cache_count_not_stored(void)
{
    atomic_fetch_add_explicit(&not_stored, 1, memory_order_relaxed);
}

void cache_count_embed_error(void)
{
    atomic_fetch_add_explicit(&embed_errors, 1, memory_order_relaxed);
}

void cache_count_backend_error(void)
{
    atomic_fetch_add_explicit(&backend_errors, 1, memory_order_relaxed);
}

void cache_stats_get(const struct config *cfg, struct cache_stats *out)
{
    memset(out, 0, sizeof *out);
    out->enabled = cfg->cache.enabled;
    out->semantic = cfg->cache.enabled && cfg->cache.semantic.enabled;
    out->redis = cfg->cache.enabled && cfg->cache.backend_redis;
    out->hits = atomic_load_explicit(&hits, memory_order_relaxed);
    out->semantic_hits = atomic_load_explicit(&semantic_hits, memory_order_relaxed);
    out->misses = atomic_load_explicit(&misses, memory_order_relaxed);
    out->stores = atomic_load_explicit(&stores, memory_order_relaxed);
    out->not_stored = atomic_load_explicit(&not_stored, memory_order_relaxed);
    out->embed_errors = atomic_load_explicit(&embed_errors, memory_order_relaxed);
    out->backend_errors = atomic_load_explicit(&backend_errors, memory_order_relaxed);
    out->saved_nanos = atomic_load_explicit(&saved, memory_order_relaxed);
    struct cache_mem *m = atomic_load_explicit(&store, memory_order_acquire);
    if (m) {
        struct cache_mem_stats ms;
        cache_mem_stats_get(m, &ms);
        out->entries = ms.entries;
        out->bytes = ms.bytes;
        out->max_bytes = ms.max_bytes;
        out->evictions = ms.evictions;
        out->expired = ms.expired;
    } else if (cfg->cache.enabled) {
        out->max_bytes = (uint64_t)(cfg->cache.backend_redis ? cfg->cache.front_memory
                                                             : cfg->cache.max_memory);
    }
    /* The raw-key aliases are part of what the cache holds in memory. */
    struct cache_mem *al = atomic_load_explicit(&aliases, memory_order_acquire);
    if (al) {
        struct cache_mem_stats as;
        cache_mem_stats_get(al, &as);
        out->bytes += as.bytes;
        out->max_bytes += as.max_bytes;
    }
    struct sem_index *s = cache_index();
    if (s) {
        struct sem_index_stats ss;
        sem_index_stats_get(s, &ss);
        out->semantic_entries = ss.entries;
        out->semantic_bytes = ss.bytes;
    }
}

struct clear_filter {
    const char *model, *scope;
};

static bool entry_matches(const char *blob, size_t len, void *arg)
{
    const struct clear_filter *f = arg;
    struct cache_entry e;
    if (cache_entry_decode(blob, len, &e) != 0) return true; /* unreadable: out with it */
    if (f->model && strcmp(e.model, f->model) != 0) return false;
    if (f->scope && strcmp(e.scope, f->scope) != 0) return false;
    return true;
}

size_t cache_clear_local(const char *model, const char *scope)
{
    struct cache_mem *m = atomic_load_explicit(&store, memory_order_acquire);
    size_t n = 0;
    if (m) {
        struct clear_filter f = {model, scope};
        n = cache_mem_clear(m, model || scope ? entry_matches : NULL, &f);
    }
    /* Aliases name no model or scope: every clear drops them all (they are
     * shortcuts; the next hit of each entry parses its body once). */
    struct cache_mem *al = atomic_load_explicit(&aliases, memory_order_acquire);
    if (al) cache_mem_clear(al, NULL, NULL);
    /* The index only points at entries: a vector whose entry is gone is
     * dropped when a search meets it. Everything cleared: drop them all. */
    struct sem_index *s = cache_index();
    if (s && !model && !scope) sem_index_clear(s);
    return n;
}

void cache_cleanup(void)
{
    cache_mem_free(atomic_exchange(&store, NULL));
    cache_mem_free(atomic_exchange(&aliases, NULL));
    sem_index_free(atomic_exchange(&index_, NULL));
}
