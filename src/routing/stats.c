/* stats: a fixed table of per-provider atomics, looked up by name. */
#include "routing/stats.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static struct provider_stats table[STATS_MAX_PROVIDERS];
static atomic_int used;
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

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

static void ewma_update(atomic_llong *v, int64_t sample)
{
    int64_t old = atomic_load_explicit(v, memory_order_relaxed);
    int64_t next = old == 0 ? sample : old + (sample - old) / 8;
    if (next <= 0) next = 1;
    /* A lost update under a race only skips one sample. */
    atomic_store_explicit(v, next, memory_order_relaxed);
}

void provider_stats_end(struct provider_stats *s, bool ok, bool timeout, int64_t latency_us)
{
    if (!s) return;
    atomic_fetch_sub_explicit(&s->in_flight, 1, memory_order_relaxed);
    if (!ok) {
        atomic_fetch_add_explicit(&s->failures, 1, memory_order_relaxed);
        if (timeout) atomic_fetch_add_explicit(&s->timeouts, 1, memory_order_relaxed);
        return;
    }
    if (latency_us > 0) ewma_update(&s->ewma_latency_us, latency_us);
}

void provider_stats_ttft(struct provider_stats *s, int64_t ttft_us)
{
    if (s) ewma_update(&s->ewma_ttft_us, ttft_us);
}

void provider_stats_each(void (*fn)(const struct provider_stats *s, void *ctx), void *ctx)
{
    int n = atomic_load(&used);
    for (int i = 0; i < n; i++) fn(&table[i], ctx);
}
