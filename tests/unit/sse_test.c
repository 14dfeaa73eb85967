/* sse_test: the SSE/NDJSON reader must give the same events however the
 * bytes are split (whole, byte by byte, random chunks), honour the SSE line
 * and field rules, and stay within its cap. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/sse.h"

/* ---- harness ---- */

/* Events are serialised as "<event>|<data>;" with both parts length-prefixed,
 * so that embedded newlines or '|' cannot make two lists look equal. */
struct sink {
    char *buf;
    size_t len, cap;
    int n;
    int stop_at; /* return -7 from the stop_at-th event (1-based); 0 = never */
};

static void sink_add(struct sink *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->buf = xrealloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    s->buf[s->len] = '\0';
}

static int on_event(void *ctx, const struct sse_event *ev)
{
    struct sink *s = ctx;
    char hdr[64];

    assert_non_null(ev->data);
    assert_true(ev->event != NULL || ev->event_len == 0);
    if (ev->event) {
        snprintf(hdr, sizeof hdr, "%zu:", ev->event_len);
        sink_add(s, hdr, strlen(hdr));
        sink_add(s, ev->event, ev->event_len);
    } else {
        sink_add(s, "-", 1);
    }
    snprintf(hdr, sizeof hdr, "|%zu:", ev->data_len);
    sink_add(s, hdr, strlen(hdr));
    sink_add(s, ev->data, ev->data_len);
    sink_add(s, ";", 1);
    s->n++;
    if (s->stop_at && s->n == s->stop_at) return -7;
    return 0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    /* xorshift64: deterministic so a failure reproduces. */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

enum split { SPLIT_WHOLE, SPLIT_BYTES, SPLIT_RANDOM };

/* Feeds `in` split as asked, then finishes. Returns the first non-OK
 * result (or finish's) and leaves the events in *s (caller frees s->buf). */
static int run(enum sse_mode mode, size_t max, const char *in, size_t len, enum split how,
               struct sink *s)
{
    struct sse_reader r;
    int rc = SSE_OK;
    size_t off = 0;

    memset(s, 0, sizeof *s);
    sink_add(s, "", 0);
    sse_reader_init(&r, mode, max, on_event, s);
    while (off < len && rc == SSE_OK) {
        size_t n = len - off;
        if (how == SPLIT_BYTES) n = 1;
        else if (how == SPLIT_RANDOM) n = 1 + rng() % (n < 17 ? n : 17);
        /* Feed from a private copy so the reader cannot rely on bytes
         * outside the chunk it was given. */
        char *chunk = xmalloc(n);
        memcpy(chunk, in + off, n);
        rc = sse_reader_feed(&r, chunk, n);
        free(chunk);
        off += n;
    }
    if (rc == SSE_OK) rc = sse_reader_finish(&r);
    sse_reader_cleanup(&r);
    return rc;
}

/* Checks that every splitting gives `want` events and result `want_rc`. */
static void check(enum sse_mode mode, size_t max, const char *in, int want_rc, const char *want)
{
    size_t len = strlen(in);
    struct sink s;
    enum split hows[] = { SPLIT_WHOLE, SPLIT_BYTES };

    for (size_t i = 0; i < 2; i++) {
        int rc = run(mode, max, in, len, hows[i], &s);
        assert_int_equal(rc, want_rc);
        assert_string_equal(s.buf, want);
        free(s.buf);
    }
    for (int i = 0; i < 300; i++) {
        int rc = run(mode, max, in, len, SPLIT_RANDOM, &s);
        assert_int_equal(rc, want_rc);
        assert_string_equal(s.buf, want);
        free(s.buf);
    }
}

#define BIG 1 << 20

/* ---- SSE ---- */

static void test_openai_stream(void **state)
{
    check(SSE_MODE_SSE, BIG,
          "data: {\"id\":\"c1\",\"choices\":[]}\n\n"
          "data: {\"id\":\"c1\",\"usage\":null}\n\n"
          "data: [DONE]\n\n",
          SSE_OK, "-|24:{\"id\":\"c1\",\"choices\":[]};-|24:{\"id\":\"c1\",\"usage\":null};-|6:[DONE];");
}

static void test_space_after_colon(void **state)
{
    /* One leading space is stripped, no more; no space is fine too. */
    check(SSE_MODE_SSE, BIG, "data:x\n\ndata: y\n\ndata:  z\n\ndata:\n\ndata\n\n", SSE_OK,
          "-|1:x;-|1:y;-|2: z;-|0:;-|0:;");
}

static void test_multiline_data(void **state)
{
    check(SSE_MODE_SSE, BIG, "data: a\ndata:\ndata: b\n\n", SSE_OK, "-|4:a\n\nb;");
}

static void test_event_names(void **state)
{
    /* The name belongs to one event only; the last event: line wins. */
    check(SSE_MODE_SSE, BIG,
          "event: message_start\ndata: {}\n\n"
          "data: plain\n\n"
          "event: a\nevent: error\ndata: {\"error\":1}\n\n",
          SSE_OK, "13:message_start|2:{};-|5:plain;5:error|11:{\"error\":1};");
}

static void test_event_without_data_dropped(void **state)
{
    check(SSE_MODE_SSE, BIG, "event: ping\n\ndata: y\n\n", SSE_OK, "-|1:y;");
    check(SSE_MODE_SSE, BIG, "event: ping\nid: 4\nretry: 10\n\n\n\n", SSE_OK, "");
}

static void test_comments(void **state)
{
    check(SSE_MODE_SSE, BIG, ": keepalive\n\n:\ndata: a\n: in the middle\ndata: b\n\n", SSE_OK,
          "-|3:a\nb;");
}

static void test_ignored_fields(void **state)
{
    check(SSE_MODE_SSE, BIG, "id: 7\nretry: 1000\nfoo: bar\ndata: x\nDATA: no\n\n", SSE_OK,
          "-|1:x;");
}

static void test_line_endings(void **state)
{
    check(SSE_MODE_SSE, BIG, "data: a\r\n\r\ndata: b\r\n\r\n", SSE_OK, "-|1:a;-|1:b;");
    check(SSE_MODE_SSE, BIG, "data: a\r\rdata: b\r\r", SSE_OK, "-|1:a;-|1:b;");
    check(SSE_MODE_SSE, BIG, "data: a\r\n\ndata: b\n\r\ndata: c\r\r\n", SSE_OK,
          "-|1:a;-|1:b;-|1:c;");
    /* "\r\r\n" is CR then CRLF: two line ends, so a blank line. */
    check(SSE_MODE_SSE, BIG, "data: a\rdata: b\r\r\n", SSE_OK, "-|3:a\nb;");
}

static void test_finish_pending(void **state)
{
    check(SSE_MODE_SSE, BIG, "data: x", SSE_OK, "-|1:x;");
    check(SSE_MODE_SSE, BIG, "data: x\n", SSE_OK, "-|1:x;");
    check(SSE_MODE_SSE, BIG, "data: x\r", SSE_OK, "-|1:x;");
    check(SSE_MODE_SSE, BIG, "data: x\n\ndata: y\ndata: z", SSE_OK, "-|1:x;-|3:y\nz;");
    check(SSE_MODE_SSE, BIG, "event: e\n", SSE_OK, "");
    check(SSE_MODE_SSE, BIG, ": comment only", SSE_OK, "");
    check(SSE_MODE_SSE, BIG, "", SSE_OK, "");
}

static void test_too_large(void **state)
{
    /* A single long line. */
    check(SSE_MODE_SSE, 16, "data: 12345678901234567890\n\n", SSE_ERR_TOO_LARGE, "");
    /* Many short lines adding up. */
    check(SSE_MODE_SSE, 16, "data: 12345\ndata: 12345\ndata: 12345\n\n", SSE_ERR_TOO_LARGE, "");
    /* A huge comment is still a line to hold. */
    check(SSE_MODE_SSE, 16, ": 0123456789012345678901234\n", SSE_ERR_TOO_LARGE, "");
    /* Events that fit, one after the other, are fine: the cap is per event. */
    check(SSE_MODE_SSE, 16, "data: 12345\n\ndata: 67890\n\ndata: abcde\n\n", SSE_OK,
          "-|5:12345;-|5:67890;-|5:abcde;");
    /* An event that fits is delivered before a later one overflows. */
    check(SSE_MODE_SSE, 16, "data: ok\n\ndata: 0123456789abcdef\n\n", SSE_ERR_TOO_LARGE, "-|2:ok;");
    check(SSE_MODE_NDJSON, 8, "{\"a\":1}\n{\"a\":123}\n", SSE_ERR_TOO_LARGE, "-|7:{\"a\":1};");
}

static void test_callback_stops(void **state)
{
    const char *in = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    struct sink s;
    struct sse_reader r;

    memset(&s, 0, sizeof s);
    sink_add(&s, "", 0);
    s.stop_at = 2;
    sse_reader_init(&r, SSE_MODE_SSE, BIG, on_event, &s);
    assert_int_equal(sse_reader_feed(&r, in, strlen(in)), -7);
    assert_int_equal(s.n, 2);
    sse_reader_cleanup(&r);
    free(s.buf);
}

static void test_steady_state_reuses_buffers(void **state)
{
    struct sink s;
    struct sse_reader r;
    const char *ev = "data: {\"choices\":[{\"delta\":{\"content\":\"hello\"}}]}\n\n";

    memset(&s, 0, sizeof s);
    sink_add(&s, "", 0);
    sse_reader_init(&r, SSE_MODE_SSE, BIG, on_event, &s);
    /* Split each event so the line buffer is used as well. */
    assert_int_equal(sse_reader_feed(&r, ev, 10), SSE_OK);
    assert_int_equal(sse_reader_feed(&r, ev + 10, strlen(ev) - 10), SSE_OK);
    char *line = r.line, *data = r.data;
    size_t line_cap = r.line_cap, data_cap = r.data_cap;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(sse_reader_feed(&r, ev, 10), SSE_OK);
        assert_int_equal(sse_reader_feed(&r, ev + 10, strlen(ev) - 10), SSE_OK);
    }
    assert_ptr_equal(r.line, line);
    assert_ptr_equal(r.data, data);
    assert_int_equal(r.line_cap, line_cap);
    assert_int_equal(r.data_cap, data_cap);
    assert_int_equal(s.n, 1001);
    sse_reader_cleanup(&r);
    free(s.buf);
}

