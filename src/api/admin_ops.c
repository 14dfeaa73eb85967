/* admin_ops: the operator's endpoints beyond /metrics: GET /aiproxy/status
 * (node, uptime, providers with health, circuit, latency, in-flight, the
 * response cache), GET /aiproxy/admin/stats (the
 * dashboard's figures) and POST /aiproxy/admin/reload (asks the main
 * thread to reload and answers with the outcome). Nothing here shows a
 * credential: provider endpoints are shown without userinfo or query. */
#include "api/context_api.h"
#include "api/admin_ops.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "api/admission.h"
#include "api/mesh_api.h"
#include "budget/ledger.h"
#include "budget/period.h"
#include "budget/spend.h"
#include "cache/cache.h"
#include "cluster/redis.h"
#include "cluster/store.h"
#include "config/config.h"
#include "context/buffer.h"
#include "core/clock.h"
#include "core/dburl.h"
#include "core/money.h"
#include "http/server.h"
#include "obs/metrics.h"
#include "obs/reload.h"
#include "obs/timeline.h"
#include "obs/version.h"
#include "routing/circuit.h"
#include "routing/stats.h"

#define RELOAD_WAIT_MS 20000
#define RELOAD_POLL_MS 20

/* ---- shared pieces ---- */

static double usd(nanos_t n)
{
    return (double)n / 1e9; /* display only: JSON numbers for tools and the dashboard */
}

static void respond_json(struct http_request *req, int status, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    http_respond(req, status, "application/json", "Cache-Control: no-store\r\n", text, strlen(text));
    free(text);
}

/* The health word people read: unavailable (config or discovery says so),
 * down (circuit open), degraded (half-open, or failures in the recent
 * window), healthy, unknown (no attempt yet). */
const char *admin_ops_provider_health(const struct config *cfg, const struct config_provider *p,
                                      int64_t now_ms, enum circuit_state *st_out)
{
    enum circuit_state st = circuit_state(p->stats, cfg->routing.unhealthy_threshold, now_ms);
    *st_out = st;
    if (!p->available) return "unavailable";
    if (!p->stats) return "unknown";
    if (st == CIRCUIT_OPEN) return "down";
    if (st == CIRCUIT_HALF_OPEN) return "degraded";
    int failures, total;
    provider_stats_window(p->stats, now_ms, &failures, &total);
    if (total == 0) return atomic_load(&p->stats->attempts) ? "healthy" : "unknown";
    return failures * 4 > total ? "degraded" : "healthy";
}

static json_t *ms_or_null(long long us)
{
    return us > 0 ? json_integer((us + 500) / 1000) : json_null();
}

static json_t *provider_json(const struct config *cfg, const struct config_provider *p,
                             int64_t now_ms)
{
    enum circuit_state st;
    const char *health = admin_ops_provider_health(cfg, p, now_ms, &st);
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(p->name));
    json_object_set_new(o, "type", json_string(provider_type_name(p->type)));
    json_object_set_new(o, "available", json_boolean(p->available));
    if (!p->available && p->unavailable_reason)
        json_object_set_new(o, "reason", json_string(p->unavailable_reason));
    json_object_set_new(o, "health", json_string(health));
    json_object_set_new(o, "circuit", json_string(circuit_state_name(st)));
    json_object_set_new(o, "models", json_integer((json_int_t)p->n_models));
    json_object_set_new(o, "priority", json_integer(p->priority));
    if (p->stats) {
        const struct provider_stats *s = p->stats;
        int failures, total;
        provider_stats_window(s, now_ms, &failures, &total);
        json_object_set_new(o, "avg_latency_ms", ms_or_null(atomic_load(&s->ewma_latency_us)));
        json_object_set_new(o, "avg_ttft_ms", ms_or_null(atomic_load(&s->ewma_ttft_us)));
        json_object_set_new(o, "in_flight", json_integer(atomic_load(&s->in_flight)));
        json_object_set_new(o, "max_concurrency", p->max_concurrency > 0
                                                      ? json_integer(p->max_concurrency) : json_null());
        json_object_set_new(o, "attempts", json_integer((json_int_t)atomic_load(&s->attempts)));
        json_object_set_new(o, "failures", json_integer((json_int_t)atomic_load(&s->failures)));
        json_object_set_new(o, "timeouts", json_integer((json_int_t)atomic_load(&s->timeouts)));
        json_object_set_new(o, "recent_failures", json_integer(failures));
        json_object_set_new(o, "recent_attempts", json_integer(total));
    }
    return o;
}

