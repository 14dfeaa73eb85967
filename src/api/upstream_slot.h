/* upstream_slot: each worker's outbound connections, created on first use
 * and freed when the worker exits: its upstream connection pool and its
 * connections to the shared store (cluster.redis) and the cache's Redis. */
#ifndef AIPROXY_API_UPSTREAM_SLOT_H
#define AIPROXY_API_UPSTREAM_SLOT_H

struct http_worker;
struct upstream_pool;
struct redis_conn;

struct upstream_pool *api_upstream_pool(struct http_worker *w);
/* NULL when no shared store is configured. */
struct redis_conn *api_store_conn(struct http_worker *w);
/* The response cache's own connection (cache backend redis: a slow cache
 * read must not count against the shared store's limits); NULL when the
 * cache is not on Redis. */
struct redis_conn *api_cache_conn(struct http_worker *w);
/* For http_server_opts.slot_free. */
void api_upstream_pool_free(void *slot);

#endif
