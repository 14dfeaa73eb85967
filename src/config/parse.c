/* parse: the configuration schema (SPEC section 2, the standard's 4.1):
 * one table of rows per section (node, server, providers, routing, budget,
 * observability, security) applied by the generic walk of config/walk.h,
 * small custom handlers for lists of objects (providers, models, peers,
 * alerts, ...), and the checks that need the whole document. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/redis_url.h"
#include "config/parse_sections.h"
#include "config/walk.h"
#include "core/alloc.h"
#include "core/dburl.h"
#include "core/log.h"

/* ---- node ---- */

static const struct key_spec peer_keys[] = {
    {.name = "id", .type = KT_STR, .offset = AT(struct config_peer, id)},
    {.name = "addr", .type = KT_STR, .offset = AT(struct config_peer, addr)},
    {.name = "priority", .type = KT_INT, .min = 0, .max = 1000000, .def = "1", .offset = AT(struct config_peer, priority)},
    {.name = NULL},
};

static void on_peer(struct parse_ctx *cx, const struct cnode *m, const char *path, void *base)
{
    struct config *c = base;
    struct config_peer p = {0};
    walk_defaults(peer_keys, &p);
    walk_map(cx, m, path, peer_keys, &p);
    if (!p.addr) {
        ERR(cx, m->line, path, "addr: missing (expected host:port of the peer's mesh listener)");
        free(p.id);
        return;
    }
    p.id_given = p.id != NULL;
    if (!p.id) p.id = xstrdup(p.addr);
    c->node.peers = xrealloc(c->node.peers, (c->node.n_peers + 1) * sizeof p);
    c->node.peers[c->node.n_peers++] = p;
}

static void parse_peers(struct parse_ctx *cx, const struct cnode *v, const char *path,
                        void *base)
{
    walk_each_item(cx, v, path, on_peer, base);
}

static const struct key_spec mesh_tls_keys[] = {
    {.name = "cert_file", .type = KT_STR, .offset = CFG(node.mesh_tls_cert)},
    {.name = "key_file", .type = KT_STR, .offset = CFG(node.mesh_tls_key)},
    {.name = "ca_file", .type = KT_STR, .offset = CFG(node.mesh_tls_ca)},
    {.name = NULL},
};

static const struct key_spec mesh_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "false", .offset = CFG(node.mesh_enabled)},
    {.name = "listen_addr", .type = KT_STR, .offset = CFG(node.mesh_listen_addr)},
    {.name = "peers", .type = KT_CUSTOM, .parse = parse_peers},
    {.name = "share_load", .type = KT_BOOL, .def = "true", .offset = CFG(node.share_load)},
    {.name = "peer_timeout", .type = KT_DURATION, .min = 1, .max = 3600000, .def = "5s", .offset = CFG(node.peer_timeout_ms)},
    {.name = "heartbeat_interval", .type = KT_DURATION, .min = 1, .max = 3600000, .def = "10s", .offset = CFG(node.heartbeat_interval_ms)},
    {.name = "secret", .type = KT_STR, .offset = CFG(node.mesh_secret)},
    {.name = "max_hops", .type = KT_INT, .min = 0, .max = 8, .def = "1", .offset = CFG(node.mesh_max_hops)},
    {.name = "tls", .type = KT_SECTION, .sub = mesh_tls_keys},
    {.name = NULL},
};

static const struct key_spec node_keys[] = {
    {.name = "id", .type = KT_STR, .offset = CFG(node.id)},
    {.name = "name", .type = KT_STR, .offset = CFG(node.name)},
    {.name = "region", .type = KT_STR, .offset = CFG(node.region)},
    {.name = "type", .type = KT_STR, .offset = CFG(node.type)},
    {.name = "mesh", .type = KT_SECTION, .sub = mesh_keys},
    {.name = NULL},
};

/* ---- server ---- */

static void parse_listen(struct parse_ctx *cx, const struct cnode *v, const char *path,
                         void *base)
{
    struct config *c = base;
    const char *t = walk_scalar_text(cx, v, path, "host:port");
    if (!t) return;
    char *host = NULL;
    int port;
    if (!config_parse_listen(t, &host, &port)) {
        ERR(cx, v->line, path, "bad address '%s' (expected host:port, [v6addr]:port or :port)",
            t);
        return;
    }
    free(c->server.listen_host);
    c->server.listen_host = host;
    c->server.listen_port = port;
}

static void on_endpoint(struct parse_ctx *cx, const struct cnode *m, const char *path,
                        void *base)
{
    struct config *c = base;
    struct endpoint_row {
        char *path, *protocol;
        bool enabled;
    } e = {0};
    static const struct key_spec keys[] = {
        {.name = "path", .type = KT_STR, .offset = AT(struct endpoint_row, path)},
        {.name = "protocol", .type = KT_STR, .offset = AT(struct endpoint_row, protocol)},
        {.name = "enabled", .type = KT_BOOL, .def = "true", .offset = AT(struct endpoint_row, enabled)},
        {.name = NULL},
    };
    walk_defaults(keys, &e);
    walk_map(cx, m, path, keys, &e);
    if (!e.path) ERR(cx, m->line, path, "path: missing (expected e.g. /v1/chat/completions)");
    else if (e.path[0] != '/') ERR(cx, m->line, path, "path: must start with '/'");
    else if (!e.enabled) {
        c->server.disabled_paths = xrealloc(c->server.disabled_paths,
                                            (c->server.n_disabled_paths + 1) * sizeof(char *));
        c->server.disabled_paths[c->server.n_disabled_paths++] = e.path;
        e.path = NULL;
    }
    free(e.path);
    free(e.protocol);
}

static void parse_endpoints(struct parse_ctx *cx, const struct cnode *v, const char *path,
                            void *base)
{
    walk_each_item(cx, v, path, on_endpoint, base);
}

/* server.tls and observability.metrics.tls (checked in validate_tls). */
static const struct key_spec server_tls_keys[] = {
    {.name = "cert_file", .type = KT_STR, .offset = CFG(server.tls.cert_file)},
    {.name = "key_file", .type = KT_STR, .offset = CFG(server.tls.key_file)},
    {.name = "client_ca_file", .type = KT_STR, .offset = CFG(server.tls.client_ca_file)},
    {.name = NULL},
};

static const struct key_spec metrics_tls_keys[] = {
    {.name = "cert_file", .type = KT_STR, .offset = CFG(observability.metrics_tls.cert_file)},
    {.name = "key_file", .type = KT_STR, .offset = CFG(observability.metrics_tls.key_file)},
    {.name = "client_ca_file", .type = KT_STR, .offset = CFG(observability.metrics_tls.client_ca_file)},
    {.name = NULL},
};

#define HOUR_MS 3600000LL

