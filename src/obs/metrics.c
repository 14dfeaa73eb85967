/* metrics: atomic counters and the Prometheus text renderer. */
#include "obs/metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/money.h"
#include "http/server.h"
#include "routing/stats.h"

enum family { FAM_CHAT, FAM_COMPLETIONS, FAM_EMBEDDINGS, FAM_MODELS, FAM_HEALTH, FAM_OTHER, N_FAM };
static const char *family_names[N_FAM] = {"chat_completions", "completions", "embeddings",
                                          "models", "health", "other"};
enum { CLASS_2XX, CLASS_4XX, CLASS_5XX, CLASS_ABORTED, N_CLASS };
static const char *class_names[N_CLASS] = {"2xx", "4xx", "5xx", "aborted"};

/* Buckets suited to LLM latencies, in seconds. */
static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])

struct histogram {
    atomic_ullong counts[N_BUCKETS + 1]; /* last: +Inf */
    atomic_ullong sum_us;
    atomic_ullong total;
};

static atomic_ullong requests[N_FAM][N_CLASS];
static struct histogram duration[N_FAM];
static struct histogram ttft;
static atomic_ullong tokens_in, tokens_out, tokens_estimated_requests;
static atomic_ullong cost_nanos;
static atomic_ullong failovers;
static atomic_llong open_streams;
static int64_t start_s;

static enum family family_of(const char *path)
{
    if (!path) return FAM_OTHER;
    if (strcmp(path, "/v1/chat/completions") == 0) return FAM_CHAT;
    if (strcmp(path, "/v1/completions") == 0) return FAM_COMPLETIONS;
    if (strcmp(path, "/v1/embeddings") == 0) return FAM_EMBEDDINGS;
    if (strncmp(path, "/v1/models", 10) == 0) return FAM_MODELS;
    if (strcmp(path, "/health") == 0 || strcmp(path, "/ready") == 0) return FAM_HEALTH;
    return FAM_OTHER;
}

static void observe(struct histogram *h, int64_t us)
{
    double s = (double)us / 1e6;
    size_t i = 0;
    while (i < N_BUCKETS && s > buckets[i]) i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, (unsigned long long)(us > 0 ? us : 0), memory_order_relaxed);
    atomic_fetch_add_explicit(&h->total, 1, memory_order_relaxed);
}

void metrics_init(void)
{
    start_s = clock_wall_s();
}

