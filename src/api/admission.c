/* admission: the seam between the request flow and the money and access
 * policies. Authentication (config keys, then managed keys), request rate
 * limits per key and per client IP, model allow-lists, alert states,
 * token rate limits and budget reservation before a request is sent; its
 * settlement and ledger record once it is over. The policies themselves
 * live in security/ and budget/; this file applies them to a request and
 * turns refusals into OpenAI-shaped errors. The shared state is created
 * once by admission_start, before any worker exists. */
#include "api/admission.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget/alerts.h"
#include "budget/ledger.h"
#include "budget/period.h"
#include "budget/pricing.h"
#include "budget/spend.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/str.h"
#include "http/server.h"
#include "obs/metrics.h"
#include "security/auth.h"
#include "security/keystore.h"
#include "security/ratelimit.h"

#define AUTH_MEMO_MAX 512 /* longer keys are looked up every time */

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

/* What one admitted request holds until admission_finish (arena-owned). */
struct admission_ticket {
    struct spend_reservation res;
    nanos_t estimate;
    int64_t est_tokens;
    const char *tpm_who; /* NULL when no token limit was charged */
    int64_t tpm;
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

int admission_start(const struct config *cfg, char *err, size_t errcap)
{
    struct admission_state *s = xcalloc(1, sizeof *s);
    s->ledger = ledger_open(cfg->budget.cost_db_path, err, errcap);
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
    state = s;
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

bool admission_authenticate(struct http_request *req, bool admin_required)
{
    const struct config *cfg = req->config;
    struct principal *p = NULL;
    if (cfg->security.auth_enabled) {
        const char *presented = auth_presented_key(http_header_get(req, "authorization"),
                                                   http_header_get(req, "x-api-key"));
        const struct config_api_key *k = find_config_key(req, presented);
        struct key_view *v = NULL;
        if (k) p = principal_from_config(req, k);
        else if (presented && state) v = keystore_find(state->keys, presented, &req->arena);
        const char *why = "Missing or invalid API key. Send it as 'Authorization: Bearer KEY' "
                          "or 'x-api-key: KEY'.";
        if (v && v->revoked_at) {
            why = "This API key has been revoked.";
            v = NULL;
        } else if (v && v->expires_at && v->expires_at <= clock_wall_s()) {
            why = "This API key has expired.";
            v = NULL;
        }
        if (v) p = principal_from_view(req, v);
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

    /* The key's request limits, then the client address's, under one lock
     * of the table; the headers describe the key's when it has any. */
    bool rl_on = cfg->security.rate_limiting_enabled;
    struct rl_ask asks[2];
    int n = 0, key_ask = -1;
    if (p && (rl_on ? cfg->security.rl_by_api_key : true)) {
        asks[n] = (struct rl_ask){
            .who = p->limit_key,
            .per_hour = p->rate_limit_per_hour ? p->rate_limit_per_hour
                                               : rl_on ? cfg->security.default_limit_per_hour : 0,
            .per_minute = p->requests_per_minute ? p->requests_per_minute
                                                 : rl_on ? cfg->security.requests_per_minute : 0,
        };
        key_ask = n++;
    }
    if (rl_on && cfg->security.rl_by_ip)
        asks[n++] = (struct rl_ask){ip_limit_key(req), cfg->security.default_limit_per_hour,
                                    cfg->security.requests_per_minute};
    if (n == 0) return true;
    struct rl_decision d[2];
    int refused = rl_take_requests(state->rl, asks, n, clock_mono_us(), d);
    if (refused == key_ask && refused >= 0) {
        char what[200];
        snprintf(what, sizeof what, "key '%s'", p->name);
        refuse_rate(req, &d[refused], what, false);
        return false;
    }
    if (refused >= 0) {
        refuse_rate(req, &d[refused], "this client address", false);
        return false;
    }
    int shown = key_ask >= 0 && d[key_ask].limit ? key_ask : n - 1;
    if (d[shown].limit) add_headers(req, rl_headers(req, &d[shown]));
    return true;
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

static void refuse_budget(struct http_request *req, const char *msg)
{
    http_respond_error_h(req, GW_ERR_BUDGET_EXCEEDED, msg, NULL, "x-should-retry: false\r\n");
    metrics_budget_rejected();
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

bool admission_reserve(struct http_request *req, struct route_plan *plan,
                       const struct req_facts *facts, enum api_kind kind)
{
    const struct config *cfg = req->config;
    const struct principal *p = req->principal;
    if (!model_allowed(p, facts->model, plan->model)) {
        char msg[400];
        snprintf(msg, sizeof msg, "The key '%s' may not use the model '%s'.", p->name, facts->model);
        http_respond_error(req, GW_ERR_FORBIDDEN, msg, "model");
        return false;
    }
    if (!state) return true;

    int64_t now_s = clock_wall_s();
    int64_t day = period_day(now_s), month = period_month(now_s);
    nanos_t day_spent = spend_window_spent(&state->global.day, day);
    nanos_t month_spent = spend_window_spent(&state->global.month, month);
    if (cfg->budget.enabled && alerts_active(cfg, ALERT_BLOCK, day_spent, month_spent)) {
        refuse_budget(req, "The gateway's budget alert threshold with action 'block' has been "
                           "reached: requests are refused until the budget period ends.");
        return false;
    }
    if (cfg->budget.enabled && alerts_active(cfg, ALERT_DISABLE_PAID, day_spent, month_spent) &&
        keep_free_candidates(plan) == 0) {
        refuse_budget(req, "Paid providers are disabled by a budget alert, and no free provider "
                           "serves this model.");
        return false;
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
        int64_t t = prompt + pricing_completion_bound(c->provider, facts->max_tokens, facts->n,
                                                      embeddings);
        if (t > est_tokens) est_tokens = t;
    }

    struct admission_ticket *t = arena_alloc(&req->arena, sizeof *t);
    memset(t, 0, sizeof *t);
    t->estimate = estimate;
    t->est_tokens = est_tokens;

    /* Tokens per minute, charged with the estimate and corrected at the end. */
    bool rl_on = cfg->security.rate_limiting_enabled;
    int64_t tpm = p && p->tokens_per_minute ? p->tokens_per_minute
                                            : rl_on ? cfg->security.tokens_per_minute : 0;
    if (req->from_peer) tpm = 0; /* the origin node applied the caller's limits */
    if (tpm > 0) {
        const char *who = p ? p->limit_key : "k:-";
        struct rl_decision d;
        if (!rl_take_tokens(state->rl, who, tpm, est_tokens, clock_mono_us(), &d)) {
            refuse_rate(req, &d, p ? "this key" : "this gateway", true);
            return false;
        }
        t->tpm_who = who;
        t->tpm = tpm;
    }

    struct spend_scope scopes[3];
    const char *names[3];
    int n = 0;
    scopes[n] = (struct spend_scope){&state->global, cfg->budget.enabled ? cfg->budget.daily_limit : 0,
                                     cfg->budget.enabled ? cfg->budget.monthly_limit : 0};
    names[n++] = "the gateway";
    if (p) {
        scopes[n] = (struct spend_scope){spend_table_get(state->by_key, p->key_id), p->daily_limit,
                                         p->monthly_limit};
        names[n++] = "this key";
        if (p->tenant) {
            const struct config_tenant *tc = find_tenant(cfg, p->tenant);
            scopes[n] = (struct spend_scope){spend_table_get(state->by_tenant, p->tenant),
                                             tc ? tc->daily_limit : 0, tc ? tc->monthly_limit : 0};
            names[n++] = "this key's tenant";
        }
    }
    int failed = 0;
    bool monthly = false;
    if (spend_reserve(scopes, n, estimate, day, month, &t->res, &failed, &monthly) != 0) {
        if (t->tpm_who)
            rl_adjust_tokens(state->rl, t->tpm_who, t->tpm, -est_tokens, clock_mono_us());
        char est[32], msg[300];
        money_format_usd(estimate, est, sizeof est);
        snprintf(msg, sizeof msg, "The %s budget of %s is spent: this request (estimated at $%s) "
                 "would exceed it. It resets at the start of the next %s (UTC).",
                 monthly ? "monthly" : "daily", names[failed], est, monthly ? "month" : "day");
        refuse_budget(req, msg);
        return false;
    }
    req->admission = t;
    return true;
}

/* ---- once the request is over ---- */

void admission_finish(struct http_request *req)
{
    struct admission_ticket *t = req->admission;
    if (!t || !state) return;
    req->admission = NULL;
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
    spend_settle_split(&t->res, peer ? 0 : cost, cost, day, month, &before_day, &before_month);
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
    if (t->tpm_who) {
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
    ledger_append(state->ledger, &r);
}
