/* mesh_api: the mesh's endpoints and this node's heartbeat message (see
 * mesh_api.h). */
#include "api/mesh_api.h"

#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/admin_info.h"
#include "api/admin_ops.h"
#include "api/admission.h"
#include "api/upstream_slot.h"
#include "budget/period.h"
#include "budget/spend.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/log.h"
#include "core/money.h"
#include "http/server.h"
#include "mesh/peers.h"
#include "mesh/promtext.h"
#include "mesh/wire.h"
#include "obs/metrics.h"
#include "routing/stats.h"
#include "security/digest.h"
#include "upstream/client.h"

#define MESH_VIA_MAX 1024 /* x-aiproxy-via longer than this is refused */
#define MESH_HOPS_MAX 64
#define CLUSTER_METRICS_DEADLINE_MS 2000
#define CLUSTER_METRICS_MAX (8 * 1024 * 1024)        /* one node's exposition */
#define CLUSTER_METRICS_TOTAL (32 * 1024 * 1024)     /* all peers' together */

static char boot_id[ID_REQUEST_LEN + 1];

void mesh_api_init(void)
{
    ids_request(boot_id);
}

static void respond_json(struct http_request *req, int status, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    http_respond(req, status, "application/json", NULL, text ? text : "{}",
                 text ? strlen(text) : 2);
    free(text);
}

/* ---- the mesh listener's door ---- */

static bool secret_ok(const struct config *cfg, const char *auth)
{
    if (!cfg->node.mesh_secret) return true; /* an open mesh (auth off, no secret) */
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) return false;
    const char *given = auth + 7;
    unsigned char a[DIGEST_SHA256_LEN];
    digest_sha256(given, strlen(given), a);
    return CRYPTO_memcmp(a, cfg->node.mesh_secret_sha256, sizeof a) == 0;
}

