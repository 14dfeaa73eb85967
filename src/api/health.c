/* health: the active health-check thread (see health.h). Checks of one round
 * run concurrently on the thread's loop; the next round starts one interval
 * after the previous one started, and never while a check is still out. */
#include "api/health.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "routing/stats.h"
#include "upstream/client.h"

#define TICK_MS 100

struct check {
    struct check *prev, *next;
    struct upstream_call *call;
    struct provider_stats *target; /* the endpoint-level entry */
    char *provider;                /* name, for the log */
    char *endpoint;                /* base URL, for the log (never a secret) */
    char *url;
    char *headers;
    int threshold;
    int status;
    int64_t start_us;
};

static pthread_mutex_t cfg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct config *current;
static pthread_t thread;
static bool running;
static atomic_bool stopping;

/* Thread-side state. */
static struct event_base *base;
static struct evdns_base *dns;
static struct upstream_pool *pool;
static struct event *tick;
static struct check *pending;
static int64_t next_round_ms;
static bool was_enabled;

void health_set_config(struct config *cfg)
{
    struct config *old;
    pthread_mutex_lock(&cfg_lock);
    old = current;
    current = cfg ? config_ref(cfg) : NULL;
    pthread_mutex_unlock(&cfg_lock);
    config_unref(old);
}

static struct config *take_config(void)
{
    pthread_mutex_lock(&cfg_lock);
    struct config *c = current ? config_ref(current) : NULL;
    pthread_mutex_unlock(&cfg_lock);
    return c;
}

static void check_free(struct check *c)
{
    if (c->prev) c->prev->next = c->next;
    else pending = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->provider);
    free(c->endpoint);
    free(c->url);
    free(c->headers);
    free(c);
}

static void on_head(void *ctx, const struct upstream_head *h)
{
    struct check *c = ctx;
    c->status = h->status;
}

static void on_data(void *ctx, const char *data, size_t len)
{
    (void)ctx;
    (void)data;
    (void)len;
}

static void on_done(void *ctx, int err)
{
    struct check *c = ctx;
    c->call = NULL;
    bool ok = err == 0 && c->status > 0 && c->status < 500;
    int64_t lat = clock_mono_us() - c->start_us;
    int change = provider_stats_check(c->target, ok, c->threshold, lat, clock_mono_ms());
    if (change < 0) {
        char why[64];
        if (err) snprintf(why, sizeof why, "%s", upstream_error_text(err));
        else snprintf(why, sizeof why, "HTTP %d", c->status);
        log_event(LOG_WARN, "provider_down",
                  "provider %s (%s) is down: %d health checks failed in a row, the last: %s",
                  c->provider, c->endpoint, c->threshold, why);
    } else if (change > 0) {
        log_event(LOG_INFO, "provider_up", "provider %s (%s) answers health checks again",
                  c->provider, c->endpoint);
    }
    check_free(c);
}

static const struct upstream_callbacks callbacks = {
    .on_head = on_head,
    .on_data = on_data,
    .on_done = on_done,
};

/* The cheap request for one endpoint of `p`: URL and headers (heap). */
static void probe_request(const struct config_provider *p, const char *ep, char **url,
                          char **headers)
{
    switch (p->type) {
    case PROVIDER_ANTHROPIC:
        /* The models list: free, needs the key. */
        *url = xasprintf("%s/models", ep);
        *headers = xasprintf("x-api-key: %s\r\nanthropic-version: 2023-06-01\r\n",
                             p->api_key ? p->api_key : "");
        return;
    case PROVIDER_CLOUDFLARE:
        /* The model catalogue search, one row: no inference, no neurons. */
        *url = xasprintf("%s/accounts/%s/ai/models/search?per_page=1", ep,
                         p->account_id ? p->account_id : "");
        *headers = xasprintf("Authorization: Bearer %s\r\n", p->api_token ? p->api_token : "");
        return;
    case PROVIDER_OCF: {
        /* The node table, as discovery reads it (the node API is under /v1). */
        size_t n = strlen(ep);
        if (n >= 3 && strcmp(ep + n - 3, "/v1") == 0) n -= 3;
        *url = xasprintf("%.*s/v1/dnt/table", (int)n, ep);
        *headers = NULL;
        return;
    }
    case PROVIDER_MESH: /* peers are watched by heartbeats, never here */
    case PROVIDER_OPENAI:
    case PROVIDER_LOCAL:
        *url = xasprintf("%s/models", ep);
        *headers = p->api_key ? xasprintf("Authorization: Bearer %s\r\n", p->api_key) : NULL;
        return;
    }
    *url = xasprintf("%s/models", ep);
    *headers = NULL;
}

