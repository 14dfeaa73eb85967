/* stats: live per-provider figures (in-flight, attempts, failures, EWMA
 * latency and time to first token). They outlive config snapshots: a
 * provider keeps its figures across reloads by name. Updated with relaxed
 * atomics from every worker; read by routing, /v1/models, /metrics. */
#ifndef AIPROXY_ROUTING_STATS_H
#define AIPROXY_ROUTING_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define STATS_MAX_PROVIDERS 256

struct provider_stats {
    char name[128];
    atomic_llong in_flight;
    atomic_ullong attempts;
    atomic_ullong failures;
    atomic_ullong timeouts;
    atomic_llong ewma_latency_us; /* 0 until measured */
    atomic_llong ewma_ttft_us;    /* streams: time to first token */
};

/* The figures for provider `name`, created on first use (under a lock: call
 * at config load, not per request). NULL when the table is full. */
struct provider_stats *provider_stats_get(const char *name);

void provider_stats_begin(struct provider_stats *s);
/* Ends an attempt: `ok` false counts a failure (and `timeout` a timeout).
 * Latency feeds the EWMA (weight 1/8) only for successful attempts. */
void provider_stats_end(struct provider_stats *s, bool ok, bool timeout, int64_t latency_us);
void provider_stats_ttft(struct provider_stats *s, int64_t ttft_us);

/* Visits every provider's figures (for /metrics). */
void provider_stats_each(void (*fn)(const struct provider_stats *s, void *ctx), void *ctx);

#endif
