/* proxy: the request flow for the OpenAI inference endpoints
 * (chat/completions, completions, embeddings):
 *   scan -> plan candidates -> for each: prepare (adapter) -> upstream call
 *   -> check the answer -> respond, spliced with the x-aiproxy object.
 * A failure before anything reached the client fails over to the next
 * candidate; after the first streamed byte it ends the stream with an
 * error event. All state lives in the request's arena. */
#include "api/proxy.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "api/admission.h"
#include "api/proxy_cache.h"
#include "api/proxy_context.h"
#include "api/proxy_internal.h"
#include "api/mesh_route.h"
#include "api/scan.h"
#include "api/upstream_slot.h"
#include "budget/pricing.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/jsonw.h"
#include "core/log.h"
#include "core/str.h"
#include "core/money.h"
#include "http/server.h"
#include "core/sse.h"
#include "obs/metrics.h"
#include "obs/trace.h"
#include "providers/anthropic_native.h"
#include "providers/inbound.h"
#include "providers/mesh.h"
#include "providers/provider.h"
#include "routing/candidates.h"
#include "routing/retry.h"
#include "routing/stats.h"
#include "upstream/client.h"

/* ---- limits ---- */

#define MAX_RESPONSE_BODY (32 * 1024 * 1024) /* a bigger upstream answer is a 502 */
#define MAX_ERROR_BODY (64 * 1024)
#define MAX_SSE_EVENT (4 * 1024 * 1024)

/* Without a per-request timeout (predict's routing.timeout), a request may
 * take this long over all its attempts. */
#define DEFAULT_REQUEST_DEADLINE_MS (10 * 60 * 1000)

/* Upstream attempts in flight on this node (server.max_upstream_transfers). */
static atomic_int transfers_in_flight;

static bool transfer_take(int cap)
{
    int cur = atomic_load_explicit(&transfers_in_flight, memory_order_relaxed);
    do {
        if (cap > 0 && cur >= cap) return false;
    } while (!atomic_compare_exchange_weak_explicit(&transfers_in_flight, &cur, cur + 1,
                                                    memory_order_relaxed, memory_order_relaxed));
    return true;
}

/* Ends an attempt's live figures and gives back its transfer slot: every
 * successful proxy_launch() is matched by exactly one call. */
void proxy_attempt_stats_end(const struct candidate *c, bool ok, bool timeout, int64_t latency_us)
{
    atomic_fetch_sub_explicit(&transfers_in_flight, 1, memory_order_relaxed);
    provider_stats_end(c->provider->stats, ok, timeout, latency_us);
}

void proxy_attempt_stats_abandon(const struct candidate *c)
{
    atomic_fetch_sub_explicit(&transfers_in_flight, 1, memory_order_relaxed);
    provider_stats_abandon(c->provider->stats);
}


static void send_error_event(struct proxy *px, const char *why);

/* ---- small helpers ---- */

static void buf_append(struct proxy *px, const char *data, size_t len, size_t cap)
{
    if (px->too_large) return;
    if (px->buf_len + len > cap) {
        px->too_large = true;
        return;
    }
    /* On the heap, not in the arena: a large answer that fails over must
     * not keep its memory until the request ends (reset_attempt frees it). */
    if (px->heap_len + len + 1 > px->heap_cap) {
        size_t ncap = px->heap_cap ? px->heap_cap * 2 : 4096;
        while (ncap < px->heap_len + len + 1) ncap *= 2;
        px->heap_buf = xrealloc(px->heap_buf, ncap);
        px->heap_cap = ncap;
    }
    memcpy(px->heap_buf + px->heap_len, data, len);
    px->heap_len += len;
    px->heap_buf[px->heap_len] = '\0';
    px->buf = px->heap_buf;
    px->buf_len = px->heap_len;
}

struct attempt *proxy_record_attempt_for(struct proxy *px, const char *provider, int64_t start_us,
                                          const char *fmt, const char *detail)
{
    if (px->n_attempts == MAX_ATTEMPTS) return NULL;
    struct attempt *a = &px->attempts[px->n_attempts++];
    a->provider = provider;
    a->latency_ms = (clock_mono_us() - start_us) / 1000;
    /* Every outcome format has one %s: put `detail` there without printf
     * (this runs once per attempt, "ok" included). */
    const char *hole = strstr(fmt, "%s");
    if (hole && !strchr(hole + 2, '%') && memchr(fmt, '%', (size_t)(hole - fmt)) == NULL) {
        size_t n = (size_t)(hole - fmt) < sizeof a->outcome - 1 ? (size_t)(hole - fmt)
                                                                 : sizeof a->outcome - 1;
        memcpy(a->outcome, fmt, n);
        a->outcome[n] = '\0';
        str_append(a->outcome, sizeof a->outcome, &n, detail);
        str_append(a->outcome, sizeof a->outcome, &n, hole + 2);
    } else {
        snprintf(a->outcome, sizeof a->outcome, fmt, detail);
    }
    return a;
}

struct attempt *proxy_record_attempt(struct proxy *px, const char *fmt, const char *detail)
{
    return proxy_record_attempt_for(px, px->cand->provider->name, px->attempt_start_us, fmt, detail);
}

void proxy_reset_attempt(struct proxy *px)
{
    px->call = NULL;
    px->status = 0;
    px->upstream_sse = false;
    px->retry_after = NULL;
    px->content_type = NULL;
    px->buf = NULL;
    px->buf_len = 0;
    free(px->heap_buf);
    px->heap_buf = NULL;
    px->heap_len = px->heap_cap = 0;
    px->too_large = false;
    if (px->sse_ready) sse_reader_cleanup(&px->sse);
    px->sse_ready = false;
    px->saw_done = false;
    px->chunks = 0;
    px->held_usage = NULL;
    px->held_usage_len = 0;
    memset(&px->usage, 0, sizeof px->usage);
    memset(&px->relay, 0, sizeof px->relay);
}

/* Closes the attempt's live figures once: a success feeds the latency
 * average (time to first byte for streams). */
static void attempt_close(struct proxy *px, bool ok, bool timeout)
{
    if (!px->stats_open) return;
    px->stats_open = false;
    int64_t end = px->first_byte_us ? px->first_byte_us : clock_mono_us();
    proxy_attempt_stats_end(px->cand, ok, timeout, end - px->attempt_start_us);
    trace_attempt_end(px->req, px->cand, px->status, ok, timeout); /* obs: the attempt's span */
}

/* The same for an attempt that never reached its provider (this process
 * had no descriptor or port for it): nothing is counted against it. */
static void attempt_abandon(struct proxy *px)
{
    if (!px->stats_open) return;
    px->stats_open = false;
    proxy_attempt_stats_abandon(px->cand);
    trace_attempt_end(px->req, px->cand, 0, false, false);
}

/* Tokens at the model's prices, plus its per-generation price for each
 * generation (images: `n` of them). */
static nanos_t compute_cost(const struct config_model *m, const struct usage *u, int64_t generations)
{
    nanos_t cost = pricing_tokens_cost(m, u->prompt_tokens, u->cached_tokens,
                                       u->cache_write_tokens, u->completion_tokens);
    return cost + m->price_per_generation * (generations > 0 ? generations : 1);
}

