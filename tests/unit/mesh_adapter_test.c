/* mesh_adapter_test: the mesh peer adapter (src/providers/mesh.c): the
 * forwarded request (URL, bearer secret, hop count, route) and taking the
 * peer's x-aiproxy object out of its answers, whole and streamed, and
 * from the tail of an answer by a peer of this build (mesh_relay_tail). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/scan.h"
#include "config/config.h"
#include "core/arena.h"
#include "providers/mesh.h"
#include "providers/provider.h"

static struct arena arena;
static struct config_model model = {.name = "m", .upstream_id = "m", .capabilities = CAP_TEXT};
static struct config_provider peer = {.name = "mesh:b", .type = PROVIDER_MESH, .enabled = true,
                                      .available = true, .endpoint = "http://127.0.0.1:9/v1",
                                      .api_key = "s3cret", .models = &model, .n_models = 1};
static struct req_facts facts;
static const char body[] = "{\"model\":\"alias\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

static struct provider_call call(void)
{
    assert_int_equal(scan_request(SCAN_CHAT, body, sizeof body - 1, &facts, NULL), 0);
    return (struct provider_call){.kind = API_CHAT, .body = body, .body_len = sizeof body - 1,
                                  .facts = &facts, .provider = &peer, .model = &model,
                                  .arena = &arena, .request_id = "req_1", .mesh_hops = 1,
                                  .mesh_via = "a"};
}

static int teardown(void **state)
{
    arena_free(&arena);
    return 0;
}

static void test_prepare(void **state)
{
    const struct provider_ops *ops = provider_ops_for(&peer);
    assert_non_null(ops);
    struct provider_call c = call();
    struct provider_request r;
    char err[128];
    assert_int_equal(ops->prepare(&c, &r, err, sizeof err), 0);
    assert_string_equal(r.url, "http://127.0.0.1:9/v1/chat/completions");
    assert_non_null(strstr(r.headers, "Authorization: Bearer s3cret\r\n"));
    assert_non_null(strstr(r.headers, "x-aiproxy-hops: 1\r\nx-aiproxy-via: a\r\n"));
    assert_non_null(strstr(r.body, "\"model\":\"m\"")); /* the name the peer advertised */
    c.mesh_via = "a\r\nx-evil: 1";
    assert_int_equal(ops->prepare(&c, &r, err, sizeof err), -1);
}

/* finish on `in`: the output and the relay. */
static const char *finish(const char *in, struct provider_relay *relay)
{
    const struct provider_ops *ops = provider_ops_for(&peer);
    struct provider_call c = call();
    struct provider_response resp = {.status = 200, .body = in, .len = strlen(in)};
    char *out = NULL, err[64];
    size_t n = 0;
    struct provider_usage u;
    memset(&u, 0, sizeof u);
    assert_int_equal(ops->finish(&c, &resp, &out, &n, &u, err, sizeof err), 0);
    assert_int_equal(strlen(out), n);
    *relay = u.relay;
    return out;
}

static void test_finish_cuts_the_relay(void **state)
{
    struct provider_relay r;
    const char *out = finish("{\"id\":\"x\",\"usage\":{\"prompt_tokens\":1},\"x-aiproxy\":{\"request_id\":"
                             "\"q\",\"provider\":\"pb\",\"node\":\"b\",\"route\":[\"a\",\"b\"],"
                             "\"attempts\":[{\"provider\":\"zz\"}],\"cost_nanos\":28000}}\n",
                             &r);
    assert_string_equal(out, "{\"id\":\"x\",\"usage\":{\"prompt_tokens\":1}}\n");
    assert_true(r.present);
    assert_int_equal(r.cost, 28000);
    assert_string_equal(r.node, "b");
    assert_string_equal(r.provider, "pb"); /* the top-level one, not an attempt's */
    assert_string_equal(r.route, "[\"a\",\"b\"]");
}

