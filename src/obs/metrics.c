/* metrics: atomic counters, bounded label tables and the Prometheus text
 * renderer. Every update is a relaxed atomic add (plus, for a label value
 * seen for the first time, one CAS into a fixed table); rendering reads the
 * same atomics, so a scrape never blocks a worker. */
#include "obs/metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/money.h"
#include "http/server.h"
#include "http/tls.h"
#include "obs/trace.h"
#include "obs/watch.h"
#include "routing/circuit.h"
#include "routing/retry.h"
#include "routing/stats.h"
#include "security/jwt.h"

/* ---- fixed label sets ---- */

enum family { FAM_CHAT, FAM_COMPLETIONS, FAM_EMBEDDINGS, FAM_IMAGES, FAM_MESSAGES, FAM_PREDICT,
              FAM_MODELS, FAM_HEALTH, FAM_ADMIN, FAM_OTHER, N_FAM };
static const char *family_names[N_FAM] = {"chat_completions", "completions", "embeddings",
                                          "images", "messages", "predict", "models", "health",
                                          "admin", "other"};
enum { CLASS_2XX, CLASS_3XX, CLASS_4XX, CLASS_5XX, CLASS_ABORTED, N_CLASS };
static const char *class_names[N_CLASS] = {"2xx", "3xx", "4xx", "5xx", "aborted"};

/* enum attempt_failure order (routing/retry.h), then "other". */
#define N_REASONS 7
static const char *reason_names[N_REASONS] = {"connect", "timeout", "upstream_error",
                                              "rate_limited", "client_error", "mid_stream",
                                              "other"};

/* Buckets suited to LLM latencies, in seconds: sub-10 ms for cached and
 * health answers up to minutes for long generations. */
static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                 2.5,   5,    10,    20,   30,  60,   120, 300};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])
/* Cost of one request, in USD. */
static const double cost_buckets[] = {0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01,
                                      0.05,    0.1,    0.5,    1,     5};
#define N_COST_BUCKETS (sizeof cost_buckets / sizeof cost_buckets[0])

struct histogram {
    atomic_ullong counts[N_BUCKETS + 1]; /* last: +Inf */
    atomic_ullong sum_us;
};

/* ---- interned label values ---- */

#define LBL_SLOTS 256 /* hash slots; a power of two > 2 * METRICS_MAX_LABELS */
#define LBL_OTHER 0
#define LBL_NONE 1 /* "none": no provider answered, no model, no key */
#define LBL_FIRST 2
#define N_LBL (METRICS_MAX_LABELS + LBL_FIRST)

struct label_entry {
    char *name;
    int index;
};

struct label_table {
    _Atomic(struct label_entry *) slots[LBL_SLOTS];
    _Atomic(const char *) names[N_LBL]; /* index -> name, for rendering */
    atomic_int next;                    /* next index to hand out */
};

static struct label_table providers_t, models_t, keys_t;

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* The index of `name`, interning it when the table has room; LBL_OTHER
 * past the cap. Lock-free: an entry is published with one CAS and never
 * removed, so readers only ever see complete entries. */
