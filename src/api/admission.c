/* admission: the seam between the request flow and the money and access
 * policies. Authentication (config keys, then managed keys), request rate
 * limits per key and per client IP, model allow-lists, alert states,
 * token rate limits and budget reservation before a request is sent; its
 * settlement and ledger record once it is over. The policies themselves
 * live in security/ and budget/; this file applies them to a request and
 * turns refusals into OpenAI-shaped errors. The shared state is created
 * once by admission_start, before any worker exists. */
#include "api/admission.h"

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget/alerts.h"
#include "budget/ledger.h"
#include "budget/period.h"
#include "budget/pricing.h"
#include "budget/spend.h"
#include "api/store_call.h"
#include "api/upstream_slot.h"
#include "cluster/keys.h"
#include "cluster/limits.h"
#include "cluster/redis.h"
#include "cluster/scripts.h"
#include "cluster/store.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/log.h"
#include "core/str.h"
#include "http/server.h"
#include "obs/metrics.h"
#include "security/auth.h"
#include "security/jwt_auth.h"
#include "security/keystore.h"
#include "security/ratelimit.h"

#define AUTH_MEMO_MAX 512 /* longer keys are looked up every time */
/* How long a hold in the shared store outlives a request that is never
 * settled (its node died): past it, Redis releases the reservation. Longer
 * than any request runs. */
#define HOLD_MS (15 * 60 * 1000)

/* ---- shared state ---- */

struct admission_state {
    struct ledger *ledger;
    struct keystore *keys;
    struct rl_table *rl;
    struct alerts *alerts;
    struct spend_counter global;
    struct spend_table *by_key, *by_tenant, *by_provider, *by_model;
};

static struct admission_state *state;

/* A request's rate limits: its key's, then its client address's. */
struct request_asks {
    int n;
    int key_ask; /* the key's index, -1: none */
    struct rl_ask a[2];
};

/* What one request holds from authentication to admission_finish
 * (arena-owned). */
struct admission_ticket {
    bool reserved; /* budget reserved: settle at the end */
    bool shared;   /* held in the shared store (else node-local counters) */
    struct spend_reservation res; /* node-local */
    nanos_t estimate;
    int64_t est_tokens;
    const char *tpm_who; /* NULL when no token limit was charged */
    int64_t tpm;
    /* Request limits left to the reservation (shared store; none otherwise). */
    struct request_asks asks;
    /* The budget scopes: counters here, names in Redis. */
    int n_scopes;
    struct spend_counter *counters[SPEND_MAX_SCOPES];
    const char *scope_names[SPEND_MAX_SCOPES];
    const char *labels[SPEND_MAX_SCOPES];
    const char *member; /* the hold in the shared store (cl_hold_member) */
    nanos_t daily[SPEND_MAX_SCOPES], monthly[SPEND_MAX_SCOPES];
    int64_t day, month;
};

static void on_restore(void *ctx, const char *key_id, const char *tenant, const char *provider,
                       const char *model, bool today, nanos_t cost, bool via_peer)
{
    struct admission_state *s = ctx;
    int64_t now = clock_wall_s();
    int64_t day = period_day(now), month = period_month(now);
    struct spend_counter *cs[5] = {
        via_peer ? NULL : &s->global, /* a peer paid that provider, not this node */
        *key_id ? spend_table_get(s->by_key, key_id) : NULL,
        *tenant ? spend_table_get(s->by_tenant, tenant) : NULL,
        *provider ? spend_table_get(s->by_provider, provider) : NULL,
        *model ? spend_table_get(s->by_model, model) : NULL,
    };
    for (int i = 0; i < 5; i++) {
        if (!cs[i]) continue;
        spend_window_add(&cs[i]->month, month, cost);
        if (today) spend_window_add(&cs[i]->day, day, cost);
    }
}

/* The gateway's shared spend, from the store watcher. */
static void on_shared_spend(int64_t day, int64_t month, nanos_t day_spent, nanos_t month_spent)
{
    struct admission_state *s = state;
    if (!s) return;
    spend_window_set(&s->global.day, day, day_spent);
    spend_window_set(&s->global.month, month, month_spent);
}

int admission_start(const struct config *cfg, char *err, size_t errcap)
{
    struct admission_state *s = xcalloc(1, sizeof *s);
    s->ledger = ledger_open_with(cfg->budget.cost_db_path, cfg->budget.cost_db_url, err, errcap);
    if (!s->ledger) {
        free(s);
        return -1;
    }
    s->keys = keystore_open(cfg->budget.cost_db_path, err, errcap);
    if (!s->keys) {
        ledger_close(s->ledger);
        free(s);
        return -1;
    }
    s->by_key = spend_table_new();
    s->by_tenant = spend_table_new();
    s->by_provider = spend_table_new();
    s->by_model = spend_table_new();
    s->rl = rl_table_new();
    int64_t now = clock_wall_s();
    if (ledger_restore(s->ledger, period_day_start(now), period_month_start(now), on_restore, s) != 0)
        log_event(LOG_ERROR, "ledger_restore_failed", "spend could not be restored from %s; "
                  "counting from zero", cfg->budget.cost_db_path);
    s->alerts = alerts_start();
    store_set_keystore(s->keys);
    store_set_spend_hook(on_shared_spend);
    if (store_start(cfg, err, errcap) != 0) {
        alerts_stop(s->alerts);
        keystore_close(s->keys);
        ledger_close(s->ledger);
        rl_table_free(s->rl);
        spend_table_free(s->by_key);
        spend_table_free(s->by_tenant);
        spend_table_free(s->by_provider);
        spend_table_free(s->by_model);
        free(s);
        return -1;
    }
    state = s;
    jwt_auth_configure(cfg); /* (a jwks_url is fetched once before the listener opens) */
    char d[32], m[32];
    money_format_usd(spend_window_spent(&s->global.day, period_day(now)), d, sizeof d);
    money_format_usd(spend_window_spent(&s->global.month, period_month(now)), m, sizeof m);
    log_event(LOG_INFO, "ledger_opened", "ledger %s open; spend today $%s, this month $%s",
              cfg->budget.cost_db_path, d, m);
    return 0;
}

