/* proxy_internal: the request flow's state (struct proxy) and the
 * functions its parts share: proxy.c (attempts, answers, streams),
 * proxy_hedge.c (the second leg of a hedged request) and proxy_cache.c
 * (the response cache's place in the flow). Not for other modules. */
#ifndef AIPROXY_API_PROXY_INTERNAL_H
#define AIPROXY_API_PROXY_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "api/proxy.h"
#include "api/scan.h"
#include "core/money.h"
#include "core/sse.h"
#include "providers/inbound.h"
#include "providers/mesh.h"
#include "providers/provider.h"
#include "routing/candidates.h"
#include "upstream/client.h"

#define MAX_ATTEMPTS 8

struct http_request;
struct event;
struct hedge_leg;
struct proxy_cache;
struct proxy_context;

struct attempt {
    const char *provider;
    char outcome[160];
    int64_t latency_ms;
};

struct proxy {
    struct http_request *req;
    enum api_kind kind;
    struct req_facts facts;
    struct route_plan plan;
    size_t next;
    struct attempt attempts[MAX_ATTEMPTS];
    size_t n_attempts;
    bool all_timeouts;
    int local_failures;     /* attempts this gateway could not connect for want of descriptors */
    int upstream_attempts;  /* attempts that went to the network */
    int prepare_refusals;   /* candidates whose adapter could not express the request */
    int capacity_skips;     /* candidates skipped at their max_concurrency */
    char first_refusal[256];
    uint64_t seed;          /* per-request randomness for routing and jitter */
    int64_t deadline_ms;    /* monotonic: the whole request, every attempt included */
    int64_t next_timeout_ms; /* the next attempt's timeout, as the retry decision set it */
    struct event *retry_timer;
    struct event *peer_watch; /* while an attempt is out to a mesh peer */

    /* hedging (routing.hedge / x-aiproxy-hedge): a second leg on the next
     * candidate when the first has not answered after a delay */
    int64_t hedge_delay_ms; /* 0: off for this request; <0: from live TTFT */
    struct event *hedge_timer;
    struct hedge_leg *hedge; /* the second leg while both run */
    bool hedged;
    nanos_t hedge_loser_cost; /* the slower leg's estimated prompt cost */

    /* mesh: the peers this request may go to, and what the serving peer
     * said about its answer */
    int mesh_hops_out;         /* x-aiproxy-hops for a forwarded attempt */
    const char *mesh_via_out;  /* x-aiproxy-via: the nodes passed, this one last */
    struct provider_relay relay;

    /* the response cache (api/proxy_cache.c); NULL when not consulted */
    struct proxy_cache *cache;
    /* the context delta injected (api/proxy_context.c); NULL when none */
    struct proxy_context *context;

    /* a client-facing format other than OpenAI's (NULL: OpenAI) */
    const struct inbound_ops *inbound;
    void *inbound_ctx; /* the request's translator context (Responses); NULL for others */
    proxy_translated_cb inbound_done; /* after the whole answer was translated */
    void *inbound_done_arg;
    void *inbound_state;
    struct inbound_routing routing;
    /* /v1/messages: the client's Anthropic-only headers and fields, for
     * Anthropic providers (providers/anthropic_native.h); NULL when none */
    const struct anthropic_passthrough *anthropic;

    /* the current attempt */
    const struct candidate *cand;
    const struct provider_ops *ops;
    struct provider_call pcall;
    struct provider_stream pstream;
    struct upstream_call *call;
    int64_t attempt_start_us;
    bool stats_open; /* provider_stats_begin was called for this attempt */
    int64_t attempt_timeout_used; /* this attempt's deadline, ms */
    int status;
    bool upstream_sse;
    char *retry_after;
    char *content_type;
    char *buf; /* the body to judge: heap_buf, or an adapter's translation */
    size_t buf_len;
    char *heap_buf; /* buffered upstream body (non-stream answer, or an error) */
    size_t heap_len, heap_cap;
    bool too_large;

