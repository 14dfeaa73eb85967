/* aiproxyd: the gateway daemon. Parses flags, loads the config (file, or
 * ./aiproxy.yaml, or the built-in defaults), discovers local models,
 * starts the workers (and the prometheus_port listener when set), then
 * waits for signals: SIGTERM/SIGINT drain and exit 0, SIGHUP reloads the
 * config (also raised by POST /aiproxy/admin/reload, which waits for the
 * outcome published through obs/reload.h), SIGUSR1 reopens the log file.
 * A reload that changes a listen address starts a server on the new
 * address and drains the old one in the background. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "api/admission.h"
#include "api/context_api.h"
#include "api/responses_api.h"
#include "api/discover.h"
#include "api/dispatch.h"
#include "api/health.h"
#include "api/mesh_api.h"
#include "api/models.h"
#include "api/upstream_slot.h"
#include "cache/cache.h"
#include "cache/redis_store.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/log.h"
#include "http/server.h"
#include "http/tls.h"
#include "mesh/heartbeat.h"
#include "mesh/peers.h"
#include "mesh/wire.h"
#include "api/admin_info.h"
#include "obs/metrics.h"
#include "obs/reload.h"
#include "security/jwt_auth.h"
#include "obs/trace.h"
#include "obs/version.h"
#include "obs/watch.h"
#include "routing/stats.h"

#define DISCOVERY_TIMEOUT_MS 1500
#define REFRESH_INTERVAL_S 5 /* discovery and reachability of local servers */
#define MAX_CONFIG_BYTES (4 * 1024 * 1024)
#define MAX_DRAINERS 16 /* old servers draining after listener changes */

struct options {
    const char *config_path;
    const char *listen;
    const char *peers;
    const char *node_id;
    bool check;
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: aiproxyd [options]\n"
            "\n"
            "The aiproxy LLM gateway: one OpenAI-compatible API in front of many providers.\n"
            "\n"
            "Options:\n"
            "  --config FILE        YAML or JSON config (default: ./aiproxy.yaml if present,\n"
            "                       else built-in defaults: listen 127.0.0.1:8080, providers\n"
            "                       from the environment, data under ./data/)\n"
            "  --listen HOST:PORT   override server.listen_addr\n"
            "  --peers ADDR[,ADDR]  add mesh peers (host:port of their mesh listener)\n"
            "  --node-id ID         override node.id\n"
            "  --check              validate the config, print a summary, exit 0 or 2\n"
            "  --version            print the version\n"
            "  --help               print this help\n"
            "\n"
            "Signals: SIGTERM/SIGINT drain and exit, SIGHUP reloads the config,\n"
            "SIGUSR1 reopens the log file.\n"
            "Exit codes: 0 success, 1 runtime failure, 2 bad usage or invalid config.\n");
}