static json_t *budget_json(const struct config *cfg)
{
    struct spend_counter *g = admission_global_spend();
    json_t *o = json_object();
    int64_t now = clock_wall_s();
    int64_t day = period_day(now), month = period_month(now);
    nanos_t ds = g ? spend_window_spent(&g->day, day) : 0;
    nanos_t ms = g ? spend_window_spent(&g->month, month) : 0;
    nanos_t dl = cfg->budget.enabled ? cfg->budget.daily_limit : 0;
    nanos_t ml = cfg->budget.enabled ? cfg->budget.monthly_limit : 0;
    json_object_set_new(o, "today_spent", json_real(usd(ds)));
    json_object_set_new(o, "daily_limit", dl ? json_real(usd(dl)) : json_null());
    json_object_set_new(o, "month_spent", json_real(usd(ms)));
    json_object_set_new(o, "monthly_limit", ml ? json_real(usd(ml)) : json_null());
    return o;
}

void admin_metrics_extra(const struct config *cfg, struct metrics_extra *x)
{
    memset(x, 0, sizeof *x);
    struct spend_counter *g = admission_global_spend();
    int64_t now = clock_wall_s();
    if (g) {
        x->day_spent = spend_window_spent(&g->day, period_day(now));
        x->month_spent = spend_window_spent(&g->month, period_month(now));
    }
    x->day_limit = cfg->budget.enabled ? cfg->budget.daily_limit : 0;
    x->month_limit = cfg->budget.enabled ? cfg->budget.monthly_limit : 0;
    struct store_status st;
    store_status_get(&st);
    if (st.enabled) {
        struct redis_stats rs;
        redis_stats_get(&rs);
        x->have_store = true;
        x->store_up = st.up;
        x->store_errors = (long long)rs.errors;
        x->store_timeouts = (long long)rs.timeouts;
        x->store_reconciliations = (long long)st.reconciliations;
        x->store_deferred = (long long)st.deferred;
    }
    struct ledger *l = admission_ledger();
    if (l) {
        x->have_ledger = true;
        x->ledger_queue = (long long)ledger_queue_depth(l);
        x->ledger_committed = (long long)ledger_committed(l);
        x->ledger_dropped = (long long)ledger_dropped(l);
        x->ledger_db_up = ledger_backend_up(l);
        x->ledger_db_committed = (long long)ledger_db_committed(l);
        x->ledger_spooled = (long long)ledger_spooled(l);
        x->ledger_spool_depth = (long long)ledger_spool_depth(l);
    }
    struct cache_stats cs;
    cache_stats_get(cfg, &cs);
    if (cs.enabled) {
        x->have_cache = true;
        x->cache_hits = cs.hits;
        x->cache_semantic_hits = cs.semantic_hits;
        x->cache_misses = cs.misses;
        x->cache_stores = cs.stores;
        x->cache_entries = cs.entries;
        x->cache_bytes = cs.bytes;
        x->cache_max_bytes = cs.max_bytes;
        x->cache_evictions = cs.evictions;
        x->cache_expired = cs.expired;
        x->cache_saved = cs.saved_nanos;
        x->cache_embed_errors = cs.embed_errors;
        x->cache_backend_errors = cs.backend_errors;
        x->cache_semantic_entries = cs.semantic_entries;
    }
    struct ctx_store *ctx = context_store();
    if (cfg->context.enabled && ctx) {
        struct ctx_totals t;
        ctx_store_totals(ctx, &t);
        x->have_context = true;
        x->context_projects = t.projects;
        x->context_files = t.files;
        x->context_bytes = t.bytes;
        x->context_injections = t.injections;
        x->context_tokens_injected = t.tokens_injected;
        x->context_tokens_saved = t.tokens_saved;
    }
}