static bool via_ok(const char *v)
{
    size_t n = 0;
    for (; v[n]; n++) {
        char c = v[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == ',';
        if (!ok || n >= MESH_VIA_MAX) return false;
    }
    return true;
}

/* A peer's keep-alive connection remembers the header it proved the
 * secret with, for this config: the next request with the same bytes is
 * not hashed again. */
struct secret_memo {
    uint64_t generation;
    size_t len;
    char auth[];
};

static void secret_memo_free(void *m)
{
    struct secret_memo *sm = m;
    OPENSSL_cleanse(sm->auth, sm->len);
    free(sm);
}

static bool secret_ok_memo(struct http_request *req, const char *auth)
{
    const struct config *cfg = req->config;
    const struct secret_memo *m = http_conn_memo(req);
    size_t n = auth ? strlen(auth) : 0;
    if (m && auth && m->generation == cfg->generation && m->len == n &&
        CRYPTO_memcmp(m->auth, auth, n) == 0)
        return true;
    if (!secret_ok(cfg, auth)) return false;
    if (auth && n <= 512) {
        struct secret_memo *nm = xmalloc(sizeof *nm + n);
        nm->generation = cfg->generation;
        nm->len = n;
        memcpy(nm->auth, auth, n);
        http_conn_set_memo(req, nm, secret_memo_free);
    }
    return true;
}

bool mesh_api_admit(struct http_request *req)
{
    const struct config *cfg = req->config;
    if (!cfg->node.mesh_enabled) {
        http_respond_error(req, GW_ERR_UNAVAILABLE, "Mesh federation is off on this node.", NULL);
        return false;
    }
    if (!secret_ok_memo(req, http_header_get(req, "authorization"))) {
        http_respond_error(req, GW_ERR_INVALID_API_KEY,
                           "This is a mesh listener: requests must carry the mesh's shared "
                           "secret (node.mesh.secret).",
                           NULL);
        return false;
    }
    const char *hops = http_header_get(req, "x-aiproxy-hops");
    const char *via = http_header_get(req, "x-aiproxy-via");
    int h = 1; /* it came from a peer: at least one hop */
    if (hops) {
        char *end = NULL;
        long v = strtol(hops, &end, 10);
        if (!*hops || *end || v < 1 || v > MESH_HOPS_MAX) {
            http_respond_error(req, GW_ERR_BAD_REQUEST,
                               "x-aiproxy-hops must be an integer "
                               "from 1 to 64.",
                               "x-aiproxy-hops");
            return false;
        }
        h = (int)v;
    }
    if (via && !via_ok(via)) {
        http_respond_error(req, GW_ERR_BAD_REQUEST,
                           "x-aiproxy-via must be node ids separated "
                           "by commas.",
                           "x-aiproxy-via");
        return false;
    }
    req->mesh_hops = h;
    req->mesh_via = via;
    if (via && *via) {
        const char *last = strrchr(via, ',');
        mesh_peers_count_received(last ? last + 1 : via);
    }
    return true;
}

/* ---- this node's state ---- */

static void fill_self(const struct config *cfg, struct mesh_node_state *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", cfg->node.id ? cfg->node.id : "");
    snprintf(s->name, sizeof s->name, "%s", cfg->node.name ? cfg->node.name : "");
    snprintf(s->region, sizeof s->region, "%s", cfg->node.region ? cfg->node.region : "");
    snprintf(s->type, sizeof s->type, "%s", cfg->node.type ? cfg->node.type : "");
    snprintf(s->boot_id, sizeof s->boot_id, "%s", boot_id);
    snprintf(s->addr, sizeof s->addr, "%s",
             cfg->node.mesh_listen_addr ? cfg->node.mesh_listen_addr : "");
    s->uptime_s = clock_wall_s() - metrics_start_time();

    /* Load: what the node's providers have in flight over what they take. */
    int64_t in_flight = 0, capacity = 0;
    bool unbounded = false;
    size_t n_models = 0;
    for (size_t i = 0; i < cfg->n_providers; i++)
        n_models += cfg->providers[i].n_models;
    s->models = n_models ? xcalloc(n_models, sizeof *s->models) : NULL;
    s->providers = cfg->n_providers ? xcalloc(cfg->n_providers, sizeof *s->providers) : NULL;
    int64_t now_ms = clock_mono_ms();
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct config_provider *p = &cfg->providers[i];
        if (s->n_providers < MESH_MAX_PROVIDERS && strlen(p->name) < MESH_ID_MAX) {
            struct mesh_provider_info *pi = &s->providers[s->n_providers++];
            enum circuit_state st;
            snprintf(pi->name, sizeof pi->name, "%s", p->name);
            snprintf(pi->status, sizeof pi->status, "%s",
                     admin_ops_provider_health(cfg, p, now_ms, &st));
            pi->models = (int)p->n_models;
        }
        if (!p->enabled || !p->available) continue;
        int n_eps = p->n_endpoints > 1 ? (int)p->n_endpoints : 1;
        if (p->stats) in_flight += atomic_load(&p->stats->in_flight);
        if (p->max_concurrency > 0)
            capacity += (int64_t)p->max_concurrency * n_eps;
        else
            unbounded = true;
        bool down = routing_provider_down(p, NULL);
        for (size_t j = 0; j < p->n_models; j++) {
            const struct config_model *m = &p->models[j];
            if (strlen(m->name) >= MESH_NAME_MAX) continue;
            struct mesh_model_info *mi = NULL;
            for (size_t k = 0; k < s->n_models && !mi; k++)
                if (strcmp(s->models[k].name, m->name) == 0) mi = &s->models[k];
            struct provider_stats *ms = provider_stats_model(p->stats, m->name);
            int64_t lat = ms ? atomic_load(&ms->ewma_latency_us) / 1000 : 0;
            int64_t ttft = ms ? atomic_load(&ms->ewma_ttft_us) / 1000 : 0;
            if (!mi) {
                if (s->n_models >= MESH_MAX_MODELS) continue;
                mi = &s->models[s->n_models++];
                snprintf(mi->name, sizeof mi->name, "%s", m->name);
                mi->price_in_per_1k = m->price_in_per_1k;
                mi->price_out_per_1k = m->price_out_per_1k;
                mi->price_per_generation = m->price_per_generation;
                mi->latency_ms = lat;
                mi->ttft_ms = ttft;
                mi->available = !down;
                mi->capabilities = m->capabilities;
                continue;
            }
            /* Served by several providers: the cheapest price, the best
             * latency, every capability, available when any is. */
            if (m->price_in_per_1k + m->price_out_per_1k <
                mi->price_in_per_1k + mi->price_out_per_1k) {
                mi->price_in_per_1k = m->price_in_per_1k;
                mi->price_out_per_1k = m->price_out_per_1k;
                mi->price_per_generation = m->price_per_generation;
            }
            if (lat && (!mi->latency_ms || lat < mi->latency_ms)) mi->latency_ms = lat;
            if (ttft && (!mi->ttft_ms || ttft < mi->ttft_ms)) mi->ttft_ms = ttft;
            mi->available = mi->available || !down;
            mi->capabilities |= m->capabilities;
        }
    }
    /* share_load: false keeps this node's capacity to itself: it offers
     * its peers no model (it still forwards its own requests to them). */
    if (!cfg->node.share_load) s->n_models = 0;
    if (unbounded) capacity = cfg->server.max_upstream_transfers;
    s->in_flight = in_flight < 0 ? 0 : in_flight;
    s->capacity = capacity;
    int64_t lp = capacity > 0 ? s->in_flight * 1000 / capacity : 0;
    s->load_permille = (int)(lp > 1000 ? 1000 : lp);

    struct spend_counter *g = admission_global_spend();
    if (g) {
        int64_t now = clock_wall_s();
        s->spend_day = spend_window_spent(&g->day, period_day(now));
        s->spend_month = spend_window_spent(&g->month, period_month(now));
    }
    s->peers = xcalloc(MESH_MAX_KNOWN_PEERS, sizeof *s->peers);
    s->n_peers = mesh_peers_known(s->peers, MESH_MAX_KNOWN_PEERS);
}