static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
        {"peers", required_argument, NULL, 'p'},  {"node-id", required_argument, NULL, 'n'},
        {"check", no_argument, NULL, 'k'},        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:hv", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': o->config_path = optarg; break;
        case 'l': o->listen = optarg; break;
        case 'p': o->peers = optarg; break;
        case 'n': o->node_id = optarg; break;
        case 'k': o->check = true; break;
        case 'v': printf("aiproxyd %s\n", AIPROXY_VERSION); exit(0);
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "aiproxyd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Applies --listen and --node-id to a freshly loaded snapshot. */
static int apply_overrides(struct config *cfg, const struct options *o)
{
    if (o->listen) {
        const char *colon = strrchr(o->listen, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || !end || *end || port < 0 || port > 65535) {
            fprintf(stderr, "aiproxyd: --listen %s: expected HOST:PORT\n", o->listen);
            return -1;
        }
        const char *h = o->listen;
        size_t hl = (size_t)(colon - h);
        if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
            h++;
            hl -= 2;
        }
        free(cfg->server.listen_host);
        cfg->server.listen_host = hl ? xstrndup(h, hl) : xstrdup("0.0.0.0");
        cfg->server.listen_port = (int)port;
    }
    if (o->node_id) {
        free(cfg->node.id);
        cfg->node.id = xstrdup(o->node_id);
    }
    if (o->peers) {
        /* Each a mesh address; ids are learned from the peers' answers. */
        const char *s = o->peers;
        while (*s) {
            size_t n = strcspn(s, ",");
            char *addr = xstrndup(s, n);
            s += n + (s[n] == ',');
            if (!*addr) {
                free(addr);
                continue;
            }
            char *host = NULL;
            int port = 0;
            if (!config_parse_listen(addr, &host, &port) || port == 0) {
                fprintf(stderr, "aiproxyd: --peers %s: expected HOST:PORT[,HOST:PORT...]\n", addr);
                free(host);
                free(addr);
                return -1;
            }
            free(host);
            bool dup = false;
            for (size_t i = 0; i < cfg->node.n_peers && !dup; i++)
                dup = strcmp(cfg->node.peers[i].addr, addr) == 0;
            if (dup) {
                free(addr);
                continue;
            }
            cfg->node.peers = xrealloc(cfg->node.peers, (cfg->node.n_peers + 1) * sizeof *cfg->node.peers);
            cfg->node.peers[cfg->node.n_peers++] =
                (struct config_peer){.id = xstrdup(addr), .addr = addr, .priority = 1};
        }
        cfg->node.mesh_enabled = true;
    }
    if (cfg->node.mesh_enabled && cfg->security.auth_enabled && !cfg->node.mesh_secret) {
        fprintf(stderr, "aiproxyd: %s: node.mesh.secret: missing (expected a shared secret every "
                        "node holds: with security.auth enabled, peers must authenticate to "
                        "each other)\n", cfg->source ? cfg->source : "config");
        return -1;
    }
    if (cfg->node.mesh_enabled && !mesh_id_valid(cfg->node.id)) {
        fprintf(stderr, "aiproxyd: node.id '%s': a mesh node id is 1 to 63 of A-Z a-z 0-9 . _ -\n",
                cfg->node.id);
        return -1;
    }
    return 0;
}

/* The config file's text, kept so that periodic discovery can rebuild the
 * snapshot from the same source (a reload re-reads the file). */
struct config_source {
    const char *path; /* NULL: built-in defaults */
    char *text;
    size_t len;
};

static int read_source(const struct options *o, struct config_source *src)
{
    struct stat st;
    src->path = o->config_path;
    if (!src->path && stat("aiproxy.yaml", &st) == 0) src->path = "aiproxy.yaml";
    src->text = NULL;
    src->len = 0;
    if (!src->path) return 0;
    FILE *f = fopen(src->path, "rb");
    if (!f) {
        fprintf(stderr, "aiproxyd: cannot read %s: %s\n", src->path, strerror(errno));
        return -1;
    }
    size_t cap = 65536;
    src->text = xmalloc(cap);
    size_t n;
    while ((n = fread(src->text + src->len, 1, cap - src->len, f)) > 0) {
        src->len += n;
        if (src->len < cap) continue;
        if (cap >= MAX_CONFIG_BYTES) {
            fprintf(stderr, "aiproxyd: %s is larger than %d bytes\n", src->path, MAX_CONFIG_BYTES);
            fclose(f);
            free(src->text);
            src->text = NULL;
            return -1;
        }
        cap *= 2;
        src->text = xrealloc(src->text, cap);
    }
    fclose(f);
    return 0;
}

/* Builds a snapshot from the source (or the defaults), with the command
 * line's overrides and live stats attached. Diagnostics are printed when
 * `verbose` (or when the config is invalid). */
static struct config *build_config(const struct options *o, const struct config_source *src,
                                   bool verbose, char *errors, size_t errcap)
{
    struct diag_list diags = {0};
    struct config *cfg = src->path ? config_load_text(src->text, src->len, src->path, &diags)
                                   : config_default(&diags);
    if (verbose || !cfg) diag_list_print(&diags, stderr);
    if (!cfg && errors && errcap) {
        /* the errors, one per line, for POST /aiproxy/admin/reload */
        size_t off = 0;
        errors[0] = '\0';
        for (size_t i = 0; i < diags.count && off + 1 < errcap; i++) {
            if (diags.items[i].severity != DIAG_ERROR) continue;
            int n = snprintf(errors + off, errcap - off, "%s\n", diags.items[i].text);
            if (n < 0) break;
            off += (size_t)n < errcap - off ? (size_t)n : errcap - off - 1;
        }
    }
    diag_list_cleanup(&diags);
    if (cfg && apply_overrides(cfg, o) != 0) {
        config_unref(cfg);
        return NULL;
    }
    for (size_t i = 0; cfg && i < cfg->n_providers; i++)
        cfg->providers[i].stats = provider_stats_get(cfg->providers[i].name);
    return cfg;
}

