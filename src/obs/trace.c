/* trace: span contexts on the workers, a bounded queue, and the OTLP/HTTP
 * JSON exporter thread. */
#include "obs/trace.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <jansson.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/money.h"
#include "http/server.h"
#include "obs/metrics.h"
#include "obs/version.h"
#include "upstream/probe.h"

/* ---- spans ---- */

enum attr_type { A_STR, A_INT, A_DOUBLE };

struct attr {
    const char *key; /* a static string */
    enum attr_type type;
    long long i;
    double d;
    char s[128];
};

#define SPAN_MAX_ATTRS 20
enum { SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3 };
enum { STATUS_UNSET = 0, STATUS_OK = 1, STATUS_ERROR = 2 };

struct span {
    uint8_t trace_id[16], span_id[8], parent_id[8];
    bool has_parent;
    int kind;
    uint64_t start_ns, end_ns;
    int status;
    char status_msg[128];
    char name[128];
    struct attr attrs[SPAN_MAX_ATTRS];
    int n_attrs;
};

struct trace_req {
    bool sampled;
    uint8_t trace_id[16], span_id[8], parent_id[8];
    bool has_parent;
    uint64_t start_ns;
    /* open attempt spans (arena-owned), keyed by the caller's candidate:
     * hedged requests have two legs in flight */
    struct span *open[TRACE_MAX_OPEN];
    const void *open_key[TRACE_MAX_OPEN];
    int attempts;
    char last_model[128]; /* the last attempt's upstream model id */
    int64_t ttft_us;      /* -1 until a stream's first event */
};

static void attr_str(struct span *s, const char *key, const char *v)
{
    if (!v || s->n_attrs == SPAN_MAX_ATTRS) return;
    struct attr *a = &s->attrs[s->n_attrs++];
    a->key = key;
    a->type = A_STR;
    snprintf(a->s, sizeof a->s, "%s", v);
}

static void attr_int(struct span *s, const char *key, long long v)
{
    if (s->n_attrs == SPAN_MAX_ATTRS) return;
    struct attr *a = &s->attrs[s->n_attrs++];
    a->key = key;
    a->type = A_INT;
    a->i = v;
}

static void attr_double(struct span *s, const char *key, double v)
{
    if (s->n_attrs == SPAN_MAX_ATTRS) return;
    struct attr *a = &s->attrs[s->n_attrs++];
    a->key = key;
    a->type = A_DOUBLE;
    a->d = v;
}

/* ---- ids ---- */

static _Thread_local uint64_t rng_state;

static uint64_t rng_next(void)
{
    if (rng_state == 0) {
        if (getrandom(&rng_state, sizeof rng_state, 0) != (ssize_t)sizeof rng_state || !rng_state)
            rng_state = (uint64_t)clock_mono_us() * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&rng_state;
    }
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void random_id(uint8_t *out, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = rng_next();
            memcpy(out + i, &r, n - i < 8 ? n - i : 8);
        }
    } while (out[0] == 0 && memcmp(out, out + 1, n - 1) == 0); /* never all zero */
}

static void hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int lowhex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static bool parse_hex(const char *s, uint8_t *out, size_t n)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        int a = lowhex(s[2 * i]), b = lowhex(s[2 * i + 1]);
        if (a < 0 || b < 0) return false;
        out[i] = (uint8_t)(a * 16 + b);
        if (out[i]) nonzero = true;
    }
    return nonzero;
}

bool trace_parse_traceparent(const char *s, uint8_t trace_id[16], uint8_t span_id[8],
                             uint8_t *flags)
{
    if (!s) return false;
    size_t len = strlen(s);
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    if (len < 55) return false;
    uint8_t version;
    if (!parse_hex(s, &version, 1) && !(s[0] == '0' && s[1] == '0')) return false;
    if (s[0] == '0' && s[1] == '0') version = 0;
    if (version == 0xff) return false;
    if (version == 0 && len != 55) return false;
    if (version != 0 && len > 55 && s[55] != '-') return false;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-') return false;
    if (!parse_hex(s + 3, trace_id, 16)) return false;
    if (!parse_hex(s + 36, span_id, 8)) return false;
    uint8_t f;
    if (lowhex(s[53]) < 0 || lowhex(s[54]) < 0) return false;
    f = (uint8_t)(lowhex(s[53]) * 16 + lowhex(s[54]));
    *flags = f;
    return true;
}