char *mesh_api_self_state(const struct config *cfg, size_t *len)
{
    struct mesh_node_state s;
    fill_self(cfg, &s);
    char *text = mesh_state_encode(&s, len);
    mesh_state_cleanup(&s);
    return text;
}

/* ---- POST /aiproxy/mesh/heartbeat ---- */

void mesh_api_heartbeat(struct http_request *req)
{
    struct mesh_node_state st;
    char err[160];
    if (mesh_state_parse(req->body ? req->body : "", req->body_len, &st, err, sizeof err) != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "Invalid heartbeat: %s.", err);
        http_respond_error(req, GW_ERR_BAD_REQUEST, msg, NULL);
        return;
    }
    if (req->config->node.id && strcmp(st.id, req->config->node.id) == 0 &&
        strcmp(st.boot_id, boot_id) != 0) {
        log_event(LOG_WARN, "mesh_duplicate_id",
                  "mesh: another node (at %s) uses this node's id "
                  "%s; node ids must be unique",
                  req->client_ip, st.id);
    }
    mesh_peers_heard_from(&st, req->client_ip);
    /* The answer lists only the peers the sender did not list itself: in a
     * settled mesh it is empty, so a heartbeat costs the same with 5 nodes
     * or 50 instead of growing with the square of the mesh's size. */
    struct mesh_node_state self;
    fill_self(req->config, &self);
    size_t kept = 0;
    for (size_t i = 0; i < self.n_peers; i++) {
        const struct mesh_known_peer *k = &self.peers[i];
        bool known = strcmp(k->id, st.id) == 0;
        for (size_t j = 0; j < st.n_peers && !known; j++)
            known = strcmp(st.peers[j].id, k->id) == 0 || strcmp(st.peers[j].addr, k->addr) == 0;
        if (!known) self.peers[kept++] = *k;
    }
    self.n_peers = kept;
    mesh_state_cleanup(&st);
    size_t len;
    char *text = mesh_state_encode(&self, &len);
    mesh_state_cleanup(&self);
    http_respond(req, 200, "application/json", NULL, text, len);
    free(text);
}

/* ---- GET /aiproxy/mesh/status ---- */