static bool any_discovery(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_providers; i++)
        if (cfg->providers[i].discover_models && cfg->providers[i].enabled) return true;
    return false;
}

static void configure_logging(const struct config *cfg)
{
    if (log_configure((enum log_level)cfg->observability.log_level,
                      cfg->observability.log_format == LOG_FORMAT_JSON,
                      cfg->observability.log_output) != 0) {
        fprintf(stderr, "aiproxyd: cannot open log output %s: %s; logging to stdout\n",
                cfg->observability.log_output, strerror(errno));
    }
}

static int workers_for(const struct config *cfg)
{
    if (cfg->server.workers > 0) return cfg->server.workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > 64 ? 64 : n) : 1;
}

/* ---- listeners ---- */

struct listeners {
    struct http_server *main, *metrics, *mesh;
    pthread_t drainers[MAX_DRAINERS];
    size_t n_drainers;
};

static struct http_server *start_main_server(struct config *cfg)
{
    struct http_server_opts o = {
        .host = cfg->server.listen_host,
        .port = cfg->server.listen_port,
        .workers = workers_for(cfg),
        .handler = api_dispatch,
        .on_complete = api_request_complete,
        .prepare = api_prepare_request,
        .slot_free = api_upstream_pool_free,
        .tls_cert_file = cfg->server.tls.cert_file,
        .tls_key_file = cfg->server.tls.key_file,
        .tls_client_ca_file = cfg->server.tls.client_ca_file,
    };
    return http_server_start(&o, cfg);
}

/* node.mesh.listen_addr: the mesh listener, with the same plumbing, limits
 * and number of workers as the client listener; its requests are marked as
 * coming from peers (api/mesh_api.c authenticates them with the secret). */