/* Fills usage from the provider, or estimates it and says so. */
static void settle_usage(struct proxy *px)
{
    if (px->usage.present) {
        if (px->usage.total_tokens == 0)
            px->usage.total_tokens = px->usage.prompt_tokens + px->usage.completion_tokens;
        return;
    }
    if (px->kind == API_IMAGES) {
        /* Priced per generation: tokens play no part, nothing to estimate. */
        px->usage.present = true;
        return;
    }
    px->usage_estimated = true;
    px->usage.present = true;
    px->usage.prompt_tokens = scan_estimate_tokens(px->facts.text_bytes);
    if (px->kind == API_EMBEDDINGS) px->usage.completion_tokens = 0;
    else if (px->req->acct.stream) px->usage.completion_tokens = px->chunks;
    else px->usage.completion_tokens = scan_estimate_tokens(px->buf_len / 2);
    px->usage.total_tokens = px->usage.prompt_tokens + px->usage.completion_tokens;
}

/* The x-aiproxy object (SPEC section 3). */
static size_t write_meta(struct proxy *px, char *out, size_t cap)
{
    const struct config *cfg = px->req->config;
    bool peer = px->cand->provider->type == PROVIDER_MESH;
    nanos_t cost = (px->relay.present ? px->relay.cost
                                      : compute_cost(px->cand->model, &px->usage,
                                                     px->kind == API_IMAGES ? px->facts.n : 1)) +
                   px->hedge_loser_cost + proxy_cache_cost(px);
    const char *route = mesh_route_answer(px->req, &px->relay, px->mesh_via_out);
    px->req->acct.via_peer = peer;
    px->req->acct.route = route;
    px->req->acct.provider = px->cand->provider->name;
    px->req->acct.tokens_in = px->usage.prompt_tokens;
    px->req->acct.tokens_out = px->usage.completion_tokens;
    px->req->acct.cached_tokens = px->usage.cached_tokens;
    px->req->acct.cache_write_tokens = px->usage.cache_write_tokens;
    px->req->acct.cost_nanos = cost;
    px->req->acct.estimated = px->usage_estimated;
    px->req->acct.failovers = (int)px->n_attempts - 1;

    struct jsonw w;
    jsonw_init(&w, out, cap);
    if (px->req->from_peer) {
        jsonw_raw(&w, "{\"provider\":");
    } else {
        jsonw_raw(&w, "{\"request_id\":");
        jsonw_str(&w, px->req->id);
        jsonw_raw(&w, ",\"provider\":");
    }
    jsonw_str(&w, px->relay.present ? px->relay.provider : px->cand->provider->name);
    jsonw_raw(&w, ",\"node\":");
    jsonw_str(&w, px->relay.present ? px->relay.node : cfg->node.id);
    if (cfg->node.mesh_enabled || px->req->from_peer) {
        /* "a,b" -> ["a","b"] */
        jsonw_raw(&w, ",\"route\":[");
        for (const char *r = route; *r;) {
            const char *comma = strchr(r, ',');
            size_t n = comma ? (size_t)(comma - r) : strlen(r);
            if (r != route) jsonw_raw(&w, ",");
            jsonw_strn(&w, r, n);
            r += n + (comma ? 1 : 0);
        }
        jsonw_raw(&w, "]");
    }
    if (px->req->from_peer) {
        /* For the origin, which replaces this object with its own: only
         * what it uses (its ledger takes the exact cost), so that it has
         * little to read. */
        jsonw_raw(&w, ",\"cost_nanos\":");
        jsonw_int(&w, cost);
        /* The counts this node settled on, so that the origin can take the
         * answer from its tail without scanning it (mesh_relay_tail). */
        jsonw_raw(&w, ",\"usage\":{\"prompt_tokens\":");
        jsonw_int(&w, px->usage.prompt_tokens);
        jsonw_raw(&w, ",\"completion_tokens\":");
        jsonw_int(&w, px->usage.completion_tokens);
        jsonw_raw(&w, ",\"total_tokens\":");
        jsonw_int(&w, px->usage.total_tokens);
        jsonw_raw(&w, ",\"cached_tokens\":");
        jsonw_int(&w, px->usage.cached_tokens);
        jsonw_raw(&w, ",\"cache_write_tokens\":");
        jsonw_int(&w, px->usage.cache_write_tokens);
        jsonw_raw(&w, "}}");
        return jsonw_len(&w);
    }
    jsonw_raw(&w, ",\"model\":");
    jsonw_str(&w, px->cand->model->upstream_id);
    jsonw_raw(&w, ",\"requested_model\":");
    jsonw_str(&w, px->facts.model[0] ? px->facts.model : px->plan.model);
    jsonw_raw(&w, ",\"strategy\":");
    jsonw_str(&w, routing_strategy_name(px->plan.strategy_used));
    proxy_cache_meta(px, &w);
    proxy_context_meta(px, &w);
    jsonw_raw(&w, ",\"reason\":");
    if (px->n_attempts > 1) {
        /* The winner was not the first choice: say what happened before. */
        char why[512];
        size_t off = 0;
        for (size_t i = 0; i + 1 < px->n_attempts && off < sizeof why; i++)
            off += (size_t)snprintf(why + off, sizeof why - off, "%s%s: %s", i ? "; " : "failover after ",
                                    px->attempts[i].provider, px->attempts[i].outcome);
        if (off < sizeof why)
            snprintf(why + off, sizeof why - off, "; then %s: %s", px->cand->provider->name,
                     px->cand->reason);
        jsonw_str(&w, why);
    } else {
        jsonw_str(&w, px->plan.reason[0] ? px->plan.reason : NULL);
    }
    if (px->plan.tier) {
        jsonw_raw(&w, ",\"tier\":");
        jsonw_str(&w, px->plan.tier);
    }
    char usd[32];
    money_format_usd(cost, usd, sizeof usd);
    jsonw_raw(&w, ",\"cost\":");
    jsonw_raw(&w, usd);
    if (px->usage.cached_tokens > 0) {
        jsonw_raw(&w, ",\"cached_tokens\":");
        jsonw_int(&w, px->usage.cached_tokens);
    }
    if (px->usage.cache_write_tokens > 0) {
        jsonw_raw(&w, ",\"cache_write_tokens\":");
        jsonw_int(&w, px->usage.cache_write_tokens);
    }
    jsonw_raw(&w, ",\"latency_ms\":");
    jsonw_int(&w, (clock_mono_us() - px->req->start_us) / 1000);
    jsonw_raw(&w, ",\"usage_estimated\":");
    jsonw_raw(&w, px->usage_estimated ? "true" : "false");
    jsonw_raw(&w, ",\"providers_tried\":[");
    for (size_t i = 0; i < px->n_attempts; i++) {
        if (i) jsonw_raw(&w, ",");
        jsonw_str(&w, px->attempts[i].provider);
    }
    jsonw_raw(&w, "],\"attempts\":[");
    for (size_t i = 0; i < px->n_attempts; i++) {
        if (i) jsonw_raw(&w, ",");
        jsonw_raw(&w, "{\"provider\":");
        jsonw_str(&w, px->attempts[i].provider);
        jsonw_raw(&w, ",\"outcome\":");
        jsonw_str(&w, px->attempts[i].outcome);
        jsonw_raw(&w, ",\"latency_ms\":");
        jsonw_int(&w, px->attempts[i].latency_ms);
        jsonw_raw(&w, "}");
    }
    if (px->hedged) jsonw_raw(&w, "],\"hedged\":true,\"failovers\":");
    else jsonw_raw(&w, "],\"failovers\":");
    jsonw_int(&w, (int64_t)px->n_attempts - 1);
    jsonw_raw(&w, "}");
    return jsonw_len(&w);
}

static char *gateway_headers(struct proxy *px)
{
    return arena_concat(&px->req->arena, proxy_cache_header(px), "x-aiproxy-provider: ",
                        px->cand->provider->name, "\r\n", NULL);
}

/* ---- the end of the road ---- */

