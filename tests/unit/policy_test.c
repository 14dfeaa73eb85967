/* policy_test: routing.policies (src/routing/policy.c): the standard's
 * examples (4.1, 7.1) load and compile, every grammar form parses, every
 * error names the exact column, and evaluation orders and filters as
 * docs/routing.md says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "routing/policy.h"

static struct diag_list diags;

static int reset(void **state)
{
    diag_list_cleanup(&diags);
    return 0;
}

static struct config *load(const char *text)
{
    diag_list_cleanup(&diags);
    return config_load_text(text, strlen(text), "aiproxy.yaml", &diags);
}

static bool has_diag(enum diag_severity s, const char *text)
{
    for (size_t i = 0; i < diags.count; i++)
        if (diags.items[i].severity == s && strcmp(diags.items[i].text, text) == 0) return true;
    return false;
}

static void print_diags(void)
{
    for (size_t i = 0; i < diags.count; i++) print_message("diag: %s\n", diags.items[i].text);
}

/* Parses one rule alone; returns the policy_add_rule code. */
static int rule(const char *if_text, const char *then_text, struct policy_error *err)
{
    struct policy_set *set = policy_set_new(NULL);
    int rc = policy_add_rule(set, "p", NULL, if_text, then_text, err);
    policy_set_free(set);
    return rc;
}

static void ok_if(const char *text)
{
    struct policy_error err;
    int rc = rule(text, "priority = 1", &err);
    if (rc) print_message("'%s': col %d: %s\n", text, err.col, err.msg);
    assert_int_equal(rc, 0);
}

static void ok_then(const char *text)
{
    struct policy_error err;
    int rc = rule(NULL, text, &err);
    if (rc) print_message("'%s': col %d: %s\n", text, err.col, err.msg);
    assert_int_equal(rc, 0);
}

static void bad_if(const char *text, int col, const char *msg)
{
    struct policy_error err;
    assert_int_equal(rule(text, "priority = 1", &err), -1);
    if (err.col != col || strcmp(err.msg, msg) != 0)
        print_message("'%s': got col %d: %s\n", text, err.col, err.msg);
    assert_int_equal(err.col, col);
    assert_string_equal(err.msg, msg);
}

static void bad_then(const char *text, int col, const char *msg)
{
    struct policy_error err;
    assert_int_equal(rule("request.stream", text, &err), -2);
    if (err.col != col || strcmp(err.msg, msg) != 0)
        print_message("'%s': got col %d: %s\n", text, err.col, err.msg);
    assert_int_equal(err.col, col);
    assert_string_equal(err.msg, msg);
}

/* ---- the standard's examples ---- */

static void test_standard_full_example(void **state)
{
    diag_list_cleanup(&diags);
    struct config *c = config_load_file("configs/aiproxy-full.yaml", &diags);
    if (!c) print_diags();
    assert_non_null(c);
    assert_non_null(c->compiled_policies);
    assert_int_equal(policy_set_count(c->compiled_policies), 3);
    /* request.model == 'gpt-4*' is literal: a warning says so */
    bool warned = false;
    for (size_t i = 0; i < diags.count; i++)
        if (strstr(diags.items[i].text, "routing.policies[2].rules[1].if: '==' compares literally"))
            warned = true;
    assert_true(warned);
    config_unref(c);
}

static const char *short_form =
    "providers:\n"
    "  local:\n"
    "    type: local\n"
    "    models:\n"
    "      - name: m\n"
    "  cloud:\n"
    "    type: openai\n"
    "    credentials:\n"
    "      api_key: k\n"
    "    models:\n"
    "      - name: m\n"
    "routing:\n"
    "  strategy: \"cost_optimized\"\n"
    "  policies:\n"
    "    - if: \"provider.type == 'local'\"\n"
    "      then: \"priority = 1\"\n"
    "    - else: \"priority = 999\"\n";

