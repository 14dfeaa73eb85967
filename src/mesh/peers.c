/* peers: the mesh peer table and the routing view (see peers.h). */
#include "mesh/peers.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "routing/stats.h"

#define MESH_MAX_PEERS 256
#define RTT_WEIGHT 4 /* EWMA of the heartbeat round trip: 1/4 */
/* A learned peer unheard of for this many peer_timeouts is forgotten. */
#define FORGET_AFTER_TIMEOUTS 60
/* A forwarded request's deadline at a peer: its providers' own timeouts
 * apply there; this bounds the hop itself. */
#define PEER_CALL_TIMEOUT_MS 120000

struct peer {
    struct mesh_peer_info info;
    bool in_use;
    bool in_flight;          /* a heartbeat is out */
    int64_t first_ms;        /* monotonic: added to the table */
    int64_t last_attempt_ms; /* monotonic: last heartbeat sent */
    int64_t last_ok_ms;      /* monotonic: last heartbeat answered */
    bool ever_ok;
    bool id_known;    /* learned from the peer itself, or configured */
    bool unreachable; /* the last heartbeat got no answer at all */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct peer table[MESH_MAX_PEERS];
static struct mesh_view *view;

/* The configuration the table applies (copies). */
static char self_id[MESH_ID_MAX];
static char self_addr[MESH_ADDR_MAX];
static char *secret;
static char *tls_ca, *tls_cert, *tls_key;
static bool tls_on;
static int64_t peer_timeout_ms = 5000;

const char *mesh_peer_status_name(enum mesh_peer_status s)
{
    switch (s) {
    case MESH_PEER_CONNECTING:
        return "connecting";
    case MESH_PEER_HEALTHY:
        return "healthy";
    case MESH_PEER_UNHEALTHY:
        return "unhealthy";
    }
    return "unknown";
}

int64_t mesh_heartbeat_period_ms(const struct config *cfg)
{
    int64_t p = cfg->node.heartbeat_interval_ms;
    int64_t third = cfg->node.peer_timeout_ms / 3;
    if (third < p) p = third;
    return p < 100 ? 100 : p;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

/* The provider-level live figures of peer `id` ("mesh:<id>", routing/stats.h);
 * `name` (MESH_ID_MAX + 8 bytes) receives the provider name. */
static struct provider_stats *peer_stats(const char *id, char *name)
{
    memcpy(name, "mesh:", 6);
    copy_str(name + 5, MESH_ID_MAX + 3, id);
    return provider_stats_get(name);
}

/* ---- the view ---- */

static void view_free(struct mesh_view *v)
{
    for (size_t i = 0; i < v->n; i++) {
        struct config_provider *p = &v->providers[i];
        free(p->name);
        free(p->endpoint);
        free(p->api_key);
        free(p->tls_ca_file);
        free(p->tls_cert_file);
        free(p->tls_key_file);
        free((char *)p->mesh_node);
        for (size_t j = 0; j < p->n_models; j++) {
            free(p->models[j].name);
            free(p->models[j].upstream_id);
        }
        free(p->models);
    }
    free(v->providers);
    free(v);
}

void mesh_view_release(struct mesh_view *v)
{
    if (v && atomic_fetch_sub(&v->refs, 1) == 1) view_free(v);
}

struct mesh_view *mesh_view_acquire(void)
{
    pthread_mutex_lock(&lock);
    if (!view) {
        view = xcalloc(1, sizeof *view);
        atomic_init(&view->refs, 1);
    }
    struct mesh_view *v = view;
    atomic_fetch_add(&v->refs, 1);
    pthread_mutex_unlock(&lock);
    return v;
}

/* One healthy peer as a provider. */
static void peer_as_provider(const struct peer *p, struct config_provider *out)
{
    const struct mesh_node_state *st = &p->info.state;
    memset(out, 0, sizeof *out);
    char name[MESH_ID_MAX + 8];
    out->stats = peer_stats(p->info.id, name);
    out->name = xstrdup(name);
    out->type = PROVIDER_MESH;
    out->enabled = true;
    out->available = true;
    /* Where a strategy falls back on priority, peers come after every
     * local provider, and among themselves by their own priority. */
    out->priority = 1000000 + p->info.priority;
    out->endpoint = xasprintf("%s://%s/v1", tls_on ? "https" : "http", p->info.addr);
    out->api_key = secret ? xstrdup(secret) : NULL;
    out->tls_ca_file = tls_on && tls_ca ? xstrdup(tls_ca) : NULL;
    out->tls_cert_file = tls_on && tls_cert ? xstrdup(tls_cert) : NULL;
    out->tls_key_file = tls_on && tls_key ? xstrdup(tls_key) : NULL;
    out->timeout_ms = PEER_CALL_TIMEOUT_MS;
    out->weight = 1;
    out->max_tokens_default = 4096;
    out->mesh_node = xstrdup(p->info.id);
    out->mesh_load_permille = st->load_permille;
    out->models = st->n_models ? xcalloc(st->n_models, sizeof *out->models) : NULL;
    for (size_t i = 0; i < st->n_models; i++) {
        const struct mesh_model_info *m = &st->models[i];
        if (!m->available) continue;
        struct config_model *cm = &out->models[out->n_models++];
        cm->name = xstrdup(m->name);
        cm->upstream_id = xstrdup(m->name);
        cm->capabilities = m->capabilities ? m->capabilities : CAP_TEXT;
        cm->capabilities_explicit = true;
        cm->price_in_per_1k = m->price_in_per_1k;
        cm->price_out_per_1k = m->price_out_per_1k;
        cm->price_per_generation = m->price_per_generation;
    }
}

/* Publishes a new view of the healthy peers (lock held). */
static void rebuild_view_locked(void)
{
    struct mesh_view *v = xcalloc(1, sizeof *v);
    atomic_init(&v->refs, 1);
    size_t n = 0;
    for (size_t i = 0; i < MESH_MAX_PEERS; i++)
        if (table[i].in_use && table[i].info.status == MESH_PEER_HEALTHY && table[i].info.has_state)
            n++;
    v->providers = n ? xcalloc(n, sizeof *v->providers) : NULL;
    for (size_t i = 0; i < MESH_MAX_PEERS; i++) {
        const struct peer *p = &table[i];
        if (p->in_use && p->info.status == MESH_PEER_HEALTHY && p->info.has_state)
            peer_as_provider(p, &v->providers[v->n++]);
    }
    struct mesh_view *old = view;
    view = v;
    mesh_view_release(old);
}

/* ---- the table ---- */

static struct peer *find_addr(const char *addr)
{
    for (size_t i = 0; i < MESH_MAX_PEERS; i++)
        if (table[i].in_use && strcmp(table[i].info.addr, addr) == 0) return &table[i];
    return NULL;
}

static struct peer *find_id(const char *id)
{
    for (size_t i = 0; i < MESH_MAX_PEERS; i++)
        if (table[i].in_use && table[i].id_known && strcmp(table[i].info.id, id) == 0)
            return &table[i];
    return NULL;
}

static void peer_drop(struct peer *p)
{
    if (p->info.has_state) mesh_state_cleanup(&p->info.state);
    memset(p, 0, sizeof *p);
}

static struct peer *peer_add(const char *addr, const char *id, bool configured, int priority,
                             int64_t now_ms)
{
    for (size_t i = 0; i < MESH_MAX_PEERS; i++) {
        struct peer *p = &table[i];
        if (p->in_use) continue;
        memset(p, 0, sizeof *p);
        p->in_use = true;
        copy_str(p->info.addr, sizeof p->info.addr, addr);
        copy_str(p->info.id, sizeof p->info.id, id && *id ? id : addr);
        p->id_known = id && *id && mesh_id_valid(id);
        p->info.configured = configured;
        p->info.priority = priority;
        p->info.status = MESH_PEER_CONNECTING;
        p->first_ms = now_ms;
        return p;
    }
    return NULL;
}

static bool is_self(const char *id, const char *addr)
{
    return (id && *id && strcmp(id, self_id) == 0) ||
           (addr && self_addr[0] && strcmp(addr, self_addr) == 0);
}

/* A node named in someone's heartbeat: added when new to us. */
static void learn_locked(const char *id, const char *addr, int64_t now_ms)
{
    if (!addr || !*addr || is_self(id, addr)) return;
    if (find_addr(addr)) return;
    if (id && *id && find_id(id)) return;
    struct peer *p = peer_add(addr, id, false, 1, now_ms);
    if (p)
        log_event(LOG_INFO, "peer_discovered", "mesh: learned of %s at %s", p->info.id,
                  p->info.addr);
}

void mesh_peers_configure(const struct config *cfg)
{
    int64_t now_ms = clock_mono_ms();
    pthread_mutex_lock(&lock);
    copy_str(self_id, sizeof self_id, cfg->node.id);
    copy_str(self_addr, sizeof self_addr, cfg->node.mesh_listen_addr);
    free(secret);
    secret = cfg->node.mesh_secret ? xstrdup(cfg->node.mesh_secret) : NULL;
    free(tls_ca);
    free(tls_cert);
    free(tls_key);
    tls_ca = cfg->node.mesh_tls_ca ? xstrdup(cfg->node.mesh_tls_ca) : NULL;
    tls_cert = cfg->node.mesh_tls_cert ? xstrdup(cfg->node.mesh_tls_cert) : NULL;
    tls_key = cfg->node.mesh_tls_key ? xstrdup(cfg->node.mesh_tls_key) : NULL;
    tls_on = cfg->node.mesh_tls_cert != NULL;
    peer_timeout_ms = cfg->node.peer_timeout_ms;
    bool enabled = cfg->node.mesh_enabled;
    /* Configured peers no longer listed: forgotten unless they were heard
     * from (then they stay as learned peers). */
    for (size_t i = 0; i < MESH_MAX_PEERS; i++) {
        struct peer *p = &table[i];
        if (!p->in_use) continue;
        bool listed = false;
        for (size_t j = 0; enabled && j < cfg->node.n_peers; j++)
            listed = listed || strcmp(cfg->node.peers[j].addr, p->info.addr) == 0;
        if (!listed && p->info.configured) {
            if (p->ever_ok && enabled)
                p->info.configured = false;
            else
                peer_drop(p);
        }
        if (!enabled && p->in_use) peer_drop(p);
    }
    for (size_t j = 0; enabled && j < cfg->node.n_peers; j++) {
        const struct config_peer *cp = &cfg->node.peers[j];
        struct peer *p = find_addr(cp->addr);
        if (!p && !is_self(cp->id_given ? cp->id : NULL, cp->addr))
            p = peer_add(cp->addr, cp->id_given ? cp->id : NULL, true, cp->priority, now_ms);
        if (!p) continue;
        p->info.configured = true;
        p->info.priority = cp->priority;
        if (cp->id_given && !p->ever_ok) {
            copy_str(p->info.id, sizeof p->info.id, cp->id);
            p->id_known = mesh_id_valid(cp->id);
        }
    }
    rebuild_view_locked();
    pthread_mutex_unlock(&lock);
}

size_t mesh_peers_due(int64_t now_ms, int64_t period_ms, char (*addrs)[MESH_ADDR_MAX], size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < MESH_MAX_PEERS && n < cap; i++) {
        struct peer *p = &table[i];
        if (!p->in_use || p->in_flight) continue;
        if (p->last_attempt_ms && now_ms - p->last_attempt_ms < period_ms) continue;
        p->in_flight = true;
        p->last_attempt_ms = now_ms;
        memcpy(addrs[n++], p->info.addr, MESH_ADDR_MAX);
    }
    pthread_mutex_unlock(&lock);
    return n;
}

/* Whether what a peer offers the router (its models, their prices,
 * capabilities and availability, its load) differs between two states. */
static bool offer_differs(const struct mesh_node_state *a, const struct mesh_node_state *b)
{
    if (a->load_permille != b->load_permille || a->n_models != b->n_models) return true;
    for (size_t i = 0; i < a->n_models; i++) {
        const struct mesh_model_info *x = &a->models[i], *y = &b->models[i];
        if (strcmp(x->name, y->name) != 0 || x->price_in_per_1k != y->price_in_per_1k ||
            x->price_out_per_1k != y->price_out_per_1k ||
            x->price_per_generation != y->price_per_generation ||
            x->capabilities != y->capabilities || x->available != y->available)
            return true;
    }
    return false;
}

/* A peer back (or new): the failures that opened its circuit while it was
 * away are forgotten, for the peer and each model it serves, so traffic
 * returns at once instead of after the circuit's cool-down. */
static void forgive(const struct mesh_node_state *st)
{
    char name[MESH_ID_MAX + 8];
    struct provider_stats *ps = peer_stats(st->id, name);
    if (!ps) return;
    provider_stats_forgive(ps);
    for (size_t i = 0; i < st->n_models; i++)
        provider_stats_forgive(provider_stats_model(ps, st->models[i].name));
}

/* The peer's provider entry carries its status for requests in flight
 * (api/proxy.c watches it): down while it is unhealthy. */
static void mark_down(const struct peer *p, bool down)
{
    char name[MESH_ID_MAX + 8];
    struct provider_stats *ps = peer_stats(p->info.id, name);
    if (ps) atomic_store(&ps->down, down);
}

static void set_status_locked(struct peer *p, enum mesh_peer_status s, const char *why)
{
    enum mesh_peer_status old = p->info.status;
    if (old == s) return;
    p->info.status = s;
    /* Requests out to it are given up only when it stopped answering at
     * all: one refusing our secret is alive and finishes what it has. */
    if (p->id_known) mark_down(p, s == MESH_PEER_UNHEALTHY && p->unreachable);
    if (s == MESH_PEER_HEALTHY)
        log_event(LOG_INFO, "peer_joined", "mesh: peer %s (%s) is healthy, serving %zu models",
                  p->info.id, p->info.addr, p->info.has_state ? p->info.state.n_models : 0);
    else if (s == MESH_PEER_UNHEALTHY)
        log_event(LOG_WARN, "peer_lost", "mesh: peer %s (%s) is unhealthy: %s", p->info.id,
                  p->info.addr, why && *why ? why : "no heartbeat answered within peer_timeout");
}

void mesh_peers_on_heartbeat(const char *addr, const struct mesh_node_state *st, int64_t rtt_us,
                             const char *why, bool answered, int64_t now_ms)
{
    pthread_mutex_lock(&lock);
    struct peer *p = find_addr(addr);
    if (!p) goto out;
    p->in_flight = false;
    if (!st) {
        p->info.heartbeats_failed++;
        p->unreachable = !answered;
        if (p->info.status == MESH_PEER_UNHEALTHY && p->id_known) mark_down(p, p->unreachable);
        copy_str(p->info.last_error, sizeof p->info.last_error, why);
        goto out;
    }
    if (is_self(st->id, NULL)) {
        /* Our own address (listed by mistake, or gossiped back to us). */
        log_event(LOG_INFO, "peer_is_self", "mesh: %s is this node; not a peer", addr);
        peer_drop(p);
        rebuild_view_locked();
        goto out;
    }
    struct peer *other = find_id(st->id);
    if (other && other != p) {
        /* The same node under two addresses: keep the configured one. */
        struct peer *drop = other->info.configured && !p->info.configured ? p : other;
        log_event(LOG_INFO, "peer_duplicate", "mesh: %s answers at %s and %s; keeping %s", st->id,
                  p->info.addr, other->info.addr, drop == p ? other->info.addr : p->info.addr);
        bool self_dropped = drop == p;
        peer_drop(drop);
        if (self_dropped) {
            rebuild_view_locked();
            goto out;
        }
    }
    bool restarted = p->info.has_state && p->info.state.boot_id[0] &&
                     strcmp(p->info.state.boot_id, st->boot_id) != 0;
    if (restarted)
        log_event(LOG_INFO, "peer_restarted", "mesh: peer %s restarted (new boot id)", st->id);
    if (restarted || p->info.status != MESH_PEER_HEALTHY) forgive(st);
    bool view_changed = p->info.status != MESH_PEER_HEALTHY || !p->info.has_state ||
                        strcmp(p->info.id, st->id) != 0 || offer_differs(&p->info.state, st);
    if (p->info.has_state) mesh_state_cleanup(&p->info.state);
    mesh_state_copy(&p->info.state, st);
    p->info.has_state = true;
    copy_str(p->info.id, sizeof p->info.id, st->id);
    p->id_known = true;
    p->info.heartbeats_ok++;
    p->unreachable = false;
    p->info.last_error[0] = '\0';
    p->info.rtt_us =
        p->info.rtt_us ? p->info.rtt_us + (rtt_us - p->info.rtt_us) / RTT_WEIGHT : rtt_us;
    p->last_ok_ms = now_ms;
    p->ever_ok = true;
    p->info.last_seen_wall_ms = wall_ms();
    set_status_locked(p, MESH_PEER_HEALTHY, NULL);
    for (size_t i = 0; i < st->n_peers; i++)
        learn_locked(st->peers[i].id, st->peers[i].addr, now_ms);
    /* Most heartbeats change nothing routing sees: no new view then. */
    if (view_changed) rebuild_view_locked();
out:
    pthread_mutex_unlock(&lock);
}

void mesh_peers_tick(int64_t now_ms)
{
    bool changed = false;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < MESH_MAX_PEERS; i++) {
        struct peer *p = &table[i];
        if (!p->in_use) continue;
        int64_t since = now_ms - (p->ever_ok ? p->last_ok_ms : p->first_ms);
        if (since > peer_timeout_ms && p->info.status != MESH_PEER_UNHEALTHY &&
            (p->ever_ok || p->info.heartbeats_failed > 0)) {
            if (p->in_flight) p->unreachable = true; /* no answer for peer_timeout */
            set_status_locked(p, MESH_PEER_UNHEALTHY, p->info.last_error);
            changed = true;
        }
        if (!p->info.configured && p->info.status == MESH_PEER_UNHEALTHY &&
            since > FORGET_AFTER_TIMEOUTS * peer_timeout_ms) {
            log_event(LOG_INFO, "peer_forgotten", "mesh: forgetting %s (%s), silent for %lld s",
                      p->info.id, p->info.addr, (long long)(since / 1000));
            peer_drop(p);
            changed = true;
        }
    }
    if (changed) rebuild_view_locked();
    pthread_mutex_unlock(&lock);
}

