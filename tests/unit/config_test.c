/* config_test: the configuration loader (src/config): the standard's
 * example files, every value type, every error path and its exact message,
 * ${VAR} expansion and credential availability, JSON line numbers, defaults.
 * Run from the repository root (the example files are read from configs/). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "budget/pricing.h"
#include "config/config.h"
#include "core/alloc.h"

/* ---- helpers ---- */

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

static bool has_diag_part(enum diag_severity s, const char *part)
{
    for (size_t i = 0; i < diags.count; i++)
        if (diags.items[i].severity == s && strstr(diags.items[i].text, part)) return true;
    return false;
}

static void dump(void)
{
    diag_list_print(&diags, stderr);
}

static struct config *load_ok(const char *text)
{
    struct config *c = load(text);
    if (!c) dump();
    assert_non_null(c);
    return c;
}

static void load_fails_with(const char *text, const char *message)
{
    struct config *c = load(text);
    if (c || !has_diag(DIAG_ERROR, message)) {
        fprintf(stderr, "wanted: %s\n", message);
        dump();
    }
    assert_null(c);
    assert_true(has_diag(DIAG_ERROR, message));
}

static const struct config_model *find_model(const struct config_provider *p, const char *name)
{
    for (size_t i = 0; i < p->n_models; i++)
        if (strcmp(p->models[i].name, name) == 0) return &p->models[i];
    return NULL;
}

/* ---- the example files ---- */

static void load_file_ok(const char *path)
{
    unsetenv("OPENAI_API_KEY");
    unsetenv("CLOUDFLARE_ACCOUNT_ID");
    unsetenv("CLOUDFLARE_API_TOKEN");
    diag_list_cleanup(&diags);
    struct config *c = config_load_file(path, &diags);
    if (!c) dump();
    assert_non_null(c);
    assert_int_equal(diags.errors, 0);
    config_unref(c);
}

static void test_file_full(void **state)
{
    load_file_ok("configs/aiproxy-full.yaml");
    struct config *c = config_load_file("configs/aiproxy-full.yaml", &diags);
    assert_non_null(c);
    assert_string_equal(c->node.id, "gpu-node-01");
    assert_int_equal(c->node.n_peers, 2);
    assert_string_equal(c->node.peers[1].addr, "cloud-node-01.local:9090");
    assert_int_equal(c->node.peer_timeout_ms, 5000);
    assert_int_equal(c->n_providers, 3);
    const struct config_provider *cf = config_find_provider(c, "cloudflare");
    assert_non_null(cf);
    assert_false(cf->available);
    assert_string_equal(cf->unavailable_reason,
                        "credentials.account_id: environment variable CLOUDFLARE_ACCOUNT_ID is "
                        "not set");
    const struct config_model *sd = find_model(cf, "stable-diffusion-xl");
    assert_non_null(sd);
    assert_int_equal(sd->price_per_generation, 10000000);
    assert_int_equal(sd->capabilities, CAP_IMAGE_GEN);
    assert_int_equal(c->routing.n_policies, 3);
    assert_int_equal(c->routing.policies[1].n_rules, 3);
    assert_null(c->routing.policies[1].rules[2].if_expr);
    assert_string_equal(c->routing.policies[1].rules[2].then_expr, "priority = 3");
    assert_int_equal(c->routing.max_retries, 3);
    assert_int_equal(c->routing.retry_delay_ms, 1000);
    assert_int_equal(c->routing.n_fallback_chain, 4);
    assert_int_equal(c->routing.lb_strategy, STRATEGY_LEAST_LOADED);
    assert_true(c->routing.unhealthy_threshold > 0.49 && c->routing.unhealthy_threshold < 0.51);
    assert_int_equal(c->budget.daily_limit, 100 * NANOS_PER_USD);
    assert_int_equal(c->budget.monthly_limit, 2000 * NANOS_PER_USD);
    assert_string_equal(c->budget.cost_db_path, "data/costs.db");
    assert_int_equal(c->budget.n_alerts, 2);
    assert_int_equal(c->budget.alerts[1].action, ALERT_DISABLE_PAID);
    assert_int_equal(c->observability.prometheus_port, 9091);
    assert_int_equal(c->observability.n_metrics_collect, 5);
    assert_int_equal(c->security.n_api_keys, 2);
    assert_false(c->security.api_keys[0].available);
    assert_int_equal(c->security.api_keys[0].rate_limit_per_hour, 1000);
    assert_int_equal(c->security.n_cors_origins, 2);
    config_unref(c);
}

static void test_file_minimal(void **state)
{
    load_file_ok("configs/aiproxy-minimal.yaml");
    struct config *c = config_load_file("configs/aiproxy-minimal.yaml", &diags);
    assert_non_null(c);
    const struct config_provider *local = config_find_provider(c, "local");
    assert_int_equal(local->type, PROVIDER_LOCAL);
    assert_string_equal(local->endpoint, "http://127.0.0.1:11434/v1");
    assert_true(local->available);
    const struct config_provider *cf = config_find_provider(c, "cloudflare");
    assert_int_equal(cf->type, PROVIDER_CLOUDFLARE);
    assert_true(cf->available);
    assert_string_equal(cf->account_id, "your-account-id");
    assert_string_equal(c->server.listen_host, "0.0.0.0");
    assert_int_equal(c->server.listen_port, 8080);
    config_unref(c);
}

static void test_file_json(void **state)
{
    load_file_ok("configs/aiproxy.json");
}

static void test_file_local_ollama(void **state)
{
    load_file_ok("configs/local-ollama.yaml");
}

/* ---- values ---- */

