/* budget_api: the JSON is written with a small growable buffer in the
 * request's arena (the key and model lists have no fixed size). Spend by
 * node (?by=node) is read from the ledger by its writer thread; the worker
 * polls for the answer with a timer, never waiting on a database. */
#include "api/budget_api.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api/admission.h"
#include "budget/ledger.h"
#include "budget/period.h"
#include "budget/spend.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "http/server.h"
#include "security/keystore.h"

#define BUDGET_MAX_BODY (8 * 1024 * 1024) /* past it, lists are cut short */

struct out {
    struct arena *arena;
    char *buf;
    size_t len, cap;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full) return;
    if (o->len + n + 1 > BUDGET_MAX_BODY) {
        o->full = true;
        return;
    }
    if (o->len + n + 1 > o->cap) {
        size_t ncap = o->cap ? o->cap * 2 : 4096;
        while (ncap < o->len + n + 1) ncap *= 2;
        char *nb = arena_alloc(o->arena, ncap);
        if (o->len) memcpy(nb, o->buf, o->len);
        o->buf = nb;
        o->cap = ncap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

/* A string literal, its length counted by the compiler. */
#define put_lit(o, lit) put((o), (lit), sizeof(lit) - 1)

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void put_str(struct out *o, const char *s)
{
    char tmp[1200];
    struct jsonw w;
    jsonw_init(&w, tmp, sizeof tmp);
    if (s) jsonw_str(&w, s);
    else jsonw_raw(&w, "null");
    put(o, tmp, jsonw_len(&w));
}

/* "name":USD,"name_nanos":N */
static void put_money(struct out *o, const char *name, nanos_t v)
{
    char usd[32];
    money_format_usd(v, usd, sizeof usd);
    putf(o, "\"%s\":%s,\"%s_nanos\":%lld", name, usd, name, (long long)v);
}

static void put_limit(struct out *o, const char *name, nanos_t limit)
{
    if (limit > 0) put_money(o, name, limit);
    else putf(o, "\"%s\":null,\"%s_nanos\":null", name, name);
}

/* {"period":..,"spent":..,"reserved":..,"limit":..,"remaining":..} */
static void put_window(struct out *o, const char *label, struct spend_window *w, int64_t period,
                       nanos_t limit)
{
    nanos_t spent = spend_window_spent(w, period), reserved = spend_window_reserved(w, period);
    putf(o, "{\"period\":\"%s\",", label);
    put_money(o, "spent", spent);
    put_lit(o, ",");
    put_money(o, "reserved", reserved);
    put_lit(o, ",");
    put_limit(o, "limit", limit);
    put_lit(o, ",");
    if (limit > 0) put_money(o, "remaining", limit > spent ? limit - spent : 0);
    else put_limit(o, "remaining", 0);
    put_lit(o, "}");
}

struct list_ctx {
    struct out *o;
    int64_t day, month;
    bool first;
    const struct config *cfg;
    const char *only; /* list only this name (a non-admin's own key) */
    const char *kind; /* "key", "tenant", ... */
};

static void key_limits(const struct config *cfg, const char *id, nanos_t *daily, nanos_t *monthly,
                       const char **name, const char **tenant, struct arena *a)
{
    *daily = *monthly = 0;
    *name = id;
    *tenant = NULL;
    for (size_t i = 0; i < cfg->security.n_api_keys; i++) {
        const struct config_api_key *k = &cfg->security.api_keys[i];
        if (k->name && strcmp(k->name, id) == 0) {
            *daily = k->daily_limit;
            *monthly = k->monthly_limit;
            *tenant = k->tenant;
            return;
        }
    }
    struct keystore *ks = admission_keystore();
    struct key_view *v = ks ? keystore_get(ks, id, a) : NULL;
    if (v) {
        *daily = v->daily_limit;
        *monthly = v->monthly_limit;
        *name = v->name;
        *tenant = v->tenant;
    }
}

static void on_entry(void *ctx, const char *name, struct spend_counter *c)
{
    struct list_ctx *l = ctx;
    if (l->only && strcmp(l->only, name) != 0) return;
    struct out *o = l->o;
    if (!l->first) put_lit(o, ",");
    l->first = false;
    put_lit(o, "{\"");
    put(o, strcmp(l->kind, "key") == 0 ? "id" : "name", strcmp(l->kind, "key") == 0 ? 2 : 4);
    put_lit(o, "\":");
    put_str(o, name);
    nanos_t daily = 0, monthly = 0;
    if (strcmp(l->kind, "key") == 0) {
        const char *kname, *tenant;
        key_limits(l->cfg, name, &daily, &monthly, &kname, &tenant, o->arena);
        put_lit(o, ",\"name\":");
        put_str(o, kname);
        put_lit(o, ",\"tenant\":");
        put_str(o, tenant);
    } else if (strcmp(l->kind, "tenant") == 0) {
        for (size_t i = 0; i < l->cfg->budget.n_tenants; i++)
            if (strcmp(l->cfg->budget.tenants[i].name, name) == 0) {
                daily = l->cfg->budget.tenants[i].daily_limit;
                monthly = l->cfg->budget.tenants[i].monthly_limit;
            }
    }
    put_lit(o, ",");
    put_money(o, "today", spend_window_spent(&c->day, l->day));
    put_lit(o, ",");
    put_money(o, "month", spend_window_spent(&c->month, l->month));
    if (strcmp(l->kind, "key") == 0 || strcmp(l->kind, "tenant") == 0) {
        put_lit(o, ",");
        put_limit(o, "daily_limit", daily);
        put_lit(o, ",");
        put_limit(o, "monthly_limit", monthly);
    }
    put_lit(o, "}");
}

static void put_list(struct out *o, const char *field, const char *kind, int64_t day, int64_t month,
                     const struct config *cfg, const char *only)
{
    putf(o, ",\"%s\":[", field);
    struct spend_table *t = admission_spend_table(kind);
    struct list_ctx l = {.o = o, .day = day, .month = month, .first = true, .cfg = cfg,
                         .only = only, .kind = kind};
    if (t) spend_table_each(t, on_entry, &l);
    put_lit(o, "]");
}

/* ---- GET /v1/budget?by=node ---- */

#define BY_NODE_POLL_MS 5
#define BY_NODE_WAIT_MS 10000

struct by_node_wait {
    struct http_request *req;
    struct event *timer;
    struct ledger_query *q;
    int64_t deadline_ms, day, month, now;
};

static void by_node_cleanup(void *data)
{
    struct by_node_wait *w = data;
    event_free(w->timer);
    ledger_query_release(w->q); /* the writer may still hold it: refcounted */
}

static void by_node_abort(void *data)
{
    struct by_node_wait *w = data;
    event_del(w->timer); /* the arena's cleanup frees it with the request */
}

static void by_node_answer(struct by_node_wait *w)
{
    struct http_request *req = w->req;
    const struct ledger_node_spend *rows;
    size_t n;
    const char *source;
    int rc = ledger_query_result(w->q, &rows, &n, &source);
    if (rc == -2) {
        http_respond_error(req, GW_ERR_UNAVAILABLE, "The PostgreSQL ledger is unreachable: "
                           "spend by node needs it (this node spools its records meanwhile).",
                           NULL);
        return;
    }
    if (rc != 0) {
        http_respond_error(req, GW_ERR_INTERNAL, "The ledger could not be read; see the node's "
                           "log.", NULL);
        return;
    }
    char dl[16], ml[16];
    period_day_label(w->now, dl, sizeof dl);
    period_month_label(w->now, ml, sizeof ml);
    nanos_t today = 0, month = 0;
    for (size_t i = 0; i < n; i++) {
        today += rows[i].today;
        month += rows[i].month;
    }
    struct out o = {.arena = &req->arena};
    putf(&o, "{\"object\":\"budget\",\"scope\":\"global\",\"by\":\"node\",\"source\":\"%s\"",
         source);
    putf(&o, ",\"today\":{\"period\":\"%s\",", dl);
    put_money(&o, "spent", today);
    putf(&o, "},\"month\":{\"period\":\"%s\",", ml);
    put_money(&o, "spent", month);
    put_lit(&o, "},\"by_node\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) put_lit(&o, ",");
        put_lit(&o, "{\"node\":");
        put_str(&o, rows[i].node_id);
        put_lit(&o, ",");
        put_money(&o, "today", rows[i].today);
        put_lit(&o, ",");
        put_money(&o, "month", rows[i].month);
        putf(&o, ",\"requests_today\":%lld,\"requests_month\":%lld}",
             (long long)rows[i].requests_today, (long long)rows[i].requests_month);
    }
    put_lit(&o, "]}");
    if (o.full) {
        http_respond_error(req, GW_ERR_INTERNAL, "The budget report is too large.", NULL);
        return;
    }
    http_respond(req, 200, "application/json", NULL, o.buf, o.len);
}

static void by_node_poll(evutil_socket_t fd, short what, void *arg)
{
    struct by_node_wait *w = arg;
    if (ledger_query_done(w->q)) {
        w->req->on_abort = NULL;
        by_node_answer(w);
        return;
    }
    if (clock_mono_ms() > w->deadline_ms) {
        w->req->on_abort = NULL;
        http_respond_error(w->req, GW_ERR_TIMEOUT, "The ledger did not answer in time.", NULL);
        return;
    }
    struct timeval tv = {0, BY_NODE_POLL_MS * 1000};
    evtimer_add(w->timer, &tv);
}

/* This node's and every other node's own provider spend, today and this
 * month, from the ledger (PostgreSQL: the whole cluster; SQLite: the rows
 * this node wrote). Admin keys only, like ?scope=cluster. */
static void budget_by_node(struct http_request *req)
{
    const struct principal *p = req->principal;
    if (p && !p->admin) {
        http_respond_error(req, GW_ERR_FORBIDDEN, "Spend by node is shown to admin keys only; "
                           "GET /v1/budget shows this key's own spend.", NULL);
        return;
    }
    struct ledger *l = admission_ledger();
    if (!l) {
        http_respond_error(req, GW_ERR_UNAVAILABLE, "The ledger is not open.", NULL);
        return;
    }
    struct by_node_wait *w = arena_alloc(&req->arena, sizeof *w);
    w->req = req;
    w->now = clock_wall_s();
    w->q = ledger_query_by_node(l, period_day_start(w->now), period_month_start(w->now));
    w->timer = evtimer_new(http_worker_base(req->worker), by_node_poll, w);
    arena_on_free(&req->arena, by_node_cleanup, w);
    w->deadline_ms = clock_mono_ms() + BY_NODE_WAIT_MS;
    req->handler_data = w;
    req->on_abort = by_node_abort;
    struct timeval tv = {0, BY_NODE_POLL_MS * 1000};
    evtimer_add(w->timer, &tv);
}

/* The value of `by` in the query ("" when absent); false when it is not
 * one we know (answered 400). */
static bool by_param(struct http_request *req, bool *by_node)
{
    *by_node = false;
    for (const char *s = req->query; s && *s;) {
        size_t len = strcspn(s, "&");
        if (len >= 3 && strncmp(s, "by=", 3) == 0) {
            if (len == 7 && strncmp(s + 3, "node", 4) == 0) {
                *by_node = true;
            } else {
                http_respond_error(req, GW_ERR_BAD_REQUEST, "Unknown value of 'by' (expected "
                                   "node).", "by");
                return false;
            }
        }
        s += len;
        if (*s == '&') s++;
    }
    return true;
}

void budget_api_get(struct http_request *req)
{
    const struct config *cfg = req->config;
    struct spend_counter *g = admission_global_spend();
    if (!g) {
        http_respond_error(req, GW_ERR_UNAVAILABLE, "The ledger is not open.", NULL);
        return;
    }
    bool by_node;
    if (!by_param(req, &by_node)) return;
    if (by_node) {
        budget_by_node(req);
        return;
    }
    const struct principal *p = req->principal;
    bool all = !p || p->admin;
    int64_t now = clock_wall_s();
    int64_t day = period_day(now), month = period_month(now);
    char dl[16], ml[16];
    period_day_label(now, dl, sizeof dl);
    period_month_label(now, ml, sizeof ml);

    struct out o = {.arena = &req->arena};
    putf(&o, "{\"object\":\"budget\",\"scope\":\"%s\"", all ? "global" : "key");
    struct spend_counter *c = g;
    nanos_t dlim = cfg->budget.enabled ? cfg->budget.daily_limit : 0;
    nanos_t mlim = cfg->budget.enabled ? cfg->budget.monthly_limit : 0;
    if (!all) {
        c = spend_table_get(admission_spend_table("key"), p->key_id);
        dlim = p->daily_limit;
        mlim = p->monthly_limit;
        put_lit(&o, ",\"key\":{\"id\":");
        put_str(&o, p->key_id);
        put_lit(&o, ",\"name\":");
        put_str(&o, p->name);
        put_lit(&o, ",\"tenant\":");
        put_str(&o, p->tenant);
        put_lit(&o, "}");
    }
    put_lit(&o, ",\"today\":");
    put_window(&o, dl, &c->day, day, dlim);
    put_lit(&o, ",\"month\":");
    put_window(&o, ml, &c->month, month, mlim);
    if (all) {
        put_list(&o, "by_provider", "provider", day, month, cfg, NULL);
        put_list(&o, "by_model", "model", day, month, cfg, NULL);
        put_list(&o, "by_key", "key", day, month, cfg, NULL);
        put_list(&o, "by_tenant", "tenant", day, month, cfg, NULL);
    } else {
        put_list(&o, "by_key", "key", day, month, cfg, p->key_id);
    }
    put_lit(&o, "}");
    if (o.full) {
        http_respond_error(req, GW_ERR_INTERNAL, "The budget report is too large.", NULL);
        return;
    }
    http_respond(req, 200, "application/json", NULL, o.buf, o.len);
}
