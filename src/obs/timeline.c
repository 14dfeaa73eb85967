/* timeline: the per-second and per-minute rings and the recent-errors ring. */
#include "obs/timeline.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* Latency buckets: upper bound of bucket i is TL_BASE_MS * TL_RATIO^i
 * (1 ms .. about 20 minutes in 48 steps of 35%). */
#define TL_BUCKETS 48
#define TL_BASE_MS 1.0
#define TL_RATIO 1.35

struct sec_slot {
    _Atomic int64_t t;
    atomic_ullong requests, errors, cost;
};

struct min_slot {
    _Atomic int64_t t;
    atomic_ullong requests, errors, cost, ttft_count;
    atomic_ullong lat[TL_BUCKETS], ttft[TL_BUCKETS];
};

static struct sec_slot secs[TL_SECONDS];
static struct min_slot mins[TL_MINUTES];

static int bucket_of(int64_t us)
{
    double ms = (double)us / 1000.0;
    if (ms <= TL_BASE_MS) return 0;
    int b = (int)ceil(log(ms / TL_BASE_MS) / log(TL_RATIO));
    return b < 0 ? 0 : b >= TL_BUCKETS ? TL_BUCKETS - 1 : b;
}

static double bucket_mid_ms(int b)
{
    double hi = TL_BASE_MS * pow(TL_RATIO, b);
    return b == 0 ? hi / 2 : sqrt(hi * hi / TL_RATIO); /* geometric middle */
}

/* Claims slot `t` (resetting it when it held an older period). Returns
 * false when the slot already holds a newer one (a clock step back). */
static bool claim(_Atomic int64_t *slot_t, int64_t t, void (*reset)(void *), void *slot)
{
    int64_t cur = atomic_load_explicit(slot_t, memory_order_acquire);
    while (cur != t) {
        if (cur > t) return false;
        if (atomic_compare_exchange_weak(slot_t, &cur, t)) {
            reset(slot);
            return true;
        }
    }
    return true;
}

static void reset_sec(void *p)
{
    struct sec_slot *s = p;
    atomic_store(&s->requests, 0);
    atomic_store(&s->errors, 0);
    atomic_store(&s->cost, 0);
}

static void reset_min(void *p)
{
    struct min_slot *s = p;
    atomic_store(&s->requests, 0);
    atomic_store(&s->errors, 0);
    atomic_store(&s->cost, 0);
    atomic_store(&s->ttft_count, 0);
    for (int i = 0; i < TL_BUCKETS; i++) {
        atomic_store(&s->lat[i], 0);
        atomic_store(&s->ttft[i], 0);
    }
}

void timeline_record(int64_t now_s, int status, int64_t duration_us, int64_t ttft_us,
                     nanos_t cost)
{
    bool err = status >= 500 || status == 499;
    unsigned long long c = cost > 0 ? (unsigned long long)cost : 0;
    struct sec_slot *s = &secs[now_s % TL_SECONDS];
    if (claim(&s->t, now_s, reset_sec, s)) {
        atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
        if (err) atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&s->cost, c, memory_order_relaxed);
    }
    int64_t minute = now_s / 60;
    struct min_slot *m = &mins[minute % TL_MINUTES];
    if (claim(&m->t, minute, reset_min, m)) {
        atomic_fetch_add_explicit(&m->requests, 1, memory_order_relaxed);
        if (err) atomic_fetch_add_explicit(&m->errors, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->cost, c, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->lat[bucket_of(duration_us)], 1, memory_order_relaxed);
        if (ttft_us >= 0) {
            atomic_fetch_add_explicit(&m->ttft[bucket_of(ttft_us)], 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&m->ttft_count, 1, memory_order_relaxed);
        }
    }
}

void timeline_seconds(int64_t now_s, size_t n, struct timeline_point *out)
{
    if (n > TL_SECONDS) n = TL_SECONDS;
    for (size_t i = 0; i < n; i++) {
        int64_t t = now_s - (int64_t)(n - 1 - i);
        struct timeline_point *p = &out[i];
        memset(p, 0, sizeof *p);
        p->t = t;
        p->p50_ms = p->p95_ms = p->p99_ms = p->ttft_p50_ms = p->ttft_p95_ms = -1;
        if (t < 0) continue;
        struct sec_slot *s = &secs[t % TL_SECONDS];
        if (atomic_load(&s->t) != t) continue;
        p->requests = atomic_load(&s->requests);
        p->errors = atomic_load(&s->errors);
        p->cost = (nanos_t)atomic_load(&s->cost);
    }
}