static void test_standard_short_form(void **state)
{
    struct config *c = load(short_form);
    if (!c) print_diags();
    assert_non_null(c);
    assert_int_equal(c->routing.n_policies, 1);
    assert_true(c->routing.policies[0].bare);
    assert_int_equal(c->routing.policies[0].n_rules, 2);
    assert_int_equal(policy_set_count(c->compiled_policies), 1);

    struct policy_provider pp[2] = {
        {.provider = &c->providers[1], .priority = 100},
        {.provider = &c->providers[0], .priority = 100},
    };
    if (strcmp(c->providers[0].name, "local") != 0) {
        pp[0].provider = &c->providers[0];
        pp[1].provider = &c->providers[1];
    }
    struct policy_request rq = {.model = "m", .tier = ""};
    struct policy_outcome out[2];
    size_t nk = policy_apply(c->compiled_policies, STRATEGY_COST_OPTIMIZED, &rq, pp, 2, out);
    assert_int_equal(nk, 1);
    for (int i = 0; i < 2; i++) {
        bool local = pp[i].provider->type == PROVIDER_LOCAL;
        assert_int_equal(out[i].priority, local ? 1 : 999);
        assert_int_equal(out[i].keys[0], local ? 1 : 999);
        assert_false(out[i].excluded);
    }
    config_unref(c);
}

static void test_error_location(void **state)
{
    assert_null(load("routing:\n"
                     "  policies:\n"
                     "    - name: p\n"
                     "      rules:\n"
                     "        - if: \"request.tokens < 1000 and\"\n"
                     "          then: \"provider.priority ASC\"\n"
                     "        - if: \"request.stream\"\n"
                     "          then: \"provider.priority UP\"\n"));
    assert_true(has_diag(DIAG_ERROR, "aiproxy.yaml:5:26: routing.policies[0].rules[0].if: expected "
                                     "a field such as request.tokens or provider.type, found the "
                                     "end of the rule"));
    assert_true(has_diag(DIAG_ERROR, "aiproxy.yaml:8:19: routing.policies[0].rules[1].then: "
                                     "expected ASC or DESC, found 'UP'"));
    assert_null(load("routing:\n"
                     "  policies:\n"
                     "    - if: \"provider.type = 'local'\"\n"
                     "      then: \"priority = 1\"\n"
                     "    - else: \"priority = x\"\n"));
    assert_true(has_diag(DIAG_ERROR, "aiproxy.yaml:3:15: routing.policies[0].if: '=' assigns; "
                                     "compare with '=='"));
    assert_true(has_diag(DIAG_ERROR, "aiproxy.yaml:5:12: routing.policies[1].else: expected a "
                                     "whole number, found 'x'"));
}

static void test_warnings(void **state)
{
    struct config *c = load("routing:\n"
                            "  policies:\n"
                            "    - name: p\n"
                            "      rules:\n"
                            "        - else: \"priority = 1\"\n"
                            "        - if: \"request.stream\"\n"
                            "          then: \"require provider.nowhere\"\n");
    assert_non_null(c);
    assert_true(has_diag(DIAG_WARNING,
                         "aiproxy.yaml:6: routing.policies[0].rules[1]: never applies (after an else)"));
    assert_true(has_diag(DIAG_WARNING, "aiproxy.yaml:6: routing.policies[0].rules[1].then: no "
                                       "provider is named 'nowhere' and it is not a provider type"));
    config_unref(c);
}

/* ---- grammar ---- */

static void test_conditions_parse(void **state)
{
    ok_if("request.tokens < 1000");
    ok_if("request.tokens >= 1000");
    ok_if("request.tokens <= 5 or request.tokens > 7 or request.tokens == 3 or request.tokens != 4");
    ok_if("request.model matches 'llama-*'");
    ok_if("request.model == \"gpt-4o\"");
    ok_if("request.model != 'x'");
    ok_if("request.stream");
    ok_if("request.stream == false");
    ok_if("not request.stream");
    ok_if("!request.stream && request.tokens < 3 || provider.name == 'a'");
    ok_if("request.capabilities contains 'vision'");
    ok_if("request.capabilities contains 'function-calling'");
    ok_if("provider.type == 'local'");
    ok_if("provider.priority < 3");
    ok_if("provider.cost_per_1k_tokens <= 0.002");
    ok_if("provider.cost_per_1k_tokens == 0");
    ok_if("(request.tokens < 10 or request.stream) and not (provider.type == 'local')");
    ok_if("request.max_tokens > 100 AND request.tier == 'cheap' Or provider.weight > 1");
    ok_if("provider.latency_ms < 500 and provider.load < 800 and provider.cost < 0.1");
    ok_if("((((request.stream))))");
    ok_if("provider.priority > -5");
}