static void test_prices_exact(void **state)
{
    struct config *c = load_ok("providers:\n"
                               "  local:\n"
                               "    models:\n"
                               "      - name: a\n"
                               "        cost_per_1k_tokens: 0.0003\n"
                               "      - name: b\n"
                               "        cost_per_1k_input_tokens: 0.00015\n"
                               "        cost_per_1k_output_tokens: \"0.0006\"\n"
                               "      - name: c\n"
                               "        cost_per_1k_input_tokens: 0.001\n"
                               "        cost_per_1k_tokens: 0.002\n"
                               "      - name: d\n"
                               "        cost_per_1k_tokens: 0.1\n");
    const struct config_provider *p = config_find_provider(c, "local");
    assert_int_equal(find_model(p, "a")->price_in_per_1k, 300000);
    assert_int_equal(find_model(p, "a")->price_out_per_1k, 300000);
    assert_int_equal(find_model(p, "b")->price_in_per_1k, 150000);
    assert_int_equal(find_model(p, "b")->price_out_per_1k, 600000);
    /* the specific price wins over the flat one whatever the order */
    assert_int_equal(find_model(p, "c")->price_in_per_1k, 1000000);
    assert_int_equal(find_model(p, "c")->price_out_per_1k, 2000000);
    assert_int_equal(find_model(p, "d")->price_in_per_1k, 100000000); /* 0.1 exactly */
    config_unref(c);
}

/* Prompt-cache prices (SPEC section 9): given, or the input price, also
 * when that came from cost_per_1k_tokens. */
static void test_prices_prompt_cache(void **state)
{
    struct config *c = load_ok("providers:\n"
                               "  local:\n"
                               "    models:\n"
                               "      - name: a\n"
                               "        cost_per_1k_input_tokens: 0.003\n"
                               "        cost_per_1k_cached_input_tokens: 0.0003\n"
                               "        cost_per_1k_cache_write_tokens: 0.00375\n"
                               "      - name: b\n"
                               "        cost_per_1k_tokens: 0.002\n"
                               "      - name: c\n"
                               "        cost_per_1k_input_tokens: 0.001\n"
                               "        cost_per_1k_cached_input_tokens: 0\n");
    const struct config_provider *p = config_find_provider(c, "local");
    assert_int_equal(pricing_cached_in_price(find_model(p, "a")), 300000);
    assert_int_equal(pricing_cache_write_price(find_model(p, "a")), 3750000);
    assert_int_equal(pricing_cached_in_price(find_model(p, "b")), 2000000);
    assert_int_equal(pricing_cache_write_price(find_model(p, "b")), 2000000);
    assert_int_equal(pricing_cached_in_price(find_model(p, "c")), 0); /* free, when said so */
    assert_int_equal(pricing_cache_write_price(find_model(p, "c")), 1000000);
    config_unref(c);
}

static void test_price_negative(void **state)
{
    load_fails_with("providers:\n  local:\n    models:\n      - name: a\n"
                    "        cost_per_1k_tokens: -0.001\n",
                    "aiproxy.yaml:5: providers.local.models[0].cost_per_1k_tokens: must not be "
                    "negative (expected a USD amount like 0.0025)");
}

static void test_price_exponent(void **state)
{
    load_fails_with("budget:\n  daily_limit: 1e3\n",
                    "aiproxy.yaml:2: budget.daily_limit: expected a USD amount like 0.0025 "
                    "(plain decimal, no exponent)");
}

static void test_durations(void **state)
{
    struct config *c = load_ok("server:\n  read_timeout: 250ms\n  write_timeout: 2m\n"
                               "  idle_timeout: 1h\n  drain_timeout: 5\n"
                               "providers:\n  local:\n    timeout: 5s\n");
    assert_int_equal(c->server.read_timeout_ms, 250);
    assert_int_equal(c->server.write_timeout_ms, 120000);
    assert_int_equal(c->server.idle_timeout_ms, 3600000);
    assert_int_equal(c->server.drain_timeout_ms, 5000); /* bare number = seconds */
    assert_int_equal(c->providers[0].timeout_ms, 5000);
    config_unref(c);
    c = load_ok("context:\n  ttl: 7d\n");
    assert_int_equal(c->context.ttl_ms, 7LL * 86400 * 1000);
    config_unref(c);
}

static void test_bad_duration(void **state)
{
    load_fails_with("server:\n  read_timeout: 5 minutes\n",
                    "aiproxy.yaml:2: server.read_timeout: expected a duration like 250ms, 5s, "
                    "2m, 1h, 7d");
}

static void test_sizes(void **state)
{
    struct config *c = load_ok("server:\n  max_request_size: 512KB\n  max_header_size: 4096\n");
    assert_int_equal(c->server.max_request_size, 512 * 1024);
    assert_int_equal(c->server.max_header_size, 4096);
    config_unref(c);
    c = load_ok("server:\n  max_request_size: 1GB\n");
    assert_int_equal(c->server.max_request_size, 1024LL * 1024 * 1024);
    config_unref(c);
}

static void test_bad_size(void **state)
{
    load_fails_with("server:\n  max_request_size: 10 megs\n",
                    "aiproxy.yaml:2: server.max_request_size: expected a size like 512KB, 10MB, "
                    "1GB");
}

static void test_size_out_of_range(void **state)
{
    struct config *c = load("server:\n  max_request_size: 2GB\n");
    assert_null(c);
    assert_true(has_diag_part(DIAG_ERROR, "aiproxy.yaml:2: server.max_request_size: size out of range"));
}

static void test_booleans(void **state)
{
    struct config *c = load_ok("budget:\n  enabled: yes\n  track_costs: off\n"
                               "routing:\n  auto_tier: on\n  failover:\n    enabled: no\n");
    assert_true(c->budget.enabled);
    assert_false(c->budget.track_costs);
    assert_true(c->routing.auto_tier);
    assert_false(c->routing.failover_enabled);
    config_unref(c);
    load_fails_with("budget:\n  enabled: maybe\n",
                    "aiproxy.yaml:2: budget.enabled: expected true or false");
}

static void test_integer_bounds(void **state)
{
    load_fails_with("server:\n  workers: 5000\n",
                    "aiproxy.yaml:2: server.workers: expected an integer from 0 to 1024");
    load_fails_with("budget:\n  alerts:\n    - threshold: 150\n",
                    "aiproxy.yaml:3: budget.alerts[0].threshold: expected an integer from 1 to 100");
}