void metrics_record_request(const struct http_request *req)
{
    enum family f = family_of(req->path);
    int cls = req->status == 499 ? CLASS_ABORTED : req->status >= 500 ? CLASS_5XX
              : req->status >= 400 ? CLASS_4XX : CLASS_2XX;
    atomic_fetch_add_explicit(&requests[f][cls], 1, memory_order_relaxed);
    observe(&duration[f], clock_mono_us() - req->start_us);
    if (req->acct.model) {
        atomic_fetch_add_explicit(&tokens_in, (unsigned long long)req->acct.tokens_in, memory_order_relaxed);
        atomic_fetch_add_explicit(&tokens_out, (unsigned long long)req->acct.tokens_out, memory_order_relaxed);
        atomic_fetch_add_explicit(&cost_nanos, (unsigned long long)req->acct.cost_nanos, memory_order_relaxed);
        if (req->acct.estimated)
            atomic_fetch_add_explicit(&tokens_estimated_requests, 1, memory_order_relaxed);
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

void metrics_failover(void)
{
    atomic_fetch_add_explicit(&failovers, 1, memory_order_relaxed);
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

static void render_histogram(struct out *o, const char *name, const char *labels,
                             struct histogram *h)
{
    unsigned long long cum = 0;
    for (size_t i = 0; i <= N_BUCKETS; i++) {
        cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (i < N_BUCKETS)
            outf(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, *labels ? "," : "", buckets[i], cum);
        else
            outf(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, *labels ? "," : "", cum);
    }
    unsigned long long sum = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    outf(o, "%s_sum{%s} %llu.%06llu\n", name, labels, sum / 1000000, sum % 1000000);
    outf(o, "%s_count{%s} %llu\n", name, labels, cum);
}

/* Provider names come from the config; escape them for label values. */
static void label_escape(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; *in && n + 3 < cap; in++) {
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

static void render_provider(const struct provider_stats *s, void *ctx)
{
    struct out *o = ctx;
    char name[260];
    label_escape(s->name, name, sizeof name);
    outf(o, "aiproxy_provider_in_flight{provider=\"%s\"} %lld\n", name,
         (long long)atomic_load(&s->in_flight));
    outf(o, "aiproxy_provider_attempts_total{provider=\"%s\"} %llu\n", name,
         (unsigned long long)atomic_load(&s->attempts));
    outf(o, "aiproxy_provider_errors_total{provider=\"%s\"} %llu\n", name,
         (unsigned long long)atomic_load(&s->failures));
    outf(o, "aiproxy_provider_timeouts_total{provider=\"%s\"} %llu\n", name,
         (unsigned long long)atomic_load(&s->timeouts));
    long long lat = atomic_load(&s->ewma_latency_us);
    outf(o, "aiproxy_provider_latency_ewma_seconds{provider=\"%s\"} %lld.%06lld\n", name,
         lat / 1000000, lat % 1000000);
}

char *metrics_render(size_t *len)
{
    struct out o = {.buf = xmalloc(8192), .cap = 8192};
    outf(&o, "# HELP aiproxy_requests_total Requests by endpoint family and status class.\n"
             "# TYPE aiproxy_requests_total counter\n");
    for (int f = 0; f < N_FAM; f++)
        for (int c = 0; c < N_CLASS; c++)
            outf(&o, "aiproxy_requests_total{endpoint=\"%s\",status_class=\"%s\"} %llu\n",
                 family_names[f], class_names[c],
                 (unsigned long long)atomic_load_explicit(&requests[f][c], memory_order_relaxed));
    outf(&o, "# HELP aiproxy_request_duration_seconds Time from a request's first byte to its "
             "last response byte.\n# TYPE aiproxy_request_duration_seconds histogram\n");
    for (int f = 0; f < N_FAM; f++) {
        char labels[64];
        snprintf(labels, sizeof labels, "endpoint=\"%s\"", family_names[f]);
        render_histogram(&o, "aiproxy_request_duration_seconds", labels, &duration[f]);
    }
    outf(&o, "# HELP aiproxy_time_to_first_token_seconds Streams: time to the first event.\n"
             "# TYPE aiproxy_time_to_first_token_seconds histogram\n");
    render_histogram(&o, "aiproxy_time_to_first_token_seconds", "", &ttft);
    outf(&o, "# HELP aiproxy_tokens_total Tokens processed, by direction.\n"
             "# TYPE aiproxy_tokens_total counter\n"
             "aiproxy_tokens_total{direction=\"input\"} %llu\n"
             "aiproxy_tokens_total{direction=\"output\"} %llu\n",
         (unsigned long long)atomic_load(&tokens_in), (unsigned long long)atomic_load(&tokens_out));
    outf(&o, "# HELP aiproxy_usage_estimated_requests_total Requests whose usage was estimated.\n"
             "# TYPE aiproxy_usage_estimated_requests_total counter\n"
             "aiproxy_usage_estimated_requests_total %llu\n",
         (unsigned long long)atomic_load(&tokens_estimated_requests));
    char usd[32];
    money_format_usd((nanos_t)atomic_load(&cost_nanos), usd, sizeof usd);
    outf(&o, "# HELP aiproxy_cost_usd_total Spend in USD, from provider usage and prices.\n"
             "# TYPE aiproxy_cost_usd_total counter\naiproxy_cost_usd_total %s\n", usd);
    outf(&o, "# HELP aiproxy_failovers_total Attempts that failed and moved to the next provider.\n"
             "# TYPE aiproxy_failovers_total counter\naiproxy_failovers_total %llu\n",
         (unsigned long long)atomic_load(&failovers));
    outf(&o, "# HELP aiproxy_open_streams Streams being relayed now.\n"
             "# TYPE aiproxy_open_streams gauge\naiproxy_open_streams %lld\n",
         (long long)atomic_load(&open_streams));
    outf(&o, "# HELP aiproxy_provider_in_flight Attempts in flight per provider.\n"
             "# TYPE aiproxy_provider_in_flight gauge\n"
             "# HELP aiproxy_provider_attempts_total Upstream attempts per provider.\n"
             "# TYPE aiproxy_provider_attempts_total counter\n"
             "# HELP aiproxy_provider_errors_total Failed upstream attempts per provider.\n"
             "# TYPE aiproxy_provider_errors_total counter\n"
             "# HELP aiproxy_provider_timeouts_total Timed-out upstream attempts per provider.\n"
             "# TYPE aiproxy_provider_timeouts_total counter\n"
             "# HELP aiproxy_provider_latency_ewma_seconds Recent latency (EWMA) per provider.\n"
             "# TYPE aiproxy_provider_latency_ewma_seconds gauge\n");
    provider_stats_each(render_provider, &o);
    outf(&o, "# HELP aiproxy_start_time_seconds Start time of the process.\n"
             "# TYPE aiproxy_start_time_seconds gauge\naiproxy_start_time_seconds %lld\n",
         (long long)start_s);
    *len = o.len;
    return o.buf;
}