void admission_stop(void)
{
    struct admission_state *s = state;
    if (!s) return;
    jwt_auth_stop();
    store_stop();
    ledger_close(s->ledger);
    alerts_stop(s->alerts);
    keystore_close(s->keys);
    rl_table_free(s->rl);
    spend_table_free(s->by_key);
    spend_table_free(s->by_tenant);
    spend_table_free(s->by_provider);
    spend_table_free(s->by_model);
    state = NULL;
    free(s);
}

struct ledger *admission_ledger(void)
{
    return state ? state->ledger : NULL;
}

struct keystore *admission_keystore(void)
{
    return state ? state->keys : NULL;
}

struct spend_counter *admission_global_spend(void)
{
    return state ? &state->global : NULL;
}

struct spend_table *admission_spend_table(const char *which)
{
    if (!state) return NULL;
    if (strcmp(which, "key") == 0) return state->by_key;
    if (strcmp(which, "tenant") == 0) return state->by_tenant;
    if (strcmp(which, "provider") == 0) return state->by_provider;
    if (strcmp(which, "model") == 0) return state->by_model;
    return NULL;
}

/* ---- helpers ---- */

static void add_headers(struct http_request *req, const char *h)
{
    req->extra_headers =
        req->extra_headers ? arena_concat(&req->arena, req->extra_headers, h, (char *)NULL) : h;
}

/* Appends `n` bytes at `*p` (the caller sized the buffer). */
static void put(char **p, const char *s, size_t n)
{
    memcpy(*p, s, n);
    *p += n;
}

#define PUT_LITERAL(p, lit) put(p, lit, sizeof lit - 1)

/* OpenAI's x-ratelimit-*-requests headers (built on every admitted request:
 * no printf, no strlen of the constant parts). */
static char *rl_headers(struct http_request *req, const struct rl_decision *d)
{
    char reset[32], limit[STR_I64_LEN], remaining[STR_I64_LEN];
    rl_format_duration(d->reset_us, reset, sizeof reset);
    const char *l = str_i64(d->limit, limit), *r = str_i64(d->remaining, remaining);
    char *out = arena_alloc(&req->arena, 128 + 2 * STR_I64_LEN + sizeof reset), *p = out;
    PUT_LITERAL(&p, "x-ratelimit-limit-requests: ");
    put(&p, l, (size_t)(limit + STR_I64_LEN - 1 - l));
    PUT_LITERAL(&p, "\r\nx-ratelimit-remaining-requests: ");
    put(&p, r, (size_t)(remaining + STR_I64_LEN - 1 - r));
    PUT_LITERAL(&p, "\r\nx-ratelimit-reset-requests: ");
    put(&p, reset, strlen(reset));
    PUT_LITERAL(&p, "\r\n");
    *p = '\0';
    return out;
}

static void refuse_rate(struct http_request *req, const struct rl_decision *d, const char *what,
                        bool tokens)
{
    int64_t secs = (d->retry_after_us + 999999) / 1000000;
    if (secs < 1) secs = 1;
    char msg[256];
    snprintf(msg, sizeof msg, "Rate limit reached for %s: %lld %s per %s. Retry after %lld s.",
             what, (long long)d->limit, tokens ? "tokens" : "requests", tokens ? "minute" : "window",
             (long long)secs);
    const char *h = arena_printf(&req->arena, "Retry-After: %lld\r\n%s", (long long)secs,
                                 tokens ? "" : rl_headers(req, d));
    http_respond_error_h(req, GW_ERR_RATE_LIMITED, msg, NULL, h);
    metrics_rate_limited(tokens);
}

static struct principal *principal_from_config(struct http_request *req,
                                               const struct config_api_key *k)
{
    struct principal *p = arena_alloc(&req->arena, sizeof *p);
    memset(p, 0, sizeof *p);
    p->name = k->name ? k->name : "";
    p->key_id = p->name;
    p->tenant = k->tenant;
    p->admin = k->admin;
    p->models = (const char *const *)k->models;
    p->n_models = k->n_models;
    p->daily_limit = k->daily_limit;
    p->monthly_limit = k->monthly_limit;
    p->rate_limit_per_hour = k->rate_limit_per_hour;
    p->requests_per_minute = k->requests_per_minute;
    p->tokens_per_minute = k->tokens_per_minute;
    p->limit_key = arena_concat(&req->arena, "k:", p->key_id, (char *)NULL);
    return p;
}

static struct principal *principal_from_view(struct http_request *req, const struct key_view *v)
{
    struct principal *p = arena_alloc(&req->arena, sizeof *p);
    memset(p, 0, sizeof *p);
    p->key_id = arena_strdup(&req->arena, v->id);
    p->name = v->name;
    p->tenant = v->tenant;
    p->admin = v->admin;
    p->managed = true;
    p->models = v->models;
    p->n_models = v->n_models;
    p->daily_limit = v->daily_limit;
    p->monthly_limit = v->monthly_limit;
    p->rate_limit_per_hour = v->rate_limit_per_hour;
    p->requests_per_minute = v->requests_per_minute;
    p->tokens_per_minute = v->tokens_per_minute;
    p->limit_key = arena_concat(&req->arena, "k:", p->key_id, (char *)NULL);
    return p;
}