static struct http_server *start_mesh_server(struct config *cfg)
{
    if (!cfg->node.mesh_enabled || !cfg->node.mesh_listen_host) return NULL;
    struct http_server_opts o = {
        .host = cfg->node.mesh_listen_host,
        .port = cfg->node.mesh_listen_port,
        .workers = workers_for(cfg),
        .handler = api_dispatch,
        .on_complete = api_request_complete,
        .slot_free = api_upstream_pool_free,
        .mesh = true,
        .tls_cert_file = cfg->node.mesh_tls_cert,
        .tls_key_file = cfg->node.mesh_tls_key,
        .tls_client_ca_file = cfg->node.mesh_tls_ca,
    };
    struct http_server *m = http_server_start(&o, cfg);
    if (m)
        log_event(LOG_INFO, "mesh_listening", "mesh listener on %s:%d (%s, %s)",
                  cfg->node.mesh_listen_host, cfg->node.mesh_listen_port,
                  cfg->node.mesh_tls_cert ? "mutual TLS" : "plain HTTP",
                  cfg->node.mesh_secret ? "secret required" : "no secret: keep it private");
    return m;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_mesh_listen(const struct config *a, const struct config *b)
{
    bool a_on = a->node.mesh_enabled && a->node.mesh_listen_host;
    bool b_on = b->node.mesh_enabled && b->node.mesh_listen_host;
    if (a_on != b_on) return false;
    return !a_on || (a->node.mesh_listen_port == b->node.mesh_listen_port &&
                     same_str(a->node.mesh_listen_host, b->node.mesh_listen_host) &&
                     same_str(a->node.mesh_tls_cert, b->node.mesh_tls_cert) &&
                     same_str(a->node.mesh_tls_key, b->node.mesh_tls_key) &&
                     same_str(a->node.mesh_tls_ca, b->node.mesh_tls_ca));
}

/* observability.metrics.prometheus_port: its own one-worker server with a
 * handler that serves GET /metrics and GET /health only, without a key, on
 * server.listen_host (bind the gateway to a private address, or firewall
 * the port, when metrics must not be public). */
static struct http_server *start_metrics_server(struct config *cfg)
{
    if (cfg->observability.prometheus_port <= 0 || !cfg->observability.metrics_enabled) return NULL;
    struct http_server_opts o = {
        .host = cfg->server.listen_host,
        .port = cfg->observability.prometheus_port,
        .workers = 1,
        .handler = admin_info_metrics_listener,
        .tls_cert_file = cfg->observability.metrics_tls.cert_file,
        .tls_key_file = cfg->observability.metrics_tls.key_file,
        .tls_client_ca_file = cfg->observability.metrics_tls.client_ca_file,
    };
    struct http_server *m = http_server_start(&o, cfg);
    const struct config_tls *t = &cfg->observability.metrics_tls;
    if (m)
        log_event(LOG_INFO, "metrics_listening", "metrics on %s://%s:%d/metrics (%s)",
                  t->cert_file ? "https" : "http", cfg->server.listen_host,
                  cfg->observability.prometheus_port,
                  t->client_ca_file ? "client certificate required"
                                    : "no key: keep it private");
    return m;
}

static void *drain_main(void *arg)
{
    http_server_drain_and_free(arg);
    return NULL;
}

/* Drains `s` on a thread of its own: the main thread keeps taking signals
 * while old connections finish. */
static void drain_later(struct listeners *l, struct http_server *s)
{
    if (!s) return;
    if (l->n_drainers == MAX_DRAINERS) {
        pthread_join(l->drainers[0], NULL);
        memmove(l->drainers, l->drainers + 1, (MAX_DRAINERS - 1) * sizeof l->drainers[0]);
        l->n_drainers--;
    }
    if (pthread_create(&l->drainers[l->n_drainers], NULL, drain_main, s) == 0) l->n_drainers++;
    else http_server_drain_and_free(s);
}

static bool same_listen(const struct config *a, const struct config *b)
{
    return a->server.listen_port == b->server.listen_port &&
           strcmp(a->server.listen_host, b->server.listen_host) == 0;
}

static bool same_metrics_listen(const struct config *a, const struct config *b)
{
    bool a_on = a->observability.prometheus_port > 0 && a->observability.metrics_enabled;
    bool b_on = b->observability.prometheus_port > 0 && b->observability.metrics_enabled;
    if (a_on != b_on) return false;
    return !a_on || (a->observability.prometheus_port == b->observability.prometheus_port &&
                     strcmp(a->server.listen_host, b->server.listen_host) == 0);
}

/* ---- certificates on reload ---- */

/* A listener that keeps its address on reload and what its TLS becomes:
 * its files are loaded again (a renewed certificate usually keeps its
 * file names), and the new context is swapped in for new connections. */
struct tls_swap {
    struct http_server *server; /* NULL: nothing to do */
    const char *what;           /* "server.tls", for messages */
    SSL_CTX *ctx;               /* NULL: the listener becomes plain */
};

/* Loads the context for one staying listener. Returns false with the
 * reason in `errors` when the files do not make a usable context. */
static bool tls_swap_prepare(struct tls_swap *sw, struct http_server *s, const char *what,
                             const char *cert, const char *key, const char *ca, char *errors,
                             size_t cap)
{
    *sw = (struct tls_swap){.server = s, .what = what};
    if (!s || !cert) return true;
    char why[512];
    sw->ctx = tls_server_ctx_new(cert, key, ca, why, sizeof why);
    if (sw->ctx) return true;
    snprintf(errors, cap, "%s: %s; the old configuration and certificate keep serving", what,
             why);
    return false;
}

static void tls_swaps_commit(struct tls_swap *sw, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!sw[i].server) continue;
        if (sw[i].ctx) {
            char desc[512];
            tls_ctx_describe(sw[i].ctx, desc, sizeof desc);
            log_event(LOG_INFO, "tls_reloaded", "%s: new connections get %s", sw[i].what, desc);
        }
        http_server_set_tls(sw[i].server, sw[i].ctx); /* takes the reference */
        sw[i].server = NULL;
        sw[i].ctx = NULL;
    }
}

