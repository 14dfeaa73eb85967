/* anthropic_test: the anthropic adapter against the data cases of
 * tests/data/providers/anthropic_* (request, upstream request, canned
 * answers and streams, see provider_fixture.h), plus error bodies, status
 * rules and malformed input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "provider_fixture.h"

extern const struct provider_ops provider_anthropic_ops;
#define OPS (&provider_anthropic_ops)

static void run(const char *name)
{
    fx_case(name, OPS, PROVIDER_ANTHROPIC, API_CHAT,
            strcmp(name, "anthropic_basic") == 0 ? "claude-3-5-haiku-20241022" : "claude-sonnet");
}

static void test_basic(void **s) { (void)s; run("anthropic_basic"); }
static void test_tools(void **s) { (void)s; run("anthropic_tools"); }
static void test_images(void **s) { (void)s; run("anthropic_images"); }
static void test_refusal(void **s) { (void)s; run("anthropic_refusal"); }
static void test_bad_args(void **s) { (void)s; run("anthropic_bad_args"); }
static void test_n2(void **s) { (void)s; run("anthropic_n2"); }
static void test_error_in_200(void **s) { (void)s; run("anthropic_error_in_200"); }
static void test_stream_text(void **s) { (void)s; run("anthropic_stream_text"); }
static void test_stream_tools(void **s) { (void)s; run("anthropic_stream_tools"); }
static void test_stream_error(void **s) { (void)s; run("anthropic_stream_error"); }

static int prepare_inline(const char *body, enum api_kind kind, const char *key, char *err)
{
    struct fx_call c;
    fx_call_init(&c, "none", PROVIDER_ANTHROPIC, kind, "claude");
    free(c.body);
    c.body = xstrdup(body);
    c.call.body = c.body;
    c.call.body_len = strlen(body);
    c.provider.api_key = (char *)key;
    struct scan_error se;
    if (kind == API_CHAT) assert_int_equal(scan_request(SCAN_CHAT, body, strlen(body), &c.facts, &se), 0);
    struct provider_request pr;
    int rc = OPS->prepare(&c.call, &pr, err, 256);
    fx_call_cleanup(&c);
    return rc;
}

static void test_prepare_refusals(void **state)
{
    (void)state;
    char err[256];
    const char *hi = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    assert_int_equal(prepare_inline(hi, API_EMBEDDINGS, "k", err), -1);
    assert_non_null(strstr(err, "chat completions only"));
    assert_int_equal(prepare_inline(hi, API_CHAT, NULL, err), -1);
    assert_non_null(strstr(err, "api_key"));
    assert_int_equal(prepare_inline(hi, API_CHAT, "k\r\nX-Evil: 1", err), -1);
    assert_int_equal(prepare_inline("{\"model\":\"m\",\"response_format\":{\"type\":\"json_object\"},"
                                    "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                                    API_CHAT, "k", err), -1);
    assert_non_null(strstr(err, "response_format"));
    assert_int_equal(prepare_inline("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
                                    API_CHAT, "k", err), -1);
    assert_non_null(strstr(err, "at least one"));
    assert_int_equal(prepare_inline("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}",
                                    API_CHAT, "k", err), -1);
    assert_non_null(strstr(err, "input_audio"));
    assert_int_equal(prepare_inline("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"ftp://x\"}}]}]}",
                                    API_CHAT, "k", err), -1);
    assert_int_equal(prepare_inline("{\"model\":\"m\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                                    API_CHAT, "k", err), 0);
}

static void test_error_body(void **state)
{
    (void)state;
    struct fx_call c;
    fx_call_init(&c, "anthropic_basic", PROVIDER_ANTHROPIC, API_CHAT, "claude");
    const char *body = "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\",\"message\":\"model: x\"},\"request_id\":\"req_1\"}";
    struct provider_response resp = {.status = 404, .body = body, .len = strlen(body)};
    char *out;
    size_t len;
    assert_int_equal(OPS->error_body(&c.call, &resp, &out, &len), 0);
    const char *want = "{\"error\":{\"message\":\"model: x\",\"type\":\"not_found_error\",\"param\":null,\"code\":\"not_found_error\"}}";
    fx_assert_json("error_body", want, strlen(want), out, len);
    resp.body = "<html>";
    resp.len = 6;
    assert_int_equal(OPS->error_body(&c.call, &resp, &out, &len), -1);
    fx_call_cleanup(&c);
}

static void test_retryable(void **state)
{
    (void)state;
    static const int yes[] = {401, 403, 404, 408, 409, 429, 500, 502, 503, 529};
    static const int no[] = {400, 413, 422};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) assert_true(OPS->retryable_status(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) assert_false(OPS->retryable_status(no[i]));
}

static void noop_emit(void *ctx, const char *json, size_t len)
{
    (void)json;
    (void)len;
    ++*(int *)ctx;
}

static void test_stream_malformed(void **state)
{
    (void)state;
    struct fx_call c;
    fx_call_init(&c, "anthropic_basic", PROVIDER_ANTHROPIC, API_CHAT, "claude");
    struct provider_stream st;
    memset(&st, 0, sizeof st);
    int n = 0;
    struct sse_event ev = {.event = "message_start", .event_len = 13, .data = "{oops", .data_len = 5};
    assert_int_equal(OPS->stream_event(&c.call, &st, &ev, noop_emit, &n), -1);
    assert_non_null(strstr(st.error, "not a JSON object"));
    /* Out-of-range indexes and unknown events are ignored, not trusted. */
    const char *d = "{\"type\":\"content_block_delta\",\"index\":99999,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}";
    struct sse_event ev2 = {.data = d, .data_len = strlen(d)};
    assert_int_equal(OPS->stream_event(&c.call, &st, &ev2, noop_emit, &n), 0);
    const char *d3 = "{\"type\":\"something_new\"}";
    struct sse_event ev3 = {.data = d3, .data_len = strlen(d3)};
    assert_int_equal(OPS->stream_event(&c.call, &st, &ev3, noop_emit, &n), 0);
    assert_int_equal(n, 0);
    fx_call_cleanup(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_tools),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_refusal),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_n2),
        cmocka_unit_test(test_error_in_200),
        cmocka_unit_test(test_stream_text),
        cmocka_unit_test(test_stream_tools),
        cmocka_unit_test(test_stream_error),
        cmocka_unit_test(test_prepare_refusals),
        cmocka_unit_test(test_error_body),
        cmocka_unit_test(test_retryable),
        cmocka_unit_test(test_stream_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