/* The shared store (SPEC section 6): null when none is configured. */
static json_t *store_json(void)
{
    struct store_status st;
    store_status_get(&st);
    if (!st.enabled) return json_null();
    struct redis_stats rs;
    redis_stats_get(&rs);
    return json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I}", "type", "redis", "url", st.where,
                     "up", st.up, "deferred", (json_int_t)st.deferred, "reconciliations",
                     (json_int_t)st.reconciliations, "down_events", (json_int_t)st.down_events,
                     "errors", (json_int_t)rs.errors, "timeouts", (json_int_t)rs.timeouts);
}

/* The ledger: its database (URL masked), whether it answers, the spool. */
static json_t *ledger_json(const struct config *cfg)
{
    struct ledger *l = admission_ledger();
    if (!l) return json_null();
    char where[400];
    if (cfg->budget.cost_db_url) dburl_masked(cfg->budget.cost_db_url, where, sizeof where);
    else snprintf(where, sizeof where, "sqlite:///%s", cfg->budget.cost_db_path ? cfg->budget.cost_db_path : "");
    return json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I}", "type",
                     cfg->budget.cost_db_url ? "postgres" : "sqlite", "url", where, "up",
                     ledger_backend_up(l), "queued", (json_int_t)ledger_queue_depth(l),
                     "committed", (json_int_t)ledger_committed(l), "spooled",
                     (json_int_t)ledger_spooled(l), "spool_depth", (json_int_t)ledger_spool_depth(l));
}

/* The response cache (SPEC section 7): settings and counters. The figures
 * of entries and bytes are this node's memory store (with backend redis,
 * its in-memory front); the counters are this node's since it started. */
/* The context delta buffer (SPEC section 8): this node's totals. */
static json_t *context_json(const struct config *cfg)
{
    json_t *c = json_object();
    json_object_set_new(c, "enabled", json_boolean(cfg->context.enabled));
    struct ctx_totals t = {0};
    struct ctx_store *ctx = context_store();
    if (ctx) ctx_store_totals(ctx, &t);
    json_object_set_new(c, "projects", json_integer(t.projects));
    json_object_set_new(c, "files", json_integer(t.files));
    json_object_set_new(c, "bytes", json_integer(t.bytes));
    json_object_set_new(c, "injections", json_integer(t.injections));
    json_object_set_new(c, "tokens_injected", json_integer(t.tokens_injected));
    json_object_set_new(c, "tokens_saved", json_integer(t.tokens_saved));
    json_object_set_new(c, "max_inject_tokens", json_integer(cfg->context.max_inject_tokens));
    return c;
}

