/* routing_test: routing_plan_request (src/routing/candidates.c) with fixed
 * configs and fixed live stats: every strategy's exact order and reasons,
 * ties, latency exploration, capabilities, max_cost, health, the
 * fallback_chain, policies over the strategy, overrides and their errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/scan.h"
#include "config/config.h"
#include "routing/candidates.h"
#include "routing/circuit.h"
#include "routing/stats.h"

static struct diag_list diags;
static struct config *cfg;
static int config_no; /* stats are global by name: each test gets its own names */

static struct arena plans; /* what the plans of one test allocate */

static int teardown(void **state)
{
    arena_free(&plans);
    config_unref(cfg);
    cfg = NULL;
    diag_list_cleanup(&diags);
    return 0;
}

/* Three providers serving "m": a cheap (priority 3), b mid (priority 1),
 * c dear (priority 2), plus extras from `more`. Stats are attached and
 * zeroed. */
static void load(const char *routing)
{
    config_unref(cfg); /* a test may load more than one config */
    cfg = NULL;
    char text[4096];
    snprintf(text, sizeof text,
             "providers:\n"
             "  a:\n"
             "    type: local\n"
             "    priority: 3\n"
             "    weight: 1\n"
             "    models:\n"
             "      - name: m\n"
             "        cost_per_1k_tokens: 0.001\n"
             "  b:\n"
             "    type: openai\n"
             "    priority: 1\n"
             "    weight: 3\n"
             "    max_concurrency: 10\n"
             "    credentials: {api_key: k}\n"
             "    models:\n"
             "      - name: m\n"
             "        cost_per_1k_tokens: 0.002\n"
             "        capabilities: [chat, vision]\n"
             "  c:\n"
             "    type: anthropic\n"
             "    priority: 2\n"
             "    weight: 0\n"
             "    credentials: {api_key: k}\n"
             "    models:\n"
             "      - name: m\n"
             "        cost_per_1k_tokens: 0.01\n"
             "        capabilities: [chat, vision, tools]\n"
             "%s",
             routing);
    diag_list_cleanup(&diags);
    cfg = config_load_text(text, strlen(text), "r.yaml", &diags);
    if (!cfg)
        for (size_t i = 0; i < diags.count; i++) print_message("%s\n", diags.items[i].text);
    assert_non_null(cfg);
    config_no++;
    for (size_t i = 0; i < cfg->n_providers; i++) {
        char name[64];
        snprintf(name, sizeof name, "t%d-%s", config_no, cfg->providers[i].name);
        cfg->providers[i].stats = provider_stats_get(name);
        provider_stats_reset(cfg->providers[i].stats);
    }
}

/* The provider-level figures of `name`. */
static struct provider_stats *pst(const char *name)
{
    for (size_t i = 0; i < cfg->n_providers; i++)
        if (strcmp(cfg->providers[i].name, name) == 0) return cfg->providers[i].stats;
    fail();
    return NULL;
}

/* The figures an attempt on model "m" of `name` is counted on (the
 * provider+model entry; it passes them on to the provider's). */
static struct provider_stats *st(const char *name)
{
    return provider_stats_model(pst(name), "m");
}

static struct req_facts facts(size_t text_bytes, int64_t max_tokens)
{
    struct req_facts f;
    memset(&f, 0, sizeof f);
    f.text_bytes = text_bytes;
    f.max_tokens = max_tokens;
    f.n = 1;
    return f;
}

static struct route_input input(const struct req_facts *f)
{
    return (struct route_input){.model = "m", .facts = f, .max_cost_nanos = -1, .now_ms = 1000000};
}

/* The plan's provider names joined with ',' */
static const char *order(const struct route_plan *p)
{
    static char buf[256];
    buf[0] = '\0';
    for (size_t i = 0; i < p->n; i++) {
        strcat(buf, i ? "," : "");
        strcat(buf, p->items[i].provider->name);
    }
    return buf;
}

static void plan(const struct route_input *in, struct route_plan *out)
{
    routing_plan_request(cfg, in, out, &plans);
}