static void tls_swaps_cancel(struct tls_swap *sw, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tls_ctx_unref(sw[i].ctx);
        sw[i] = (struct tls_swap){0};
    }
}

/* Hands `cfg` to every listener and to the background modules. */
static void publish_config(struct listeners *l, struct config *cfg)
{
    http_server_set_config(l->main, cfg);
    if (l->metrics) http_server_set_config(l->metrics, cfg);
    if (l->mesh) http_server_set_config(l->mesh, cfg);
    mesh_peers_configure(cfg);
    if (cfg->node.mesh_enabled) mesh_heartbeat_start(cfg, mesh_api_self_state);
    mesh_heartbeat_set_config(cfg);
    watch_set_config(cfg);
    trace_configure(cfg);
    health_set_config(cfg);
    jwt_auth_configure(cfg);
}

/* SIGHUP: read and validate the file; on success rebind what moved and
 * swap the snapshot, else keep everything. Publishes the outcome for
 * POST /aiproxy/admin/reload. Returns the snapshot now serving. */
static struct config *do_reload(const struct options *opts, struct config_source *src,
                                struct config *cfg, struct listeners *l)
{
    uint64_t upto = reload_begin();
    char *errors = xmalloc(RELOAD_MESSAGE_MAX);
    errors[0] = '\0';
    struct config_source next_src = {0};
    struct config *next = NULL;
    if (read_source(opts, &next_src) == 0)
        next = build_config(opts, &next_src, true, errors, RELOAD_MESSAGE_MAX);
    else
        snprintf(errors, RELOAD_MESSAGE_MAX, "cannot read %s", next_src.path ? next_src.path : "the config");
    if (!next) {
        free(next_src.text);
        if (!errors[0]) snprintf(errors, RELOAD_MESSAGE_MAX, "the configuration is invalid");
        log_event(LOG_ERROR, "config_rejected",
                  "reload failed: the new configuration is invalid (see the errors above); the "
                  "old one keeps serving");
        reload_publish(upto, false, errors);
        free(errors);
        return cfg;
    }
    discover_apply(next, cfg, DISCOVERY_TIMEOUT_MS);
    /* Listeners that moved: bind the new address first, so that a busy
     * port rejects the reload instead of leaving the node deaf. */
    struct http_server *new_main = NULL, *new_metrics = NULL, *new_mesh = NULL;
    bool main_moved = !same_listen(cfg, next);
    bool metrics_moved = !same_metrics_listen(cfg, next);
    bool mesh_moved = !same_mesh_listen(cfg, next);
    if (main_moved && !(new_main = start_main_server(next))) {
        snprintf(errors, RELOAD_MESSAGE_MAX, "server.listen_addr: cannot listen on %s:%d (see "
                 "the log); the old configuration keeps serving", next->server.listen_host,
                 next->server.listen_port);
    } else if (metrics_moved && next->observability.prometheus_port > 0 &&
               next->observability.metrics_enabled && !(new_metrics = start_metrics_server(next))) {
        snprintf(errors, RELOAD_MESSAGE_MAX, "observability.metrics.prometheus_port: cannot "
                 "listen on %s:%d (see the log); the old configuration keeps serving",
                 next->server.listen_host, next->observability.prometheus_port);
        if (new_main) http_server_drain_and_free(new_main);
        new_main = NULL;
    } else if (mesh_moved && next->node.mesh_enabled && next->node.mesh_listen_host &&
               !(new_mesh = start_mesh_server(next))) {
        snprintf(errors, RELOAD_MESSAGE_MAX, "node.mesh.listen_addr: cannot listen on %s:%d (see "
                 "the log); the old configuration keeps serving", next->node.mesh_listen_host,
                 next->node.mesh_listen_port);
        if (new_main) http_server_drain_and_free(new_main);
        if (new_metrics) http_server_drain_and_free(new_metrics);
        new_main = new_metrics = NULL;
    }
    /* Certificates of the listeners that stay: a file that no longer
     * loads rejects the reload, so the old certificate keeps serving. */
    struct tls_swap swaps[3] = {{0}};
    if (!errors[0] &&
        tls_swap_prepare(&swaps[0], main_moved ? NULL : l->main, "server.tls",
                         next->server.tls.cert_file, next->server.tls.key_file,
                         next->server.tls.client_ca_file, errors, RELOAD_MESSAGE_MAX) &&
        tls_swap_prepare(&swaps[1], metrics_moved ? NULL : l->metrics,
                         "observability.metrics.tls", next->observability.metrics_tls.cert_file,
                         next->observability.metrics_tls.key_file,
                         next->observability.metrics_tls.client_ca_file, errors,
                         RELOAD_MESSAGE_MAX))
        tls_swap_prepare(&swaps[2], mesh_moved ? NULL : l->mesh, "node.mesh.tls",
                         next->node.mesh_tls_cert, next->node.mesh_tls_key,
                         next->node.mesh_tls_ca, errors, RELOAD_MESSAGE_MAX);
    if (errors[0]) {
        tls_swaps_cancel(swaps, 3);
        if (new_main) http_server_drain_and_free(new_main);
        if (new_metrics) http_server_drain_and_free(new_metrics);
        if (new_mesh) http_server_drain_and_free(new_mesh);
        log_event(LOG_ERROR, "config_rejected", "reload failed: %s", errors);
        reload_publish(upto, false, errors);
        free(errors);
        free(next_src.text);
        config_unref(next);
        return cfg;
    }
    free(src->text);
    *src = next_src;
    configure_logging(next);
    discover_log_changes(cfg, next);
    if (main_moved) {
        log_event(LOG_INFO, "listener_moved", "now listening on %s:%d; draining %s:%d",
                  next->server.listen_host, next->server.listen_port, cfg->server.listen_host,
                  cfg->server.listen_port);
        drain_later(l, l->main);
        l->main = new_main;
    }
    if (metrics_moved) {
        drain_later(l, l->metrics);
        l->metrics = new_metrics;
    }
    if (mesh_moved) {
        drain_later(l, l->mesh);
        l->mesh = new_mesh;
    }
    tls_swaps_commit(swaps, 3);
    publish_config(l, next);
    config_unref(cfg);
    log_event(LOG_INFO, "config_loaded", "configuration reloaded from %s", next->source);
    reload_publish(upto, true, next->source ? next->source : "defaults");
    free(errors);
    return next;
}

