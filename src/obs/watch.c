/* watch: the circuit transition sampler (one thread, a fixed table). */
#include "obs/watch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "core/clock.h"
#include "core/log.h"
#include "routing/circuit.h"
#include "routing/stats.h"

struct seen {
    _Atomic(const struct provider_stats *) stats; /* NULL: free; set once by the watcher */
    enum circuit_state state;
    atomic_ullong transitions;
};

static struct seen table[STATS_MAX_PROVIDERS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct config *current;
static bool running, stopping;
static pthread_t thread;

static struct seen *slot_for(const struct provider_stats *s)
{
    for (int i = 0; i < STATS_MAX_PROVIDERS; i++) {
        const struct provider_stats *cur = atomic_load(&table[i].stats);
        if (cur == s) return &table[i];
        if (!cur) {
            table[i].state = CIRCUIT_CLOSED;
            atomic_store(&table[i].stats, s);
            return &table[i];
        }
    }
    return NULL;
}

static void sample(const struct config *cfg)
{
    int64_t now = clock_mono_ms();
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct config_provider *p = &cfg->providers[i];
        if (!p->stats) continue;
        struct seen *e = slot_for(p->stats);
        if (!e) continue;
        enum circuit_state st = circuit_state(p->stats, cfg->routing.unhealthy_threshold, now);
        if (st == e->state) continue;
        int failures, total;
        provider_stats_window(p->stats, now, &failures, &total);
        if (st == CIRCUIT_OPEN)
            log_event(LOG_WARN, "circuit_open", "provider %s: circuit open: %d/%d recent attempts "
                      "failed (threshold %.0f%%); skipped for %d ms", p->name, failures, total,
                      cfg->routing.unhealthy_threshold * 100.0, CIRCUIT_COOLDOWN_MS);
        else if (st == CIRCUIT_HALF_OPEN)
            log_event(LOG_INFO, "circuit_half_open", "provider %s: circuit half-open: the next "
                      "request is a probe", p->name);
        else
            log_event(LOG_INFO, "circuit_closed", "provider %s: circuit closed: traffic flows "
                      "again", p->name);
        e->state = st;
        atomic_fetch_add(&e->transitions, 1);
    }
}

static void *watch_main(void *arg)
{
    pthread_mutex_lock(&lock);
    while (!stopping) {
        struct config *cfg = config_ref(current);
        pthread_mutex_unlock(&lock);
        sample(cfg);
        config_unref(cfg);
        pthread_mutex_lock(&lock);
        struct timespec until = clock_realtime_after_ms(WATCH_INTERVAL_MS);
        if (!stopping) pthread_cond_timedwait(&wake, &lock, &until);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

void watch_start(struct config *cfg)
{
    pthread_mutex_lock(&lock);
    current = config_ref(cfg);
    stopping = false;
    running = pthread_create(&thread, NULL, watch_main, NULL) == 0;
    pthread_mutex_unlock(&lock);
}

void watch_set_config(struct config *cfg)
{
    pthread_mutex_lock(&lock);
    struct config *old = current;
    current = config_ref(cfg);
    pthread_mutex_unlock(&lock);
    config_unref(old);
}

void watch_stop(void)
{
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_cond_signal(&wake);
    bool was = running;
    running = false;
    pthread_mutex_unlock(&lock);
    if (was) pthread_join(thread, NULL);
    pthread_mutex_lock(&lock);
    config_unref(current);
    current = NULL;
    pthread_mutex_unlock(&lock);
}

uint64_t watch_transitions(const char *name)
{
    for (int i = 0; i < STATS_MAX_PROVIDERS; i++) {
        const struct provider_stats *s = atomic_load(&table[i].stats);
        if (!s) break;
        if (strcmp(s->name, name) == 0) return atomic_load(&table[i].transitions);
    }
    return 0;
}
