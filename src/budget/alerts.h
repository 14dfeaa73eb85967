/* alerts: budget alert thresholds (budget.alerts). A threshold is a
 * percent of the global daily and monthly limits. Crossing one (in either
 * window) is detected at settlement, once per threshold, window and
 * period: it is logged and, when the alert has a webhook, POSTed to it
 * from this module's own thread with a short timeout, so a slow or dead
 * webhook never holds a worker or the ledger. The actions
 * disable_paid_providers and block are states, not events: they hold
 * while spend is at or past the threshold (alerts_active). */
#ifndef AIPROXY_BUDGET_ALERTS_H
#define AIPROXY_BUDGET_ALERTS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/money.h"

struct config;

#define ALERTS_MAX 32              /* thresholds tracked; more are ignored */
#define ALERTS_WEBHOOK_TIMEOUT_MS 2000
#define ALERTS_QUEUE_MAX 256       /* pending webhook calls; past it they are dropped, logged */

struct alerts;

struct alerts *alerts_start(void);
/* Sends what is queued (each call bounded by the timeout), stops the thread. */
void alerts_stop(struct alerts *a);

/* Called after `cost` was added to the global spend: fires every alert of
 * `cfg` whose threshold the day (before_day -> before_day + cost) or month
 * window crossed, once per period. */
void alerts_on_spend(struct alerts *a, const struct config *cfg, nanos_t before_day,
                     nanos_t before_month, nanos_t cost, int64_t day, int64_t month);

/* True when some alert with `action` (enum alert_action) is at or past its
 * threshold for the given spend. Pure. */
bool alerts_active(const struct config *cfg, int action, nanos_t day_spent, nanos_t month_spent);

#endif