static void finish_with_failure(struct proxy *px)
{
    hedge_drop(px, "cancelled: the request failed", true);
    char msg[1024];
    size_t off = 0;
    if (px->n_attempts == 0) {
        off = (size_t)snprintf(msg, sizeof msg, "No provider is available for model '%s'%s%s.",
                               px->plan.model, px->plan.excluded[0] ? ": " : "",
                               px->plan.excluded);
    } else {
        off = (size_t)snprintf(msg, sizeof msg, "Every provider for model '%s' failed: ",
                               px->plan.model);
        for (size_t i = 0; i < px->n_attempts && off < sizeof msg; i++)
            off += (size_t)snprintf(msg + off, sizeof msg - off, "%s%s: %s", i ? "; " : "",
                                    px->attempts[i].provider, px->attempts[i].outcome);
        if (off < sizeof msg) snprintf(msg + off, sizeof msg - off, ".");
    }
    struct http_request *req = px->req;
    req->acct.failovers = px->n_attempts ? (int)px->n_attempts - 1 : 0;
    if (px->n_attempts && px->local_failures == (int)px->n_attempts) {
        /* No provider was reached: this gateway's shortage, not theirs. */
        http_respond_error_h(req, GW_ERR_UNAVAILABLE, msg, NULL, "Retry-After: 1\r\n");
        return;
    }
    if (px->n_attempts && px->all_timeouts)
        http_respond_error(req, GW_ERR_TIMEOUT, msg, NULL);
    else
        http_respond_error(req, GW_ERR_UPSTREAM, msg, NULL);
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    proxy_start_next(arg);
}

/* After a failed attempt: ask the router whether to retry the same
 * provider, move on, or stop, and when. */
static void decide_next(struct proxy *px, enum attempt_failure af, int64_t retry_after_ms)
{
    const struct config *cfg = px->req->config;
    bool has_next = px->next < px->plan.n;
    const struct config_provider *np = has_next ? px->plan.items[px->next].provider
                                                : px->cand->provider;
    struct retry_input ri = {
        .failure = af,
        .attempts = px->upstream_attempts,
        .max_retries = cfg->routing.max_retries,
        .failover_enabled = cfg->routing.failover_enabled,
        .base_delay_ms = cfg->routing.retry_delay_ms,
        .retry_after_ms = retry_after_ms,
        .remaining_ms = px->deadline_ms - clock_mono_ms(),
        .has_next = has_next,
        .next_timeout_ms = np->timeout_ms,
        .seed = px->seed + (uint64_t)px->upstream_attempts,
    };
    struct retry_decision d;
    routing_retry_decide(&ri, &d);
    if (px->n_attempts && d.why) {
        struct attempt *a = &px->attempts[px->n_attempts - 1];
        size_t len = strlen(a->outcome);
        snprintf(a->outcome + len, sizeof a->outcome - len, " (%s)", d.why);
    }
    if (d.action == RETRY_STOP) {
        px->next = px->plan.n; /* nothing more to try */
        finish_with_failure(px);
        return;
    }
    if (d.action == RETRY_SAME) px->next--;
    px->next_timeout_ms = d.attempt_timeout_ms;
    if (d.wait_ms <= 0) {
        proxy_start_next(px);
        return;
    }
    if (!px->retry_timer) px->retry_timer = evtimer_new(http_worker_base(px->req->worker), on_retry_timer, px);
    struct timeval tv = {.tv_sec = d.wait_ms / 1000, .tv_usec = (d.wait_ms % 1000) * 1000};
    evtimer_add(px->retry_timer, &tv);
}

/* The attempt failed before anything reached the client: fail over (or
 * retry, or stop) as the router decides. */
static void attempt_failed(struct proxy *px, enum attempt_failure af, const char *fmt,
                           const char *detail)
{
    proxy_record_attempt(px, fmt, detail);
    int64_t retry_after = routing_retry_after_ms(px->retry_after, clock_wall_s());
    attempt_close(px, false, af == AF_TIMEOUT);
    metrics_failover_reason((int)af);
    if (af != AF_TIMEOUT) px->all_timeouts = false;
    if (px->call) {
        upstream_call_cancel(px->call);
        px->call = NULL;
    }
    log_event(LOG_INFO, "upstream_failed", "request %s: provider %s: %s", px->req->id,
              px->cand->provider->name, px->attempts[px->n_attempts - 1].outcome);
    proxy_reset_attempt(px);
    hedge_disarm_timer(px);
    if (px->hedge) {
        /* A hedge leg is still running: it carries the request now. */
        hedge_adopt(px, px->hedge);
        return;
    }
    decide_next(px, af, retry_after);
}

/* ---- non-streaming answers ---- */

/* A provider's (OpenAI-shaped) error, passed through with its status. */
static void respond_error_body(struct proxy *px, const char *body, size_t len)
{
    struct http_request *req = px->req;
    char *out;
    size_t out_len;
    if (req->error_responder) {
        /* The client's protocol has its own errors (gRPC): the provider's
         * message, with the status it gave. */
        struct resp_facts rf;
        const char *msg = NULL;
        if (scan_response(body, len, &rf) == 0 && rf.has_error && rf.error_message[0])
            msg = rf.error_message;
        char fallback[160];
        if (!msg) {
            snprintf(fallback, sizeof fallback, "Provider %s rejected the request with HTTP %d.",
                     px->cand->provider->name, px->status);
            msg = fallback;
        }
        http_respond_error(req, px->status == 413 ? GW_ERR_REQUEST_TOO_LARGE : GW_ERR_BAD_REQUEST,
                           msg, NULL);
        return;
    }
    if (req->error_filter && req->error_filter(req, px->status, body, len, &out, &out_len)) {
        body = out;
        len = out_len;
    }
    http_respond(req, px->status, "application/json", gateway_headers(px), body, len);
}

static void respond_passthrough_error(struct proxy *px)
{
    struct resp_facts rf;
    struct http_request *req = px->req;
    hedge_drop(px, "cancelled: the other leg's answer was final", true);
    attempt_close(px, true, false);
    req->acct.provider = px->cand->provider->name;
    if (px->ops->error_body) {
        struct provider_response resp = {.status = px->status, .content_type = px->content_type,
                                         .body = px->buf ? px->buf : "", .len = px->buf_len};
        char *out = NULL;
        size_t out_len = 0;
        if (px->ops->error_body(&px->pcall, &resp, &out, &out_len) == 0) {
            respond_error_body(px, out, out_len);
            return;
        }
    }
    if (px->buf && scan_response(px->buf, px->buf_len, &rf) == 0 && rf.has_error) {
        respond_error_body(px, px->buf, px->buf_len);
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg, "Provider %s rejected the request with HTTP %d.",
             px->cand->provider->name, px->status);
    char body[1024];
    size_t n = gw_error_body(GW_ERR_BAD_REQUEST, msg, NULL, body, sizeof body);
    respond_error_body(px, body, n);
}

