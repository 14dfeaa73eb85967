/* spend: atomic counters, all-or-nothing reservations and a small
 * name -> counter table (chained hash; entries are never removed, so
 * pointers handed out stay valid and lookups need no lock: a new entry is
 * published at its bucket's head with a release store, and only inserts
 * take the mutex). */
#include "budget/spend.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* ---- pure arithmetic ---- */

bool spend_would_exceed(nanos_t spent, nanos_t reserved, nanos_t amount, nanos_t limit)
{
    if (limit <= 0) return false;
    __int128 total = (__int128)spent + reserved + amount;
    return total > limit;
}

bool spend_crossed(nanos_t before, nanos_t after, nanos_t limit, int percent)
{
    if (limit <= 0 || percent <= 0) return false;
    __int128 mark = (__int128)limit * percent;
    return (__int128)before * 100 < mark && (__int128)after * 100 >= mark;
}

bool spend_at_or_over(nanos_t spent, nanos_t limit, int percent)
{
    if (limit <= 0 || percent <= 0) return false;
    return (__int128)spent * 100 >= (__int128)limit * percent;
}

/* ---- windows ---- */

/* Serialises roll-overs only (rare: once per window per period). */
static pthread_mutex_t roll_lock = PTHREAD_MUTEX_INITIALIZER;

static void roll(struct spend_window *w, int64_t period)
{
    if (atomic_load(&w->period) >= period) return;
    pthread_mutex_lock(&roll_lock);
    if (atomic_load(&w->period) < period) {
        atomic_store(&w->spent, 0);
        atomic_store(&w->reserved, 0);
        atomic_store(&w->period, period);
    }
    pthread_mutex_unlock(&roll_lock);
}

nanos_t spend_window_spent(struct spend_window *w, int64_t period)
{
    return atomic_load(&w->period) == period ? atomic_load(&w->spent) : 0;
}

nanos_t spend_window_reserved(struct spend_window *w, int64_t period)
{
    return atomic_load(&w->period) == period ? atomic_load(&w->reserved) : 0;
}

nanos_t spend_window_add(struct spend_window *w, int64_t period, nanos_t amount)
{
    roll(w, period);
    if (atomic_load(&w->period) != period) return 0; /* an older period: already counted over */
    if (amount == 0) return atomic_load(&w->spent); /* a free request: no write to a shared line */
    return atomic_fetch_add(&w->spent, amount);
}

void spend_window_set(struct spend_window *w, int64_t period, nanos_t spent)
{
    roll(w, period);
    if (atomic_load(&w->period) == period) atomic_store(&w->spent, spent);
}

/* Adds `amount` to the reservation, then checks; undoes it when it does
 * not fit. Checking after adding is what makes concurrent admission safe. */
static bool window_try_reserve(struct spend_window *w, int64_t period, nanos_t limit,
                               nanos_t amount)
{
    roll(w, period);
    nanos_t before = atomic_fetch_add(&w->reserved, amount);
    if (spend_would_exceed(atomic_load(&w->spent), before, amount, limit)) {
        atomic_fetch_sub(&w->reserved, amount);
        return false;
    }
    return true;
}

static void window_release(struct spend_window *w, int64_t period, nanos_t amount)
{
    if (atomic_load(&w->period) == period) atomic_fetch_sub(&w->reserved, amount);
}

