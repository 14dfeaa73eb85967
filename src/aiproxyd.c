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

#include <jansson.h>
#include <openssl/ssl.h>

#include "api/admission.h"
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
#include "upstream/probe.h"

#define AIPROXY_VERSION "0.1.0"
#define DISCOVERY_TIMEOUT_MS 1500
#define DISCOVERY_MAX_BODY (4 * 1024 * 1024)

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

static struct config *load_config(const struct options *o, bool *used_defaults)
{
    struct diag_list diags = {0};
    struct config *cfg;
    const char *path = o->config_path;
    struct stat st;
    if (!path && stat("aiproxy.yaml", &st) == 0) path = "aiproxy.yaml";
    *used_defaults = !path;
    cfg = path ? config_load_file(path, &diags) : config_default(&diags);
    diag_list_print(&diags, stderr);
    diag_list_cleanup(&diags);
    if (cfg && apply_overrides(cfg, o) != 0) {
        config_unref(cfg);
        return NULL;
    }
    for (size_t i = 0; cfg && i < cfg->n_providers; i++)
        cfg->providers[i].stats = provider_stats_get(cfg->providers[i].name);
    return cfg;
}

/* Asks each provider with discover_models for its list (local servers on
 * plain http: Ollama, llama.cpp, vLLM...). A server that does not answer
 * is marked unavailable with the reason. */
static void discover_models(struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_providers; i++) {
        struct config_provider *p = &cfg->providers[i];
        if (!p->discover_models || !p->enabled) continue;
        if (strncmp(p->endpoint, "http://", 7) != 0) {
            log_event(LOG_WARN, "discovery_skipped", "provider %s: model discovery at start-up "
                      "needs a plain http endpoint", p->name);
            continue;
        }
        char *url = xasprintf("%s/models", p->endpoint);
        char *body = NULL;
        size_t len = 0;
        int status = probe_get(url, p->api_key, DISCOVERY_TIMEOUT_MS, DISCOVERY_MAX_BODY, &body, &len);
        free(url);
        if (status != 200) {
            if (p->n_models == 0) {
                p->available = false;
                free(p->unavailable_reason);
                p->unavailable_reason =
                    status < 0 ? xasprintf("no server answers at %s", p->endpoint)
                               : xasprintf("%s/models answered HTTP %d", p->endpoint, status);
            }
            free(body);
            continue;
        }
        json_error_t err;
        json_t *doc = json_loadb(body, len, 0, &err);
        json_t *data = doc ? json_object_get(doc, "data") : NULL;
        size_t added = 0;
        for (size_t j = 0; json_is_array(data) && j < json_array_size(data); j++) {
            const char *id = json_string_value(json_object_get(json_array_get(data, j), "id"));
            if (!id || !*id || strlen(id) > 256) continue;
            bool known = false;
            for (size_t k = 0; k < p->n_models; k++)
                if (strcmp(p->models[k].upstream_id, id) == 0) known = true;
            if (known) continue;
            bool embed = strstr(id, "embed") != NULL;
            config_provider_add_model(p, id, id, embed ? CAP_EMBEDDINGS : CAP_TEXT);
            added++;
        }
        json_decref(doc);
        free(body);
        if (p->n_models > 0 && !p->available && p->unavailable_reason &&
            strstr(p->unavailable_reason, "no server")) {
            p->available = true;
        }
        log_event(LOG_INFO, "models_discovered", "provider %s: %zu models discovered at %s",
                  p->name, added, p->endpoint);
    }
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

    bool used_defaults = false;
    struct config *cfg = load_config(&opts, &used_defaults);
    if (!cfg) {
        fprintf(stderr, "aiproxyd: the configuration is invalid; not starting\n");
        return 2;
    }
    if (opts.check) {
        config_print_summary(cfg, stdout);
        config_unref(cfg);
        return 0;
    }
    configure_logging(cfg);
    discover_models(cfg);
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

    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGTERM || sig == SIGINT) break;
        if (sig == SIGUSR1) {
            log_reopen();
            continue;
        }
        if (sig == SIGHUP) {
            bool d = false;
            struct config *next = load_config(&opts, &d);
            if (!next) {
                log_event(LOG_ERROR, "config_rejected",
                          "reload failed: the new configuration is invalid (see the errors "
                          "above); the old one keeps serving");
                continue;
            }
            if (next->server.listen_port != cfg->server.listen_port ||
                strcmp(next->server.listen_host, cfg->server.listen_host) != 0)
                log_event(LOG_WARN, "config_listen_unchanged", "reload: a new listen address "
                          "takes effect at restart");
            discover_models(next);
            configure_logging(next);
            http_server_set_config(server, next);
            config_unref(cfg);
            cfg = next;
            log_event(LOG_INFO, "config_loaded", "configuration reloaded from %s", cfg->source);
        }
    }
    log_event(LOG_INFO, "draining", "signal received: finishing in-flight requests (up to %lld ms)",
              (long long)cfg->server.drain_timeout_ms);
    http_server_drain_and_free(server);
    admission_stop(); /* commits every queued ledger record */
    log_event(LOG_INFO, "stopped", "aiproxyd stopped");
    config_unref(cfg);
    return 0;
}
