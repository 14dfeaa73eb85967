/* circuit_test: the outcome window and the breaker's closed -> open ->
 * half-open -> closed/open cycle (src/routing/stats.c, circuit.c), at
 * explicit times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "routing/circuit.h"
#include "routing/stats.h"

static struct provider_stats *fresh(const char *name)
{
    struct provider_stats *s = provider_stats_get(name);
    provider_stats_reset(s);
    return s;
}

static void outcome(struct provider_stats *s, bool ok, int64_t now)
{
    provider_stats_begin(s);
    provider_stats_end_at(s, ok, false, 1000, now);
}

static void test_window(void **state)
{
    struct provider_stats *s = fresh("w");
    int f, t;
    provider_stats_window(s, 1000, &f, &t);
    assert_int_equal(t, 0);
    for (int i = 0; i < 25; i++) outcome(s, i % 5 != 0, 1000); /* 5 failures of 25 */
    provider_stats_window(s, 1000, &f, &t);
    assert_int_equal(t, STATS_WINDOW); /* the last 20 */
    assert_int_equal(f, 4);
    assert_int_equal(atomic_load(&s->in_flight), 0);
    assert_int_equal(atomic_load(&s->failures), 5);
    /* aged out */
    provider_stats_window(s, 1000 + STATS_WINDOW_MAX_AGE_MS + 1, &f, &t);
    assert_int_equal(t, 0);
    /* and the next outcome starts a fresh window */
    outcome(s, false, 1000 + STATS_WINDOW_MAX_AGE_MS + 2);
    provider_stats_window(s, 1000 + STATS_WINDOW_MAX_AGE_MS + 2, &f, &t);
    assert_int_equal(t, 1);
    assert_int_equal(f, 1);
}

static void test_cycle(void **state)
{
    struct provider_stats *s = fresh("c");
    bool probe;
    char why[128];
    int64_t now = 10000;
    /* 4 failures: fewer than the minimum samples, still closed */
    for (int i = 0; i < 4; i++) outcome(s, false, now);
    assert_int_equal(circuit_state(s, 0.5, now), CIRCUIT_CLOSED);
    assert_false(circuit_should_skip(s, 0.5, now, &probe, why, sizeof why));
    outcome(s, true, now); /* 4/5 = 0.8 > 0.5 */
    assert_int_equal(circuit_state(s, 0.5, now), CIRCUIT_OPEN);
    assert_true(circuit_should_skip(s, 0.5, now + 1000, &probe, why, sizeof why));
    assert_string_equal(why, "circuit open: 4/5 recent attempts failed, retry in 4000 ms");
    /* a threshold of 0.8 is not exceeded by 0.8 */
    assert_int_equal(circuit_state(s, 0.8, now), CIRCUIT_CLOSED);
    /* cool-down over: one probe, others skipped */
    now += CIRCUIT_COOLDOWN_MS;
    assert_int_equal(circuit_state(s, 0.5, now), CIRCUIT_HALF_OPEN);
    assert_false(circuit_should_skip(s, 0.5, now, &probe, why, sizeof why));
    assert_true(probe);
    assert_true(circuit_should_skip(s, 0.5, now, &probe, why, sizeof why));
    assert_false(probe);
    assert_string_equal(why, "circuit half-open: a probe is already out");
    /* the probe fails: open again for a full cool-down */
    outcome(s, false, now + 100);
    assert_int_equal(circuit_state(s, 0.5, now + 200), CIRCUIT_OPEN);
    assert_true(circuit_should_skip(s, 0.5, now + 200, &probe, why, sizeof why));
    now += 100 + CIRCUIT_COOLDOWN_MS;
    assert_false(circuit_should_skip(s, 0.5, now, &probe, why, sizeof why));
    assert_true(probe);
    /* the probe succeeds: closed, window emptied */
    outcome(s, true, now + 50);
    assert_int_equal(circuit_state(s, 0.5, now + 60), CIRCUIT_CLOSED);
    int f, t;
    provider_stats_window(s, now + 60, &f, &t);
    assert_int_equal(f, 0);
    assert_false(circuit_should_skip(s, 0.5, now + 60, &probe, why, sizeof why));
    assert_false(probe);
}

static void test_stale_probe(void **state)
{
    /* a probe that never reports (its plan tried another provider) is
     * replaced after a cool-down, so the circuit cannot stick half-open */
    struct provider_stats *s = fresh("p");
    bool probe;
    char why[128];
    for (int i = 0; i < 5; i++) outcome(s, false, 0);
    int64_t now = CIRCUIT_COOLDOWN_MS;
    assert_false(circuit_should_skip(s, 0.5, now, &probe, why, sizeof why));
    assert_true(probe);
    assert_true(circuit_should_skip(s, 0.5, now + CIRCUIT_COOLDOWN_MS - 1, &probe, why, sizeof why));
    assert_false(circuit_should_skip(s, 0.5, now + CIRCUIT_COOLDOWN_MS, &probe, why, sizeof why));
    assert_true(probe);
    assert_string_equal(circuit_state_name(CIRCUIT_HALF_OPEN), "half-open");
    assert_false(circuit_should_skip(NULL, 0.5, 0, &probe, why, sizeof why));
}

static void test_rr_counter(void **state)
{
    uint64_t a = provider_stats_rr_next(), b = provider_stats_rr_next();
    assert_int_equal(b, a + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_cycle),
        cmocka_unit_test(test_stale_probe),
        cmocka_unit_test(test_rr_counter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
