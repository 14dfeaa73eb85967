/* ratelimit_test: GCRA decisions with a fake clock (burst, refill,
 * Retry-After, remaining, reset), Go-style durations, the client address
 * behind trusted proxies, and exactness of the table under threads. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "security/ratelimit.h"

#define S 1000000LL

static void test_gcra_burst_and_refill(void **state)
{
    int64_t tat = 0, now = 1000 * S;
    struct rl_decision d;
    rl_gcra(&tat, 2, RL_HOUR_US, now, 1, &d);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 1);
    assert_int_equal(d.reset_us, 1800 * S);
    rl_gcra(&tat, 2, RL_HOUR_US, now, 1, &d);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 0);
    rl_gcra(&tat, 2, RL_HOUR_US, now, 1, &d);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after_us, 1800 * S);
    /* Half an hour later one request fits again. */
    rl_gcra(&tat, 2, RL_HOUR_US, now + 1800 * S - 1, 1, &d);
    assert_false(d.allowed);
    rl_gcra(&tat, 2, RL_HOUR_US, now + 1800 * S, 1, &d);
    assert_true(d.allowed);
    /* No limit: always allowed. */
    rl_gcra(&tat, 0, RL_HOUR_US, now, 1, &d);
    assert_true(d.allowed);
}

static void test_gcra_tokens(void **state)
{
    int64_t tat = 0, now = 5 * S;
    struct rl_decision d;
    rl_gcra(&tat, 1000, RL_MINUTE_US, now, 600, &d);
    assert_true(d.allowed);
    assert_int_equal(d.remaining, 400);
    rl_gcra(&tat, 1000, RL_MINUTE_US, now, 500, &d);
    assert_false(d.allowed);
    assert_int_equal(d.retry_after_us, 6 * S); /* 100 tokens at 1000/min */
    /* Bigger than the whole limit: only with a full bucket. */
    int64_t t2 = 0;
    rl_gcra(&t2, 1000, RL_MINUTE_US, now, 5000, &d);
    assert_true(d.allowed);
    rl_gcra(&t2, 1000, RL_MINUTE_US, now, 5000, &d);
    assert_false(d.allowed);
}

static void test_durations(void **state)
{
    char b[32];
    assert_string_equal(rl_format_duration(0, b, sizeof b), "0s");
    assert_string_equal(rl_format_duration(12 * 1000, b, sizeof b), "12ms");
    assert_string_equal(rl_format_duration(11500, b, sizeof b), "12ms");
    assert_string_equal(rl_format_duration(S, b, sizeof b), "1s");
    assert_string_equal(rl_format_duration(1500 * 1000, b, sizeof b), "1.5s");
    assert_string_equal(rl_format_duration(360 * S, b, sizeof b), "6m0s");
    assert_string_equal(rl_format_duration(3600 * S, b, sizeof b), "1h0m0s");
    assert_string_equal(rl_format_duration(3723 * S, b, sizeof b), "1h2m3s");
    assert_string_equal(rl_format_duration(1050 * 1000, b, sizeof b), "1.05s");
    assert_string_equal(rl_format_duration(61250 * 1000, b, sizeof b), "1m1.25s");
    assert_string_equal(rl_format_duration(1, b, sizeof b), "1ms"); /* rounded up */
    assert_string_equal(rl_format_duration(-5, b, sizeof b), "0s");
    char small[4];
    assert_string_equal(rl_format_duration(3723 * S, small, sizeof small), "1h2"); /* cut, terminated */
}

static void test_client_ip(void **state)
{
    char *trusted[] = {"10.0.0.1", "192.168.0.0/16", "::1"};
    char out[64];
    rl_client_ip("203.0.113.9", "1.2.3.4", trusted, 3, out, sizeof out);
    assert_string_equal(out, "203.0.113.9"); /* untrusted peer: header ignored */
    rl_client_ip("10.0.0.1", "1.2.3.4", trusted, 3, out, sizeof out);
    assert_string_equal(out, "1.2.3.4");
    rl_client_ip("10.0.0.1", "6.6.6.6, 1.2.3.4, 192.168.4.4", trusted, 3, out, sizeof out);
    assert_string_equal(out, "1.2.3.4"); /* right-most untrusted hop, not the spoofable left */
    rl_client_ip("10.0.0.1", "garbage", trusted, 3, out, sizeof out);
    assert_string_equal(out, "10.0.0.1");
    rl_client_ip("::1", "2001:db8::7", trusted, 3, out, sizeof out);
    assert_string_equal(out, "2001:db8::7");
    rl_client_ip("10.0.0.1", NULL, trusted, 3, out, sizeof out);
    assert_string_equal(out, "10.0.0.1");
    assert_true(rl_ip_matches("192.168.200.1", "192.168.0.0/16"));
    assert_false(rl_ip_matches("192.169.0.1", "192.168.0.0/16"));
    assert_true(rl_ip_matches("::ffff:10.0.0.1", "10.0.0.1"));
    assert_false(rl_ip_matches("10.0.0.1", "bad/99"));
}

static void test_table_both_windows(void **state)
{
    struct rl_table *t = rl_table_new();
    struct rl_decision d;
    int64_t now = 100 * S;
    /* 100/hour but 2/minute: the minute limit refuses, and nothing is taken from the hour. */
    assert_true(rl_take_request(t, "k", 100, 2, now, &d));
    assert_true(rl_take_request(t, "k", 100, 2, now, &d));
    assert_int_equal(d.limit, 2);
    assert_false(rl_take_request(t, "k", 100, 2, now, &d));
    assert_int_equal(d.limit, 2);
    assert_true(d.retry_after_us > 0 && d.retry_after_us <= 30 * S);
    assert_true(rl_take_request(t, "other", 100, 2, now, &d));
    assert_true(rl_take_request(t, "nolimit", 0, 0, now, &d));
    /* Tokens, and a correction giving some back. */
    assert_true(rl_take_tokens(t, "k", 100, 80, now, &d));
    assert_false(rl_take_tokens(t, "k", 100, 30, now, &d));
    rl_adjust_tokens(t, "k", 100, -40, now);
    assert_true(rl_take_tokens(t, "k", 100, 30, now, &d));
    rl_table_free(t);
}

struct race {
    struct rl_table *t;
    _Atomic int allowed;
};

static void *racer(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < 100; i++) {
        struct rl_decision d;
        if (rl_take_request(r->t, "shared", 37, 0, 1000 * S, &d)) atomic_fetch_add(&r->allowed, 1);
    }
    return NULL;
}

static void test_exact_under_threads(void **state)
{
    struct race r = {.t = rl_table_new()};
    pthread_t th[8];
    for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, racer, &r);
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&r.allowed), 37);
    rl_table_free(r.t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcra_burst_and_refill),
        cmocka_unit_test(test_gcra_tokens),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_client_ip),
        cmocka_unit_test(test_table_both_windows),
        cmocka_unit_test(test_exact_under_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
