/* inbound_test: the client-facing translators of providers/inbound.h, both
 * directions, from the data cases tests/data/providers/inbound_*:
 *   inbound_request.json -> openai_request.json (+ expected_routing.txt
 *   "strategy max_cost_nanos timeout_ms"), openai_response.json ->
 *   inbound_response.json, openai_stream.txt (one chunk per line, "[DONE]"
 *   for stream_end, "ERROR <json>" for stream_error) -> expected_events.txt
 *   (SSE; names compared exactly, data as JSON). Every translated request
 *   must pass scan_request(SCAN_CHAT). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "provider_fixture.h"
#include "providers/inbound.h"

#define ANT (&inbound_anthropic_ops)
#define PRE (&inbound_predict_ops)

static void check_request(const char *name, const struct inbound_ops *ops, bool want_stream)
{
    size_t len = 0;
    char *in = fx_read(name, "inbound_request.json", &len);
    char *want = fx_read(name, "openai_request.json", NULL);
    assert_non_null(in);
    assert_non_null(want);
    struct arena a;
    arena_init(&a);
    char *out;
    size_t out_len;
    bool stream = !want_stream;
    struct inbound_routing r;
    struct inbound_error e;
    if (ops->request_to_openai(&a, in, len, &out, &out_len, &stream, &r, &e) != 0)
        fail_msg("%s: %s (param %s)", name, e.message, e.param);
    fx_assert_json(name, want, strlen(want), out, out_len);
    assert_int_equal(stream, want_stream);
    struct req_facts f;
    struct scan_error se;
    if (scan_request(SCAN_CHAT, out, out_len, &f, &se) != 0) fail_msg("%s: scan refuses: %s", name, se.message);
    char *routing = fx_text(name, "expected_routing.txt");
    if (routing) {
        char got[128];
        snprintf(got, sizeof got, "%s %lld %lld", r.strategy, (long long)r.max_cost_nanos,
                 (long long)r.timeout_ms);
        assert_string_equal(got, routing);
        free(routing);
    }
    arena_free(&a);
    free(in);
    free(want);
}

static void check_response(const char *name, const struct inbound_ops *ops)
{
    size_t len = 0;
    char *in = fx_read(name, "openai_response.json", &len);
    char *want = fx_read(name, "inbound_response.json", NULL);
    assert_non_null(in);
    assert_non_null(want);
    struct arena a;
    arena_init(&a);
    char *out;
    size_t out_len;
    assert_int_equal(ops->response_from_openai(&a, NULL, in, len, &out, &out_len), 0);
    fx_assert_json(name, want, strlen(want), out, out_len);
    arena_free(&a);
    free(in);
    free(want);
}

struct events {
    char *buf;
    size_t len;
};

static void collect(void *ctx, const char *bytes, size_t len)
{
    struct events *ev = ctx;
    ev->buf = xrealloc(ev->buf, ev->len + len + 1);
    memcpy(ev->buf + ev->len, bytes, len);
    ev->len += len;
    ev->buf[ev->len] = '\0';
}

/* Compares two SSE texts event by event. */
static void compare_events(const char *name, const char *want, const char *got)
{
    char *w = xstrdup(want), *g = xstrdup(got);
    char *ws = NULL, *gs = NULL;
    char *we = strtok_r(w, "\n", &ws), *ge = strtok_r(g, "\n", &gs);
    int i = 0;
    while (we || ge) {
        if (!we || !ge) fail_msg("%s: line %d: expected '%s', got '%s'", name, i, we ? we : "(end)", ge ? ge : "(end)");
        if (strncmp(we, "data: ", 6) == 0) {
            if (strncmp(ge, "data: ", 6) != 0) fail_msg("%s: line %d: got '%s'", name, i, ge);
            fx_assert_json(name, we + 6, strlen(we + 6), ge + 6, strlen(ge + 6));
        } else {
            assert_string_equal(ge, we);
        }
        we = strtok_r(NULL, "\n", &ws);
        ge = strtok_r(NULL, "\n", &gs);
        i++;
    }
    /* Framing: every event ends with a blank line. */
    assert_true(strlen(got) >= 2 && strcmp(got + strlen(got) - 2, "\n\n") == 0);
    free(w);
    free(g);
}

