/* budget_test: pricing and estimates, reservation and settlement (alone
 * and under threads), alert threshold crossing, and UTC day/month windows
 * at their boundaries (a fake clock: every function takes the time). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "budget/period.h"
#include "budget/pricing.h"
#include "budget/spend.h"
#include "config/config.h"

#define USD(x) ((nanos_t)((x) * 1000000000LL))

/* ---- pricing ---- */

static void test_cost_split_prices(void **state)
{
    struct config_model m = {.price_in_per_1k = 1000000, .price_out_per_1k = 2000000}; /* $0.001 / $0.002 */
    assert_int_equal(pricing_cost(&m, 20000, 0), 20000000);     /* $0.02 */
    assert_int_equal(pricing_cost(&m, 1000, 500), 1000000 + 1000000);
    assert_int_equal(pricing_cost(&m, 1, 0), 1000); /* rounds up, never under-charges */
    m.price_per_generation = 5;
    assert_int_equal(pricing_cost(&m, 0, 0), 5);
    assert_int_equal(pricing_cost(&m, -3, -1), 5);
}

/* Prompt caching (SPEC section 9): each kind of prompt token at its own
 * price, each rounded up on its own. */
static void test_cost_prompt_cache(void **state)
{
    /* claude-sonnet-4-5: $0.003 in, $0.0003 cache read, $0.00375 cache write, $0.015 out */
    struct config_model m = {.price_in_per_1k = 3000000, .price_out_per_1k = 15000000,
                             .price_cached_in_per_1k = 300000, .has_cached_in_price = true,
                             .price_cache_write_per_1k = 3750000, .has_cache_write_price = true};
    /* 2000 prompt tokens: 100 plain, 1500 read, 400 written; 50 out */
    assert_int_equal(pricing_tokens_cost(&m, 2000, 1500, 400, 50),
                     300000 + 450000 + 1500000 + 750000);
    /* no cache: the plain cost */
    assert_int_equal(pricing_tokens_cost(&m, 2000, 0, 0, 50), pricing_cost(&m, 2000, 50));
    /* rounding: 1 plain, 1 read, 1 written token, each rounded up */
    assert_int_equal(pricing_tokens_cost(&m, 3, 1, 1, 0), 3000 + 300 + 3750);
    struct config_model tiny = {.price_in_per_1k = 1, .price_cached_in_per_1k = 1,
                                .has_cached_in_price = true};
    assert_int_equal(pricing_tokens_cost(&tiny, 3, 1, 1, 0), 3); /* plain: ceil(3/1000) = 1 */
    assert_int_equal(pricing_tokens_cost(&tiny, 3, 0, 0, 0), 1);
    /* counts that do not fit the prompt are clamped: reads first, then writes */
    assert_int_equal(pricing_tokens_cost(&m, 1000, 5000, 7, 0), 300000);
    assert_int_equal(pricing_tokens_cost(&m, 1000, 600, 900, 0), 180000 + 1500000);
    assert_int_equal(pricing_tokens_cost(&m, 1000, -1, -1, 0), 3000000);
    /* per-generation price only in pricing_cost */
    m.price_per_generation = 7;
    assert_int_equal(pricing_tokens_cost(&m, 0, 0, 0, 0), 0);
    /* absent prices are the input price: caching changes nothing */
    struct config_model d = {.price_in_per_1k = 2500000, .price_out_per_1k = 10000000};
    assert_int_equal(pricing_tokens_cost(&d, 1000, 400, 100, 10), 2500000 + 100000);
    assert_int_equal(pricing_cached_in_price(&d), 2500000);
    assert_int_equal(pricing_cache_write_price(&d), 2500000);
    /* a price of 0 that was given is free */
    d.has_cached_in_price = true;
    assert_int_equal(pricing_tokens_cost(&d, 1000, 400, 0, 0), 1500000);
    /* saturates rather than overflows */
    struct config_model big = {.price_in_per_1k = INT64_MAX / 2,
                               .price_cached_in_per_1k = INT64_MAX / 2, .has_cached_in_price = true};
    assert_int_equal(pricing_tokens_cost(&big, 4000, 2000, 0, 0), INT64_MAX);
}

static void test_estimate_cache_write(void **state)
{
    /* the reservation prices the prompt as written to the cache when that costs more */
    struct config_model m = {.price_in_per_1k = 3000000, .price_out_per_1k = 15000000,
                             .price_cache_write_per_1k = 3750000, .has_cache_write_price = true};
    struct config_provider p = {.max_tokens_default = 100};
    assert_int_equal(pricing_estimate(&m, &p, 1000, -1, 1, false), 3750000 + 1500000);
    /* a cheaper write price (or none) leaves it at the input price */
    m.price_cache_write_per_1k = 1000;
    assert_int_equal(pricing_estimate(&m, &p, 1000, -1, 1, false), 3000000 + 1500000);
    struct config_model only_cached = {.price_cached_in_per_1k = 5, .has_cached_in_price = true};
    assert_true(pricing_is_paid(&only_cached));
}