static json_t *iso_time(int64_t wall_ms)
{
    if (!wall_ms) return json_null();
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[32];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

static double ratio(int permille)
{
    return permille / 1000.0; /* a load, not money */
}

static double usd(nanos_t n)
{
    return (double)n / 1e9; /* display only; the *_nanos fields are exact */
}

json_t *mesh_api_peers_json(void)
{
    json_t *peers = json_array();
    struct mesh_peer_info *pv = NULL;
    size_t n = mesh_peers_snapshot(&pv);
    for (size_t i = 0; i < n; i++) {
        const struct mesh_peer_info *p = &pv[i];
        json_t *o = json_object();
        json_object_set_new(o, "id", json_string(p->id));
        json_object_set_new(o, "addr", json_string(p->addr));
        json_object_set_new(o, "status", json_string(mesh_peer_status_name(p->status)));
        json_object_set_new(o, "latency_ms",
                            p->rtt_us ? json_integer((p->rtt_us + 500) / 1000) : json_null());
        json_object_set_new(o, "load",
                            p->has_state ? json_real(ratio(p->state.load_permille)) : json_null());
        size_t avail = 0;
        json_t *models = json_array();
        for (size_t j = 0; p->has_state && j < p->state.n_models; j++)
            if (p->state.models[j].available) {
                avail++;
                json_array_append_new(models, json_string(p->state.models[j].name));
            }
        json_object_set_new(o, "models_available", json_integer((json_int_t)avail));
        json_object_set_new(o, "models", models);
        json_object_set_new(o, "last_seen", iso_time(p->last_seen_wall_ms));
        json_object_set_new(o, "configured", json_boolean(p->configured));
        json_object_set_new(o, "priority", json_integer(p->priority));
        if (p->has_state) {
            json_object_set_new(o, "name", json_string(p->state.name));
            json_object_set_new(o, "region", json_string(p->state.region));
            json_object_set_new(o, "type", json_string(p->state.type));
            json_object_set_new(o, "in_flight", json_integer(p->state.in_flight));
            json_object_set_new(o, "uptime_seconds", json_integer(p->state.uptime_s));
            json_object_set_new(o, "spend_today", json_real(usd(p->state.spend_day)));
            json_object_set_new(o, "spend_today_nanos", json_integer(p->state.spend_day));
        }
        json_object_set_new(o, "heartbeats_ok", json_integer((json_int_t)p->heartbeats_ok));
        json_object_set_new(o, "heartbeats_failed", json_integer((json_int_t)p->heartbeats_failed));
        json_object_set_new(o, "requests_received", json_integer((json_int_t)p->received));
        if (p->last_error[0]) json_object_set_new(o, "last_error", json_string(p->last_error));
        json_array_append_new(peers, o);
    }
    mesh_peers_info_free(pv, n);
    return peers;
}

void mesh_api_status(struct http_request *req)
{
    const struct config *cfg = req->config;
    int64_t now_ms = clock_mono_ms();
    json_t *doc = json_object();
    json_t *node = json_object();
    json_object_set_new(node, "id", json_string(cfg->node.id ? cfg->node.id : ""));
    if (cfg->node.name) json_object_set_new(node, "name", json_string(cfg->node.name));
    json_object_set_new(node, "type", cfg->node.type ? json_string(cfg->node.type) : json_null());
    json_object_set_new(node, "region",
                        cfg->node.region ? json_string(cfg->node.region) : json_null());
    json_object_set_new(node, "uptime_seconds",
                        json_integer(clock_wall_s() - metrics_start_time()));
    json_object_set_new(node, "boot_id", json_string(boot_id));
    json_object_set_new(node, "mesh_addr",
                        cfg->node.mesh_listen_addr ? json_string(cfg->node.mesh_listen_addr)
                                                   : json_null());
    struct mesh_node_state self;
    fill_self(cfg, &self);
    json_object_set_new(node, "in_flight", json_integer(self.in_flight));
    json_object_set_new(node, "load", json_real(ratio(self.load_permille)));
    json_object_set_new(node, "models_available", json_integer((json_int_t)self.n_models));
    json_object_set_new(node, "spend_today", json_real(usd(self.spend_day)));
    json_object_set_new(node, "spend_today_nanos", json_integer(self.spend_day));
    mesh_state_cleanup(&self);
    json_object_set_new(doc, "node", node);

    json_t *peers = mesh_api_peers_json();
    json_object_set_new(doc, "peers", peers);

    json_t *provs = json_object();
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct config_provider *p = &cfg->providers[i];
        enum circuit_state st;
        const char *health = admin_ops_provider_health(cfg, p, now_ms, &st);
        json_object_set_new(
            provs, p->name,
            json_pack("{s:s, s:I}", "status", health, "models", (json_int_t)p->n_models));
    }
    json_object_set_new(doc, "providers", provs);
    json_object_set_new(
        doc, "mesh",
        json_pack("{s:b, s:I, s:I, s:I, s:b, s:b}", "enabled", cfg->node.mesh_enabled, "max_hops",
                  (json_int_t)cfg->node.mesh_max_hops, "heartbeat_interval_ms",
                  (json_int_t)mesh_heartbeat_period_ms(cfg), "peer_timeout_ms",
                  (json_int_t)cfg->node.peer_timeout_ms, "authenticated",
                  cfg->node.mesh_secret != NULL, "tls", cfg->node.mesh_tls_cert != NULL));
    respond_json(req, 200, doc);
}

