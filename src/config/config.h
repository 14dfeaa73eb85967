/* config: the immutable, reference-counted configuration snapshot (SPEC
 * section 2) and the loader that builds it from YAML or JSON text, from a
 * file, or from the built-in defaults. A request keeps the snapshot it
 * started with; reload builds a new one and swaps a pointer. */
#ifndef AIPROXY_CONFIG_CONFIG_H
#define AIPROXY_CONFIG_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/money.h"

/* ---- diagnostics ---- */

enum diag_severity { DIAG_WARNING, DIAG_ERROR };

/* One message, already formatted as
 * "FILE:LINE: key.path: what was wrong (expected ...)". */
struct diag {
    enum diag_severity severity;
    char *text;
};

struct diag_list {
    struct diag *items;
    size_t count, cap;
    size_t errors; /* how many items are DIAG_ERROR */
};

void diag_list_cleanup(struct diag_list *d);
/* Prints every message to `out`, one per line, prefixed "error: " or "warning: ". */
void diag_list_print(const struct diag_list *d, FILE *out);
/* Appends one message (printf-style; the caller formats the
 * "FILE:LINE: key: ..." prefix) and counts it when it is an error. */
void diag_list_addf(struct diag_list *d, enum diag_severity s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- the snapshot ---- */

enum provider_type {
    PROVIDER_OPENAI,
    PROVIDER_ANTHROPIC,
    PROVIDER_CLOUDFLARE,
    PROVIDER_LOCAL,
    PROVIDER_OCF,
    /* A mesh peer seen as a provider (mesh/view.h); never in a config file. */
    PROVIDER_MESH,
};
const char *provider_type_name(enum provider_type t);

/* Model capabilities, from a model's `capabilities` list. */
enum {
    CAP_TEXT = 1u << 0,       /* text-generation (and chat) */
    CAP_VISION = 1u << 1,     /* vision */
    CAP_EMBEDDINGS = 1u << 2, /* embeddings */
    CAP_CODE = 1u << 3,       /* code-generation */
    CAP_IMAGE_GEN = 1u << 4,  /* text-to-image */
    CAP_TOOLS = 1u << 5,      /* tools / function-calling */
    CAP_IMAGE_CLASS = 1u << 6 /* image-classification */
};

struct config_model {
    char *name;        /* what clients ask for */
    char *upstream_id; /* openai_model / anthropic_model / ... ; defaults to name */
    unsigned capabilities; /* CAP_* bits; CAP_TEXT when the list is absent */
    bool capabilities_explicit; /* a `capabilities` list was given */
    /* Prices in nano-dollars. When only cost_per_1k_tokens is given, both
     * input and output prices equal it. */
    nanos_t price_in_per_1k;
    nanos_t price_out_per_1k;
    nanos_t price_per_generation;
    /* Prompt caching (SPEC section 9): input tokens read from the
     * provider's prompt cache, and input tokens written to it. A price
     * whose has_* flag is false is the input price (pricing.h), so that a
     * model built anywhere with memset(0) never prices cached tokens free. */
    nanos_t price_cached_in_per_1k;
    nanos_t price_cache_write_per_1k;
    bool has_cached_in_price;
    bool has_cache_write_price;
    int line; /* where it was defined, for messages */
};

struct config_provider {
    char *name; /* the key in the providers map */
    enum provider_type type;
    bool enabled;
    int priority; /* lower is tried first; default 100 */
    char *endpoint; /* base URL, no trailing slash; the first of `endpoints` */
    /* `endpoints:` (several base URLs serving the same models, e.g. vLLM
     * replicas): endpoints[0] == endpoint. n_endpoints is 0 when the key is
     * absent; the router spreads over them when there are two or more. */
    char **endpoints;
    size_t n_endpoints;
    char *api_key;    /* credentials.api_key, NULL when absent */
    char *account_id; /* cloudflare */
    char *api_token;  /* cloudflare */
    /* false when credentials are missing (a ${VAR} was unset) or the
     * provider is disabled; `unavailable_reason` then says why. */
    bool available;
    char *unavailable_reason;
    int64_t timeout_ms;  /* one attempt's deadline, default 60000 */
    int max_concurrency; /* 0 = unlimited */
    int weight;          /* default 1 */
    int max_tokens_default; /* default 4096 */
    char *tls_ca_file;
    bool tls_insecure_skip_verify;
    /* A client certificate and key for mutual TLS (mesh peers); NULL: none. */
    char *tls_cert_file;
    char *tls_key_file;
    bool discover_models;
    char *preset; /* e.g. "groq"; NULL when absent */
    struct config_model *models;
    size_t n_models;
    int line;
    /* Live figures that outlive reloads (routing/stats.h), attached by the
     * daemon before the snapshot is shared; NULL in tools and tests. */
    struct provider_stats *stats;
    /* PROVIDER_MESH only: the peer's node id, and its advertised load
     * (in flight over capacity, 0..1000) for least_loaded. */
    const char *mesh_node;
    int mesh_load_permille;
};

enum routing_strategy {
    STRATEGY_COST_OPTIMIZED,
    STRATEGY_LATENCY_OPTIMIZED,
    STRATEGY_AVAILABILITY,
    STRATEGY_ROUND_ROBIN,
    STRATEGY_LEAST_LOADED,
    STRATEGY_WEIGHTED,
};
const char *routing_strategy_name(enum routing_strategy s);
/* Returns false when `name` is not a strategy. */
bool routing_strategy_parse(const char *name, enum routing_strategy *out);

struct config_alias {
    char *name;
    char *target;
};

/* A listener's TLS (server.tls, observability.metrics.tls): PEM files,
 * read again on every reload. All NULL: plain TCP. cert_file and key_file
 * come together; client_ca_file (optional) turns on mutual TLS. */
struct config_tls {
    char *cert_file;
    char *key_file;
    char *client_ca_file;
};

/* A policy rule is kept as text with its location; the routing module
 * compiles it (routing/policy.h) when the snapshot is loaded. */
struct config_rule {
    char *if_expr;   /* NULL for an `else` rule */
    char *then_expr;
    int line;        /* the rule's (and its `if:`'s) line */
    int then_line;   /* the line of `then:` / `else:` */
};

struct config_policy {
    char *name;
    char *type;
    struct config_rule *rules;
    size_t n_rules;
    /* Its index in routing.policies. `bare` policies come from the
     * standard's short form (7.1): list items that are rules themselves
     * ({if, then} / {else}); consecutive ones form one policy whose rule j
     * is the item `item + j`. */
    size_t item;
    bool bare;
};

/* routing.tiers: a tier name (cheap, balanced, premium, free, local, or a
 * task tier trivial..deep) to a model. */
struct config_tier {
    char *name;
    char *model;
};

enum alert_action { ALERT_LOG, ALERT_DISABLE_PAID, ALERT_BLOCK };

struct config_alert {
    int threshold_percent;
    enum alert_action action;
    char *webhook; /* NULL when absent */
};

struct config_api_key {
    char *key; /* the secret itself; never print it */
    /* SHA-256 of `key`, computed once at load: authentication hashes only
     * what the client presents, then compares in constant time. */
    unsigned char key_sha256[32];
    char *name;
    int rate_limit_per_hour; /* 0 = none */
    bool available;          /* false when its ${VAR} was unset or empty */
    /* Set by `role: admin` (default `user`): may use /aiproxy/admin/... and
     * sees every figure in GET /v1/budget. */
    bool admin;
    char *role;   /* as written; validated to "admin" or "user" */
    char *tenant; /* NULL when none */
    char **models; /* allowed models or aliases; none = every model */
    size_t n_models;
    nanos_t daily_limit;   /* budget.daily_limit of this key; 0 = none */
    nanos_t monthly_limit; /* budget.monthly_limit of this key; 0 = none */
    int requests_per_minute; /* 0 = none */
    int tokens_per_minute;   /* 0 = none */
};

/* security.auth.jwt: how bearer tokens are verified (security/jwt.h) and
 * what a token holder may do. Exactly one key source: jwks_file, jwks_url
 * or secret. */
struct jwks;
struct config_jwt {
    char *issuer;   /* NULL: iss not checked */
    char *audience; /* NULL: aud not checked */
    char *jwks_file;
    char *jwks_url;           /* https://, or http:// to a loopback address */
    char *secret;             /* HS256 key, 32 bytes or more; never print it */
    int64_t refresh_ms;       /* jwks_url refresh interval, default 5m */
    int64_t leeway_ms;        /* clock skew on exp/nbf/iat, default 60s */
    char **algorithms;        /* as written; NULL: every algorithm the key source allows */
    size_t n_algorithms;
    unsigned algs;            /* enum jwt_alg bits, resolved at load */
    char *claim_key_name;     /* default "sub" */
    char *claim_tenant;       /* NULL: token holders have no tenant */
    char *claim_role;         /* default "role"; "admin" makes an admin */
    /* Applied to every token holder, as a config key's own fields. */
    int rate_limit_per_hour, requests_per_minute, tokens_per_minute; /* 0 = none */
    char **models; /* none = every model */
    size_t n_models;
    nanos_t daily_limit, monthly_limit; /* per token holder; 0 = none */
    struct jwks *jwks; /* jwks_file parsed at load (a reference); NULL otherwise */
};

/* budget.tenants[]: spend limits shared by every key of a tenant. */
struct config_tenant {
    char *name;
    nanos_t daily_limit;   /* 0 = none */
    nanos_t monthly_limit; /* 0 = none */
};

struct config_peer {
    char *id;   /* as configured; the address when absent (learned from heartbeats) */
    char *addr; /* host:port of the peer's mesh listener */
    int priority;
    bool id_given; /* `id` was written in the config */
};

enum log_format { LOG_FORMAT_JSON, LOG_FORMAT_TEXT };

struct config {
    atomic_int refcount;
    uint64_t generation; /* unique per config object in this process (never reused) */
    char *source;  /* file name, or "<built-in defaults>" */

    struct {
        char *id;   /* default: hostname */
        char *name;
        char *region;
        char *type;
        bool mesh_enabled;
        char *mesh_listen_addr;
        struct config_peer *peers;
        size_t n_peers;
        bool share_load; /* default true: offer this node's models to peers */
        int64_t peer_timeout_ms;
        int64_t heartbeat_interval_ms;
        /* node.mesh.secret: every heartbeat and forwarded request carries it;
         * never printed. NULL when absent. */
        char *mesh_secret;
        unsigned char mesh_secret_sha256[32]; /* computed once at load */
        int mesh_max_hops; /* default 1 */
        /* node.mesh.tls: mutual TLS between nodes (all three or none). */
        char *mesh_tls_cert;
        char *mesh_tls_key;
        char *mesh_tls_ca;
        char *mesh_listen_host; /* from mesh_listen_addr; NULL when none */
        int mesh_listen_port;
    } node;

    struct {
        char *listen_host; /* from listen_addr, default "127.0.0.1" */
        int listen_port;   /* default 8080 */
        int64_t read_timeout_ms;  /* default 30000 */
        int64_t write_timeout_ms; /* default 120000 */
        int64_t idle_timeout_ms;  /* keep-alive idle, default 75000 */
        int64_t max_request_size; /* bytes, default 10MB */
        int64_t max_header_size;  /* bytes, default 16KB */
        int workers;              /* 0 = one per CPU */
        int64_t drain_timeout_ms; /* default 30000 */
        /* Upstream attempts in flight across all providers and workers;
         * past it new requests are shed with 503 (0: no cap). */
        int max_upstream_transfers; /* default 10000 */
        /* server.endpoints[]: a path listed with enabled: false is off. */
        char **disabled_paths;
        size_t n_disabled_paths;
        struct config_tls tls; /* HTTPS on the client listener */
    } server;

    struct config_provider *providers;
    size_t n_providers;

    struct {
        enum routing_strategy strategy; /* default cost_optimized */
        struct config_alias *aliases;
        size_t n_aliases;
        struct config_policy *policies;
        size_t n_policies;
        bool failover_enabled;    /* default true */
        int max_retries;          /* default 2 */
        int64_t retry_delay_ms;   /* default 100 */
        char **fallback_chain;
        size_t n_fallback_chain;
        bool lb_enabled;
        enum routing_strategy lb_strategy;
        bool health_aware;
        double unhealthy_threshold; /* a ratio, not money: 0.5 */
        /* Active health checks (api/health.c): every interval a cheap GET
         * to each endpoint of each available provider; down after
         * `health_check_failures` failures in a row, up after a success. */
        int64_t health_check_interval_ms; /* default 30000; 0 disables */
        int64_t health_check_timeout_ms;  /* default 5000 */
        int health_check_failures;        /* default 2 */
        bool auto_tier;
        struct config_tier *tiers;
        size_t n_tiers;
        /* routing.hedge: a second leg when the first has not answered
         * after `hedge_delay_ms` (0: twice the provider's recent time to
         * first byte). `hedge_models` limits it to those models (none: all). */
        bool hedge_enabled;
        int64_t hedge_delay_ms;
        char **hedge_models;
        size_t n_hedge_models;
    } routing;

    /* routing.policies compiled by routing_compile_policies (routing/policy.h)
     * at load; freed with `free_compiled_policies` by config_unref. NULL when
     * there are no policies. */
    void *compiled_policies;
    void (*free_compiled_policies)(void *compiled);

    /* cluster: the shared store (SPEC section 6). */
    struct {
        char *redis_url;        /* redis://[user:pass@]host:port/db, rediss://, unix:///path; NULL = none */
        char *redis_prefix;     /* default "aiproxy:" */
        int64_t redis_timeout_ms; /* one operation's deadline, default 50 */
        char *redis_ca_file;    /* rediss://: CA certificates (PEM); NULL = the system's */
        bool store_down_closed; /* on_store_down: closed (503) instead of local */
    } cluster;

    /* responses: stored responses of the Responses API (SPEC section 9). */
    struct {
        bool enabled;         /* default true: /v1/responses and its store */
        int64_t retention_ms; /* stored responses kept, default 30 days */
    } responses;

    /* context: the context delta buffer (SPEC section 8). */
    struct {
        bool enabled;              /* default true */
        int64_t max_inject_tokens; /* default 8000 */
        int64_t max_files;         /* per project, default 2000 */
        int64_t max_bytes;         /* per project, default 20MB */
        int64_t max_projects;      /* per caller scope, default 50 */
        int64_t ttl_ms;            /* idle projects dropped, default 7 days */
    } context;

    /* cache: the response cache (SPEC section 7). */
    struct {
        bool enabled;            /* default false */
        bool mode_always;        /* mode: always (else opt_in: only requests that ask) */
        int64_t ttl_ms;          /* default 1h */
        int64_t max_memory;      /* bytes per node, default 64MB */
        bool backend_redis;      /* backend: redis (else memory) */
        char *redis_url;         /* cache.redis.url: the Redis when cluster.redis is absent */
        int64_t front_memory;    /* redis backend: the in-memory front's bytes, default 8MB */
        int64_t max_entry_size;  /* a bigger answer is not stored, default 1MB */
        struct {
            bool enabled;
            char *embedding_model;  /* a model this gateway serves */
            double threshold;       /* cosine similarity, default 0.95 */
            int64_t max_entries;    /* default 100000 */
            double max_temperature; /* above it: no semantic step, default 1.0 */
            int64_t timeout_ms;     /* the embedding call's deadline, default 2s */
        } semantic;
    } cache;

    struct {
        bool enabled;          /* default true: limits and alerts enforced when set */
        nanos_t daily_limit;   /* 0 = none */
        nanos_t monthly_limit; /* 0 = none */
        bool track_costs;      /* default true */
        /* The local SQLite file: from cost_db sqlite:///path (default
         * "data/costs.db"), or, when cost_db is PostgreSQL, spool_db's path
         * (the spool and the managed-key store). */
        char *cost_db_path;
        /* cost_db postgres:// or postgresql:// (holds a password: never
         * printed; see core/dburl.h); NULL for the SQLite ledger. */
        char *cost_db_url;
        char *spool_db_path;   /* from spool_db, default "data/ledger-spool.db" */
        struct config_alert *alerts;
        size_t n_alerts;
        struct config_tenant *tenants;
        size_t n_tenants;
    } budget;

    struct {
        int log_level; /* LOG_DEBUG..LOG_ERROR of core/log.h; default info */
        enum log_format log_format; /* default json */
        char *log_output;   /* "stdout", "stderr" or a file path */
        bool metrics_enabled;
        int prometheus_port; /* 0 = none */
        /* observability.metrics.tls: HTTPS on the prometheus_port listener;
         * independent of server.tls (absent: plain HTTP). */
        struct config_tls metrics_tls;
        char **metrics_collect;
        size_t n_metrics_collect;
        bool tracing_enabled;
        char *tracing_provider;
        char *tracing_endpoint;     /* OTLP/HTTP base URL; spans go to {endpoint}/v1/traces */
        char *tracing_service_name; /* resource service.name, default "aiproxy" */
        double tracing_sample_ratio; /* new traces sampled, 0..1, default 1 (a ratio, not money) */
    } observability;

    struct {
        bool auth_enabled;
        char *auth_type;   /* "api_key", "jwt" or "api_key,jwt" */
        bool auth_api_key; /* type includes api_key (the default) */
        bool auth_jwt;     /* type includes jwt: security.auth.jwt is set */
        struct config_jwt jwt;
        struct config_api_key *api_keys;
        size_t n_api_keys;
        bool rate_limiting_enabled;
        int default_limit_per_hour;
        bool rl_by_ip;
        bool rl_by_api_key;
        int requests_per_minute; /* per key and per IP; 0 = none */
        int tokens_per_minute;   /* per key; 0 = none */
        /* X-Forwarded-For is believed only from these peer addresses. */
        char **trusted_proxies;
        size_t n_trusted_proxies;
        bool cors_enabled; /* default true: on whenever allowed_origins lists any */
        char **cors_origins;
        size_t n_cors_origins;
    } security;
};

/* Value syntax (the loader's choices where SPEC is silent):
 * - durations "250ms", "5s", "2m", "1h"; a bare number is seconds;
 * - sizes "512KB", "10MB", "1GB" (powers of 1024; K/M/G, KiB.. and B too,
 *   any case); a bare number is bytes;
 * - booleans true/false, yes/no, on/off;
 * - money is parsed from the value's text by money_parse_usd (no exponent,
 *   never negative);
 * - budget.cost_db "sqlite:///data/costs.db" is the relative path
 *   "data/costs.db", "sqlite:////var/x.db" the absolute "/var/x.db", and a
 *   value without a scheme is a path as written; budget.spool_db the same;
 *   cost_db "postgres://USER:PASS@HOST:PORT/DB" (or postgresql://) keeps
 *   the ledger in PostgreSQL, with spool_db as its local SQLite file;
 * - `${VAR}`, `${VAR:-default}` in values (the default also applies when VAR
 *   is empty); `$${` is a literal `${`. A credential whose variable is unset
 *   or empty leaves its provider loaded but unavailable (its API key, for
 *   security.auth.api_keys); elsewhere the key falls back to its default,
 *   with a warning;
 * - an openai/anthropic provider without credentials.api_key reads
 *   OPENAI_API_KEY / ANTHROPIC_API_KEY (or its preset's variable) only when
 *   its endpoint is the default (or the preset's), so a key is never sent to
 *   an endpoint its owner did not name;
 * - caps: 4MB of text, nesting depth 64, 4096 entries per map or list; YAML
 *   aliases and multiple documents are refused. */

/* Loads and validates `path`; YAML or JSON is chosen by content. Returns a
 * snapshot with refcount 1, or NULL when any error was found. Warnings and
 * errors are appended to `diags` (the caller owns and cleans it). `getenv`
 * expansion happens during loading. */
struct config *config_load_file(const char *path, struct diag_list *diags);

/* Same, from text in memory; `name` is used in messages as the file name. */
struct config *config_load_text(const char *text, size_t len, const char *name,
                                struct diag_list *diags);

/* The built-in defaults (SPEC section 1): listen 127.0.0.1:8080, data under
 * ./data/, an `openai` provider when OPENAI_API_KEY is set (with a default
 * model list and prices), and a `local` provider on 127.0.0.1:11434 with
 * discover_models on (the daemon probes it at start). */
struct config *config_default(struct diag_list *diags);

struct config *config_ref(struct config *c);
/* Drops one reference; frees the snapshot at zero. NULL is ignored. */
void config_unref(struct config *c);

/* Writes a human summary (node, listener, each provider with availability
 * and reason, models, strategy, budget) to `out`. Secrets are never printed. */
void config_print_summary(const struct config *c, FILE *out);

/* Splits "host:port", "[v6]:port" or ":port" (host "0.0.0.0") into heap
 * `*host` and `*port`. Returns false when `s` is not of that shape. */
bool config_parse_listen(const char *s, char **host, int *port);

/* Finds a provider by name; NULL when absent. */
const struct config_provider *config_find_provider(const struct config *c, const char *name);

/* Adds a model to a provider of an already-built snapshot that is not yet
 * shared (used by start-up model discovery). */
void config_provider_add_model(struct config_provider *p, const char *name,
                               const char *upstream_id, unsigned capabilities);

#endif