static const struct key_spec server_keys[] = {
    {.name = "listen_addr", .type = KT_CUSTOM, .def = "127.0.0.1:8080", .parse = parse_listen},
    {.name = "read_timeout", .type = KT_DURATION, .min = 1, .max = 24 * HOUR_MS, .def = "30s", .offset = CFG(server.read_timeout_ms)},
    {.name = "write_timeout", .type = KT_DURATION, .min = 1, .max = 24 * HOUR_MS, .def = "120s", .offset = CFG(server.write_timeout_ms)},
    {.name = "idle_timeout", .type = KT_DURATION, .min = 1, .max = 24 * HOUR_MS, .def = "75s", .offset = CFG(server.idle_timeout_ms)},
    {.name = "max_request_size", .type = KT_SIZE, .min = 1 * KB, .max = 1024 * MB, .def = "10MB", .offset = CFG(server.max_request_size)},
    {.name = "max_header_size", .type = KT_SIZE, .min = 1 * KB, .max = 1 * MB, .def = "16KB", .offset = CFG(server.max_header_size)},
    {.name = "workers", .type = KT_INT, .min = 0, .max = 1024, .def = "0", .offset = CFG(server.workers)},
    {.name = "drain_timeout", .type = KT_DURATION, .min = 0, .max = 24 * HOUR_MS, .def = "30s", .offset = CFG(server.drain_timeout_ms)},
    {.name = "max_upstream_transfers", .type = KT_INT, .min = 0, .max = 1000000, .def = "10000", .offset = CFG(server.max_upstream_transfers)},
    {.name = "endpoints", .type = KT_CUSTOM, .parse = parse_endpoints},
    {.name = "tls", .type = KT_SECTION, .sub = server_tls_keys},
    {.name = NULL},
};

/* ---- providers ---- */

static const char *const type_list = "openai, anthropic, cloudflare, local, ocf";

static bool provider_type_parse(const char *s, enum provider_type *t)
{
    for (int i = PROVIDER_OPENAI; i <= PROVIDER_OCF; i++) {
        if (strcmp(s, provider_type_name((enum provider_type)i)) == 0) {
            *t = (enum provider_type)i;
            return true;
        }
    }
    return false;
}

struct preset {
    const char *name, *endpoint, *env;
};