/* "ip:" + the client's address (X-Forwarded-For from trusted proxies
 * only): the caller's entry in the rate-limit table. */
static const char *ip_limit_key(struct http_request *req)
{
    const struct config *cfg = req->config;
    char *key = arena_alloc(&req->arena, 3 + 64);
    memcpy(key, "ip:", 3);
    rl_client_ip(req->client_ip, http_header_get(req, "x-forwarded-for"),
                 cfg->security.trusted_proxies, cfg->security.n_trusted_proxies, key + 3, 64);
    return key;
}

/* ---- authentication and request rate limits ---- */

/* The config key a connection presented last, so that the next request on
 * it with the same key skips the digest and the scan of the key table
 * (about 0.5 µs under load). Per connection: the comparison can only tell
 * a client about what it sent itself. Tied to one config object by its
 * generation; managed keys are not kept (revocation must act at once). */
struct auth_memo {
    uint64_t generation;
    const struct config_api_key *key;
    size_t len;
    char presented[];
};

static void auth_memo_free(void *memo)
{
    struct auth_memo *m = memo;
    OPENSSL_cleanse(m->presented, m->len);
    free(m);
}

static const struct config_api_key *find_config_key(struct http_request *req, const char *presented)
{
    const struct config *cfg = req->config;
    if (!presented) return NULL;
    size_t len = strlen(presented);
    const struct auth_memo *m = http_conn_memo(req);
    if (m && m->generation == cfg->generation && m->len == len &&
        CRYPTO_memcmp(m->presented, presented, len) == 0)
        return m->key;
    const struct config_api_key *k = auth_find_key(cfg, presented);
    if (k && len <= AUTH_MEMO_MAX) {
        struct auth_memo *n = xmalloc(sizeof *n + len);
        n->generation = cfg->generation;
        n->key = k;
        n->len = len;
        memcpy(n->presented, presented, len);
        http_conn_set_memo(req, n, auth_memo_free);
    }
    return k;
}

static struct admission_ticket *ticket_of(struct http_request *req)
{
    struct admission_ticket *t = req->admission;
    if (!t) {
        t = arena_alloc(&req->arena, sizeof *t);
        memset(t, 0, sizeof *t);
        t->asks.key_ask = -1;
        req->admission = t;
    }
    return t;
}

/* The key's request limits, then the client address's (the headers
 * describe the key's when it has any). */
static void request_asks(struct http_request *req, const struct principal *p,
                         struct request_asks *q)
{
    const struct config *cfg = req->config;
    bool rl_on = cfg->security.rate_limiting_enabled;
    q->n = 0;
    q->key_ask = -1;
    if (p && (rl_on ? cfg->security.rl_by_api_key : true)) {
        q->a[q->n] = (struct rl_ask){
            .who = p->limit_key,
            .per_hour = p->rate_limit_per_hour ? p->rate_limit_per_hour
                                               : rl_on ? cfg->security.default_limit_per_hour : 0,
            .per_minute = p->requests_per_minute ? p->requests_per_minute
                                                 : rl_on ? cfg->security.requests_per_minute : 0,
        };
        if (q->a[q->n].per_hour || q->a[q->n].per_minute) q->key_ask = q->n++;
    }
    if (rl_on && cfg->security.rl_by_ip &&
        (cfg->security.default_limit_per_hour || cfg->security.requests_per_minute))
        q->a[q->n++] = (struct rl_ask){ip_limit_key(req), cfg->security.default_limit_per_hour,
                                       cfg->security.requests_per_minute};
}

/* Answers a refusal of ask `refused` (or adds the shown limit's headers
 * when none refused). Returns false when refused. */
static bool apply_request_decisions(struct http_request *req, const struct request_asks *q,
                                    int refused, const struct rl_decision *d)
{
    const struct principal *p = req->principal;
    if (refused >= 0 && refused == q->key_ask) {
        char what[200];
        snprintf(what, sizeof what, "key '%s'", p->name);
        refuse_rate(req, &d[refused], what, false);
        return false;
    }
    if (refused >= 0) {
        refuse_rate(req, &d[refused], "this client address", false);
        return false;
    }
    if (q->n == 0) return true;
    int shown = q->key_ask >= 0 && d[q->key_ask].limit ? q->key_ask : q->n - 1;
    if (d[shown].limit) add_headers(req, rl_headers(req, &d[shown]));
    return true;
}

/* The request limits on this node's own table. */
static bool take_requests_locally(struct http_request *req, const struct request_asks *q)
{
    if (q->n == 0) return true;
    struct rl_decision d[2];
    int refused = rl_take_requests(state->rl, q->a, q->n, clock_mono_us(), d);
    return apply_request_decisions(req, q, refused, d);
}

/* A managed key's principal, or NULL with why in *why. */
static struct principal *principal_from_managed(struct http_request *req, struct key_view *v,
                                                const char **why)
{
    if (v && v->revoked_at) {
        *why = "This API key has been revoked.";
        return NULL;
    }
    if (v && v->expires_at && v->expires_at <= clock_wall_s()) {
        *why = "This API key has expired.";
        return NULL;
    }
    return v ? principal_from_view(req, v) : NULL;
}