static void finish_whole(struct proxy *px)
{
    struct resp_facts rf;
    if (px->too_large) {
        attempt_failed(px, AF_RETRYABLE, "response larger than %s", "32 MB");
        return;
    }
    struct provider_usage pu = {0};
    /* A mesh peer's answer needs no translation, only its x-aiproxy taken
     * out: done below from the scan this function makes anyway
     * (mesh_relay_take), rather than by the adapter's finish, which would
     * scan the answer a second time. */
    bool peer = px->cand->provider->type == PROVIDER_MESH;
    if (px->ops->finish && !peer) {
        struct provider_response resp = {.status = px->status, .content_type = px->content_type,
                                         .body = px->buf ? px->buf : "", .len = px->buf_len};
        char *out = NULL;
        size_t out_len = 0;
        char err[256] = "";
        if (px->ops->finish(&px->pcall, &resp, &out, &out_len, &pu, err, sizeof err) != 0) {
            attempt_failed(px, AF_RETRYABLE, "%s", err[0] ? err : "unexpected answer");
            return;
        }
        px->buf = out;
        px->buf_len = out_len;
    }
    char *cut;
    size_t cut_len;
    if (peer && mesh_relay_tail(&px->req->arena, px->buf, px->buf_len, &rf, &cut, &cut_len,
                                &px->relay)) {
        /* A peer of this build: its relay, with its counts, ends the
         * answer; the peer has scanned the rest. */
        px->buf = cut;
        px->buf_len = cut_len;
    } else {
        if (scan_response(px->buf, px->buf_len, &rf) != 0) {
            attempt_failed(px, AF_RETRYABLE, "HTTP 200 with a body that is not a JSON object%s", "");
            return;
        }
        if (rf.has_error) {
            attempt_failed(px, AF_RETRYABLE, "HTTP 200 with an error body%s", "");
            return;
        }
        if (peer && mesh_relay_take(&px->req->arena, px->buf, px->buf_len, &rf, &cut, &cut_len,
                                    &px->relay)) {
            /* The peer's own x-aiproxy is replaced by this node's, below. */
            rf.close_off -= rf.relay.end_off - rf.relay.start_off;
            px->buf = cut;
            px->buf_len = cut_len;
        }
    }
    px->usage = rf.usage;
    if (pu.present) {
        px->usage.present = true;
        px->usage.prompt_tokens = pu.prompt_tokens;
        px->usage.completion_tokens = pu.completion_tokens;
        px->usage.cached_tokens = pu.cached_tokens;
        px->usage.cache_write_tokens = pu.cache_write_tokens;
        px->usage.total_tokens = pu.prompt_tokens + pu.completion_tokens;
    }
    settle_usage(px);
    attempt_close(px, true, false);
    proxy_record_attempt(px, "ok%s", "");
    char meta[4096];
    size_t mlen = write_meta(px, meta, sizeof meta);
    proxy_cache_store_whole(px, px->buf, px->buf_len, &rf);
    proxy_context_done(px);
    /* Splice ,"x-aiproxy":{...} before the closing brace, and an estimated
     * usage object when the provider sent none. */
    struct http_request *req = px->req;
    size_t head = rf.close_off;
    size_t total = px->buf_len + mlen + 160;
    char *out = arena_alloc(&req->arena, total);
    size_t n = 0;
    memcpy(out, px->buf, head);
    n += head;
    if (!rf.usage.present && px->kind != API_IMAGES) {
        n += (size_t)snprintf(out + n, total - n,
                              "%s\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                              "\"total_tokens\":%lld}",
                              rf.root_empty ? "" : ",", (long long)px->usage.prompt_tokens,
                              (long long)px->usage.completion_tokens,
                              (long long)px->usage.total_tokens);
        rf.root_empty = false;
    }
    static const char key[] = ",\"x-aiproxy\":";
    size_t skip = rf.root_empty ? 1 : 0; /* no comma in an empty object */
    memcpy(out + n, key + skip, sizeof key - 1 - skip);
    n += sizeof key - 1 - skip;
    memcpy(out + n, meta, mlen);
    n += mlen;
    memcpy(out + n, px->buf + head, px->buf_len - head);
    n += px->buf_len - head;
    if (px->inbound) {
        char *translated;
        size_t tlen;
        if (px->inbound->response_from_openai(&req->arena, px->inbound_ctx, out, n, &translated, &tlen) != 0) {
            http_respond_error(req, GW_ERR_UPSTREAM,
                               "The provider's answer could not be translated to this API.", NULL);
            return;
        }
        out = translated;
        n = tlen;
        proxy_inbound_done(px);
    }
    proxy_respond_answer(px, gateway_headers(px), out, n);
}

/* ---- the answer's wire (JSON, SSE, or an inbound format's own) ---- */

void proxy_respond_answer(struct proxy *px, const char *headers, const char *body, size_t len)
{
    const struct inbound_ops *in = px->inbound;
    if (in && in->ok_trailers)
        http_respond_trailers(px->req, 200, in->content_type, headers, body, len, in->ok_trailers);
    else
        http_respond(px->req, 200, in && in->content_type ? in->content_type : "application/json",
                     headers, body, len);
}

void proxy_stream_open(struct proxy *px, const char *headers)
{
    const struct inbound_ops *in = px->inbound;
    http_stream_start(px->req, 200, in && in->content_type ? in->content_type : "text/event-stream",
                      headers);
    if (in && in->stream_begin)
        px->inbound_state = in->stream_begin(&px->req->arena, px->req->id, px->inbound_ctx);
}

void proxy_stream_close(struct proxy *px)
{
    const struct inbound_ops *in = px->inbound;
    const char *trailers = NULL;
    if (in && px->inbound_state && in->stream_trailers) trailers = in->stream_trailers(px->inbound_state);
    else if (in) trailers = in->ok_trailers;
    if (trailers) http_stream_end_trailers(px->req, trailers);
    else http_stream_end(px->req);
}

/* ---- streaming answers ---- */

static void start_client_stream(struct proxy *px)
{
    px->stream_started = true;
    px->first_byte_us = clock_mono_us();
    provider_stats_ttft(px->cand->provider->stats, px->first_byte_us - px->attempt_start_us);
    trace_first_token(px->req, px->cand->provider->name, px->first_byte_us - px->req->start_us);
    metrics_stream_open();
    px->stream_counted = true;
    proxy_stream_open(px, arena_concat(&px->req->arena, "Cache-Control: no-cache\r\n",
                                       proxy_cache_header(px), "x-aiproxy-provider: ",
                                       px->cand->provider->name, "\r\n", NULL));
}

/* Bytes for the client from an inbound translator (complete events). */
static void emit_raw(void *ctx, const char *bytes, size_t len)
{
    struct proxy *px = ctx;
    if (http_stream_write(px->req, bytes, len) && px->call) upstream_call_pause(px->call);
}

/* The last events held back: the format's hook (storing a response) runs
 * before they leave, so a client that acts on them finds what it stored. */
struct held_events {
    char *buf;
    size_t len, cap;
    struct arena *arena;
};

static void emit_held(void *ctx, const char *bytes, size_t len)
{
    struct held_events *h = ctx;
    if (h->len + len > h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        while (cap < h->len + len) cap *= 2;
        char *nb = arena_alloc(h->arena, cap);
        if (h->len) memcpy(nb, h->buf, h->len);
        h->buf = nb;
        h->cap = cap;
    }
    memcpy(h->buf + h->len, bytes, len);
    h->len += len;
}

void proxy_inbound_stream_finish(struct proxy *px, const char *chunk, size_t len)
{
    if (!px->inbound_done) {
        px->inbound->stream_chunk(px->inbound_state, chunk, len, emit_raw, px);
        px->inbound->stream_end(px->inbound_state, emit_raw, px);
        return;
    }
    struct held_events h = {.arena = &px->req->arena};
    px->inbound->stream_chunk(px->inbound_state, chunk, len, emit_held, &h);
    px->inbound->stream_end(px->inbound_state, emit_held, &h);
    proxy_inbound_done(px);
    if (h.len) emit_raw(px, h.buf, h.len);
}

static void forward_event(struct proxy *px, const char *data, size_t len)
{
    if (px->inbound_state) {
        px->inbound->stream_chunk(px->inbound_state, data, len, emit_raw, px);
        return;
    }
    if (http_stream_write3(px->req, "data: ", 6, data, len, "\n\n", 2) && px->call)
        upstream_call_pause(px->call);
}

