/* stats: live per-provider figures (in-flight, attempts, failures, EWMA
 * latency and time to first token, a sliding window of recent outcomes and
 * the circuit breaker's state). They outlive config snapshots: a provider
 * keeps its figures across reloads by name. Updated with relaxed atomics
 * from every worker; read by routing, /v1/models, /metrics. The circuit's
 * decisions live in routing/circuit.h. */
#ifndef AIPROXY_ROUTING_STATS_H
#define AIPROXY_ROUTING_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define STATS_MAX_PROVIDERS 256

/* The outcome window: the last STATS_WINDOW attempts, forgotten when the
 * newest is older than STATS_WINDOW_MAX_AGE_MS. */
#define STATS_WINDOW 20
#define STATS_WINDOW_MAX_AGE_MS 60000

struct provider_stats {
    char name[128];
    atomic_llong in_flight;
    atomic_ullong attempts;
    atomic_ullong failures;
    atomic_ullong timeouts;
    atomic_llong ewma_latency_us; /* 0 until measured */
    atomic_llong ewma_ttft_us;    /* streams: time to first token */
    atomic_ullong latency_samples; /* successful attempts measured */
    atomic_ullong ttft_samples;
    /* The window in one word, so that a push is one CAS: bits 0..19 are
     * outcomes (1 = failure, bit 0 newest), bits 32..39 how many are valid. */
    atomic_ullong window;
    atomic_llong window_last_ms; /* monotonic ms of the newest outcome */
    atomic_llong last_failure_ms; /* monotonic ms; the cool-down counts from it */
    /* Half-open: the monotonic ms at which a probe was let through, 0 when
     * none is out. A stale probe (older than the cool-down) may be replaced. */
    atomic_llong probe_ms;
    atomic_ullong circuit_opens; /* how many times the circuit opened */
};

/* The figures for provider `name`, created on first use (under a lock: call
 * at config load, not per request). NULL when the table is full. */
struct provider_stats *provider_stats_get(const char *name);

void provider_stats_begin(struct provider_stats *s);
/* Begins an attempt unless `max` (> 0) are already in flight, atomically,
 * so the cap holds across workers. Returns false at capacity; max <= 0
 * means no cap. */
bool provider_stats_try_begin(struct provider_stats *s, int max);
/* Ends an attempt: `ok` false counts a failure (and `timeout` a timeout).
 * Latency feeds the EWMA (weight 1/8) only for successful attempts. The
 * outcome goes into the window and drives the circuit (circuit_on_result)
 * at the current monotonic time. */
void provider_stats_end(struct provider_stats *s, bool ok, bool timeout, int64_t latency_us);
/* The same at an explicit monotonic time (tests, and callers that have it). */
void provider_stats_end_at(struct provider_stats *s, bool ok, bool timeout, int64_t latency_us,
                           int64_t now_ms);
void provider_stats_ttft(struct provider_stats *s, int64_t ttft_us);

/* Failures and total outcomes in the window at `now_ms` (both 0 when the
 * window has aged out). */
void provider_stats_window(const struct provider_stats *s, int64_t now_ms, int *failures,
                           int *total);

/* Forgets every figure of `s` except its name (tests). */
void provider_stats_reset(struct provider_stats *s);

/* A process-wide counter for round-robin: each call returns the next value. */
uint64_t provider_stats_rr_next(void);

/* Visits every provider's figures (for /metrics). */
void provider_stats_each(void (*fn)(const struct provider_stats *s, void *ctx), void *ctx);

#endif