/* ---- settings (written by the main thread, read by workers) ---- */

static atomic_bool enabled;
static atomic_uint sample_permille = 1000;
static pthread_mutex_t settings_lock = PTHREAD_MUTEX_INITIALIZER;
static char *export_url, *service_name, *node_id;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void trace_configure(const struct config *cfg)
{
    const char *ep = cfg->observability.tracing_endpoint;
    bool on = cfg->observability.tracing_enabled && ep && *ep;
    pthread_mutex_lock(&settings_lock);
    free(export_url);
    export_url = NULL;
    if (on) {
        size_t n = strlen(ep);
        while (n && ep[n - 1] == '/') n--;
        bool has_path = n >= 10 && strncmp(ep + n - 10, "/v1/traces", 10) == 0;
        export_url = has_path ? xstrndup(ep, n) : xasprintf("%.*s/v1/traces", (int)n, ep);
    }
    free(service_name);
    service_name = xstrdup(cfg->observability.tracing_service_name
                               ? cfg->observability.tracing_service_name : "aiproxy");
    free(node_id);
    node_id = xstrdup(cfg->node.id ? cfg->node.id : "");
    pthread_mutex_unlock(&settings_lock);
    double r = cfg->observability.tracing_sample_ratio;
    atomic_store(&sample_permille, (unsigned)(r <= 0 ? 0 : r >= 1 ? 1000 : r * 1000 + 0.5));
    atomic_store(&enabled, on);
}

/* ---- the queue ---- */

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_wake = PTHREAD_COND_INITIALIZER;
static struct span **queue;
static size_t q_head, q_len;
static bool q_stop, started;
static pthread_t exporter;
static atomic_ullong n_exported, n_dropped;

static void enqueue(const struct span *s)
{
    pthread_mutex_lock(&q_lock);
    if (!queue || q_stop || q_len == TRACE_QUEUE_MAX) {
        pthread_mutex_unlock(&q_lock);
        atomic_fetch_add(&n_dropped, 1);
        return;
    }
    struct span *copy = xmalloc(sizeof *copy);
    memcpy(copy, s, sizeof *copy);
    queue[(q_head + q_len) % TRACE_QUEUE_MAX] = copy;
    q_len++;
    if (q_len >= TRACE_BATCH_MAX / 2) pthread_cond_signal(&q_wake);
    pthread_mutex_unlock(&q_lock);
}

void trace_counters(struct trace_counters *out)
{
    out->exported = atomic_load(&n_exported);
    out->dropped = atomic_load(&n_dropped);
}

/* ---- OTLP JSON ---- */

static json_t *kv_str(const char *k, const char *v)
{
    return json_pack("{s:s, s:{s:s}}", "key", k, "value", "stringValue", v);
}

static json_t *span_json(const struct span *s)
{
    char tid[33], sid[17], pid[17], num[32];
    hex(s->trace_id, 16, tid);
    hex(s->span_id, 8, sid);
    json_t *o = json_object();
    json_object_set_new(o, "traceId", json_string(tid));
    json_object_set_new(o, "spanId", json_string(sid));
    if (s->has_parent) {
        hex(s->parent_id, 8, pid);
        json_object_set_new(o, "parentSpanId", json_string(pid));
    }
    json_object_set_new(o, "name", json_string(s->name));
    json_object_set_new(o, "kind", json_integer(s->kind));
    snprintf(num, sizeof num, "%llu", (unsigned long long)s->start_ns);
    json_object_set_new(o, "startTimeUnixNano", json_string(num));
    snprintf(num, sizeof num, "%llu", (unsigned long long)s->end_ns);
    json_object_set_new(o, "endTimeUnixNano", json_string(num));
    json_t *attrs = json_array();
    for (int i = 0; i < s->n_attrs; i++) {
        const struct attr *a = &s->attrs[i];
        json_t *v;
        if (a->type == A_STR) {
            v = json_pack("{s:s}", "stringValue", a->s);
        } else if (a->type == A_INT) {
            snprintf(num, sizeof num, "%lld", a->i);
            v = json_pack("{s:s}", "intValue", num);
        } else {
            v = json_pack("{s:f}", "doubleValue", a->d);
        }
        if (!v) v = json_pack("{s:s}", "stringValue", ""); /* invalid UTF-8 in a value */
        json_array_append_new(attrs, json_pack("{s:s, s:o}", "key", a->key, "value", v));
    }
    json_object_set_new(o, "attributes", attrs);
    json_t *st = json_object();
    json_object_set_new(st, "code", json_integer(s->status));
    if (s->status_msg[0]) json_object_set_new(st, "message", json_string(s->status_msg));
    json_object_set_new(o, "status", st);
    return o;
}