/* The closing chunk: usage and x-aiproxy, then [DONE]. */
static void send_final_chunk(struct proxy *px)
{
    if (px->pstream.relay.present) px->relay = px->pstream.relay;
    settle_usage(px);
    attempt_close(px, true, false);
    proxy_record_attempt(px, "ok%s", "");
    char meta[4096];
    size_t mlen = write_meta(px, meta, sizeof meta);
    char *chunk;
    if (px->held_usage && px->held_valid) {
        /* The provider's usage chunk with ,"x-aiproxy":{...} spliced in
         * before its closing brace (copies, not a format: it may be long). */
        size_t head = px->held_close_off, tail = px->held_usage_len - head;
        static const char key[] = ",\"x-aiproxy\":";
        size_t skip = px->held_root_empty ? 1 : 0; /* no comma in an empty object */
        chunk = arena_alloc(&px->req->arena, head + sizeof key + mlen + tail);
        char *o = chunk;
        memcpy(o, px->held_usage, head);
        o += head;
        memcpy(o, key + skip, sizeof key - 1 - skip);
        o += sizeof key - 1 - skip;
        memcpy(o, meta, mlen);
        o += mlen;
        memcpy(o, px->held_usage + head, tail);
        o[tail] = '\0';
    } else {
        const char *object = px->kind == API_COMPLETIONS ? "text_completion" : "chat.completion.chunk";
        char model[600];
        struct jsonw w;
        jsonw_init(&w, model, sizeof model);
        jsonw_str(&w, px->cand->model->upstream_id);
        /* Prompt-cache counts an adapter reported without a usage chunk
         * (SPEC section 9) are kept in OpenAI's place for them. */
        char details[128] = "";
        if (px->usage.cached_tokens > 0 || px->usage.cache_write_tokens > 0)
            snprintf(details, sizeof details,
                     ",\"prompt_tokens_details\":{\"cached_tokens\":%lld,\"cache_write_tokens\":%lld}",
                     (long long)px->usage.cached_tokens, (long long)px->usage.cache_write_tokens);
        chunk = arena_printf(&px->req->arena,
                             "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":%s,"
                             "\"choices\":[],\"usage\":{\"prompt_tokens\":%lld,"
                             "\"completion_tokens\":%lld,\"total_tokens\":%lld%s},\"x-aiproxy\":%.*s}",
                             px->req->id, object, (long long)clock_wall_s(), model,
                             (long long)px->usage.prompt_tokens,
                             (long long)px->usage.completion_tokens,
                             (long long)px->usage.total_tokens, details, (int)mlen, meta);
    }
    if (px->inbound_state) {
        proxy_inbound_stream_finish(px, chunk, strlen(chunk));
        return;
    }
    http_stream_write3(px->req, "data: ", 6, chunk, strlen(chunk), "\n\ndata: [DONE]\n\n", 16);
}

static void send_error_event(struct proxy *px, const char *why)
{
    char msg[512];
    size_t wl = strlen(why);
    snprintf(msg, sizeof msg, "The provider %s failed mid-stream: %s%s", px->cand->provider->name,
             why, wl && why[wl - 1] == '.' ? "" : ".");
    char body[2048];
    size_t n = gw_error_body(GW_ERR_UPSTREAM, msg, NULL, body, sizeof body);
    if (px->inbound_state) px->inbound->stream_error(px->inbound_state, body, n, emit_raw, px);
    else http_stream_write3(px->req, "data: ", 6, body, n, "\n\n", 2);
    px->failed_mid_stream = true;
    attempt_close(px, false, false);
    proxy_record_attempt(px, "failed mid-stream: %s", why);
    settle_usage(px);
    char meta[4096];
    write_meta(px, meta, sizeof meta); /* fills the access-log figures */
}

static bool data_is(const struct sse_event *ev, const char *s)
{
    size_t n = strlen(s);
    return ev->data_len == n && memcmp(ev->data, s, n) == 0;
}

/* One OpenAI-shaped event (from the provider, or translated by its
 * adapter): check it for an error or usage, then relay it. Returns -1 to
 * stop reading (see pending_*). */
/* Whether an event's text holds "usage":{ or "error" anywhere (then it is
 * scanned). One memchr walk over its quotes: glibc's memmem sets up a
 * two-way search on every call, which costs more than the event. */
static void quoted_keys_seen(const char *p, size_t n, bool *usage, bool *error)
{
    const char *end = p + n;
    for (const char *q = memchr(p, '"', n); q; q = memchr(q + 1, '"', (size_t)(end - q - 1))) {
        size_t left = (size_t)(end - q);
        if (left >= 9 && memcmp(q, "\"usage\":{", 9) == 0) *usage = true;
        else if (left >= 7 && memcmp(q, "\"error\"", 7) == 0) *error = true;
        if (left < 2) break;
    }
}

static int relay_openai_event(struct proxy *px, const char *data, size_t len, bool named_error)
{
    /* Only chunks that may carry usage or an error are scanned in full. */
    bool maybe_usage = false, maybe_error = named_error;
    quoted_keys_seen(data, len, &maybe_usage, &maybe_error);
    struct resp_facts rf;
    memset(&rf, 0, sizeof rf);
    bool scanned = false; /* a whole valid JSON object */
    if (maybe_usage || maybe_error) {
        scanned = scan_response(data, len, &rf) == 0;
        if (named_error) rf.has_error = true;
    }
    if (rf.has_error) {
        if (!px->stream_started) px->pending_failover = "stream began with an error event";
        else px->pending_stream_error = "the provider sent an error event";
        return -1;
    }
    if (rf.usage.present) {
        px->usage = rf.usage;
        if (rf.choices_empty) {
            /* The usage-only chunk: held back, it becomes the final chunk. */
            px->held_usage = arena_strndup(&px->req->arena, data, len);
            px->held_usage_len = len;
            px->held_valid = scanned;
            px->held_close_off = rf.close_off;
            px->held_root_empty = rf.root_empty;
            return 0;
        }
    }
    if (!px->stream_started) start_client_stream(px);
    px->chunks++;
    proxy_cache_stream_chunk(px, data, len);
    forward_event(px, data, len);
    return 0;
}

static void end_of_stream(struct proxy *px)
{
    if (!px->stream_started) start_client_stream(px);
    px->saw_done = true;
    send_final_chunk(px);
    proxy_cache_store_stream(px); /* ended properly: kept when the request may */
    proxy_context_done(px);
}

static void on_translated_chunk(void *ctx, const char *json, size_t len)
{
    struct proxy *px = ctx;
    if (px->pending_failover || px->pending_stream_error || px->saw_done) return;
    relay_openai_event(px, json, len, false);
}

static int on_sse_event(void *ctx, const struct sse_event *ev)
{
    struct proxy *px = ctx;
    if (px->saw_done) return 0;
    if (px->ops->stream_event) {
        struct provider_stream *st = &px->pstream;
        int rc = px->ops->stream_event(&px->pcall, st, ev, on_translated_chunk, px);
        if (st->usage.present) {
            px->usage.present = true;
            px->usage.prompt_tokens = st->usage.prompt_tokens;
            px->usage.completion_tokens = st->usage.completion_tokens;
            px->usage.cached_tokens = st->usage.cached_tokens;
            px->usage.cache_write_tokens = st->usage.cache_write_tokens;
            px->usage.total_tokens = st->usage.prompt_tokens + st->usage.completion_tokens;
        }
        if (rc != 0) {
            const char *why = arena_strdup(&px->req->arena, st->error[0] ? st->error
                                                                      : "the provider sent an error event");
            if (!px->stream_started) px->pending_failover = why;
            else px->pending_stream_error = why;
        }
        if (px->pending_failover || px->pending_stream_error) return -1;
        if (st->done) end_of_stream(px);
        return 0;
    }
    if (data_is(ev, "[DONE]")) {
        end_of_stream(px);
        return 0;
    }
    bool named_error = ev->event_len == 5 && memcmp(ev->event, "error", 5) == 0;
    return relay_openai_event(px, ev->data, ev->data_len, named_error);
}

