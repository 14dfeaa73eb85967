/* config: the snapshot's life (load from file or text, built-in defaults,
 * reference counting, freeing), its small lookups and the human summary.
 * The key tables and the walk over the document live in parse.c; the
 * YAML/JSON loaders in load_yaml.c / load_json.c; ${VAR} in env.c. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cluster/redis_url.h"
#include "config/internal.h"
#include "core/alloc.h"
#include "core/dburl.h"
#include "core/log.h"
#include "routing/policy.h"
#include "security/digest.h"
#include "security/jwks.h"

/* ---- names ---- */

const char *provider_type_name(enum provider_type t)
{
    switch (t) {
    case PROVIDER_OPENAI: return "openai";
    case PROVIDER_ANTHROPIC: return "anthropic";
    case PROVIDER_CLOUDFLARE: return "cloudflare";
    case PROVIDER_LOCAL: return "local";
    case PROVIDER_OCF: return "ocf";
    case PROVIDER_MESH: return "mesh";
    }
    return "unknown";
}

static const char *const strategy_names[] = {
    [STRATEGY_COST_OPTIMIZED] = "cost_optimized", [STRATEGY_LATENCY_OPTIMIZED] = "latency_optimized",
    [STRATEGY_AVAILABILITY] = "availability",     [STRATEGY_ROUND_ROBIN] = "round_robin",
    [STRATEGY_LEAST_LOADED] = "least_loaded",     [STRATEGY_WEIGHTED] = "weighted",
};

const char *routing_strategy_name(enum routing_strategy s)
{
    if ((unsigned)s < sizeof strategy_names / sizeof strategy_names[0]) return strategy_names[s];
    return "unknown";
}

bool routing_strategy_parse(const char *name, enum routing_strategy *out)
{
    for (size_t i = 0; i < sizeof strategy_names / sizeof strategy_names[0]; i++) {
        if (strcmp(name, strategy_names[i]) == 0) {
            *out = (enum routing_strategy)i;
            return true;
        }
    }
    return false;
}

const char *config_default_endpoint(enum provider_type t)
{
    switch (t) {
    case PROVIDER_OPENAI: return "https://api.openai.com/v1";
    case PROVIDER_ANTHROPIC: return "https://api.anthropic.com/v1";
    case PROVIDER_CLOUDFLARE: return "https://api.cloudflare.com/client/v4";
    case PROVIDER_LOCAL: return "http://127.0.0.1:11434/v1";
    case PROVIDER_OCF:
    case PROVIDER_MESH: return NULL;
    }
    return NULL;
}

bool config_parse_listen(const char *s, char **host, int *port)
{
    const char *colon, *h = s;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return false;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        if (hlen == 0) return false;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s))) return false; /* bare v6 */
        hlen = (size_t)(colon - s);
    }
    const char *p = colon + 1;
    if (!*p || strlen(p) > 5) return false;
    int v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (*p - '0');
    }
    if (v > 65535) return false;
    for (size_t i = 0; i < hlen; i++)
        if (h[i] == ' ' || h[i] == '/' || h[i] == '[' || h[i] == ']') return false;
    *host = hlen ? xstrndup(h, hlen) : xstrdup("0.0.0.0");
    *port = v;
    return true;
}

/* ---- life ---- */

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