static const struct preset presets[] = {
    {"groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"},
    {"together", "https://api.together.xyz/v1", "TOGETHER_API_KEY"},
    {"deepseek", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"},
    {"mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"},
    {"fireworks", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"},
    {"cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"},
    {"openrouter", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"},
    {"gemini", "https://generativelanguage.googleapis.com/v1beta/openai", "GEMINI_API_KEY"},
    {NULL, NULL, NULL},
};

static const struct {
    const char *name;
    unsigned bit;
} capability_names[] = {
    {"text-generation", CAP_TEXT}, {"chat", CAP_TEXT},
    {"vision", CAP_VISION},        {"embeddings", CAP_EMBEDDINGS},
    {"code-generation", CAP_CODE}, {"text-to-image", CAP_IMAGE_GEN},
    {"tools", CAP_TOOLS},          {"function-calling", CAP_TOOLS},
    {"image-classification", CAP_IMAGE_CLASS},
};

/* A model while it is parsed: the flat price is kept apart so that
 * input/output prices win whatever the key order. */
struct model_row {
    struct config_model m;
    nanos_t flat;
};

static void parse_capabilities(struct parse_ctx *cx, const struct cnode *v, const char *path,
                               void *base)
{
    struct model_row *r = base;
    char **list = NULL;
    size_t n = 0;
    walk_strlist(cx, v, path, &list, &n);
    r->m.capabilities = 0;
    r->m.capabilities_explicit = true;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0, nn = sizeof capability_names / sizeof capability_names[0];
        while (j < nn && strcmp(capability_names[j].name, list[i]) != 0) j++;
        if (j < nn) r->m.capabilities |= capability_names[j].bit;
        else {
            char *ip = walk_path_index(path, i);
            WARN(cx, v->kind == CNODE_SEQ ? v->items[i]->line : v->line, ip,
                 "unknown capability '%s' (ignored)", list[i]);
            free(ip);
        }
    }
    walk_free_strlist(&list, &n);
}

#define MODEL(m_) offsetof(struct model_row, m.m_)

static const struct key_spec model_keys[] = {
    {.name = "name", .type = KT_STR, .offset = MODEL(name)},
    {.name = "openai_model", .type = KT_STR, .offset = MODEL(upstream_id)},
    {.name = "anthropic_model", .type = KT_STR, .offset = MODEL(upstream_id)},
    {.name = "cloudflare_model", .type = KT_STR, .offset = MODEL(upstream_id)},
    {.name = "local_model", .type = KT_STR, .offset = MODEL(upstream_id)},
    {.name = "ocf_model", .type = KT_STR, .offset = MODEL(upstream_id)},
    {.name = "capabilities", .type = KT_CUSTOM, .parse = parse_capabilities},
    {.name = "cost_per_1k_tokens", .type = KT_MONEY, .offset = offsetof(struct model_row, flat)},
    {.name = "cost_per_1k_input_tokens", .type = KT_MONEY, .offset = MODEL(price_in_per_1k)},
    {.name = "cost_per_1k_output_tokens", .type = KT_MONEY, .offset = MODEL(price_out_per_1k)},
    {.name = "cost_per_generation", .type = KT_MONEY, .offset = MODEL(price_per_generation)},
    {.name = "cost_per_1k_cached_input_tokens", .type = KT_MONEY, .offset = MODEL(price_cached_in_per_1k)},
    {.name = "cost_per_1k_cache_write_tokens", .type = KT_MONEY, .offset = MODEL(price_cache_write_per_1k)},
    /* the standard's local-model keys: accepted, not used by a gateway */
    {.name = "path", .type = KT_IGNORE},
    {.name = "runtime", .type = KT_IGNORE},
    {.name = NULL},
};

static void on_model(struct parse_ctx *cx, const struct cnode *m, const char *path, void *base)
{
    struct config_provider *p = base;
    struct model_row r = {0};
    r.m.capabilities = CAP_TEXT;
    r.m.line = m->line;
    uint64_t seen = walk_map(cx, m, path, model_keys, &r);
    if (!r.m.name || !r.m.name[0]) {
        ERR(cx, m->line, path, "name: missing (every model needs the name clients ask for)");
        free(r.m.name);
        free(r.m.upstream_id);
        return;
    }
    for (size_t i = 0; i < p->n_models; i++) {
        if (strcmp(p->models[i].name, r.m.name) == 0) {
            char *np = walk_path_key(path, "name");
            ERR(cx, m->line, np, "duplicate model '%s' (first defined on line %d)", r.m.name,
                p->models[i].line);
            free(np);
            free(r.m.name);
            free(r.m.upstream_id);
            return;
        }
    }
    if (walk_seen_key(model_keys, seen, "cost_per_1k_tokens")) {
        if (!walk_seen_key(model_keys, seen, "cost_per_1k_input_tokens")) r.m.price_in_per_1k = r.flat;
        if (!walk_seen_key(model_keys, seen, "cost_per_1k_output_tokens"))
            r.m.price_out_per_1k = r.flat;
    }
    /* Absent: the input price (resolved in pricing.c, not copied here, so
     * that it follows cost_per_1k_tokens too). */
    r.m.has_cached_in_price = walk_seen_key(model_keys, seen, "cost_per_1k_cached_input_tokens");
    r.m.has_cache_write_price = walk_seen_key(model_keys, seen, "cost_per_1k_cache_write_tokens");
    if (!r.m.upstream_id) r.m.upstream_id = xstrdup(r.m.name);
    p->models = xrealloc(p->models, (p->n_models + 1) * sizeof *p->models);
    p->models[p->n_models++] = r.m;
}

static void parse_models(struct parse_ctx *cx, const struct cnode *v, const char *path,
                         void *base)
{
    walk_each_item(cx, v, path, on_model, base);
}

#define PROV(m) offsetof(struct config_provider, m)

static const struct key_spec credential_keys[] = {
    {.name = "api_key", .type = KT_SECRET, .offset = PROV(api_key)},
    {.name = "account_id", .type = KT_SECRET, .offset = PROV(account_id)},
    {.name = "api_token", .type = KT_SECRET, .offset = PROV(api_token)},
    {.name = NULL},
};

static const struct key_spec provider_keys[] = {
    {.name = "type", .type = KT_IGNORE},   /* read before the walk: it decides defaults */
    {.name = "preset", .type = KT_IGNORE}, /* likewise */
    {.name = "enabled", .type = KT_BOOL, .def = "true", .offset = PROV(enabled)},
    {.name = "priority", .type = KT_INT, .min = 0, .max = 1000000, .def = "100", .offset = PROV(priority)},
    {.name = "endpoint", .type = KT_STR, .offset = PROV(endpoint)},
    {.name = "endpoints", .type = KT_STRLIST, .offset = PROV(endpoints), .count_offset = PROV(n_endpoints)},
    {.name = "credentials", .type = KT_SECTION, .sub = credential_keys},
    {.name = "models", .type = KT_CUSTOM, .parse = parse_models},
    {.name = "timeout", .type = KT_DURATION, .min = 1, .max = 24 * HOUR_MS, .def = "60s", .offset = PROV(timeout_ms)},
    {.name = "max_concurrency", .type = KT_INT, .min = 0, .max = 1000000, .def = "0", .offset = PROV(max_concurrency)},
    {.name = "weight", .type = KT_INT, .min = 0, .max = 1000000, .def = "1", .offset = PROV(weight)},
    {.name = "max_tokens_default", .type = KT_INT, .min = 1, .max = 10000000, .def = "4096", .offset = PROV(max_tokens_default)},
    {.name = "tls_ca_file", .type = KT_STR, .offset = PROV(tls_ca_file)},
    {.name = "tls_insecure_skip_verify", .type = KT_BOOL, .def = "false", .offset = PROV(tls_insecure_skip_verify)},
    {.name = "discover_models", .type = KT_BOOL, .def = "false", .offset = PROV(discover_models)},
    {.name = "runtimes", .type = KT_IGNORE}, /* the standard's local runtimes list */
    {.name = NULL},
};

void config_provider_init(struct config_provider *p, const char *name, enum provider_type t)
{
    memset(p, 0, sizeof *p);
    walk_defaults(provider_keys, p);
    p->name = xstrdup(name);
    p->type = t;
    p->available = true;
}

void config_provider_cleanup(struct config_provider *p)
{
    free(p->name);
    free(p->endpoint);
    walk_free_strlist(&p->endpoints, &p->n_endpoints);
    free(p->api_key);
    free(p->account_id);
    free(p->api_token);
    free(p->unavailable_reason);
    free(p->tls_ca_file);
    free(p->preset);
    for (size_t i = 0; i < p->n_models; i++) {
        free(p->models[i].name);
        free(p->models[i].upstream_id);
    }
    free(p->models);
    memset(p, 0, sizeof *p);
}

static void set_unavailable(struct config_provider *p, char *reason)
{
    if (p->available) {
        p->available = false;
        p->unavailable_reason = reason;
    } else {
        free(reason);
    }
}

/* Checks one base URL and drops its trailing slashes. */
static void check_base_url(struct parse_ctx *cx, int line, const char *key, char *url)
{
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        ERR(cx, line, key, "'%s' is not a URL (expected http://... or https://...)", url);
        return;
    }
    size_t scheme = (size_t)(strstr(url, "://") + 3 - url);
    size_t n = strlen(url);
    while (n > scheme && url[n - 1] == '/') url[--n] = '\0';
    if (n == scheme) ERR(cx, line, key, "'%s' has no host", url);
}

/* `endpoints:`: normalised, `endpoint` (when given too) first, duplicates
 * dropped; endpoints[0] becomes `endpoint`. */
static void finish_endpoint_list(struct parse_ctx *cx, struct config_provider *p, const char *path)
{
    char *ek = walk_path_key(path, "endpoints");
    char **list = NULL;
    size_t n = 0;
    if (p->endpoint) {
        check_base_url(cx, p->line, ek, p->endpoint);
        list = xrealloc(list, (n + 1) * sizeof *list);
        list[n++] = xstrdup(p->endpoint);
    }
    for (size_t i = 0; i < p->n_endpoints; i++) {
        char *ip = walk_path_index(ek, i);
        check_base_url(cx, p->line, ip, p->endpoints[i]);
        free(ip);
        bool dup = false;
        for (size_t j = 0; j < n && !dup; j++) dup = strcmp(list[j], p->endpoints[i]) == 0;
        if (dup) continue;
        list = xrealloc(list, (n + 1) * sizeof *list);
        list[n++] = xstrdup(p->endpoints[i]);
    }
    walk_free_strlist(&p->endpoints, &p->n_endpoints);
    p->endpoints = list;
    p->n_endpoints = n;
    if (n == 0) ERR(cx, p->line, ek, "empty (list at least one base URL, or use endpoint)");
    else if (!p->endpoint) p->endpoint = xstrdup(list[0]);
    free(ek);
}

/* Endpoint default, shape and trailing slash. */
static void finish_endpoint(struct parse_ctx *cx, struct config_provider *p, const char *path,
                            const struct preset *pre, bool list_given)
{
    if (list_given) {
        finish_endpoint_list(cx, p, path);
        return;
    }
    char *ep = walk_path_key(path, "endpoint");
    if (!p->endpoint) {
        const char *def = pre ? pre->endpoint : config_default_endpoint(p->type);
        if (!def) {
            ERR(cx, p->line, ep, "missing (a %s provider needs its base URL)",
                provider_type_name(p->type));
            free(ep);
            return;
        }
        p->endpoint = xstrdup(def);
    }
    check_base_url(cx, p->line, ep, p->endpoint);
    free(ep);
}

/* Availability from credentials: unset ${VAR}s, required keys, presets. */
static void finish_credentials(struct parse_ctx *cx, struct config_provider *p,
                               const struct preset *pre, bool endpoint_given)
{
    if (cx->secret_reason) {
        set_unavailable(p, cx->secret_reason);
        cx->secret_reason = NULL;
    }
    const char *env = NULL;
    switch (p->type) {
    case PROVIDER_OPENAI:
    case PROVIDER_ANTHROPIC:
        if (p->api_key || !p->available) break;
        /* The well-known variable is only read for the well-known endpoint,
         * so a key is never sent somewhere its owner did not name. */
        if (pre) env = pre->env;
        else if (!endpoint_given)
            env = p->type == PROVIDER_OPENAI ? "OPENAI_API_KEY" : "ANTHROPIC_API_KEY";
        if (env) {
            const char *val = getenv(env);
            if (val && *val) p->api_key = xstrdup(val);
            else
                set_unavailable(p, xasprintf("credentials.api_key: environment variable %s is "
                                             "not set",
                                             env));
        } else {
            set_unavailable(p, xstrdup("credentials.api_key is not configured"));
        }
        break;
    case PROVIDER_CLOUDFLARE:
        if (!p->available) break;
        if (!p->account_id) set_unavailable(p, xstrdup("credentials.account_id is not configured"));
        else if (!p->api_token)
            set_unavailable(p, xstrdup("credentials.api_token is not configured"));
        break;
    case PROVIDER_LOCAL:
    case PROVIDER_OCF:
    case PROVIDER_MESH:
        break;
    }
}

static void parse_one_provider(struct parse_ctx *cx, const struct cnode_pair *pr,
                               const char *path)
{
    struct config *c = cx->cfg;
    const struct cnode *v = pr->value;
    if (!walk_is_null(v) && v->kind != CNODE_MAP) {
        ERR(cx, v->line, path, "expected a map, found %s", walk_kind_name(v));
        return;
    }
    enum provider_type t = PROVIDER_OPENAI;
    bool ok = true;
    const struct cnode *tv = cnode_get(v, "type");
    const char *ts = tv && tv->kind == CNODE_SCALAR && !tv->is_null ? tv->text : NULL;
    char *tp = walk_path_key(path, "type");
    if (tv && !walk_is_null(tv) && tv->kind != CNODE_SCALAR) {
        ERR(cx, tv->line, tp, "expected one of %s, found %s", type_list, walk_kind_name(tv));
        ok = false;
    } else if (ts) {
        if (!provider_type_parse(ts, &t)) {
            ERR(cx, tv->line, tp, "unknown value '%s' (expected %s)", ts, type_list);
            ok = false;
        }
    } else if (!provider_type_parse(pr->key, &t)) {
        ERR(cx, pr->line, tp, "missing (the key '%s' is not a type name; expected %s)", pr->key,
            type_list);
        ok = false;
    }
    free(tp);

    c->providers = xrealloc(c->providers, (c->n_providers + 1) * sizeof *c->providers);
    struct config_provider *p = &c->providers[c->n_providers++];
    config_provider_init(p, pr->key, t);
    p->line = pr->line;

    const struct preset *pre = NULL;
    const struct cnode *pv = cnode_get(v, "preset");
    if (pv && !walk_is_null(pv)) {
        char *pp = walk_path_key(path, "preset");
        if (pv->kind != CNODE_SCALAR) {
            ERR(cx, pv->line, pp, "expected a preset name, found %s", walk_kind_name(pv));
        } else if (t != PROVIDER_OPENAI) {
            ERR(cx, pv->line, pp, "presets apply to type openai only");
        } else {
            for (pre = presets; pre->name && strcmp(pre->name, pv->text) != 0; pre++) {}
            if (!pre->name) {
                ERR(cx, pv->line, pp,
                    "unknown value '%s' (expected groq, together, deepseek, mistral, fireworks, "
                    "cerebras, openrouter, gemini)",
                    pv->text);
                pre = NULL;
            } else {
                p->preset = xstrdup(pre->name);
            }
        }
        free(pp);
    }

    cx->reason_skip = strlen(path) + 1;
    free(cx->secret_reason);
    cx->secret_reason = NULL;
    uint64_t seen = walk_map(cx, v, path, provider_keys, p);
    if (!ok) {
        free(cx->secret_reason);
        cx->secret_reason = NULL;
        return;
    }
    bool list_given = walk_seen_key(provider_keys, seen, "endpoints");
    finish_endpoint(cx, p, path, pre, list_given);
    finish_credentials(cx, p, pre, list_given || walk_seen_key(provider_keys, seen, "endpoint"));
    if (!p->enabled) {
        free(p->unavailable_reason);
        p->available = false;
        p->unavailable_reason = xstrdup("disabled");
    }
}

static void parse_providers(struct parse_ctx *cx, const struct cnode *v, const char *path,
                            void *base)
{
    if (walk_is_null(v)) return;
    if (v->kind != CNODE_MAP) {
        ERR(cx, v->line, path, "expected a map of providers by name, found %s", walk_kind_name(v));
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        char *pp = walk_path_key(path, v->pairs[i].key);
        parse_one_provider(cx, &v->pairs[i], pp);
        free(pp);
    }
}

/* ---- routing ---- */

static void parse_aliases(struct parse_ctx *cx, const struct cnode *v, const char *path,
                          void *base)
{
    struct config *c = base;
    if (walk_is_null(v)) return;
    if (v->kind != CNODE_MAP) {
        ERR(cx, v->line, path, "expected a map of alias: model, found %s", walk_kind_name(v));
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        const struct cnode_pair *pr = &v->pairs[i];
        char *ap = walk_path_key(path, pr->key);
        const char *t = walk_scalar_text(cx, pr->value, ap, "a model name");
        if (t && *t) {
            c->routing.aliases =
                xrealloc(c->routing.aliases, (c->routing.n_aliases + 1) * sizeof(struct config_alias));
            c->routing.aliases[c->routing.n_aliases].name = xstrdup(pr->key);
            c->routing.aliases[c->routing.n_aliases].target = xstrdup(t);
            c->routing.n_aliases++;
        } else if (pr->value->kind == CNODE_SCALAR) {
            ERR(cx, pr->value->line, ap, "missing target model");
        }
        free(ap);
    }
}

static void on_rule(struct parse_ctx *cx, const struct cnode *m, const char *path, void *base)
{
    struct config_policy *pol = base;
    struct config_rule r = {.line = m->line};
    struct rule_row {
        char *if_expr, *then_expr, *else_expr;
    } row = {0};
    static const struct key_spec keys[] = {
        {.name = "if", .type = KT_STR, .offset = AT(struct rule_row, if_expr)},
        {.name = "then", .type = KT_STR, .offset = AT(struct rule_row, then_expr)},
        {.name = "else", .type = KT_STR, .offset = AT(struct rule_row, else_expr)},
        {.name = NULL},
    };
    walk_map(cx, m, path, keys, &row);
    const struct cnode *tv = cnode_get(m, row.else_expr ? "else" : "then");
    r.then_line = tv ? tv->line : m->line;
    if (row.else_expr && !row.if_expr && !row.then_expr) {
        r.then_expr = row.else_expr;
    } else if (row.if_expr && row.then_expr && !row.else_expr) {
        r.if_expr = row.if_expr;
        r.then_expr = row.then_expr;
    } else {
        ERR(cx, m->line, path, "expected {if: ..., then: ...} or {else: ...}");
        free(row.if_expr);
        free(row.then_expr);
        free(row.else_expr);
        return;
    }
    pol->rules = xrealloc(pol->rules, (pol->n_rules + 1) * sizeof r);
    pol->rules[pol->n_rules++] = r;
}

static void parse_rules(struct parse_ctx *cx, const struct cnode *v, const char *path,
                        void *base)
{
    walk_each_item(cx, v, path, on_rule, base);
}

static const struct key_spec policy_keys[] = {
    {.name = "name", .type = KT_STR, .offset = AT(struct config_policy, name)},
    {.name = "type", .type = KT_STR, .offset = AT(struct config_policy, type)},
    {.name = "rules", .type = KT_CUSTOM, .parse = parse_rules},
    {.name = NULL},
};

/* The standard's short form (its section 7.1): a list item that is itself
 * a rule joins the bare policy started by the item before it, or starts one. */
static void on_bare_rule(struct parse_ctx *cx, const struct cnode *m, const char *path,
                         struct config *c)
{
    size_t item = 0;
    const char *open = strrchr(path, '[');
    if (open) item = (size_t)strtoull(open + 1, NULL, 10);
    struct config_policy *last =
        c->routing.n_policies ? &c->routing.policies[c->routing.n_policies - 1] : NULL;
    if (!last || !last->bare || last->item + last->n_rules != item) {
        c->routing.policies =
            xrealloc(c->routing.policies, (c->routing.n_policies + 1) * sizeof *last);
        last = &c->routing.policies[c->routing.n_policies++];
        *last = (struct config_policy){.name = xasprintf("policies[%zu]", item), .item = item,
                                       .bare = true};
    }
    size_t before = last->n_rules;
    on_rule(cx, m, path, last);
    if (last->n_rules == before) {
        /* a malformed rule: keep the item numbering of the rules after it */
        last->rules = xrealloc(last->rules, (last->n_rules + 1) * sizeof *last->rules);
        last->rules[last->n_rules++] = (struct config_rule){.line = m->line};
    }
}

static void on_policy(struct parse_ctx *cx, const struct cnode *m, const char *path, void *base)
{
    struct config *c = base;
    if ((cnode_get(m, "if") || cnode_get(m, "else")) && !cnode_get(m, "rules")) {
        on_bare_rule(cx, m, path, c);
        return;
    }
    struct config_policy pol = {0};
    const char *open = strrchr(path, '[');
    if (open) pol.item = (size_t)strtoull(open + 1, NULL, 10);
    walk_map(cx, m, path, policy_keys, &pol);
    if (!pol.name) {
        ERR(cx, m->line, path, "name: missing (every policy needs a name)");
        pol.name = xstrdup("");
    }
    c->routing.policies =
        xrealloc(c->routing.policies, (c->routing.n_policies + 1) * sizeof pol);
    c->routing.policies[c->routing.n_policies++] = pol;
}

static void parse_policies(struct parse_ctx *cx, const struct cnode *v, const char *path,
                           void *base)
{
    walk_each_item(cx, v, path, on_policy, base);
}

static const struct key_spec failover_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "true", .offset = CFG(routing.failover_enabled)},
    {.name = "max_retries", .type = KT_INT, .min = 0, .max = 20, .def = "2", .offset = CFG(routing.max_retries)},
    {.name = "retry_delay", .type = KT_DURATION, .min = 0, .max = HOUR_MS, .def = "100ms", .offset = CFG(routing.retry_delay_ms)},
    {.name = "fallback_chain", .type = KT_STRLIST, .offset = CFG(routing.fallback_chain),
     .count_offset = CFG(routing.n_fallback_chain)},
    {.name = NULL},
};

