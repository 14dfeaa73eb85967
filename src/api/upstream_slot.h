/* upstream_slot: each worker's upstream connection pool, created on first
 * use and freed when the worker exits. */
#ifndef AIPROXY_API_UPSTREAM_SLOT_H
#define AIPROXY_API_UPSTREAM_SLOT_H

struct http_worker;
struct upstream_pool;

struct upstream_pool *api_upstream_pool(struct http_worker *w);
/* For http_server_opts.slot_free. */
void api_upstream_pool_free(void *slot);

#endif