void config_free(struct config *c)
{
    if (!c) return;
    free(c->source);
    free(c->node.id);
    free(c->node.name);
    free(c->node.region);
    free(c->node.type);
    free(c->node.mesh_listen_addr);
    free(c->node.mesh_listen_host);
    free(c->node.mesh_secret);
    free(c->cache.redis_url);
    free(c->cache.semantic.embedding_model);
    free(c->cluster.redis_url);
    free(c->cluster.redis_prefix);
    free(c->cluster.redis_ca_file);
    free(c->node.mesh_tls_cert);
    free(c->node.mesh_tls_key);
    free(c->node.mesh_tls_ca);
    for (size_t i = 0; i < c->node.n_peers; i++) {
        free(c->node.peers[i].id);
        free(c->node.peers[i].addr);
    }
    free(c->node.peers);
    free(c->server.listen_host);
    free(c->server.tls.cert_file);
    free(c->server.tls.key_file);
    free(c->server.tls.client_ca_file);
    free(c->observability.metrics_tls.cert_file);
    free(c->observability.metrics_tls.key_file);
    free(c->observability.metrics_tls.client_ca_file);
    free_strings(c->server.disabled_paths, c->server.n_disabled_paths);
    for (size_t i = 0; i < c->n_providers; i++) config_provider_cleanup(&c->providers[i]);
    free(c->providers);
    for (size_t i = 0; i < c->routing.n_aliases; i++) {
        free(c->routing.aliases[i].name);
        free(c->routing.aliases[i].target);
    }
    free(c->routing.aliases);
    for (size_t i = 0; i < c->routing.n_policies; i++) {
        struct config_policy *p = &c->routing.policies[i];
        free(p->name);
        free(p->type);
        for (size_t j = 0; j < p->n_rules; j++) {
            free(p->rules[j].if_expr);
            free(p->rules[j].then_expr);
        }
        free(p->rules);
    }
    free(c->routing.policies);
    for (size_t i = 0; i < c->routing.n_tiers; i++) {
        free(c->routing.tiers[i].name);
        free(c->routing.tiers[i].model);
    }
    free(c->routing.tiers);
    if (c->compiled_policies && c->free_compiled_policies)
        c->free_compiled_policies(c->compiled_policies);
    free_strings(c->routing.fallback_chain, c->routing.n_fallback_chain);
    free_strings(c->routing.hedge_models, c->routing.n_hedge_models);
    free(c->budget.cost_db_path);
    free(c->budget.cost_db_url);
    free(c->budget.spool_db_path);
    for (size_t i = 0; i < c->budget.n_alerts; i++) free(c->budget.alerts[i].webhook);
    free(c->budget.alerts);
    for (size_t i = 0; i < c->budget.n_tenants; i++) free(c->budget.tenants[i].name);
    free(c->budget.tenants);
    free(c->observability.log_output);
    free_strings(c->observability.metrics_collect, c->observability.n_metrics_collect);
    free(c->observability.tracing_provider);
    free(c->observability.tracing_endpoint);
    free(c->observability.tracing_service_name);
    free(c->security.auth_type);
    struct config_jwt *j = &c->security.jwt;
    free(j->issuer);
    free(j->audience);
    free(j->jwks_file);
    free(j->jwks_url);
    if (j->secret) OPENSSL_cleanse(j->secret, strlen(j->secret));
    free(j->secret);
    free_strings(j->algorithms, j->n_algorithms);
    free(j->claim_key_name);
    free(j->claim_tenant);
    free(j->claim_role);
    free_strings(j->models, j->n_models);
    jwks_unref(j->jwks);
    for (size_t i = 0; i < c->security.n_api_keys; i++) {
        free(c->security.api_keys[i].key);
        free(c->security.api_keys[i].name);
        free(c->security.api_keys[i].role);
        free(c->security.api_keys[i].tenant);
        free_strings(c->security.api_keys[i].models, c->security.api_keys[i].n_models);
    }
    free_strings(c->security.trusted_proxies, c->security.n_trusted_proxies);
    free(c->security.api_keys);
    free_strings(c->security.cors_origins, c->security.n_cors_origins);
    free(c);
}

struct config *config_ref(struct config *c)
{
    if (c) atomic_fetch_add_explicit(&c->refcount, 1, memory_order_relaxed);
    return c;
}

void config_unref(struct config *c)
{
    if (!c) return;
    if (atomic_fetch_sub_explicit(&c->refcount, 1, memory_order_acq_rel) == 1) config_free(c);
}

static void set_hostname_id(struct config *c)
{
    if (c->node.id && c->node.id[0]) return;
    char host[256];
    free(c->node.id);
    if (gethostname(host, sizeof host) == 0 && host[0]) {
        host[sizeof host - 1] = '\0';
        c->node.id = xstrdup(host);
    } else {
        c->node.id = xstrdup("aiproxy");
    }
}

