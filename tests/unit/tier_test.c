/* tier_test: tier names, tier -> model from routing.tiers or from prices,
 * and the content analyser's choices (src/routing/tier.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api/scan.h"
#include "config/config.h"
#include "routing/tier.h"

static struct diag_list diags;

static struct config *load(const char *text)
{
    diag_list_cleanup(&diags);
    struct config *c = config_load_text(text, strlen(text), "t.yaml", &diags);
    if (!c)
        for (size_t i = 0; i < diags.count; i++) print_message("%s\n", diags.items[i].text);
    assert_non_null(c);
    return c;
}

static const char *priced =
    "providers:\n"
    "  ollama:\n"
    "    type: local\n"
    "    models:\n"
    "      - name: qwen-3b\n"
    "  cloud:\n"
    "    type: openai\n"
    "    credentials: {api_key: k}\n"
    "    models:\n"
    "      - name: flash\n"
    "        cost_per_1k_tokens: 0\n"
    "      - name: haiku\n"
    "        cost_per_1k_tokens: 0.001\n"
    "      - name: sonnet\n"
    "        cost_per_1k_tokens: 0.003\n"
    "      - name: mid\n"
    "        cost_per_1k_tokens: 0.002\n"
    "      - name: opus\n"
    "        cost_per_1k_tokens: 0.015\n"
    "      - name: embed\n"
    "        cost_per_1k_tokens: 0.00001\n"
    "        capabilities: [embeddings]\n";

static void test_derived(void **state)
{
    struct config *c = load(priced);
    char why[64];
    assert_string_equal(tier_resolve(c, "free", why, sizeof why), "qwen-3b"); /* first at 0 */
    assert_string_equal(why, "first free model");
    assert_string_equal(tier_resolve(c, "cheap", why, sizeof why), "haiku"); /* cheapest paid, not embed */
    assert_string_equal(tier_resolve(c, "premium", why, sizeof why), "opus");
    /* paid: haiku .001, mid .002, sonnet .003, opus .015: lower median is mid */
    assert_string_equal(tier_resolve(c, "balanced", why, sizeof why), "mid");
    assert_string_equal(tier_resolve(c, "local", why, sizeof why), "qwen-3b");
    assert_string_equal(tier_resolve(c, "trivial", why, sizeof why), "haiku");
    assert_string_equal(tier_resolve(c, "standard", why, sizeof why), "mid");
    assert_string_equal(tier_resolve(c, "deep", why, sizeof why), "opus");
    assert_null(tier_resolve(c, "gpt-4o", why, sizeof why));
    config_unref(c);
}

static void test_configured(void **state)
{
    char text[2048];
    snprintf(text, sizeof text, "%srouting:\n  tiers:\n    cheap: flash\n    deep: sonnet\n", priced);
    struct config *c = load(text);
    char why[64];
    assert_string_equal(tier_resolve(c, "cheap", why, sizeof why), "flash");
    assert_string_equal(why, "routing.tiers.cheap");
    assert_string_equal(tier_resolve(c, "operational", why, sizeof why), "flash");
    assert_string_equal(tier_resolve(c, "deep", why, sizeof why), "sonnet"); /* task key wins */
    assert_string_equal(tier_resolve(c, "complex", why, sizeof why), "opus");
    config_unref(c);
    diag_list_cleanup(&diags);
    const char *bad = "routing:\n  tiers:\n    huge: x\n";
    assert_null(config_load_text(bad, strlen(bad), "t.yaml", &diags));
    assert_string_equal(diags.items[0].text,
                        "t.yaml:3: routing.tiers.huge: unknown tier (expected cheap, balanced, "
                        "premium, free, local, trivial, operational, standard, complex or deep)");
    diag_list_cleanup(&diags);
}

static void test_no_models(void **state)
{
    struct config *c = load("routing:\n  auto_tier: true\n");
    char why[64];
    for (size_t i = 0; i < c->n_providers; i++) c->providers[i].n_models = 0; /* hide defaults */
    size_t saved = c->n_providers;
    c->n_providers = 0;
    assert_null(tier_resolve(c, "cheap", why, sizeof why));
    c->n_providers = saved;
    config_unref(c);
}

