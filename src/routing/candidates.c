/* candidates: model resolution, filtering, policies, strategy order, the
 * expansion of a provider's `endpoints` into one candidate each (ordered by
 * routing.load_balancing.strategy) and the fallback chain for one request.
 * Pure apart from reading live stats (and, for round_robin and a half-open
 * circuit, one atomic step each). */
#include "routing/candidates.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "api/scan.h"
#include "core/money.h"
#include "routing/circuit.h"
#include "routing/policy.h"
#include "routing/stats.h"
#include "routing/tier.h"

/* latency_optimized: a provider with fewer measured answers (finished plus
 * in flight) than this is explored first, so a new provider is never
 * starved by one that happens to have figures. */
#define LATENCY_EXPLORE_SAMPLES 3

/* ---- model resolution ---- */

static const char *alias_target(const struct config *cfg, const char *model)
{
    for (size_t i = 0; i < cfg->routing.n_aliases; i++)
        if (strcmp(cfg->routing.aliases[i].name, model) == 0) return cfg->routing.aliases[i].target;
    return NULL;
}

static const char *resolve_alias(const struct config *cfg, const char *model)
{
    for (int hop = 0; hop < 8; hop++) {
        const char *next = alias_target(cfg, model);
        if (!next || strcmp(next, model) == 0) break;
        model = next;
    }
    return model;
}

static bool model_served(const struct config *cfg, const char *model)
{
    for (size_t i = 0; i < cfg->n_providers; i++)
        for (size_t j = 0; j < cfg->providers[i].n_models; j++)
            if (strcmp(cfg->providers[i].models[j].name, model) == 0) return true;
    return false;
}