int main(int argc, char **argv)
{
    struct options opts = {0};
    if (parse_args(argc, argv, &opts) != 0) return 2;
    ids_init();
    signal(SIGPIPE, SIG_IGN);

    struct config_source src = {0};
    if (read_source(&opts, &src) != 0) return 2;
    bool used_defaults = src.path == NULL;
    struct config *cfg = build_config(&opts, &src, true, NULL, 0);
    if (!cfg) {
        fprintf(stderr, "aiproxyd: the configuration is invalid; not starting\n");
        free(src.text);
        return 2;
    }
    if (opts.check) {
        config_print_summary(cfg, stdout);
        config_unref(cfg);
        free(src.text);
        return 0;
    }
    configure_logging(cfg);
    discover_apply(cfg, NULL, DISCOVERY_TIMEOUT_MS);
    config_print_summary(cfg, stderr);
    if (used_defaults)
        fprintf(stderr, "aiproxyd: no --config and no ./aiproxy.yaml: running on the built-in "
                        "defaults\n");

    /* Signals are taken by this thread with sigwait; workers never see them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    models_set_start_time(clock_wall_s());
    metrics_init();
    char lerr[512];
    if (admission_start(cfg, lerr, sizeof lerr) != 0) {
        fprintf(stderr, "aiproxyd: cannot open the ledger: %s\n", lerr);
        config_unref(cfg);
        free(src.text);
        return 1;
    }
    if (context_start(cfg, lerr, sizeof lerr) != 0) {
        fprintf(stderr, "aiproxyd: cannot open the context buffer: %s\n", lerr);
        admission_stop();
        config_unref(cfg);
        free(src.text);
        return 1;
    }
    if (responses_api_start(cfg, lerr, sizeof lerr) != 0) {
        fprintf(stderr, "aiproxyd: cannot open the store of responses: %s\n", lerr);
        context_stop();
        admission_stop();
        config_unref(cfg);
        free(src.text);
        return 1;
    }
    if (cache_redis_start(cfg, lerr, sizeof lerr) != 0) {
        fprintf(stderr, "aiproxyd: cannot set up the response cache's Redis: %s\n", lerr);
        admission_stop();
        config_unref(cfg);
        free(src.text);
        return 1;
    }
    struct listeners l = {0};
    l.main = start_main_server(cfg);
    if (!l.main) {
        admission_stop();
        config_unref(cfg);
        free(src.text);
        return 1;
    }
    l.metrics = start_metrics_server(cfg);
    if (cfg->observability.prometheus_port > 0 && cfg->observability.metrics_enabled && !l.metrics) {
        http_server_drain_and_free(l.main);
        admission_stop();
        config_unref(cfg);
        free(src.text);
        return 1;
    }
    mesh_api_init();
    mesh_peers_configure(cfg);
    l.mesh = start_mesh_server(cfg);
    if (cfg->node.mesh_enabled && cfg->node.mesh_listen_host && !l.mesh) {
        if (l.metrics) http_server_drain_and_free(l.metrics);
        http_server_drain_and_free(l.main);
        mesh_peers_reset();
        admission_stop();
        config_unref(cfg);
        free(src.text);
        return 1;
    }
    if (cfg->node.mesh_enabled) mesh_heartbeat_start(cfg, mesh_api_self_state);
    watch_start(cfg);
    health_start(cfg);
    trace_start();
    trace_configure(cfg);
    log_event(LOG_INFO, "started", "aiproxyd %s listening on %s://%s:%d with %d workers (node %s)",
              AIPROXY_VERSION, cfg->server.tls.cert_file ? "https" : "http",
              cfg->server.listen_host, cfg->server.listen_port, workers_for(cfg), cfg->node.id);

    uint64_t fingerprint = discover_fingerprint(cfg);
    for (;;) {
        struct timespec tick = {.tv_sec = REFRESH_INTERVAL_S};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig < 0) {
            if (errno != EAGAIN || !any_discovery(cfg)) continue;
            /* Periodic discovery: rebuild from the same source; swap only
             * when what routing sees changed. */
            struct config *fresh = build_config(&opts, &src, false, NULL, 0);
            if (!fresh) continue;
            discover_apply(fresh, cfg, DISCOVERY_TIMEOUT_MS);
            uint64_t fp = discover_fingerprint(fresh);
            if (fp == fingerprint || !same_listen(cfg, fresh) || !same_metrics_listen(cfg, fresh) ||
                !same_mesh_listen(cfg, fresh)) {
                /* (a file edited but not yet reloaded moves nothing) */
                config_unref(fresh);
                continue;
            }
            discover_log_changes(cfg, fresh);
            publish_config(&l, fresh);
            config_unref(cfg);
            cfg = fresh;
            fingerprint = fp;
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT) break;
        if (sig == SIGUSR1) {
            log_reopen();
            log_event(LOG_INFO, "log_reopened", "log output reopened (SIGUSR1)");
            continue;
        }
        if (sig == SIGHUP) {
            cfg = do_reload(&opts, &src, cfg, &l);
            fingerprint = discover_fingerprint(cfg);
        }
    }
    log_event(LOG_INFO, "draining", "signal received: finishing in-flight requests (up to %lld ms)",
              (long long)cfg->server.drain_timeout_ms);
    if (l.metrics) drain_later(&l, l.metrics);
    if (l.mesh) drain_later(&l, l.mesh);
    http_server_drain_and_free(l.main);
    for (size_t i = 0; i < l.n_drainers; i++) pthread_join(l.drainers[i], NULL);
    mesh_heartbeat_stop();
    mesh_peers_reset();
    watch_stop();
    health_stop();
    cache_redis_stop();
    cache_cleanup();
    responses_api_stop();
    context_stop();
    admission_stop(); /* commits every queued ledger record */
    trace_stop();     /* one last export of what is queued */
    log_event(LOG_INFO, "stopped", "aiproxyd stopped");
    config_unref(cfg);
    free(src.text);
    return 0;
}
