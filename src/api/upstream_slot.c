/* upstream_slot: per-worker upstream pools, kept in the worker's slot. */
#include "api/upstream_slot.h"

#include "http/server.h"
#include "upstream/client.h"

struct upstream_pool *api_upstream_pool(struct http_worker *w)
{
    struct upstream_pool *p = http_worker_get_slot(w);
    if (!p) {
        p = upstream_pool_new(http_worker_base(w), http_worker_dns(w));
        http_worker_set_slot(w, p);
    }
    return p;
}

void api_upstream_pool_free(void *slot)
{
    upstream_pool_free(slot);
}
