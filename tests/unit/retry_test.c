/* retry_test: backoff with jitter, Retry-After in both forms, and the
 * retry / next / stop decision (src/routing/retry.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "routing/retry.h"

static void test_delay(void **state)
{
    assert_int_equal(routing_retry_delay_ms(0, 0, 1), 0);
    for (uint64_t seed = 0; seed < 1000; seed++) {
        int64_t d0 = routing_retry_delay_ms(0, 100, seed);
        int64_t d3 = routing_retry_delay_ms(3, 100, seed);
        int64_t big = routing_retry_delay_ms(30, 100, seed);
        assert_in_range(d0, 50, 100);
        assert_in_range(d3, 400, 800);
        assert_in_range(big, ROUTING_RETRY_DELAY_CAP_MS / 2, ROUTING_RETRY_DELAY_CAP_MS);
        assert_int_equal(d0, routing_retry_delay_ms(0, 100, seed)); /* deterministic */
    }
    /* jitter actually varies */
    assert_true(routing_retry_delay_ms(2, 1000, 1) != routing_retry_delay_ms(2, 1000, 2) ||
                routing_retry_delay_ms(2, 1000, 3) != routing_retry_delay_ms(2, 1000, 4));
    assert_in_range(routing_retry_delay_ms(-1, 3600000, 9), 5000, 10000);
}

static void test_retry_after(void **state)
{
    int64_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    assert_int_equal(routing_retry_after_ms("120", now), 120000);
    assert_int_equal(routing_retry_after_ms(" 0 ", now), 0);
    assert_int_equal(routing_retry_after_ms("99999999999999999999", now), ROUTING_RETRY_AFTER_CAP_S * 1000LL);
    assert_int_equal(routing_retry_after_ms("Sun, 06 Nov 1994 08:49:47 GMT", now), 10000);
    assert_int_equal(routing_retry_after_ms("Sunday, 06-Nov-94 08:50:37 GMT", now), 60000);
    assert_int_equal(routing_retry_after_ms("Sun Nov  6 08:49:39 1994", now), 2000);
    assert_int_equal(routing_retry_after_ms("Sun, 06 Nov 1994 08:00:00 GMT", now), 0); /* past */
    assert_int_equal(routing_retry_after_ms("Thu, 01 Jan 1970 00:00:00 GMT", 0), 0);
    assert_int_equal(routing_retry_after_ms("Sat, 01 Jan 2000 00:00:01 GMT", 946684800), 1000);
    assert_int_equal(routing_retry_after_ms(NULL, now), -1);
    assert_int_equal(routing_retry_after_ms("", now), -1);
    assert_int_equal(routing_retry_after_ms("1.5", now), -1);
    assert_int_equal(routing_retry_after_ms("-3", now), -1);
    assert_int_equal(routing_retry_after_ms("soon", now), -1);
    assert_int_equal(routing_retry_after_ms("Sun, 06 Foo 1994 08:49:47 GMT", now), -1);
    assert_int_equal(routing_retry_after_ms("Sun, 06 Nov 1994 25:49:47 GMT", now), -1);
    assert_int_equal(routing_retry_after_ms("Sun, 06 Nov 1994 08:49:47 UTC", now), -1);
}

static struct retry_input base(void)
{
    return (struct retry_input){.failure = AF_RETRYABLE, .attempts = 1, .max_retries = 2,
                                .failover_enabled = true, .base_delay_ms = 100,
                                .retry_after_ms = -1, .remaining_ms = 30000, .has_next = true,
                                .next_timeout_ms = 60000, .seed = 7};
}

static void test_decide(void **state)
{
    struct retry_decision d;
    struct retry_input in = base();
    routing_retry_decide(&in, &d);
    assert_int_equal(d.action, RETRY_NEXT);
    assert_int_equal(d.wait_ms, 0); /* another provider goes at once */
    assert_int_equal(d.attempt_timeout_ms, 30000); /* never past the deadline */
    in.next_timeout_ms = 1000;
    routing_retry_decide(&in, &d);
    assert_int_equal(d.attempt_timeout_ms, 1000);

    in = base();
    in.has_next = false;
    routing_retry_decide(&in, &d);
    assert_int_equal(d.action, RETRY_SAME);
    assert_in_range(d.wait_ms, 50, 100); /* the same provider waits the backoff */
    assert_int_equal(d.attempt_timeout_ms, 30000 - d.wait_ms);

    in = base();
    in.has_next = false;
    in.failure = AF_TIMEOUT; /* a hanging provider costs one per-try timeout */
    routing_retry_decide(&in, &d);
    assert_int_equal(d.action, RETRY_STOP);

    in = base();
    in.attempts = 3; /* 1 + max_retries */
    routing_retry_decide(&in, &d);
    assert_int_equal(d.action, RETRY_STOP);
    assert_string_equal(d.why, "max_retries reached");

    in = base();
    in.failover_enabled = false;
    routing_retry_decide(&in, &d);
    assert_int_equal(d.action, RETRY_STOP);

    in = base();
    in.failure = AF_CLIENT_ERROR;
    routing_retry_decide(&in, &d);
    assert_int_equal(d.action, RETRY_STOP);
    in.failure = AF_MID_STREAM;
    routing_retry_decide(&in, &d);
    assert_int_equal(d.action, RETRY_STOP);

    in = base();
    in.failure = AF_TIMEOUT;
    in.remaining_ms = 30;
    routing_retry_decide(&in, &d);
    assert_int_equal(d.action, RETRY_STOP);
    assert_string_equal(d.why, "the request's deadline is reached");
    /* backoff longer than what is left: go at once */
    in.remaining_ms = 120;
    in.base_delay_ms = 5000;
    routing_retry_decide(&in, &d);
    assert_int_equal(d.action, RETRY_NEXT);
    assert_int_equal(d.wait_ms, 0);
    assert_int_equal(d.attempt_timeout_ms, 120);
}

static void test_decide_rate_limited(void **state)
{
    struct retry_decision d;
    struct retry_input in = base();
    in.failure = AF_RATE_LIMITED;
    in.retry_after_ms = 2000;
    routing_retry_decide(&in, &d); /* someone else can serve: move on */
    assert_int_equal(d.action, RETRY_NEXT);
    assert_true(d.wait_ms < 2000);
    in.has_next = false; /* alone: wait for the provider's Retry-After */
    routing_retry_decide(&in, &d);
    assert_int_equal(d.action, RETRY_SAME);
    assert_int_equal(d.wait_ms, 2000);
    assert_int_equal(d.attempt_timeout_ms, 28000);
    in.remaining_ms = 1500; /* beyond the deadline: do not wait, stop */
    routing_retry_decide(&in, &d);
    assert_int_equal(d.action, RETRY_STOP);
    assert_string_equal(d.why, "Retry-After is beyond the deadline");
    in.retry_after_ms = -1; /* 429 without Retry-After: backoff on the same */
    routing_retry_decide(&in, &d);
    assert_int_equal(d.action, RETRY_SAME);
    assert_in_range(d.wait_ms, 50, 100);
    assert_string_equal(routing_retry_action_name(RETRY_SAME), "retry_same");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_decide_rate_limited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
