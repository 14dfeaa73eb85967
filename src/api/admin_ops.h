/* admin_ops: GET /aiproxy/status, GET /aiproxy/mesh/status,
 * GET /aiproxy/admin/stats, POST /aiproxy/admin/reload. */
#ifndef AIPROXY_API_ADMIN_OPS_H
#define AIPROXY_API_ADMIN_OPS_H

struct http_request;
struct config;
struct metrics_extra;

/* Node, uptime, request totals, every provider with health, circuit state,
 * latency and in-flight, the budget windows (any valid key). */
void admin_ops_status(struct http_request *req);
/* The standard's section 5.4 shape; peers are listed as "not_connected"
 * (this build has no mesh federation) (any valid key). */
void admin_ops_mesh(struct http_request *req);
/* The dashboard's figures: per-second and per-minute history, latency and
 * TTFT percentiles, spend, cost by provider and model, providers, recent
 * errors (admin). */
void admin_ops_stats(struct http_request *req);
/* Asks the main thread to reload the config and answers when it has: 200
 * {"status":"reloaded"} or 422 with the config's errors (admin). The
 * worker never blocks: it polls the outcome on a timer. */
void admin_ops_reload(struct http_request *req);

/* Budget and ledger figures for the metrics exposition. */
void admin_metrics_extra(const struct config *cfg, struct metrics_extra *x);

#endif