struct config *config_load_text(const char *text, size_t len, const char *name,
                                struct diag_list *diags)
{
    if (len > CONFIG_MAX_FILE_SIZE) {
        diag_list_addf(diags, DIAG_ERROR, "%s: file too large (%zu bytes; the limit is %u)",
                       name, len, CONFIG_MAX_FILE_SIZE);
        return NULL;
    }
    size_t i = 0;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) i = 3; /* UTF-8 BOM */
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
        i++;
    if (i == len) {
        diag_list_addf(diags, DIAG_ERROR, "%s:1: the file is empty", name);
        return NULL;
    }
    size_t errors = diags->errors;
    struct cnode *root = text[i] == '{' ? tree_load_json(text, len, name, diags)
                                        : tree_load_yaml(text, len, name, diags);
    if (!root) return NULL;
    if (root->kind == CNODE_SCALAR && root->is_null) {
        diag_list_addf(diags, DIAG_ERROR, "%s:%d: the file has no settings", name, root->line);
        cnode_free(root);
        return NULL;
    }
    env_expand_tree(root, name, diags);
    struct config *c = config_new_defaults();
    c->source = xstrdup(name);
    if (config_apply_tree(c, root, name, diags)) routing_compile_policies(c, diags);
    cnode_free(root);
    for (size_t k = 0; k < c->security.n_api_keys; k++) {
        struct config_api_key *ak = &c->security.api_keys[k];
        if (ak->key) digest_sha256(ak->key, strlen(ak->key), ak->key_sha256);
    }
    if (c->node.mesh_secret)
        digest_sha256(c->node.mesh_secret, strlen(c->node.mesh_secret), c->node.mesh_secret_sha256);
    set_hostname_id(c);
    if (diags->errors != errors) {
        config_free(c);
        return NULL;
    }
    return c;
}

struct config *config_load_file(const char *path, struct diag_list *diags)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        diag_list_addf(diags, DIAG_ERROR, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    /* Read at most one byte past the cap, so a huge file or a pipe is
     * refused without reading it all. */
    size_t cap = CONFIG_MAX_FILE_SIZE + 1, len = 0, alloc = 64 * 1024;
    char *buf = xmalloc(alloc);
    for (;;) {
        if (len == alloc) {
            alloc = alloc * 2 > cap ? cap : alloc * 2;
            buf = xrealloc(buf, alloc);
        }
        size_t n = fread(buf + len, 1, alloc - len, f);
        len += n;
        if (n == 0 || len >= cap) break;
    }
    bool err = ferror(f);
    int saved = errno;
    fclose(f);
    if (err) {
        diag_list_addf(diags, DIAG_ERROR, "%s: cannot read: %s", path, strerror(saved));
        free(buf);
        return NULL;
    }
    struct config *c = config_load_text(buf, len, path, diags);
    free(buf);
    return c;
}

/* ---- built-in defaults ---- */

/* Prices as text, USD per 1k tokens: input, output, and the prompt
 * cache's read (`cached`) and write prices, NULL for the input price.
 * List prices as published on 2025-11 (openai.com/api/pricing,
 * docs.anthropic.com "Pricing"): OpenAI bills cached input at 50% of the
 * input price for the gpt-4o family and 25% for gpt-4.1, and cache writes
 * at the input price; Anthropic bills cache reads at 10% of the input
 * price and 5-minute cache writes at 125%. */
struct default_model {
    const char *name;
    const char *in, *out;
    unsigned caps;
    const char *cached, *cache_write;
};

static const struct default_model openai_models[] = {
    {"gpt-4o", "0.0025", "0.01", CAP_TEXT | CAP_VISION | CAP_TOOLS, "0.00125", NULL},
    {"gpt-4o-mini", "0.00015", "0.0006", CAP_TEXT | CAP_VISION | CAP_TOOLS, "0.000075", NULL},
    {"gpt-4.1", "0.002", "0.008", CAP_TEXT | CAP_VISION | CAP_TOOLS, "0.0005", NULL},
    {"gpt-4.1-mini", "0.0004", "0.0016", CAP_TEXT | CAP_VISION | CAP_TOOLS, "0.0001", NULL},
    {"text-embedding-3-small", "0.00002", "0", CAP_EMBEDDINGS, NULL, NULL},
    {NULL, NULL, NULL, 0, NULL, NULL},
};