static const char no_key[] = "Missing or invalid API key. Send it as 'Authorization: Bearer KEY' "
                             "or 'x-api-key: KEY'.";
static const char no_token[] = "Missing or invalid bearer token. Send a JWT as 'Authorization: "
                               "Bearer TOKEN'.";

/* A token holder's principal (security.auth.type jwt), or NULL with the
 * verifier's reason in *why. The key id is "jwt:" + the key-name claim, so
 * limits, spend and ledger rows are per token holder; the limits are the
 * ones security.auth.jwt gives every holder. */
static struct principal *principal_from_jwt(struct http_request *req, const char *token,
                                            const char **why, enum jwt_reason *rc)
{
    const struct config *cfg = req->config;
    const struct config_jwt *j = &cfg->security.jwt;
    struct jwt_result r;
    *rc = jwt_auth_verify(cfg, token, &r);
    if (*rc != JWT_OK) {
        *why = jwt_reason_message(*rc);
        return NULL;
    }
    struct principal *p = arena_alloc(&req->arena, sizeof *p);
    memset(p, 0, sizeof *p);
    p->name = arena_strdup(&req->arena, r.key_name);
    p->key_id = arena_concat(&req->arena, "jwt:", r.key_name, (char *)NULL);
    p->tenant = r.tenant ? arena_strdup(&req->arena, r.tenant) : NULL;
    p->admin = r.role && strcmp(r.role, "admin") == 0;
    p->models = (const char *const *)j->models;
    p->n_models = j->n_models;
    p->daily_limit = j->daily_limit;
    p->monthly_limit = j->monthly_limit;
    p->rate_limit_per_hour = j->rate_limit_per_hour;
    p->requests_per_minute = j->requests_per_minute;
    p->tokens_per_minute = j->tokens_per_minute;
    p->limit_key = arena_concat(&req->arena, "k:", p->key_id, (char *)NULL);
    jwt_result_cleanup(&r);
    return p;
}

static bool after_principal(struct http_request *req, bool admin_required, bool defer_limits,
                            struct principal *p, const char *why);

/* A key this node does not know yet may have been created on another node
 * a moment ago: asked of the shared store by its hash (one round trip, on
 * misses only), then kept. */
struct key_lookup {
    bool admin_required, defer_limits;
    admission_resume_cb resume;
};

static void on_key_lookup(struct http_request *req, struct redisReply *r, void *data)
{
    struct key_lookup *l = data;
    const char *why = no_key;
    struct principal *p = NULL;
    const char *presented = auth_presented_key(http_header_get(req, "authorization"),
                                               http_header_get(req, "x-api-key"));
    struct key_view v;
    unsigned char hash[KEYSTORE_HASH_LEN];
    if (r && r->type == REDIS_REPLY_STRING && state && presented &&
        shared_key_decode(r->str, r->len, &v, &req->arena) == 0 &&
        keystore_shared_hash(state->keys, presented, hash)) {
        keystore_put_shared(state->keys, &v, hash);
        p = principal_from_managed(req, &v, &why);
    }
    /* (a refusal answers, which may free the request: resume only on success) */
    if (after_principal(req, l->admin_required, l->defer_limits, p, why)) l->resume(req);
}

static bool lookup_shared_key(struct http_request *req, const char *presented, bool admin_required,
                              bool defer_limits, admission_resume_cb resume)
{
    unsigned char hash[KEYSTORE_HASH_LEN];
    if (!resume || !state || !store_enabled() ||
        strncmp(presented, KEYSTORE_KEY_PREFIX, sizeof KEYSTORE_KEY_PREFIX - 1) != 0 ||
        strlen(presented) != KEYSTORE_KEY_LEN || !keystore_shared_hash(state->keys, presented, hash))
        return false;
    char hex[2 * KEYSTORE_HASH_LEN + 1], key[300];
    str_hex(hash, sizeof hash, hex);
    snprintf(key, sizeof key, "%skeys", store_prefix());
    const char *av[3] = {"HGET", key, hex};
    struct key_lookup *l = xmalloc(sizeof *l);
    *l = (struct key_lookup){admin_required, defer_limits, resume};
    if (store_call_command(req, 3, av, NULL, on_key_lookup, l, free) != 0) {
        free(l);
        return false;
    }
    return true;
}

enum admit admission_authenticate(struct http_request *req, bool admin_required,
                                  bool defer_limits, admission_resume_cb resume)
{
    const struct config *cfg = req->config;
    struct principal *p = NULL;
    const char *why = no_key;
    if (cfg->security.auth_enabled) {
        const char *presented = auth_presented_key(http_header_get(req, "authorization"),
                                                   http_header_get(req, "x-api-key"));
        if (cfg->security.auth_jwt) {
            enum jwt_reason rc = JWT_MALFORMED;
            if (jwt_looks_like(presented)) p = principal_from_jwt(req, presented, &why, &rc);
            else why = cfg->security.auth_api_key ? no_key : no_token;
            /* (an API key with two dots in it is still looked up as a key) */
            bool as_key = cfg->security.auth_api_key && !p && rc == JWT_MALFORMED;
            if (!as_key) return after_principal(req, admin_required, defer_limits, p, why)
                                    ? ADMIT_OK : ADMIT_REFUSED;
            why = no_key;
        }
        const struct config_api_key *k = find_config_key(req, presented);
        struct key_view *v = NULL;
        if (k) p = principal_from_config(req, k);
        else if (presented && state) v = keystore_find(state->keys, presented, &req->arena);
        if (!k && !v && presented &&
            lookup_shared_key(req, presented, admin_required, defer_limits, resume))
            return ADMIT_WAIT;
        if (v) p = principal_from_managed(req, v, &why);
    }
    return after_principal(req, admin_required, defer_limits, p, why) ? ADMIT_OK : ADMIT_REFUSED;
}