static const struct key_spec lb_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "false", .offset = CFG(routing.lb_enabled)},
    {.name = "strategy", .type = KT_STRATEGY, .def = "round_robin", .offset = CFG(routing.lb_strategy)},
    {.name = "health_aware", .type = KT_BOOL, .def = "true", .offset = CFG(routing.health_aware)},
    {.name = "unhealthy_threshold", .type = KT_RATIO, .def = "0.5", .offset = CFG(routing.unhealthy_threshold)},
    {.name = "health_check_interval", .type = KT_DURATION, .min = 0, .max = 24 * HOUR_MS, .def = "30s", .offset = CFG(routing.health_check_interval_ms)},
    {.name = "health_check_timeout", .type = KT_DURATION, .min = 1, .max = HOUR_MS, .def = "5s", .offset = CFG(routing.health_check_timeout_ms)},
    {.name = "health_check_failures", .type = KT_INT, .min = 1, .max = 100, .def = "2", .offset = CFG(routing.health_check_failures)},
    {.name = NULL},
};

static void parse_tiers(struct parse_ctx *cx, const struct cnode *v, const char *path, void *base)
{
    struct config *c = base;
    if (walk_is_null(v)) return;
    if (v->kind != CNODE_MAP) {
        ERR(cx, v->line, path, "expected a map of tier: model, found %s", walk_kind_name(v));
        return;
    }
    static const char *const names[] = {"cheap",   "balanced",    "premium",  "free",
                                        "local",   "trivial",     "operational",
                                        "standard", "complex",    "deep"};
    for (size_t i = 0; i < v->n; i++) {
        const struct cnode_pair *pr = &v->pairs[i];
        char *tp = walk_path_key(path, pr->key);
        size_t k = 0, nn = sizeof names / sizeof names[0];
        while (k < nn && strcmp(names[k], pr->key) != 0) k++;
        const char *t = walk_scalar_text(cx, pr->value, tp, "a model name");
        if (k == nn) {
            ERR(cx, pr->line, tp, "unknown tier (expected cheap, balanced, premium, free, local, "
                                  "trivial, operational, standard, complex or deep)");
        } else if (t && *t) {
            c->routing.tiers =
                xrealloc(c->routing.tiers, (c->routing.n_tiers + 1) * sizeof *c->routing.tiers);
            c->routing.tiers[c->routing.n_tiers].name = xstrdup(pr->key);
            c->routing.tiers[c->routing.n_tiers].model = xstrdup(t);
            c->routing.n_tiers++;
        } else if (pr->value->kind == CNODE_SCALAR) {
            ERR(cx, pr->value->line, tp, "missing model");
        }
        free(tp);
    }
}

