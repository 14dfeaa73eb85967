/* heartbeat: the heartbeat thread (see heartbeat.h). Every TICK_MS it lets
 * the peer table judge silences (mesh_peers_tick) and sends a heartbeat to
 * each peer that is due one and has none out. */
#include "mesh/heartbeat.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "mesh/peers.h"
#include "mesh/wire.h"
#include "upstream/client.h"

#define TICK_MS 100
#define MAX_DUE 64 /* heartbeats started per tick; the rest go at the next */

struct beat {
    struct beat *prev, *next;
    struct upstream_call *call;
    char addr[MESH_ADDR_MAX];
    char *url, *headers, *body;
    int status;
    char *resp;
    size_t resp_len;
    bool too_large;
    int64_t start_us;
};

static pthread_mutex_t cfg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct config *current;
static mesh_self_cb self_cb;
static pthread_t thread;
static bool running;
static atomic_bool stopping;

/* Thread-side state. */
static struct event_base *base;
static struct evdns_base *dns;
static struct upstream_pool *pool;
static struct event *tick;
static struct beat *pending;

void mesh_heartbeat_set_config(struct config *cfg)
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

static void beat_free(struct beat *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        pending = b->next;
    if (b->next) b->next->prev = b->prev;
    free(b->url);
    free(b->headers);
    free(b->body);
    free(b->resp);
    free(b);
}

static void on_head(void *ctx, const struct upstream_head *h)
{
    struct beat *b = ctx;
    b->status = h->status;
}

static void on_data(void *ctx, const char *data, size_t len)
{
    struct beat *b = ctx;
    if (b->too_large || b->resp_len + len > MESH_MAX_MESSAGE) {
        b->too_large = true;
        return;
    }
    b->resp = xrealloc(b->resp, b->resp_len + len + 1);
    memcpy(b->resp + b->resp_len, data, len);
    b->resp_len += len;
    b->resp[b->resp_len] = '\0';
}

static void on_done(void *ctx, int err)
{
    struct beat *b = ctx;
    b->call = NULL;
    int64_t rtt = clock_mono_us() - b->start_us;
    char why[160] = "";
    struct mesh_node_state st;
    bool ok = false;
    if (err) {
        snprintf(why, sizeof why, "%s", upstream_error_text(err));
    } else if (b->status == 401) {
        snprintf(why, sizeof why, "HTTP 401: the peer refused our node.mesh.secret");
    } else if (b->status != 200) {
        snprintf(why, sizeof why, "HTTP %d", b->status);
    } else if (b->too_large) {
        snprintf(why, sizeof why, "answer larger than %d bytes", MESH_MAX_MESSAGE);
    } else {
        char perr[128];
        if (mesh_state_parse(b->resp ? b->resp : "", b->resp_len, &st, perr, sizeof perr) == 0)
            ok = true;
        else
            snprintf(why, sizeof why, "invalid heartbeat answer: %s", perr);
    }
    mesh_peers_on_heartbeat(b->addr, ok ? &st : NULL, rtt, why, err == 0, clock_mono_ms());
    if (ok) mesh_state_cleanup(&st);
    beat_free(b);
}

static const struct upstream_callbacks callbacks = {
    .on_head = on_head,
    .on_data = on_data,
    .on_done = on_done,
};

static void send_beat(const struct config *cfg, const char *addr, const char *body, size_t len)
{
    struct beat *b = xcalloc(1, sizeof *b);
    snprintf(b->addr, sizeof b->addr, "%s", addr);
    bool tls = cfg->node.mesh_tls_cert != NULL;
    b->url = xasprintf("%s://%s/aiproxy/mesh/heartbeat", tls ? "https" : "http", addr);
    b->headers = cfg->node.mesh_secret
                     ? xasprintf("Content-Type: application/json\r\nAuthorization: Bearer %s\r\n",
                                 cfg->node.mesh_secret)
                     : xstrdup("Content-Type: application/json\r\n");
    b->body = xmalloc(len + 1);
    memcpy(b->body, body, len + 1);
    b->start_us = clock_mono_us();
    b->next = pending;
    if (pending) pending->prev = b;
    pending = b;
    struct upstream_request r = {
        .method = "POST",
        .url = b->url,
        .headers = b->headers,
        .body = b->body,
        .body_len = len,
        .timeout_ms = cfg->node.peer_timeout_ms,
        .tls_ca_file = tls ? cfg->node.mesh_tls_ca : NULL,
        .tls_cert_file = tls ? cfg->node.mesh_tls_cert : NULL,
        .tls_key_file = tls ? cfg->node.mesh_tls_key : NULL,
    };
    b->call = upstream_call_start(pool, &r, &callbacks, b);
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
    struct config *cfg = take_config();
    if (!cfg) return;
    int64_t now = clock_mono_ms();
    mesh_peers_tick(now);
    if (cfg->node.mesh_enabled) {
        static char addrs[MAX_DUE][MESH_ADDR_MAX];
        size_t n = mesh_peers_due(now, mesh_heartbeat_period_ms(cfg), addrs, MAX_DUE);
        if (n) {
            size_t len = 0;
            char *body = self_cb(cfg, &len);
            for (size_t i = 0; i < n; i++)
                send_beat(cfg, addrs[i], body, len);
            free(body);
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
        beat_free(pending);
    }
    return NULL;
}

int mesh_heartbeat_start(struct config *cfg, mesh_self_cb self)
{
    if (running) return 0;
    self_cb = self;
    mesh_heartbeat_set_config(cfg);
    base = event_base_new();
    if (!base) return -1;
    dns =
        evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
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

void mesh_heartbeat_stop(void)
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
    mesh_heartbeat_set_config(NULL);
}