static bool after_principal(struct http_request *req, bool admin_required, bool defer_limits,
                            struct principal *p, const char *why)
{
    const struct config *cfg = req->config;
    if (cfg->security.auth_enabled) {
        if (!p) {
            http_respond_error_h(req, GW_ERR_INVALID_API_KEY, why, NULL,
                                 "WWW-Authenticate: Bearer\r\n");
            return false;
        }
        req->principal = p;
    }
    if (admin_required) {
        if (!cfg->security.auth_enabled) {
            http_respond_error(req, GW_ERR_FORBIDDEN, "The admin API needs security.auth.enabled "
                               "and a key with role: admin.", NULL);
            return false;
        }
        if (!p->admin) {
            http_respond_error(req, GW_ERR_FORBIDDEN, "This endpoint needs an admin key.", NULL);
            return false;
        }
        return true; /* admins are not rate limited on the admin API: they can always revoke */
    }
    if (!state) return true;
    if (defer_limits && store_enabled()) {
        request_asks(req, p, &ticket_of(req)->asks); /* taken with the reservation */
        return true;
    }
    struct request_asks q;
    request_asks(req, p, &q);
    return take_requests_locally(req, &q);
}

/* ---- before sending ---- */

static bool model_allowed(const struct principal *p, const char *asked, const char *resolved)
{
    if (!p || p->n_models == 0) return true;
    for (size_t i = 0; i < p->n_models; i++)
        if (strcmp(p->models[i], asked) == 0 || (resolved && strcmp(p->models[i], resolved) == 0))
            return true;
    return false;
}

bool admission_model_allowed(const struct http_request *req, const char *asked,
                             const char *resolved)
{
    return model_allowed(req->principal, asked, resolved);
}

static void refuse_budget(struct http_request *req, const char *msg)
{
    http_respond_error_h(req, GW_ERR_BUDGET_EXCEEDED, msg, NULL, "x-should-retry: false\r\n");
    metrics_budget_rejected();
}

static void refuse_budget_scope(struct http_request *req, const struct admission_ticket *t,
                                int failed, bool monthly)
{
    char est[32], msg[300];
    money_format_usd(t->estimate, est, sizeof est);
    snprintf(msg, sizeof msg, "The %s budget of %s is spent: this request (estimated at $%s) "
             "would exceed it. It resets at the start of the next %s (UTC).",
             monthly ? "monthly" : "daily", t->labels[failed], est, monthly ? "month" : "day");
    refuse_budget(req, msg);
}

static void refuse_store_down(struct http_request *req)
{
    http_respond_error_h(req, GW_ERR_STORE_UNAVAILABLE,
                         "The shared store (Redis) that holds this gateway's limits and budgets "
                         "does not answer, and cluster.on_store_down is closed. Retry shortly.",
                         NULL, "Retry-After: 1\r\n");
}

static const struct config_tenant *find_tenant(const struct config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->budget.n_tenants; i++)
        if (strcmp(cfg->budget.tenants[i].name, name) == 0) return &cfg->budget.tenants[i];
    return NULL;
}

/* Drops candidates whose model costs anything; returns how many are left. */
static size_t keep_free_candidates(struct route_plan *plan)
{
    size_t n = 0;
    for (size_t i = 0; i < plan->n; i++)
        if (!pricing_is_paid(plan->items[i].model)) plan->items[n++] = plan->items[i];
    plan->n = n;
    return n;
}

/* The scopes a request's cost counts in: the gateway, its key, its tenant. */
static void fill_scopes(struct http_request *req, struct admission_ticket *t, bool named)
{
    const struct config *cfg = req->config;
    const struct principal *p = req->principal;
    int n = 0;
    t->counters[n] = &state->global;
    t->daily[n] = cfg->budget.enabled ? cfg->budget.daily_limit : 0;
    t->monthly[n] = cfg->budget.enabled ? cfg->budget.monthly_limit : 0;
    t->labels[n] = "the gateway";
    t->scope_names[n++] = "g";
    if (p) {
        t->counters[n] = spend_table_get(state->by_key, p->key_id);
        t->daily[n] = p->daily_limit;
        t->monthly[n] = p->monthly_limit;
        t->labels[n] = "this key";
        if (named) {
            char *name = arena_alloc(&req->arena, CL_SCOPE_MAX);
            cl_scope_name('k', p->key_id, name, CL_SCOPE_MAX);
            t->scope_names[n] = name;
        }
        n++;
        if (p->tenant) {
            const struct config_tenant *tc = find_tenant(cfg, p->tenant);
            t->counters[n] = spend_table_get(state->by_tenant, p->tenant);
            t->daily[n] = tc ? tc->daily_limit : 0;
            t->monthly[n] = tc ? tc->monthly_limit : 0;
            t->labels[n] = "this key's tenant";
            if (named) {
                char *name = arena_alloc(&req->arena, CL_SCOPE_MAX);
                cl_scope_name('t', p->tenant, name, CL_SCOPE_MAX);
                t->scope_names[n] = name;
            }
            n++;
        }
    }
    t->n_scopes = n;
}

/* The node-local path: this node's tables (no shared store, or Redis down
 * with on_store_down: local). */