/* ---- strategies ---- */

static void test_cost_optimized(void **state)
{
    load("");
    struct req_facts f = facts(4000, 100); /* 1000 prompt tokens + 100 completion */
    struct route_input in = input(&f);
    struct route_plan p;
    plan(&in, &p);
    assert_int_equal(p.error, ROUTE_OK);
    assert_int_equal(p.strategy_used, STRATEGY_COST_OPTIMIZED);
    assert_string_equal(order(&p), "a,b,c");
    assert_int_equal(p.items[0].est_cost, 1100000); /* 1100 tokens at $0.001/1k */
    assert_int_equal(p.items[1].est_cost, 2200000);
    assert_string_equal(p.items[0].reason, "cost_optimized: est $0.0011");
    assert_string_equal(p.reason, "cost_optimized: est $0.0011");
    assert_int_equal(p.prompt_tokens, 1000);
    /* completion from max_tokens_default when the request has none */
    f = facts(0, -1);
    plan(&in, &p);
    assert_int_equal(p.items[0].est_cost, 4096000);
}

static void test_cost_ties_by_priority(void **state)
{
    load("");
    /* make b as cheap as a: b has priority 1, so it goes first */
    cfg->providers[1].models[0].price_in_per_1k = 1000000;
    cfg->providers[1].models[0].price_out_per_1k = 1000000;
    struct req_facts f = facts(400, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    plan(&in, &p);
    assert_string_equal(order(&p), "b,a,c");
}

static void test_latency_optimized(void **state)
{
    load("");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    in.strategy_override = "latency_optimized";
    struct route_plan p;
    /* nobody measured: all explored, priority order */
    plan(&in, &p);
    assert_string_equal(order(&p), "b,c,a");
    assert_string_equal(p.items[0].reason, "latency_optimized: exploring (0 samples)");
    /* a and b measured; c not: c is explored first, then the fastest */
    for (int i = 0; i < 3; i++) {
        provider_stats_begin(st("a"));
        provider_stats_end_at(st("a"), true, false, 50000, in.now_ms);
        provider_stats_begin(st("b"));
        provider_stats_end_at(st("b"), true, false, 200000, in.now_ms);
    }
    plan(&in, &p);
    assert_string_equal(order(&p), "c,a,b");
    assert_string_equal(p.items[1].reason, "latency_optimized: latency 50 ms");
    /* c has enough requests in flight to be measured soon: not explored again */
    atomic_store(&st("c")->in_flight, 3);
    plan(&in, &p);
    assert_string_equal(order(&p), "a,b,c");
    assert_string_equal(p.items[2].reason, "latency_optimized: unmeasured, being explored");
    /* streams use time to first token when measured */
    atomic_store(&st("c")->in_flight, 0);
    for (int i = 0; i < 3; i++) provider_stats_end_at(st("c"), true, false, 900000, in.now_ms);
    atomic_store(&st("c")->in_flight, 0);
    for (int i = 0; i < 3; i++) {
        provider_stats_ttft(st("c"), 10000);
        provider_stats_ttft(st("a"), 80000);
    }
    f.stream = true;
    plan(&in, &p);
    assert_string_equal(order(&p), "c,a,b");
    assert_string_equal(p.items[0].reason, "latency_optimized: ttft 10 ms");
}

static void test_availability(void **state)
{
    load("routing:\n  strategy: availability\n  load_balancing:\n    health_aware: false\n");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    plan(&in, &p);
    assert_string_equal(order(&p), "b,c,a");
    /* b fails 3 of 4: behind the healthy ones */
    for (int i = 0; i < 4; i++) provider_stats_end_at(st("b"), i == 0, false, 1000, in.now_ms);
    plan(&in, &p);
    assert_string_equal(order(&p), "c,a,b");
    assert_string_equal(p.items[2].reason, "availability: 3/4 recent failures, priority 1");
    /* outcomes older than the window's age are forgotten */
    in.now_ms += STATS_WINDOW_MAX_AGE_MS + 1;
    plan(&in, &p);
    assert_string_equal(order(&p), "b,c,a");
}

static void test_round_robin(void **state)
{
    load("routing:\n  strategy: round_robin\n");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    char seen[3][16];
    for (int i = 0; i < 3; i++) {
        plan(&in, &p);
        snprintf(seen[i], sizeof seen[i], "%s", order(&p));
    }
    /* three consecutive plans start with three different providers, each a
     * rotation of the priority order b,c,a */
    assert_true(seen[0][0] != seen[1][0] && seen[1][0] != seen[2][0] && seen[0][0] != seen[2][0]);
    for (int i = 0; i < 3; i++)
        assert_true(strcmp(seen[i], "b,c,a") == 0 || strcmp(seen[i], "c,a,b") == 0 ||
                    strcmp(seen[i], "a,b,c") == 0);
}

static void test_least_loaded(void **state)
{
    load("routing:\n  strategy: least_loaded\n");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    atomic_store(&pst("a")->in_flight, 1); /* unlimited: counts as 1000 */
    atomic_store(&pst("b")->in_flight, 5); /* 5/10: 500 */
    atomic_store(&pst("c")->in_flight, 0);
    plan(&in, &p);
    assert_string_equal(order(&p), "c,b,a");
    assert_string_equal(p.items[1].reason, "least_loaded: 5/10 in flight");
    atomic_store(&pst("b")->in_flight, 10); /* at capacity: last */
    atomic_store(&pst("a")->in_flight, 7);
    plan(&in, &p);
    assert_string_equal(order(&p), "c,a,b");
    assert_string_equal(p.items[2].reason, "least_loaded: 10/10 in flight (at capacity)");
    /* ties: priority */
    atomic_store(&pst("a")->in_flight, 0);
    atomic_store(&pst("b")->in_flight, 0);
    plan(&in, &p);
    assert_string_equal(order(&p), "b,c,a");
}

static void test_weighted(void **state)
{
    load("routing:\n  strategy: weighted\n");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    int first[3] = {0};
    for (uint64_t seed = 0; seed < 4000; seed++) {
        in.seed = seed;
        plan(&in, &p);
        first[p.items[0].provider->name[0] - 'a']++;
        assert_string_equal(p.items[2].provider->name, "c"); /* weight 0: always last */
    }
    /* weights 1 : 3 -> about 25% / 75% */
    assert_in_range(first[0], 800, 1200);
    assert_in_range(first[1], 2800, 3200);
    assert_int_equal(first[2], 0);
    /* the same seed gives the same order */
    in.seed = 42;
    plan(&in, &p);
    char again[32];
    snprintf(again, sizeof again, "%s", order(&p));
    plan(&in, &p);
    assert_string_equal(order(&p), again);
}

static void test_strategy_override(void **state)
{
    load("");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    in.strategy_override = "availability";
    plan(&in, &p);
    assert_int_equal(p.strategy_used, STRATEGY_AVAILABILITY);
    assert_string_equal(order(&p), "b,c,a");
    in.strategy_override = "fastest";
    plan(&in, &p);
    assert_int_equal(p.error, ROUTE_ERR_STRATEGY);
    assert_int_equal(p.n, 0);
    assert_non_null(strstr(p.error_message, "Unknown routing strategy"));
}

/* ---- filters ---- */

static void test_capabilities(void **state)
{
    load("");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    f.has_images = true;
    plan(&in, &p);
    assert_string_equal(order(&p), "b,c");
    assert_string_equal(p.excluded, "a: the model lacks vision (the request has images)");
    /* tools: b listed capabilities without tools; a listed none (allowed) */
    f.has_images = false;
    f.has_tools = true;
    plan(&in, &p);
    assert_string_equal(order(&p), "a,c");
    assert_string_equal(p.excluded, "b: the model lacks tools (the request has tools)");
    /* embeddings: nobody */
    f.has_tools = false;
    in.caps_needed = CAP_EMBEDDINGS;
    plan(&in, &p);
    assert_int_equal(p.n, 0);
    assert_true(p.model_known);
}

static void test_max_cost(void **state)
{
    load("");
    struct req_facts f = facts(4000, 100);
    struct route_input in = input(&f);
    struct route_plan p;
    in.max_cost_nanos = 2200000; /* b's estimate exactly: allowed */
    plan(&in, &p);
    assert_string_equal(order(&p), "a,b");
    assert_string_equal(p.excluded, "c: estimated cost $0.011 exceeds max_cost $0.0022");
}

static void test_unavailable_and_unknown(void **state)
{
    load("");
    cfg->providers[0].available = false;
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    plan(&in, &p);
    assert_string_equal(order(&p), "b,c");
    assert_string_equal(p.excluded, "a: unavailable");
    in.model = "nope";
    plan(&in, &p);
    assert_false(p.model_known);
    assert_int_equal(p.n, 0);
}

static void test_circuit_skips(void **state)
{
    load("");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    for (int i = 0; i < 5; i++) provider_stats_end_at(st("a"), false, false, 0, in.now_ms);
    plan(&in, &p);
    /* an open circuit demotes the provider to a last resort, never drops it */
    assert_string_equal(order(&p), "b,c,a");
    assert_string_equal(p.items[2].reason,
                        "last resort: circuit open: 5/5 recent attempts failed, retry in 5000 ms");
    assert_false(p.items[2].probe);
    /* after the cool-down one plan gets a probe, the next does not */
    in.now_ms += CIRCUIT_COOLDOWN_MS;
    plan(&in, &p);
    assert_string_equal(order(&p), "a,b,c");
    assert_true(p.items[0].probe);
    assert_string_equal(p.items[0].reason, "cost_optimized: est $0.00002; circuit half-open probe");
    plan(&in, &p);
    assert_string_equal(order(&p), "b,c,a");
    /* health_aware off: never skipped */
    cfg->routing.health_aware = false;
    plan(&in, &p);
    assert_string_equal(order(&p), "a,b,c");
}

/* ---- order rules ---- */

static void test_fallback_chain(void **state)
{
    load("routing:\n  failover:\n    fallback_chain: [c, mesh_peer, a]\n");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    in.strategy_override = "availability"; /* b, c, a by priority */
    struct route_plan p;
    plan(&in, &p);
    assert_string_equal(order(&p), "b,c,a");
    in.strategy_override = NULL; /* cost: a, b, c; then the chain: c, a(first, skipped) */
    plan(&in, &p);
    assert_string_equal(order(&p), "a,c,b");
    assert_string_equal(p.items[1].reason, "cost_optimized: est $0.0002; fallback_chain[0]");
}

static void test_policies_over_strategy(void **state)
{
    load("routing:\n"
         "  strategy: cost_optimized\n"
         "  policies:\n"
         "    - if: \"provider.type == 'anthropic'\"\n"
         "      then: \"priority = 1\"\n"
         "    - else: \"priority = 999\"\n");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    plan(&in, &p);
    assert_string_equal(order(&p), "c,a,b"); /* c by policy, then cost */
    assert_string_equal(p.items[0].reason,
                        "cost_optimized: est $0.0002; policy policies[0]: priority = 1");
}

static void test_policy_require_and_type(void **state)
{
    load("routing:\n"
         "  policies:\n"
         "    - name: only_b_for_streams\n"
         "      rules:\n"
         "        - if: \"request.stream\"\n"
         "          then: \"require provider.b\"\n"
         "    - name: fast\n"
         "      type: latency_optimized\n"
         "      rules:\n"
         "        - else: \"prefer provider.c\"\n");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    plan(&in, &p);
    assert_string_equal(order(&p), "a,b,c"); /* `fast` does not apply to cost_optimized */
    in.strategy_override = "latency_optimized";
    plan(&in, &p);
    assert_string_equal(order(&p), "c,b,a");
    f.stream = true;
    plan(&in, &p);
    assert_string_equal(order(&p), "b");
    assert_string_equal(p.excluded, "a: policy only_b_for_streams requires provider b; c: policy "
                                    "only_b_for_streams requires provider b");
}

/* ---- model resolution ---- */

static void test_alias_and_tier(void **state)
{
    load("  x:\n"
         "    type: local\n"
         "    models:\n"
         "      - name: small\n"
         "        cost_per_1k_tokens: 0.0001\n"
         "      - name: big\n"
         "        cost_per_1k_tokens: 0.1\n"
         "routing:\n"
         "  aliases:\n"
         "    fast: m\n"
         "  tiers:\n"
         "    balanced: m\n");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    in.model = "fast";
    plan(&in, &p);
    assert_string_equal(p.model, "m");
    assert_null(p.tier);
    in.model = "cheap";
    plan(&in, &p);
    assert_string_equal(p.model, "small");
    assert_string_equal(p.tier, "cheap");
    assert_string_equal(p.reason, "tier=cheap (cheapest model); cost_optimized: est $0.000002");
    in.model = "premium";
    plan(&in, &p);
    assert_string_equal(p.model, "big");
    in.model = "balanced";
    plan(&in, &p);
    assert_string_equal(p.model, "m");
    /* x-task-tier wins over the model */
    in.model = "m";
    in.task_tier = "trivial";
    plan(&in, &p);
    assert_string_equal(p.model, "small");
    assert_string_equal(p.task_tier, "trivial");
    assert_non_null(strstr(p.reason, "tier=cheap, task=trivial (x-task-tier; cheapest model)"));
    in.task_tier = "hard";
    plan(&in, &p);
    assert_int_equal(p.error, ROUTE_ERR_TASK_TIER);
}

static void test_auto_tier(void **state)
{
    load("routing:\n  auto_tier: true\n  tiers:\n    cheap: m\n    premium: m\n");
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"Refactor the entire auth "
                       "module to microservices\"}]}";
    struct req_facts f = facts(52, -1);
    struct route_input in = input(&f);
    in.model = "";
    in.body = body;
    in.body_len = strlen(body);
    struct route_plan p;
    plan(&in, &p);
    assert_int_equal(p.error, ROUTE_OK);
    assert_string_equal(p.model, "m");
    assert_string_equal(p.task_tier, "complex");
    assert_string_equal(p.tier, "premium");
    assert_non_null(strstr(p.reason, "auto: keyword 'refactor'"));
    /* auto_tier off: a model is required */
    cfg->routing.auto_tier = false;
    plan(&in, &p);
    assert_int_equal(p.error, ROUTE_ERR_NO_MODEL);
}

/* ---- per-model figures, endpoints, health checks ---- */

static void test_per_model_window(void **state)
{
    load("  d:\n    type: local\n    priority: 0\n    models:\n      - name: m\n"
         "        cost_per_1k_tokens: 0.001\n      - name: m2\n        cost_per_1k_tokens: 0.001\n");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    /* m2 fails on d: m2's circuit opens; m on d is untouched */
    struct provider_stats *m2 = provider_stats_model(pst("d"), "m2");
    for (int i = 0; i < 5; i++) {
        provider_stats_begin(m2);
        provider_stats_end_at(m2, false, false, 0, in.now_ms);
    }
    plan(&in, &p);
    assert_string_equal(order(&p), "d,a,b,c"); /* d ties a on cost, priority 0 */
    in.model = "m2";
    plan(&in, &p);
    assert_int_equal(p.n, 1);
    assert_non_null(strstr(p.items[0].reason, "last resort: circuit open: 5/5"));
    /* the provider keeps the sum (for /metrics), the model its own */
    assert_int_equal(atomic_load(&pst("d")->failures), 5);
    assert_int_equal(atomic_load(&pst("d")->in_flight), 0);
    assert_int_equal(atomic_load(&provider_stats_model(pst("d"), "m")->failures), 0);
    /* a candidate counts on its model's entry */
    in.model = "m";
    plan(&in, &p);
    assert_ptr_equal(p.items[0].provider->stats, provider_stats_model(pst("d"), "m"));
    assert_string_equal(p.items[0].provider->name, "d");
}

/* Provider e with three endpoints (the first two given twice). */
static const char *const three_endpoints =
    "  e:\n    type: local\n    priority: 0\n    max_concurrency: 2\n"
    "    endpoint: http://h1:1/v1\n"
    "    endpoints: [http://h1:1/v1/, http://h2:2/v1, http://h3:3/v1]\n"
    "    models:\n      - name: m\n        cost_per_1k_tokens: 0.0001\n";

static void test_endpoints_expand(void **state)
{
    char text[1024];
    snprintf(text, sizeof text, "%srouting:\n  load_balancing:\n    strategy: round_robin\n",
             three_endpoints);
    load(text);
    const struct config_provider *e = config_find_provider(cfg, "e");
    assert_int_equal(e->n_endpoints, 3);
    assert_string_equal(e->endpoint, "http://h1:1/v1");
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    int first[3] = {0, 0, 0};
    for (int k = 0; k < 6; k++) {
        plan(&in, &p);
        /* the three endpoints of e first (cheapest), each a candidate */
        assert_int_equal(p.n, 6);
        for (int i = 0; i < 3; i++) {
            assert_string_equal(p.items[i].provider->name, "e");
            assert_ptr_equal(p.items[i].endpoint, p.items[i].provider->endpoint);
            assert_int_equal(p.items[i].provider->stats->grain, STATS_LEAF);
        }
        assert_string_equal(p.items[3].provider->name, "a");
        assert_null(p.items[3].provider->endpoints == NULL ? NULL : "x");
        first[p.items[0].endpoint_index]++;
        assert_non_null(strstr(p.items[0].reason, "(round_robin)"));
    }
    /* round robin over the endpoints: each first twice in six plans */
    assert_int_equal(first[0], 2);
    assert_int_equal(first[1], 2);
    assert_int_equal(first[2], 2);

    /* a failing endpoint is a last resort, the others keep their place */
    struct provider_stats *bad = provider_stats_leaf(pst("e"), "m", "http://h2:2/v1");
    for (int i = 0; i < 5; i++) {
        provider_stats_begin(bad);
        provider_stats_end_at(bad, false, false, 0, in.now_ms);
    }
    plan(&in, &p);
    assert_int_equal(p.n, 6);
    assert_string_equal(p.items[5].endpoint, "http://h2:2/v1");
    assert_non_null(strstr(p.items[5].reason, "last resort: circuit open"));
    assert_non_null(strstr(p.items[5].reason, "endpoint 2/3"));
    /* max_concurrency holds per endpoint */
    struct provider_stats *h1 = provider_stats_leaf(pst("e"), "m", "http://h1:1/v1");
    assert_true(provider_stats_try_begin(h1, 2));
    assert_true(provider_stats_try_begin(h1, 2));
    assert_false(provider_stats_try_begin(h1, 2));
    assert_true(provider_stats_try_begin(provider_stats_leaf(pst("e"), "m", "http://h3:3/v1"), 2));
    assert_int_equal(atomic_load(&pst("e")->in_flight), 3);
    assert_int_equal(atomic_load(&provider_stats_endpoint(pst("e"), "http://h1:1/v1")->in_flight), 2);
}

static void test_endpoints_least_loaded(void **state)
{
    char text[1024];
    snprintf(text, sizeof text, "%srouting:\n  load_balancing:\n    strategy: least_loaded\n",
             three_endpoints);
    load(text);
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    atomic_store(&provider_stats_endpoint(pst("e"), "http://h1:1/v1")->in_flight, 2);
    atomic_store(&provider_stats_endpoint(pst("e"), "http://h2:2/v1")->in_flight, 1);
    plan(&in, &p);
    assert_string_equal(p.items[0].endpoint, "http://h3:3/v1");
    assert_string_equal(p.items[1].endpoint, "http://h2:2/v1");
    assert_string_equal(p.items[2].endpoint, "http://h1:1/v1");
}

static void test_endpoints_config_errors(void **state)
{
    const char *bad = "providers:\n  e:\n    type: local\n    endpoints: [ftp://x, http://]\n"
                      "    models:\n      - name: m\n";
    struct diag_list d = {0};
    struct config *c = config_load_text(bad, strlen(bad), "e.yaml", &d);
    assert_null(c);
    bool url = false, host = false;
    for (size_t i = 0; i < d.count; i++) {
        url = url || strstr(d.items[i].text, "providers.e.endpoints[0]: 'ftp://x' is not a URL");
        host = host || strstr(d.items[i].text, "providers.e.endpoints[1]: 'http://' has no host");
    }
    if (!url || !host)
        for (size_t i = 0; i < d.count; i++) print_message("%s\n", d.items[i].text);
    assert_true(url);
    assert_true(host);
    diag_list_cleanup(&d);
}

static void test_health_check_flags(void **state)
{
    load("routing:\n  load_balancing:\n    health_check_interval: 2s\n    health_check_failures: 3\n");
    assert_int_equal(cfg->routing.health_check_interval_ms, 2000);
    assert_int_equal(cfg->routing.health_check_failures, 3);
    assert_int_equal(cfg->routing.health_check_timeout_ms, 5000);
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    struct route_plan p;
    /* down after 3 failed checks in a row, not before */
    assert_int_equal(provider_stats_check(pst("a"), false, 3, 0, in.now_ms), 0);
    assert_int_equal(provider_stats_check(pst("a"), false, 3, 0, in.now_ms), 0);
    plan(&in, &p);
    assert_string_equal(order(&p), "a,b,c");
    assert_false(routing_provider_down(config_find_provider(cfg, "a"), NULL));
    assert_int_equal(provider_stats_check(pst("a"), false, 3, 0, in.now_ms), -1);
    assert_int_equal(provider_stats_check(pst("a"), false, 3, 0, in.now_ms), 0); /* already down */
    plan(&in, &p);
    assert_string_equal(order(&p), "b,c,a");
    assert_string_equal(p.items[2].reason, "last resort: health check down (4 failed in a row)");
    int n = 0;
    assert_true(routing_provider_down(config_find_provider(cfg, "a"), &n));
    assert_int_equal(n, 4);
    /* one success: up */
    assert_int_equal(provider_stats_check(pst("a"), true, 3, 1500, in.now_ms), 1);
    plan(&in, &p);
    assert_string_equal(order(&p), "a,b,c");
    /* defaults */
    load("");
    assert_int_equal(cfg->routing.health_check_interval_ms, 30000);
    assert_int_equal(cfg->routing.health_check_failures, 2);
}

/* ---- mesh peers (mesh/peers.h builds these views from heartbeats) ---- */

static struct config_model peer_models[2];
static struct config_provider peer;

/* A healthy peer "mesh:x" serving "m" at `usd_per_1k` (nanos) and "pm",
 * with advertised load `load` (0..1000). */
static const struct config_provider *make_peer(nanos_t price, int load)
{
    memset(&peer, 0, sizeof peer);
    memset(peer_models, 0, sizeof peer_models);
    peer_models[0] = (struct config_model){.name = "m", .upstream_id = "m", .capabilities = CAP_TEXT,
                                           .capabilities_explicit = true,
                                           .price_in_per_1k = price, .price_out_per_1k = price};
    peer_models[1] = peer_models[0];
    peer_models[1].name = peer_models[1].upstream_id = "pm";
    peer.name = "mesh:x";
    peer.type = PROVIDER_MESH;
    peer.enabled = peer.available = true;
    peer.priority = 1000001;
    peer.endpoint = "http://127.0.0.1:1/v1";
    peer.timeout_ms = 60000;
    peer.weight = 1;
    peer.max_tokens_default = 4096;
    peer.models = peer_models;
    peer.n_models = 2;
    peer.mesh_node = "x";
    peer.mesh_load_permille = load;
    char name[64];
    snprintf(name, sizeof name, "t%d-mesh:x", config_no);
    peer.stats = provider_stats_get(name);
    provider_stats_reset(peer.stats);
    return &peer;
}

static void test_peers_ranked_like_providers(void **state)
{
    load("");
    const struct config_provider *peers[1] = {make_peer(500000, 0)}; /* $0.0005 per 1k */
    struct req_facts f = facts(400, 10);
    struct route_input in = input(&f);
    in.peers = peers;
    in.n_peers = 1;
    struct route_plan p;
    plan(&in, &p);
    /* cheapest first, even a peer; the other fallbacks: providers, then peers */
    assert_string_equal(order(&p), "mesh:x,a,b,c");
    /* as cheap as a: a tie goes to the local provider */
    make_peer(1000000, 0);
    plan(&in, &p);
    assert_string_equal(order(&p), "a,b,c,mesh:x");
    /* availability: by priority, peers after every provider */
    in.strategy_override = "availability";
    plan(&in, &p);
    assert_string_equal(order(&p), "b,c,a,mesh:x");
    /* a model only the peer serves */
    in.strategy_override = NULL;
    in.model = "pm";
    plan(&in, &p);
    assert_true(p.model_known);
    assert_string_equal(order(&p), "mesh:x");
    /* no peers given (loop rules cut them): unknown model */
    in.n_peers = 0;
    plan(&in, &p);
    assert_false(p.model_known);
}

static void test_peers_least_loaded(void **state)
{
    load("routing:\n  strategy: least_loaded\n");
    const struct config_provider *peers[1] = {make_peer(1000000, 300)};
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    in.peers = peers;
    in.n_peers = 1;
    struct route_plan p;
    atomic_store(&pst("a")->in_flight, 1);  /* unlimited: 1000 */
    atomic_store(&pst("b")->in_flight, 10); /* at capacity */
    atomic_store(&pst("c")->in_flight, 2);  /* unlimited: 2000 */
    plan(&in, &p);
    /* the local providers are busy: the peer's advertised 30% wins */
    assert_string_equal(p.items[0].provider->name, "mesh:x");
    assert_string_equal(p.items[0].reason, "least_loaded: peer load 30.0%");
    /* a full peer is last */
    make_peer(1000000, 1000);
    plan(&in, &p);
    assert_string_equal(order(&p), "a,c,b,mesh:x");
    assert_string_equal(p.items[3].reason, "least_loaded: peer load 100.0% (at capacity)");
}

static void test_peers_in_fallback_chain(void **state)
{
    load("routing:\n  failover:\n    fallback_chain: [c, mesh_peer, a]\n");
    const struct config_provider *peers[1] = {make_peer(5000000, 0)};
    struct req_facts f = facts(40, 10);
    struct route_input in = input(&f);
    in.peers = peers;
    in.n_peers = 1;
    struct route_plan p;
    plan(&in, &p); /* cost: a first; then the chain: c, the peers, (a); then b */
    assert_string_equal(order(&p), "a,c,mesh:x,b");
    assert_string_equal(p.items[2].reason, "cost_optimized: est $0.0001; fallback_chain[1]");
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, teardown)
    const struct CMUnitTest tests[] = {
        T(test_cost_optimized),   T(test_cost_ties_by_priority), T(test_latency_optimized),
        T(test_availability),     T(test_round_robin),           T(test_least_loaded),
        T(test_weighted),         T(test_strategy_override),     T(test_capabilities),
        T(test_max_cost),         T(test_unavailable_and_unknown), T(test_circuit_skips),
        T(test_fallback_chain),   T(test_policies_over_strategy), T(test_policy_require_and_type),
        T(test_alias_and_tier),   T(test_auto_tier),              T(test_per_model_window),
        T(test_endpoints_expand), T(test_endpoints_least_loaded), T(test_endpoints_config_errors),
        T(test_health_check_flags), T(test_peers_ranked_like_providers),
        T(test_peers_least_loaded), T(test_peers_in_fallback_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