int spend_reserve(const struct spend_scope *scopes, int n, nanos_t amount, int64_t day,
                  int64_t month, struct spend_reservation *out, int *failed, bool *monthly)
{
    memset(out, 0, sizeof *out);
    out->day = day;
    out->month = month;
    out->amount = amount;
    for (int i = 0; i < n && i < SPEND_MAX_SCOPES; i++) {
        struct spend_counter *c = scopes[i].counter;
        if (scopes[i].daily_limit <= 0 && scopes[i].monthly_limit <= 0) {
            out->held[out->n] = false;
            out->counters[out->n++] = c;
            continue;
        }
        bool ok_day = window_try_reserve(&c->day, day, scopes[i].daily_limit, amount);
        bool ok_month = ok_day && window_try_reserve(&c->month, month, scopes[i].monthly_limit,
                                                     amount);
        if (!ok_day || !ok_month) {
            if (ok_day) window_release(&c->day, day, amount);
            for (int j = 0; j < out->n; j++) {
                if (!out->held[j]) continue;
                window_release(&out->counters[j]->day, day, amount);
                window_release(&out->counters[j]->month, month, amount);
            }
            out->n = 0;
            if (failed) *failed = i;
            if (monthly) *monthly = ok_day;
            return -1;
        }
        out->held[out->n] = true;
        out->counters[out->n++] = c;
    }
    out->active = true;
    return 0;
}

void spend_settle(struct spend_reservation *r, nanos_t cost, int64_t day, int64_t month,
                  nanos_t *before_day, nanos_t *before_month)
{
    spend_settle_split(r, cost, cost, day, month, before_day, before_month);
}

void spend_settle_split(struct spend_reservation *r, nanos_t first_cost, nanos_t cost,
                        int64_t day, int64_t month, nanos_t *before_day, nanos_t *before_month)
{
    if (!r->active) return;
    r->active = false;
    for (int i = 0; i < r->n; i++) {
        struct spend_counter *c = r->counters[i];
        nanos_t amount = i == 0 ? first_cost : cost;
        /* Spend first, then release: a concurrent admission never sees
         * the money in neither place. */
        nanos_t bd = spend_window_add(&c->day, day, amount);
        nanos_t bm = spend_window_add(&c->month, month, amount);
        if (r->held[i]) {
            window_release(&c->day, r->day, r->amount);
            window_release(&c->month, r->month, r->amount);
        }
        if (i == 0) {
            if (before_day) *before_day = bd;
            if (before_month) *before_month = bm;
        }
    }
}

/* ---- named counters ---- */

#define TABLE_BUCKETS 256

struct spend_entry {
    struct spend_entry *next; /* written once, before the entry is published */
    struct spend_counter counter;
    char name[];
};

struct spend_table {
    pthread_mutex_t lock; /* serialises inserts */
    struct spend_entry *_Atomic buckets[TABLE_BUCKETS];
};

struct spend_table *spend_table_new(void)
{
    struct spend_table *t = xcalloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void spend_table_free(struct spend_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < TABLE_BUCKETS; i++) {
        struct spend_entry *e = t->buckets[i];
        while (e) {
            struct spend_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static size_t hash_name(const char *s)
{
    size_t h = 5381;
    for (; *s; s++) h = h * 33 + (unsigned char)*s;
    return h % TABLE_BUCKETS;
}

static struct spend_entry *find(struct spend_entry *e, const char *name)
{
    while (e && strcmp(e->name, name) != 0) e = e->next;
    return e;
}

struct spend_counter *spend_table_get(struct spend_table *t, const char *name)
{
    size_t b = hash_name(name);
    struct spend_entry *e =
        find(atomic_load_explicit(&t->buckets[b], memory_order_acquire), name);
    if (e) return &e->counter;
    pthread_mutex_lock(&t->lock);
    e = find(atomic_load_explicit(&t->buckets[b], memory_order_acquire), name); /* lost a race? */
    if (!e) {
        size_t len = strlen(name);
        e = xcalloc(1, sizeof *e + len + 1);
        memcpy(e->name, name, len + 1);
        e->next = atomic_load_explicit(&t->buckets[b], memory_order_relaxed);
        atomic_store_explicit(&t->buckets[b], e, memory_order_release);
    }
    pthread_mutex_unlock(&t->lock);
    return &e->counter;
}

void spend_table_each(struct spend_table *t,
                      void (*cb)(void *ctx, const char *name, struct spend_counter *c), void *ctx)
{
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < TABLE_BUCKETS; i++)
        for (struct spend_entry *e = t->buckets[i]; e; e = e->next) cb(ctx, e->name, &e->counter);
    pthread_mutex_unlock(&t->lock);
}