static bool reserve_locally(struct http_request *req, struct admission_ticket *t)
{
    if (!take_requests_locally(req, &t->asks)) return false;
    if (t->tpm > 0) {
        struct rl_decision d;
        if (!rl_take_tokens(state->rl, t->tpm_who, t->tpm, t->est_tokens, clock_mono_us(), &d)) {
            t->tpm_who = NULL;
            /* (answering may free the request, and t with it: nothing after) */
            refuse_rate(req, &d, req->principal ? "this key" : "this gateway", true);
            return false;
        }
    } else {
        t->tpm_who = NULL;
    }
    struct spend_scope scopes[SPEND_MAX_SCOPES];
    for (int i = 0; i < t->n_scopes; i++)
        scopes[i] = (struct spend_scope){t->counters[i], t->daily[i], t->monthly[i]};
    int failed = 0;
    bool monthly = false;
    if (spend_reserve(scopes, t->n_scopes, t->estimate, t->day, t->month, &t->res, &failed,
                      &monthly) != 0) {
        if (t->tpm_who)
            rl_adjust_tokens(state->rl, t->tpm_who, t->tpm, -t->est_tokens, clock_mono_us());
        t->tpm_who = NULL;
        refuse_budget_scope(req, t, failed, monthly);
        return false;
    }
    t->reserved = true;
    return true;
}

/* ---- the shared store ---- */

/* A reservation asked of Redis, waiting for its answer. Heap: the request
 * may be freed first (the client left), then the hold is dropped. */
struct reserve_wait {
    struct http_request *req; /* NULL once the request is freed */
    bool answered;
    admission_resume_cb resume;
    int n_asks, n_scopes;
    char member[CL_MEMBER_MAX]; /* the hold, to drop when the answer is lost */
};

static void on_wait_request_freed(void *arg)
{
    struct reserve_wait *w = arg;
    if (w->answered) free(w);
    else w->req = NULL;
}

/* Redis could not answer for this request: the node-local path, or 503. */
static bool store_down_for(struct http_request *req, struct admission_ticket *t)
{
    if (store_closed_when_down()) {
        refuse_store_down(req);
        return false;
    }
    return reserve_locally(req, t);
}

/* The local view follows the shared figures. */
static void seed(struct admission_ticket *t, const nanos_t *day_spent, const nanos_t *month_spent)
{
    for (int i = 0; i < t->n_scopes; i++) {
        if (day_spent[i] >= 0) spend_window_set(&t->counters[i]->day, t->day, day_spent[i]);
        if (month_spent[i] >= 0) spend_window_set(&t->counters[i]->month, t->month, month_spent[i]);
    }
}

static bool apply_reserve_reply(struct http_request *req, struct admission_ticket *t,
                                const struct cl_reserve_result *res)
{
    if (res->code != CL_RATE) {
        int none = -1;
        if (!apply_request_decisions(req, &t->asks, none, res->asks)) return false;
    }
    switch (res->code) {
    case CL_RATE:
        return apply_request_decisions(req, &t->asks, res->index, res->asks);
    case CL_TOKENS:
        refuse_rate(req, &res->tokens, req->principal ? "this key" : "this gateway", true);
        return false;
    case CL_BUDGET:
        refuse_budget_scope(req, t, res->index, res->monthly);
        return false;
    case CL_ADMITTED:
        break;
    }
    seed(t, res->day_spent, res->month_spent);
    t->reserved = true;
    t->shared = true;
    if (t->tpm <= 0) t->tpm_who = NULL;
    return true;
}

static void build_reserve(struct http_request *req, const struct admission_ticket *t,
                          struct cl_reserve *in)
{
    memset(in, 0, sizeof *in);
    in->prefix = store_prefix();
    in->member = NULL; /* (set once the scopes are in) */
    in->hold_ms = HOLD_MS;
    in->n_asks = t->asks.n;
    memcpy(in->asks, t->asks.a, (size_t)t->asks.n * sizeof in->asks[0]);
    if (t->tpm > 0) {
        in->tpm_who = t->tpm_who;
        in->tpm_limit = t->tpm;
        in->est_tokens = t->est_tokens;
    }
    in->amount = t->estimate;
    in->day = t->day;
    in->month = t->month;
    in->n_scopes = t->n_scopes;
    for (int i = 0; i < t->n_scopes; i++) {
        in->scopes[i].name = t->scope_names[i];
        in->scopes[i].daily = t->daily[i];
        in->scopes[i].monthly = t->monthly[i];
    }
}

static void on_reserve_reply(void *arg, struct redisReply *r)
{
    struct reserve_wait *w = arg;
    w->answered = true;
    struct http_request *req = w->req;
    bool admitted;
    struct cl_reserve shape = {.n_asks = w->n_asks, .n_scopes = w->n_scopes};
    struct cl_reserve_result res;
    bool ok = cl_reserve_decode(r, &shape, &res) == 0;
    if (!req) {
        /* the client left while Redis answered: drop the hold, if any */
        if (!ok || res.code == CL_ADMITTED) store_defer_release(w->member);
        free(w);
        return;
    }
    struct admission_ticket *t = req->admission;
    /* w goes with the request now (on_wait_request_freed); a refusal
     * answers, which may free both at once */
    admission_resume_cb resume = w->resume;
    if (!ok) {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_event(LOG_WARN, "store_error", "the shared store refused a reservation: %.200s",
                      r->str);
        /* (the answer may have been lost after Redis held it) */
        store_defer_release(w->member);
        admitted = store_down_for(req, t);
    } else {
        admitted = apply_reserve_reply(req, t, &res);
    }
    if (admitted) resume(req);
}