/* routing.hedge: opt-in hedged requests (api/proxy.c). */
static const struct key_spec hedge_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "false", .offset = CFG(routing.hedge_enabled)},
    {.name = "delay", .type = KT_DURATION, .min = 0, .max = HOUR_MS, .def = "0", .offset = CFG(routing.hedge_delay_ms)},
    {.name = "models", .type = KT_STRLIST, .offset = CFG(routing.hedge_models),
     .count_offset = CFG(routing.n_hedge_models)},
    {.name = NULL},
};

static const struct key_spec routing_keys[] = {
    {.name = "strategy", .type = KT_STRATEGY, .def = "cost_optimized", .offset = CFG(routing.strategy)},
    {.name = "aliases", .type = KT_CUSTOM, .parse = parse_aliases},
    {.name = "policies", .type = KT_CUSTOM, .parse = parse_policies},
    {.name = "failover", .type = KT_SECTION, .sub = failover_keys},
    {.name = "load_balancing", .type = KT_SECTION, .sub = lb_keys},
    {.name = "auto_tier", .type = KT_BOOL, .def = "false", .offset = CFG(routing.auto_tier)},
    {.name = "tiers", .type = KT_CUSTOM, .parse = parse_tiers},
    {.name = "hedge", .type = KT_SECTION, .sub = hedge_keys},
    {.name = NULL},
};

