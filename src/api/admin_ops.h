/* admin_ops: GET /aiproxy/status, GET /aiproxy/admin/stats,
 * POST /aiproxy/admin/reload. */
#ifndef AIPROXY_API_ADMIN_OPS_H
#define AIPROXY_API_ADMIN_OPS_H

#include <stdint.h>

#include "routing/circuit.h"

struct http_request;
struct config;
struct config_provider;
struct metrics_extra;

/* A provider's health in one word: unavailable, down (circuit open),
 * degraded (half-open, or failures in the recent window), healthy,
 * unknown (no attempt yet); the circuit's state goes to *st_out. */
const char *admin_ops_provider_health(const struct config *cfg, const struct config_provider *p,
                                      int64_t now_ms, enum circuit_state *st_out);

/* Node, uptime, request totals, every provider with health, circuit state,
 * latency and in-flight, the budget windows, the shared store, the ledger
 * and the response cache (settings, entries, hits, misses, hit rate,
 * saved USD) (any valid key). */
void admin_ops_status(struct http_request *req);
/* The dashboard's figures: per-second and per-minute history, latency and
 * TTFT percentiles, spend, cost by provider and model, providers, recent
 * errors, the response cache (admin). */
void admin_ops_stats(struct http_request *req);
/* Asks the main thread to reload the config and answers when it has: 200
 * {"status":"reloaded"} or 422 with the config's errors (admin). The
 * worker never blocks: it polls the outcome on a timer. */
void admin_ops_reload(struct http_request *req);

/* Budget, ledger, shared-store and cache figures for the metrics
 * exposition. */
void admin_metrics_extra(const struct config *cfg, struct metrics_extra *x);

#endif