static const struct default_model anthropic_models[] = {
    {"claude-sonnet-4-5", "0.003", "0.015", CAP_TEXT | CAP_VISION | CAP_TOOLS, "0.0003", "0.00375"},
    {"claude-3-5-haiku-latest", "0.0008", "0.004", CAP_TEXT | CAP_TOOLS, "0.00008", "0.001"},
    {NULL, NULL, NULL, 0, NULL, NULL},
};

/* Workers AI models with the standard's example prices (section 4.1). */
static const struct default_model cloudflare_models[] = {
    {"llama-3.1-8b", "0.001", "0.001", CAP_TEXT, NULL, NULL},
    {"qwen-coder", "0.001", "0.001", CAP_TEXT | CAP_CODE, NULL, NULL},
    {"bge-base-en", "0.0001", "0", CAP_EMBEDDINGS, NULL, NULL},
    {NULL, NULL, NULL, 0, NULL, NULL},
};
static const char *const cloudflare_ids[] = {"@cf/meta/llama-3.1-8b-instruct",
                                              "@cf/qwen/qwen2.5-coder-7b-instruct",
                                              "@cf/baai/bge-base-en-v1.5"};

static struct config_provider *add_default_provider(struct config *c, const char *name,
                                                    enum provider_type t,
                                                    const struct default_model *models,
                                                    const char *env)
{
    c->providers = xrealloc(c->providers, (c->n_providers + 1) * sizeof *c->providers);
    struct config_provider *p = &c->providers[c->n_providers++];
    config_provider_init(p, name, t);
    p->endpoint = xstrdup(config_default_endpoint(t));
    for (const struct default_model *m = models; m && m->name; m++) {
        config_provider_add_model(p, m->name, m->name, m->caps);
        struct config_model *cm = &p->models[p->n_models - 1];
        money_parse_usd(m->in, strlen(m->in), &cm->price_in_per_1k);
        money_parse_usd(m->out, strlen(m->out), &cm->price_out_per_1k);
        if (m->cached)
            cm->has_cached_in_price =
                money_parse_usd(m->cached, strlen(m->cached), &cm->price_cached_in_per_1k);
        if (m->cache_write)
            cm->has_cache_write_price = money_parse_usd(m->cache_write, strlen(m->cache_write),
                                                        &cm->price_cache_write_per_1k);
    }
    if (env) {
        const char *key = getenv(env);
        if (key && *key) p->api_key = xstrdup(key);
        else {
            p->available = false;
            p->unavailable_reason = xasprintf("%s is not set", env);
        }
    }
    return p;
}

struct config *config_default(struct diag_list *diags)
{
    struct config *c = config_new_defaults();
    c->source = xstrdup("<built-in defaults>");
    const char *listen = getenv("AIPROXY_LISTEN");
    if (listen && *listen) {
        char *host;
        int port;
        if (config_parse_listen(listen, &host, &port)) {
            free(c->server.listen_host);
            c->server.listen_host = host;
            c->server.listen_port = port;
        } else {
            diag_list_addf(diags, DIAG_WARNING,
                           "AIPROXY_LISTEN: bad address '%s' (expected host:port); using %s:%d",
                           listen, c->server.listen_host, c->server.listen_port);
        }
    }
    add_default_provider(c, "openai", PROVIDER_OPENAI, openai_models, "OPENAI_API_KEY");
    add_default_provider(c, "anthropic", PROVIDER_ANTHROPIC, anthropic_models,
                         "ANTHROPIC_API_KEY");
    /* Cloudflare needs two variables: the account and a token. */
    struct config_provider *cf =
        add_default_provider(c, "cloudflare", PROVIDER_CLOUDFLARE, cloudflare_models, NULL);
    for (size_t i = 0; i < cf->n_models; i++) {
        free(cf->models[i].upstream_id);
        cf->models[i].upstream_id = xstrdup(cloudflare_ids[i]);
    }
    const char *account = getenv("CLOUDFLARE_ACCOUNT_ID"), *token = getenv("CLOUDFLARE_API_TOKEN");
    if (account && *account && token && *token) {
        cf->account_id = xstrdup(account);
        cf->api_token = xstrdup(token);
    } else {
        cf->available = false;
        cf->unavailable_reason = xstrdup(!account || !*account ? "CLOUDFLARE_ACCOUNT_ID is not set"
                                                               : "CLOUDFLARE_API_TOKEN is not set");
    }
    struct config_provider *local = add_default_provider(c, "local", PROVIDER_LOCAL, NULL, NULL);
    local->discover_models = true;
    local->priority = 1;
    set_hostname_id(c);
    return c;
}