enum admit admission_reserve(struct http_request *req, struct route_plan *plan,
                             const struct req_facts *facts, enum api_kind kind,
                             admission_resume_cb resume)
{
    const struct config *cfg = req->config;
    const struct principal *p = req->principal;
    if (!model_allowed(p, facts->model, plan->model)) {
        char msg[400];
        snprintf(msg, sizeof msg, "The key '%s' may not use the model '%s'.", p->name, facts->model);
        http_respond_error(req, GW_ERR_FORBIDDEN, msg, "model");
        return ADMIT_REFUSED;
    }
    if (!state) return ADMIT_OK;

    int64_t now_s = clock_wall_s();
    int64_t day = period_day(now_s), month = period_month(now_s);
    nanos_t day_spent = spend_window_spent(&state->global.day, day);
    nanos_t month_spent = spend_window_spent(&state->global.month, month);
    if (cfg->budget.enabled && alerts_active(cfg, ALERT_BLOCK, day_spent, month_spent)) {
        refuse_budget(req, "The gateway's budget alert threshold with action 'block' has been "
                           "reached: requests are refused until the budget period ends.");
        return ADMIT_REFUSED;
    }
    if (cfg->budget.enabled && alerts_active(cfg, ALERT_DISABLE_PAID, day_spent, month_spent) &&
        keep_free_candidates(plan) == 0) {
        refuse_budget(req, "Paid providers are disabled by a budget alert, and no free provider "
                           "serves this model.");
        return ADMIT_REFUSED;
    }

    /* The estimate: the dearest candidate, since failover may reach it. */
    bool embeddings = kind == API_EMBEDDINGS;
    int64_t prompt = scan_estimate_tokens(facts->text_bytes);
    nanos_t estimate = 0;
    int64_t est_tokens = prompt;
    for (size_t i = 0; i < plan->n; i++) {
        const struct candidate *c = &plan->items[i];
        nanos_t e = pricing_estimate(c->model, c->provider, prompt, facts->max_tokens, facts->n,
                                     embeddings);
        if (e > estimate) estimate = e;
        int64_t tk = prompt + pricing_completion_bound(c->provider, facts->max_tokens, facts->n,
                                                       embeddings);
        if (tk > est_tokens) est_tokens = tk;
    }

    struct admission_ticket *t = ticket_of(req);
    t->estimate = estimate;
    t->est_tokens = est_tokens;
    t->day = day;
    t->month = month;

    /* Tokens per minute, charged with the estimate and corrected at the end. */
    bool rl_on = cfg->security.rate_limiting_enabled;
    int64_t tpm = p && p->tokens_per_minute ? p->tokens_per_minute
                                            : rl_on ? cfg->security.tokens_per_minute : 0;
    if (req->from_peer) tpm = 0; /* the origin node applied the caller's limits */
    t->tpm = tpm;
    t->tpm_who = p ? p->limit_key : "k:-";

    bool shared = store_enabled();
    fill_scopes(req, t, shared);
    if (!shared) return reserve_locally(req, t) ? ADMIT_OK : ADMIT_REFUSED;

    struct cl_reserve in;
    build_reserve(req, t, &in);
    char *member = arena_alloc(&req->arena, CL_MEMBER_MAX);
    if (!cl_hold_member(&in, req->id, member, CL_MEMBER_MAX)) {
        /* (scope names are bounded far below this) */
        http_respond_error(req, GW_ERR_INTERNAL, "The reservation could not be built.", NULL);
        return ADMIT_REFUSED;
    }
    in.member = t->member = member;
    struct cl_argv a;
    cl_reserve_argv(&in, &a);
    struct reserve_wait *w = xcalloc(1, sizeof *w);
    w->req = req;
    w->resume = resume;
    w->n_asks = in.n_asks;
    w->n_scopes = in.n_scopes;
    snprintf(w->member, sizeof w->member, "%s", member);
    if (redis_conn_batch(api_store_conn(req->worker), SCRIPT_RESERVE, a.argc, a.argv, a.lens,
                         on_reserve_reply, w) != 0) {
        free(w);
        return store_down_for(req, t) ? ADMIT_OK : ADMIT_REFUSED;
    }
    arena_on_free(&req->arena, on_wait_request_freed, w);
    return ADMIT_WAIT;
}

/* ---- once the request is over ---- */

/* What a settlement sent to Redis needs when its answer comes. */
struct settle_wait {
    struct cl_settle *in; /* cl_settle_copy */
    struct spend_counter *counters[SPEND_MAX_SCOPES];
};

static void on_settle_reply(void *arg, struct redisReply *r)
{
    struct settle_wait *w = arg;
    struct cl_settle_result res;
    const struct cl_settle *in = w->in;
    if (cl_settle_decode(r, in->n_scopes, &res) == 0) {
        for (int i = 0; i < in->n_scopes; i++) {
            if (res.day_spent[i] >= 0) spend_window_set(&w->counters[i]->day, in->day, res.day_spent[i]);
            if (res.month_spent[i] >= 0)
                spend_window_set(&w->counters[i]->month, in->month, res.month_spent[i]);
        }
    } else {
        /* lost or refused: the watcher retries it (a settled hold is gone,
         * so it can never count twice) */
        store_defer_settle(in);
    }
    free(w->in);
    free(w);
}