static void test_listen_addr(void **state)
{
    struct config *c = load_ok("server:\n  listen_addr: \"[::1]:9000\"\n");
    assert_string_equal(c->server.listen_host, "::1");
    assert_int_equal(c->server.listen_port, 9000);
    config_unref(c);
    c = load_ok("server:\n  listen_addr: \":8081\"\n");
    assert_string_equal(c->server.listen_host, "0.0.0.0");
    assert_int_equal(c->server.listen_port, 8081);
    config_unref(c);
    load_fails_with("server:\n  listen_addr: localhost\n",
                    "aiproxy.yaml:2: server.listen_addr: bad address 'localhost' (expected "
                    "host:port, [v6addr]:port or :port)");
}

/* ---- routing ---- */

static void test_bad_strategy(void **state)
{
    load_fails_with("routing:\n  strategy: cheapest\n",
                    "aiproxy.yaml:2: routing.strategy: unknown value 'cheapest' (expected "
                    "cost_optimized, latency_optimized, availability, round_robin, least_loaded, "
                    "weighted)");
}

static void test_strategy_names(void **state)
{
    for (int s = STRATEGY_COST_OPTIMIZED; s <= STRATEGY_WEIGHTED; s++) {
        enum routing_strategy out;
        assert_true(routing_strategy_parse(routing_strategy_name((enum routing_strategy)s), &out));
        assert_int_equal(out, s);
    }
    enum routing_strategy out;
    assert_false(routing_strategy_parse("cheapest", &out));
}

static void test_aliases_and_policies(void **state)
{
    struct config *c = load_ok("routing:\n"
                               "  strategy: weighted\n"
                               "  aliases:\n"
                               "    cheap: gpt-4o-mini\n"
                               "  policies:\n"
                               "    - name: p\n"
                               "      type: model_specific\n"
                               "      rules:\n"
                               "        - if: \"request.tokens < 1000\"\n"
                               "          then: \"provider.priority ASC\"\n"
                               "        - else: \"priority = 3\"\n");
    assert_int_equal(c->routing.strategy, STRATEGY_WEIGHTED);
    assert_int_equal(c->routing.n_aliases, 1);
    assert_string_equal(c->routing.aliases[0].name, "cheap");
    assert_string_equal(c->routing.aliases[0].target, "gpt-4o-mini");
    const struct config_policy *p = &c->routing.policies[0];
    assert_int_equal(p->n_rules, 2);
    assert_string_equal(p->rules[0].if_expr, "request.tokens < 1000");
    assert_int_equal(p->rules[0].line, 9);
    assert_null(p->rules[1].if_expr);
    assert_int_equal(p->rules[1].line, 11);
    config_unref(c);
    load_fails_with("routing:\n  policies:\n    - name: p\n      rules:\n        - if: x\n",
                    "aiproxy.yaml:5: routing.policies[0].rules[0]: expected {if: ..., then: ...} "
                    "or {else: ...}");
}

/* ---- providers ---- */

static void test_missing_model_name(void **state)
{
    load_fails_with("providers:\n  local:\n    models:\n      - local_model: x\n",
                    "aiproxy.yaml:4: providers.local.models[0]: name: missing (every model needs "
                    "the name clients ask for)");
}

static void test_duplicate_model(void **state)
{
    load_fails_with("providers:\n  local:\n    models:\n      - name: a\n      - name: a\n",
                    "aiproxy.yaml:5: providers.local.models[1].name: duplicate model 'a' (first "
                    "defined on line 4)");
}

static void test_unknown_type(void **state)
{
    load_fails_with("providers:\n  x:\n    type: azure\n",
                    "aiproxy.yaml:3: providers.x.type: unknown value 'azure' (expected openai, "
                    "anthropic, cloudflare, local, ocf)");
}

static void test_type_from_key(void **state)
{
    setenv("ANTHROPIC_API_KEY", "sk-ant-test", 1);
    struct config *c = load_ok("providers:\n  anthropic: {}\n  mine:\n    type: local\n");
    assert_int_equal(c->providers[0].type, PROVIDER_ANTHROPIC);
    assert_true(c->providers[0].available);
    assert_string_equal(c->providers[0].api_key, "sk-ant-test");
    assert_string_equal(c->providers[0].endpoint, "https://api.anthropic.com/v1");
    assert_int_equal(c->providers[1].type, PROVIDER_LOCAL);
    assert_int_equal(c->providers[1].priority, 100);
    assert_int_equal(c->providers[1].weight, 1);
    assert_int_equal(c->providers[1].max_tokens_default, 4096);
    assert_int_equal(c->providers[1].timeout_ms, 60000);
    config_unref(c);
    unsetenv("ANTHROPIC_API_KEY");
    load_fails_with("providers:\n  mine:\n    priority: 1\n",
                    "aiproxy.yaml:2: providers.mine.type: missing (the key 'mine' is not a type "
                    "name; expected openai, anthropic, cloudflare, local, ocf)");
}

static void test_endpoint_rules(void **state)
{
    struct config *c = load_ok("providers:\n  local:\n    endpoint: http://gpu:8000/v1//\n");
    assert_string_equal(c->providers[0].endpoint, "http://gpu:8000/v1");
    config_unref(c);
    load_fails_with("providers:\n  local:\n    endpoint: gpu:8000\n",
                    "aiproxy.yaml:2: providers.local.endpoint: 'gpu:8000' is not a URL (expected "
                    "http://... or https://...)");
    load_fails_with("providers:\n  ocf: {}\n",
                    "aiproxy.yaml:2: providers.ocf.endpoint: missing (a ocf provider needs its "
                    "base URL)");
}

static void test_unset_credential(void **state)
{
    unsetenv("OPENAI_API_KEY");
    struct config *c = load_ok("providers:\n  openai:\n    credentials:\n"
                               "      api_key: \"${OPENAI_API_KEY}\"\n");
    assert_false(c->providers[0].available);
    assert_null(c->providers[0].api_key);
    assert_string_equal(c->providers[0].unavailable_reason,
                        "credentials.api_key: environment variable OPENAI_API_KEY is not set");
    config_unref(c);
    setenv("OPENAI_API_KEY", "sk-test-123", 1);
    c = load_ok("providers:\n  openai:\n    credentials:\n      api_key: \"${OPENAI_API_KEY}\"\n");
    assert_true(c->providers[0].available);
    assert_string_equal(c->providers[0].api_key, "sk-test-123");
    config_unref(c);
    unsetenv("OPENAI_API_KEY");
}

