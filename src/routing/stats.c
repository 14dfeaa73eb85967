/* stats: entries of every grain in an open-addressing table of pointers,
 * read without a lock and filled under one; the outcome window that health
 * decisions read; attempts counted on a leaf and its links. */
#include "routing/stats.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/str.h"
#include "core/clock.h"
#include "routing/circuit.h"

#define SLOTS (STATS_MAX_ENTRIES * 2) /* a power of two */

static _Atomic(struct provider_stats *) slots[SLOTS];
/* Every entry in creation order, for provider_stats_each. */
static struct provider_stats *created[STATS_MAX_ENTRIES];
static atomic_int used;
static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ullong rr_counter;

#define WINDOW_BITS_MASK ((1ull << STATS_WINDOW) - 1)

static uint64_t hash_key(const char *k)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *k; k++) {
        h ^= (unsigned char)*k;
        h *= 1099511628211ULL;
    }
    return h;
}

static struct provider_stats *find(const char *key, uint64_t h)
{
    for (size_t i = 0; i < SLOTS; i++) {
        struct provider_stats *s =
            atomic_load_explicit(&slots[(h + i) & (SLOTS - 1)], memory_order_acquire);
        if (!s) return NULL;
        if (strcmp(s->key, key) == 0) return s;
    }
    return NULL;
}

/* Finds or creates the entry for `key`; NULL when the table is full. */
static struct provider_stats *get_or_create(const char *key, const char *name,
                                            enum stats_grain grain, struct provider_stats *l0,
                                            struct provider_stats *l1, struct provider_stats *l2)
{
    uint64_t h = hash_key(key);
    struct provider_stats *s = find(key, h);
    if (s) return s;
    pthread_mutex_lock(&create_lock);
    s = find(key, h);
    int n = atomic_load(&used);
    if (!s && n < STATS_MAX_ENTRIES) {
        s = xcalloc(1, sizeof *s);
        snprintf(s->name, sizeof s->name, "%s", name);
        s->key = xstrdup(key);
        s->grain = grain;
        s->links[0] = l0;
        s->links[1] = l1;
        s->links[2] = l2;
        size_t i = h & (SLOTS - 1);
        while (atomic_load_explicit(&slots[i], memory_order_relaxed)) i = (i + 1) & (SLOTS - 1);
        created[n] = s;
        atomic_store_explicit(&used, n + 1, memory_order_release);
        atomic_store_explicit(&slots[i], s, memory_order_release);
    }
    pthread_mutex_unlock(&create_lock);
    return s;
}

struct provider_stats *provider_stats_get(const char *name)
{
    return get_or_create(name, name, STATS_PROVIDER, NULL, NULL, NULL);
}

/* key = base + "\x1f" + a (+ "\x1f@" + b); false when it does not fit. */
static bool make_key(char *out, size_t cap, const char *base, const char *a, const char *at)
{
    size_t n = 0;
    out[0] = '\0';
    bool ok = str_append(out, cap, &n, base) && str_append(out, cap, &n, "\x1f") &&
              str_append(out, cap, &n, a);
    if (ok && at) ok = str_append(out, cap, &n, "\x1f@") && str_append(out, cap, &n, at);
    return ok;
}

struct provider_stats *provider_stats_model(struct provider_stats *p, const char *model)
{
    if (!p) return NULL;
    char key[1024];
    if (!make_key(key, sizeof key, p->key, model, NULL)) return p;
    struct provider_stats *s = get_or_create(key, p->name, STATS_MODEL, p, NULL, NULL);
    return s ? s : p;
}

struct provider_stats *provider_stats_endpoint(struct provider_stats *p, const char *url)
{
    if (!p) return NULL;
    char key[1024];
    if (!make_key(key, sizeof key, p->key, "", url)) return p;
    struct provider_stats *s = get_or_create(key, p->name, STATS_ENDPOINT, NULL, NULL, NULL);
    return s ? s : p;
}

struct provider_stats *provider_stats_leaf(struct provider_stats *p, const char *model,
                                           const char *url)
{
    if (!p) return NULL;
    char key[1024];
    if (!make_key(key, sizeof key, p->key, model, url)) return p;
    uint64_t h = hash_key(key);
    struct provider_stats *s = find(key, h);
    if (s) return s;
    struct provider_stats *e = provider_stats_endpoint(p, url);
    struct provider_stats *m = provider_stats_model(p, model);
    if (e == p || m == p) return p; /* the table is full */
    s = get_or_create(key, p->name, STATS_LEAF, e, m, p);
    return s ? s : p;
}

struct provider_stats *provider_stats_endpoint_of(struct provider_stats *s)
{
    if (!s) return NULL;
    return s->links[0] ? s->links[0] : s;
}

static void each_linked(struct provider_stats *s, void (*fn)(struct provider_stats *, void *),
                        void *arg)
{
    fn(s, arg);
    for (int i = 0; i < 3 && s->links[i]; i++) fn(s->links[i], arg);
}

