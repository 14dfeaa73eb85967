/* cloudflare_test: the cloudflare adapter against the data cases of
 * tests/data/providers/cloudflare_* (chat, envelope success and failure,
 * tool calls, streams, embeddings, binary and JSON images), plus request
 * refusals and the run URL. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "provider_fixture.h"

extern const struct provider_ops provider_cloudflare_ops;
#define OPS (&provider_cloudflare_ops)

static void chat(const char *name)
{
    fx_case(name, OPS, PROVIDER_CLOUDFLARE, API_CHAT, "@cf/meta/llama-3.1-8b-instruct");
}

static void test_chat(void **s) { (void)s; chat("cloudflare_chat"); }
static void test_chat_no_usage(void **s) { (void)s; chat("cloudflare_chat_no_usage"); }
static void test_failure(void **s) { (void)s; chat("cloudflare_failure"); }
static void test_tools(void **s) { (void)s; chat("cloudflare_tools"); }
static void test_image_part(void **s) { (void)s; chat("cloudflare_image_part"); }
static void test_stream(void **s) { (void)s; chat("cloudflare_stream"); }
static void test_stream_error(void **s) { (void)s; chat("cloudflare_stream_error"); }

static void test_embeddings(void **s)
{
    (void)s;
    fx_case("cloudflare_embeddings", OPS, PROVIDER_CLOUDFLARE, API_EMBEDDINGS,
            "@cf/baai/bge-base-en-v1.5");
}

static void test_image_binary(void **s)
{
    (void)s;
    fx_case("cloudflare_image_binary", OPS, PROVIDER_CLOUDFLARE, API_IMAGES,
            "@cf/stabilityai/stable-diffusion-xl-base-1.0");
}

static void test_image_json(void **s)
{
    (void)s;
    fx_case("cloudflare_image_json", OPS, PROVIDER_CLOUDFLARE, API_IMAGES,
            "@cf/black-forest-labs/flux-1-schnell");
}

static int prepare_body(const char *body, enum api_kind kind, const char *account, char *err)
{
    struct fx_call c;
    fx_call_init(&c, "none", PROVIDER_CLOUDFLARE, kind, "@cf/x");
    free(c.body);
    c.body = xstrdup(body);
    c.call.body = c.body;
    c.call.body_len = strlen(body);
    c.provider.account_id = (char *)account;
    struct scan_error se;
    if (kind == API_EMBEDDINGS)
        assert_int_equal(scan_request(SCAN_EMBEDDINGS, body, strlen(body), &c.facts, &se), 0);
    struct provider_request pr;
    int rc = OPS->prepare(&c.call, &pr, err, 256);
    fx_call_cleanup(&c);
    return rc;
}

static void test_refusals(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(prepare_body("{\"model\":\"e\",\"input\":[[1,2]]}", API_EMBEDDINGS, "a", err), -1);
    assert_non_null(strstr(err, "token arrays"));
    assert_int_equal(prepare_body("{\"model\":\"i\",\"prompt\":\"x\",\"n\":2}", API_IMAGES, "a", err), -1);
    assert_int_equal(prepare_body("{\"model\":\"i\",\"prompt\":\"x\",\"size\":\"big\"}", API_IMAGES, "a", err), -1);
    assert_int_equal(prepare_body("{\"model\":\"i\"}", API_IMAGES, "a", err), -1);
    assert_int_equal(prepare_body("{\"model\":\"i\",\"prompt\":\"x\"}", API_IMAGES, "a/../b", err), -1);
    assert_non_null(strstr(err, "account_id"));
    assert_int_equal(prepare_body("{\"model\":\"i\",\"prompt\":\"x\"}", API_COMPLETIONS, "a", err), -1);
    assert_int_equal(prepare_body("{\"model\":\"i\",\"prompt\":\"x\",\"size\":\"auto\"}", API_IMAGES, "a", err), 0);
}

static void test_finish_garbage(void **state)
{
    (void)state;
    struct fx_call c;
    fx_call_init(&c, "none", PROVIDER_CLOUDFLARE, API_CHAT, "@cf/x");
    static const char *const bodies[] = {
        "", "[]", "{\"success\":true}", "{\"success\":true,\"result\":{}}",
        "{\"error\":{\"code\":7,\"message\":\"bad\"}}", "{\"result\":{\"response\":1}}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        struct provider_response resp = {.status = 200, .body = bodies[i], .len = strlen(bodies[i])};
        char *out;
        size_t len;
        struct provider_usage u = {0};
        char err[256] = "";
        int rc = OPS->finish(&c.call, &resp, &out, &len, &u, err, sizeof err);
        if (i == 5) assert_int_equal(rc, 0); /* a non-string response is JSON-encoded */
        else assert_int_equal(rc, -1);
        if (i == 4) assert_non_null(strstr(err, "bad"));
    }
    c.call.kind = API_IMAGES;
    struct provider_response empty = {.status = 200, .content_type = "image/png", .body = "", .len = 0};
    char *out;
    size_t len;
    struct provider_usage u = {0};
    char err[256];
    assert_int_equal(OPS->finish(&c.call, &empty, &out, &len, &u, err, sizeof err), -1);
    fx_call_cleanup(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat),
        cmocka_unit_test(test_chat_no_usage),
        cmocka_unit_test(test_failure),
        cmocka_unit_test(test_tools),
        cmocka_unit_test(test_image_part),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_stream_error),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_image_binary),
        cmocka_unit_test(test_image_json),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_finish_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
