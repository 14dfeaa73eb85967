/* memstore: the node's in-memory response cache (SPEC section 7): key ->
 * blob (cache/entry.h), shared by every worker thread, bounded by bytes
 * with least-recently-used eviction, entries expiring at their own time.
 *
 * Sharded by key: each shard has its own lock, LRU list and byte budget
 * (max_bytes / shards), so two workers seldom meet on one lock and a read
 * holds it only for a hash probe and a memcpy. Small budgets get one shard
 * (exact LRU); large ones up to 64. The bytes counted for an entry are its
 * blob plus its bookkeeping, so max_bytes bounds what the store holds. */
#ifndef AIPROXY_CACHE_MEMSTORE_H
#define AIPROXY_CACHE_MEMSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

struct cache_mem;

struct cache_mem *cache_mem_new(size_t max_bytes);
void cache_mem_free(struct cache_mem *m); /* NULL is ignored */

/* Copies the live entry for `key` into `a` (*blob, *len) and marks it most
 * recently used. An entry past its expiry (expires_ms <= now_ms) is removed
 * and counts as absent. Returns true when found. */
bool cache_mem_get(struct cache_mem *m, const uint8_t key[32], int64_t now_ms, struct arena *a,
                   char **blob, size_t *len);

/* Stores a copy of `blob` under `key` (replacing an older one), evicting
 * least recently used entries of its shard until it fits. Returns false
 * (storing nothing) when the entry alone is larger than a shard's budget. */
bool cache_mem_put(struct cache_mem *m, const uint8_t key[32], const char *blob, size_t len,
                   int64_t expires_ms);

bool cache_mem_remove(struct cache_mem *m, const uint8_t key[32]);

/* Removes every entry for which match(blob, len, arg) is true (NULL: all);
 * returns how many. */
size_t cache_mem_clear(struct cache_mem *m, bool (*match)(const char *blob, size_t len, void *arg),
                       void *arg);

struct cache_mem_stats {
    uint64_t entries;
    uint64_t bytes;     /* counted as for max_bytes */
    uint64_t max_bytes;
    uint64_t evictions; /* removed to make room (not expiries or clears) */
    uint64_t expired;   /* removed because their time was up */
};
void cache_mem_stats_get(struct cache_mem *m, struct cache_mem_stats *out);

#endif
