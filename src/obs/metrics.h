/* metrics: Prometheus counters, gauges and histograms for the gateway,
 * updated with relaxed atomics from every worker (no lock on the hot path)
 * and rendered as text exposition for GET /metrics and the optional
 * observability.metrics.prometheus_port listener.
 *
 * Label cardinality is bounded by construction: providers, models and key
 * names are interned into fixed tables of METRICS_MAX_LABELS values each
 * (lock-free, first come first served); a value past the cap, a model no
 * provider serves, or a series past the series table's capacity is folded
 * into "other". Per-provider live figures (in-flight, attempts, EWMA,
 * circuit) come from routing/stats.h. */
#ifndef AIPROXY_OBS_METRICS_H
#define AIPROXY_OBS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/money.h"

struct http_request;
struct config;

#define METRICS_MAX_LABELS 64   /* distinct providers, models, key names each */
#define METRICS_MAX_SERIES 4096 /* provider x model x key x status class series */

/* Notes the start time; call once before the workers start. */
void metrics_init(void);
/* Unix seconds at metrics_init. */
int64_t metrics_start_time(void);

/* A request entered the dispatcher (in-flight gauge); pair with
 * metrics_record_request(req, true). */
void metrics_request_begin(void);
/* Records a finished request (from the completion hook). `begun`: it was
 * counted by metrics_request_begin. `key_name`: the authenticated key's
 * name (never the key), NULL when none. */
void metrics_record_request(const struct http_request *req, bool begun, const char *key_name);
void metrics_stream_open(void);
void metrics_stream_close(void);
void metrics_record_ttft(int64_t us);
/* The same per provider (its own histogram). */
void metrics_record_ttft_provider(const char *provider, int64_t us);
/* An attempt failed and the request moves on; `reason` is an
 * enum attempt_failure (routing/retry.h). */
void metrics_failover_reason(int reason);
/* Admission refusals (from api/admission). */
void metrics_rate_limited(bool tokens);
void metrics_budget_rejected(void);
/* A bearer token refused; `reason` is an enum jwt_reason (security/jwt.h). */
void metrics_jwt_refused(int reason);

/* Figures the api layer gathers for the exposition (budget windows, the
 * ledger), so that obs/ stays below api/. */
struct metrics_extra {
    nanos_t day_spent, month_spent;
    nanos_t day_limit, month_limit; /* 0 = none */
    long long ledger_queue, ledger_committed, ledger_dropped;
    bool have_ledger;
    /* the PostgreSQL ledger (budget.cost_db postgres://; SQLite: up, zeros) */
    bool ledger_db_up;
    long long ledger_db_committed, ledger_spooled, ledger_spool_depth;
    /* the shared store (cluster.redis) */
    bool have_store, store_up;
    long long store_errors, store_timeouts, store_reconciliations, store_deferred;
    /* the response cache (only when cache.enabled); entries and bytes are
     * this node's memory store (with backend redis, its front) */
    bool have_cache;
    uint64_t cache_hits, cache_semantic_hits, cache_misses, cache_stores;
    uint64_t cache_entries, cache_bytes, cache_max_bytes, cache_evictions, cache_expired;
    nanos_t cache_saved; /* what the hits would have cost */
    uint64_t cache_embed_errors, cache_backend_errors, cache_semantic_entries;
    /* the context delta buffer (only when context.enabled) */
    bool have_context;
    long long context_projects, context_files, context_bytes;
    long long context_injections, context_tokens_injected, context_tokens_saved;
};

/* True when the family group `name` ("request_count", "request_duration",
 * "provider_errors", "cost_per_request", "tokens_processed", "ttft",
 * "streams", "providers", "budget", "rate_limits", "ledger", "tracing",
 * "store", "cache", "context", "tls") is exported under `cfg` (observability.metrics.collect;
 * empty = all). config/parse.c keeps its own copy of this list. */
bool metrics_collects(const struct config *cfg, const char *name);

/* Renders the exposition text into a heap buffer the caller frees. */
char *metrics_render(const struct config *cfg, const struct metrics_extra *x, size_t *len);

/* Totals for the dashboard and status (cheap: sums of atomics). */
struct metrics_totals {
    uint64_t requests, errors; /* errors: 5xx and aborted */
    int64_t in_flight, open_streams;
    nanos_t cost;
    uint64_t tokens_in, tokens_out;
};
void metrics_totals(struct metrics_totals *out);

#endif
