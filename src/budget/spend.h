/* spend: spend counters in integer nano-dollars, shared by every worker
 * thread through atomics. A counter has a day and a month window (UTC);
 * each window holds what was spent and what admitted requests have
 * reserved but not yet settled. Admission reserves an estimate against
 * every applicable limit at once (all or nothing); settlement releases the
 * reservation and adds the real cost. Because a reservation is added before
 * it is checked (and undone when it does not fit), N concurrent requests
 * can never together be admitted past a limit: only the difference between
 * a request's real cost and its estimate can push spend over.
 *
 * A window rolls over (to zero) the first time it is touched in a new
 * period; a reservation made in the old period is then simply not released
 * from the new one. */
#ifndef AIPROXY_BUDGET_SPEND_H
#define AIPROXY_BUDGET_SPEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/money.h"

struct spend_window {
    _Atomic int64_t period;
    _Atomic int64_t spent;    /* nanos_t */
    _Atomic int64_t reserved; /* nanos_t */
};

struct spend_counter {
    struct spend_window day, month;
};

/* ---- pure arithmetic ---- */

/* True when reserving `amount` on top of `spent` + `reserved` would pass
 * `limit` (0 = no limit). Saturates instead of overflowing. */
bool spend_would_exceed(nanos_t spent, nanos_t reserved, nanos_t amount, nanos_t limit);

/* True when going from `before` to `after` crosses `percent` of `limit`
 * (before < limit*percent/100 <= after). A limit of 0 never crosses. */
bool spend_crossed(nanos_t before, nanos_t after, nanos_t limit, int percent);

/* True when `spent` is at or past `percent` of `limit` (0 = no limit: false). */
bool spend_at_or_over(nanos_t spent, nanos_t limit, int percent);

/* ---- windows ---- */

/* Current figures of a window for `period` (zero when it holds an older period). */
nanos_t spend_window_spent(struct spend_window *w, int64_t period);
nanos_t spend_window_reserved(struct spend_window *w, int64_t period);
/* Adds `amount` spent in `period` (restoring from the ledger, or settling).
 * Returns what was spent before. */
nanos_t spend_window_add(struct spend_window *w, int64_t period, nanos_t amount);
/* Sets what was spent in `period` (the shared store's figure: the local
 * view follows it). */
void spend_window_set(struct spend_window *w, int64_t period, nanos_t spent);

/* ---- reservations across several counters ---- */

#define SPEND_MAX_SCOPES 4

struct spend_scope {
    struct spend_counter *counter;
    nanos_t daily_limit;   /* 0 = none */
    nanos_t monthly_limit; /* 0 = none */
};

struct spend_reservation {
    int64_t day, month;
    nanos_t amount;
    struct spend_counter *counters[SPEND_MAX_SCOPES];
    bool held[SPEND_MAX_SCOPES]; /* amount reserved on this counter (it has a limit) */
    int n;
    bool active;
};

/* Reserves `amount` on the day and month windows of every scope for the
 * periods `day`/`month`; a scope without limits is only remembered, for
 * its spend at settlement (nothing to hold back, and two fewer atomic
 * operations on a shared counter per window). Returns -1 (with nothing reserved) and sets
 * *failed to the scope index and *monthly when one limit would be passed;
 * 0 and fills `out` on success. */
int spend_reserve(const struct spend_scope *scopes, int n, nanos_t amount, int64_t day,
                  int64_t month, struct spend_reservation *out, int *failed, bool *monthly);

/* Releases `r` (its reserved amount, where the windows still hold its
 * periods) and adds `cost` to every counter for the periods `day`/`month`.
 * `before_day`/`before_month`, when non-NULL, receive the first counter's
 * spend before the cost (for alert crossings). Idempotent per reservation. */
void spend_settle(struct spend_reservation *r, nanos_t cost, int64_t day, int64_t month,
                  nanos_t *before_day, nanos_t *before_month);
/* The same with `first_cost` for the first counter (the node's own spend)
 * and `cost` for the others: a request a mesh peer served costs the caller
 * here, while the peer counts it as its own spend. */
void spend_settle_split(struct spend_reservation *r, nanos_t first_cost, nanos_t cost,
                        int64_t day, int64_t month, nanos_t *before_day, nanos_t *before_month);

/* ---- named counters (keys, tenants, providers, models) ---- */

struct spend_table;

struct spend_table *spend_table_new(void);
void spend_table_free(struct spend_table *t);
/* The counter for `name`, created at zero on first use. The pointer stays
 * valid until spend_table_free. Thread-safe. */
struct spend_counter *spend_table_get(struct spend_table *t, const char *name);
/* Calls `cb` for every entry (under the table's lock: keep it short). */
void spend_table_each(struct spend_table *t,
                      void (*cb)(void *ctx, const char *name, struct spend_counter *c), void *ctx);

#endif