static void test_custom_endpoint_needs_key(void **state)
{
    /* the well-known variable is never sent to an endpoint its owner named */
    setenv("OPENAI_API_KEY", "sk-test-123", 1);
    struct config *c = load_ok("providers:\n  vllm:\n    type: openai\n"
                               "    endpoint: http://10.0.0.5:8000/v1\n");
    assert_false(c->providers[0].available);
    assert_null(c->providers[0].api_key);
    assert_string_equal(c->providers[0].unavailable_reason, "credentials.api_key is not configured");
    config_unref(c);
    unsetenv("OPENAI_API_KEY");
}

static void test_preset(void **state)
{
    setenv("GROQ_API_KEY", "gsk-test", 1);
    struct config *c = load_ok("providers:\n  groq:\n    type: openai\n    preset: groq\n");
    assert_string_equal(c->providers[0].endpoint, "https://api.groq.com/openai/v1");
    assert_string_equal(c->providers[0].api_key, "gsk-test");
    assert_string_equal(c->providers[0].preset, "groq");
    assert_true(c->providers[0].available);
    config_unref(c);
    unsetenv("GROQ_API_KEY");
    c = load_ok("providers:\n  g:\n    type: openai\n    preset: gemini\n");
    assert_false(c->providers[0].available);
    assert_string_equal(c->providers[0].unavailable_reason,
                        "credentials.api_key: environment variable GEMINI_API_KEY is not set");
    config_unref(c);
    load_fails_with("providers:\n  g:\n    type: openai\n    preset: nope\n",
                    "aiproxy.yaml:4: providers.g.preset: unknown value 'nope' (expected groq, "
                    "together, deepseek, mistral, fireworks, cerebras, openrouter, gemini)");
}

static void test_disabled_provider(void **state)
{
    struct config *c = load_ok("providers:\n  local:\n    enabled: false\n");
    assert_false(c->providers[0].available);
    assert_string_equal(c->providers[0].unavailable_reason, "disabled");
    config_unref(c);
}

static void test_cloudflare_credentials(void **state)
{
    struct config *c = load_ok("providers:\n  cloudflare:\n    credentials:\n"
                               "      account_id: abc\n");
    assert_false(c->providers[0].available);
    assert_string_equal(c->providers[0].unavailable_reason,
                        "credentials.api_token is not configured");
    config_unref(c);
}

static void test_capabilities(void **state)
{
    struct config *c = load_ok("providers:\n  local:\n    models:\n      - name: a\n"
                               "        capabilities: [chat, tools, vision, telepathy]\n"
                               "      - name: b\n");
    const struct config_provider *p = &c->providers[0];
    assert_int_equal(p->models[0].capabilities, CAP_TEXT | CAP_TOOLS | CAP_VISION);
    assert_int_equal(p->models[1].capabilities, CAP_TEXT);
    assert_string_equal(p->models[1].upstream_id, "b");
    assert_true(has_diag(DIAG_WARNING, "aiproxy.yaml:5: providers.local.models[0].capabilities[3]: "
                                       "unknown capability 'telepathy' (ignored)"));
    config_unref(c);
}

static void test_local_model_keys_known(void **state)
{
    struct config *c = load_ok("providers:\n  local:\n    runtimes: [onnx]\n    models:\n"
                               "      - name: a\n        path: /m.onnx\n        runtime: onnx\n");
    assert_int_equal(diags.count, 0);
    config_unref(c);
}

/* ---- env ---- */

static void test_env_default(void **state)
{
    unsetenv("AIPROXY_TEST_UNSET");
    setenv("AIPROXY_TEST_PORT", "9999", 1);
    struct config *c = load_ok("node:\n  id: \"${AIPROXY_TEST_UNSET:-node-a}\"\n"
                               "  name: \"pre-${AIPROXY_TEST_PORT}-post $${x} $5\"\n"
                               "server:\n  listen_addr: \"127.0.0.1:${AIPROXY_TEST_PORT:-1}\"\n");
    assert_string_equal(c->node.id, "node-a");
    assert_string_equal(c->node.name, "pre-9999-post ${x} $5");
    assert_int_equal(c->server.listen_port, 9999);
    config_unref(c);
    unsetenv("AIPROXY_TEST_PORT");
}

static void test_env_unset_plain_key(void **state)
{
    unsetenv("AIPROXY_TEST_UNSET");
    struct config *c = load_ok("server:\n  read_timeout: \"${AIPROXY_TEST_UNSET}\"\n");
    assert_int_equal(c->server.read_timeout_ms, 30000);
    assert_true(has_diag(DIAG_WARNING, "aiproxy.yaml:2: server.read_timeout: environment variable "
                                       "AIPROXY_TEST_UNSET is not set; using the default"));
    config_unref(c);
}

static void test_env_malformed(void **state)
{
    load_fails_with("node:\n  id: \"${BAD-NAME}\"\n",
                    "aiproxy.yaml:2: malformed variable reference in '${BAD-NAME}' (expected "
                    "${NAME} or ${NAME:-default})");
}

static void test_api_keys(void **state)
{
    unsetenv("AIPROXY_TEST_UNSET");
    struct config *c = load_ok("security:\n  auth:\n    enabled: true\n    api_keys:\n"
                               "      - key: literal-secret\n        name: a\n"
                               "      - key: \"${AIPROXY_TEST_UNSET}\"\n        name: b\n");
    assert_int_equal(c->security.n_api_keys, 2);
    assert_true(c->security.api_keys[0].available);
    assert_string_equal(c->security.api_keys[0].key, "literal-secret");
    assert_false(c->security.api_keys[1].available);
    assert_null(c->security.api_keys[1].key);
    config_unref(c);
    /* jwt needs its section; oauth2 is still refused */
    load_fails_with("security:\n  auth:\n    type: jwt\n",
                    "aiproxy.yaml:3: security.auth.jwt: missing (expected the token settings: "
                    "issuer, audience and one of jwks_file, jwks_url, secret)");
    load_fails_with("security:\n  auth:\n    type: oauth2\n",
                    "aiproxy.yaml:3: security.auth.type: unsupported value 'oauth2' (expected "
                    "api_key, jwt)");
    load_fails_with("security:\n  auth:\n    type: [api_key, jwt]\n    jwt:\n      secret: short\n",
                    "aiproxy.yaml:5: security.auth.jwt.secret: too short (expected at least 32 "
                    "bytes)");
}