static int label_index(struct label_table *t, const char *name)
{
    if (!name || !*name) return LBL_NONE;
    uint32_t h = hash_str(name);
    for (uint32_t i = 0; i < LBL_SLOTS; i++) {
        _Atomic(struct label_entry *) *slot = &t->slots[(h + i) & (LBL_SLOTS - 1)];
        struct label_entry *e = atomic_load_explicit(slot, memory_order_acquire);
        if (e) {
            if (strcmp(e->name, name) == 0) return e->index;
            continue;
        }
        if (atomic_load_explicit(&t->next, memory_order_relaxed) >= METRICS_MAX_LABELS)
            return LBL_OTHER;
        int idx = atomic_fetch_add(&t->next, 1);
        if (idx >= METRICS_MAX_LABELS) return LBL_OTHER;
        struct label_entry *mine = xmalloc(sizeof *mine);
        mine->name = xstrndup(name, 120);
        mine->index = idx + LBL_FIRST;
        struct label_entry *expected = NULL;
        if (atomic_compare_exchange_strong_explicit(slot, &expected, mine, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            atomic_store_explicit(&t->names[mine->index], mine->name, memory_order_release);
            return mine->index;
        }
        /* Another thread took this slot first; its index is lost (a hole
         * in the table, harmless) and the probe goes on. */
        free(mine->name);
        free(mine);
        if (strcmp(expected->name, name) == 0) return expected->index;
    }
    return LBL_OTHER;
}

static const char *label_name(struct label_table *t, int idx)
{
    if (idx == LBL_OTHER) return "other";
    if (idx == LBL_NONE) return "none";
    return atomic_load_explicit(&t->names[idx], memory_order_acquire);
}

/* ---- the series table: provider x model x key x class ---- */

struct series {
    atomic_uint key; /* 0 = empty, else packed labels + 1 */
    atomic_ullong count;
};

#define SERIES_PROBE 64
static struct series series_t[METRICS_MAX_SERIES];
static atomic_ullong series_overflow[N_CLASS]; /* every label "other" */

static uint32_t series_pack(int p, int m, int k, int c)
{
    return ((((uint32_t)p * N_LBL + (uint32_t)m) * N_LBL + (uint32_t)k) * N_CLASS + (uint32_t)c) + 1;
}

static void series_add(int p, int m, int k, int c)
{
    uint32_t key = series_pack(p, m, k, c);
    uint32_t h = key * 2654435761u;
    for (uint32_t i = 0; i < SERIES_PROBE; i++) {
        struct series *s = &series_t[(h + i) % METRICS_MAX_SERIES];
        unsigned cur = atomic_load_explicit(&s->key, memory_order_acquire);
        if (cur == 0) {
            unsigned expected = 0;
            if (atomic_compare_exchange_strong_explicit(&s->key, &expected, key,
                                                        memory_order_acq_rel, memory_order_acquire))
                cur = key;
            else
                cur = expected;
        }
        if (cur == key) {
            atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
            return;
        }
    }
    atomic_fetch_add_explicit(&series_overflow[c], 1, memory_order_relaxed);
}

/* ---- the counters ---- */

static atomic_ullong requests[N_FAM][N_CLASS];
static struct histogram duration[N_FAM];
static struct histogram ttft;
static struct histogram ttft_by_provider[N_LBL];
static atomic_ullong cost_hist[N_COST_BUCKETS + 1];
static atomic_ullong cost_hist_sum, cost_hist_count;
/* per provider x model: tokens and cost */
static atomic_ullong pm_tokens_in[N_LBL][N_LBL], pm_tokens_out[N_LBL][N_LBL];
/* of the input tokens: read from / written to the provider's prompt cache */
static atomic_ullong pm_tokens_cache_read[N_LBL][N_LBL], pm_tokens_cache_write[N_LBL][N_LBL];
static atomic_ullong pm_cost[N_LBL][N_LBL];
static atomic_ullong tokens_in, tokens_out, tokens_estimated_requests;
static atomic_ullong cost_nanos;
static atomic_ullong failovers[N_REASONS];
static atomic_llong open_streams, in_flight;
static atomic_ullong rate_limited[2], budget_rejected;
static atomic_ullong jwt_refused[JWT_N_REASONS];
static int64_t start_s;

static enum family family_of(const char *path)
{
    if (!path) return FAM_OTHER;
    if (strcmp(path, "/v1/chat/completions") == 0) return FAM_CHAT;
    if (strcmp(path, "/v1/completions") == 0) return FAM_COMPLETIONS;
    if (strcmp(path, "/v1/embeddings") == 0) return FAM_EMBEDDINGS;
    if (strcmp(path, "/v1/images/generations") == 0) return FAM_IMAGES;
    if (strcmp(path, "/v1/messages") == 0) return FAM_MESSAGES;
    if (strcmp(path, "/aiproxy/predict") == 0) return FAM_PREDICT;
    if (strncmp(path, "/v1/models", 10) == 0) return FAM_MODELS;
    if (strcmp(path, "/health") == 0 || strcmp(path, "/ready") == 0) return FAM_HEALTH;
    if (strncmp(path, "/aiproxy/", 9) == 0 || strcmp(path, "/metrics") == 0 ||
        strncmp(path, "/dashboard", 10) == 0 || strcmp(path, "/v1/budget") == 0 ||
        strcmp(path, "/v1/endpoints") == 0)
        return FAM_ADMIN;
    return FAM_OTHER;
}

static void observe(struct histogram *h, int64_t us)
{
    double s = (double)us / 1e6;
    size_t i = 0;
    while (i < N_BUCKETS && s > buckets[i]) i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (unsigned long long)(us > 0 ? us : 0), memory_order_relaxed);
}

static int status_class(int status)
{
    if (status == 499) return CLASS_ABORTED;
    if (status >= 500) return CLASS_5XX;
    if (status >= 400) return CLASS_4XX;
    if (status >= 300) return CLASS_3XX;
    return CLASS_2XX;
}

void metrics_init(void)
{
    start_s = clock_wall_s();
}

int64_t metrics_start_time(void)
{
    return start_s;
}

void metrics_request_begin(void)
{
    atomic_fetch_add_explicit(&in_flight, 1, memory_order_relaxed);
}

/* A model is a label value only when some provider of the snapshot serves
 * it: a client cannot grow the table with made-up names. */
static bool model_known(const struct config *cfg, const char *model)
{
    if (!cfg) return false;
    for (size_t i = 0; i < cfg->n_providers; i++)
        for (size_t j = 0; j < cfg->providers[i].n_models; j++)
            if (strcmp(cfg->providers[i].models[j].name, model) == 0) return true;
    return false;
}