static void check_stream(const char *name)
{
    char *in = fx_read(name, "openai_stream.txt", NULL);
    char *want = fx_read(name, "expected_events.txt", NULL);
    assert_non_null(in);
    assert_non_null(want);
    struct arena a;
    arena_init(&a);
    void *st = ANT->stream_begin(&a, "req-1", NULL);
    struct events ev = {0};
    char *save = NULL;
    for (char *line = strtok_r(in, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strcmp(line, "[DONE]") == 0) ANT->stream_end(st, collect, &ev);
        else if (strncmp(line, "ERROR ", 6) == 0) ANT->stream_error(st, line + 6, strlen(line + 6), collect, &ev);
        else ANT->stream_chunk(st, line, strlen(line), collect, &ev);
    }
    compare_events(name, want, ev.buf ? ev.buf : "");
    free(ev.buf);
    arena_free(&a);
    free(in);
    free(want);
}

static void test_anthropic_request(void **s) { (void)s; check_request("inbound_anthropic_request", ANT, true); }
static void test_anthropic_response(void **s) { (void)s; check_response("inbound_anthropic_response", ANT); }
static void test_anthropic_stream(void **s) { (void)s; check_stream("inbound_anthropic_stream"); }
static void test_anthropic_stream_error(void **s) { (void)s; check_stream("inbound_anthropic_stream_error"); }
static void test_predict_input(void **s) { (void)s; check_request("inbound_predict_input", PRE, false); }
static void test_predict_messages(void **s) { (void)s; check_request("inbound_predict_messages", PRE, false); }
static void test_predict_response(void **s) { (void)s; check_response("inbound_predict_response", PRE); }

/* Expects a refusal naming `param`. */
static void refused(const struct inbound_ops *ops, const char *body, const char *param, bool invalid_json)
{
    struct arena a;
    arena_init(&a);
    char *out;
    size_t len;
    bool stream;
    struct inbound_routing r;
    struct inbound_error e;
    if (ops->request_to_openai(&a, body, strlen(body), &out, &len, &stream, &r, &e) != -1)
        fail_msg("accepted: %s", body);
    if (strcmp(e.param, param) != 0) fail_msg("param '%s' != '%s' for %s (%s)", e.param, param, body, e.message);
    assert_int_equal(e.invalid_json, invalid_json);
    assert_true(e.message[0] != '\0');
    arena_free(&a);
}