static json_t *cache_json(const struct config *cfg)
{
    struct cache_stats cs;
    cache_stats_get(cfg, &cs);
    uint64_t hits = cs.hits + cs.semantic_hits, asked = hits + cs.misses;
    json_t *sem = json_object();
    json_object_set_new(sem, "enabled", json_boolean(cs.semantic));
    json_object_set_new(sem, "embedding_model", cfg->cache.semantic.embedding_model
                                                    ? json_string(cfg->cache.semantic.embedding_model)
                                                    : json_null());
    json_object_set_new(sem, "threshold", json_real(cfg->cache.semantic.threshold));
    json_object_set_new(sem, "entries", json_integer((json_int_t)cs.semantic_entries));
    json_t *o = json_object();
    json_object_set_new(o, "enabled", json_boolean(cs.enabled));
    json_object_set_new(o, "mode", json_string(cfg->cache.mode_always ? "always" : "opt_in"));
    json_object_set_new(o, "backend", json_string(cfg->cache.backend_redis ? "redis" : "memory"));
    json_object_set_new(o, "ttl_s", json_integer(cfg->cache.ttl_ms / 1000));
    json_object_set_new(o, "semantic", sem);
    json_object_set_new(o, "entries", json_integer((json_int_t)cs.entries));
    json_object_set_new(o, "bytes", json_integer((json_int_t)cs.bytes));
    json_object_set_new(o, "max_bytes", json_integer((json_int_t)cs.max_bytes));
    json_object_set_new(o, "hits", json_integer((json_int_t)cs.hits));
    json_object_set_new(o, "semantic_hits", json_integer((json_int_t)cs.semantic_hits));
    json_object_set_new(o, "misses", json_integer((json_int_t)cs.misses));
    json_object_set_new(o, "hit_rate", json_real(asked ? (double)hits / (double)asked : 0.0));
    json_object_set_new(o, "stores", json_integer((json_int_t)cs.stores));
    json_object_set_new(o, "not_stored", json_integer((json_int_t)cs.not_stored));
    json_object_set_new(o, "evictions", json_integer((json_int_t)cs.evictions));
    json_object_set_new(o, "expired", json_integer((json_int_t)cs.expired));
    json_object_set_new(o, "saved_usd", json_real(usd(cs.saved_nanos)));
    json_object_set_new(o, "embed_errors", json_integer((json_int_t)cs.embed_errors));
    json_object_set_new(o, "backend_errors", json_integer((json_int_t)cs.backend_errors));
    return o;
}

static json_t *node_json(const struct config *cfg)
{
    json_t *n = json_object();
    int64_t now = clock_wall_s();
    json_object_set_new(n, "id", json_string(cfg->node.id ? cfg->node.id : ""));
    if (cfg->node.name) json_object_set_new(n, "name", json_string(cfg->node.name));
    json_object_set_new(n, "type", cfg->node.type ? json_string(cfg->node.type) : json_null());
    json_object_set_new(n, "region", cfg->node.region ? json_string(cfg->node.region) : json_null());
    json_object_set_new(n, "uptime_seconds", json_integer(now - metrics_start_time()));
    return n;
}

/* ---- GET /aiproxy/status ---- */

void admin_ops_status(struct http_request *req)
{
    const struct config *cfg = req->config;
    int64_t now_ms = clock_mono_ms();
    json_t *doc = json_object();
    json_t *node = node_json(cfg);
    json_object_set_new(node, "version", json_string(AIPROXY_VERSION));
    json_object_set_new(node, "started_at", json_integer(metrics_start_time()));
    char listen[300];
    snprintf(listen, sizeof listen, "%s:%d", cfg->server.listen_host, cfg->server.listen_port);
    json_object_set_new(node, "listen", json_string(listen));
    json_object_set_new(node, "config_source", json_string(cfg->source ? cfg->source : "defaults"));
    json_object_set_new(node, "ready", json_boolean(!http_server_is_draining(req)));
    struct reload_stats rs;
    reload_stats(&rs);
    json_object_set_new(node, "config_generation", json_integer((json_int_t)rs.generation));
    json_object_set_new(node, "reloads", json_pack("{s:I, s:I}", "ok", (json_int_t)rs.ok,
                                                   "failed", (json_int_t)rs.failed));
    json_object_set_new(doc, "node", node);
    struct metrics_totals t;
    metrics_totals(&t);
    json_object_set_new(doc, "requests",
                        json_pack("{s:I, s:I, s:I, s:I}", "total", (json_int_t)t.requests, "errors",
                                  (json_int_t)t.errors, "in_flight", (json_int_t)t.in_flight,
                                  "open_streams", (json_int_t)t.open_streams));
    json_t *ps = json_array();
    for (size_t i = 0; i < cfg->n_providers; i++)
        json_array_append_new(ps, provider_json(cfg, &cfg->providers[i], now_ms));
    json_object_set_new(doc, "providers", ps);
    json_object_set_new(doc, "budget", budget_json(cfg));
    json_object_set_new(doc, "store", store_json());
    json_object_set_new(doc, "ledger", ledger_json(cfg));
    json_object_set_new(doc, "cache", cache_json(cfg));
    json_object_set_new(doc, "context", context_json(cfg));
    json_object_set_new(doc, "strategy", json_string(routing_strategy_name(cfg->routing.strategy)));
    respond_json(req, 200, doc);
}