static void test_actions_parse(void **state)
{
    ok_then("provider.priority ASC");
    ok_then("provider.cost_per_1k_tokens asc");
    ok_then("provider.latency_ms DESC");
    ok_then("provider.cost ASC");
    ok_then("provider.load ASC");
    ok_then("provider.weight DESC");
    ok_then("provider.name ASC");
    ok_then("priority = 1");
    ok_then("priority=-3");
    ok_then("prefer provider.local > provider.cloudflare");
    ok_then("prefer provider.a > provider.b > provider.c");
    ok_then("prefer provider.only");
    ok_then("require provider.openai");
    ok_then("require provider.my-provider_2");
}

static void test_condition_errors(void **state)
{
    bad_if("", 1, "empty condition");
    bad_if("request.tokens <", 17, "expected a number, found the end of the rule");
    bad_if("request.tokens < 'x'", 18, "expected a number, found a string");
    bad_if("request.tokens < 1.5", 18, "expected a whole number, found '1.5'");
    bad_if("request.model < 'x'", 15, "request.model can only be compared with == or !=");
    bad_if("request.model == 5", 18, "expected a quoted string, found '5'");
    bad_if("request.colour == 'x'", 1, "unknown field 'request.colour'");
    bad_if("req.model == 'x'", 1, "expected a field starting with request. or provider.");
    bad_if("request model", 9, "expected '.' after the object name, found 'model'");
    bad_if("request.model", 14,
           "expected a comparison (==, !=, <, <=, >, >=, matches or contains), found the end of the rule");
    bad_if("request.model == 'x", 18, "unterminated string (no closing ')");
    bad_if("(request.stream", 1, "unbalanced '(': no matching ')'");
    bad_if("request.stream)", 15, "expected and, or or the end of the condition, found ')'");
    bad_if("request.stream and", 19,
           "expected a field such as request.tokens or provider.type, found the end of the rule");
    bad_if("request.tokens matches 'x*'", 16, "'matches' needs a text field (request.tokens is not)");
    bad_if("request.model matches x", 23, "expected a quoted glob such as 'llama-*', found 'x'");
    bad_if("request.capabilities contains 'telepathy'", 31,
           "unknown capability 'telepathy' (expected vision, tools, embeddings, text-generation, ...)");
    bad_if("provider.type contains 'x'", 15, "'contains' applies to request.capabilities");
    bad_if("request.capabilities == 'x'", 22, "request.capabilities is compared with 'contains'");
    bad_if("request.stream == 1", 19, "expected true or false, found '1'");
    bad_if("provider.cost_per_1k_tokens < -1", 31,
           "expected a non-negative amount in USD, found '-1'");
    bad_if("request.tokens < 10 # x", 21, "unexpected character '#'");
    bad_if("request.tokens\x01 < 3", 15, "unexpected byte 0x01");
    char deep[200];
    memset(deep, '(', 40);
    strcpy(deep + 40, "request.stream");
    bad_if(deep, 33, "nested too deeply");
}

static void test_action_errors(void **state)
{
    bad_then("", 1, "empty action (expected provider.FIELD ASC|DESC, priority = N, prefer or require)");
    bad_then("priority 1", 10, "expected '=' after priority, found '1'");
    bad_then("priority = ", 12, "expected a whole number, found the end of the rule");
    bad_then("priority = 1 2", 14, "expected the end of the action, found '2'");
    bad_then("provider.priority", 18, "expected ASC or DESC, found the end of the rule");
    bad_then("request.tokens ASC", 1, "cannot order by request.tokens (order by a provider field)");
    bad_then("prefer local", 8, "expected provider.NAME, found 'local'");
    bad_then("prefer provider.a >", 20, "expected provider.NAME, found the end of the rule");
    bad_then("prefer provider.a provider.b", 19, "expected '>' or the end of the action, found 'provider'");
    bad_then("require provider.", 18,
             "expected a provider name or type after 'provider.', found the end of the rule");
    bad_then("require provider.a > provider.b", 20, "expected the end of the action, found '>'");
}