/* "0.0.0.0:9090" from a node that listens on every address: reachable at
 * the address its heartbeat came from. */
static void reachable_addr(const char *addr, const char *from_ip, char *out, size_t cap)
{
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : 0;
    bool wildcard = hl == 0 || (hl == 7 && memcmp(addr, "0.0.0.0", 7) == 0) ||
                    (hl == 4 && memcmp(addr, "[::]", 4) == 0);
    if (wildcard && colon && from_ip && *from_ip) {
        if (strchr(from_ip, ':'))
            snprintf(out, cap, "[%s]%s", from_ip, colon);
        else
            snprintf(out, cap, "%s%s", from_ip, colon);
    } else {
        copy_str(out, cap, addr);
    }
}

void mesh_peers_heard_from(const struct mesh_node_state *st, const char *from_ip)
{
    int64_t now_ms = clock_mono_ms();
    pthread_mutex_lock(&lock);
    if (st->addr[0]) {
        char addr[MESH_ADDR_MAX];
        reachable_addr(st->addr, from_ip, addr, sizeof addr);
        struct peer *known = find_id(st->id);
        if (known && !known->info.configured && strcmp(known->info.addr, addr) != 0 &&
            !find_addr(addr)) {
            /* A learned peer moved its mesh listener (a reload): follow it.
             * A heartbeat still out to the old address is forgotten. */
            log_event(LOG_INFO, "peer_moved", "mesh: peer %s moved from %s to %s", st->id,
                      known->info.addr, addr);
            copy_str(known->info.addr, sizeof known->info.addr, addr);
            known->in_flight = false;
            known->last_attempt_ms = 0;
            rebuild_view_locked();
        } else {
            learn_locked(st->id, addr, now_ms);
        }
    }
    for (size_t i = 0; i < st->n_peers; i++)
        learn_locked(st->peers[i].id, st->peers[i].addr, now_ms);
    pthread_mutex_unlock(&lock);
}