static void export_batch(struct span **batch, size_t n)
{
    pthread_mutex_lock(&settings_lock);
    char *url = export_url ? xstrdup(export_url) : NULL;
    char *svc = xstrdup(service_name ? service_name : "aiproxy");
    char *node = xstrdup(node_id ? node_id : "");
    pthread_mutex_unlock(&settings_lock);
    if (!url) {
        atomic_fetch_add(&n_dropped, n);
    } else {
        json_t *spans = json_array();
        for (size_t i = 0; i < n; i++) json_array_append_new(spans, span_json(batch[i]));
        json_t *res_attrs = json_array();
        json_array_append_new(res_attrs, kv_str("service.name", svc));
        json_array_append_new(res_attrs, kv_str("service.version", AIPROXY_VERSION));
        if (*node) json_array_append_new(res_attrs, kv_str("service.instance.id", node));
        json_t *doc = json_pack("{s:[{s:{s:o}, s:[{s:{s:s, s:s}, s:o}]}]}", "resourceSpans",
                                "resource", "attributes", res_attrs, "scopeSpans", "scope",
                                "name", "aiproxy", "version", AIPROXY_VERSION, "spans", spans);
        char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
        char *resp = NULL;
        size_t rlen = 0;
        int status = body ? probe_request("POST", url, NULL, body, strlen(body),
                                          TRACE_EXPORT_TIMEOUT_MS, 64 * 1024, &resp, &rlen)
                          : -1;
        free(resp);
        free(body);
        if (status >= 200 && status < 300) atomic_fetch_add(&n_exported, n);
        else atomic_fetch_add(&n_dropped, n);
    }
    free(url);
    free(svc);
    free(node);
    for (size_t i = 0; i < n; i++) free(batch[i]);
}

static void *exporter_main(void *arg)
{
    struct span **batch = xmalloc(TRACE_BATCH_MAX * sizeof *batch);
    pthread_mutex_lock(&q_lock);
    for (;;) {
        if (q_len < TRACE_BATCH_MAX / 2 && !q_stop) {
            struct timespec until = clock_realtime_after_ms(TRACE_FLUSH_MS);
            pthread_cond_timedwait(&q_wake, &q_lock, &until);
        }
        size_t n = 0;
        while (n < TRACE_BATCH_MAX && q_len) {
            batch[n++] = queue[q_head];
            q_head = (q_head + 1) % TRACE_QUEUE_MAX;
            q_len--;
        }
        bool stop = q_stop;
        pthread_mutex_unlock(&q_lock);
        if (n) export_batch(batch, n);
        pthread_mutex_lock(&q_lock);
        if (stop) {
            /* Stopping: one last batch was sent; the rest is counted, not
             * sent, so a dead collector cannot hold the exit. */
            atomic_fetch_add(&n_dropped, q_len);
            while (q_len) {
                free(queue[q_head]);
                q_head = (q_head + 1) % TRACE_QUEUE_MAX;
                q_len--;
            }
            break;
        }
    }
    pthread_mutex_unlock(&q_lock);
    free(batch);
    return NULL;
}

void trace_start(void)
{
    pthread_mutex_lock(&q_lock);
    if (!started) {
        queue = xcalloc(TRACE_QUEUE_MAX, sizeof *queue);
        q_stop = false;
        started = pthread_create(&exporter, NULL, exporter_main, NULL) == 0;
    }
    pthread_mutex_unlock(&q_lock);
}