void metrics_record_request(const struct http_request *req, bool begun, const char *key_name)
{
    if (begun) atomic_fetch_sub_explicit(&in_flight, 1, memory_order_relaxed);
    enum family f = family_of(req->path);
    int cls = status_class(req->status);
    atomic_fetch_add_explicit(&requests[f][cls], 1, memory_order_relaxed);
    observe(&duration[f], clock_mono_us() - req->start_us);
    if (f == FAM_HEALTH || f == FAM_ADMIN || f == FAM_MODELS) return;

    int p = label_index(&providers_t, req->acct.provider);
    int m = LBL_NONE;
    if (req->acct.model)
        m = (req->acct.provider || model_known(req->config, req->acct.model))
                ? label_index(&models_t, req->acct.model) : LBL_OTHER;
    int k = label_index(&keys_t, key_name);
    series_add(p, m, k, cls);
    if (req->acct.model) {
        unsigned long long in = (unsigned long long)(req->acct.tokens_in > 0 ? req->acct.tokens_in : 0);
        unsigned long long out = (unsigned long long)(req->acct.tokens_out > 0 ? req->acct.tokens_out : 0);
        unsigned long long cost = (unsigned long long)(req->acct.cost_nanos > 0 ? req->acct.cost_nanos : 0);
        atomic_fetch_add_explicit(&tokens_in, in, memory_order_relaxed);
        atomic_fetch_add_explicit(&tokens_out, out, memory_order_relaxed);
        atomic_fetch_add_explicit(&cost_nanos, cost, memory_order_relaxed);
        atomic_fetch_add_explicit(&pm_tokens_in[p][m], in, memory_order_relaxed);
        atomic_fetch_add_explicit(&pm_tokens_out[p][m], out, memory_order_relaxed);
        if (req->acct.cached_tokens > 0)
            atomic_fetch_add_explicit(&pm_tokens_cache_read[p][m],
                                      (unsigned long long)req->acct.cached_tokens,
                                      memory_order_relaxed);
        if (req->acct.cache_write_tokens > 0)
            atomic_fetch_add_explicit(&pm_tokens_cache_write[p][m],
                                      (unsigned long long)req->acct.cache_write_tokens,
                                      memory_order_relaxed);
        atomic_fetch_add_explicit(&pm_cost[p][m], cost, memory_order_relaxed);
        if (req->acct.estimated)
            atomic_fetch_add_explicit(&tokens_estimated_requests, 1, memory_order_relaxed);
        if (req->acct.provider) {
            double usd = (double)cost / 1e9;
            size_t i = 0;
            while (i < N_COST_BUCKETS && usd > cost_buckets[i]) i++;
            atomic_fetch_add_explicit(&cost_hist[i], 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&cost_hist_sum, cost, memory_order_relaxed);
            atomic_fetch_add_explicit(&cost_hist_count, 1, memory_order_relaxed);
        }
    }
}

void metrics_stream_open(void)
{
    atomic_fetch_add_explicit(&open_streams, 1, memory_order_relaxed);
}

void metrics_stream_close(void)
{
    atomic_fetch_sub_explicit(&open_streams, 1, memory_order_relaxed);
}

void metrics_record_ttft(int64_t us)
{
    observe(&ttft, us);
}

void metrics_record_ttft_provider(const char *provider, int64_t us)
{
    observe(&ttft_by_provider[label_index(&providers_t, provider)], us);
}

void metrics_failover_reason(int reason)
{
    if (reason < 0 || reason >= N_REASONS - 1) reason = N_REASONS - 1;
    atomic_fetch_add_explicit(&failovers[reason], 1, memory_order_relaxed);
}

void metrics_rate_limited(bool by_tokens)
{
    atomic_fetch_add_explicit(&rate_limited[by_tokens ? 1 : 0], 1, memory_order_relaxed);
}

void metrics_budget_rejected(void)
{
    atomic_fetch_add_explicit(&budget_rejected, 1, memory_order_relaxed);
}

void metrics_jwt_refused(int reason)
{
    if (reason > 0 && reason < JWT_N_REASONS)
        atomic_fetch_add_explicit(&jwt_refused[reason], 1, memory_order_relaxed);
}

void metrics_totals(struct metrics_totals *out)
{
    memset(out, 0, sizeof *out);
    for (int f = 0; f < N_FAM; f++) {
        if (f == FAM_HEALTH || f == FAM_ADMIN || f == FAM_MODELS) continue;
        for (int c = 0; c < N_CLASS; c++) {
            unsigned long long n = atomic_load_explicit(&requests[f][c], memory_order_relaxed);
            out->requests += n;
            if (c == CLASS_5XX || c == CLASS_ABORTED) out->errors += n;
        }
    }
    out->in_flight = atomic_load(&in_flight);
    out->open_streams = atomic_load(&open_streams);
    out->cost = (nanos_t)atomic_load(&cost_nanos);
    out->tokens_in = atomic_load(&tokens_in);
    out->tokens_out = atomic_load(&tokens_out);
}

/* ---- collect groups ---- */

bool metrics_collects(const struct config *cfg, const char *name)
{
    if (!cfg || cfg->observability.n_metrics_collect == 0) return true;
    for (size_t i = 0; i < cfg->observability.n_metrics_collect; i++)
        if (strcmp(cfg->observability.metrics_collect[i], name) == 0) return true;
    return false;
}

/* ---- rendering ---- */

struct out {
    char *buf;
    size_t len, cap;
};

static void outf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(struct out *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        o->cap = o->cap * 2 + (size_t)(n > 0 ? n : 0);
        o->buf = xrealloc(o->buf, o->cap);
    }
}