/* ---- structure and syntax ---- */

static void test_unknown_key_warning(void **state)
{
    struct config *c = load_ok("server:\n  listen_addr: \"127.0.0.1:8080\"\n  colour: blue\n"
                               "bogus: 1\n");
    assert_true(has_diag(DIAG_WARNING, "aiproxy.yaml:3: server.colour: unknown key (ignored)"));
    assert_true(has_diag(DIAG_WARNING, "aiproxy.yaml:4: bogus: unknown key (ignored)"));
    assert_int_equal(diags.errors, 0);
    config_unref(c);
}

static void test_several_errors(void **state)
{
    struct config *c = load("server:\n  read_timeout: soon\n  max_request_size: big\n"
                            "routing:\n  strategy: cheapest\n");
    assert_null(c);
    assert_int_equal(diags.errors, 3);
}

static void test_yaml_syntax_error(void **state)
{
    struct config *c = load("server:\n  listen_addr: \"unterminated\n  x: [1, 2\n");
    assert_null(c);
    assert_int_equal(diags.errors, 1);
    assert_true(has_diag_part(DIAG_ERROR, "aiproxy.yaml:"));
    assert_true(has_diag_part(DIAG_ERROR, "YAML syntax error: "));
    c = load("a: b\n  c: d\n");
    assert_null(c);
    assert_true(has_diag_part(DIAG_ERROR, "aiproxy.yaml:2: YAML syntax error: "));
}

static void test_empty_and_non_map(void **state)
{
    load_fails_with("", "aiproxy.yaml:1: the file is empty");
    load_fails_with("  \n\n", "aiproxy.yaml:1: the file is empty");
    load_fails_with("# only a comment\n", "aiproxy.yaml:1: the file has no settings");
    load_fails_with("- a\n- b\n",
                    "aiproxy.yaml:1: the top level must be a map of sections (node, server, "
                    "providers, routing, budget, observability, security)");
    load_fails_with("server: [1, 2]\n", "aiproxy.yaml:1: server: expected a map, found a list");
}

static void test_duplicate_key(void **state)
{
    load_fails_with("server:\n  workers: 1\n  workers: 2\n",
                    "aiproxy.yaml:3: duplicate key 'workers' (first on line 2)");
}

static void test_alias_refused(void **state)
{
    load_fails_with("a: &x {b: 1}\nc: *x\n",
                    "aiproxy.yaml:2: YAML aliases (*name) are not supported");
}

static void test_depth_cap(void **state)
{
    char text[400];
    size_t n = 0;
    n += (size_t)snprintf(text, sizeof text, "x: ");
    for (int i = 0; i < 70; i++) text[n++] = '[';
    text[n] = '\0';
    struct config *c = load(text);
    assert_null(c);
    assert_true(has_diag_part(DIAG_ERROR, "nesting too deep"));
}

static void test_size_cap(void **state)
{
    size_t len = 4u * 1024 * 1024 + 1;
    char *big = xmalloc(len);
    memset(big, ' ', len);
    diag_list_cleanup(&diags);
    struct config *c = config_load_text(big, len, "big.yaml", &diags);
    free(big);
    assert_null(c);
    assert_true(has_diag_part(DIAG_ERROR, "big.yaml: file too large"));
}

static void test_json_lines(void **state)
{
    const char *text = "{\n"
                       "  \"server\": {\n"
                       "    \"read_timeout\": \"30s\",\n"
                       "    \"max_request_size\": \"lots\"\n"
                       "  },\n"
                       "  \"colour\": 1,\n"
                       "  \"routing\": {\"strategy\": \"cheapest\"}\n"
                       "}\n";
    diag_list_cleanup(&diags);
    struct config *c = config_load_text(text, strlen(text), "aiproxy.json", &diags);
    assert_null(c);
    assert_true(has_diag(DIAG_ERROR, "aiproxy.json:4: server.max_request_size: expected a size "
                                     "like 512KB, 10MB, 1GB"));
    assert_true(has_diag(DIAG_WARNING, "aiproxy.json:6: colour: unknown key (ignored)"));
    assert_true(has_diag_part(DIAG_ERROR, "aiproxy.json:7: routing.strategy: unknown value"));
}

static void test_json_values(void **state)
{
    const char *text = "{\"providers\": {\"local\": {\"discover_models\": true, \"models\": "
                       "[{\"name\": \"m\", \"cost_per_1k_tokens\": 0.0003}]}},"
                       " \"node\": {\"region\": null}}";
    diag_list_cleanup(&diags);
    struct config *c = config_load_text(text, strlen(text), "x.json", &diags);
    assert_non_null(c);
    assert_true(c->providers[0].discover_models);
    assert_int_equal(c->providers[0].models[0].price_in_per_1k, 300000);
    assert_null(c->node.region);
    config_unref(c);
}

static void test_json_syntax_error(void **state)
{
    const char *text = "{\n  \"server\": {\n    \"workers\": 1,,\n  }\n}\n";
    diag_list_cleanup(&diags);
    struct config *c = config_load_text(text, strlen(text), "bad.json", &diags);
    assert_null(c);
    assert_true(has_diag_part(DIAG_ERROR, "bad.json:3: JSON syntax error: "));
}