/* ---- lookups ---- */

const struct config_provider *config_find_provider(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->n_providers; i++)
        if (strcmp(c->providers[i].name, name) == 0) return &c->providers[i];
    return NULL;
}

void config_provider_add_model(struct config_provider *p, const char *name,
                               const char *upstream_id, unsigned capabilities)
{
    p->models = xrealloc(p->models, (p->n_models + 1) * sizeof *p->models);
    struct config_model *m = &p->models[p->n_models++];
    memset(m, 0, sizeof *m);
    m->name = xstrdup(name);
    m->upstream_id = xstrdup(upstream_id ? upstream_id : name);
    m->capabilities = capabilities ? capabilities : CAP_TEXT;
}

/* ---- summary ---- */

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

static void print_caps(unsigned caps, FILE *out)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{CAP_TEXT, "text"},         {CAP_VISION, "vision"},
                 {CAP_EMBEDDINGS, "embeddings"}, {CAP_CODE, "code"},
                 {CAP_IMAGE_GEN, "image-gen"},   {CAP_TOOLS, "tools"},
                 {CAP_IMAGE_CLASS, "image-class"}};
    bool first = true;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (caps & names[i].bit) {
            fprintf(out, "%s%s", first ? "" : ",", names[i].name);
            first = false;
        }
    }
    if (first) fputs("-", out);
}

