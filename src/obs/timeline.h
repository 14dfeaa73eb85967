/* timeline: the dashboard's recent history, kept in memory. A per-second
 * ring (TL_SECONDS) of request, error and cost counts, and a per-minute
 * ring (TL_MINUTES) that adds latency and time-to-first-token histograms
 * (log-spaced buckets) from which p50/p95/p99 are read. Slots are tagged
 * with their second or minute and reused when the clock moves on; updates
 * are relaxed atomics (a request racing a slot's reuse may be lost: this
 * is a picture for people, /metrics holds the exact counters).
 *
 * Also the last TL_ERRORS failed requests (time, request id, path, model,
 * provider, status, a short message; never a secret), under a small lock
 * taken only by failed requests. */
#ifndef AIPROXY_OBS_TIMELINE_H
#define AIPROXY_OBS_TIMELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/money.h"

#define TL_SECONDS 300
#define TL_MINUTES 60
#define TL_ERRORS 50

/* Records one finished proxied request at unix second `now_s`.
 * `ttft_us` < 0 when it was not a stream. */
void timeline_record(int64_t now_s, int status, int64_t duration_us, int64_t ttft_us,
                     nanos_t cost);

struct timeline_point {
    int64_t t; /* unix seconds at the start of the slot */
    uint64_t requests, errors;
    nanos_t cost;
    /* per-minute only; -1 when the minute had no sample */
    double p50_ms, p95_ms, p99_ms;
    double ttft_p50_ms, ttft_p95_ms;
    uint64_t ttft_count;
};

/* The last `n` seconds (oldest first) ending at `now_s` inclusive; n <= TL_SECONDS. */
void timeline_seconds(int64_t now_s, size_t n, struct timeline_point *out);
/* The last `n` minutes (oldest first), the current one included; n <= TL_MINUTES. */
void timeline_minutes(int64_t now_s, size_t n, struct timeline_point *out);
/* Percentiles over the last `minutes` minutes together (p in 0..100). */
double timeline_percentile(int64_t now_s, size_t minutes, double p, bool ttft);

struct timeline_error {
    int64_t ts_ms; /* unix ms */
    char request_id[32];
    char path[64];
    char model[96];
    char provider[64];
    int status;
    char message[160];
};

/* Remembers a failed request (status >= 400). Strings may be NULL. */
void timeline_error(int64_t ts_ms, const char *request_id, const char *path, const char *model,
                    const char *provider, int status, const char *message);
/* Copies up to `cap` of the most recent errors, newest first; returns how many. */
size_t timeline_errors(struct timeline_error *out, size_t cap);

#endif