/* ---- GET /v1/budget?scope=cluster ---- */

void mesh_api_cluster_budget(struct http_request *req)
{
    const struct config *cfg = req->config;
    const struct principal *who = req->principal;
    if (who && !who->admin) {
        /* Like GET /v1/budget, where a user key sees only its own spend. */
        http_respond_error(req, GW_ERR_FORBIDDEN, "The cluster's spend is shown to admin keys "
                           "only; GET /v1/budget shows this key's own spend.", NULL);
        return;
    }
    struct mesh_node_state self;
    fill_self(cfg, &self);
    nanos_t day = self.spend_day, month = self.spend_month;
    json_t *nodes = json_array();
    json_array_append_new(nodes, json_pack("{s:s, s:s, s:f, s:f, s:I, s:I}", "node", self.id,
                                           "source", "self", "today", usd(self.spend_day), "month",
                                           usd(self.spend_month), "today_nanos",
                                           (json_int_t)self.spend_day, "month_nanos",
                                           (json_int_t)self.spend_month));
    mesh_state_cleanup(&self);
    struct mesh_peer_info *pv = NULL;
    size_t n = mesh_peers_snapshot(&pv);
    for (size_t i = 0; i < n; i++) {
        const struct mesh_peer_info *p = &pv[i];
        if (!p->has_state) continue;
        day += p->state.spend_day;
        month += p->state.spend_month;
        json_array_append_new(
            nodes,
            json_pack("{s:s, s:s, s:s, s:f, s:f, s:I, s:I, s:o}", "node", p->id, "source",
                      "heartbeat", "status", mesh_peer_status_name(p->status), "today",
                      usd(p->state.spend_day), "month", usd(p->state.spend_month), "today_nanos",
                      (json_int_t)p->state.spend_day, "month_nanos",
                      (json_int_t)p->state.spend_month, "as_of", iso_time(p->last_seen_wall_ms)));
    }
    mesh_peers_info_free(pv, n);
    json_t *doc = json_pack("{s:s, s:o, s:{s:f, s:f, s:I, s:I}, s:s}", "scope", "cluster", "nodes",
                            nodes, "total", "today", usd(day), "month", usd(month), "today_nanos",
                            (json_int_t)day, "month_nanos", (json_int_t)month, "note",
                            "each node's own provider spend, counted once: a request served "
                            "through a peer is counted by the node that paid its provider");
    respond_json(req, 200, doc);
}

/* ---- GET /aiproxy/mesh/metrics ---- */

struct scrape;

struct scrape_leg {
    struct scrape *s;
    struct upstream_call *call;
    char id[MESH_ID_MAX];
    char *url, *headers;
    int status;
    char *buf;
    size_t len;
    bool done, ok, too_large;
};

struct scrape {
    struct http_request *req;
    struct scrape_leg *legs;
    size_t n, pending;
    size_t total; /* bytes buffered over every leg */
    bool aborted;
};

static void scrape_finish(struct scrape *s)
{
    struct http_request *req = s->req;
    struct prom_merge *m = prom_merge_new();
    struct metrics_extra x;
    admin_metrics_extra(req->config, &x);
    size_t len;
    char *own = metrics_render(req->config, &x, &len);
    own = mesh_api_metrics_append(req->config, own, &len);
    const char *self = req->config->node.id ? req->config->node.id : "";
    prom_merge_add(m, self, own, len);
    free(own);
    static const char help[] = "Whether the node answered this scrape (1) or not (0).";
    char line[MESH_ID_MAX + 64];
    snprintf(line, sizeof line, "aiproxy_mesh_node_up{node=\"%s\"} 1", self);
    prom_merge_sample(m, "aiproxy_mesh_node_up", help, "gauge", line);
    for (size_t i = 0; i < s->n; i++) {
        struct scrape_leg *l = &s->legs[i];
        if (l->ok) prom_merge_add(m, l->id, l->buf, l->len);
        snprintf(line, sizeof line, "aiproxy_mesh_node_up{node=\"%s\"} %d", l->id, l->ok ? 1 : 0);
        prom_merge_sample(m, "aiproxy_mesh_node_up", help, "gauge", line);
    }
    char *text = prom_merge_render(m, &len);
    prom_merge_free(m);
    req->handler_data = NULL;
    req->on_abort = NULL;
    http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, len);
    free(text);
}

