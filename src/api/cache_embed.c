/* cache_embed: the semantic cache's embedding call (see cache_embed.h). */
#include "api/cache_embed.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/scan.h"
#include "api/upstream_slot.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "http/server.h"
#include "providers/provider.h"
#include "routing/candidates.h"
#include "routing/stats.h"
#include "upstream/client.h"

#define MAX_EMBED_ANSWER (16 * 1024 * 1024)
#define MAX_EMBED_TRIES 2
#define MAX_DIMS 8192

struct embed_call {
    struct http_request *req;
    struct req_facts facts;
    struct route_plan plan;
    size_t next;
    int tries;
    char *body;
    size_t body_len;
    int64_t deadline_ms;
    embed_done_cb done;
    void *arg;
    /* the attempt in flight */
    const struct candidate *cand;
    const struct provider_ops *ops;
    struct provider_call pcall;
    struct upstream_call *call;
    int64_t start_us;
    bool stats_open;
    int status;
    char *content_type;
    char *answer;
    size_t answer_len, answer_cap;
    bool too_large;
};

static bool try_next(struct embed_call *ec);

static void close_stats(struct embed_call *ec, bool ok, bool timeout)
{
    if (!ec->stats_open) return;
    ec->stats_open = false;
    provider_stats_end(ec->cand->provider->stats, ok, timeout, clock_mono_us() - ec->start_us);
}

static void reset_answer(struct embed_call *ec)
{
    free(ec->answer);
    ec->answer = NULL;
    ec->answer_len = ec->answer_cap = 0;
    ec->too_large = false;
    ec->status = 0;
    ec->content_type = NULL;
}

static void on_freed(void *arg)
{
    struct embed_call *ec = arg;
    embed_cancel(ec);
    free(ec->answer);
    ec->answer = NULL;
}

static void finish(struct embed_call *ec, const float *vec, size_t dims, nanos_t cost)
{
    embed_done_cb done = ec->done;
    ec->done = NULL;
    if (done) done(ec->arg, vec, dims, cost);
}

/* data[0].embedding of an OpenAI embeddings answer, as floats. */
static float *read_vector(struct arena *a, const char *body, size_t len, size_t *dims,
                          int64_t *prompt_tokens)
{
    json_error_t e;
    json_t *root = json_loadb(body, len, 0, &e);
    float *vec = NULL;
    *dims = 0;
    *prompt_tokens = -1;
    json_t *data = json_object_get(root, "data");
    json_t *first = json_is_array(data) ? json_array_get(data, 0) : NULL;
    json_t *emb = json_is_object(first) ? json_object_get(first, "embedding") : NULL;
    size_t n = json_is_array(emb) ? json_array_size(emb) : 0;
    if (n > 0 && n <= MAX_DIMS) {
        vec = arena_alloc(a, n * sizeof *vec);
        for (size_t i = 0; i < n; i++) {
            json_t *x = json_array_get(emb, i);
            if (!json_is_number(x) || !isfinite(json_number_value(x))) {
                vec = NULL;
                break;
            }
            vec[i] = (float)json_number_value(x);
        }
        if (vec) *dims = n;
    }
    json_t *pt = json_object_get(json_object_get(root, "usage"), "prompt_tokens");
    if (json_is_integer(pt)) *prompt_tokens = (int64_t)json_integer_value(pt);
    json_decref(root);
    return vec;
}

static void failed(struct embed_call *ec, const char *why, bool timeout)
{
    close_stats(ec, false, timeout);
    log_event(LOG_DEBUG, "cache_embedding_failed", "request %s: embedding with %s failed: %s",
              ec->req->id, ec->cand->provider->name, why);
    ec->call = NULL;
    reset_answer(ec);
    if (try_next(ec)) return;
    finish(ec, NULL, 0, 0);
}

static void on_head(void *ctx, const struct upstream_head *h)
{
    struct embed_call *ec = ctx;
    ec->status = h->status;
    if (h->content_type) ec->content_type = arena_strdup(&ec->req->arena, h->content_type);
}

static void on_data(void *ctx, const char *data, size_t len)
{
    struct embed_call *ec = ctx;
    if (ec->too_large || ec->answer_len + len > MAX_EMBED_ANSWER) {
        ec->too_large = true;
        return;
    }
    if (ec->answer_len + len + 1 > ec->answer_cap) {
        size_t cap = ec->answer_cap ? ec->answer_cap * 2 : 8192;
        while (cap < ec->answer_len + len + 1) cap *= 2;
        ec->answer = xrealloc(ec->answer, cap);
        ec->answer_cap = cap;
    }
    memcpy(ec->answer + ec->answer_len, data, len);
    ec->answer_len += len;
    ec->answer[ec->answer_len] = '\0';
}