/* ---- upstream callbacks ---- */

void proxy_on_up_head(void *ctx, const struct upstream_head *h)
{
    struct proxy *px = ctx;
    hedge_disarm_timer(px);
    if (px->hedge && h->status >= 200 && h->status < 300) {
        char why[160];
        snprintf(why, sizeof why, "lost the hedge: %s answered first", px->cand->provider->name);
        hedge_drop(px, why, true);
    }
    px->status = h->status;
    px->upstream_sse = h->content_type && strncasecmp(h->content_type, "text/event-stream", 17) == 0;
    if (h->retry_after) px->retry_after = arena_strdup(&px->req->arena, h->retry_after);
    if (h->content_type) px->content_type = arena_strdup(&px->req->arena, h->content_type);
    if (px->status >= 200 && px->status < 300 && px->req->acct.stream) {
        bool ndjson = px->ops->stream_mode == SSE_MODE_NDJSON && h->content_type &&
                      (strstr(h->content_type, "ndjson") || strstr(h->content_type, "jsonl"));
        if (!px->upstream_sse && !ndjson) return; /* a non-stream answer: judged whole at the end */
        memset(&px->pstream, 0, sizeof px->pstream);
        sse_reader_init(&px->sse, ndjson ? SSE_MODE_NDJSON : SSE_MODE_SSE, MAX_SSE_EVENT,
                        on_sse_event, px);
        px->sse_ready = true;
    }
}

/* Acts on what the SSE callback asked for. Returns true when the attempt
 * (or the whole request) ended. */
static bool act_on_pending(struct proxy *px, int rc)
{
    if (rc == SSE_ERR_TOO_LARGE) {
        if (!px->stream_started) px->pending_failover = "stream event larger than 4 MB";
        else px->pending_stream_error = "an event was larger than 4 MB";
    }
    if (px->pending_failover) {
        const char *why = px->pending_failover;
        px->pending_failover = NULL;
        attempt_failed(px, AF_RETRYABLE, "%s", why);
        return true;
    }
    if (px->pending_stream_error) {
        const char *why = px->pending_stream_error;
        px->pending_stream_error = NULL;
        if (px->call) upstream_call_cancel(px->call);
        px->call = NULL;
        send_error_event(px, why);
        proxy_stream_close(px);
        return true;
    }
    return false;
}

void proxy_on_up_data(void *ctx, const char *data, size_t len)
{
    struct proxy *px = ctx;
    if (px->sse_ready) {
        int rc = sse_reader_feed(&px->sse, data, len);
        if (rc != SSE_OK) {
            act_on_pending(px, rc); /* may end the request: px is gone then */
            return;
        }
        /* Everything this read produced leaves in one write. */
        if (px->stream_started) http_stream_flush(px->req);
        return;
    }
    bool ok = px->status >= 200 && px->status < 300;
    buf_append(px, data, len, ok ? MAX_RESPONSE_BODY : MAX_ERROR_BODY);
    if (px->too_large && ok) attempt_failed(px, AF_RETRYABLE, "response larger than %s", "32 MB");
}

static bool status_is_client_fault(int status)
{
    return status == 400 || status == 413 || status == 422;
}

void proxy_on_up_done(void *ctx, int err)
{
    struct proxy *px = ctx;
    px->call = NULL; /* freed by the client after this returns */
    if (err != 0) {
        if (px->stream_started) {
            if (!px->saw_done) send_error_event(px, upstream_error_text(err));
            proxy_stream_close(px);
            return;
        }
        if (err == UPSTREAM_ERR_LOCAL) {
            /* Not the provider's failure: its window and circuit are left
             * alone; the next candidate may have a pooled connection. */
            attempt_abandon(px);
            px->local_failures++;
            attempt_failed(px, AF_CONNECT, "%s", upstream_error_text(err));
        } else if (err == UPSTREAM_ERR_TIMEOUT) {
            char t[32];
            snprintf(t, sizeof t, "%lld ms", (long long)px->attempt_timeout_used);
            attempt_failed(px, AF_TIMEOUT, "timed out after %s", t);
        } else {
            bool no_answer = err == UPSTREAM_ERR_CONNECT || err == UPSTREAM_ERR_DNS ||
                             err == UPSTREAM_ERR_TLS || err == UPSTREAM_ERR_PROXY ||
                             err == UPSTREAM_ERR_URL;
            attempt_failed(px, no_answer ? AF_CONNECT : AF_RETRYABLE, "%s", upstream_error_text(err));
        }
        return;
    }
    if (px->status < 200 || px->status >= 300) {
        bool retry = px->ops->retryable_status ? px->ops->retryable_status(px->status)
                                               : !status_is_client_fault(px->status);
        if (!retry) {
            respond_passthrough_error(px);
            return;
        }
        char st[16];
        snprintf(st, sizeof st, "%d", px->status);
        attempt_failed(px, px->status == 429 ? AF_RATE_LIMITED : AF_RETRYABLE, "HTTP %s", st);
        return;
    }
    if (px->sse_ready) {
        int rc = sse_reader_finish(&px->sse);
        if (rc != SSE_OK && act_on_pending(px, rc)) return;
        if (!px->stream_started) {
            attempt_failed(px, AF_RETRYABLE, "empty stream%s", "");
            return;
        }
        if (!px->saw_done) {
            /* The provider ended without [DONE]: close it properly. */
            px->saw_done = true;
            send_final_chunk(px);
        }
        proxy_stream_close(px);
        return;
    }
    if (px->req->acct.stream) {
        attempt_failed(px, AF_RETRYABLE, "answered a stream request without an event stream%s", "");
        return;
    }
    finish_whole(px);
}

static const struct upstream_callbacks up_callbacks = {
    .on_head = proxy_on_up_head,
    .on_data = proxy_on_up_data,
    .on_done = proxy_on_up_done,
};

/* ---- client-side events ---- */

static void on_client_abort(void *data)
{
    struct proxy *px = data;
    if (px->retry_timer) evtimer_del(px->retry_timer);
    if (px->peer_watch) event_del(px->peer_watch);
    hedge_disarm_timer(px);
    hedge_drop(px, "cancelled: the client left", true);
    proxy_cache_abort(px);
    if (px->call) {
        upstream_call_cancel(px->call);
        px->call = NULL;
    }
    if (px->stats_open) {
        /* Not the provider's fault: count it done, without a latency sample. */
        px->stats_open = false;
        proxy_attempt_stats_end(px->cand, true, false, 0);
    }
    if (px->cand) {
        settle_usage(px);
        char meta[4096];
        write_meta(px, meta, sizeof meta); /* a client that leaves still pays */
    }
    if (px->sse_ready) sse_reader_cleanup(&px->sse);
    px->sse_ready = false;
}

static void on_client_drain(void *data)
{
    struct proxy *px = data;
    if (px->call) upstream_call_resume(px->call);
}

static void on_request_freed(void *data)
{
    struct proxy *px = data;
    if (px->retry_timer) event_free(px->retry_timer);
    px->retry_timer = NULL;
    if (px->hedge_timer) event_free(px->hedge_timer);
    px->hedge_timer = NULL;
    if (px->peer_watch) event_free(px->peer_watch);
    px->peer_watch = NULL;
    free(px->heap_buf);
    px->heap_buf = NULL;
    if (px->stream_counted) metrics_stream_close();
    px->stream_counted = false;
    if (px->sse_ready) sse_reader_cleanup(&px->sse);
    px->sse_ready = false;
}

/* ---- attempts ---- */