/* ---- GET /aiproxy/admin/stats ---- */

struct cost_ctx {
    json_t *list;
    int64_t day, month;
};

static void on_cost(void *arg, const char *name, struct spend_counter *c)
{
    struct cost_ctx *cc = arg;
    nanos_t d = spend_window_spent(&c->day, cc->day), m = spend_window_spent(&c->month, cc->month);
    if (!d && !m) return;
    json_array_append_new(cc->list, json_pack("{s:s, s:f, s:f}", "name", name, "today", usd(d),
                                              "month", usd(m)));
}

static json_t *cost_list(const char *kind, int64_t day, int64_t month)
{
    struct cost_ctx cc = {.list = json_array(), .day = day, .month = month};
    struct spend_table *t = admission_spend_table(kind);
    if (t) spend_table_each(t, on_cost, &cc);
    return cc.list;
}

static json_t *num_or_null(double v)
{
    return v < 0 ? json_null() : json_real(v);
}

void admin_ops_stats(struct http_request *req)
{
    const struct config *cfg = req->config;
    int64_t now = clock_wall_s(), now_ms = clock_mono_ms();
    json_t *doc = json_object();
    json_object_set_new(doc, "now", json_integer(now));
    json_object_set_new(doc, "node", node_json(cfg));
    struct metrics_totals t;
    metrics_totals(&t);
    json_object_set_new(doc, "totals",
                        json_pack("{s:I, s:I, s:I, s:I, s:f, s:I, s:I}", "requests",
                                  (json_int_t)t.requests, "errors", (json_int_t)t.errors,
                                  "in_flight", (json_int_t)t.in_flight, "open_streams",
                                  (json_int_t)t.open_streams, "cost_usd", usd(t.cost),
                                  "tokens_in", (json_int_t)t.tokens_in, "tokens_out",
                                  (json_int_t)t.tokens_out));
    /* The last 120 seconds, and the last hour by minute. */
    enum { N_SEC = 120 };
    struct timeline_point sec[N_SEC], min[TL_MINUTES];
    timeline_seconds(now, N_SEC, sec);
    timeline_minutes(now, TL_MINUTES, min);
    json_t *s = json_array();
    for (int i = 0; i < N_SEC; i++)
        json_array_append_new(s, json_pack("[I, I, I]", (json_int_t)sec[i].t,
                                           (json_int_t)sec[i].requests, (json_int_t)sec[i].errors));
    json_object_set_new(doc, "per_second", s);
    json_t *m = json_array();
    for (int i = 0; i < TL_MINUTES; i++)
        json_array_append_new(m, json_pack("{s:I, s:I, s:I, s:f, s:o, s:o, s:o, s:o, s:o}", "t",
                                           (json_int_t)min[i].t, "requests",
                                           (json_int_t)min[i].requests, "errors",
                                           (json_int_t)min[i].errors, "cost_usd", usd(min[i].cost),
                                           "p50_ms", num_or_null(min[i].p50_ms), "p95_ms",
                                           num_or_null(min[i].p95_ms), "p99_ms",
                                           num_or_null(min[i].p99_ms), "ttft_p50_ms",
                                           num_or_null(min[i].ttft_p50_ms), "ttft_p95_ms",
                                           num_or_null(min[i].ttft_p95_ms)));
    json_object_set_new(doc, "per_minute", m);
    json_object_set_new(doc, "last_hour",
                        json_pack("{s:o, s:o, s:o, s:o, s:o}",
                                  "p50_ms", num_or_null(timeline_percentile(now, 60, 50, false)),
                                  "p95_ms", num_or_null(timeline_percentile(now, 60, 95, false)),
                                  "p99_ms", num_or_null(timeline_percentile(now, 60, 99, false)),
                                  "ttft_p50_ms", num_or_null(timeline_percentile(now, 60, 50, true)),
                                  "ttft_p95_ms", num_or_null(timeline_percentile(now, 60, 95, true))));
    json_object_set_new(doc, "budget", budget_json(cfg));
    int64_t day = period_day(now), month = period_month(now);
    json_object_set_new(doc, "cost_by_provider", cost_list("provider", day, month));
    json_object_set_new(doc, "cost_by_model", cost_list("model", day, month));
    json_t *ps = json_array();
    for (size_t i = 0; i < cfg->n_providers; i++)
        json_array_append_new(ps, provider_json(cfg, &cfg->providers[i], now_ms));
    json_object_set_new(doc, "providers", ps);
    struct timeline_error errs[TL_ERRORS];
    size_t n = timeline_errors(errs, TL_ERRORS);
    json_t *el = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(el, json_pack("{s:I, s:s, s:s, s:s, s:s, s:i, s:s}", "ts_ms",
                                            (json_int_t)errs[i].ts_ms, "request_id",
                                            errs[i].request_id, "path", errs[i].path, "model",
                                            errs[i].model, "provider", errs[i].provider, "status",
                                            errs[i].status, "message", errs[i].message));
    json_object_set_new(doc, "recent_errors", el);
    json_object_set_new(doc, "cache", cache_json(cfg));
    json_object_set_new(doc, "context", context_json(cfg));
    json_object_set_new(doc, "mesh_enabled", json_boolean(cfg->node.mesh_enabled));
    json_object_set_new(doc, "mesh_peers", mesh_api_peers_json());
    respond_json(req, 200, doc);
}