static void on_done(void *ctx, int err)
{
    struct embed_call *ec = ctx;
    ec->call = NULL;
    if (err) {
        failed(ec, upstream_error_text(err), err == UPSTREAM_ERR_TIMEOUT);
        return;
    }
    if (ec->status < 200 || ec->status >= 300 || ec->too_large) {
        failed(ec, ec->too_large ? "answer too large" : "HTTP error", false);
        return;
    }
    const char *body = ec->answer ? ec->answer : "";
    size_t len = ec->answer_len;
    struct provider_usage pu = {0};
    if (ec->ops->finish) {
        struct provider_response resp = {.status = ec->status, .content_type = ec->content_type,
                                         .body = body, .len = len};
        char *out = NULL;
        size_t out_len = 0;
        char why[256] = "";
        if (ec->ops->finish(&ec->pcall, &resp, &out, &out_len, &pu, why, sizeof why) != 0) {
            failed(ec, why[0] ? why : "unexpected answer", false);
            return;
        }
        body = out;
        len = out_len;
    }
    size_t dims = 0;
    int64_t tokens = -1;
    float *vec = read_vector(&ec->req->arena, body, len, &dims, &tokens);
    if (!vec) {
        failed(ec, "no embedding in the answer", false);
        return;
    }
    close_stats(ec, true, false);
    if (pu.present) tokens = pu.prompt_tokens;
    if (tokens < 0) tokens = scan_estimate_tokens(ec->facts.text_bytes);
    nanos_t cost = money_cost_tokens(tokens, ec->cand->model->price_in_per_1k);
    free(ec->answer);
    ec->answer = NULL;
    finish(ec, vec, dims, cost);
}

static const struct upstream_callbacks callbacks = {
    .on_head = on_head,
    .on_data = on_data,
    .on_done = on_done,
};

static bool try_next(struct embed_call *ec)
{
    struct http_request *req = ec->req;
    while (ec->next < ec->plan.n && ec->tries < MAX_EMBED_TRIES) {
        const struct candidate *c = &ec->plan.items[ec->next++];
        const struct config_provider *p = c->provider;
        if (p->type == PROVIDER_MESH) continue; /* a peer's embeddings: not for a side call */
        const struct provider_ops *ops = provider_ops_for(p);
        if (!ops) continue;
        int64_t left = ec->deadline_ms - clock_mono_ms();
        if (left <= 0) return false;
        ec->pcall = (struct provider_call){
            .kind = API_EMBEDDINGS,
            .body = ec->body,
            .body_len = ec->body_len,
            .facts = &ec->facts,
            .provider = p,
            .model = c->model,
            .endpoint = c->endpoint ? c->endpoint : p->endpoint,
            .arena = &req->arena,
            .request_id = req->id,
        };
        struct provider_request pr;
        char why[256];
        if (ops->prepare(&ec->pcall, &pr, why, sizeof why) != 0) continue;
        if (!provider_stats_try_begin(p->stats, p->max_concurrency)) continue;
        ec->tries++;
        ec->cand = c;
        ec->ops = ops;
        ec->stats_open = true;
        ec->start_us = clock_mono_us();
        int64_t timeout = p->timeout_ms < left ? p->timeout_ms : left;
        struct upstream_request ur = {
            .method = "POST",
            .url = pr.url,
            .headers = pr.headers,
            .body = pr.body,
            .body_len = pr.body_len,
            .timeout_ms = timeout,
            .idle_timeout_ms = timeout,
            .tls_ca_file = p->tls_ca_file,
            .tls_insecure = p->tls_insecure_skip_verify,
            .tls_cert_file = p->tls_cert_file,
            .tls_key_file = p->tls_key_file,
        };
        ec->call = upstream_call_start(api_upstream_pool(req->worker), &ur, &callbacks, ec);
        return true;
    }
    return false;
}

struct embed_call *embed_start(struct http_request *req, const char *model, const char *text,
                               size_t len, int64_t timeout_ms, embed_done_cb done, void *arg)
{
    struct embed_call *ec = arena_alloc(&req->arena, sizeof *ec);
    memset(ec, 0, sizeof *ec);
    ec->req = req;
    ec->done = done;
    ec->arg = arg;
    ec->deadline_ms = clock_mono_ms() + timeout_ms;
    size_t cap = len * 6 + strlen(model) * 6 + 64;
    ec->body = arena_alloc(&req->arena, cap);
    struct jsonw w;
    jsonw_init(&w, ec->body, cap);
    jsonw_raw(&w, "{\"model\":");
    jsonw_str(&w, model);
    jsonw_raw(&w, ",\"input\":");
    jsonw_strn(&w, text, len);
    jsonw_raw(&w, "}");
    ec->body_len = jsonw_len(&w);
    struct scan_error serr;
    if (scan_request(SCAN_EMBEDDINGS, ec->body, ec->body_len, &ec->facts, &serr) != 0) return NULL;
    struct route_input in = {
        .model = model,
        .caps_needed = CAP_EMBEDDINGS,
        .facts = &ec->facts,
        .max_cost_nanos = -1,
        .seed = (uint64_t)clock_mono_us(),
        .now_ms = clock_mono_ms(),
    };
    routing_plan_request(req->config, &in, &ec->plan, &req->arena);
    if (ec->plan.error != ROUTE_OK || ec->plan.n == 0) return NULL;
    arena_on_free(&req->arena, on_freed, ec);
    if (!try_next(ec)) return NULL;
    return ec;
}

void embed_cancel(struct embed_call *ec)
{
    if (!ec) return;
    ec->done = NULL;
    if (ec->call) {
        upstream_call_cancel(ec->call);
        ec->call = NULL;
    }
    close_stats(ec, true, false); /* not the provider's fault */
}
