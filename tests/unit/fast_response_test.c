/* fast_response_test: the one-pass parser of plain upstream answers
 * (upstream/fast_response.c): what it takes, what it fills in, and what it
 * must leave to http-parser (fuzz_fast_response checks that what it takes,
 * http-parser reads the same way). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "upstream/fast_response.h"

static size_t parse(const char *s, struct fast_answer *fa)
{
    return fast_response_parse(s, strlen(s), 65536, fa);
}

static void test_takes_plain_answer(void **state)
{
    const char *m = "HTTP/1.1 200 OK\r\n"
                    "Server: nginx\r\n"
                    "Content-Type: text/plain\r\n"
                    "Content-Type: application/json\r\n"
                    "Content-Length: 2\r\n"
                    "\r\n"
                    "{}";
    struct fast_answer fa;
    assert_int_equal(parse(m, &fa), strlen(m));
    assert_int_equal(fa.status, 200);
    assert_int_equal(fa.content_type_len, strlen("application/json")); /* the last one */
    assert_memory_equal(fa.content_type, "application/json", fa.content_type_len);
    assert_null(fa.retry_after);
    assert_int_equal(fa.body_len, 2);
    assert_memory_equal(fa.body, "{}", 2);
    assert_true(fa.keep_alive);

    const char *r = "HTTP/1.0 429 Slow down\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(parse(r, &fa), strlen(r));
    assert_int_equal(fa.status, 429);
    assert_int_equal(fa.retry_after_len, 1);
    assert_false(fa.keep_alive); /* HTTP/1.0 without keep-alive */
}

static void test_leaves_to_http_parser(void **state)
{
    static const char *const left[] = {
        "",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",         /* not whole */
        "HTTP/1.1 200 OK\r\nContent-Type: a\r\n\r\n{}",            /* to the close */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
        "HTTP/1.1 200 OK\r\nContent-Length: 1 \r\n\r\na",
        "HTTP/1.1 200 OK\r\nX: \xc3\xa9\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
        "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    };
    struct fast_answer fa;
    for (size_t i = 0; i < sizeof left / sizeof left[0]; i++)
        if (parse(left[i], &fa) != 0) fail_msg("took: %s", left[i]);
    const char *m = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(fast_response_parse(m, strlen(m), 20, &fa), 0); /* head past the limit */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_takes_plain_answer),
        cmocka_unit_test(test_leaves_to_http_parser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
