/* period: UTC days and months, with gmtime_r (no local time zone ever). */
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
    struct tm tm = utc(unix_s);
    return (int64_t)(tm.tm_year + 1900) * 12 + tm.tm_mon;
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