static void test_cost_db(void **state)
{
    struct config *c = load_ok("budget:\n  cost_db: \"sqlite:////var/lib/aiproxy/c.db\"\n");
    assert_string_equal(c->budget.cost_db_path, "/var/lib/aiproxy/c.db");
    config_unref(c);
    c = load_ok("budget:\n  cost_db: ledger.db\n");
    assert_string_equal(c->budget.cost_db_path, "ledger.db");
    assert_null(c->budget.cost_db_url);
    assert_string_equal(c->budget.spool_db_path, "data/ledger-spool.db"); /* unused with SQLite */
    config_unref(c);
    load_fails_with("budget:\n  cost_db: \"mysql://u:hunter2@db/x\"\n",
                    "aiproxy.yaml:2: budget.cost_db: unsupported database 'mysql://' (expected "
                    "sqlite:///path or postgres://USER:PASS@HOST:PORT/DB)");
    for (size_t i = 0; i < diags.count; i++) assert_null(strstr(diags.items[i].text, "hunter2"));
    load_fails_with("budget:\n  cost_db: \"\"\n",
                    "aiproxy.yaml:2: budget.cost_db: empty path (expected sqlite:///path or "
                    "postgres://USER:PASS@HOST:PORT/DB)");
    load_fails_with("budget:\n  spool_db: \"redis://h\"\n",
                    "aiproxy.yaml:2: budget.spool_db: unsupported database 'redis://' (expected "
                    "sqlite:///path)");
}

static void assert_no_diag_holds(const char *secret)
{
    for (size_t i = 0; i < diags.count; i++) assert_null(strstr(diags.items[i].text, secret));
}

/* The PostgreSQL ledger: the URL kept as written, the local SQLite file
 * (spool, managed keys) is spool_db's path whichever key comes first, and
 * no message or summary shows the password. */
static void test_cost_db_postgres(void **state)
{
    struct config *c = load_ok("budget:\n  cost_db: \"postgres://u:hunter2@db:5432/x\"\n");
    assert_string_equal(c->budget.cost_db_url, "postgres://u:hunter2@db:5432/x");
    assert_string_equal(c->budget.cost_db_path, "data/ledger-spool.db");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print_summary(c, f);
    fclose(f);
    assert_non_null(strstr(buf, "ledger postgres://u:***@db:5432/x (spool data/ledger-spool.db)"));
    assert_null(strstr(buf, "hunter2"));
    free(buf);
    config_unref(c);
    c = load_ok("budget:\n  spool_db: \"sqlite:////var/spool/a.db\"\n"
                "  cost_db: \"postgresql://u:p@db/x?sslmode=require\"\n");
    assert_string_equal(c->budget.cost_db_url, "postgresql://u:p@db/x?sslmode=require");
    assert_string_equal(c->budget.cost_db_path, "/var/spool/a.db");
    config_unref(c);
    c = load_ok("budget:\n  cost_db: \"postgres://u:p@db/x\"\n  spool_db: spool.db\n");
    assert_string_equal(c->budget.cost_db_path, "spool.db");
    assert_string_equal(c->budget.spool_db_path, "spool.db");
    config_unref(c);
    /* an '@' or '/' in the password not percent-encoded: refused, not shown */
    const char *ambiguous = "aiproxy.yaml:2: budget.cost_db: the URL's user, password and host "
                            "cannot be told apart (an '@' or '/' in the user or password must be "
                            "percent-encoded as %40 or %2F), or it holds a control character";
    load_fails_with("budget:\n  cost_db: \"postgres://u:hun@ter2@db/x\"\n", ambiguous);
    assert_no_diag_holds("ter2");
    load_fails_with("budget:\n  cost_db: \"postgres://u:hun/ter2@db/x\"\n", ambiguous);
    assert_no_diag_holds("ter2");
    /* a "scheme" that is not one is not repeated either */
    load_fails_with("budget:\n  cost_db: \"u:hunter2@db://x\"\n",
                    "aiproxy.yaml:2: budget.cost_db: unsupported database URL (expected "
                    "sqlite:///path or postgres://USER:PASS@HOST:PORT/DB)");
    assert_no_diag_holds("hunter2");
}

static void test_server_endpoints(void **state)
{
    struct config *c = load_ok("server:\n  endpoints:\n"
                               "    - {path: /v1/embeddings, protocol: openai, enabled: false}\n"
                               "    - {path: /v1/models, enabled: true}\n");
    assert_int_equal(c->server.n_disabled_paths, 1);
    assert_string_equal(c->server.disabled_paths[0], "/v1/embeddings");
    config_unref(c);
}

static void test_defaults_of_empty_sections(void **state)
{
    struct config *c = load_ok("server:\nrouting:\n");
    assert_string_equal(c->server.listen_host, "127.0.0.1");
    assert_int_equal(c->server.listen_port, 8080);
    assert_int_equal(c->server.write_timeout_ms, 120000);
    assert_int_equal(c->server.idle_timeout_ms, 75000);
    assert_int_equal(c->server.max_request_size, 10 * 1024 * 1024);
    assert_int_equal(c->server.max_header_size, 16 * 1024);
    assert_int_equal(c->routing.strategy, STRATEGY_COST_OPTIMIZED);
    assert_true(c->routing.failover_enabled);
    assert_int_equal(c->routing.max_retries, 2);
    assert_int_equal(c->routing.retry_delay_ms, 100);
    assert_true(c->budget.track_costs);
    assert_string_equal(c->budget.cost_db_path, "data/costs.db");
    assert_int_equal(c->observability.log_level, 1 /* LOG_INFO */);
    assert_non_null(c->node.id); /* the hostname */
    assert_true(c->node.id[0] != '\0');
    config_unref(c);
}

/* ---- defaults, summary, lifecycle ---- */

