/* upstream_slot: per-worker outbound connections, kept in the worker's slot. */
#include "api/upstream_slot.h"

#include <stdlib.h>

#include "cache/redis_store.h"
#include "cluster/redis.h"
#include "cluster/store.h"
#include "core/alloc.h"
#include "http/server.h"
#include "upstream/client.h"

struct worker_slot {
    struct upstream_pool *pool;
    struct redis_conn *store;
    struct redis_conn *cache;
};

static struct worker_slot *slot_of(struct http_worker *w)
{
    struct worker_slot *s = http_worker_get_slot(w);
    if (!s) {
        s = xcalloc(1, sizeof *s);
        s->pool = upstream_pool_new(http_worker_base(w), http_worker_dns(w));
        http_worker_set_slot(w, s);
    }
    return s;
}

struct upstream_pool *api_upstream_pool(struct http_worker *w)
{
    return slot_of(w)->pool;
}

struct redis_conn *api_store_conn(struct http_worker *w)
{
    if (!store_enabled()) return NULL;
    struct worker_slot *s = slot_of(w);
    if (!s->store) s->store = redis_conn_new(http_worker_base(w));
    return s->store;
}

struct redis_conn *api_cache_conn(struct http_worker *w)
{
    if (!cache_redis_enabled()) return NULL;
    struct worker_slot *s = slot_of(w);
    if (!s->cache) s->cache = redis_conn_new(http_worker_base(w));
    return s->cache;
}

void api_upstream_pool_free(void *slot)
{
    struct worker_slot *s = slot;
    redis_conn_free(s->cache);
    redis_conn_free(s->store);
    upstream_pool_free(s->pool);
    free(s);
}