static void begin_one(struct provider_stats *s, void *arg)
{
    struct provider_stats *skip = arg;
    if (s != skip) atomic_fetch_add_explicit(&s->in_flight, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->attempts, 1, memory_order_relaxed);
}

void provider_stats_begin(struct provider_stats *s)
{
    if (!s) return;
    each_linked(s, begin_one, NULL);
}

bool provider_stats_try_begin(struct provider_stats *s, int max)
{
    if (!s) return true;
    if (max <= 0) {
        provider_stats_begin(s);
        return true;
    }
    struct provider_stats *cap = provider_stats_endpoint_of(s);
    long long cur = atomic_load_explicit(&cap->in_flight, memory_order_relaxed);
    do {
        if (cur >= max) return false;
    } while (!atomic_compare_exchange_weak_explicit(&cap->in_flight, &cur, cur + 1,
                                                    memory_order_relaxed, memory_order_relaxed));
    each_linked(s, begin_one, cap);
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

struct end_args {
    bool ok, timeout;
    int64_t latency_us, now_ms;
};

static void end_one(struct provider_stats *s, void *arg)
{
    const struct end_args *a = arg;
    atomic_fetch_sub_explicit(&s->in_flight, 1, memory_order_relaxed);
    window_push(s, !a->ok, a->now_ms);
    circuit_on_result(s, a->ok, a->now_ms);
    if (!a->ok) {
        atomic_fetch_add_explicit(&s->failures, 1, memory_order_relaxed);
        if (a->timeout) atomic_fetch_add_explicit(&s->timeouts, 1, memory_order_relaxed);
        return;
    }
    if (a->latency_us > 0) {
        ewma_update(&s->ewma_latency_us, a->latency_us);
        atomic_fetch_add_explicit(&s->latency_samples, 1, memory_order_relaxed);
    }
}

void provider_stats_end_at(struct provider_stats *s, bool ok, bool timeout, int64_t latency_us,
                           int64_t now_ms)
{
    if (!s) return;
    struct end_args a = {ok, timeout, latency_us, now_ms};
    each_linked(s, end_one, &a);
}

void provider_stats_end(struct provider_stats *s, bool ok, bool timeout, int64_t latency_us)
{
    provider_stats_end_at(s, ok, timeout, latency_us, clock_mono_ms());
}

static void abandon_one(struct provider_stats *s, void *arg)
{
    (void)arg;
    atomic_fetch_sub_explicit(&s->in_flight, 1, memory_order_relaxed);
    circuit_on_no_result(s);
}

void provider_stats_abandon(struct provider_stats *s)
{
    if (!s) return;
    each_linked(s, abandon_one, NULL);
}

static void ttft_one(struct provider_stats *s, void *arg)
{
    ewma_update(&s->ewma_ttft_us, *(const int64_t *)arg);
    atomic_fetch_add_explicit(&s->ttft_samples, 1, memory_order_relaxed);
}

void provider_stats_ttft(struct provider_stats *s, int64_t ttft_us)
{
    if (!s) return;
    each_linked(s, ttft_one, &ttft_us);
}

int provider_stats_check(struct provider_stats *s, bool ok, int threshold, int64_t latency_us,
                         int64_t now_ms)
{
    if (!s) return 0;
    atomic_store_explicit(&s->checked_ms, now_ms ? now_ms : 1, memory_order_relaxed);
    if (ok) {
        atomic_store_explicit(&s->check_failures, 0, memory_order_relaxed);
        if (latency_us > 0) atomic_store_explicit(&s->check_latency_us, latency_us, memory_order_relaxed);
        return atomic_exchange_explicit(&s->down, false, memory_order_relaxed) ? 1 : 0;
    }
    int n = atomic_fetch_add_explicit(&s->check_failures, 1, memory_order_relaxed) + 1;
    if (n < (threshold > 0 ? threshold : 1)) return 0;
    return atomic_exchange_explicit(&s->down, true, memory_order_relaxed) ? 0 : -1;
}

bool provider_stats_down(const struct provider_stats *s)
{
    if (!s) return false;
    const struct provider_stats *e = s->links[0] ? s->links[0] : s;
    return atomic_load_explicit(&e->down, memory_order_relaxed);
}

void provider_stats_forgive(struct provider_stats *s)
{
    if (!s) return;
    atomic_store(&s->window, 0);
    atomic_store(&s->window_last_ms, 0);
    atomic_store(&s->last_failure_ms, 0);
    atomic_store(&s->probe_ms, 0);
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
    atomic_store(&s->down, false);
    atomic_store(&s->check_failures, 0);
    atomic_store(&s->checked_ms, 0);
    atomic_store(&s->check_latency_us, 0);
    atomic_store(&s->rr, 0);
}

uint64_t provider_stats_rr_next(void)
{
    return atomic_fetch_add_explicit(&rr_counter, 1, memory_order_relaxed);
}

void provider_stats_each(void (*fn)(const struct provider_stats *s, void *ctx), void *ctx)
{
    int n = atomic_load_explicit(&used, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (created[i]->grain == STATS_PROVIDER) fn(created[i], ctx);
}