static void test_config_default(void **state)
{
    unsetenv("OPENAI_API_KEY");
    unsetenv("AIPROXY_LISTEN");
    diag_list_cleanup(&diags);
    struct config *c = config_default(&diags);
    assert_string_equal(c->server.listen_host, "127.0.0.1");
    assert_int_equal(c->server.listen_port, 8080);
    assert_string_equal(c->budget.cost_db_path, "data/costs.db");
    const struct config_provider *o = config_find_provider(c, "openai");
    assert_non_null(o);
    assert_false(o->available);
    assert_string_equal(o->unavailable_reason, "OPENAI_API_KEY is not set");
    const struct config_model *m = find_model(o, "gpt-4o");
    assert_int_equal(m->price_in_per_1k, 2500000);
    assert_int_equal(m->price_out_per_1k, 10000000);
    assert_int_equal(pricing_cached_in_price(m), 1250000); /* 50% */
    assert_int_equal(pricing_cache_write_price(m), 2500000); /* OpenAI: writes at the input price */
    assert_int_equal(pricing_cached_in_price(find_model(o, "gpt-4.1")), 500000); /* 25% */
    const struct config_model *sonnet =
        find_model(config_find_provider(c, "anthropic"), "claude-sonnet-4-5");
    assert_int_equal(pricing_cached_in_price(sonnet), 300000);    /* 10% */
    assert_int_equal(pricing_cache_write_price(sonnet), 3750000); /* 125% */
    assert_int_equal(find_model(o, "text-embedding-3-small")->capabilities, CAP_EMBEDDINGS);
    const struct config_provider *l = config_find_provider(c, "local");
    assert_true(l->available);
    assert_true(l->discover_models);
    assert_int_equal(l->n_models, 0);
    assert_string_equal(l->endpoint, "http://127.0.0.1:11434/v1");
    config_unref(c);

    unsetenv("CLOUDFLARE_ACCOUNT_ID");
    c = config_default(&diags);
    const struct config_provider *cf = config_find_provider(c, "cloudflare");
    assert_false(cf->available);
    assert_string_equal(cf->unavailable_reason, "CLOUDFLARE_ACCOUNT_ID is not set");
    config_unref(c);

    setenv("OPENAI_API_KEY", "sk-default", 1);
    setenv("AIPROXY_LISTEN", "0.0.0.0:9090", 1);
    setenv("CLOUDFLARE_ACCOUNT_ID", "acct", 1);
    setenv("CLOUDFLARE_API_TOKEN", "tok", 1);
    c = config_default(&diags);
    assert_true(config_find_provider(c, "openai")->available);
    assert_int_equal(c->server.listen_port, 9090);
    cf = config_find_provider(c, "cloudflare");
    assert_true(cf->available);
    assert_string_equal(find_model(cf, "llama-3.1-8b")->upstream_id, "@cf/meta/llama-3.1-8b-instruct");
    config_unref(c);
    unsetenv("OPENAI_API_KEY");
    unsetenv("AIPROXY_LISTEN");
    unsetenv("CLOUDFLARE_ACCOUNT_ID");
    unsetenv("CLOUDFLARE_API_TOKEN");
}

static void test_summary_hides_secrets(void **state)
{
    setenv("OPENAI_API_KEY", "sk-very-secret", 1);
    struct config *c = load_ok("providers:\n  openai: {}\n  cloudflare:\n    credentials:\n"
                               "      account_id: acct-secret\n      api_token: tok-secret\n"
                               "security:\n  auth:\n    api_keys:\n      - key: key-secret\n");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print_summary(c, f);
    fclose(f);
    assert_non_null(strstr(buf, "openai"));
    assert_null(strstr(buf, "sk-very-secret"));
    assert_null(strstr(buf, "tok-secret"));
    assert_null(strstr(buf, "key-secret"));
    free(buf);
    config_unref(c);
    unsetenv("OPENAI_API_KEY");
}

static void test_ref_and_add_model(void **state)
{
    struct config *c = load_ok("providers:\n  local: {discover_models: true}\n");
    assert_ptr_equal(config_ref(c), c);
    config_unref(c);
    config_provider_add_model(&c->providers[0], "llama3", "llama3:8b", 0);
    assert_int_equal(c->providers[0].n_models, 1);
    assert_string_equal(c->providers[0].models[0].upstream_id, "llama3:8b");
    assert_int_equal(c->providers[0].models[0].capabilities, CAP_TEXT);
    assert_null(config_find_provider(c, "nope"));
    assert_string_equal(provider_type_name(PROVIDER_CLOUDFLARE), "cloudflare");
    config_unref(c);
    config_unref(NULL);
}

static void test_fallback_chain_warning(void **state)
{
    struct config *c = load_ok("providers:\n  local: {}\nrouting:\n  failover:\n"
                               "    fallback_chain: [local, nowhere, mesh_peer]\n");
    assert_true(has_diag(DIAG_WARNING, "aiproxy.yaml:5: routing.failover.fallback_chain[1]: "
                                       "'nowhere' is not a provider (nor mesh_peer)"));
    config_unref(c);
}

static void test_mesh_config(void **state)
{
    /* keys, defaults, the secret's digest */
    struct config *c = load_ok("node:\n  id: n1\n  mesh:\n    enabled: true\n"
                               "    listen_addr: \"127.0.0.1:9090\"\n    secret: s\n"
                               "    max_hops: 2\n    peers: [{addr: \"10.0.0.2:9090\"}]\n");
    assert_true(c->node.mesh_enabled);
    assert_int_equal(c->node.mesh_max_hops, 2);
    assert_true(c->node.share_load);
    assert_string_equal(c->node.mesh_listen_host, "127.0.0.1");
    assert_int_equal(c->node.mesh_listen_port, 9090);
    assert_false(c->node.peers[0].id_given);
    unsigned char zero[32] = {0};
    assert_memory_not_equal(c->node.mesh_secret_sha256, zero, 32);
    config_unref(c);
    /* garbage */
    const char *head = "node:\n  mesh:\n    enabled: true\n";
    char text[512];
    snprintf(text, sizeof text, "%s    peers: [{addr: \"h:x\"}]\n", head);
    load_fails_with(text, "aiproxy.yaml:3: node.mesh.peers[0]: addr 'h:x' is not host:port");
    snprintf(text, sizeof text, "%s    peers: [{addr: \"h:0\"}]\n", head);
    load_fails_with(text, "aiproxy.yaml:3: node.mesh.peers[0]: addr 'h:0' is not host:port");
    snprintf(text, sizeof text, "%s    listen_addr: nowhere\n", head);
    load_fails_with(text, "aiproxy.yaml:4: node.mesh.listen_addr: 'nowhere' is not host:port");
    snprintf(text, sizeof text, "%s    secret: \"a\\r\\nx: y\"\n", head);
    load_fails_with(text, "aiproxy.yaml:4: node.mesh.secret: holds a control character");
    snprintf(text, sizeof text, "%s    max_hops: 9\n", head);
    assert_null(load(text));
    snprintf(text, sizeof text, "%s    tls: {cert_file: a.pem}\n", head);
    assert_null(load(text));
    /* auth on: a secret is required; a ${VAR} left unset turns the mesh off */
    snprintf(text, sizeof text, "%ssecurity:\n  auth:\n    enabled: true\n    api_keys: [{key: k}]\n",
             head);
    load_fails_with(text, "aiproxy.yaml:3: node.mesh.secret: missing (expected a shared secret "
                          "every node holds: with security.auth enabled, peers must authenticate "
                          "to each other)");
    unsetenv("AIPROXY_TEST_UNSET_SECRET");
    snprintf(text, sizeof text, "%s    secret: \"${AIPROXY_TEST_UNSET_SECRET}\"\nsecurity:\n"
             "  auth:\n    enabled: true\n    api_keys: [{key: k}]\n", head);
    c = load_ok(text);
    assert_false(c->node.mesh_enabled);
    config_unref(c);
}