void mesh_peers_count_received(const char *id)
{
    pthread_mutex_lock(&lock);
    struct peer *p = find_id(id);
    if (p) p->info.received++;
    pthread_mutex_unlock(&lock);
}

size_t mesh_peers_known(struct mesh_known_peer *out, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < MESH_MAX_PEERS && n < cap; i++) {
        const struct peer *p = &table[i];
        if (!p->in_use || !p->id_known) continue;
        copy_str(out[n].id, sizeof out[n].id, p->info.id);
        copy_str(out[n].addr, sizeof out[n].addr, p->info.addr);
        out[n].healthy = p->info.status == MESH_PEER_HEALTHY;
        n++;
    }
    pthread_mutex_unlock(&lock);
    return n;
}

size_t mesh_peers_snapshot(struct mesh_peer_info **out)
{
    pthread_mutex_lock(&lock);
    size_t n = 0;
    for (size_t i = 0; i < MESH_MAX_PEERS; i++)
        n += table[i].in_use;
    struct mesh_peer_info *v = n ? xcalloc(n, sizeof *v) : NULL;
    size_t k = 0;
    for (size_t i = 0; i < MESH_MAX_PEERS; i++) {
        if (!table[i].in_use) continue;
        v[k] = table[i].info;
        if (table[i].info.has_state) mesh_state_copy(&v[k].state, &table[i].info.state);
        k++;
    }
    pthread_mutex_unlock(&lock);
    *out = v;
    return n;
}

void mesh_peers_info_free(struct mesh_peer_info *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].has_state) mesh_state_cleanup(&v[i].state);
    free(v);
}

void mesh_peers_reset(void)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < MESH_MAX_PEERS; i++)
        if (table[i].in_use) peer_drop(&table[i]);
    struct mesh_view *old = view;
    view = NULL;
    free(secret);
    secret = NULL;
    free(tls_ca);
    free(tls_cert);
    free(tls_key);
    tls_ca = tls_cert = tls_key = NULL;
    pthread_mutex_unlock(&lock);
    mesh_view_release(old);
}
