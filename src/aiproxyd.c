/* aiproxyd: the gateway daemon. Parses flags, loads the config (file, or
 * ./aiproxy.yaml, or the built-in defaults), discovers local models,
 * starts the workers, then waits for signals: SIGTERM/SIGINT drain and
 * exit 0, SIGHUP reloads the config, SIGUSR1 reopens the log file. */
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
#include "api/discover.h"
#include "api/dispatch.h"
#include "api/models.h"
#include "api/upstream_slot.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/log.h"
#include "http/server.h"
#include "obs/metrics.h"
#include "routing/stats.h"

#define AIPROXY_VERSION "0.1.0"
#define DISCOVERY_TIMEOUT_MS 1500
#define REFRESH_INTERVAL_S 5 /* discovery and reachability of local servers */
#define MAX_CONFIG_BYTES (4 * 1024 * 1024)

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
        fprintf(stderr, "aiproxyd: --peers: mesh federation is not part of this build yet; "
                        "ignoring %s\n", o->peers);
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
                                   bool verbose)
{
    struct diag_list diags = {0};
    struct config *cfg = src->path ? config_load_text(src->text, src->len, src->path, &diags)
                                   : config_default(&diags);
    if (verbose || !cfg) diag_list_print(&diags, stderr);
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

int main(int argc, char **argv)
{
    struct options opts = {0};
    if (parse_args(argc, argv, &opts) != 0) return 2;
    ids_init();
    signal(SIGPIPE, SIG_IGN);

    struct config_source src = {0};
    if (read_source(&opts, &src) != 0) return 2;
    bool used_defaults = src.path == NULL;
    struct config *cfg = build_config(&opts, &src, true);
    if (!cfg) {
        fprintf(stderr, "aiproxyd: the configuration is invalid; not starting\n");
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
        return 1;
    }
    struct http_server_opts sopts = {
        .host = cfg->server.listen_host,
        .port = cfg->server.listen_port,
        .workers = workers_for(cfg),
        .handler = api_dispatch,
        .on_complete = api_request_complete,
        .slot_free = api_upstream_pool_free,
    };
    struct http_server *server = http_server_start(&sopts, cfg);
    if (!server) {
        admission_stop();
        config_unref(cfg);
        return 1;
    }
    log_event(LOG_INFO, "started", "aiproxyd %s listening on %s:%d with %d workers (node %s)",
              AIPROXY_VERSION, cfg->server.listen_host, cfg->server.listen_port, sopts.workers,
              cfg->node.id);

    uint64_t fingerprint = discover_fingerprint(cfg);
    for (;;) {
        struct timespec tick = {.tv_sec = REFRESH_INTERVAL_S};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig < 0) {
            if (errno != EAGAIN || !any_discovery(cfg)) continue;
            /* Periodic discovery: rebuild from the same source; swap only
             * when what routing sees changed. */
            struct config *fresh = build_config(&opts, &src, false);
            if (!fresh) continue;
            discover_apply(fresh, cfg, DISCOVERY_TIMEOUT_MS);
            uint64_t fp = discover_fingerprint(fresh);
            if (fp == fingerprint) {
                config_unref(fresh);
                continue;
            }
            discover_log_changes(cfg, fresh);
            http_server_set_config(server, fresh);
            config_unref(cfg);
            cfg = fresh;
            fingerprint = fp;
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT) break;
        if (sig == SIGUSR1) {
            log_reopen();
            continue;
        }
        if (sig == SIGHUP) {
            struct config_source next_src = {0};
            struct config *next = NULL;
            if (read_source(&opts, &next_src) == 0) next = build_config(&opts, &next_src, true);
            if (!next) {
                free(next_src.text);
                log_event(LOG_ERROR, "config_rejected",
                          "reload failed: the new configuration is invalid (see the errors "
                          "above); the old one keeps serving");
                continue;
            }
            free(src.text);
            src = next_src;
            if (next->server.listen_port != cfg->server.listen_port ||
                strcmp(next->server.listen_host, cfg->server.listen_host) != 0)
                log_event(LOG_WARN, "config_listen_unchanged", "reload: a new listen address "
                          "takes effect at restart");
            discover_apply(next, cfg, DISCOVERY_TIMEOUT_MS);
            configure_logging(next);
            discover_log_changes(cfg, next);
            http_server_set_config(server, next);
            config_unref(cfg);
            cfg = next;
            fingerprint = discover_fingerprint(cfg);
            log_event(LOG_INFO, "config_loaded", "configuration reloaded from %s", cfg->source);
        }
    }
    log_event(LOG_INFO, "draining", "signal received: finishing in-flight requests (up to %lld ms)",
              (long long)cfg->server.drain_timeout_ms);
    http_server_drain_and_free(server);
    admission_stop(); /* commits every queued ledger record */
    log_event(LOG_INFO, "stopped", "aiproxyd stopped");
    config_unref(cfg);
    free(src.text);
    return 0;
}