static void leg_free(struct scrape_leg *l)
{
    free(l->url);
    free(l->headers);
    free(l->buf);
    l->url = l->headers = l->buf = NULL;
}

static void scrape_free(void *data)
{
    struct scrape *s = data;
    for (size_t i = 0; i < s->n; i++) {
        if (s->legs[i].call) upstream_call_cancel(s->legs[i].call);
        s->legs[i].call = NULL;
        leg_free(&s->legs[i]);
    }
    free(s->legs);
    s->legs = NULL;
}

static void on_leg_head(void *ctx, const struct upstream_head *h)
{
    struct scrape_leg *l = ctx;
    l->status = h->status;
}

static void on_leg_data(void *ctx, const char *data, size_t len)
{
    struct scrape_leg *l = ctx;
    if (l->too_large || l->len + len > CLUSTER_METRICS_MAX ||
        l->s->total + len > CLUSTER_METRICS_TOTAL) {
        l->too_large = true; /* shown as node_up 0 */
        return;
    }
    l->s->total += len;
    l->buf = xrealloc(l->buf, l->len + len + 1);
    memcpy(l->buf + l->len, data, len);
    l->len += len;
    l->buf[l->len] = '\0';
}

static void on_leg_done(void *ctx, int err)
{
    struct scrape_leg *l = ctx;
    struct scrape *s = l->s;
    l->call = NULL;
    l->done = true;
    l->ok = err == 0 && l->status == 200 && !l->too_large && l->buf;
    if (--s->pending == 0 && !s->aborted) scrape_finish(s);
}

static const struct upstream_callbacks leg_callbacks = {
    .on_head = on_leg_head,
    .on_data = on_leg_data,
    .on_done = on_leg_done,
};

static void on_scrape_abort(void *data)
{
    struct scrape *s = data;
    s->aborted = true;
    scrape_free(s);
}

void mesh_api_cluster_metrics(struct http_request *req)
{
    const struct config *cfg = req->config;
    if (!cfg->observability.metrics_enabled) {
        http_respond_error(req, GW_ERR_NOT_FOUND,
                           "Metrics are disabled "
                           "(observability.metrics.enabled: false).",
                           NULL);
        return;
    }
    struct scrape *s = arena_alloc(&req->arena, sizeof *s);
    memset(s, 0, sizeof *s);
    s->req = req;
    struct mesh_peer_info *pv = NULL;
    size_t n = mesh_peers_snapshot(&pv);
    s->legs = n ? xcalloc(n, sizeof *s->legs) : NULL;
    arena_on_free(&req->arena, scrape_free, s);
    bool tls = cfg->node.mesh_tls_cert != NULL;
    int64_t deadline = cfg->node.peer_timeout_ms < CLUSTER_METRICS_DEADLINE_MS
                           ? cfg->node.peer_timeout_ms
                           : CLUSTER_METRICS_DEADLINE_MS;
    for (size_t i = 0; i < n; i++) {
        struct scrape_leg *l = &s->legs[s->n++];
        l->s = s;
        snprintf(l->id, sizeof l->id, "%s", pv[i].id);
        /* A peer already known to be down is reported down without waiting. */
        if (pv[i].status == MESH_PEER_UNHEALTHY) {
            l->done = true;
            continue;
        }
        l->url = xasprintf("%s://%s/metrics", tls ? "https" : "http", pv[i].addr);
        l->headers = cfg->node.mesh_secret
                         ? xasprintf("Authorization: Bearer %s\r\n", cfg->node.mesh_secret)
                         : NULL;
        struct upstream_request r = {
            .method = "GET",
            .url = l->url,
            .headers = l->headers,
            .timeout_ms = deadline,
            .tls_ca_file = tls ? cfg->node.mesh_tls_ca : NULL,
            .tls_cert_file = tls ? cfg->node.mesh_tls_cert : NULL,
            .tls_key_file = tls ? cfg->node.mesh_tls_key : NULL,
        };
        s->pending++;
        l->call = upstream_call_start(api_upstream_pool(req->worker), &r, &leg_callbacks, l);
    }
    mesh_peers_info_free(pv, n);
    if (s->pending == 0) {
        scrape_finish(s);
        return;
    }
    req->handler_data = s;
    req->on_abort = on_scrape_abort;
}