void config_print_summary(const struct config *c, FILE *out)
{
    char a[32], b[32];
    fprintf(out, "config: %s\n", or_dash(c->source));
    fprintf(out, "node: %s (name %s, region %s, type %s)\n", or_dash(c->node.id),
            or_dash(c->node.name), or_dash(c->node.region), or_dash(c->node.type));
    if (c->node.mesh_enabled)
        fprintf(out, "mesh: listen %s, %zu peer(s), max_hops %d, secret %s, tls %s\n",
                or_dash(c->node.mesh_listen_addr), c->node.n_peers, c->node.mesh_max_hops,
                c->node.mesh_secret ? "set" : "none", c->node.mesh_tls_cert ? "mutual" : "off");
    bool v6 = strchr(c->server.listen_host, ':') != NULL;
    fprintf(out, "listen: %s%s%s:%d (max request %lld bytes, workers %d)\n", v6 ? "[" : "",
            c->server.listen_host, v6 ? "]" : "", c->server.listen_port,
            (long long)c->server.max_request_size, c->server.workers);
    if (c->server.tls.cert_file)
        fprintf(out, "tls: %s, key %s%s%s\n", c->server.tls.cert_file, c->server.tls.key_file,
                c->server.tls.client_ca_file ? ", client certificates from " : "",
                c->server.tls.client_ca_file ? c->server.tls.client_ca_file : "");
    fprintf(out, "providers: %zu\n", c->n_providers);
    for (size_t i = 0; i < c->n_providers; i++) {
        const struct config_provider *p = &c->providers[i];
        fprintf(out, "  %s (%s%s%s) %s priority %d: ", p->name, provider_type_name(p->type),
                p->preset ? ", preset " : "", p->preset ? p->preset : "", or_dash(p->endpoint),
                p->priority);
        if (p->available) fputs("available", out);
        else fprintf(out, "unavailable: %s", or_dash(p->unavailable_reason));
        if (p->discover_models) fputs(", discovers models", out);
        fputc('\n', out);
        for (size_t j = 0; j < p->n_models; j++) {
            const struct config_model *m = &p->models[j];
            money_format_usd(m->price_in_per_1k, a, sizeof a);
            money_format_usd(m->price_out_per_1k, b, sizeof b);
            fprintf(out, "    %s -> %s [", m->name, m->upstream_id);
            print_caps(m->capabilities, out);
            fprintf(out, "] $%s in / $%s out per 1k tokens", a, b);
            if (m->has_cached_in_price || m->has_cache_write_price) {
                money_format_usd(m->has_cached_in_price ? m->price_cached_in_per_1k
                                                        : m->price_in_per_1k, a, sizeof a);
                money_format_usd(m->has_cache_write_price ? m->price_cache_write_per_1k
                                                          : m->price_in_per_1k, b, sizeof b);
                fprintf(out, " (prompt cache: $%s read / $%s write)", a, b);
            }
            if (m->price_per_generation) {
                money_format_usd(m->price_per_generation, a, sizeof a);
                fprintf(out, ", $%s per generation", a);
            }
            fputc('\n', out);
        }
    }
    fprintf(out, "routing: %s; failover %s (max retries %d, delay %lldms); %zu alias(es), %zu "
                 "policy(ies)\n",
            routing_strategy_name(c->routing.strategy), c->routing.failover_enabled ? "on" : "off",
            c->routing.max_retries, (long long)c->routing.retry_delay_ms, c->routing.n_aliases,
            c->routing.n_policies);
    money_format_usd(c->budget.daily_limit, a, sizeof a);
    money_format_usd(c->budget.monthly_limit, b, sizeof b);
    /* A PostgreSQL ledger's URL holds a password: shown masked. */
    char ledger[512];
    if (c->budget.cost_db_url) {
        char masked[400];
        snprintf(ledger, sizeof ledger, "%s (spool %s)",
                 dburl_masked(c->budget.cost_db_url, masked, sizeof masked),
                 or_dash(c->budget.cost_db_path));
    } else {
        snprintf(ledger, sizeof ledger, "%s", or_dash(c->budget.cost_db_path));
    }
    fprintf(out, "budget: %s, daily %s%s, monthly %s%s, ledger %s\n",
            c->budget.enabled ? "on" : "off", c->budget.daily_limit ? "$" : "",
            c->budget.daily_limit ? a : "unlimited", c->budget.monthly_limit ? "$" : "",
            c->budget.monthly_limit ? b : "unlimited", ledger);
    size_t usable = 0;
    for (size_t i = 0; i < c->security.n_api_keys; i++) usable += c->security.api_keys[i].available;
    fprintf(out, "auth: %s (%zu key(s), %zu usable)\n", c->security.auth_enabled ? "on" : "off",
            c->security.n_api_keys, usable);
    if (c->security.auth_jwt) {
        const struct config_jwt *j = &c->security.jwt;
        /* (the secret itself is never printed, only that there is one) */
        fprintf(out, "auth jwt: keys from %s%s, issuer %s, audience %s%s\n",
                j->jwks_file ? "file " : j->jwks_url ? "url " : "an HS256 secret",
                j->jwks_file ? j->jwks_file : j->jwks_url ? j->jwks_url : "", or_dash(j->issuer),
                or_dash(j->audience), c->security.auth_api_key ? "; api keys too" : "; no api keys");
    }
    if (c->cluster.redis_url) {
        char masked[400];
        fprintf(out, "cluster: redis %s (prefix %s, timeout %lldms), on_store_down %s\n",
                redis_url_masked(c->cluster.redis_url, masked, sizeof masked),
                c->cluster.redis_prefix ? c->cluster.redis_prefix : "", (long long)c->cluster.redis_timeout_ms,
                c->cluster.store_down_closed ? "closed" : "local");
    }
    if (c->cache.enabled) {
        fprintf(out, "cache: %s, backend %s, ttl %llds, max_memory %lld bytes%s%s\n",
                c->cache.mode_always ? "always" : "opt_in",
                c->cache.backend_redis ? "redis" : "memory", (long long)(c->cache.ttl_ms / 1000),
                (long long)c->cache.max_memory,
                c->cache.semantic.enabled ? ", semantic with " : "",
                c->cache.semantic.enabled ? c->cache.semantic.embedding_model : "");
    }
}
