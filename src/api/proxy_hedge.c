/* proxy_hedge: hedged requests (routing.hedge, x-aiproxy-hedge).
 *
 * When the current attempt has not answered (no response head) after the
 * hedge delay, the same request goes to the next candidate as a second
 * leg. The first leg to answer with a 2xx head wins; the other is cancelled
 * at once and its estimated prompt cost is metered. A leg that fails while
 * the other runs simply leaves the field to it. The winning second leg is
 * adopted: its fields move into the proxy and its callbacks feed the
 * ordinary flow from then on. */

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "api/proxy_internal.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/log.h"
#include "http/server.h"
#include "routing/stats.h"

struct hedge_leg {
    struct proxy *px;
    struct launch l;
    bool adopted;
};

static nanos_t loser_cost(const struct proxy *px, const struct candidate *c)
{
    return money_cost_tokens(scan_estimate_tokens(px->facts.text_bytes), c->model->price_in_per_1k);
}

void hedge_disarm_timer(struct proxy *px)
{
    if (px->hedge_timer) evtimer_del(px->hedge_timer);
}

/* The second leg lost (the first answered) or the request ended. */
void hedge_drop(struct proxy *px, const char *outcome, bool counted_ok)
{
    struct hedge_leg *h = px->hedge;
    if (!h || h->adopted) return;
    px->hedge = NULL;
    proxy_record_attempt_for(px, h->l.cand->provider->name, h->l.start_us, "%s", outcome);
    proxy_attempt_stats_end(h->l.cand, counted_ok, false, 0);
    if (counted_ok) px->hedge_loser_cost += loser_cost(px, h->l.cand);
    upstream_call_cancel(h->l.call);
}

/* Makes the second leg the current attempt (the first is gone). */
void hedge_adopt(struct proxy *px, struct hedge_leg *h)
{
    px->hedge = NULL;
    h->adopted = true;
    px->cand = h->l.cand;
    px->ops = h->l.ops;
    px->pcall = h->l.pcall;
    px->call = h->l.call;
    px->attempt_start_us = h->l.start_us;
    px->attempt_timeout_used = h->l.timeout_ms;
    px->stats_open = true;
    px->first_byte_us = 0;
    proxy_arm_peer_watch(px);
}

static void hedge_on_head(void *ctx, const struct upstream_head *head)
{
    struct hedge_leg *h = ctx;
    struct proxy *px = h->px;
    if (h->adopted) {
        proxy_on_up_head(px, head);
        return;
    }
    if (head->status < 200 || head->status >= 300) {
        char st[64];
        snprintf(st, sizeof st, "HTTP %d (hedge leg)", head->status);
        px->hedge = NULL;
        proxy_record_attempt_for(px, h->l.cand->provider->name, h->l.start_us, "%s", st);
        proxy_attempt_stats_end(h->l.cand, false, false, 0);
        upstream_call_cancel(h->l.call);
        return;
    }
    /* The second leg answered first: the first one loses. */
    if (px->call) {
        upstream_call_cancel(px->call);
        px->call = NULL;
    }
    proxy_record_attempt(px, "lost the hedge: %s answered first", h->l.cand->provider->name);
    px->stats_open = false;
    proxy_attempt_stats_end(px->cand, true, false, 0);
    px->hedge_loser_cost += loser_cost(px, px->cand);
    proxy_reset_attempt(px);
    hedge_adopt(px, h);
    proxy_on_up_head(px, head);
}

static void hedge_on_data(void *ctx, const char *data, size_t len)
{
    struct hedge_leg *h = ctx;
    if (h->adopted) proxy_on_up_data(h->px, data, len);
}

static void hedge_on_done(void *ctx, int err)
{
    struct hedge_leg *h = ctx;
    struct proxy *px = h->px;
    if (h->adopted) {
        proxy_on_up_done(px, err);
        return;
    }
    if (px->hedge != h) return; /* already dropped */
    /* Failed before answering; the first leg carries on alone. */
    px->hedge = NULL;
    proxy_record_attempt_for(px, h->l.cand->provider->name, h->l.start_us, "%s (hedge leg)",
                       upstream_error_text(err));
    if (err == UPSTREAM_ERR_LOCAL) proxy_attempt_stats_abandon(h->l.cand);
    else proxy_attempt_stats_end(h->l.cand, false, err == UPSTREAM_ERR_TIMEOUT, 0);
}

static const struct upstream_callbacks hedge_callbacks = {
    .on_head = hedge_on_head,
    .on_data = hedge_on_data,
    .on_done = hedge_on_done,
};

static void on_hedge_timer(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *px = arg;
    if (px->status != 0 || px->hedge || !px->call || px->stream_started) return;
    while (px->next < px->plan.n) {
        struct hedge_leg *h = arena_alloc(&px->req->arena, sizeof *h);
        memset(h, 0, sizeof *h);
        h->px = px;
        if (!proxy_launch(px, &px->plan.items[px->next++], &hedge_callbacks, h, &h->l)) continue;
        px->hedge = h;
        px->hedged = true;
        log_event(LOG_DEBUG, "hedge", "request %s: %s has not answered; hedging on %s",
                  px->req->id, px->cand->provider->name, h->l.cand->provider->name);
        return;
    }
}

void hedge_arm_timer(struct proxy *px)
{
    if (px->hedge_delay_ms == 0 || px->hedge || px->next >= px->plan.n) return;
    int64_t delay = px->hedge_delay_ms;
    if (delay < 0) {
        /* Auto: twice the provider's recent time to first byte (streams) or
         * latency, so only a slow outlier triggers it; 1 s when unmeasured. */
        const struct provider_stats *st = px->cand->provider->stats;
        int64_t us = st ? (px->req->acct.stream ? atomic_load(&st->ewma_ttft_us)
                                                : atomic_load(&st->ewma_latency_us))
                        : 0;
        delay = us > 0 ? 2 * us / 1000 : 1000;
        if (delay < 20) delay = 20;
    }
    if (!px->hedge_timer)
        px->hedge_timer = evtimer_new(http_worker_base(px->req->worker), on_hedge_timer, px);
    struct timeval tv = {.tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000};
    evtimer_add(px->hedge_timer, &tv);
}

/* routing.hedge on for this model? */
bool hedge_configured(const struct config *cfg, const char *model)
{
    if (!cfg->routing.hedge_enabled) return false;
    if (cfg->routing.n_hedge_models == 0) return true;
    for (size_t i = 0; i < cfg->routing.n_hedge_models; i++)
        if (strcmp(cfg->routing.hedge_models[i], model) == 0) return true;
    return false;
}

/* x-aiproxy-hedge: "on"/"true" (delay from live figures), "off"/"false",
 * or a delay in milliseconds. Returns 0 off, -1 auto, or the delay. */
int64_t hedge_setting(const char *v, bool configured_on, int64_t configured_delay)
{
    if (!v) return configured_on ? (configured_delay > 0 ? configured_delay : -1) : 0;
    if (strcasecmp(v, "on") == 0 || strcasecmp(v, "true") == 0) return -1;
    if (strcasecmp(v, "off") == 0 || strcasecmp(v, "false") == 0) return 0;
    char *end = NULL;
    long long ms = strtoll(v, &end, 10);
    if (end && *end == '\0' && ms > 0 && ms <= 600000) return ms;
    return configured_on ? -1 : 0;
}