static void test_estimate_bound(void **state)
{
    struct config_model m = {.price_in_per_1k = 1000000, .price_out_per_1k = 2000000};
    struct config_provider p = {.max_tokens_default = 4096};
    assert_int_equal(pricing_completion_bound(&p, -1, 1, false), 4096);
    assert_int_equal(pricing_completion_bound(&p, 10, 3, false), 30);
    assert_int_equal(pricing_completion_bound(&p, 10, 3, true), 0);
    /* 2 prompt tokens + 4096 completion tokens */
    assert_int_equal(pricing_estimate(&m, &p, 2, -1, 1, false), 2000 + 8192000);
    assert_true(pricing_is_paid(&m));
    struct config_model free_m = {0};
    assert_false(pricing_is_paid(&free_m));
}

/* ---- arithmetic ---- */

static void test_would_exceed(void **state)
{
    assert_false(spend_would_exceed(5, 3, 2, 10));
    assert_true(spend_would_exceed(5, 3, 3, 10));
    assert_false(spend_would_exceed(INT64_MAX, INT64_MAX, 5, 0)); /* no limit */
    assert_true(spend_would_exceed(INT64_MAX, INT64_MAX, INT64_MAX, 10)); /* no overflow */
}

static void test_crossing(void **state)
{
    assert_true(spend_crossed(USD(79), USD(80), USD(100), 80));
    assert_false(spend_crossed(USD(80), USD(81), USD(100), 80)); /* already past */
    assert_false(spend_crossed(USD(10), USD(79), USD(100), 80));
    assert_true(spend_crossed(0, USD(200), USD(100), 95));
    assert_false(spend_crossed(0, USD(200), 0, 95)); /* no limit */
    assert_true(spend_at_or_over(USD(95), USD(100), 95));
    assert_false(spend_at_or_over(USD(94), USD(100), 95));
}

/* ---- reservation and settlement ---- */

static void test_reserve_settle(void **state)
{
    struct spend_counter g = {0}, k = {0};
    struct spend_scope sc[2] = {{&g, 100, 1000}, {&k, 30, 0}};
    struct spend_reservation r1, r2, r3;
    int failed = -1;
    bool monthly = true;
    assert_int_equal(spend_reserve(sc, 2, 20, 10, 5, &r1, &failed, &monthly), 0);
    assert_int_equal(spend_window_reserved(&g.day, 10), 20);
    /* The key has 10 left: a 20 reservation fails and leaves nothing behind. */
    assert_int_equal(spend_reserve(sc, 2, 20, 10, 5, &r2, &failed, &monthly), -1);
    assert_int_equal(failed, 1);
    assert_false(monthly);
    assert_int_equal(spend_window_reserved(&g.day, 10), 20);
    assert_int_equal(spend_window_reserved(&g.month, 5), 20);
    /* Settlement replaces the estimate with the real cost. */
    nanos_t before_day = -1, before_month = -1;
    spend_settle(&r1, 7, 10, 5, &before_day, &before_month);
    assert_int_equal(before_day, 0);
    assert_int_equal(spend_window_spent(&g.day, 10), 7);
    assert_int_equal(spend_window_reserved(&g.day, 10), 0);
    assert_int_equal(spend_window_spent(&k.day, 10), 7);
    spend_settle(&r1, 7, 10, 5, NULL, NULL); /* idempotent */
    assert_int_equal(spend_window_spent(&g.day, 10), 7);
    assert_int_equal(spend_reserve(sc, 2, 23, 10, 5, &r3, &failed, &monthly), 0);
    spend_settle(&r3, 23, 10, 5, NULL, NULL);
    assert_int_equal(spend_window_spent(&k.day, 10), 30);
}

/* A scope without limits holds nothing back but is charged the spend; a
 * refusal by a later scope leaves every window as it was. */
static void test_unlimited_scope(void **state)
{
    struct spend_counter g = {0}, k = {0};
    struct spend_scope sc[2] = {{&k, 0, 0}, {&g, 100, 0}};
    struct spend_reservation r;
    int failed = -1;
    bool monthly;
    assert_int_equal(spend_reserve(sc, 2, 40, 1, 1, &r, &failed, &monthly), 0);
    assert_int_equal(spend_window_reserved(&k.day, 1), 0);
    assert_int_equal(spend_window_reserved(&g.day, 1), 40);
    spend_settle(&r, 30, 1, 1, NULL, NULL);
    assert_int_equal(spend_window_spent(&k.day, 1), 30);
    assert_int_equal(spend_window_spent(&k.month, 1), 30);
    assert_int_equal(spend_window_spent(&g.day, 1), 30);
    assert_int_equal(spend_window_reserved(&g.day, 1), 0);
    assert_int_equal(spend_reserve(sc, 2, 80, 1, 1, &r, &failed, &monthly), -1);
    assert_int_equal(failed, 1);
    assert_int_equal(spend_window_reserved(&k.day, 1), 0);
    assert_int_equal(spend_window_reserved(&g.day, 1), 0);
    assert_int_equal(spend_window_spent(&k.day, 1), 30);
}