/* Prepares and starts an attempt on `cand` with callbacks `cbs`/`ctx`.
 * Returns false, with the reason recorded in the attempts, when this
 * candidate cannot take the request now (no adapter, the adapter refuses
 * it, or the provider is at its max_concurrency). */
bool proxy_launch(struct proxy *px, const struct candidate *cand,
                   const struct upstream_callbacks *cbs, void *ctx, struct launch *out)
{
    struct http_request *req = px->req;
    const struct config_provider *p = cand->provider;
    const struct provider_ops *ops = provider_ops_for(p);
    int64_t start = clock_mono_us();
    char why[256];
    if (!ops) {
        snprintf(why, sizeof why, "provider type %s is not supported by this build",
                 provider_type_name(p->type));
        proxy_record_attempt_for(px, p->name, start, "%s", why);
        px->all_timeouts = false;
        return false;
    }
    out->cand = cand;
    out->ops = ops;
    out->start_us = start;
    out->pcall = (struct provider_call){
        .kind = px->kind,
        .body = req->body,
        .body_len = req->body_len,
        .facts = &px->facts,
        .provider = p,
        .model = cand->model,
        .endpoint = cand->endpoint ? cand->endpoint : p->endpoint,
        .arena = &req->arena,
        .request_id = req->id,
        .mesh_hops = px->mesh_hops_out,
        .mesh_via = px->mesh_via_out,
        .anthropic = px->anthropic,
    };
    struct provider_request pr;
    if (ops->prepare(&out->pcall, &pr, why, sizeof why) != 0) {
        proxy_record_attempt_for(px, p->name, start, "%s", why);
        if (px->prepare_refusals++ == 0)
            snprintf(px->first_refusal, sizeof px->first_refusal, "%s", why);
        px->all_timeouts = false;
        return false;
    }
    if (!transfer_take(req->config->server.max_upstream_transfers)) {
        snprintf(why, sizeof why, "the gateway is at server.max_upstream_transfers (%d)",
                 req->config->server.max_upstream_transfers);
        proxy_record_attempt_for(px, p->name, start, "%s", why);
        px->capacity_skips++;
        px->all_timeouts = false;
        return false;
    }
    if (!provider_stats_try_begin(p->stats, p->max_concurrency)) {
        atomic_fetch_sub_explicit(&transfers_in_flight, 1, memory_order_relaxed);
        snprintf(why, sizeof why, "at max_concurrency (%d in flight)", p->max_concurrency);
        proxy_record_attempt_for(px, p->name, start, "%s", why);
        px->capacity_skips++;
        px->all_timeouts = false;
        return false;
    }
    int64_t timeout = p->timeout_ms;
    int64_t left = px->deadline_ms - clock_mono_ms();
    if (px->next_timeout_ms > 0 && px->next_timeout_ms < timeout) timeout = px->next_timeout_ms;
    if (left < timeout) timeout = left > 1 ? left : 1;
    px->next_timeout_ms = 0;
    out->timeout_ms = timeout;
    px->upstream_attempts++;
    /* obs: a span per attempt, and its traceparent sent upstream */
    const char *tp = trace_attempt_begin(req, cand, p->name, provider_type_name(p->type),
                                         cand->model->upstream_id, out->pcall.endpoint);
    if (tp) pr.headers = arena_concat(&req->arena, pr.headers ? pr.headers : "", tp, NULL);
    struct upstream_request ur = {
        .method = "POST",
        .url = pr.url,
        .headers = pr.headers,
        .body = pr.body,
        .body_len = pr.body_len,
        .timeout_ms = timeout,
        .stream = pr.stream,
        .idle_timeout_ms = p->timeout_ms,
        .tls_ca_file = p->tls_ca_file,
        .tls_insecure = p->tls_insecure_skip_verify,
        .tls_cert_file = p->tls_cert_file,
        .tls_key_file = p->tls_key_file,
    };
    out->call = upstream_call_start(api_upstream_pool(req->worker), &ur, cbs, ctx);
    return true;
}

/* ---- a peer lost while it has our request ----
 * A frozen or partitioned peer answers nothing until the attempt's own
 * deadline (minutes, for an LLM call). The heartbeats notice it within
 * node.mesh.peer_timeout (mesh/peers.c marks its entry down): then an
 * attempt that has sent nothing to the client fails over, and a stream
 * that has ends with an error event. */

static void on_peer_watch(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *px = arg;
    if (!px->call || !px->cand || px->cand->provider->type != PROVIDER_MESH) {
        event_del(px->peer_watch);
        return;
    }
    if (!provider_stats_down(px->cand->provider->stats)) return;
    event_del(px->peer_watch);
    if (px->stream_started) {
        upstream_call_cancel(px->call);
        px->call = NULL;
        if (!px->saw_done) send_error_event(px, "the mesh peer was lost (no heartbeat answered "
                                                "within node.mesh.peer_timeout)");
        proxy_stream_close(px);
        return;
    }
    attempt_failed(px, AF_CONNECT, "%s", "peer lost: no heartbeat answered within peer_timeout");
}

void proxy_arm_peer_watch(struct proxy *px)
{
    if (!px->call || px->cand->provider->type != PROVIDER_MESH) return;
    int64_t ms = px->req->config->node.peer_timeout_ms / 4;
    if (ms < 50) ms = 50;
    if (ms > 500) ms = 500;
    if (!px->peer_watch)
        px->peer_watch = event_new(http_worker_base(px->req->worker), -1, EV_PERSIST, on_peer_watch, px);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    event_add(px->peer_watch, &tv);
}

void proxy_start_next(struct proxy *px)
{
    struct http_request *req = px->req;
    while (px->next < px->plan.n) {
        struct launch l;
        px->cand = &px->plan.items[px->next++];
        px->attempt_start_us = clock_mono_us();
        if (!proxy_launch(px, px->cand, &up_callbacks, px, &l)) continue;
        px->ops = l.ops;
        px->pcall = l.pcall;
        px->call = l.call;
        px->attempt_start_us = l.start_us;
        px->attempt_timeout_used = l.timeout_ms;
        px->stats_open = true;
        px->first_byte_us = 0;
        hedge_arm_timer(px);
        proxy_arm_peer_watch(px);
        return;
    }
    if (px->upstream_attempts == 0 && px->capacity_skips > 0) {
        /* Shed load: every candidate is at its concurrency cap. */
        http_respond_error_h(req, GW_ERR_UNAVAILABLE,
                             "Every provider for this model is at its max_concurrency (or the "
                             "gateway at server.max_upstream_transfers); retry shortly.",
                             NULL, "Retry-After: 1\r\n");
        return;
    }
    if (px->upstream_attempts == 0 && px->prepare_refusals > 0) {
        /* No candidate could express the request: the request is at fault. */
        http_respond_error(req, GW_ERR_BAD_REQUEST, px->first_refusal, NULL);
        return;
    }
    finish_with_failure(px);
}

static void serve(struct proxy *px);
static void on_admitted(struct http_request *req);

void proxy_handle(struct http_request *req, enum api_kind kind)
{
    struct proxy *px = arena_alloc(&req->arena, sizeof *px);
    memset(px, 0, sizeof *px);
    px->req = req;
    px->kind = kind;
    px->all_timeouts = true;
    px->routing.max_cost_nanos = -1;
    serve(px);
}

static bool inbound_error_filter(struct http_request *req, int status, const char *body,
                                 size_t len, char **out, size_t *out_len)
{
    const struct inbound_ops *ops = req->error_filter_data;
    return ops->error_from_openai &&
           ops->error_from_openai(&req->arena, status, body, len, out, out_len) == 0;
}