static enum task_tier analyse(const char *content, char *why, size_t cap)
{
    char body[8192];
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}", content);
    struct req_facts f;
    memset(&f, 0, sizeof f);
    f.text_bytes = strlen(content);
    return tier_analyse(body, strlen(body), &f, why, cap);
}

static void test_analyser(void **state)
{
    char why[128];
    assert_int_equal(analyse("Fix this typo", why, sizeof why), TASK_TRIVIAL);
    assert_int_equal(analyse("hi", why, sizeof why), TASK_TRIVIAL);
    assert_string_equal(why, "size, ~1 tokens, 1 messages");
    assert_int_equal(analyse("What does this function do?", why, sizeof why), TASK_OPERATIONAL);
    assert_int_equal(analyse("What is a for loop?", why, sizeof why), TASK_OPERATIONAL);
    assert_string_equal(why, "keyword 'what is', ~5 tokens, 1 messages");
    assert_int_equal(analyse("Implement a REST endpoint", why, sizeof why), TASK_STANDARD);
    assert_int_equal(analyse("Refactor auth across 20 files", why, sizeof why), TASK_COMPLEX);
    assert_int_equal(analyse("Refactor the entire auth module to microservices", why, sizeof why),
                     TASK_COMPLEX);
    assert_int_equal(analyse("Debug this race condition step by step", why, sizeof why), TASK_DEEP);
    assert_int_equal(analyse("WHY DOES THIS DEADLOCK?", why, sizeof why), TASK_DEEP);
    assert_int_equal(analyse("look: ```int x;```", why, sizeof why), TASK_STANDARD);
    assert_string_equal(why, "code, ~5 tokens, 1 messages, code");
    /* size alone */
    static char big[40000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct req_facts f;
    memset(&f, 0, sizeof f);
    f.text_bytes = sizeof big - 1; /* 10000 tokens */
    assert_int_equal(tier_analyse(big, strlen(big), &f, why, sizeof why), TASK_DEEP);
    f.text_bytes = 4000; /* 1000 tokens */
    assert_int_equal(tier_analyse(big, strlen(big), &f, why, sizeof why), TASK_STANDARD);
    /* conversation depth: 8 messages lift a trivial chat one tier */
    char body[2048] = "{\"messages\":[";
    for (int i = 0; i < 8; i++) strcat(body, i ? ",{\"role\":\"user\",\"content\":\"ok\"}" : "{\"role\":\"user\",\"content\":\"ok\"}");
    strcat(body, "]}");
    f.text_bytes = 16;
    assert_int_equal(tier_analyse(body, strlen(body), &f, why, sizeof why), TASK_OPERATIONAL);
    assert_string_equal(why, "conversation depth, ~4 tokens, 8 messages");
    /* NULL body and facts are fine */
    assert_int_equal(tier_analyse(NULL, 0, NULL, why, sizeof why), TASK_TRIVIAL);
}

static void test_names(void **state)
{
    enum model_tier t;
    enum task_tier tt;
    assert_true(tier_parse("balanced", &t));
    assert_int_equal(t, TIER_BALANCED);
    assert_false(tier_parse("Balanced", &t));
    assert_true(task_tier_parse("deep", &tt));
    assert_false(task_tier_parse("cheap", &tt));
    assert_string_equal(tier_name(TIER_LOCAL), "local");
    assert_string_equal(task_tier_name(TASK_OPERATIONAL), "operational");
    assert_int_equal(task_tier_model_tier(TASK_TRIVIAL), TIER_CHEAP);
    assert_int_equal(task_tier_model_tier(TASK_OPERATIONAL), TIER_CHEAP);
    assert_int_equal(task_tier_model_tier(TASK_STANDARD), TIER_BALANCED);
    assert_int_equal(task_tier_model_tier(TASK_COMPLEX), TIER_PREMIUM);
    assert_int_equal(task_tier_model_tier(TASK_DEEP), TIER_PREMIUM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_derived),  cmocka_unit_test(test_configured),
        cmocka_unit_test(test_no_models), cmocka_unit_test(test_analyser),
        cmocka_unit_test(test_names),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    diag_list_cleanup(&diags);
    return rc;
}