static void test_finish_leaves_other_shapes(void **state)
{
    static const char *const kept[] = {
        /* not a whole relay: no cost_nanos, a negative one, no node */
        "{\"a\":1,\"x-aiproxy\":{\"provider\":\"p\",\"node\":\"b\"}}",
        "{\"a\":1,\"x-aiproxy\":{\"provider\":\"p\",\"node\":\"b\",\"cost_nanos\":-5}}",
        "{\"a\":1,\"x-aiproxy\":{\"provider\":\"p\",\"cost_nanos\":5}}",
        /* not the last member, the only member, nested */
        "{\"x-aiproxy\":{\"provider\":\"p\",\"node\":\"b\",\"cost_nanos\":5},\"a\":1}",
        "{\"x-aiproxy\":{\"provider\":\"p\",\"node\":\"b\",\"cost_nanos\":5}}",
        "{\"a\":{\"x-aiproxy\":{\"provider\":\"p\",\"node\":\"b\",\"cost_nanos\":5}}}",
        /* not JSON */
        "{\"a\":1,\"x-aiproxy\":{\"provider\":\"p\",\"node\":\"b\",\"cost_nanos\":5}",
    };
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        struct provider_relay r;
        const char *out = finish(kept[i], &r);
        assert_string_equal(out, kept[i]);
        assert_false(r.present);
    }
}

struct emitted {
    char buf[1024];
    int n;
};

static void on_emit(void *ctx, const char *json, size_t len)
{
    struct emitted *e = ctx;
    snprintf(e->buf, sizeof e->buf, "%.*s", (int)len, json);
    e->n++;
}

static void test_stream_events(void **state)
{
    const struct provider_ops *ops = provider_ops_for(&peer);
    struct provider_call c = call();
    struct provider_stream st;
    memset(&st, 0, sizeof st);
    struct emitted e = {.n = 0};
    static const char chunk[] = "{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}";
    struct sse_event ev = {.event = "", .data = chunk, .data_len = sizeof chunk - 1};
    assert_int_equal(ops->stream_event(&c, &st, &ev, on_emit, &e), 0);
    assert_string_equal(e.buf, chunk);
    static const char last[] = "{\"choices\":[],\"usage\":{\"prompt_tokens\":3},\"x-aiproxy\":{"
                               "\"node\":\"b\",\"provider\":\"pb\",\"cost_nanos\":7}}";
    ev.data = last;
    ev.data_len = sizeof last - 1;
    assert_int_equal(ops->stream_event(&c, &st, &ev, on_emit, &e), 0);
    assert_string_equal(e.buf, "{\"choices\":[],\"usage\":{\"prompt_tokens\":3}}");
    assert_true(st.relay.present);
    assert_int_equal(st.relay.cost, 7);
    ev.data = "[DONE]";
    ev.data_len = 6;
    assert_int_equal(ops->stream_event(&c, &st, &ev, on_emit, &e), 0);
    assert_true(st.done);
    assert_int_equal(e.n, 2);
    ev.event = "error";
    ev.event_len = 5;
    ev.data = "{}";
    ev.data_len = 2;
    assert_int_equal(ops->stream_event(&c, &st, &ev, on_emit, &e), -1);
}

#define RELAY_OK "\"x-aiproxy\":{\"provider\":\"pb\",\"node\":\"b\",\"route\":[\"a\",\"b\"]," \
                 "\"cost_nanos\":28000,\"failovers\":0,\"usage\":{\"prompt_tokens\":9," \
                 "\"completion_tokens\":4,\"total_tokens\":13,\"cached_tokens\":2," \
                 "\"cache_write_tokens\":1}}"