/* ---- budget ---- */

#define DEFAULT_SPOOL_DB "data/ledger-spool.db"
#define COST_DB_FORMS "sqlite:///path or postgres://USER:PASS@HOST:PORT/DB"

/* A SQLite location: "sqlite:///data/costs.db" is the relative path
 * data/costs.db; "sqlite:////var/lib/costs.db" is the absolute
 * /var/lib/costs.db; a value without a scheme is taken as a path as
 * written. Returns the path (inside `t`), or NULL when reported. */
static const char *sqlite_location(struct parse_ctx *cx, const struct cnode *v, const char *path,
                                   const char *t, const char *expected)
{
    const char *p = t, *sep = strstr(t, "://");
    if (strncmp(t, "sqlite:///", 10) == 0) {
        p = t + 10;
    } else if (sep) {
        /* The scheme alone is repeated (what follows may hold a password),
         * and only when it looks like one. */
        size_t n = (size_t)(sep - t);
        bool plain = n > 0 && n <= 16;
        for (size_t i = 0; plain && i < n; i++)
            plain = isalnum((unsigned char)t[i]) || t[i] == '+' || t[i] == '-' || t[i] == '.';
        if (plain) ERR(cx, v->line, path, "unsupported database '%.*s://' (expected %s)", (int)n, t,
                       expected);
        else ERR(cx, v->line, path, "unsupported database URL (expected %s)", expected);
        return NULL;
    }
    if (!*p) {
        ERR(cx, v->line, path, "empty path (expected %s)", expected);
        return NULL;
    }
    return p;
}

/* cost_db: a SQLite location, or "postgres://USER:PASS@HOST:PORT/DB"
 * (postgresql:// too): the ledger in PostgreSQL, shared by every node,
 * whose local SQLite file (the spool, the managed keys) is spool_db's. The
 * URL is never repeated in a message: it holds the password. */
static void parse_cost_db(struct parse_ctx *cx, const struct cnode *v, const char *path,
                          void *base)
{
    struct config *c = base;
    const char *t = walk_scalar_text(cx, v, path, COST_DB_FORMS);
    if (!t) return;
    if (strncmp(t, "postgres://", 11) == 0 || strncmp(t, "postgresql://", 13) == 0) {
        if (!dburl_unambiguous(t)) {
            ERR(cx, v->line, path, "%s", DBURL_AMBIGUOUS_MESSAGE);
            return;
        }
        free(c->budget.cost_db_url);
        c->budget.cost_db_url = xstrdup(t);
        free(c->budget.cost_db_path);
        c->budget.cost_db_path =
            xstrdup(c->budget.spool_db_path ? c->budget.spool_db_path : DEFAULT_SPOOL_DB);
        return;
    }
    const char *p = sqlite_location(cx, v, path, t, COST_DB_FORMS);
    if (!p) return;
    free(c->budget.cost_db_url);
    c->budget.cost_db_url = NULL;
    free(c->budget.cost_db_path);
    c->budget.cost_db_path = xstrdup(p);
}

/* spool_db: the local SQLite file of a PostgreSQL ledger (unused with a
 * SQLite cost_db). Either key may come first. */
static void parse_spool_db(struct parse_ctx *cx, const struct cnode *v, const char *path,
                           void *base)
{
    struct config *c = base;
    const char *t = walk_scalar_text(cx, v, path, "sqlite:///path");
    if (!t) return;
    const char *p = sqlite_location(cx, v, path, t, "sqlite:///path");
    if (!p) return;
    free(c->budget.spool_db_path);
    c->budget.spool_db_path = xstrdup(p);
    if (c->budget.cost_db_url) {
        free(c->budget.cost_db_path);
        c->budget.cost_db_path = xstrdup(p);
    }
}

static const struct key_spec alert_keys[] = {
    {.name = "threshold", .type = KT_INT, .min = 1, .max = 100, .def = NULL, .offset = AT(struct config_alert, threshold_percent)},
    {.name = "action", .type = KT_ALERT_ACTION, .def = "log", .offset = AT(struct config_alert, action)},
    {.name = "webhook", .type = KT_STR, .offset = AT(struct config_alert, webhook)},
    {.name = NULL},
};

static void on_alert(struct parse_ctx *cx, const struct cnode *m, const char *path, void *base)
{
    struct config *c = base;
    struct config_alert a = {0};
    walk_defaults(alert_keys, &a);
    uint64_t seen = walk_map(cx, m, path, alert_keys, &a);
    if (!walk_seen_key(alert_keys, seen, "threshold")) {
        ERR(cx, m->line, path, "threshold: missing (expected a percent from 1 to 100)");
        free(a.webhook);
        return;
    }
    c->budget.alerts = xrealloc(c->budget.alerts, (c->budget.n_alerts + 1) * sizeof a);
    c->budget.alerts[c->budget.n_alerts++] = a;
}

static void parse_alerts(struct parse_ctx *cx, const struct cnode *v, const char *path,
                         void *base)
{
    walk_each_item(cx, v, path, on_alert, base);
}

static const struct key_spec tenant_keys[] = {
    {.name = "name", .type = KT_STR, .offset = AT(struct config_tenant, name)},
    {.name = "daily_limit", .type = KT_MONEY, .offset = AT(struct config_tenant, daily_limit)},
    {.name = "monthly_limit", .type = KT_MONEY, .offset = AT(struct config_tenant, monthly_limit)},
    {.name = NULL},
};

static void on_tenant(struct parse_ctx *cx, const struct cnode *m, const char *path, void *base)
{
    struct config *c = base;
    struct config_tenant t = {0};
    walk_map(cx, m, path, tenant_keys, &t);
    if (!t.name || !*t.name) {
        ERR(cx, m->line, path, "name: missing (expected the tenant's name)");
        free(t.name);
        return;
    }
    c->budget.tenants = xrealloc(c->budget.tenants, (c->budget.n_tenants + 1) * sizeof t);
    c->budget.tenants[c->budget.n_tenants++] = t;
}

static void parse_tenants(struct parse_ctx *cx, const struct cnode *v, const char *path,
                          void *base)
{
    walk_each_item(cx, v, path, on_tenant, base);
}

static const struct key_spec budget_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "true", .offset = CFG(budget.enabled)},
    {.name = "daily_limit", .type = KT_MONEY, .offset = CFG(budget.daily_limit)},
    {.name = "monthly_limit", .type = KT_MONEY, .offset = CFG(budget.monthly_limit)},
    {.name = "track_costs", .type = KT_BOOL, .def = "true", .offset = CFG(budget.track_costs)},
    {.name = "cost_db", .type = KT_CUSTOM, .def = "sqlite:///data/costs.db", .parse = parse_cost_db},
    {.name = "spool_db", .type = KT_CUSTOM, .def = "sqlite:///" DEFAULT_SPOOL_DB, .parse = parse_spool_db},
    {.name = "alerts", .type = KT_CUSTOM, .parse = parse_alerts},
    {.name = "tenants", .type = KT_CUSTOM, .parse = parse_tenants},
    {.name = NULL},
};

