/* discovery_test: model id lists from OpenAI /v1/models (llama.cpp, vLLM)
 * and Ollama /api/tags answers, with junk ids skipped and duplicates
 * dropped; data under tests/data/providers/discovery_*. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "provider_fixture.h"
#include "providers/discovery.h"

static void check(const char *name, int (*parse)(const char *, size_t, struct discovery_list *))
{
    size_t len = 0;
    char *json = fx_read(name, "models.json", &len);
    char *want = fx_read(name, "expected.txt", NULL);
    assert_non_null(json);
    assert_non_null(want);
    struct discovery_list l;
    assert_int_equal(parse(json, len, &l), 0);
    char got[4096];
    size_t n = 0;
    got[0] = '\0';
    for (size_t i = 0; i < l.count; i++) n += (size_t)snprintf(got + n, sizeof got - n, "%s\n", l.ids[i]);
    assert_string_equal(got, want);
    discovery_list_cleanup(&l);
    free(json);
    free(want);
}

static void test_openai(void **s) { (void)s; check("discovery_openai", discovery_parse_openai_models); }
static void test_ollama(void **s) { (void)s; check("discovery_ollama", discovery_parse_ollama_tags); }
static void test_auto(void **s)
{
    (void)s;
    check("discovery_openai", discovery_parse_models);
    check("discovery_ollama", discovery_parse_models);
    check("discovery_llamacpp", discovery_parse_models);
}

static void test_garbage(void **state)
{
    (void)state;
    struct discovery_list l;
    static const char *const bad[] = {"", "[]", "{}", "{\"data\":{}}", "{\"models\":null}", "<html>"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(discovery_parse_models(bad[i], strlen(bad[i]), &l), -1);
        assert_int_equal(l.count, 0);
    }
    assert_int_equal(discovery_parse_ollama_tags("{\"models\":[]}", 13, &l), 0);
    assert_int_equal(l.count, 0);
    discovery_list_cleanup(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai),
        cmocka_unit_test(test_ollama),
        cmocka_unit_test(test_auto),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