void trace_stop(void)
{
    pthread_mutex_lock(&q_lock);
    bool was = started;
    q_stop = true;
    started = false;
    pthread_cond_signal(&q_wake);
    pthread_mutex_unlock(&q_lock);
    if (was) pthread_join(exporter, NULL);
    pthread_mutex_lock(&q_lock);
    while (q_len) {
        free(queue[q_head]);
        q_head = (q_head + 1) % TRACE_QUEUE_MAX;
        q_len--;
    }
    free(queue);
    queue = NULL;
    pthread_mutex_unlock(&q_lock);
    pthread_mutex_lock(&settings_lock);
    free(export_url);
    free(service_name);
    free(node_id);
    export_url = service_name = node_id = NULL;
    pthread_mutex_unlock(&settings_lock);
}

/* ---- per request ---- */

static uint64_t request_start_ns(const struct http_request *req)
{
    int64_t ago_us = clock_mono_us() - req->start_us;
    uint64_t now = now_ns();
    return ago_us > 0 ? now - (uint64_t)ago_us * 1000u : now;
}

void trace_request_begin(struct http_request *req)
{
    struct trace_req *t = arena_alloc(&req->arena, sizeof *t);
    memset(t, 0, sizeof *t);
    req->trace = t;
    t->ttft_us = -1;
    if (!atomic_load_explicit(&enabled, memory_order_relaxed)) return;
    /* Probes and scrapes are not traced: they would bury the requests. */
    if (req->path && (strcmp(req->path, "/health") == 0 || strcmp(req->path, "/ready") == 0 ||
                      strcmp(req->path, "/metrics") == 0))
        return;
    uint8_t flags = 0;
    if (trace_parse_traceparent(http_header_get(req, "traceparent"), t->trace_id, t->parent_id,
                                &flags)) {
        t->has_parent = true;
        t->sampled = flags & 1; /* parent-based: the caller decided */
    } else {
        random_id(t->trace_id, 16);
        unsigned p = atomic_load_explicit(&sample_permille, memory_order_relaxed);
        t->sampled = p >= 1000 || rng_next() % 1000 < p;
    }
    random_id(t->span_id, 8);
    t->start_ns = request_start_ns(req);
}

static void finish_attempt(struct trace_req *t, int i, int status, bool ok, bool timeout)
{
    struct span *s = t->open[i];
    t->open[i] = NULL;
    t->open_key[i] = NULL;
    s->end_ns = now_ns();
    if (status > 0) attr_int(s, "http.response.status_code", status);
    if (!ok) {
        s->status = STATUS_ERROR;
        const char *why = timeout ? "timeout" : status ? "upstream error status" : "upstream failure";
        snprintf(s->status_msg, sizeof s->status_msg, "%s", why);
        attr_str(s, "error.type", timeout ? "timeout" : status ? "http_status" : "connection");
    }
    enqueue(s);
}

const char *trace_attempt_begin(struct http_request *req, const void *key, const char *provider,
                                const char *ptype, const char *upstream_model, const char *endpoint)
{
    struct trace_req *t = req->trace;
    if (!t || !t->sampled) return NULL;
    int slot = -1;
    for (int i = 0; i < TRACE_MAX_OPEN && slot < 0; i++)
        if (t->open[i] && t->open_key[i] == key) {
            finish_attempt(t, i, 0, false, false); /* the same candidate again: a retry */
            slot = i;
        }
    for (int i = 0; i < TRACE_MAX_OPEN && slot < 0; i++)
        if (!t->open[i]) slot = i;
    if (slot < 0) return NULL; /* more legs than tracked: this one is not traced */
    struct span *s = arena_alloc(&req->arena, sizeof *s);
    memset(s, 0, sizeof *s);
    memcpy(s->trace_id, t->trace_id, 16);
    random_id(s->span_id, 8);
    memcpy(s->parent_id, t->span_id, 8);
    s->has_parent = true;
    s->kind = SPAN_KIND_CLIENT;
    s->start_ns = now_ns();
    const char *op = "chat";
    if (req->path && strcmp(req->path, "/v1/embeddings") == 0) op = "embeddings";
    else if (req->path && strcmp(req->path, "/v1/completions") == 0) op = "text_completion";
    else if (req->path && strcmp(req->path, "/v1/images/generations") == 0) op = "image_generation";
    snprintf(s->name, sizeof s->name, "%s %s", op, upstream_model ? upstream_model : "");
    attr_str(s, "gen_ai.operation.name", op);
    attr_str(s, "gen_ai.system", ptype);
    attr_str(s, "gen_ai.request.model", upstream_model);
    attr_str(s, "aiproxy.provider", provider);
    attr_int(s, "aiproxy.attempt", ++t->attempts);
    attr_str(s, "http.request.method", "POST");
    if (endpoint) {
        /* server.address: the host part of the endpoint (never its path or query) */
        const char *h = strstr(endpoint, "://");
        h = h ? h + 3 : endpoint;
        size_t n = strcspn(h, ":/?");
        char host[128];
        snprintf(host, sizeof host, "%.*s", (int)(n < sizeof host ? n : sizeof host - 1), h);
        attr_str(s, "server.address", host);
    }
    t->open[slot] = s;
    t->open_key[slot] = key;
    snprintf(t->last_model, sizeof t->last_model, "%s", upstream_model ? upstream_model : "");
    char tid[33], sid[17];
    hex(t->trace_id, 16, tid);
    hex(s->span_id, 8, sid);
    return arena_printf(&req->arena, "traceparent: 00-%s-%s-01\r\n", tid, sid);
}