static void test_anthropic_refusals(void **state)
{
    (void)state;
    refused(ANT, "{", "", true);
    refused(ANT, "{\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model", false);
    refused(ANT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "max_tokens", false);
    refused(ANT, "{\"model\":\"m\",\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "max_tokens", false);
    refused(ANT, "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[]}", "messages", false);
    refused(ANT, "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", "messages[0].role", false);
    refused(ANT, "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content", false);
    refused(ANT, "{\"model\":\"m\",\"max_tokens\":5,\"temperature\":1.5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "temperature", false);
    refused(ANT, "{\"model\":\"m\",\"max_tokens\":5,\"tool_choice\":{\"type\":\"weird\"},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "tool_choice", false);
    refused(ANT, "{\"model\":\"m\",\"max_tokens\":5,\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "tools", false);
    refused(ANT, "{\"model\":\"m\",\"max_tokens\":5,\"stream\":\"yes\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "stream", false);
}

static void test_predict_refusals(void **state)
{
    (void)state;
    refused(PRE, "nope", "", true);
    refused(PRE, "{\"input\":\"x\"}", "model", false);
    refused(PRE, "{\"model\":\"m\"}", "input", false);
    refused(PRE, "{\"model\":\"m\",\"input\":5}", "input", false);
    refused(PRE, "{\"model\":\"m\",\"input\":\"x\",\"stream\":true}", "stream", false);
    refused(PRE, "{\"model\":\"m\",\"input\":\"x\",\"routing\":{\"strategy\":\"fastest\"}}", "routing.strategy", false);
    refused(PRE, "{\"model\":\"m\",\"input\":\"x\",\"routing\":{\"max_cost\":-1}}", "routing.max_cost", false);
    refused(PRE, "{\"model\":\"m\",\"input\":\"x\",\"routing\":{\"timeout\":\"soon\"}}", "routing.timeout", false);
    refused(PRE, "{\"model\":\"m\",\"input\":\"x\",\"routing\":[]}", "routing", false);
}

static void check_error(const struct inbound_ops *ops, int status, const char *body, const char *want)
{
    struct arena a;
    arena_init(&a);
    char *out;
    size_t len;
    assert_int_equal(ops->error_from_openai(&a, status, body, strlen(body), &out, &len), 0);
    fx_assert_json("error", want, strlen(want), out, len);
    arena_free(&a);
}

static void test_errors(void **state)
{
    (void)state;
    const char *oe = "{\"error\":{\"message\":\"bad key\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"invalid_api_key\"}}";
    check_error(ANT, 401, oe, "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"bad key\"}}");
    static const struct { int status; const char *type; } map[] = {
        {400, "invalid_request_error"}, {403, "permission_error"}, {404, "not_found_error"},
        {429, "rate_limit_error"}, {500, "api_error"}, {502, "api_error"}, {503, "overloaded_error"},
        {529, "overloaded_error"}, {409, "invalid_request_error"},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        char want[256];
        snprintf(want, sizeof want, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"bad key\"}}", map[i].type);
        check_error(ANT, map[i].status, oe, want);
    }
    check_error(ANT, 502, "<html>", "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"HTTP 502\"}}");
    check_error(PRE, 401, oe, oe);
    check_error(PRE, 502, "garbage",
                "{\"error\":{\"message\":\"HTTP 502\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    assert_null(PRE->stream_begin);
}

static void test_response_garbage(void **state)
{
    (void)state;
    static const char *const bodies[] = {"", "{}", "{\"choices\":[]}", "{\"choices\":[{\"message\":5}]}", "[1]"};
    struct arena a;
    arena_init(&a);
    char *out;
    size_t len;
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        assert_int_equal(ANT->response_from_openai(&a, NULL, bodies[i], strlen(bodies[i]), &out, &len), -1);
        assert_int_equal(PRE->response_from_openai(&a, NULL, bodies[i], strlen(bodies[i]), &out, &len), -1);
    }
    /* A stream that ends with nothing still makes a well-formed message. */
    void *st = ANT->stream_begin(&a, "r", NULL);
    struct events ev = {0};
    ANT->stream_chunk(st, "not json", 8, collect, &ev);
    ANT->stream_end(st, collect, &ev);
    ANT->stream_end(st, collect, &ev);
    assert_non_null(strstr(ev.buf, "event: message_start"));
    assert_non_null(strstr(ev.buf, "\"stop_reason\":\"end_turn\""));
    assert_null(strstr(strstr(ev.buf, "event: message_stop") + 1, "event: message_stop"));
    free(ev.buf);
    arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anthropic_request),
        cmocka_unit_test(test_anthropic_response),
        cmocka_unit_test(test_anthropic_stream),
        cmocka_unit_test(test_anthropic_stream_error),
        cmocka_unit_test(test_predict_input),
        cmocka_unit_test(test_predict_messages),
        cmocka_unit_test(test_predict_response),
        cmocka_unit_test(test_anthropic_refusals),
        cmocka_unit_test(test_predict_refusals),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_response_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