/* ---- observability ---- */

static const struct key_spec logging_keys[] = {
    {.name = "level", .type = KT_LOG_LEVEL, .def = "info", .offset = CFG(observability.log_level)},
    {.name = "format", .type = KT_LOG_FORMAT, .def = "json", .offset = CFG(observability.log_format)},
    {.name = "output", .type = KT_STR, .def = "stdout", .offset = CFG(observability.log_output)},
    {.name = NULL},
};

/* The metric family groups of obs/metrics.h (kept here so config/ needs
 * no obs/ header): a name outside it is a warning, and exports nothing. */
static const char *const metric_groups[] = {
    "request_count", "request_duration", "provider_errors", "cost_per_request", "tokens_processed",
    "ttft", "streams", "providers", "budget", "rate_limits", "ledger", "tracing", "store", "cache",
    "context", "tls", NULL};

static void parse_metrics_collect(struct parse_ctx *cx, const struct cnode *v, const char *path,
                                  void *base)
{
    struct config *c = base;
    walk_strlist(cx, v, path, &c->observability.metrics_collect,
                  &c->observability.n_metrics_collect);
    for (size_t i = 0; i < c->observability.n_metrics_collect; i++) {
        const char *g = c->observability.metrics_collect[i];
        bool known = false;
        for (int j = 0; metric_groups[j] && !known; j++) known = strcmp(metric_groups[j], g) == 0;
        if (!known)
            WARN(cx, v->line, path, "unknown metric group '%s' (expected request_count, "
                 "request_duration, provider_errors, cost_per_request, tokens_processed, ttft, "
                 "streams, providers, budget, rate_limits, ledger, tracing)", g);
    }
}

static void parse_tracing_endpoint(struct parse_ctx *cx, const struct cnode *v, const char *path,
                                   void *base)
{
    struct config *c = base;
    const char *t = walk_scalar_text(cx, v, path, "an http:// URL");
    if (!t) return;
    if (*t && strncmp(t, "http://", 7) != 0)
        WARN(cx, v->line, path, "'%s': the OTLP exporter speaks plain http:// only (use a local "
             "collector); spans will be dropped", t);
    free(c->observability.tracing_endpoint);
    c->observability.tracing_endpoint = xstrdup(t);
}

static const struct key_spec metrics_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "true", .offset = CFG(observability.metrics_enabled)},
    {.name = "prometheus_port", .type = KT_INT, .min = 0, .max = 65535, .def = "0", .offset = CFG(observability.prometheus_port)},
    {.name = "collect", .type = KT_CUSTOM, .parse = parse_metrics_collect},
    {.name = "tls", .type = KT_SECTION, .sub = metrics_tls_keys},
    {.name = NULL},
};

static const struct key_spec tracing_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "false", .offset = CFG(observability.tracing_enabled)},
    {.name = "provider", .type = KT_STR, .offset = CFG(observability.tracing_provider)},
    {.name = "endpoint", .type = KT_CUSTOM, .parse = parse_tracing_endpoint},
    {.name = "service_name", .type = KT_STR, .def = "aiproxy", .offset = CFG(observability.tracing_service_name)},
    {.name = "sample_ratio", .type = KT_RATIO, .def = "1", .offset = CFG(observability.tracing_sample_ratio)},
    {.name = NULL},
};

static const struct key_spec observability_keys[] = {
    {.name = "logging", .type = KT_SECTION, .sub = logging_keys},
    {.name = "metrics", .type = KT_SECTION, .sub = metrics_keys},
    {.name = "tracing", .type = KT_SECTION, .sub = tracing_keys},
    {.name = NULL},
};

/* ---- top level ---- */

static const struct key_spec top_keys[] = {
    {.name = "node", .type = KT_SECTION, .sub = node_keys},
    {.name = "server", .type = KT_SECTION, .sub = server_keys},
    {.name = "providers", .type = KT_CUSTOM, .parse = parse_providers},
    {.name = "routing", .type = KT_SECTION, .sub = routing_keys},
    {.name = "budget", .type = KT_SECTION, .sub = budget_keys},
    {.name = "observability", .type = KT_SECTION, .sub = observability_keys},
    {.name = "security", .type = KT_SECTION, .sub = config_security_keys},
    {.name = "cluster", .type = KT_SECTION, .sub = config_cluster_keys},
    {.name = "cache", .type = KT_SECTION, .sub = config_cache_keys},
    {.name = "context", .type = KT_SECTION, .sub = config_context_keys},
    {.name = "responses", .type = KT_SECTION, .sub = config_responses_keys},
    {.name = NULL},
};

struct config *config_new_defaults(void)
{
    static atomic_uint_fast64_t generations;
    struct config *c = xcalloc(1, sizeof *c);
    atomic_init(&c->refcount, 1);
    c->generation = atomic_fetch_add(&generations, 1) + 1;
    walk_defaults(top_keys, c);
    return c;
}

/* node.mesh: a secret whenever clients must authenticate (a peer trusts the
 * mesh, so an open mesh listener would bypass every key); TLS all or
 * nothing; a listen address of the right shape. */
static void validate_mesh(struct parse_ctx *cx, const struct cnode *root)
{
    struct config *c = cx->cfg;
    const struct cnode *mesh = cnode_get(cnode_get(root, "node"), "mesh");
    int line = mesh ? mesh->line : root->line;
    if (c->node.mesh_secret && !c->node.mesh_secret[0]) {
        free(c->node.mesh_secret);
        c->node.mesh_secret = NULL;
    }
    if (!c->node.mesh_enabled) return;
    const struct cnode *sec = mesh ? cnode_get(mesh, "secret") : NULL;
    if (c->security.auth_enabled && !c->node.mesh_secret && sec) {
        /* Written as ${VAR} with VAR unset, like a provider's credential:
         * the config loads, the mesh stays off until the secret is set. */
        WARN(cx, sec->line, "node.mesh.secret",
             "is empty (its variable is unset?): mesh federation is off until it is set");
        c->node.mesh_enabled = false;
        return;
    }
    if (c->security.auth_enabled && !c->node.mesh_secret)
        ERR(cx, line, "node.mesh.secret",
            "missing (expected a shared secret every node holds: with security.auth enabled, "
            "peers must authenticate to each other)");
    const struct cnode *tls = mesh ? cnode_get(mesh, "tls") : NULL;
    int have = !!c->node.mesh_tls_cert + !!c->node.mesh_tls_key + !!c->node.mesh_tls_ca;
    if (have && have != 3)
        ERR(cx, tls ? tls->line : line, "node.mesh.tls",
            "incomplete (expected cert_file, key_file and ca_file together: mutual TLS)");
    if (c->node.mesh_listen_addr &&
        !config_parse_listen(c->node.mesh_listen_addr, &c->node.mesh_listen_host,
                             &c->node.mesh_listen_port)) {
        const struct cnode *la = mesh ? cnode_get(mesh, "listen_addr") : NULL;
        ERR(cx, la ? la->line : line, "node.mesh.listen_addr", "'%s' is not host:port",
            c->node.mesh_listen_addr);
    }
    for (const char *q = c->node.mesh_secret; q && *q; q++)
        if ((unsigned char)*q < 0x20 || *q == 0x7f) {
            /* it goes into a header line of every heartbeat and request */
            ERR(cx, sec ? sec->line : line, "node.mesh.secret", "holds a control character");
            break;
        }
    for (size_t i = 0; i < c->node.n_peers; i++) {
        char *host = NULL;
        int port = 0;
        if (!config_parse_listen(c->node.peers[i].addr, &host, &port) || port == 0) {
            char *p = walk_path_index("node.mesh.peers", i);
            ERR(cx, line, p, "addr '%s' is not host:port", c->node.peers[i].addr);
            free(p);
        }
        free(host);
    }
}