static void test_long_stream_random(void **state)
{
    /* A long realistic stream with mixed line endings, checked against the
     * whole-buffer result under many random splittings. */
    char *in = NULL;
    size_t len = 0, cap = 0;
    const char *eols[] = { "\n", "\r\n", "\r" };

    for (int i = 0; i < 200; i++) {
        char line[160];
        const char *eol = eols[i % 3];
        int n = snprintf(line, sizeof line,
                         "%sdata: {\"i\":%d,\"delta\":\"x\\ny\"}%s%s%s", i % 7 == 0 ? ": ka\n" : "",
                         i, eol, i % 5 == 0 ? "data: more" : "", i % 5 == 0 ? eol : "");
        n += snprintf(line + n, sizeof line - (size_t)n, "%s", eol);
        if (len + (size_t)n + 1 > cap) {
            cap = (len + (size_t)n + 1) * 2;
            in = xrealloc(in, cap);
        }
        memcpy(in + len, line, (size_t)n);
        len += (size_t)n;
        in[len] = '\0';
    }
    struct sink whole, s;
    assert_int_equal(run(SSE_MODE_SSE, BIG, in, len, SPLIT_WHOLE, &whole), SSE_OK);
    assert_int_equal(whole.n, 200);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(run(SSE_MODE_SSE, BIG, in, len, SPLIT_RANDOM, &s), SSE_OK);
        assert_string_equal(s.buf, whole.buf);
        free(s.buf);
    }
    assert_int_equal(run(SSE_MODE_SSE, BIG, in, len, SPLIT_BYTES, &s), SSE_OK);
    assert_string_equal(s.buf, whole.buf);
    free(s.buf);
    free(whole.buf);
    free(in);
}

/* ---- NDJSON ---- */

static void test_ndjson(void **state)
{
    check(SSE_MODE_NDJSON, BIG, "{\"a\":1}\n{\"b\":2}\r\n\n  \n\r\n{\"c\":3}", SSE_OK,
          "-|7:{\"a\":1};-|7:{\"b\":2};-|7:{\"c\":3};");
    /* SSE syntax means nothing in NDJSON mode. */
    check(SSE_MODE_NDJSON, BIG, "data: x\n: y\n", SSE_OK, "-|7:data: x;-|3:: y;");
    check(SSE_MODE_NDJSON, BIG, "{}\r{}\r", SSE_OK, "-|2:{};-|2:{};");
    check(SSE_MODE_NDJSON, BIG, "", SSE_OK, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_stream),
        cmocka_unit_test(test_space_after_colon),
        cmocka_unit_test(test_multiline_data),
        cmocka_unit_test(test_event_names),
        cmocka_unit_test(test_event_without_data_dropped),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_ignored_fields),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_finish_pending),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_steady_state_reuses_buffers),
        cmocka_unit_test(test_long_stream_random),
        cmocka_unit_test(test_ndjson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