static void test_relay_tail_takes_the_counts(void **state)
{
    static const char in[] = "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"\\\"x-aiproxy\\\":{\"}}],"
                             "\"usage\":{\"prompt_tokens\":1}," RELAY_OK "} \n";
    struct resp_facts rf;
    struct provider_relay r = {0};
    char *out;
    size_t n;
    assert_true(mesh_relay_tail(&arena, in, sizeof in - 1, &rf, &out, &n, &r));
    static const char want[] = "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"\\\"x-aiproxy\\\":{\"}}],"
                               "\"usage\":{\"prompt_tokens\":1}} \n";
    assert_int_equal(n, sizeof want - 1);
    assert_string_equal(out, want);
    assert_true(r.present);
    assert_int_equal(r.cost, 28000);
    assert_string_equal(r.node, "b");
    assert_string_equal(r.provider, "pb");
    assert_string_equal(r.route, "[\"a\",\"b\"]");
    /* what a scan of the answer without the relay says, counts from the relay */
    struct resp_facts scanned;
    assert_int_equal(scan_response(out, n, &scanned), 0);
    assert_int_equal(rf.close_off, scanned.close_off);
    assert_false(rf.root_empty);
    assert_false(rf.has_error);
    assert_true(rf.usage.present);
    assert_int_equal(rf.usage.prompt_tokens, 9);
    assert_int_equal(rf.usage.completion_tokens, 4);
    assert_int_equal(rf.usage.total_tokens, 13);
    assert_int_equal(rf.usage.cached_tokens, 2);
    assert_int_equal(rf.usage.cache_write_tokens, 1);
    /* a full scan reads the same relay, usage included, and the answer's own usage */
    assert_int_equal(scan_response(in, sizeof in - 1, &scanned), 0);
    assert_true(scanned.relay.present && scanned.relay.usage.present);
    assert_int_equal(scanned.relay.usage.completion_tokens, 4);
    assert_int_equal(scanned.usage.prompt_tokens, 1);
}

static void test_relay_tail_empty_root(void **state)
{
    static const char in[] = "{ ," RELAY_OK "}";
    struct resp_facts rf;
    struct provider_relay r = {0};
    char *out;
    size_t n;
    assert_true(mesh_relay_tail(&arena, in, sizeof in - 1, &rf, &out, &n, &r));
    assert_string_equal(out, "{ }");
    assert_true(rf.root_empty);
    assert_int_equal(rf.close_off, 2);
}

static void test_relay_tail_leaves_other_shapes(void **state)
{
    static const char *const left[] = {
        /* a relay of an older build: no usage, or not all five counts */
        "{\"a\":1,\"x-aiproxy\":{\"provider\":\"p\",\"node\":\"b\",\"cost_nanos\":5}}",
        "{\"a\":1,\"x-aiproxy\":{\"provider\":\"p\",\"node\":\"b\",\"cost_nanos\":5,\"usage\":"
        "{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2,\"cached_tokens\":0}}}",
        /* a count that is not a non-negative integer */
        "{\"a\":1,\"x-aiproxy\":{\"provider\":\"p\",\"node\":\"b\",\"cost_nanos\":5,\"usage\":"
        "{\"prompt_tokens\":-1,\"completion_tokens\":1,\"total_tokens\":2,\"cached_tokens\":0,"
        "\"cache_write_tokens\":0}}}",
        /* not the last member; the only member; nested; not closed; not an object */
        "{\"a\":1," RELAY_OK ",\"b\":2}",
        "{" RELAY_OK "}",
        "{\"a\":{\"b\":1," RELAY_OK "}}",
        "{\"a\":1," RELAY_OK,
        "[\"a\",1," RELAY_OK "}",
        /* the relay is not JSON */
        "{\"a\":1,\"x-aiproxy\":{\"provider\":\"p\",\"node\":\"b\",\"cost_nanos\":5,,\"usage\":{}}}",
        "", "}", "{}",
    };
    for (size_t i = 0; i < sizeof left / sizeof left[0]; i++) {
        struct resp_facts rf;
        memset(&rf, 0x5a, sizeof rf);
        struct provider_relay r = {0};
        char *out = NULL;
        size_t n = 0;
        assert_false(mesh_relay_tail(&arena, left[i], strlen(left[i]), &rf, &out, &n, &r));
        assert_null(out);
        assert_false(r.present);
        assert_int_equal(((unsigned char *)&rf)[0], 0x5a); /* unchanged */
    }
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, teardown)
    const struct CMUnitTest tests[] = {
        T(test_prepare),
        T(test_finish_cuts_the_relay),
        T(test_finish_leaves_other_shapes),
        T(test_stream_events),
        T(test_relay_tail_takes_the_counts),
        T(test_relay_tail_empty_root),
        T(test_relay_tail_leaves_other_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
