/* cache: the response cache's process-wide side (SPEC section 7): the
 * node's memory store (the whole cache with backend memory, the front of
 * Redis with backend redis), the semantic index, the counters for metrics
 * and status, and clearing. No sockets here: Redis is cache/redis_store.h,
 * the request flow's side api/proxy_cache.c. */
#ifndef AIPROXY_CACHE_CACHE_H
#define AIPROXY_CACHE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/money.h"

struct config;
struct cache_mem;
struct sem_index;

/* Created on first use with the config of that moment (max_memory, or the
 * redis backend's front_memory; semantic.max_entries): a reload does not
 * resize them (restart to). Never NULL. */
struct cache_mem *cache_store(const struct config *cfg);
/* The raw-key aliases (api/proxy_cache.c): a request's body bytes -> the
 * canonical key of its entry, so that a byte-identical repeat needs no
 * parse. Apart from the entries (an eighth of their memory), so that the
 * entries' figures and budget stay theirs. */
struct cache_mem *cache_aliases(const struct config *cfg);
/* NULL until cache_index_create ran (semantic enabled). */
struct sem_index *cache_index(void);
struct sem_index *cache_index_create(const struct config *cfg);

/* Counters (process-wide, relaxed atomics). */
void cache_count_hit(bool semantic, nanos_t saved);
void cache_count_miss(void);
void cache_count_store(void);
void cache_count_not_stored(void);  /* an answer that could not be kept (too big, unreadable) */
void cache_count_embed_error(void); /* the semantic step's embedding failed: a miss */
void cache_count_backend_error(void);

struct cache_stats {
    bool enabled, semantic, redis;
    uint64_t hits, semantic_hits, misses, stores, not_stored, embed_errors, backend_errors;
    nanos_t saved_nanos;
    uint64_t entries, bytes, max_bytes, evictions, expired; /* the memory store (or front) */
    uint64_t semantic_entries, semantic_bytes;
};
void cache_stats_get(const struct config *cfg, struct cache_stats *out);

/* Removes this node's entries (memory store and semantic index) of
 * `model` and `scope` (NULL: any). Returns how many. */
size_t cache_clear_local(const char *model, const char *scope);

/* Frees the store and the index (at exit). */
void cache_cleanup(void);

#endif