/* cluster: defaults, every key, refusals naming file, line and key, and a
 * summary that never shows the Redis password. */
static void test_cluster_config(void **state)
{
    struct config *c = load_ok("node:\n  id: n\n");
    assert_null(c->cluster.redis_url);
    assert_string_equal(c->cluster.redis_prefix, "aiproxy:");
    assert_int_equal(c->cluster.redis_timeout_ms, 50);
    assert_false(c->cluster.store_down_closed);
    config_unref(c);

    c = load_ok("cluster:\n  redis:\n    url: \"rediss://gw:redis-pw-1@10.0.0.5:6380/2\"\n"
                "    prefix: \"x:\"\n    timeout: 200ms\n    ca_file: /etc/ca.pem\n"
                "  on_store_down: closed\n");
    assert_string_equal(c->cluster.redis_url, "rediss://gw:redis-pw-1@10.0.0.5:6380/2");
    assert_string_equal(c->cluster.redis_prefix, "x:");
    assert_int_equal(c->cluster.redis_timeout_ms, 200);
    assert_string_equal(c->cluster.redis_ca_file, "/etc/ca.pem");
    assert_true(c->cluster.store_down_closed);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print_summary(c, f);
    fclose(f);
    assert_non_null(strstr(buf, "cluster: redis rediss://gw:***@10.0.0.5:6380/2"));
    assert_null(strstr(buf, "redis-pw-1"));
    free(buf);
    config_unref(c);

    load_fails_with("cluster:\n  on_store_down: maybe\n",
                    "aiproxy.yaml:2: cluster.on_store_down: 'maybe' is not local or closed");
    load_fails_with("cluster:\n  redis:\n    timeout: 0ms\n",
                    "aiproxy.yaml:3: cluster.redis.timeout: duration out of range (1ms to 60000ms)");
    load_fails_with("cluster:\n  redis:\n    url: \"http://u:pw-2@h\"\n",
                    "aiproxy.yaml:3: cluster.redis.url: unsupported scheme (expected redis://, "
                    "rediss:// or unix://)");
    load_fails_with("cluster:\n  redis:\n    url: \"redis://u:pw-3@h:99999\"\n",
                    "aiproxy.yaml:3: cluster.redis.url: the port is not a number from 1 to 65535");
    load_fails_with("cluster:\n  redis:\n    url: \"redis://:pw-4@\"\n",
                    "aiproxy.yaml:3: cluster.redis.url: no host");
    assert_no_diag_holds("pw-4");
    c = load_ok("cluster:\n  redis:\n    bogus: 1\n");
    assert_true(has_diag(DIAG_WARNING, "aiproxy.yaml:3: cluster.redis.bogus: unknown key (ignored)"));
    config_unref(c);
}

static void test_load_file_missing(void **state)
{
    diag_list_cleanup(&diags);
    assert_null(config_load_file("/nonexistent/aiproxy.yaml", &diags));
    assert_true(has_diag_part(DIAG_ERROR, "/nonexistent/aiproxy.yaml: cannot open"));
}

#define T(f) cmocka_unit_test_teardown(f, reset)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_file_full),          T(test_file_minimal),
        T(test_file_json),          T(test_file_local_ollama),
        T(test_prices_exact),       T(test_prices_prompt_cache), T(test_price_negative),
        T(test_price_exponent),     T(test_durations),
        T(test_bad_duration),       T(test_sizes),
        T(test_bad_size),           T(test_size_out_of_range),
        T(test_booleans),           T(test_integer_bounds),
        T(test_listen_addr),        T(test_bad_strategy),
        T(test_strategy_names),     T(test_aliases_and_policies),
        T(test_missing_model_name), T(test_duplicate_model),
        T(test_unknown_type),       T(test_type_from_key),
        T(test_endpoint_rules),     T(test_unset_credential),
        T(test_custom_endpoint_needs_key), T(test_preset),
        T(test_disabled_provider),  T(test_cloudflare_credentials),
        T(test_capabilities),       T(test_local_model_keys_known),
        T(test_env_default),        T(test_env_unset_plain_key),
        T(test_env_malformed),      T(test_api_keys),
        T(test_unknown_key_warning), T(test_several_errors),
        T(test_yaml_syntax_error),  T(test_empty_and_non_map),
        T(test_duplicate_key),      T(test_alias_refused),
        T(test_depth_cap),          T(test_size_cap),
        T(test_json_lines),         T(test_json_values),
        T(test_json_syntax_error),  T(test_cost_db), T(test_cost_db_postgres),
        T(test_server_endpoints),   T(test_defaults_of_empty_sections),
        T(test_config_default),     T(test_summary_hides_secrets),
        T(test_ref_and_add_model),  T(test_fallback_chain_warning), T(test_mesh_config), T(test_cluster_config),
        T(test_load_file_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
