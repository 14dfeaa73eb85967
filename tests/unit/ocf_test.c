/* ocf_test: /v1/dnt/table parsing (connected peers only, llm services,
 * model= identity groups, null arrays, junk entries) and the OpenAI-format
 * request builder as the ocf adapter and the preset quirks use it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "provider_fixture.h"
#include "providers/ocf.h"

extern const struct provider_ops provider_ocf_ops;
extern const struct provider_ops provider_openai_ops;

/* The list as "model: peer peer\n" lines. */
static char *render(const struct ocf_model_list *l)
{
    size_t cap = 64, n = 0;
    char *out = xmalloc(cap);
    out[0] = '\0';
    for (size_t i = 0; i < l->count; i++) {
        size_t need = strlen(l->items[i].name) + 4;
        for (size_t k = 0; k < l->items[i].n_peers; k++) need += strlen(l->items[i].peers[k]) + 1;
        while (n + need + 1 > cap) out = xrealloc(out, cap *= 2);
        n += (size_t)sprintf(out + n, "%s:", l->items[i].name);
        for (size_t k = 0; k < l->items[i].n_peers; k++)
            n += (size_t)sprintf(out + n, " %s", l->items[i].peers[k]);
        n += (size_t)sprintf(out + n, "\n");
    }
    return out;
}

static void test_table(void **state)
{
    (void)state;
    size_t len = 0;
    char *json = fx_read("ocf_table", "table.json", &len);
    char *want = fx_read("ocf_table", "expected.txt", NULL);
    assert_non_null(json);
    struct ocf_model_list l;
    assert_int_equal(ocf_parse_table(json, len, &l), 0);
    char *got = render(&l);
    assert_string_equal(got, want);
    free(got);
    ocf_model_list_cleanup(&l);
    assert_int_equal(l.count, 0);
    free(json);
    free(want);
}

static void test_table_shapes(void **state)
{
    (void)state;
    struct ocf_model_list l;
    assert_int_equal(ocf_parse_table("", 0, &l), -1);
    assert_int_equal(l.count, 0);
    assert_int_equal(ocf_parse_table("null", 4, &l), -1);
    assert_int_equal(ocf_parse_table("\"x\"", 3, &l), -1);
    assert_int_equal(ocf_parse_table("{}", 2, &l), 0);
    assert_int_equal(l.count, 0);
    ocf_model_list_cleanup(&l);
    /* An array of peers, and a key used when the id is missing. */
    const char *arr = "[{\"id\":\"P1\",\"connected\":true,\"service\":[{\"name\":\"llm\",\"identity_group\":[\"model=a\"]}]},"
                      "{\"connected\":true,\"service\":[{\"name\":\"llm\",\"identity_group\":[\"model=b\"]}]}]";
    assert_int_equal(ocf_parse_table(arr, strlen(arr), &l), 0);
    char *got = render(&l);
    assert_string_equal(got, "a: P1\n");
    free(got);
    ocf_model_list_cleanup(&l);
    const char *keyed = "{\"/QmK\":{\"connected\":true,\"service\":[{\"name\":\"llm\",\"identity_group\":[\"model=m=1\"]}]}}";
    assert_int_equal(ocf_parse_table(keyed, strlen(keyed), &l), 0);
    got = render(&l);
    assert_string_equal(got, "m=1: QmK\n");
    free(got);
    ocf_model_list_cleanup(&l);
}

static void test_chat(void **s)
{
    (void)s;
    fx_case("ocf_chat", &provider_ocf_ops, PROVIDER_OCF, API_CHAT, "Qwen/Qwen3-0.6B");
}

static void test_embeddings(void **s)
{
    (void)s;
    fx_case("ocf_embeddings", &provider_ocf_ops, PROVIDER_OCF, API_EMBEDDINGS, "intfloat/e5");
}

static void test_endpoint_with_v1(void **state)
{
    (void)state;
    struct fx_call c;
    fx_call_init(&c, "ocf_chat", PROVIDER_OCF, API_CHAT, "q");
    c.provider.endpoint = "http://h:8092/v1";
    struct provider_request pr;
    char err[256];
    assert_int_equal(provider_ocf_ops.prepare(&c.call, &pr, err, sizeof err), 0);
    assert_string_equal(pr.url, "http://h:8092/v1/service/llm/v1/chat/completions");
    c.call.kind = API_IMAGES;
    assert_int_equal(provider_ocf_ops.prepare(&c.call, &pr, err, sizeof err), -1);
    fx_call_cleanup(&c);
}

static void test_mistral_quirks(void **s)
{
    (void)s;
    fx_preset = "mistral";
    fx_case("preset_mistral", &provider_openai_ops, PROVIDER_OPENAI, API_CHAT, "mistral-large-latest");
    fx_case("preset_mistral_plain", &provider_openai_ops, PROVIDER_OPENAI, API_CHAT, "mistral-large-latest");
    fx_preset = NULL;
}

static void test_other_presets_splice(void **state)
{
    (void)state;
    /* groq has no quirk: the body is spliced and usage asked for. */
    fx_preset = "groq";
    struct fx_call c;
    fx_call_init(&c, "preset_mistral_plain", PROVIDER_OPENAI, API_CHAT, "llama-3.3");
    struct provider_request pr;
    char err[256];
    assert_int_equal(provider_openai_ops.prepare(&c.call, &pr, err, sizeof err), 0);
    assert_non_null(strstr(pr.body, "\"stream_options\":{\"include_usage\":true}"));
    assert_non_null(strstr(pr.body, "\"model\":\"llama-3.3\""));
    fx_call_cleanup(&c);
    fx_preset = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_table_shapes),
        cmocka_unit_test(test_chat),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_endpoint_with_v1),
        cmocka_unit_test(test_mistral_quirks),
        cmocka_unit_test(test_other_presets_splice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