static double pct(const unsigned long long *h, double p)
{
    unsigned long long total = 0;
    for (int i = 0; i < TL_BUCKETS; i++) total += h[i];
    if (!total) return -1;
    unsigned long long rank = (unsigned long long)ceil(p / 100.0 * (double)total);
    if (rank < 1) rank = 1;
    unsigned long long cum = 0;
    for (int i = 0; i < TL_BUCKETS; i++) {
        cum += h[i];
        if (cum >= rank) return bucket_mid_ms(i);
    }
    return bucket_mid_ms(TL_BUCKETS - 1);
}

static bool read_minute(int64_t minute, unsigned long long *lat, unsigned long long *ttft,
                        struct timeline_point *p)
{
    if (minute < 0) return false;
    struct min_slot *m = &mins[minute % TL_MINUTES];
    if (atomic_load(&m->t) != minute) return false;
    for (int i = 0; i < TL_BUCKETS; i++) {
        lat[i] += atomic_load(&m->lat[i]);
        ttft[i] += atomic_load(&m->ttft[i]);
    }
    if (p) {
        p->requests = atomic_load(&m->requests);
        p->errors = atomic_load(&m->errors);
        p->cost = (nanos_t)atomic_load(&m->cost);
        p->ttft_count = atomic_load(&m->ttft_count);
    }
    return true;
}

void timeline_minutes(int64_t now_s, size_t n, struct timeline_point *out)
{
    if (n > TL_MINUTES) n = TL_MINUTES;
    int64_t now_m = now_s / 60;
    for (size_t i = 0; i < n; i++) {
        int64_t minute = now_m - (int64_t)(n - 1 - i);
        struct timeline_point *p = &out[i];
        memset(p, 0, sizeof *p);
        p->t = minute * 60;
        unsigned long long lat[TL_BUCKETS] = {0}, ttft[TL_BUCKETS] = {0};
        read_minute(minute, lat, ttft, p);
        p->p50_ms = pct(lat, 50);
        p->p95_ms = pct(lat, 95);
        p->p99_ms = pct(lat, 99);
        p->ttft_p50_ms = pct(ttft, 50);
        p->ttft_p95_ms = pct(ttft, 95);
    }
}

double timeline_percentile(int64_t now_s, size_t minutes, double p, bool want_ttft)
{
    if (minutes > TL_MINUTES) minutes = TL_MINUTES;
    unsigned long long lat[TL_BUCKETS] = {0}, ttft[TL_BUCKETS] = {0};
    for (size_t i = 0; i < minutes; i++) read_minute(now_s / 60 - (int64_t)i, lat, ttft, NULL);
    return pct(want_ttft ? ttft : lat, p);
}

/* ---- recent errors ---- */

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static struct timeline_error errs[TL_ERRORS];
static size_t err_next, err_count;

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

void timeline_error(int64_t ts_ms, const char *request_id, const char *path, const char *model,
                    const char *provider, int status, const char *message)
{
    pthread_mutex_lock(&err_lock);
    struct timeline_error *e = &errs[err_next];
    e->ts_ms = ts_ms;
    copy(e->request_id, sizeof e->request_id, request_id);
    copy(e->path, sizeof e->path, path);
    copy(e->model, sizeof e->model, model);
    copy(e->provider, sizeof e->provider, provider);
    e->status = status;
    copy(e->message, sizeof e->message, message);
    err_next = (err_next + 1) % TL_ERRORS;
    if (err_count < TL_ERRORS) err_count++;
    pthread_mutex_unlock(&err_lock);
}

size_t timeline_errors(struct timeline_error *out, size_t cap)
{
    pthread_mutex_lock(&err_lock);
    size_t n = err_count < cap ? err_count : cap;
    for (size_t i = 0; i < n; i++) out[i] = errs[(err_next + TL_ERRORS - 1 - i) % TL_ERRORS];
    pthread_mutex_unlock(&err_lock);
    return n;
}