/* Appends to a bounded string; the result is cut at `cap`. */
static void appendf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void appendf(char *buf, size_t cap, const char *fmt, ...)
{
    size_t len = strnlen(buf, cap);
    if (len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

/* Appends `s` to a bounded string, cut at `cap` like appendf. */
static void append_str(char *buf, size_t cap, const char *s)
{
    size_t len = strnlen(buf, cap);
    if (len + 1 >= cap) return;
    size_t n = strnlen(s, cap - len - 1);
    memcpy(buf + len, s, n);
    buf[len + n] = '\0';
}

static void note_excluded(struct route_plan *out, const char *provider, const char *why)
{
    out->excluded_other++;
    size_t len = strlen(out->excluded);
    if (len + 4 >= sizeof out->excluded) return;
    snprintf(out->excluded + len, sizeof out->excluded - len, "%s%s: %s", len ? "; " : "", provider,
             why);
}

static void fail(struct route_plan *out, enum route_error e, const char *msg)
{
    out->error = e;
    snprintf(out->error_message, sizeof out->error_message, "%s", msg);
    out->n = 0;
}

/* Returns the model to plan for, or NULL after setting out->error. */
static const char *pick_model(const struct config *cfg, const struct route_input *in,
                              struct route_plan *out, char *tier_note, size_t cap)
{
    const char *req = in->model ? in->model : "";
    char why[96];
    enum task_tier tt;
    const char *task = NULL, *how = NULL;
    char analysed[128];
    if (in->task_tier && in->task_tier[0]) {
        if (!task_tier_parse(in->task_tier, &tt)) {
            fail(out, ROUTE_ERR_TASK_TIER,
                 "x-task-tier must be one of trivial, operational, standard, complex, deep.");
            return NULL;
        }
        task = task_tier_name(tt);
        how = "x-task-tier";
    } else if (!req[0] || (cfg->routing.auto_tier && strcmp(req, "auto") == 0)) {
        if (!cfg->routing.auto_tier) {
            fail(out, ROUTE_ERR_NO_MODEL, "you must provide a model parameter");
            return NULL;
        }
        tt = tier_analyse(in->body, in->body_len, in->facts, analysed, sizeof analysed);
        task = task_tier_name(tt);
        how = analysed;
    }
    if (task) {
        out->task_tier = task;
        out->tier = tier_name(task_tier_model_tier(tt));
        const char *m = tier_resolve(cfg, task, why, sizeof why);
        tier_note[0] = '\0';
        appendf(tier_note, cap, "tier=%s, task=%s (%s%s; %s)", out->tier, task,
                how == analysed ? "auto: " : "", how, m ? why : "no model fits");
        return m ? m : out->tier;
    }
    enum model_tier mt;
    if (!alias_target(cfg, req) && !model_served(cfg, req) && tier_parse(req, &mt)) {
        out->tier = tier_name(mt);
        const char *m = tier_resolve(cfg, req, why, sizeof why);
        tier_note[0] = '\0';
        appendf(tier_note, cap, "tier=%s (%s)", out->tier, m ? why : "no model fits");
        return m ? m : req;
    }
    return req;
}

/* ---- estimates ---- */

nanos_t routing_estimate_cost(const struct config_provider *p, const struct config_model *m,
                              const struct req_facts *facts, bool embeddings)
{
    int64_t prompt = facts ? scan_estimate_tokens(facts->text_bytes) : 0;
    int64_t completion = 0;
    if (!embeddings) {
        completion = facts && facts->max_tokens > 0 ? facts->max_tokens : p->max_tokens_default;
        int64_t n = facts && facts->n > 1 ? facts->n : 1;
        completion = completion > INT64_MAX / n ? INT64_MAX : completion * n;
    }
    nanos_t c = money_cost_tokens(prompt, m->price_in_per_1k);
    nanos_t d = money_cost_tokens(completion, m->price_out_per_1k);
    nanos_t sum = c > INT64_MAX - d ? INT64_MAX : c + d;
    return sum > INT64_MAX - m->price_per_generation ? INT64_MAX : sum + m->price_per_generation;
}

/* ---- ordering ---- */

struct work {
    struct candidate c;
    struct policy_provider pp;
    struct policy_outcome po;
    int64_t k1, k2; /* the strategy's keys, lower first */
    size_t config_index;
    int64_t k3; /* the endpoint's place among its provider's (load_balancing.strategy) */
    int n_eps;  /* the provider's endpoints (1 without a list) */
    struct provider_stats *leaf;  /* what an attempt is counted on */
    struct provider_stats *model_st; /* the provider+model entry */
};

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int cmp_work(const struct work *a, const struct work *b, size_t nk)
{
    for (size_t k = 0; k < nk; k++)
        if (a->po.keys[k] != b->po.keys[k]) return a->po.keys[k] < b->po.keys[k] ? -1 : 1;
    if (a->k1 != b->k1) return a->k1 < b->k1 ? -1 : 1;
    if (a->k2 != b->k2) return a->k2 < b->k2 ? -1 : 1;
    if (a->po.priority != b->po.priority) return a->po.priority < b->po.priority ? -1 : 1;
    if (a->config_index != b->config_index) return a->config_index < b->config_index ? -1 : 1;
    if (a->k3 != b->k3) return a->k3 < b->k3 ? -1 : 1;
    return a->c.endpoint_index < b->c.endpoint_index ? -1 : a->c.endpoint_index > b->c.endpoint_index;
}

static void sort_work(struct work *w, size_t n, size_t nk)
{
    for (size_t i = 1; i < n; i++) {
        struct work v = w[i];
        size_t j = i;
        while (j > 0 && cmp_work(&w[j - 1], &v, nk) > 0) {
            w[j] = w[j - 1];
            j--;
        }
        w[j] = v;
    }
}

static void usd(nanos_t v, char *buf)
{
    buf[0] = '$';
    money_format_usd(v, buf + 1, 31);
}

/* The strategy's keys and the candidate's reason. */
static void strategy_keys(enum routing_strategy s, struct work *w, size_t n, bool stream,
                          uint64_t seed, int64_t now_ms)
{
    uint64_t turn = 0;
    if (s == STRATEGY_ROUND_ROBIN && n > 1) {
        /* rotate the priority order of the distinct providers (a provider's
         * endpoints move together): position p goes to (p - turn) mod np */
        struct work tmp[ROUTE_MAX_CANDIDATES];
        memcpy(tmp, w, n * sizeof *w);
        for (size_t i = 0; i < n; i++) {
            tmp[i].po.keys[0] = 0;
            tmp[i].k3 = 0;
        }
        sort_work(tmp, n, 0);
        size_t np = 0;
        size_t distinct[ROUTE_MAX_CANDIDATES];
        for (size_t i = 0; i < n; i++)
            if (np == 0 || distinct[np - 1] != tmp[i].config_index) distinct[np++] = tmp[i].config_index;
        if (np > 1) turn = provider_stats_rr_next();
        for (size_t pos = 0; pos < np; pos++)
            for (size_t i = 0; i < n; i++)
                if (w[i].config_index == distinct[pos])
                    w[i].k1 = (int64_t)((pos + np - turn % np) % np);
    }
    for (size_t i = 0; i < n; i++) {
        struct work *x = &w[i];
        const struct provider_stats *st = x->model_st;
        char *r = x->c.reason;
        size_t cap = sizeof x->c.reason;
        switch (s) {
        case STRATEGY_COST_OPTIMIZED: {
            char b[40];
            usd(x->c.est_cost, b);
            x->k1 = x->c.est_cost;
            snprintf(r, cap, "cost_optimized: est %s", b);
            break;
        }
        case STRATEGY_LATENCY_OPTIMIZED: {
            uint64_t lat_n = st ? atomic_load(&st->latency_samples) : 0;
            uint64_t ttft_n = st ? atomic_load(&st->ttft_samples) : 0;
            bool use_ttft = stream && ttft_n > 0;
            uint64_t samples = use_ttft ? ttft_n : lat_n;
            int64_t flying = st ? atomic_load(&st->in_flight) : 0;
            if (flying < 0) flying = 0;
            if (samples + (uint64_t)flying < LATENCY_EXPLORE_SAMPLES) {
                x->k1 = 0;
                snprintf(r, cap, "latency_optimized: exploring (%llu samples)",
                         (unsigned long long)samples);
            } else if (samples == 0) {
                x->k1 = 2;
                snprintf(r, cap, "latency_optimized: unmeasured, being explored");
            } else {
                int64_t us = use_ttft ? atomic_load(&st->ewma_ttft_us) : atomic_load(&st->ewma_latency_us);
                x->k1 = 1;
                x->k2 = us;
                snprintf(r, cap, "latency_optimized: %s %lld ms", use_ttft ? "ttft" : "latency",
                         (long long)(us / 1000));
            }
            break;
        }
        case STRATEGY_AVAILABILITY: {
            int f = 0, t = 0;
            if (st) provider_stats_window(st, now_ms, &f, &t);
            x->k1 = t ? (int64_t)f * 10 / t : 0; /* steps of 10% */
            x->k2 = 0;
            snprintf(r, cap, "availability: %d/%d recent failures, priority %lld", f, t,
                     (long long)x->po.priority);
            break;
        }
        case STRATEGY_ROUND_ROBIN:
            snprintf(r, cap, "round_robin: turn %llu", (unsigned long long)turn);
            break;
        case STRATEGY_LEAST_LOADED: {
            const struct provider_stats *ps = x->c.provider->stats;
            if (x->c.provider->type == PROVIDER_MESH) {
                /* A peer: the load it advertised (in flight over its
                 * capacity), the "local GPU busy, route to a peer" case. */
                int lp = x->c.provider->mesh_load_permille;
                x->k1 = lp >= 1000;
                x->k2 = lp;
                snprintf(r, cap, "least_loaded: peer load %d.%d%%%s", lp / 10, lp % 10,
                         lp >= 1000 ? " (at capacity)" : "");
                break;
            }
            int64_t fl = ps ? atomic_load(&ps->in_flight) : 0;
            int mc = x->c.provider->max_concurrency * x->n_eps;
            bool full = mc > 0 && fl >= mc;
            x->k1 = full;
            x->k2 = mc > 0 ? fl * 1000 / mc : fl * 1000;
            if (mc > 0)
                snprintf(r, cap, "least_loaded: %lld/%d in flight%s", (long long)fl, mc,
                         full ? " (at capacity)" : "");
            else
                snprintf(r, cap, "least_loaded: %lld in flight", (long long)fl);
            break;
        }
        case STRATEGY_WEIGHTED: {
            int wt = x->c.provider->weight;
            if (wt <= 0) {
                x->k1 = INT64_MAX;
            } else {
                /* Efraimidis-Spirakis: order by -ln(u)/w, u uniform in (0,1] */
                uint64_t h = mix(seed ^ mix(x->config_index + 1));
                double u = ((double)(h >> 11) + 1.0) / 9007199254740992.0;
                x->k1 = (int64_t)(-log(u) / wt * 1e9);
            }
            snprintf(r, cap, "weighted: weight %d", wt);
            break;
        }
        }
    }
}

/* The order of each provider's endpoints among themselves, by
 * routing.load_balancing.strategy (k3), with a per-provider rotation so
 * that ties spread instead of piling on the first endpoint. */
static void endpoint_keys(enum routing_strategy lb, struct work *w, size_t n, uint64_t seed,
                          int64_t now_ms)
{
    for (size_t i = 0; i < n; i++) {
        if (w[i].n_eps < 2) continue;
        bool first = true; /* the group's first item takes the turn */
        for (size_t j = 0; j < i; j++) first = first && w[j].config_index != w[i].config_index;
        if (!first) continue;
        struct provider_stats *ps = w[i].c.provider->stats;
        uint64_t turn = ps ? atomic_fetch_add_explicit(&ps->rr, 1, memory_order_relaxed)
                           : provider_stats_rr_next();
        for (size_t j = i; j < n; j++) {
            struct work *x = &w[j];
            if (x->config_index != w[i].config_index) continue;
            int ne = x->n_eps;
            int64_t rot = (int64_t)(((uint64_t)x->c.endpoint_index + (uint64_t)ne - turn % (uint64_t)ne) %
                                    (uint64_t)ne);
            const struct provider_stats *leaf = x->leaf;
            const struct provider_stats *ep = provider_stats_endpoint_of(x->leaf);
            switch (lb) {
            case STRATEGY_LEAST_LOADED: {
                int64_t fl = ep ? atomic_load(&ep->in_flight) : 0;
                int mc = x->c.provider->max_concurrency;
                x->k3 = (mc > 0 ? fl * 1000 / mc : fl * 1000) * 64 + rot;
                break;
            }
            case STRATEGY_WEIGHTED:
                x->k3 = (int64_t)(mix(seed ^ mix((uint64_t)x->c.endpoint_index + 101)) >> 2);
                break;
            case STRATEGY_LATENCY_OPTIMIZED: {
                uint64_t samples = leaf ? atomic_load(&leaf->latency_samples) : 0;
                int64_t us = leaf ? atomic_load(&leaf->ewma_latency_us) : 0;
                x->k3 = (samples < LATENCY_EXPLORE_SAMPLES ? 0 : us) * 64 + rot;
                break;
            }
            case STRATEGY_AVAILABILITY: {
                int f = 0, t = 0;
                if (leaf) provider_stats_window(leaf, now_ms, &f, &t);
                x->k3 = (t ? (int64_t)f * 10 / t : 0) * 64 + rot;
                break;
            }
            case STRATEGY_ROUND_ROBIN:
            case STRATEGY_COST_OPTIMIZED:
                x->k3 = rot;
                break;
            }
            appendf(x->c.reason, sizeof x->c.reason, "; endpoint %d/%d (%s)",
                    x->c.endpoint_index + 1, ne, routing_strategy_name(lb));
        }
    }
}

/* Places candidate `c` at items[k] with its provider view. */
static void place(struct route_plan *out, size_t k, const struct work *x)
{
    struct config_provider *v = &out->views[k];
    *v = *x->c.provider;
    v->stats = x->leaf;
    v->endpoint = (char *)x->c.endpoint;
    out->items[k] = x->c;
    out->items[k].provider = v;
}

bool routing_provider_down(const struct config_provider *p, int *failures)
{
    if (failures) *failures = 0;
    if (!p->stats) return false;
    size_t n = p->n_endpoints > 1 ? p->n_endpoints : 1;
    for (size_t e = 0; e < n; e++) {
        const struct provider_stats *s =
            n > 1 ? provider_stats_endpoint(p->stats, p->endpoints[e]) : p->stats;
        if (!atomic_load(&s->down)) return false;
        if (failures && !*failures) *failures = atomic_load(&s->check_failures);
    }
    return true;
}

/* ---- the plan ---- */

void routing_plan_request(const struct config *cfg, const struct route_input *in,
                          struct route_plan *out, struct arena *arena)
{
    memset(out, 0, sizeof *out);
    enum routing_strategy strategy = cfg->routing.strategy;
    if (in->strategy_override && in->strategy_override[0] &&
        !routing_strategy_parse(in->strategy_override, &strategy)) {
        fail(out, ROUTE_ERR_STRATEGY,
             "Unknown routing strategy; expected cost_optimized, latency_optimized, "
             "availability, round_robin, least_loaded or weighted.");
        out->model = in->model ? in->model : "";
        return;
    }
    out->strategy_used = strategy;
    char tier_note[160] = "";
    const char *m = pick_model(cfg, in, out, tier_note, sizeof tier_note);
    if (!m) {
        out->model = in->model ? in->model : "";
        return;
    }
    out->model = resolve_alias(cfg, m);

    const struct req_facts *f = in->facts;
    bool embeddings = (in->caps_needed & CAP_EMBEDDINGS) != 0;
    unsigned caps = in->caps_needed;
    if (f && f->has_images) caps |= CAP_VISION;
    out->prompt_tokens = f ? scan_estimate_tokens(f->text_bytes) : 0;

    struct work w[ROUTE_MAX_CANDIDATES];
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_providers + in->n_peers; i++) {
        const struct config_provider *p =
            i < cfg->n_providers ? &cfg->providers[i] : in->peers[i - cfg->n_providers];
        const struct config_model *cm = NULL;
        for (size_t j = 0; j < p->n_models && !cm; j++)
            if (strcmp(p->models[j].name, out->model) == 0) cm = &p->models[j];
        if (!cm) continue;
        out->model_known = true;
        if (!p->available) {
            note_excluded(out, p->name, p->unavailable_reason ? p->unavailable_reason : "unavailable");
            continue;
        }
        unsigned need = caps;
        if (f && f->has_tools && cm->capabilities_explicit) need |= CAP_TOOLS;
        if ((cm->capabilities & need) != need) {
            unsigned miss = need & ~cm->capabilities;
            note_excluded(out, p->name,
                          miss & CAP_VISION ? "the model lacks vision (the request has images)"
                          : miss & CAP_TOOLS ? "the model lacks tools (the request has tools)"
                          : miss & CAP_EMBEDDINGS ? "the model lacks embeddings"
                                                  : "the model lacks a capability this request needs");
            out->excluded_other--;
            out->excluded_by_capability++;
            continue;
        }
        nanos_t est = routing_estimate_cost(p, cm, f, embeddings);
        if (in->max_cost_nanos >= 0 && est > in->max_cost_nanos) {
            char a[40], b[40], why[112];
            usd(est, a);
            usd(in->max_cost_nanos, b);
            snprintf(why, sizeof why, "estimated cost %s exceeds max_cost %s", a, b);
            note_excluded(out, p->name, why);
            out->excluded_other--;
            out->excluded_by_cost++;
            continue;
        }
        int n_eps = p->n_endpoints > 1 ? (int)p->n_endpoints : 1;
        struct provider_stats *model_st = provider_stats_model(p->stats, cm->name);
        const struct provider_stats *st = p->stats;
        int cap = p->max_concurrency * n_eps;
        for (int e = 0; e < n_eps && n < ROUTE_MAX_CANDIDATES; e++) {
            struct work *x = &w[n++];
            memset(x, 0, sizeof *x);
            x->c.provider = p;
            x->c.model = cm;
            x->c.est_cost = est;
            x->c.endpoint = n_eps > 1 ? p->endpoints[e] : p->endpoint;
            x->c.endpoint_index = e;
            x->config_index = i;
            x->n_eps = n_eps;
            x->model_st = model_st;
            x->leaf = n_eps > 1 ? provider_stats_leaf(p->stats, cm->name, p->endpoints[e]) : model_st;
            x->pp = (struct policy_provider){
                .provider = p,
                .priority = p->priority,
                .cost_per_1k = cm->price_in_per_1k / 2 + cm->price_out_per_1k / 2 +
                               (cm->price_in_per_1k % 2 + cm->price_out_per_1k % 2) / 2,
                .est_cost = est,
                .latency_ms = model_st ? atomic_load(&model_st->ewma_latency_us) / 1000 : 0,
                .load_permille = p->type == PROVIDER_MESH ? p->mesh_load_permille
                                 : !st                     ? 0
                                 : cap > 0 ? atomic_load(&st->in_flight) * 1000 / cap
                                           : atomic_load(&st->in_flight) * 1000,
            };
        }
    }

    /* policies */
    struct policy_provider pps[ROUTE_MAX_CANDIDATES];
    struct policy_outcome pos[ROUTE_MAX_CANDIDATES];
    for (size_t i = 0; i < n; i++) pps[i] = w[i].pp;
    struct policy_request rq = {
        .model = out->model,
        .tokens = out->prompt_tokens,
        .max_tokens = f ? f->max_tokens : -1,
        .stream = f ? f->stream : false,
        .caps = caps | (f && f->has_tools ? CAP_TOOLS : 0),
        .tier = out->tier ? out->tier : "",
    };
    size_t nk = policy_apply(cfg->compiled_policies, strategy, &rq, pps, n, pos);
    size_t kept = 0;
    /* Providers whose circuit is open are not dropped but kept as a last
     * resort, after every healthy one: an outage of all of them must not
     * turn into a refusal to try. */
    struct work open_w[ROUTE_MAX_CANDIDATES];
    size_t n_open = 0;
    for (size_t i = 0; i < n; i++) {
        w[i].po = pos[i];
        if (pos[i].excluded) {
            note_excluded(out, w[i].c.provider->name, pos[i].note);
            continue;
        }
        /* health: the circuit, last, so that a probe slot is only taken
         * for a provider that would otherwise be tried */
        if (cfg->routing.health_aware) {
            char why[112];
            bool probe;
            if (provider_stats_down(w[i].leaf)) {
                const struct provider_stats *ep = provider_stats_endpoint_of(w[i].leaf);
                snprintf(w[i].c.reason, sizeof w[i].c.reason,
                         "last resort: health check down (%d failed in a row)",
                         atomic_load(&ep->check_failures));
                open_w[n_open++] = w[i];
                continue;
            }
            if (circuit_should_skip(w[i].leaf, cfg->routing.unhealthy_threshold,
                                    in->now_ms, &probe, why, sizeof why)) {
                snprintf(w[i].c.reason, sizeof w[i].c.reason, "last resort: %.96s", why);
                open_w[n_open++] = w[i];
                continue;
            }
            w[i].c.probe = probe;
        }
        w[kept++] = w[i];
    }
    n = kept;

    strategy_keys(strategy, w, n, f && f->stream, in->seed, in->now_ms);
    endpoint_keys(cfg->routing.lb_strategy, w, n, in->seed, in->now_ms);
    sort_work(w, n, nk);

    /* fallback_chain: after the first choice, the chain's providers in its
     * order, then the rest in the order above */
    size_t order[ROUTE_MAX_CANDIDATES], placed = 0;
    bool used[ROUTE_MAX_CANDIDATES] = {false};
    int chain_pos[ROUTE_MAX_CANDIDATES];
    for (size_t i = 0; i < n; i++) chain_pos[i] = -1;
    if (n) {
        order[placed++] = 0;
        used[0] = true;
        for (size_t k = 0; k < cfg->routing.n_fallback_chain; k++) {
            bool peers = strcmp(cfg->routing.fallback_chain[k], "mesh_peer") == 0;
            for (size_t i = 1; i < n; i++)
                if (!used[i] && (peers ? w[i].c.provider->type == PROVIDER_MESH
                                       : strcmp(w[i].c.provider->name, cfg->routing.fallback_chain[k]) == 0)) {
                    order[placed++] = i;
                    used[i] = true;
                    chain_pos[i] = (int)k;
                }
        }
        /* Without `mesh_peer` in the chain, peers follow every provider. */
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 1; i < n; i++)
                if (!used[i] && (w[i].c.provider->type == PROVIDER_MESH) == (pass == 1)) {
                    order[placed++] = i;
                    used[i] = true;
                }
    }
    size_t total = n + (n_open < ROUTE_MAX_CANDIDATES - n ? n_open : ROUTE_MAX_CANDIDATES - n);
    if (total) {
        out->items = arena_alloc(arena, total * sizeof *out->items);
        out->views = arena_alloc(arena, total * sizeof *out->views);
    }
    for (size_t k = 0; k < n; k++) {
        struct work *x = &w[order[k]];
        if (x->po.note[0]) appendf(x->c.reason, sizeof x->c.reason, "; %s", x->po.note);
        if (chain_pos[order[k]] >= 0)
            appendf(x->c.reason, sizeof x->c.reason, "; fallback_chain[%d]", chain_pos[order[k]]);
        if (x->c.probe) appendf(x->c.reason, sizeof x->c.reason, "; circuit half-open probe");
        place(out, k, x);
    }
    for (size_t k = 0; n + k < total; k++) {
        if (open_w[k].n_eps > 1)
            appendf(open_w[k].c.reason, sizeof open_w[k].c.reason, "; endpoint %d/%d",
                    open_w[k].c.endpoint_index + 1, open_w[k].n_eps);
        place(out, n + k, &open_w[k]);
    }
    out->n = total;
    /* (on every request: plain copies, not a format) */
    append_str(out->reason, sizeof out->reason, tier_note);
    if (tier_note[0] && out->n) append_str(out->reason, sizeof out->reason, "; ");
    if (out->n) append_str(out->reason, sizeof out->reason, out->items[0].reason);
}