    /* streaming */
    struct sse_reader sse;
    bool sse_ready;
    bool stream_started; /* headers and bytes reached the client */
    bool stream_counted; /* counted in aiproxy_open_streams */
    bool saw_done;
    bool failed_mid_stream;
    int64_t chunks;
    char *held_usage; /* the upstream's usage chunk, spliced at the end */
    size_t held_usage_len;
    bool held_valid;        /* it scanned as one JSON object: */
    size_t held_close_off;  /* its root's closing brace (scan_response's close_off) */
    bool held_root_empty;
    struct usage usage;
    bool usage_estimated;
    int64_t first_byte_us;
    /* Set inside the SSE reader's callback, acted on once it returned:
     * failing over or ending the stream frees what the reader is using. */
    const char *pending_failover;
    const char *pending_stream_error;
};

/* A started upstream call and what it needs (one per leg). */
struct launch {
    const struct candidate *cand;
    const struct provider_ops *ops;
    struct provider_call pcall;
    struct upstream_call *call;
    int64_t start_us;
    int64_t timeout_ms;
};

/* ---- proxy.c ---- */

/* Starts the next candidate of the plan (or ends the request). */
void proxy_start_next(struct proxy *px);
/* Prepares and starts an attempt on `cand` with callbacks `cbs`/`ctx`.
 * Returns false, with the reason recorded in the attempts, when this
 * candidate cannot take the request now. */
bool proxy_launch(struct proxy *px, const struct candidate *cand,
                  const struct upstream_callbacks *cbs, void *ctx, struct launch *out);
void proxy_reset_attempt(struct proxy *px);
struct attempt *proxy_record_attempt_for(struct proxy *px, const char *provider, int64_t start_us,
                                         const char *fmt, const char *detail);
struct attempt *proxy_record_attempt(struct proxy *px, const char *fmt, const char *detail);
void proxy_attempt_stats_end(const struct candidate *c, bool ok, bool timeout, int64_t latency_us);
/* The same for an attempt that never reached the provider (this process
 * was out of descriptors or ports): nothing is counted against it. */
void proxy_attempt_stats_abandon(const struct candidate *c);
void proxy_arm_peer_watch(struct proxy *px);
void proxy_on_up_head(void *ctx, const struct upstream_head *h);
void proxy_on_up_data(void *ctx, const char *data, size_t len);
void proxy_on_up_done(void *ctx, int err);
/* The answer on the client's wire: a whole answer (JSON, or the inbound
 * format's content type and trailers), a stream's head (and the inbound
 * translator's state), a stream's end (with the format's trailers). */
void proxy_respond_answer(struct proxy *px, const char *headers, const char *body, size_t len);
void proxy_stream_open(struct proxy *px, const char *headers);
void proxy_stream_close(struct proxy *px);

/* ---- proxy_hedge.c ---- */

void hedge_arm_timer(struct proxy *px);
void hedge_disarm_timer(struct proxy *px);
/* The second leg lost (the first answered) or the request ended. */
void hedge_drop(struct proxy *px, const char *outcome, bool counted_ok);
/* Makes the second leg the current attempt (the first is gone). */
void hedge_adopt(struct proxy *px, struct hedge_leg *h);
/* routing.hedge on for this model? */
bool hedge_configured(const struct config *cfg, const char *model);
/* x-aiproxy-hedge: "on"/"true" (delay from live figures), "off"/"false",
 * or a delay in milliseconds. Returns 0 off, -1 auto, or the delay. */
int64_t hedge_setting(const char *v, bool configured_on, int64_t configured_delay);

/* The stream's last OpenAI chunk (usage and x-aiproxy) through the inbound
 * translator, then its end; with a format hook, the hook runs before the
 * last events are written. */
void proxy_inbound_stream_finish(struct proxy *px, const char *chunk, size_t len);

/* The answer was translated in full (whole, or the stream's last event):
 * the format's hook runs once, before the last bytes leave. */
static inline void proxy_inbound_done(struct proxy *px)
{
    proxy_translated_cb cb = px->inbound_done;
    px->inbound_done = NULL;
    if (cb) cb(px->req, px->inbound_done_arg);
}

#endif