/* ---- POST /aiproxy/admin/reload ---- */

struct reload_wait {
    struct http_request *req;
    struct event *timer;
    uint64_t ticket;
    int64_t deadline_ms;
};

static void free_timer(void *ev)
{
    event_free(ev);
}

static void on_reload_abort(void *data)
{
    struct reload_wait *w = data;
    event_del(w->timer); /* the arena frees it with the request */
}

static void on_reload_poll(evutil_socket_t fd, short what, void *arg)
{
    struct reload_wait *w = arg;
    struct http_request *req = w->req;
    bool ok;
    uint64_t gen;
    char *msg = arena_alloc(&req->arena, RELOAD_MESSAGE_MAX);
    if (!reload_outcome(w->ticket, &ok, msg, RELOAD_MESSAGE_MAX, &gen)) {
        if (clock_mono_ms() > w->deadline_ms) {
            http_respond_error(req, GW_ERR_TIMEOUT, "The reload did not finish in time; see "
                               "the node's log.", NULL);
            return;
        }
        struct timeval tv = {0, RELOAD_POLL_MS * 1000};
        evtimer_add(w->timer, &tv);
        return;
    }
    req->on_abort = NULL;
    if (ok) {
        json_t *doc = json_pack("{s:s, s:s, s:I}", "status", "reloaded", "source", msg,
                                "generation", (json_int_t)gen);
        respond_json(req, 200, doc);
        return;
    }
    json_t *errors = json_array();
    for (char *save = NULL, *line = strtok_r(msg, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
        json_array_append_new(errors, json_string(line));
    json_t *doc = json_pack("{s:{s:s, s:s, s:n, s:s}, s:o}", "error", "message",
                            "The new configuration is invalid; the running one keeps serving.",
                            "type", "invalid_request_error", "param", "code", "config_invalid",
                            "errors", errors);
    respond_json(req, 422, doc);
}

void admin_ops_reload(struct http_request *req)
{
    struct reload_wait *w = arena_alloc(&req->arena, sizeof *w);
    w->req = req;
    w->timer = evtimer_new(http_worker_base(req->worker), on_reload_poll, w);
    arena_on_free(&req->arena, free_timer, w->timer);
    w->deadline_ms = clock_mono_ms() + RELOAD_WAIT_MS;
    req->handler_data = w;
    req->on_abort = on_reload_abort;
    w->ticket = reload_request();
    struct timeval tv = {0, RELOAD_POLL_MS * 1000};
    evtimer_add(w->timer, &tv);
}