/* One file of a listener's TLS: readable now (the listener loads it at
 * start and on every reload; its contents are checked then). */
static void check_tls_file(struct parse_ctx *cx, const struct cnode *sect, const char *path,
                           const char *key, char **file)
{
    if (*file && !**file) { /* ${VAR} unset: as if absent */
        free(*file);
        *file = NULL;
    }
    if (!*file) return;
    const struct cnode *k = cnode_get(sect, key);
    char *kp = walk_path_key(path, key);
    int fd = open(*file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        ERR(cx, k ? k->line : sect->line, kp, "cannot read '%s': %s (expected a readable PEM file)",
            *file, strerror(errno));
    else
        close(fd);
    free(kp);
}

/* A listener's tls section: cert_file and key_file together, a client CA
 * only with them, every file readable. */
static void validate_tls(struct parse_ctx *cx, const struct cnode *sect, const char *path,
                         struct config_tls *t)
{
    if (!sect) return;
    check_tls_file(cx, sect, path, "cert_file", &t->cert_file);
    check_tls_file(cx, sect, path, "key_file", &t->key_file);
    check_tls_file(cx, sect, path, "client_ca_file", &t->client_ca_file);
    if (!t->cert_file != !t->key_file) {
        char *kp = walk_path_key(path, t->cert_file ? "key_file" : "cert_file");
        ERR(cx, sect->line, kp, "missing (expected cert_file and key_file together)");
        free(kp);
    } else if (t->client_ca_file && !t->cert_file) {
        char *kp = walk_path_key(path, "client_ca_file");
        ERR(cx, sect->line, kp, "needs cert_file and key_file (mutual TLS is TLS first)");
        free(kp);
    }
}

/* Checks that need the whole document (cross-references). */
static void validate(struct parse_ctx *cx, const struct cnode *root)
{
    struct config *c = cx->cfg;
    const struct cnode *fc = cnode_get(cnode_get(cnode_get(root, "routing"), "failover"),
                                       "fallback_chain");
    for (size_t i = 0; i < c->routing.n_fallback_chain; i++) {
        const char *n = c->routing.fallback_chain[i];
        if (strcmp(n, "mesh_peer") == 0 || config_find_provider(c, n)) continue;
        int line = fc && fc->kind == CNODE_SEQ && i < fc->n ? fc->items[i]->line : fc ? fc->line : 0;
        char *p = walk_path_index("routing.failover.fallback_chain", i);
        WARN(cx, line, p, "'%s' is not a provider (nor mesh_peer)", n);
        free(p);
    }
    config_validate_jwt(cx, root);
    if (c->security.auth_enabled && c->security.n_api_keys == 0 && !c->security.auth_jwt)
        WARN(cx, root->line, "security.auth", "enabled with no api_keys: every request is refused");
    validate_mesh(cx, root);
    validate_tls(cx, cnode_get(cnode_get(root, "server"), "tls"), "server.tls", &c->server.tls);
    validate_tls(cx, cnode_get(cnode_get(cnode_get(root, "observability"), "metrics"), "tls"),
                 "observability.metrics.tls", &c->observability.metrics_tls);
    if (c->cluster.redis_url && !*c->cluster.redis_url) {
        free(c->cluster.redis_url);
        c->cluster.redis_url = NULL;
    }
    struct redis_url ru;
    char why[200];
    if (c->cluster.redis_url) {
        if (redis_url_parse(c->cluster.redis_url, &ru, why, sizeof why) == 0) {
            redis_url_free(&ru);
        } else {
            const struct cnode *un = cnode_get(cnode_get(cnode_get(root, "cluster"), "redis"), "url");
            /* (the reason never repeats the URL: it may hold a password) */
            ERR(cx, un ? un->line : root->line, "cluster.redis.url", "%s", why);
        }
    }
}

/* cache: a redis backend needs a Redis (cluster.redis.url, else
 * cache.redis.url, parsed here so that a bad one names its line). */
static void validate_cache(struct parse_ctx *cx, const struct cnode *root)
{
    struct config *c = cx->cfg;
    const struct cnode *cache = cnode_get(root, "cache");
    if (c->cache.redis_url && !*c->cache.redis_url) {
        free(c->cache.redis_url);
        c->cache.redis_url = NULL;
    }
    if (c->cache.redis_url) {
        struct redis_url ru;
        char why[200];
        if (redis_url_parse(c->cache.redis_url, &ru, why, sizeof why) == 0) {
            redis_url_free(&ru);
        } else {
            const struct cnode *un = cnode_get(cnode_get(cache, "redis"), "url");
            ERR(cx, un ? un->line : root->line, "cache.redis.url", "%s", why);
        }
    }
    if (c->cache.enabled && c->cache.backend_redis && !c->cluster.redis_url && !c->cache.redis_url) {
        const struct cnode *b = cnode_get(cache, "backend");
        ERR(cx, b ? b->line : root->line, "cache.backend",
            "redis needs a Redis: set cluster.redis.url (shared with the cluster) or "
            "cache.redis.url");
    }
    if (c->cache.enabled && c->cache.semantic.enabled &&
        (!c->cache.semantic.embedding_model || !*c->cache.semantic.embedding_model)) {
        const struct cnode *sem = cnode_get(cache, "semantic");
        ERR(cx, sem ? sem->line : root->line, "cache.semantic.embedding_model",
            "missing (expected a model this gateway serves with embeddings)");
    }
}

bool config_apply_tree(struct config *c, const struct cnode *root, const char *file,
                       struct diag_list *diags)
{
    size_t errors = diags->errors;
    struct parse_ctx cx = {.file = file, .diags = diags, .cfg = c};
    if (root->kind != CNODE_MAP) {
        diag_list_addf(diags, DIAG_ERROR,
                       "%s:%d: the top level must be a map of sections (node, server, "
                       "providers, routing, budget, observability, security)",
                       file, root->line);
        return false;
    }
    walk_map(&cx, root, "", top_keys, c);
    free(cx.secret_reason);
    validate(&cx, root);
    validate_cache(&cx, root);
    return diags->errors == errors;
}