/* ---- evaluation ---- */

static struct config *three(void)
{
    struct config *c = load("providers:\n"
                            "  local:\n"
                            "    type: local\n"
                            "    priority: 5\n"
                            "    models:\n"
                            "      - name: llama-3\n"
                            "        cost_per_1k_tokens: 0\n"
                            "  cloudflare:\n"
                            "    type: cloudflare\n"
                            "    priority: 2\n"
                            "    credentials: {account_id: a, api_token: t}\n"
                            "    models:\n"
                            "      - name: llama-3\n"
                            "        cost_per_1k_tokens: 0.0001\n"
                            "  openai:\n"
                            "    type: openai\n"
                            "    priority: 1\n"
                            "    credentials: {api_key: k}\n"
                            "    models:\n"
                            "      - name: llama-3\n"
                            "        cost_per_1k_tokens: 0.01\n");
    if (!c) print_diags();
    assert_non_null(c);
    return c;
}

static size_t apply_rules(struct config *c, const char *const *rules, size_t n_rules,
                          enum routing_strategy s, const struct policy_request *rq,
                          struct policy_outcome *out, struct policy_provider *pp)
{
    struct policy_set *set = policy_set_new(c);
    for (size_t i = 0; i < n_rules; i += 3) {
        struct policy_error err;
        int rc = policy_add_rule(set, rules[i], rules[i] && strstr(rules[i], "cost") ? "cost_optimized" : NULL,
                                 rules[i + 1], rules[i + 2], &err);
        if (rc) print_message("rule %zu: col %d: %s\n", i / 3, err.col, err.msg);
        assert_int_equal(rc, 0);
    }
    for (size_t i = 0; i < c->n_providers; i++) {
        const struct config_model *m = &c->providers[i].models[0];
        pp[i] = (struct policy_provider){.provider = &c->providers[i],
                                         .priority = c->providers[i].priority,
                                         .cost_per_1k = m->price_in_per_1k};
    }
    size_t nk = policy_apply(set, s, rq, pp, c->n_providers, out);
    policy_set_free(set);
    return nk;
}

static int idx(struct config *c, const char *name)
{
    for (size_t i = 0; i < c->n_providers; i++)
        if (strcmp(c->providers[i].name, name) == 0) return (int)i;
    fail();
    return -1;
}

static void test_order_actions(void **state)
{
    struct config *c = three();
    struct policy_outcome out[3];
    struct policy_provider pp[3];
    struct policy_request rq = {.model = "llama-3", .tokens = 500, .tier = ""};
    const char *rules[] = {
        "minimize_cost", "request.tokens < 1000", "provider.priority ASC",
        "minimize_cost", "request.tokens >= 1000", "provider.cost_per_1k_tokens DESC",
    };
    assert_int_equal(apply_rules(c, rules, 6, STRATEGY_COST_OPTIMIZED, &rq, out, pp), 1);
    assert_int_equal(out[idx(c, "openai")].keys[0], 1);
    assert_int_equal(out[idx(c, "local")].keys[0], 5);
    rq.tokens = 2000;
    apply_rules(c, rules, 6, STRATEGY_COST_OPTIMIZED, &rq, out, pp);
    assert_true(out[idx(c, "openai")].keys[0] < out[idx(c, "cloudflare")].keys[0]);
    assert_true(out[idx(c, "cloudflare")].keys[0] < out[idx(c, "local")].keys[0]);
    /* a policy typed for another strategy does not apply */
    assert_int_equal(apply_rules(c, rules, 6, STRATEGY_WEIGHTED, &rq, out, pp), 0);
    config_unref(c);
}