static void start_check(const struct config *cfg, const struct config_provider *p, const char *ep,
                        struct provider_stats *target)
{
    struct check *c = xcalloc(1, sizeof *c);
    c->target = target;
    c->provider = xstrdup(p->name);
    c->endpoint = xstrdup(ep);
    c->threshold = cfg->routing.health_check_failures;
    probe_request(p, ep, &c->url, &c->headers);
    c->start_us = clock_mono_us();
    c->next = pending;
    if (pending) pending->prev = c;
    pending = c;
    struct upstream_request r = {
        .method = "GET",
        .url = c->url,
        .headers = c->headers,
        .timeout_ms = cfg->routing.health_check_timeout_ms,
        .tls_ca_file = p->tls_ca_file,
        .tls_insecure = p->tls_insecure_skip_verify,
    };
    c->call = upstream_call_start(pool, &r, &callbacks, c);
}

/* Forgets every down flag of `cfg`'s providers (checks were turned off). */
static void clear_flags(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct config_provider *p = &cfg->providers[i];
        if (!p->stats) continue;
        atomic_store(&p->stats->down, false);
        atomic_store(&p->stats->check_failures, 0);
        for (size_t e = 0; p->n_endpoints > 1 && e < p->n_endpoints; e++) {
            struct provider_stats *s = provider_stats_endpoint(p->stats, p->endpoints[e]);
            atomic_store(&s->down, false);
            atomic_store(&s->check_failures, 0);
        }
    }
}

static void round_start(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct config_provider *p = &cfg->providers[i];
        if (!p->enabled || !p->available || !p->stats) continue;
        if (p->n_endpoints > 1) {
            for (size_t e = 0; e < p->n_endpoints; e++)
                start_check(cfg, p, p->endpoints[e],
                            provider_stats_endpoint(p->stats, p->endpoints[e]));
        } else {
            start_check(cfg, p, p->endpoint, p->stats);
        }
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (atomic_load(&stopping)) {
        event_base_loopbreak(base);
        return;
    }
    if (pending) return;
    struct config *cfg = take_config();
    if (!cfg) return;
    int64_t interval = cfg->routing.health_check_interval_ms;
    int64_t now = clock_mono_ms();
    if (interval <= 0) {
        if (was_enabled) clear_flags(cfg);
        was_enabled = false;
        next_round_ms = 0;
    } else {
        was_enabled = true;
        /* The first round one interval after start (or after checks were
         * turned on); a shorter interval after a reload applies at once. */
        if (next_round_ms == 0 || next_round_ms - now > interval) next_round_ms = now + interval;
        if (now >= next_round_ms) {
            next_round_ms = now + interval;
            round_start(cfg);
        }
    }
    config_unref(cfg);
}

static void *run(void *arg)
{
    (void)arg;
    struct timeval tv = {.tv_sec = 0, .tv_usec = TICK_MS * 1000};
    event_add(tick, &tv);
    event_base_dispatch(base);
    while (pending) {
        if (pending->call) upstream_call_cancel(pending->call);
        check_free(pending);
    }
    return NULL;
}

int health_start(struct config *cfg)
{
    if (running) return 0;
    health_set_config(cfg);
    base = event_base_new();
    if (!base) return -1;
    dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!dns) dns = evdns_base_new(base, 0); /* no resolv.conf: IPs only */
    pool = upstream_pool_new(base, dns);
    tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    atomic_store(&stopping, false);
    if (pthread_create(&thread, NULL, run, NULL) != 0) {
        event_free(tick);
        upstream_pool_free(pool);
        if (dns) evdns_base_free(dns, 0);
        event_base_free(base);
        base = NULL;
        return -1;
    }
    running = true;
    return 0;
}

void health_stop(void)
{
    if (running) {
        atomic_store(&stopping, true);
        pthread_join(thread, NULL);
        running = false;
        event_free(tick);
        upstream_pool_free(pool);
        if (dns) evdns_base_free(dns, 0);
        event_base_free(base);
        base = NULL;
    }
    health_set_config(NULL);
}
