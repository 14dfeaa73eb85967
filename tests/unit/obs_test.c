/* obs_test: the strict W3C traceparent parser (src/obs/trace.c) and the
 * dashboard timeline's per-second counts and percentiles
 * (src/obs/timeline.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "obs/timeline.h"
#include "obs/trace.h"

static void test_traceparent(void **state)
{
    uint8_t tid[16], sid[8], flags = 0;
    assert_true(trace_parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                        tid, sid, &flags));
    assert_int_equal(tid[0], 0x4b);
    assert_int_equal(sid[7], 0xb7);
    assert_int_equal(flags, 1);
    assert_true(trace_parse_traceparent(" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ",
                                        tid, sid, &flags));
    assert_int_equal(flags, 0);
    /* a future version may carry more fields after '-' */
    assert_true(trace_parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz",
                                        tid, sid, &flags));
    static const char *bad[] = {
        "",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* uppercase */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* zero span id */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* version ff */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", /* 00 with more */
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  /* short id */
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", /* separators */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", /* flags */
        "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* version */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(trace_parse_traceparent(bad[i], tid, sid, &flags));
    assert_false(trace_parse_traceparent(NULL, tid, sid, &flags));
}

static void test_timeline(void **state)
{
    int64_t now = 1800000000; /* a minute boundary is not needed */
    for (int i = 0; i < 100; i++) timeline_record(now, 200, (i + 1) * 1000, -1, 5);
    timeline_record(now, 502, 1000, -1, 0);
    timeline_record(now - 1, 200, 1000, 2000, 0);
    struct timeline_point sec[3];
    timeline_seconds(now, 3, sec);
    assert_int_equal(sec[2].t, now);
    assert_int_equal(sec[2].requests, 101);
    assert_int_equal(sec[2].errors, 1);
    assert_int_equal(sec[2].cost, 500);
    assert_int_equal(sec[1].requests, 1);
    assert_int_equal(sec[0].requests, 0);
    /* latencies 1..100 ms: p50 near 50 ms, p99 near 100 ms (35% buckets) */
    double p50 = timeline_percentile(now, 2, 50, false);
    double p99 = timeline_percentile(now, 2, 99, false);
    assert_true(p50 > 35 && p50 < 70);
    assert_true(p99 > 70 && p99 < 140);
    assert_true(timeline_percentile(now, 2, 50, true) > 1);
    /* a slot is reused for a later second */
    timeline_record(now + TL_SECONDS, 200, 1000, -1, 0);
    timeline_seconds(now + TL_SECONDS, 1, sec);
    assert_int_equal(sec[0].requests, 1);
}

static void test_errors_ring(void **state)
{
    for (int i = 0; i < TL_ERRORS + 5; i++) timeline_error(i, "req", "/v1/x", "m", NULL, 500 + i % 3, "msg");
    struct timeline_error e[TL_ERRORS];
    size_t n = timeline_errors(e, TL_ERRORS);
    assert_int_equal(n, TL_ERRORS);
    assert_int_equal(e[0].ts_ms, TL_ERRORS + 4); /* newest first */
    assert_string_equal(e[0].provider, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_timeline),
        cmocka_unit_test(test_errors_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