static void test_prefer_and_require(void **state)
{
    struct config *c = three();
    struct policy_outcome out[3];
    struct policy_provider pp[3];
    struct policy_request rq = {.model = "llama-3", .tier = ""};
    const char *rules[] = {
        "route_by_model", "request.model matches 'llama-*'", "prefer provider.local > provider.cloudflare",
        "route_by_model", "request.model == 'gpt-4o'", "require provider.openai",
    };
    assert_int_equal(apply_rules(c, rules, 6, STRATEGY_COST_OPTIMIZED, &rq, out, pp), 1);
    assert_int_equal(out[idx(c, "local")].keys[0], 0);
    assert_int_equal(out[idx(c, "cloudflare")].keys[0], 1);
    assert_int_equal(out[idx(c, "openai")].keys[0], 2);
    assert_string_equal(out[idx(c, "local")].note,
                        "policy route_by_model: prefer provider.local > provider.cloudflare");
    rq.model = "gpt-4o";
    apply_rules(c, rules, 6, STRATEGY_COST_OPTIMIZED, &rq, out, pp);
    assert_false(out[idx(c, "openai")].excluded);
    assert_true(out[idx(c, "local")].excluded);
    assert_string_equal(out[idx(c, "local")].note, "policy route_by_model requires provider openai");
    /* no rule matched: after everyone a rule placed */
    rq.model = "other";
    apply_rules(c, rules, 6, STRATEGY_COST_OPTIMIZED, &rq, out, pp);
    assert_int_equal(out[0].keys[0], INT64_MAX);
    config_unref(c);
}

static void test_provider_type_reference(void **state)
{
    /* provider.cloudflare names the provider; provider.local too; a type
     * name that is no provider's name matches by type */
    struct config *c = three();
    struct policy_outcome out[3];
    struct policy_provider pp[3];
    struct policy_request rq = {.model = "llama-3", .tier = ""};
    const char *rules[] = {"p", NULL, "require provider.cloudflare"};
    apply_rules(c, rules, 3, STRATEGY_COST_OPTIMIZED, &rq, out, pp);
    assert_false(out[idx(c, "cloudflare")].excluded);
    assert_true(out[idx(c, "openai")].excluded);
    config_unref(c);
}

static void test_priority_then_conditions(void **state)
{
    struct config *c = three();
    struct policy_outcome out[3];
    struct policy_provider pp[3];
    struct policy_request rq = {.model = "llama-3", .tokens = 10, .stream = true, .caps = CAP_VISION, .tier = ""};
    const char *rules[] = {
        "lat", "provider.type == 'local'", "priority = 1",
        "lat", "provider.type == 'cloudflare' and request.stream", "priority = 2",
        "lat", NULL, "priority = 3",
        "second", "request.capabilities contains 'vision' and provider.cost_per_1k_tokens > 0.001",
        "priority = 50",
        "order", NULL, "provider.priority ASC",
    };
    assert_int_equal(apply_rules(c, rules, 15, STRATEGY_LATENCY_OPTIMIZED, &rq, out, pp), 3);
    assert_int_equal(out[idx(c, "local")].priority, 1);
    assert_int_equal(out[idx(c, "cloudflare")].priority, 2);
    assert_int_equal(out[idx(c, "openai")].priority, 50); /* the last assignment wins */
    assert_int_equal(out[idx(c, "openai")].keys[0], 3);
    assert_int_equal(out[idx(c, "openai")].keys[1], 50);
    assert_int_equal(out[idx(c, "local")].keys[1], INT64_MAX);
    assert_int_equal(out[idx(c, "openai")].keys[2], 50); /* ordering sees assignments */
    config_unref(c);
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, reset)
    const struct CMUnitTest tests[] = {
        T(test_standard_full_example), T(test_standard_short_form), T(test_error_location),
        T(test_warnings),              T(test_conditions_parse),    T(test_actions_parse),
        T(test_condition_errors),      T(test_action_errors),       T(test_order_actions),
        T(test_prefer_and_require),    T(test_provider_type_reference),
        T(test_priority_then_conditions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
