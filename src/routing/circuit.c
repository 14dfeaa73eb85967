/* circuit: closed / open / half-open over the outcome window. */
#include "routing/circuit.h"

#include <stdio.h>

#include "routing/stats.h"

const char *circuit_state_name(enum circuit_state s)
{
    switch (s) {
    case CIRCUIT_CLOSED: return "closed";
    case CIRCUIT_OPEN: return "open";
    case CIRCUIT_HALF_OPEN: return "half-open";
    }
    return "unknown";
}

static bool over_threshold(const struct provider_stats *s, double threshold, int64_t now_ms,
                           int *failures, int *total)
{
    provider_stats_window(s, now_ms, failures, total);
    if (*total < CIRCUIT_MIN_SAMPLES) return false;
    /* failures / total > threshold, in integers (per mille) */
    long long permille = (long long)(threshold * 1000.0 + 0.5);
    return (long long)*failures * 1000 > permille * (long long)*total;
}

enum circuit_state circuit_state(const struct provider_stats *s, double threshold, int64_t now_ms)
{
    if (!s) return CIRCUIT_CLOSED;
    int failures, total;
    if (!over_threshold(s, threshold, now_ms, &failures, &total)) return CIRCUIT_CLOSED;
    int64_t last = atomic_load_explicit(&s->last_failure_ms, memory_order_relaxed);
    if (now_ms - last < CIRCUIT_COOLDOWN_MS) return CIRCUIT_OPEN;
    return CIRCUIT_HALF_OPEN;
}

bool circuit_should_skip(struct provider_stats *s, double threshold, int64_t now_ms,
                         bool *probe, char *why, size_t why_cap)
{
    *probe = false;
    if (why_cap) why[0] = '\0';
    if (!s) return false;
    int failures, total;
    if (!over_threshold(s, threshold, now_ms, &failures, &total)) return false;
    int64_t last = atomic_load_explicit(&s->last_failure_ms, memory_order_relaxed);
    if (now_ms - last < CIRCUIT_COOLDOWN_MS) {
        snprintf(why, why_cap, "circuit open: %d/%d recent attempts failed, retry in %lld ms",
                 failures, total, (long long)(CIRCUIT_COOLDOWN_MS - (now_ms - last)));
        return true;
    }
    long long held = atomic_load_explicit(&s->probe_ms, memory_order_relaxed);
    while (held == 0 || now_ms - held >= CIRCUIT_COOLDOWN_MS) {
        if (atomic_compare_exchange_weak_explicit(&s->probe_ms, &held, now_ms ? now_ms : 1,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            *probe = true;
            snprintf(why, why_cap, "circuit half-open: probe after %d/%d failures", failures,
                     total);
            return false;
        }
    }
    snprintf(why, why_cap, "circuit half-open: a probe is already out");
    return true;
}

void circuit_on_result(struct provider_stats *s, bool ok, int64_t now_ms)
{
    if (!s) return;
    if (!ok) atomic_store_explicit(&s->last_failure_ms, now_ms, memory_order_relaxed);
    long long held = atomic_exchange_explicit(&s->probe_ms, 0, memory_order_relaxed);
    if (ok && held != 0) atomic_store_explicit(&s->window, 0, memory_order_relaxed);
}

void circuit_on_no_result(struct provider_stats *s)
{
    if (!s) return;
    atomic_store_explicit(&s->probe_ms, 0, memory_order_relaxed);
}