/* ---- per-peer series for /metrics ---- */

struct mbuf {
    char *p;
    size_t len, cap;
};

static void mput(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mput(struct mbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *mesh_api_metrics_append(const struct config *cfg, char *text, size_t *len)
{
    if (!cfg->node.mesh_enabled) return text;
    struct mbuf b = {.p = text, .len = *len, .cap = *len + 1};
    struct mesh_peer_info *pv = NULL;
    size_t n = mesh_peers_snapshot(&pv);
    mput(&b, "# HELP aiproxy_mesh_peers Mesh peers known to this node, by status.\n"
             "# TYPE aiproxy_mesh_peers gauge\n");
    for (int st = MESH_PEER_CONNECTING; st <= MESH_PEER_UNHEALTHY; st++) {
        size_t c = 0;
        for (size_t i = 0; i < n; i++)
            c += pv[i].status == (enum mesh_peer_status)st;
        mput(&b, "aiproxy_mesh_peers{status=\"%s\"} %zu\n",
             mesh_peer_status_name((enum mesh_peer_status)st), c);
    }
    if (n) {
        mput(&b, "# HELP aiproxy_mesh_peer_up Whether the peer is healthy (1) or not (0).\n"
                 "# TYPE aiproxy_mesh_peer_up gauge\n");
        for (size_t i = 0; i < n; i++)
            mput(&b, "aiproxy_mesh_peer_up{peer=\"%s\"} %d\n", pv[i].id,
                 pv[i].status == MESH_PEER_HEALTHY);
        mput(&b, "# HELP aiproxy_mesh_heartbeat_rtt_seconds Heartbeat round trip to the peer "
                 "(moving average).\n# TYPE aiproxy_mesh_heartbeat_rtt_seconds gauge\n");
        for (size_t i = 0; i < n; i++)
            mput(&b, "aiproxy_mesh_heartbeat_rtt_seconds{peer=\"%s\"} %.6f\n", pv[i].id,
                 pv[i].rtt_us / 1e6);
        mput(&b, "# HELP aiproxy_mesh_heartbeats_total Heartbeats sent to the peer, by "
                 "outcome.\n# TYPE aiproxy_mesh_heartbeats_total counter\n");
        for (size_t i = 0; i < n; i++) {
            mput(&b, "aiproxy_mesh_heartbeats_total{peer=\"%s\",outcome=\"ok\"} %llu\n", pv[i].id,
                 (unsigned long long)pv[i].heartbeats_ok);
            mput(&b, "aiproxy_mesh_heartbeats_total{peer=\"%s\",outcome=\"failed\"} %llu\n",
                 pv[i].id, (unsigned long long)pv[i].heartbeats_failed);
        }
        mput(&b, "# HELP aiproxy_mesh_requests_forwarded_total Requests this node sent to the "
                 "peer.\n# TYPE aiproxy_mesh_requests_forwarded_total counter\n");
        for (size_t i = 0; i < n; i++) {
            char name[MESH_ID_MAX + 8];
            snprintf(name, sizeof name, "mesh:%s", pv[i].id);
            struct provider_stats *ps = provider_stats_get(name);
            mput(&b, "aiproxy_mesh_requests_forwarded_total{peer=\"%s\"} %llu\n", pv[i].id,
                 ps ? (unsigned long long)atomic_load(&ps->attempts) : 0ULL);
        }
        mput(&b, "# HELP aiproxy_mesh_requests_received_total Requests the peer sent to this "
                 "node.\n# TYPE aiproxy_mesh_requests_received_total counter\n");
        for (size_t i = 0; i < n; i++)
            mput(&b, "aiproxy_mesh_requests_received_total{peer=\"%s\"} %llu\n", pv[i].id,
                 (unsigned long long)pv[i].received);
    }
    mesh_peers_info_free(pv, n);
    *len = b.len;
    return b.p;
}
