/* stats: a fixed table of per-provider atomics, looked up by name, and the
 * outcome window that health decisions read. */
#include "routing/stats.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "routing/circuit.h"

static struct provider_stats table[STATS_MAX_PROVIDERS];
static atomic_int used;
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ullong rr_counter;

#define WINDOW_BITS_MASK ((1ull << STATS_WINDOW) - 1)

struct provider_stats *provider_stats_get(const char *name)
{
    pthread_mutex_lock(&create_lock);
    int n = atomic_load(&used);
    struct provider_stats *found = NULL;
    for (int i = 0; i < n && !found; i++)
        if (strcmp(table[i].name, name) == 0) found = &table[i];
    if (!found && n < STATS_MAX_PROVIDERS) {
        found = &table[n];
        snprintf(found->name, sizeof found->name, "%s", name);
        atomic_store(&used, n + 1);
    }
    pthread_mutex_unlock(&create_lock);
    return found;
}

void provider_stats_begin(struct provider_stats *s)
{
    if (!s) return;
    atomic_fetch_add_explicit(&s->in_flight, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->attempts, 1, memory_order_relaxed);
}

bool provider_stats_try_begin(struct provider_stats *s, int max)
{
    if (!s) return true;
    if (max <= 0) {
        provider_stats_begin(s);
        return true;
    }
    long long cur = atomic_load_explicit(&s->in_flight, memory_order_relaxed);
    do {
        if (cur >= max) return false;
    } while (!atomic_compare_exchange_weak_explicit(&s->in_flight, &cur, cur + 1,
                                                    memory_order_relaxed, memory_order_relaxed));
    atomic_fetch_add_explicit(&s->attempts, 1, memory_order_relaxed);
    return true;
}

static void ewma_update(atomic_llong *v, int64_t sample)
{
    int64_t old = atomic_load_explicit(v, memory_order_relaxed);
    int64_t next = old == 0 ? sample : old + (sample - old) / 8;
    if (next <= 0) next = 1;
    /* A lost update under a race only skips one sample. */
    atomic_store_explicit(v, next, memory_order_relaxed);
}

static void window_push(struct provider_stats *s, bool failed, int64_t now_ms)
{
    int64_t last = atomic_load_explicit(&s->window_last_ms, memory_order_relaxed);
    bool stale = last != 0 && now_ms - last > STATS_WINDOW_MAX_AGE_MS;
    unsigned long long old = atomic_load_explicit(&s->window, memory_order_relaxed), next;
    do {
        unsigned long long bits = stale ? 0 : old & WINDOW_BITS_MASK;
        unsigned long long count = stale ? 0 : (old >> 32) & 0xff;
        bits = ((bits << 1) | (failed ? 1u : 0u)) & WINDOW_BITS_MASK;
        if (count < STATS_WINDOW) count++;
        next = (count << 32) | bits;
    } while (!atomic_compare_exchange_weak_explicit(&s->window, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
    atomic_store_explicit(&s->window_last_ms, now_ms ? now_ms : 1, memory_order_relaxed);
}

void provider_stats_window(const struct provider_stats *s, int64_t now_ms, int *failures,
                           int *total)
{
    *failures = *total = 0;
    int64_t last = atomic_load_explicit(&s->window_last_ms, memory_order_relaxed);
    if (last == 0 || now_ms - last > STATS_WINDOW_MAX_AGE_MS) return;
    unsigned long long w = atomic_load_explicit(&s->window, memory_order_relaxed);
    int count = (int)((w >> 32) & 0xff);
    unsigned long long bits = w & WINDOW_BITS_MASK;
    if (count < STATS_WINDOW) bits &= (1ull << count) - 1;
    *total = count;
    *failures = __builtin_popcountll(bits);
}

void provider_stats_end_at(struct provider_stats *s, bool ok, bool timeout, int64_t latency_us,
                           int64_t now_ms)
{
    if (!s) return;
    atomic_fetch_sub_explicit(&s->in_flight, 1, memory_order_relaxed);
    window_push(s, !ok, now_ms);
    circuit_on_result(s, ok, now_ms);
    if (!ok) {
        atomic_fetch_add_explicit(&s->failures, 1, memory_order_relaxed);
        if (timeout) atomic_fetch_add_explicit(&s->timeouts, 1, memory_order_relaxed);
        return;
    }
    if (latency_us > 0) {
        ewma_update(&s->ewma_latency_us, latency_us);
        atomic_fetch_add_explicit(&s->latency_samples, 1, memory_order_relaxed);
    }
}

void provider_stats_end(struct provider_stats *s, bool ok, bool timeout, int64_t latency_us)
{
    provider_stats_end_at(s, ok, timeout, latency_us, clock_mono_ms());
}

void provider_stats_ttft(struct provider_stats *s, int64_t ttft_us)
{
    if (!s) return;
    ewma_update(&s->ewma_ttft_us, ttft_us);
    atomic_fetch_add_explicit(&s->ttft_samples, 1, memory_order_relaxed);
}

void provider_stats_reset(struct provider_stats *s)
{
    atomic_store(&s->in_flight, 0);
    atomic_store(&s->attempts, 0);
    atomic_store(&s->failures, 0);
    atomic_store(&s->timeouts, 0);
    atomic_store(&s->ewma_latency_us, 0);
    atomic_store(&s->ewma_ttft_us, 0);
    atomic_store(&s->latency_samples, 0);
    atomic_store(&s->ttft_samples, 0);
    atomic_store(&s->window, 0);
    atomic_store(&s->window_last_ms, 0);
    atomic_store(&s->last_failure_ms, 0);
    atomic_store(&s->probe_ms, 0);
    atomic_store(&s->circuit_opens, 0);
}

uint64_t provider_stats_rr_next(void)
{
    return atomic_fetch_add_explicit(&rr_counter, 1, memory_order_relaxed);
}

void provider_stats_each(void (*fn)(const struct provider_stats *s, void *ctx), void *ctx)
{
    int n = atomic_load(&used);
    for (int i = 0; i < n; i++) fn(&table[i], ctx);
}