static void test_monthly_limit_refuses(void **state)
{
    struct spend_counter g = {0};
    struct spend_scope sc[1] = {{&g, 0, 50}};
    struct spend_reservation r;
    int failed;
    bool monthly = false;
    spend_window_add(&g.month, 7, 45);
    assert_int_equal(spend_reserve(sc, 1, 10, 100, 7, &r, &failed, &monthly), -1);
    assert_true(monthly);
    assert_int_equal(spend_window_reserved(&g.day, 100), 0);
}

static void test_rollover(void **state)
{
    struct spend_counter g = {0};
    struct spend_scope sc[1] = {{&g, 100, 0}};
    struct spend_reservation r;
    int failed;
    bool monthly;
    assert_int_equal(spend_reserve(sc, 1, 60, 1, 1, &r, &failed, &monthly), 0);
    spend_settle(&r, 90, 1, 1, NULL, NULL);
    assert_int_equal(spend_reserve(sc, 1, 60, 1, 1, &r, &failed, &monthly), -1);
    /* The next day starts from zero; the old day's figures are no longer shown. */
    assert_int_equal(spend_reserve(sc, 1, 60, 2, 1, &r, &failed, &monthly), 0);
    assert_int_equal(spend_window_spent(&g.day, 1), 0);
    assert_int_equal(spend_window_reserved(&g.day, 2), 60);
    /* A request admitted yesterday, settled today: counted today, its old
     * reservation not subtracted from today's. */
    struct spend_reservation old = {.day = 1, .month = 1, .amount = 5, .n = 1, .active = true,
                                    .counters = {&g}, .held = {true}};
    spend_settle(&old, 4, 2, 1, NULL, NULL);
    assert_int_equal(spend_window_spent(&g.day, 2), 4);
    assert_int_equal(spend_window_reserved(&g.day, 2), 60);
}

/* N threads race to reserve; the limit allows exactly 10 estimates. */
struct race {
    struct spend_counter *g;
    _Atomic int admitted;
};

static void *racer(void *arg)
{
    struct race *rc = arg;
    struct spend_scope sc[1] = {{rc->g, 100, 0}};
    for (int i = 0; i < 50; i++) {
        struct spend_reservation r;
        int failed;
        bool monthly;
        if (spend_reserve(sc, 1, 10, 3, 3, &r, &failed, &monthly) == 0) atomic_fetch_add(&rc->admitted, 1);
    }
    return NULL;
}

static void test_concurrent_reservations(void **state)
{
    struct spend_counter g = {0};
    struct race rc = {.g = &g};
    pthread_t t[8];
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, racer, &rc);
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&rc.admitted), 10);
    assert_int_equal(spend_window_reserved(&g.day, 3), 100);
}

static void test_table(void **state)
{
    struct spend_table *t = spend_table_new();
    struct spend_counter *a = spend_table_get(t, "a");
    assert_ptr_equal(a, spend_table_get(t, "a"));
    assert_ptr_not_equal(a, spend_table_get(t, "b"));
    spend_table_free(t);
}

/* ---- periods ---- */

static void test_periods(void **state)
{
    /* 2024-02-29T23:59:59Z and the second after it. */
    int64_t leap_end = 1709251199, march = 1709251200;
    assert_int_equal(period_day(march) - period_day(leap_end), 1);
    assert_int_equal(period_month(march) - period_month(leap_end), 1);
    assert_int_equal(period_month_start(leap_end), 1706745600); /* 2024-02-01 */
    assert_int_equal(period_month_start(march), march);
    assert_int_equal(period_day_start(leap_end), 1709164800);
    char buf[16];
    period_day_label(leap_end, buf, sizeof buf);
    assert_string_equal(buf, "2024-02-29");
    period_month_label(march, buf, sizeof buf);
    assert_string_equal(buf, "2024-03");
    /* New year: 2023-12-31T23:59:59Z -> 2024-01-01. */
    assert_int_equal(period_month(1704067200) - period_month(1704067199), 1);
    assert_int_equal(period_day(0), 0);
    assert_int_equal(period_day(-1), -1);
    /* The arithmetic month agrees with gmtime_r at every UTC midnight (and
     * the second before it) from 1900 to 2400: leap years, centuries, 2000. */
    for (int64_t day = -25567; day <= 157054; day++) {
        for (int64_t t = day * 86400 - 1; t <= day * 86400; t++) {
            time_t tt = (time_t)t;
            struct tm tm;
            gmtime_r(&tt, &tm);
            if (period_month(t) != (int64_t)(tm.tm_year + 1900) * 12 + tm.tm_mon)
                fail_msg("period_month(%lld) disagrees with gmtime_r", (long long)t);
        }
    }
    assert_int_equal(period_month(0), 1970 * 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cost_split_prices),
        cmocka_unit_test(test_estimate_bound),
        cmocka_unit_test(test_cost_prompt_cache),
        cmocka_unit_test(test_estimate_cache_write),
        cmocka_unit_test(test_would_exceed),
        cmocka_unit_test(test_crossing),
        cmocka_unit_test(test_reserve_settle),
        cmocka_unit_test(test_unlimited_scope),
        cmocka_unit_test(test_monthly_limit_refuses),
        cmocka_unit_test(test_rollover),
        cmocka_unit_test(test_concurrent_reservations),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_periods),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