static void settle_shared(struct http_request *req, struct admission_ticket *t, nanos_t cost,
                          nanos_t first_cost, int64_t day, int64_t month)
{
    struct cl_settle in = {
        .prefix = store_prefix(),
        .member = t->member,
        .cost = cost,
        .first_cost = first_cost,
        .day = day,
        .month = month,
        .tpm_who = t->tpm_who,
        .tpm_limit = t->tpm,
        .tpm_delta = t->tpm_who ? req->acct.tokens_in + req->acct.tokens_out - t->est_tokens : 0,
        .n_scopes = t->n_scopes,
    };
    for (int i = 0; i < t->n_scopes; i++) in.scopes[i] = t->scope_names[i];
    /* the local view meanwhile (the answer's figures replace it) */
    for (int i = 0; i < t->n_scopes; i++) {
        nanos_t c = i == 0 ? first_cost : cost;
        spend_window_add(&t->counters[i]->day, day, c);
        spend_window_add(&t->counters[i]->month, month, c);
    }
    struct settle_wait *w = xmalloc(sizeof *w);
    w->in = cl_settle_copy(&in);
    for (int i = 0; i < t->n_scopes; i++) w->counters[i] = t->counters[i];
    struct cl_argv a;
    cl_settle_argv(w->in, &a);
    if (redis_conn_batch(api_store_conn(req->worker), SCRIPT_SETTLE, a.argc, a.argv, a.lens,
                          on_settle_reply, w) != 0) {
        store_defer_settle(w->in);
        free(w->in);
        free(w);
    }
}

/* A request reserved on node-local counters while Redis was down: what it
 * spent goes to the shared counters once Redis is back. */
static void defer_local_spend(const struct admission_ticket *t, nanos_t cost, nanos_t first_cost,
                              int64_t day, int64_t month)
{
    for (int i = 0; i < t->n_scopes; i++) {
        nanos_t c = i == 0 ? first_cost : cost;
        store_defer_delta(t->scope_names[i], 'd', day, c);
        store_defer_delta(t->scope_names[i], 'm', month, c);
    }
}

void admission_finish(struct http_request *req)
{
    struct admission_ticket *t = req->admission;
    if (!t || !state) return;
    req->admission = NULL;
    if (!t->reserved) return;
    const struct config *cfg = req->config;
    const struct principal *p = req->principal;
    nanos_t cost = req->acct.cost_nanos > 0 ? req->acct.cost_nanos : 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    int64_t now_s = now_ms / 1000;
    int64_t day = period_day(now_s), month = period_month(now_s);

    nanos_t before_day = 0, before_month = 0;
    /* Served by a peer: the caller's key and tenant pay here, the peer
     * counts the provider's bill as its own spend (money counted once). */
    bool peer = req->acct.via_peer;
    nanos_t first_cost = peer ? 0 : cost;
    if (t->shared) {
        before_day = spend_window_spent(&state->global.day, day);
        before_month = spend_window_spent(&state->global.month, month);
        settle_shared(req, t, cost, first_cost, day, month);
    } else {
        spend_settle_split(&t->res, first_cost, cost, day, month, &before_day, &before_month);
        if (store_enabled()) defer_local_spend(t, cost, first_cost, day, month);
    }
    if (cost > 0) {
        if (req->acct.provider) {
            struct spend_counter *c = spend_table_get(state->by_provider, req->acct.provider);
            spend_window_add(&c->day, day, cost);
            spend_window_add(&c->month, month, cost);
        }
        if (req->acct.model) {
            struct spend_counter *c = spend_table_get(state->by_model, req->acct.model);
            spend_window_add(&c->day, day, cost);
            spend_window_add(&c->month, month, cost);
        }
        if (cfg->budget.enabled && !peer)
            alerts_on_spend(state->alerts, cfg, before_day, before_month, cost, day, month);
    }
    if (t->tpm_who && !t->shared) {
        int64_t real = req->acct.tokens_in + req->acct.tokens_out;
        rl_adjust_tokens(state->rl, t->tpm_who, t->tpm, real - t->est_tokens, clock_mono_us());
    }
    if (!cfg->budget.track_costs) return;
    struct ledger_record r = {
        .ts_ms = now_ms,
        .request_id = req->id,
        .key_id = p ? p->key_id : NULL,
        .tenant = p ? p->tenant : NULL,
        .model = req->acct.model,
        .provider = req->acct.provider,
        .tokens_in = req->acct.tokens_in,
        .tokens_out = req->acct.tokens_out,
        .cost_nanos = cost,
        .estimated = req->acct.estimated,
        .status = req->status,
        .via_peer = peer,
        .route = req->acct.route,
        .cache = req->acct.cache,
        .saved_nanos = req->acct.saved_nanos,
        .cached_tokens = req->acct.cached_tokens,
        .cache_write_tokens = req->acct.cache_write_tokens,
    };
    /* Where the request entered: the first node of its route. */
    char origin[64];
    const char *route = req->acct.route;
    if (route && *route) {
        size_t n = strcspn(route, ",");
        snprintf(origin, sizeof origin, "%.*s", (int)(n < sizeof origin ? n : sizeof origin - 1), route);
        r.origin_node = origin;
    } else {
        r.origin_node = cfg->node.id;
    }
    r.node_id = cfg->node.id;
    ledger_append(state->ledger, &r);
}

const char *admission_scope(struct http_request *req)
{
    const struct principal *p = req->principal;
    if (!req->config->security.auth_enabled) return "*";
    if (!p) return NULL;
    if (p->tenant && *p->tenant) return arena_concat(&req->arena, "t:", p->tenant, NULL);
    return arena_concat(&req->arena, "k:", p->key_id ? p->key_id : "", NULL);
}
