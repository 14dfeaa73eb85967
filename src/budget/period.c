/* period: UTC days and months (no local time zone ever). The month of a
 * day is integer arithmetic (Howard Hinnant's civil_from_days): it runs on
 * every admitted request, where gmtime_r cost about 0.15 µs. */
#include "budget/period.h"

#include <stdio.h>
#include <time.h>

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t period_day(int64_t unix_s)
{
    return floor_div(unix_s, 86400);
}

int64_t period_day_start(int64_t unix_s)
{
    return period_day(unix_s) * 86400;
}

static struct tm utc(int64_t unix_s)
{
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    return tm;
}

int64_t period_month(int64_t unix_s)
{
    int64_t z = period_day(unix_s) + 719468; /* days since 0000-03-01 */
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;                                       /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                     /* [0, 11], March = 0 */
    int64_t month = mp < 10 ? mp + 3 : mp - 9;                            /* [1, 12] */
    int64_t year = yoe + era * 400 + (month <= 2);
    return year * 12 + (month - 1);
}

int64_t period_month_start(int64_t unix_s)
{
    struct tm tm = utc(unix_s);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    return (int64_t)timegm(&tm);
}

void period_day_label(int64_t unix_s, char *buf, unsigned long cap)
{
    struct tm tm = utc(unix_s);
    snprintf(buf, cap, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

void period_month_label(int64_t unix_s, char *buf, unsigned long cap)
{
    struct tm tm = utc(unix_s);
    snprintf(buf, cap, "%04d-%02d", tm.tm_year + 1900, tm.tm_mon + 1);
}