void proxy_set_error_format(struct http_request *req, const struct inbound_ops *ops)
{
    req->error_filter = inbound_error_filter;
    req->error_filter_data = ops;
}

struct anthropic_passthrough *proxy_anthropic_passthrough(struct http_request *req)
{
    const char *version = http_header_get(req, "anthropic-version");
    const char *beta = http_header_get(req, "anthropic-beta");
    const char *fields = anthropic_passthrough_fields(&req->arena, req->body, req->body_len);
    if (!version && !beta && !fields) return NULL;
    struct anthropic_passthrough *pt = arena_alloc(&req->arena, sizeof *pt);
    pt->version = version;
    pt->beta = beta;
    pt->fields = fields;
    return pt;
}

void proxy_handle_inbound(struct http_request *req, const struct inbound_ops *ops)
{
    proxy_handle_inbound_kind(req, ops, API_CHAT, 0);
}

void proxy_handle_inbound_kind(struct http_request *req, const struct inbound_ops *ops,
                               enum api_kind kind, int64_t timeout_ms)
{
    struct proxy *px = arena_alloc(&req->arena, sizeof *px);
    memset(px, 0, sizeof *px);
    px->req = req;
    px->kind = kind;
    px->all_timeouts = true;
    px->inbound = ops;
    px->routing.max_cost_nanos = -1;
    proxy_set_error_format(req, ops);
    char *body;
    size_t len;
    bool stream = false;
    struct inbound_error err;
    memset(&err, 0, sizeof err);
    if (ops->request_to_openai(&req->arena, req->body, req->body_len, &body, &len, &stream,
                               &px->routing, &err) != 0) {
        http_respond_error(req, err.invalid_json ? GW_ERR_INVALID_JSON : GW_ERR_BAD_REQUEST,
                           err.message[0] ? err.message : "The request is not valid.", err.param);
        return;
    }
    if (stream && !ops->stream_begin) {
        http_respond_error(req, GW_ERR_BAD_REQUEST, "Streaming is not available on this endpoint.",
                           "stream");
        return;
    }
    if (ops == &inbound_anthropic_ops) px->anthropic = proxy_anthropic_passthrough(req);
    /* The transport's deadline (grpc-timeout) bounds the format's own. */
    if (timeout_ms > 0 && (px->routing.timeout_ms <= 0 || timeout_ms < px->routing.timeout_ms))
        px->routing.timeout_ms = timeout_ms;
    req->body = body;
    req->body_len = len;
    serve(px);
}

void proxy_handle_translated(struct http_request *req, const struct inbound_ops *ops, void *ctx,
                             char *chat_body, size_t len, bool stream, proxy_translated_cb done,
                             void *done_arg)
{
    struct proxy *px = arena_alloc(&req->arena, sizeof *px);
    memset(px, 0, sizeof *px);
    px->req = req;
    px->kind = API_CHAT;
    px->all_timeouts = true;
    px->inbound = ops;
    px->inbound_ctx = ctx;
    px->inbound_done = done;
    px->inbound_done_arg = done_arg;
    px->routing.max_cost_nanos = -1;
    proxy_set_error_format(req, ops);
    if (stream && !ops->stream_begin) {
        http_respond_error(req, GW_ERR_BAD_REQUEST, "Streaming is not available on this endpoint.",
                           "stream");
        return;
    }
    req->body = chat_body;
    req->body_len = len;
    serve(px);
}

static void serve(struct proxy *px)
{
    struct http_request *req = px->req;
    enum api_kind kind = px->kind;

    if (!proxy_context_inject(px)) return;
    struct scan_error serr;
    enum scan_kind sk = kind == API_CHAT          ? SCAN_CHAT
                        : kind == API_COMPLETIONS ? SCAN_COMPLETIONS
                        : kind == API_IMAGES      ? SCAN_IMAGES
                                                  : SCAN_EMBEDDINGS;
    unsigned flags = req->config->routing.auto_tier ? SCAN_MODEL_OPTIONAL : 0;
    if (scan_request_flags(sk, req->body, req->body_len, &px->facts, &serr, flags) != 0) {
        http_respond_error(req, serr.invalid_json ? GW_ERR_INVALID_JSON : GW_ERR_BAD_REQUEST,
                           serr.message, serr.param);
        return;
    }
    req->acct.model = arena_strdup(&req->arena, px->facts.model);
    req->acct.stream = px->facts.stream && (kind == API_CHAT || kind == API_COMPLETIONS);

    px->seed = (uint64_t)clock_mono_us() * 6364136223846793005ULL ^ (uint64_t)(uintptr_t)px;
    int64_t budget_ms = px->routing.timeout_ms > 0 ? px->routing.timeout_ms : DEFAULT_REQUEST_DEADLINE_MS;
    px->deadline_ms = req->start_us / 1000 + budget_ms;
    px->hedge_delay_ms = hedge_setting(http_header_get(req, "x-aiproxy-hedge"),
                                       hedge_configured(req->config, px->facts.model),
                                       req->config->routing.hedge_delay_ms);
    const char *strategy = http_header_get(req, "x-aiproxy-strategy");
    if (px->routing.strategy[0]) strategy = px->routing.strategy;
    size_t n_peers = 0;
    const struct config_provider **peers =
        mesh_route_peers(req, &px->mesh_hops_out, &px->mesh_via_out, &n_peers);
    struct route_input in = {
        .model = px->facts.model,
        .caps_needed = kind == API_EMBEDDINGS ? CAP_EMBEDDINGS
                       : kind == API_IMAGES   ? CAP_IMAGE_GEN
                                              : 0,
        .facts = &px->facts,
        .body = req->body,
        .body_len = req->body_len,
        .strategy_override = strategy,
        .task_tier = http_header_get(req, "x-task-tier"),
        .max_cost_nanos = px->routing.max_cost_nanos,
        .seed = px->seed,
        .now_ms = clock_mono_ms(),
        .peers = peers,
        .n_peers = n_peers,
    };
    routing_plan_request(req->config, &in, &px->plan, &req->arena);
    if (px->plan.error != ROUTE_OK) {
        const char *param = px->plan.error == ROUTE_ERR_STRATEGY    ? "x-aiproxy-strategy"
                            : px->plan.error == ROUTE_ERR_TASK_TIER ? "x-task-tier"
                                                                    : "model";
        http_respond_error(req, GW_ERR_BAD_REQUEST, px->plan.error_message, param);
        return;
    }
    if (!px->plan.model_known) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model '%s' does not exist or no provider serves it.",
                 px->plan.model && *px->plan.model ? px->plan.model : px->facts.model);
        http_respond_error(req, GW_ERR_MODEL_NOT_FOUND, msg, "model");
        return;
    }
    if (px->plan.n == 0 && px->plan.excluded_other == 0) {
        /* Every provider of the model is up but none can take this request. */
        char msg[700];
        snprintf(msg, sizeof msg, "No provider of model '%s' can serve this request: %s.",
                 px->plan.model, px->plan.excluded);
        http_respond_error(req, GW_ERR_BAD_REQUEST, msg,
                           px->plan.excluded_by_cost ? "max_cost" : "model");
        return;
    }
    if (!proxy_cache_prepare(px)) return;
    enum admit admit = admission_reserve(req, &px->plan, &px->facts, kind, on_admitted);
    if (admit == ADMIT_REFUSED) return;
    req->handler_data = px;
    req->on_abort = on_client_abort;
    req->on_drain = on_client_drain;
    arena_on_free(&req->arena, on_request_freed, px);
    if (admit == ADMIT_OK) proxy_cache_begin(px);
}

/* The shared store answered the reservation (admission_reserve waited). */
static void on_admitted(struct http_request *req)
{
    proxy_cache_begin(req->handler_data);
}
