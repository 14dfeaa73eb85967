/* stats: live figures (in-flight, attempts, failures, EWMA latency and time
 * to first token, a sliding window of recent outcomes, the circuit
 * breaker's state and the active health check's verdict) at four grains:
 *   provider          "openai"                     (/metrics, /v1/endpoints)
 *   provider+endpoint one base URL of a provider with an `endpoints:` list
 *   provider+model    one model on a provider      (/v1/models, latency_optimized)
 *   leaf              one model on one endpoint    (only with several endpoints)
 * An attempt is counted on its leaf (the model entry when the provider has
 * one endpoint), which passes every figure on to its coarser entries
 * (`links`), so one begin/end call keeps every grain right. The circuit
 * (routing/circuit.h) is judged on the leaf; the health check's `down` flag
 * lives on the endpoint-level entry (the provider's own with one endpoint).
 * Entries outlive config snapshots: they are found again by name after a
 * reload, and never freed. Updated with relaxed atomics from every worker;
 * looked up without a lock (created under one). */
#ifndef AIPROXY_ROUTING_STATS_H
#define AIPROXY_ROUTING_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* How many entries of every grain the process keeps; past it, lookups of new
 * model/endpoint entries fall back to the provider's. */
#define STATS_MAX_ENTRIES 4096
#define STATS_MAX_PROVIDERS 256 /* kept for callers sizing per-provider arrays */

/* The outcome window: the last STATS_WINDOW attempts, forgotten when the
 * newest is older than STATS_WINDOW_MAX_AGE_MS. */
#define STATS_WINDOW 20
#define STATS_WINDOW_MAX_AGE_MS 60000

enum stats_grain { STATS_PROVIDER, STATS_ENDPOINT, STATS_MODEL, STATS_LEAF };

struct provider_stats {
    char name[128]; /* the provider's name (the key given to provider_stats_get) */
    const char *key; /* unique: name, name\x1fmodel, name\x1f@url, name\x1fmodel\x1f@url */
    enum stats_grain grain;
    /* The coarser entries an attempt on this one also counts on, NULL
     * after the last. links[0] is the endpoint-level entry (the cap holder
     * for max_concurrency): leaf -> {endpoint, model, provider}; model ->
     * {provider}; provider and endpoint -> {}. */
    struct provider_stats *links[3];
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

    /* Active health checks (api/health.c), on endpoint-level entries. */
    atomic_bool down;            /* failed health_check_failures checks in a row */
    atomic_int check_failures;   /* consecutive failed checks */
    atomic_llong checked_ms;     /* monotonic ms of the last check, 0 never */
    atomic_llong check_latency_us; /* the last successful check's latency */
    atomic_ullong rr; /* round-robin turns over this provider's endpoints */
};

/* The provider-level figures for `name`, created on first use (under a
 * lock: call at config load, not per request). NULL when the table is full. */
struct provider_stats *provider_stats_get(const char *name);

/* The finer entries of provider entry `p` (NULL p gives NULL). Found without
 * a lock once they exist (safe per request); created on first use. When the
 * table is full they fall back to `p`. */
struct provider_stats *provider_stats_model(struct provider_stats *p, const char *model);
struct provider_stats *provider_stats_endpoint(struct provider_stats *p, const char *url);
struct provider_stats *provider_stats_leaf(struct provider_stats *p, const char *model,
                                           const char *url);

/* The endpoint-level entry of `s`: links[0], or `s` itself when it has no
 * links (a provider or an endpoint entry). NULL for NULL. */
struct provider_stats *provider_stats_endpoint_of(struct provider_stats *s);

/* Begins an attempt on `s` and its links. */
void provider_stats_begin(struct provider_stats *s);
/* Begins an attempt unless `max` (> 0) are already in flight on the
 * endpoint-level entry, atomically, so the cap holds across workers.
 * Returns false at capacity; max <= 0 means no cap. */
bool provider_stats_try_begin(struct provider_stats *s, int max);
/* Ends an attempt on `s` and its links: `ok` false counts a failure (and
 * `timeout` a timeout). Latency feeds the EWMA (weight 1/8) only for
 * successful attempts. The outcome goes into each window and drives each
 * circuit (circuit_on_result) at the current monotonic time. */
void provider_stats_end(struct provider_stats *s, bool ok, bool timeout, int64_t latency_us);
/* The same at an explicit monotonic time (tests, and callers that have it). */
void provider_stats_end_at(struct provider_stats *s, bool ok, bool timeout, int64_t latency_us,
                           int64_t now_ms);
/* Ends an attempt on `s` and its links with no outcome of the provider's
 * (this process was out of descriptors or ports): in-flight goes down,
 * nothing enters the windows, a circuit probe it held is released. */
void provider_stats_abandon(struct provider_stats *s);
void provider_stats_ttft(struct provider_stats *s, int64_t ttft_us);

/* Failures and total outcomes in the window at `now_ms` (both 0 when the
 * window has aged out). Of `s` alone. */
void provider_stats_window(const struct provider_stats *s, int64_t now_ms, int *failures,
                           int *total);

/* An active health check's result on endpoint-level entry `s`: a failure
 * counts towards `threshold` consecutive ones, after which `s` is down; a
 * success brings it up. Returns +1 when it just went up, -1 when it just
 * went down, 0 otherwise. */
int provider_stats_check(struct provider_stats *s, bool ok, int threshold, int64_t latency_us,
                         int64_t now_ms);
/* Whether the health check holds `s` (any grain: its endpoint-level entry
 * is read) down. */
bool provider_stats_down(const struct provider_stats *s);

/* Closes `s`'s circuit: forgets its recent outcomes, its last failure and
 * any probe, keeping the counters and in-flight figures. For a peer that
 * has just proved it is back (a heartbeat answered): what failed before it
 * went away says nothing about it now. */
void provider_stats_forgive(struct provider_stats *s);

/* Forgets every figure of `s` except its name and links (tests). */
void provider_stats_reset(struct provider_stats *s);

/* A process-wide counter for round-robin: each call returns the next value. */
uint64_t provider_stats_rr_next(void);

/* Visits every provider-level entry (for /metrics). */
void provider_stats_each(void (*fn)(const struct provider_stats *s, void *ctx), void *ctx);

#endif