void trace_attempt_end(struct http_request *req, const void *key, int status, bool ok,
                       bool timeout)
{
    struct trace_req *t = req->trace;
    if (!t) return;
    for (int i = 0; i < TRACE_MAX_OPEN; i++)
        if (t->open[i] && t->open_key[i] == key) finish_attempt(t, i, status, ok, timeout);
}

void trace_first_token(struct http_request *req, const char *provider, int64_t us)
{
    metrics_record_ttft(us);
    metrics_record_ttft_provider(provider, us);
    struct trace_req *t = req->trace;
    if (t) t->ttft_us = us;
}

int64_t trace_ttft_us(const struct http_request *req)
{
    const struct trace_req *t = req->trace;
    return t ? t->ttft_us : -1;
}

void trace_request_end(struct http_request *req, const char *ptype, const char *key_name)
{
    struct trace_req *t = req->trace;
    if (!t || !t->sampled) return;
    /* Legs still open end with the request (a cancelled hedge leg, a
     * client that left): no status of their own. */
    for (int i = 0; i < TRACE_MAX_OPEN; i++)
        if (t->open[i]) finish_attempt(t, i, 0, req->status < 500 && req->status != 499, false);
    struct span s;
    memset(&s, 0, sizeof s);
    memcpy(s.trace_id, t->trace_id, 16);
    memcpy(s.span_id, t->span_id, 8);
    if (t->has_parent) {
        memcpy(s.parent_id, t->parent_id, 8);
        s.has_parent = true;
    }
    s.kind = SPAN_KIND_SERVER;
    s.start_ns = t->start_ns;
    s.end_ns = now_ns();
    snprintf(s.name, sizeof s.name, "%s %s", req->method_name ? req->method_name : "?",
             req->path ? req->path : "");
    attr_str(&s, "http.request.method", req->method_name);
    attr_str(&s, "url.path", req->path);
    attr_int(&s, "http.response.status_code", req->status);
    attr_str(&s, "aiproxy.request_id", req->id);
    if (req->acct.model) {
        attr_str(&s, "gen_ai.request.model", req->acct.model);
        attr_str(&s, "gen_ai.system", ptype);
        attr_str(&s, "aiproxy.provider", req->acct.provider);
        /* the model id the answering provider was asked for */
        if (req->acct.provider && t->last_model[0])
            attr_str(&s, "gen_ai.response.model", t->last_model);
        attr_int(&s, "gen_ai.usage.input_tokens", req->acct.tokens_in);
        attr_int(&s, "gen_ai.usage.output_tokens", req->acct.tokens_out);
        attr_double(&s, "aiproxy.cost_usd", (double)req->acct.cost_nanos / 1e9);
        attr_int(&s, "aiproxy.failovers", req->acct.failovers);
        attr_str(&s, "aiproxy.stream", req->acct.stream ? "true" : "false");
    }
    if (key_name) attr_str(&s, "aiproxy.key_name", key_name);
    if (req->status >= 500 || req->status == 499) {
        s.status = STATUS_ERROR;
        snprintf(s.status_msg, sizeof s.status_msg, "%s",
                 req->status == 499 ? "client closed the request" : "server error");
        attr_str(&s, "error.type", req->status == 499 ? "client_closed" : "http_status");
    }
    enqueue(&s);
}
