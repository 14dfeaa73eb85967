/* redis_store: the response cache's redis backend (SPEC section 7,
 * cache.backend redis): entries shared by every node on one Redis (the
 * cluster's, cluster.redis, else cache.redis.url), under the prefix:
 *
 *   <prefix>c:<scope hash>:<model hash>:<key>  the entry's blob, PX its ttl
 *   <prefix>c:sem    a stream of semantic vectors (partition, key, expiry,
 *                    vector), capped near semantic.max_entries
 *   <prefix>c:clears a counter every clear increments
 *
 * A watcher thread (its own loop and connection) rebuilds the node's
 * semantic index from the stream at start and follows it (vectors other
 * nodes added), and empties the node's in-memory front when another node
 * cleared the cache. Workers read and write entries on their own
 * connections (api/upstream_slot.h); this module builds the commands. */
#ifndef AIPROXY_CACHE_REDIS_STORE_H
#define AIPROXY_CACHE_REDIS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

struct config;
struct redis_conn;

/* With cache enabled on backend redis: opens the Redis settings when the
 * cluster did not (cache.redis.url) and starts the watcher. Returns 0 (also
 * when there is nothing to do), -1 with `err` on a bad setting. Call after
 * store_start. */
int cache_redis_start(const struct config *cfg, char *err, size_t errcap);
void cache_redis_stop(void);
bool cache_redis_enabled(void);

/* The Redis key of an entry (NUL-terminated into out, which holds at
 * least CACHE_REDIS_KEY_MAX bytes). */
#define CACHE_REDIS_KEY_MAX 256
size_t cache_redis_entry_key(char *out, const char *scope, const char *model,
                             const uint8_t key[32]);

/* Fire-and-forget writes on a worker's connection (failures are counted). */
void cache_redis_put(struct redis_conn *c, const char *redis_key, const char *blob, size_t len,
                     int64_t ttl_ms);
void cache_redis_put_vector(struct redis_conn *c, const uint8_t partition[32],
                            const uint8_t key[32], const float *vec, size_t dims,
                            int64_t expires_ms, int64_t max_entries);

/* The command (an EVAL) that deletes the shared entries of `model` /
 * `scope` (NULL: any; everything also drops the vector stream) and tells
 * the other nodes (their watchers empty their fronts). Its reply is the
 * number deleted. argv/lens need CACHE_REDIS_CLEAR_ARGS slots; the
 * strings are in `a`. Returns argc. */
#define CACHE_REDIS_CLEAR_ARGS 8
int cache_redis_clear_command(struct arena *a, const char *model, const char *scope,
                              const char **argv, size_t *lens);

#endif