static void help(struct out *o, const char *name, const char *type, const char *text)
{
    outf(o, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

static void render_histogram(struct out *o, const char *name, const char *labels,
                             struct histogram *h)
{
    unsigned long long cum = 0;
    const char *sep = *labels ? "," : "";
    for (size_t i = 0; i <= N_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (i < N_BUCKETS)
            outf(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, buckets[i], cum);
        else
            outf(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
    }
    unsigned long long sum = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    outf(o, "%s_sum{%s} %llu.%06llu\n", name, labels, sum / 1000000, sum % 1000000);
    outf(o, "%s_count{%s} %llu\n", name, labels, cum);
}

/* Label values come from the config and from clients (model names of
 * served models, key names); escape them as the exposition format says. */
static void label_escape(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; in && *in && n + 3 < cap; in++) {
        if (*in == '"' || *in == '\\') out[n++] = '\\';
        if (*in == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
            continue;
        }
        out[n++] = *in;
    }
    out[n] = '\0';
}

static void usd_text(unsigned long long nanos, char *buf, size_t cap)
{
    money_format_usd((nanos_t)nanos, buf, cap);
}

struct provider_ctx {
    struct out *o;
    const struct config *cfg;
    int64_t now_ms;
    int pass;
};

static const struct config_provider *cfg_provider(const struct config *cfg, const char *name)
{
    return cfg ? config_find_provider(cfg, name) : NULL;
}

static void render_provider(const struct provider_stats *s, void *arg)
{
    struct provider_ctx *pc = arg;
    struct out *o = pc->o;
    const struct config_provider *cp = cfg_provider(pc->cfg, s->name);
    if (!cp) return; /* a provider removed by a reload: its figures are kept, not shown */
    char name[260];
    label_escape(s->name, name, sizeof name);
    double threshold = pc->cfg->routing.unhealthy_threshold;
    enum circuit_state st = circuit_state(s, threshold, pc->now_ms);
    switch (pc->pass) {
    case 0:
        outf(o, "aiproxy_provider_in_flight{provider=\"%s\"} %lld\n", name,
             (long long)atomic_load(&s->in_flight));
        break;
    case 1:
        outf(o, "aiproxy_provider_attempts_total{provider=\"%s\"} %llu\n", name,
             (unsigned long long)atomic_load(&s->attempts));
        break;
    case 2:
        outf(o, "aiproxy_provider_errors_total{provider=\"%s\"} %llu\n", name,
             (unsigned long long)atomic_load(&s->failures));
        break;
    case 3:
        outf(o, "aiproxy_provider_timeouts_total{provider=\"%s\"} %llu\n", name,
             (unsigned long long)atomic_load(&s->timeouts));
        break;
    case 4: {
        long long lat = atomic_load(&s->ewma_latency_us);
        outf(o, "aiproxy_provider_latency_ewma_seconds{provider=\"%s\"} %lld.%06lld\n", name,
             lat / 1000000, lat % 1000000);
        break;
    }
    case 5:
        for (int k = CIRCUIT_CLOSED; k <= CIRCUIT_HALF_OPEN; k++)
            outf(o, "aiproxy_provider_circuit_state{provider=\"%s\",state=\"%s\"} %d\n", name,
                 circuit_state_name((enum circuit_state)k), st == (enum circuit_state)k);
        break;
    case 6:
        outf(o, "aiproxy_provider_up{provider=\"%s\"} %d\n", name,
             cp->available && st != CIRCUIT_OPEN);
        break;
    case 7:
        outf(o, "aiproxy_provider_circuit_transitions_total{provider=\"%s\"} %llu\n", name,
             (unsigned long long)watch_transitions(s->name));
        break;
    }
}

static void render_providers(struct out *o, const struct config *cfg, bool errors, bool live)
{
    struct provider_ctx pc = {.o = o, .cfg = cfg, .now_ms = clock_mono_ms()};
    static const struct { const char *name, *type, *help; bool errors; } fams[] = {
        {"aiproxy_provider_in_flight", "gauge", "Upstream attempts in flight per provider.", false},
        {"aiproxy_provider_attempts_total", "counter", "Upstream attempts per provider.", true},
        {"aiproxy_provider_errors_total", "counter", "Failed upstream attempts per provider.", true},
        {"aiproxy_provider_timeouts_total", "counter", "Timed-out upstream attempts per provider.", true},
        {"aiproxy_provider_latency_ewma_seconds", "gauge", "Recent latency (EWMA of successful "
         "attempts; time to first byte for streams) per provider.", false},
        {"aiproxy_provider_circuit_state", "gauge", "Circuit breaker state per provider (1 for "
         "the current state).", false},
        {"aiproxy_provider_up", "gauge", "1 when the provider is available and its circuit is "
         "not open.", false},
        {"aiproxy_provider_circuit_transitions_total", "counter", "Circuit state changes seen "
         "per provider.", false},
    };
    for (int i = 0; i < (int)(sizeof fams / sizeof fams[0]); i++) {
        if (fams[i].errors ? !errors : !live) continue;
        help(o, fams[i].name, fams[i].type, fams[i].help);
        pc.pass = i;
        provider_stats_each(render_provider, &pc);
    }
}

static void render_series(struct out *o)
{
    help(o, "aiproxy_requests_by_route_total", "counter",
         "Proxied requests by provider, model, API key name and status class (bounded: "
         "values past the tables' caps are \"other\").");
    for (size_t i = 0; i < METRICS_MAX_SERIES; i++) {
        unsigned key = atomic_load_explicit(&series_t[i].key, memory_order_acquire);
        if (!key) continue;
        unsigned v = key - 1;
        int c = (int)(v % N_CLASS);
        v /= N_CLASS;
        int k = (int)(v % N_LBL);
        v /= N_LBL;
        int m = (int)(v % N_LBL);
        int p = (int)(v / N_LBL);
        char pn[260], mn[260], kn[260];
        label_escape(label_name(&providers_t, p), pn, sizeof pn);
        label_escape(label_name(&models_t, m), mn, sizeof mn);
        label_escape(label_name(&keys_t, k), kn, sizeof kn);
        outf(o, "aiproxy_requests_by_route_total{provider=\"%s\",model=\"%s\",key=\"%s\","
                "status_class=\"%s\"} %llu\n", pn, mn, kn, class_names[c],
             (unsigned long long)atomic_load_explicit(&series_t[i].count, memory_order_relaxed));
    }
    for (int c = 0; c < N_CLASS; c++) {
        unsigned long long n = atomic_load(&series_overflow[c]);
        if (n)
            outf(o, "aiproxy_requests_by_route_total{provider=\"other\",model=\"other\","
                    "key=\"other\",status_class=\"%s\"} %llu\n", class_names[c], n);
    }
}

static void render_pm_rows(struct out *o, const char *name, atomic_ullong (*a)[N_LBL],
                           const char *extra, bool money)
{
    for (int p = 0; p < N_LBL; p++)
        for (int m = 0; m < N_LBL; m++) {
            unsigned long long v = atomic_load_explicit(&a[p][m], memory_order_relaxed);
            if (!v) continue;
            const char *pn0 = label_name(&providers_t, p), *mn0 = label_name(&models_t, m);
            if (!pn0 || !mn0) continue;
            char pn[260], mn[260];
            label_escape(pn0, pn, sizeof pn);
            label_escape(mn0, mn, sizeof mn);
            if (money) {
                char usd[32];
                usd_text(v, usd, sizeof usd);
                outf(o, "%s{provider=\"%s\",model=\"%s\"%s} %s\n", name, pn, mn, extra, usd);
            } else {
                outf(o, "%s{provider=\"%s\",model=\"%s\"%s} %llu\n", name, pn, mn, extra, v);
            }
        }
}

static void render_pm(struct out *o, const char *name, const char *type, const char *text,
                      atomic_ullong (*a)[N_LBL], const char *extra, bool money)
{
    help(o, name, type, text);
    render_pm_rows(o, name, a, extra, money);
}

/* The response cache (SPEC section 7). */
static void render_context(struct out *o, const struct metrics_extra *x)
{
    help(o, "aiproxy_context_injections_total", "counter",
         "Requests whose system prompt got a project's pending changes (X-Inject-Context).");
    outf(o, "aiproxy_context_injections_total %lld\n", x->context_injections);
    help(o, "aiproxy_context_tokens_injected_total", "counter",
         "Estimated prompt tokens of the context blocks injected into requests that succeeded.");
    outf(o, "aiproxy_context_tokens_injected_total %lld\n", x->context_tokens_injected);
    help(o, "aiproxy_context_tokens_saved_total", "counter",
         "Estimated prompt tokens saved against sending the projects' files whole.");
    outf(o, "aiproxy_context_tokens_saved_total %lld\n", x->context_tokens_saved);
    help(o, "aiproxy_context_projects", "gauge", "Context projects held by this node.");
    outf(o, "aiproxy_context_projects %lld\n", x->context_projects);
    help(o, "aiproxy_context_files", "gauge", "Files held in this node's context projects.");
    outf(o, "aiproxy_context_files %lld\n", x->context_files);
    help(o, "aiproxy_context_bytes", "gauge", "Bytes held in this node's context projects.");
    outf(o, "aiproxy_context_bytes %lld\n", x->context_bytes);
}

static void render_cache(struct out *o, const struct metrics_extra *x)
{
    char usd[32];
    help(o, "aiproxy_cache_hits_total", "counter",
         "Requests answered from the response cache, by kind of match.");
    outf(o, "aiproxy_cache_hits_total{kind=\"exact\"} %llu\n"
            "aiproxy_cache_hits_total{kind=\"semantic\"} %llu\n",
         (unsigned long long)x->cache_hits, (unsigned long long)x->cache_semantic_hits);
    help(o, "aiproxy_cache_misses_total", "counter",
         "Requests that consulted the response cache and found no answer.");
    outf(o, "aiproxy_cache_misses_total %llu\n", (unsigned long long)x->cache_misses);
    help(o, "aiproxy_cache_stores_total", "counter", "Answers stored in the response cache.");
    outf(o, "aiproxy_cache_stores_total %llu\n", (unsigned long long)x->cache_stores);
    help(o, "aiproxy_cache_entries", "gauge",
         "Entries in this node's cache memory (with backend redis, its front).");
    outf(o, "aiproxy_cache_entries %llu\n", (unsigned long long)x->cache_entries);
    help(o, "aiproxy_cache_bytes", "gauge", "Bytes held by this node's cache memory.");
    outf(o, "aiproxy_cache_bytes %llu\n", (unsigned long long)x->cache_bytes);
    help(o, "aiproxy_cache_max_bytes", "gauge", "The cap on this node's cache memory, in bytes.");
    outf(o, "aiproxy_cache_max_bytes %llu\n", (unsigned long long)x->cache_max_bytes);
    help(o, "aiproxy_cache_evictions_total", "counter",
         "Cache entries removed to make room (least recently used first).");
    outf(o, "aiproxy_cache_evictions_total %llu\n", (unsigned long long)x->cache_evictions);
    help(o, "aiproxy_cache_expired_total", "counter", "Cache entries removed when their TTL passed.");
    outf(o, "aiproxy_cache_expired_total %llu\n", (unsigned long long)x->cache_expired);
    help(o, "aiproxy_cache_saved_usd_total", "counter",
         "What the cache hits would have cost at the providers' prices, in USD.");
    usd_text((unsigned long long)(x->cache_saved > 0 ? x->cache_saved : 0), usd, sizeof usd);
    outf(o, "aiproxy_cache_saved_usd_total %s\n", usd);
    help(o, "aiproxy_cache_embedding_errors_total", "counter",
         "Semantic lookups whose embedding call failed (served as misses).");
    outf(o, "aiproxy_cache_embedding_errors_total %llu\n", (unsigned long long)x->cache_embed_errors);
    help(o, "aiproxy_cache_backend_errors_total", "counter",
         "Cache reads and writes on the backend (Redis) that failed.");
    outf(o, "aiproxy_cache_backend_errors_total %llu\n", (unsigned long long)x->cache_backend_errors);
    help(o, "aiproxy_cache_semantic_entries", "gauge", "Vectors in this node's semantic index.");
    outf(o, "aiproxy_cache_semantic_entries %llu\n", (unsigned long long)x->cache_semantic_entries);
}

char *metrics_render(const struct config *cfg, const struct metrics_extra *x, size_t *len)
{
    struct out o = {.buf = xmalloc(16384), .cap = 16384};
    char usd[32];
    if (metrics_collects(cfg, "request_count")) {
        help(&o, "aiproxy_requests_total", "counter", "Requests by endpoint family and status class.");
        for (int f = 0; f < N_FAM; f++)
            for (int c = 0; c < N_CLASS; c++)
                outf(&o, "aiproxy_requests_total{endpoint=\"%s\",status_class=\"%s\"} %llu\n",
                     family_names[f], class_names[c],
                     (unsigned long long)atomic_load_explicit(&requests[f][c], memory_order_relaxed));
        render_series(&o);
        help(&o, "aiproxy_requests_in_flight", "gauge", "Requests being handled now.");
        outf(&o, "aiproxy_requests_in_flight %lld\n", (long long)atomic_load(&in_flight));
    }
    if (metrics_collects(cfg, "request_duration")) {
        help(&o, "aiproxy_request_duration_seconds", "histogram",
             "Time from a request's first byte to its last response byte.");
        for (int f = 0; f < N_FAM; f++) {
            char labels[64];
            snprintf(labels, sizeof labels, "endpoint=\"%s\"", family_names[f]);
            render_histogram(&o, "aiproxy_request_duration_seconds", labels, &duration[f]);
        }
    }
    if (metrics_collects(cfg, "ttft")) {
        help(&o, "aiproxy_time_to_first_token_seconds", "histogram",
             "Streams: time from the request to the first event relayed.");
        render_histogram(&o, "aiproxy_time_to_first_token_seconds", "", &ttft);
        help(&o, "aiproxy_provider_time_to_first_token_seconds", "histogram",
             "Streams: time to the first event, per provider.");
        for (int p = 0; p < N_LBL; p++) {
            if (!atomic_load(&ttft_by_provider[p].sum_us) &&
                !atomic_load(&ttft_by_provider[p].counts[0]))
                continue;
            const char *pn0 = label_name(&providers_t, p);
            if (!pn0) continue;
            char pn[260], labels[300];
            label_escape(pn0, pn, sizeof pn);
            snprintf(labels, sizeof labels, "provider=\"%s\"", pn);
            render_histogram(&o, "aiproxy_provider_time_to_first_token_seconds", labels,
                             &ttft_by_provider[p]);
        }
    }
    if (metrics_collects(cfg, "tokens_processed")) {
        help(&o, "aiproxy_tokens_total", "counter", "Tokens processed, by direction.");
        outf(&o, "aiproxy_tokens_total{direction=\"input\"} %llu\n"
                 "aiproxy_tokens_total{direction=\"output\"} %llu\n",
             (unsigned long long)atomic_load(&tokens_in), (unsigned long long)atomic_load(&tokens_out));
        render_pm(&o, "aiproxy_provider_tokens_input_total", "counter",
                  "Input (prompt) tokens per provider and model.", pm_tokens_in, "", false);
        render_pm(&o, "aiproxy_provider_tokens_output_total", "counter",
                  "Output (completion) tokens per provider and model.", pm_tokens_out, "", false);
        help(&o, "aiproxy_provider_tokens_cached_total", "counter",
             "Input tokens the provider read from (kind=read) or wrote to (kind=write) its "
             "prompt cache, per provider and model (part of the input tokens).");
        render_pm_rows(&o, "aiproxy_provider_tokens_cached_total", pm_tokens_cache_read,
                       ",kind=\"read\"", false);
        render_pm_rows(&o, "aiproxy_provider_tokens_cached_total", pm_tokens_cache_write,
                       ",kind=\"write\"", false);
        help(&o, "aiproxy_usage_estimated_requests_total", "counter",
             "Requests whose usage was estimated (the provider reported none).");
        outf(&o, "aiproxy_usage_estimated_requests_total %llu\n",
             (unsigned long long)atomic_load(&tokens_estimated_requests));
    }
    if (metrics_collects(cfg, "cost_per_request")) {
        usd_text(atomic_load(&cost_nanos), usd, sizeof usd);
        help(&o, "aiproxy_cost_usd_total", "counter", "Spend in USD, from provider usage and prices.");
        outf(&o, "aiproxy_cost_usd_total %s\n", usd);
        render_pm(&o, "aiproxy_provider_cost_usd_total", "counter",
                  "Spend in USD per provider and model.", pm_cost, "", true);
        help(&o, "aiproxy_request_cost_usd", "histogram", "Cost of one answered request, in USD.");
        unsigned long long cum = 0;
        for (size_t i = 0; i <= N_COST_BUCKETS; i++) {
            cum += atomic_load(&cost_hist[i]);
            if (i < N_COST_BUCKETS)
                outf(&o, "aiproxy_request_cost_usd_bucket{le=\"%g\"} %llu\n", cost_buckets[i], cum);
            else
                outf(&o, "aiproxy_request_cost_usd_bucket{le=\"+Inf\"} %llu\n", cum);
        }
        usd_text(atomic_load(&cost_hist_sum), usd, sizeof usd);
        outf(&o, "aiproxy_request_cost_usd_sum %s\naiproxy_request_cost_usd_count %llu\n", usd, cum);
    }
    if (metrics_collects(cfg, "provider_errors")) {
        help(&o, "aiproxy_failovers_total", "counter",
             "Attempts that failed before the answer began and moved on, by reason.");
        for (int i = 0; i < N_REASONS; i++)
            outf(&o, "aiproxy_failovers_total{reason=\"%s\"} %llu\n", reason_names[i],
                 (unsigned long long)atomic_load(&failovers[i]));
    }
    if (cfg && (metrics_collects(cfg, "provider_errors") || metrics_collects(cfg, "providers")))
        render_providers(&o, cfg, metrics_collects(cfg, "provider_errors"),
                         metrics_collects(cfg, "providers"));
    if (metrics_collects(cfg, "streams")) {
        help(&o, "aiproxy_open_streams", "gauge", "Streams being relayed now.");
        outf(&o, "aiproxy_open_streams %lld\n", (long long)atomic_load(&open_streams));
    }
    if (metrics_collects(cfg, "rate_limits")) {
        help(&o, "aiproxy_rate_limited_total", "counter",
             "Requests refused 429 by a rate limit, by limit kind.");
        outf(&o, "aiproxy_rate_limited_total{limit=\"requests\"} %llu\n"
                 "aiproxy_rate_limited_total{limit=\"tokens\"} %llu\n",
             (unsigned long long)atomic_load(&rate_limited[0]),
             (unsigned long long)atomic_load(&rate_limited[1]));
        help(&o, "aiproxy_budget_rejected_total", "counter",
             "Requests refused 429 budget_exceeded.");
        outf(&o, "aiproxy_budget_rejected_total %llu\n", (unsigned long long)atomic_load(&budget_rejected));
    }
    if (cfg && cfg->security.auth_jwt && metrics_collects(cfg, "rate_limits")) {
        help(&o, "aiproxy_jwt_refused_total", "counter",
             "Bearer tokens refused 401 (security.auth.type jwt), by reason.");
        for (int r = 1; r < JWT_N_REASONS; r++)
            outf(&o, "aiproxy_jwt_refused_total{reason=\"%s\"} %llu\n", jwt_reason_name(r),
                 (unsigned long long)atomic_load(&jwt_refused[r]));
    }
    if (x && metrics_collects(cfg, "budget")) {
        help(&o, "aiproxy_budget_spend_usd", "gauge", "Global spend in the current UTC day and month.");
        usd_text((unsigned long long)x->day_spent, usd, sizeof usd);
        outf(&o, "aiproxy_budget_spend_usd{window=\"day\"} %s\n", usd);
        usd_text((unsigned long long)x->month_spent, usd, sizeof usd);
        outf(&o, "aiproxy_budget_spend_usd{window=\"month\"} %s\n", usd);
        help(&o, "aiproxy_budget_limit_usd", "gauge", "Global limits (absent when none is set).");
        help(&o, "aiproxy_budget_remaining_usd", "gauge", "Limit minus spend, floored at 0.");
        const char *win[2] = {"day", "month"};
        nanos_t lim[2] = {x->day_limit, x->month_limit}, sp[2] = {x->day_spent, x->month_spent};
        for (int i = 0; i < 2; i++) {
            if (lim[i] <= 0) continue;
            usd_text((unsigned long long)lim[i], usd, sizeof usd);
            outf(&o, "aiproxy_budget_limit_usd{window=\"%s\"} %s\n", win[i], usd);
            usd_text((unsigned long long)(lim[i] > sp[i] ? lim[i] - sp[i] : 0), usd, sizeof usd);
            outf(&o, "aiproxy_budget_remaining_usd{window=\"%s\"} %s\n", win[i], usd);
        }
    }
    if (x && x->have_ledger && metrics_collects(cfg, "ledger")) {
        help(&o, "aiproxy_ledger_queue_depth", "gauge", "Ledger records queued, not yet committed.");
        outf(&o, "aiproxy_ledger_queue_depth %lld\n", x->ledger_queue);
        help(&o, "aiproxy_ledger_committed_total", "counter", "Ledger records committed.");
        outf(&o, "aiproxy_ledger_committed_total %lld\n", x->ledger_committed);
        help(&o, "aiproxy_ledger_dropped_total", "counter", "Ledger records dropped (queue full).");
        outf(&o, "aiproxy_ledger_dropped_total %lld\n", x->ledger_dropped);
        help(&o, "aiproxy_ledger_db_up", "gauge",
             "1 when the ledger's database answers (PostgreSQL; always 1 with SQLite).");
        outf(&o, "aiproxy_ledger_db_up %d\n", x->ledger_db_up ? 1 : 0);
        help(&o, "aiproxy_ledger_db_committed_total", "counter",
             "Ledger records written to PostgreSQL, spool drains included (0 with SQLite).");
        outf(&o, "aiproxy_ledger_db_committed_total %lld\n", x->ledger_db_committed);
        help(&o, "aiproxy_ledger_spooled_total", "counter",
             "Ledger records committed to the local spool while PostgreSQL was unavailable.");
        outf(&o, "aiproxy_ledger_spooled_total %lld\n", x->ledger_spooled);
        help(&o, "aiproxy_ledger_spool_depth", "gauge",
             "Spooled ledger records not yet sent to PostgreSQL.");
        outf(&o, "aiproxy_ledger_spool_depth %lld\n", x->ledger_spool_depth);
    }
    if (x && x->have_store && metrics_collects(cfg, "store")) {
        help(&o, "aiproxy_store_up", "gauge", "1 when the shared store (Redis) answers.");
        outf(&o, "aiproxy_store_up %d\n", x->store_up ? 1 : 0);
        help(&o, "aiproxy_store_errors_total", "counter",
             "Shared-store calls that failed (error answers, lost connections, timeouts).");
        outf(&o, "aiproxy_store_errors_total %lld\n", x->store_errors);
        help(&o, "aiproxy_store_timeouts_total", "counter",
             "Times an answer took longer than cluster.redis.timeout.");
        outf(&o, "aiproxy_store_timeouts_total %lld\n", x->store_timeouts);
        help(&o, "aiproxy_store_reconciliations_total", "counter",
             "Deferred settlements and outage-spend batches written once Redis answered again.");
        outf(&o, "aiproxy_store_reconciliations_total %lld\n", x->store_reconciliations);
        help(&o, "aiproxy_store_deferred", "gauge", "Work waiting for the shared store to answer.");
        outf(&o, "aiproxy_store_deferred %lld\n", x->store_deferred);
    }
    if (x && x->have_cache && metrics_collects(cfg, "cache"))
        render_cache(&o, x);
    if (x && x->have_context && metrics_collects(cfg, "context"))
        render_context(&o, x);
    if (cfg && metrics_collects(cfg, "tls") &&
        (cfg->server.tls.cert_file || cfg->observability.metrics_tls.cert_file ||
         cfg->node.mesh_tls_cert)) {
        help(&o, "aiproxy_tls_handshake_failures_total", "counter",
             "TLS handshakes refused or failed on the listeners (protocol, cipher, client "
             "certificate, or the client refusing ours).");
        outf(&o, "aiproxy_tls_handshake_failures_total %llu\n",
             (unsigned long long)tls_handshake_failures());
    }
    if (metrics_collects(cfg, "tracing")) {
        struct trace_counters tc;
        trace_counters(&tc);
        help(&o, "aiproxy_trace_spans_exported_total", "counter", "Spans accepted by the collector.");
        outf(&o, "aiproxy_trace_spans_exported_total %llu\n", (unsigned long long)tc.exported);
        help(&o, "aiproxy_trace_spans_dropped_total", "counter",
             "Spans dropped (queue full, or the collector unreachable or refusing).");
        outf(&o, "aiproxy_trace_spans_dropped_total %llu\n", (unsigned long long)tc.dropped);
    }
    help(&o, "aiproxy_start_time_seconds", "gauge", "Start time of the process (unix seconds).");
    outf(&o, "aiproxy_start_time_seconds %lld\n", (long long)start_s);
    *len = o.len;
    return o.buf;
}
