/* fast_request_test: the one-pass parser of plain requests (http/fast_request.c):
 * what it takes, what it fills in, and everything it must leave to
 * http-parser (fuzz_fast_request checks that what it takes, http-parser
 * reads the same way). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/fast_request.h"

static size_t parse(const char *s, struct fast_request *fr)
{
    return fast_request_parse(s, strlen(s), 16384, 1 << 20, fr);
}

static void span_is(struct fast_span sp, const char *want)
{
    assert_int_equal(sp.n, strlen(want));
    assert_memory_equal(sp.p, want, sp.n);
}

static void test_takes_plain_post(void **state)
{
    const char *m = "POST /v1/chat/completions?x=1 HTTP/1.1\r\n"
                    "Host: 127.0.0.1:8080\r\n"
                    "Content-Type:application/json\r\n"
                    "content-length: 13\r\n"
                    "\r\n"
                    "{\"model\":\"m\"}GET / HTTP/1.1\r\n\r\n";
    struct fast_request fr;
    size_t took = parse(m, &fr);
    assert_int_equal(took, strlen(m) - strlen("GET / HTTP/1.1\r\n\r\n"));
    assert_int_equal(fr.method, HTTP_M_POST);
    assert_string_equal(fr.method_name, "POST");
    span_is(fr.target, "/v1/chat/completions?x=1");
    assert_int_equal(fr.n_headers, 3);
    span_is(fr.names[0], "Host");
    span_is(fr.values[0], "127.0.0.1:8080");
    span_is(fr.names[1], "Content-Type");
    span_is(fr.values[1], "application/json");
    span_is(fr.body, "{\"model\":\"m\"}");
    assert_true(fr.keep_alive);
    /* the pipelined request after it is taken next */
    assert_int_equal(parse(m + took, &fr), strlen("GET / HTTP/1.1\r\n\r\n"));
    assert_int_equal(fr.method, HTTP_M_GET);
    assert_int_equal(fr.body.n, 0);
}

static void test_keep_alive(void **state)
{
    struct fast_request fr;
    assert_true(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &fr) > 0);
    assert_false(fr.keep_alive);
    assert_true(parse("GET / HTTP/1.0\r\n\r\n", &fr) > 0);
    assert_false(fr.keep_alive);
    assert_true(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &fr) > 0);
    assert_true(fr.keep_alive);
}

static void test_leaves_to_http_parser(void **state)
{
    static const char *const left[] = {
        /* not whole */
        "",
        "GET / HTTP/1.1\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc",
        /* framing http-parser must decide */
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
        "POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\na",
        "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\na",
        "GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
        /* not plain */
        "CONNECT a:443 HTTP/1.1\r\n\r\n",
        "get / HTTP/1.1\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET http://a/ HTTP/1.1\r\n\r\n",
        "GET /a#frag HTTP/1.1\r\n\r\n",
        "GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1\n\n",
        "GET / HTTP/1.1\r\nHost: a\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n",       /* obs-fold */
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET / HTTP/1.1\r\n: a\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A:\r\n\r\n",                /* empty value */
        "GET / HTTP/1.1\r\nX-A: b \r\n\r\n",             /* trailing space */
        "GET / HTTP/1.1\r\nX-A: \xc3\xa9\r\n\r\n",       /* obs-text */
        "GET / HTTP/1.1\r\nX-A: a\x01\r\n\r\n",
    };
    struct fast_request fr;
    for (size_t i = 0; i < sizeof left / sizeof left[0]; i++) {
        if (parse(left[i], &fr) != 0) fail_msg("took: %s", left[i]);
    }
}

static void test_limits(void **state)
{
    struct fast_request fr;
    const char *m = "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    assert_int_equal(fast_request_parse(m, strlen(m), 16384, 5, &fr), strlen(m));
    assert_int_equal(fast_request_parse(m, strlen(m), 16384, 4, &fr), 0); /* body too large */
    assert_int_equal(fast_request_parse(m, strlen(m), 20, 5, &fr), 0);    /* head too large */
    char many[8192] = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < HTTP_MAX_HEADERS + 1; i++) strcat(many, "X-A: b\r\n");
    strcat(many, "\r\n");
    assert_int_equal(fast_request_parse(many, strlen(many), 16384, 0, &fr), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_takes_plain_post),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_leaves_to_http_parser),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
