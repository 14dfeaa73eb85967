/* period: the UTC calendar windows budgets are counted in. A day is its
 * number since the epoch; a month is year * 12 + (month - 1). Pure
 * functions of a unix time, so tests can use any clock. */
#ifndef AIPROXY_BUDGET_PERIOD_H
#define AIPROXY_BUDGET_PERIOD_H

#include <stdint.h>

/* The UTC day containing `unix_s` (days since 1970-01-01). */
int64_t period_day(int64_t unix_s);
/* The UTC month containing `unix_s` (year * 12 + month - 1). */
int64_t period_month(int64_t unix_s);
/* First second of the UTC day / month containing `unix_s`. */
int64_t period_day_start(int64_t unix_s);
int64_t period_month_start(int64_t unix_s);
/* Writes "YYYY-MM-DD" / "YYYY-MM" for `unix_s` (buf needs 11 / 8 bytes). */
void period_day_label(int64_t unix_s, char *buf, unsigned long cap);
void period_month_label(int64_t unix_s, char *buf, unsigned long cap);

#endif
