/* aiproxyctl: the management CLI (SPEC section 1). Talks to a running node
 * over its HTTP API (--url, --key) and prints tables for people or JSON for
 * scripts (--json): status, models, budget, mesh, keys list|create|revoke,
 * cache stats|clear, context watch|stats|clear (ctl/context_cmd.h), reload,
 * config check. Every command has --help. Exit codes: 0 success, 1
 * runtime failure (node unreachable, key refused), 2 bad usage or an
 * invalid config. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "core/alloc.h"
#include "ctl/context_cmd.h"
#include "obs/version.h"
#include "upstream/probe.h"

#define CTL_VERSION AIPROXY_VERSION
#define RELOAD_TIMEOUT_MS 30000

#define CTL_TIMEOUT_MS 5000
#define CTL_MAX_BODY (16 * 1024 * 1024)

struct ctl {
    const char *url;
    const char *key;
    bool json;
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: aiproxyctl [--url URL] [--key KEY] [--json] COMMAND [ARGS]\n"
            "\n"
            "Commands:\n"
            "  status             the node (id, version, uptime) and every provider: health,\n"
            "                     circuit state, latency, in-flight\n"
            "  models             the models the node serves, with their providers\n"
            "  budget             spend today and this month against the limits (with bars)\n"
            "  mesh               the mesh: this node, its peers (status, load, models, spend)\n"
            "  keys list          every API key (admin key needed); secrets are never shown\n"
            "  keys create NAME   create a managed key (see: aiproxyctl keys --help)\n"
            "  keys revoke ID     revoke a managed key at once\n"
            "  cache stats        the response cache: hits, misses, hit rate, entries,\n"
            "                     memory, saved USD\n"
            "  cache clear        empty the response cache, or one model's or tenant's part\n"
            "                     (admin key needed; see: aiproxyctl cache --help)\n"
            "  context watch DIR  send DIR's text files, then each change, to the node's\n"
            "                     context delta buffer (see: aiproxyctl context --help)\n"
            "  context stats      the context projects: files, pending, tokens saved\n"
            "  context clear P    empty and remove context project P\n"
            "  reload             reload the node's config file (admin key needed); shows\n"
            "                     the config errors when the new file is rejected\n"
            "  config check FILE  validate a config file locally (exit 0 valid, 2 invalid)\n"
            "  help [COMMAND]     this text, or a command's\n"
            "\n"
            "Options (anywhere on the line):\n"
            "  --url URL   the node (default http://127.0.0.1:8080)\n"
            "  --key KEY   API key (default $AIPROXY_API_KEY)\n"
            "  --json      machine-readable output\n"
            "  --version, --help\n"
            "\n"
            "Exit codes: 0 success, 1 runtime failure (node unreachable, key refused),\n"
            "2 bad usage or invalid config.\n");
}

static const struct {
    const char *cmd;
    const char *text;
} command_help[] = {
    {"status", "Usage: aiproxyctl status [--json]\n\n"
               "Shows the node (id, version, uptime, listen address, config generation), request\n"
               "totals, and one row per provider: availability, health (healthy, degraded,\n"
               "down, unavailable, unknown), circuit state (closed, open, half-open), recent\n"
               "latency and time to first token, requests in flight. Any valid key.\n"
               "Reads GET /aiproxy/status.\n"},
    {"models", "Usage: aiproxyctl models [--json]\n\n"
               "Lists every model with the providers that serve it, their availability and\n"
               "price. Reads GET /v1/models.\n"},
    {"budget", "Usage: aiproxyctl budget [--by node] [--json]\n\n"
               "Shows spend today and this month (UTC) with a bar per limit, then spend by\n"
               "provider, model, key and tenant. A non-admin key sees its own spend.\n"
               "Reads GET /v1/budget.\n\n"
               "--by node: each node's own provider spend today and this month, from the\n"
               "ledger (with a PostgreSQL ledger every node of the cluster; with SQLite\n"
               "this node). Admin key. Reads GET /v1/budget?by=node.\n"},
    {"mesh", "Usage: aiproxyctl mesh [--json]\n\n"
             "Shows the cluster as this node sees it (GET /aiproxy/mesh/status): the node,\n"
             "every mesh peer with its status, heartbeat latency, load, models and spend\n"
             "today, and this node's providers.\n"},
    {"keys", "Usage: aiproxyctl keys list\n"
             "       aiproxyctl keys create NAME [--tenant T] [--role admin|user] [--models a,b]\n"
             "                  [--daily-limit USD] [--monthly-limit USD] [--rate-limit N]\n"
             "                  [--requests-per-minute N] [--tokens-per-minute N]\n"
             "                  [--expires-in SECONDS]\n"
             "       aiproxyctl keys revoke ID\n\n"
             "Manages API keys (an admin key is needed). A created key is printed once.\n"},
    {"cache", "Usage: aiproxyctl cache stats [--json]\n"
              "       aiproxyctl cache clear [--model M] [--tenant T | --key-id ID | --scope S]\n"
              "                  [--json]\n\n"
              "stats: the node's response cache (GET /aiproxy/status, any valid key): mode,\n"
              "backend, TTL, hits (exact and semantic), misses, hit rate, answers stored,\n"
              "entries and memory in use, evictions, expiries, USD the hits saved, errors.\n\n"
              "clear: empties the cache (DELETE /aiproxy/admin/cache, admin key): this node's\n"
              "memory and, with backend redis, the entries every node shares. --model keeps\n"
              "it to one model (the resolved model name); --tenant to one tenant's answers,\n"
              "--key-id to those of one key without a tenant (a config key's name or a\n"
              "managed key's id), --scope to a raw scope (t:TENANT, k:KEY_ID, or * when\n"
              "authentication is off). Without a filter everything goes. Exit 1 when Redis\n"
              "does not answer (this node's memory is cleared even then).\n"},
    {"context", ctl_context_help},
    {"reload", "Usage: aiproxyctl reload [--json]\n\n"
               "Asks the node to reload its config file (POST /aiproxy/admin/reload, admin key)\n"
               "and waits for the outcome. A rejected file is listed with its errors and the\n"
               "node keeps its running config (exit 2). Same as sending SIGHUP, with an answer.\n"},
    {"config", "Usage: aiproxyctl config check FILE\n\n"
               "Validates FILE locally (no node needed): prints a summary and exits 0, or\n"
               "prints every error with its file, line and key and exits 2.\n"},
};

static int help_for(const char *cmd, FILE *out)
{
    for (size_t i = 0; i < sizeof command_help / sizeof command_help[0]; i++)
        if (strcmp(command_help[i].cmd, cmd) == 0) {
            fputs(command_help[i].text, out);
            return 0;
        }
    fprintf(stderr, "aiproxyctl: no such command '%s'\n", cmd);
    usage(stderr);
    return 2;
}

/* Explains a refusal of the key in words people can act on. */
static void explain_status(const struct ctl *c, int status, const char *path, json_t *doc)
{
    const char *msg = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    if (status == 401)
        fprintf(stderr, "aiproxyctl: the node refused the API key (HTTP 401)%s; pass --key or "
                        "set AIPROXY_API_KEY\n", c->key ? "" : " (no key was given)");
    else if (status == 403)
        fprintf(stderr, "aiproxyctl: %s needs an admin key (HTTP 403): %s\n", path,
                msg ? msg : "forbidden");
    else if (status == 404)
        fprintf(stderr, "aiproxyctl: %s is not served by this node (HTTP 404): %s\n", path,
                msg ? msg : "not found");
    else
        fprintf(stderr, "aiproxyctl: HTTP %d: %s\n", status, msg ? msg : "request refused");
}

/* GETs path from the node and parses JSON; prints why on failure. */
static json_t *get_json(const struct ctl *c, const char *path, int *status)
{
    char *url = xasprintf("%s%s", c->url, path);
    char *body = NULL;
    size_t len = 0;
    *status = probe_get(url, c->key, CTL_TIMEOUT_MS, CTL_MAX_BODY, &body, &len);
    if (*status < 0) {
        fprintf(stderr, "aiproxyctl: cannot reach %s (is aiproxyd running there?)\n", c->url);
        free(url);
        return NULL;
    }
    free(url);
    json_error_t err;
    json_t *doc = json_loadb(body, len, 0, &err);
    free(body);
    if (!doc) {
        fprintf(stderr, "aiproxyctl: %s answered HTTP %d with a body that is not JSON\n", path,
                *status);
        return NULL;
    }
    if (*status == 401 || *status == 403) {
        explain_status(c, *status, path, doc);
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static double usd(json_t *v);

/* Sends method + path with an optional JSON body; parses the JSON answer.
 * Prints the node's error message on a non-2xx status and returns NULL. */
static json_t *call_json(const struct ctl *c, const char *method, const char *path, json_t *body,
                         int *status)
{
    char *url = xasprintf("%s%s", c->url, path);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    char *resp = NULL;
    size_t len = 0;
    *status = probe_request(method, url, c->key, text, text ? strlen(text) : 0, CTL_TIMEOUT_MS,
                            CTL_MAX_BODY, &resp, &len);
    free(url);
    free(text);
    if (*status < 0) {
        fprintf(stderr, "aiproxyctl: cannot reach %s (is aiproxyd running there?)\n", c->url);
        return NULL;
    }
    json_error_t err;
    json_t *doc = json_loadb(resp, len, 0, &err);
    free(resp);
    if (!doc) {
        fprintf(stderr, "aiproxyctl: %s answered HTTP %d with a body that is not JSON\n", path,
                *status);
        return NULL;
    }
    if (*status < 200 || *status >= 300) {
        explain_status(c, *status, path, doc);
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static void print_json(json_t *doc)
{
    json_dumpf(doc, stdout, JSON_INDENT(2));
    putchar('\n');
}

static const char *str_or(json_t *v, const char *dflt)
{
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static int cmd_keys_list(const struct ctl *c)
{
    int status;
    json_t *doc = call_json(c, "GET", "/aiproxy/admin/keys", NULL, &status);
    if (!doc) return 1;
    if (c->json) {
        print_json(doc);
        json_decref(doc);
        return 0;
    }
    printf("%-22s %-20s %-8s %-6s %-12s %-10s %s\n", "ID", "NAME", "SOURCE", "ROLE", "TENANT",
           "STATE", "MODELS");
    json_t *data = json_object_get(doc, "data");
    for (size_t i = 0; i < json_array_size(data); i++) {
        json_t *k = json_array_get(data, i);
        json_t *ms = json_object_get(k, "models");
        char models[256] = "";
        size_t off = 0;
        for (size_t j = 0; j < json_array_size(ms) && off < sizeof models; j++)
            off += (size_t)snprintf(models + off, sizeof models - off, "%s%s", j ? "," : "",
                                    str_or(json_array_get(ms, j), ""));
        printf("%-22s %-20s %-8s %-6s %-12s %-10s %s\n", str_or(json_object_get(k, "id"), ""),
               str_or(json_object_get(k, "name"), ""), str_or(json_object_get(k, "source"), ""),
               str_or(json_object_get(k, "role"), ""), str_or(json_object_get(k, "tenant"), "-"),
               json_is_true(json_object_get(k, "revoked")) ? "revoked" : "active",
               models[0] ? models : "*");
    }
    json_decref(doc);
    return 0;
}

static int cmd_keys_create(const struct ctl *c, int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "aiproxyctl: keys create needs a NAME\n");
        return 2;
    }
    json_t *body = json_object();
    json_object_set_new(body, "name", json_string(argv[0]));
    json_t *budget = json_object();
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "aiproxyctl: %s needs a value\n", opt);
            json_decref(body);
            json_decref(budget);
            return 2;
        }
        const char *val = argv[++i];
        char *end = NULL;
        if (strcmp(opt, "--tenant") == 0) json_object_set_new(body, "tenant", json_string(val));
        else if (strcmp(opt, "--role") == 0) json_object_set_new(body, "role", json_string(val));
        else if (strcmp(opt, "--daily-limit") == 0) json_object_set_new(budget, "daily_limit", json_string(val));
        else if (strcmp(opt, "--monthly-limit") == 0) json_object_set_new(budget, "monthly_limit", json_string(val));
        else if (strcmp(opt, "--models") == 0) {
            json_t *ms = json_array();
            char *copy = xstrdup(val), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                json_array_append_new(ms, json_string(t));
            free(copy);
            json_object_set_new(body, "models", ms);
        } else if (strcmp(opt, "--rate-limit") == 0 || strcmp(opt, "--expires-in") == 0 ||
                   strcmp(opt, "--requests-per-minute") == 0 ||
                   strcmp(opt, "--tokens-per-minute") == 0) {
            long long n = strtoll(val, &end, 10);
            if (!*val || *end || n < 0) {
                fprintf(stderr, "aiproxyctl: %s: expected a non-negative integer\n", opt);
                json_decref(body);
                json_decref(budget);
                return 2;
            }
            const char *field = strcmp(opt, "--rate-limit") == 0 ? "rate_limit"
                                : strcmp(opt, "--expires-in") == 0 ? "expires_in"
                                : strcmp(opt, "--requests-per-minute") == 0 ? "requests_per_minute"
                                                                          : "tokens_per_minute";
            json_object_set_new(body, field, json_integer(n));
        } else {
            fprintf(stderr, "aiproxyctl: keys create: unknown option %s\n", opt);
            json_decref(body);
            json_decref(budget);
            return 2;
        }
    }
    if (json_object_size(budget)) json_object_set(body, "budget", budget);
    json_decref(budget);
    int status;
    json_t *doc = call_json(c, "POST", "/aiproxy/admin/keys", body, &status);
    json_decref(body);
    if (!doc) return 1;
    if (c->json) {
        print_json(doc);
    } else {
        printf("created key %s (%s)\n", str_or(json_object_get(doc, "id"), ""),
               str_or(json_object_get(doc, "name"), ""));
        printf("key: %s\n", str_or(json_object_get(doc, "key"), ""));
        printf("Store it now: it is not shown again.\n");
    }
    json_decref(doc);
    return 0;
}

static int cmd_keys_revoke(const struct ctl *c, const char *id)
{
    for (const char *s = id; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-')) {
            fprintf(stderr, "aiproxyctl: keys revoke: '%s' is not a key id\n", id);
            return 2;
        }
    char *path = xasprintf("/aiproxy/admin/keys/%s", id);
    int status;
    json_t *doc = call_json(c, "DELETE", path, NULL, &status);
    free(path);
    if (!doc) return 1;
    if (c->json) print_json(doc);
    else printf("revoked key %s\n", id);
    json_decref(doc);
    return 0;
}

/* [#######+++.......]  41.2% used: '#' spent, '+' reserved. */
static void print_bar(double spent, double reserved, double limit)
{
    enum { WIDTH = 40 };
    double f = spent / limit, r = (spent + reserved) / limit;
    int a = (int)(f * WIDTH + 0.5), b = (int)(r * WIDTH + 0.5);
    if (a > WIDTH) a = WIDTH;
    if (b > WIDTH) b = WIDTH;
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < a ? '#' : i < b ? '+' : '.';
    bar[WIDTH] = '\0';
    printf("       [%s] %5.1f%% used%s\n", bar, f * 100.0, f >= 1.0 ? "  LIMIT REACHED" : f >= 0.8 ? "  (over 80%)" : "");
}

/* aiproxyctl budget --by node: one row per node, then the total. */
static int cmd_budget_by_node(const struct ctl *c)
{
    int status;
    json_t *doc = call_json(c, "GET", "/v1/budget?by=node", NULL, &status);
    if (!doc) return 1;
    if (c->json) {
        print_json(doc);
        json_decref(doc);
        return 0;
    }
    printf("spend by node (ledger: %s; today %s, month %s, UTC)\n",
           str_or(json_object_get(doc, "source"), "?"),
           str_or(json_object_get(json_object_get(doc, "today"), "period"), ""),
           str_or(json_object_get(json_object_get(doc, "month"), "period"), ""));
    printf("%-28s %14s %14s %10s\n", "NODE", "TODAY USD", "MONTH USD", "REQUESTS");
    json_t *l = json_object_get(doc, "by_node");
    for (size_t j = 0; j < json_array_size(l); j++) {
        json_t *e = json_array_get(l, j);
        const char *n = str_or(json_object_get(e, "node"), "");
        printf("%-28s %14.6f %14.6f %10lld\n", *n ? n : "(unnamed)",
               usd(json_object_get(e, "today")), usd(json_object_get(e, "month")),
               (long long)json_integer_value(json_object_get(e, "requests_month")));
    }
    printf("%-28s %14.6f %14.6f\n", "total",
           usd(json_object_get(json_object_get(doc, "today"), "spent")),
           usd(json_object_get(json_object_get(doc, "month"), "spent")));
    json_decref(doc);
    return 0;
}

static int cmd_budget(const struct ctl *c, int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[0], "--by") == 0 && strcmp(argv[1], "node") == 0)
        return cmd_budget_by_node(c);
    if (argc == 1 && strcmp(argv[0], "--by=node") == 0) return cmd_budget_by_node(c);
    if (argc != 0) {
        fprintf(stderr, "aiproxyctl: budget: expected no argument or --by node\n");
        return 2;
    }
    int status;
    json_t *doc = call_json(c, "GET", "/v1/budget", NULL, &status);
    if (!doc) return 1;
    if (c->json) {
        print_json(doc);
        json_decref(doc);
        return 0;
    }
    const char *labels[2] = {"today", "month"};
    for (int i = 0; i < 2; i++) {
        json_t *w = json_object_get(doc, labels[i]);
        json_t *lim = json_object_get(w, "limit");
        printf("%-6s %-10s spent $%.6f  reserved $%.6f  limit %s%.2f\n", labels[i],
               str_or(json_object_get(w, "period"), ""), usd(json_object_get(w, "spent")),
               usd(json_object_get(w, "reserved")), json_is_null(lim) ? "none " : "$",
               json_is_null(lim) ? 0.0 : usd(lim));
        if (json_is_number(lim) && usd(lim) > 0)
            print_bar(usd(json_object_get(w, "spent")), usd(json_object_get(w, "reserved")), usd(lim));
    }
    const char *lists[4] = {"by_provider", "by_model", "by_key", "by_tenant"};
    for (int i = 0; i < 4; i++) {
        json_t *l = json_object_get(doc, lists[i]);
        if (!json_array_size(l)) continue;
        printf("\n%-28s %14s %14s\n", lists[i] + 3, "TODAY USD", "MONTH USD");
        for (size_t j = 0; j < json_array_size(l); j++) {
            json_t *e = json_array_get(l, j);
            const char *n = str_or(json_object_get(e, "name"), str_or(json_object_get(e, "id"), ""));
            printf("%-28s %14.6f %14.6f\n", n, usd(json_object_get(e, "today")),
                   usd(json_object_get(e, "month")));
        }
    }
    json_decref(doc);
    return 0;
}

static double usd(json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : 0.0; /* display only */
}

static int cmd_models(const struct ctl *c)
{
    int status;
    json_t *doc = get_json(c, "/v1/models", &status);
    if (!doc) return 1;
    if (c->json) {
        json_dumpf(doc, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(doc);
        return 0;
    }
    printf("%-32s %-16s %-10s %s\n", "MODEL", "PROVIDER", "AVAILABLE", "USD/1K IN");
    json_t *data = json_object_get(doc, "data");
    for (size_t i = 0; i < json_array_size(data); i++) {
        json_t *m = json_array_get(data, i);
        json_t *ps = json_object_get(m, "providers");
        for (size_t j = 0; j < json_array_size(ps); j++) {
            json_t *p = json_array_get(ps, j);
            printf("%-32s %-16s %-10s %.6f\n", j ? "" : json_string_value(json_object_get(m, "id")),
                   json_string_value(json_object_get(p, "name")),
                   json_is_true(json_object_get(p, "available")) ? "yes" : "no",
                   usd(json_object_get(p, "cost_per_1k_tokens")));
        }
    }
    json_decref(doc);
    return 0;
}

static const char *num_or_dash(json_t *v, const char *suffix, char *buf, size_t cap)
{
    if (!json_is_number(v)) return "-";
    snprintf(buf, cap, "%.0f%s", json_number_value(v), suffix);
    return buf;
}

static int cmd_status(const struct ctl *c)
{
    int status;
    json_t *doc = get_json(c, "/aiproxy/status", &status);
    if (!doc) return 1;
    if (status != 200) {
        explain_status(c, status, "/aiproxy/status", doc);
        json_decref(doc);
        return 1;
    }
    if (c->json) {
        print_json(doc);
        json_decref(doc);
        return 0;
    }
    json_t *node = json_object_get(doc, "node");
    long long up = json_integer_value(json_object_get(node, "uptime_seconds"));
    printf("node      %s (aiproxyd %s) at %s\n", str_or(json_object_get(node, "id"), "?"),
           str_or(json_object_get(node, "version"), "?"), c->url);
    printf("state     %s, up %lldd %02lldh %02lldm %02llds, config %s (generation %lld)\n",
           json_is_true(json_object_get(node, "ready")) ? "ready" : "draining", up / 86400,
           up / 3600 % 24, up / 60 % 60, up % 60, str_or(json_object_get(node, "config_source"), "?"),
           (long long)json_integer_value(json_object_get(node, "config_generation")));
    json_t *rq = json_object_get(doc, "requests");
    printf("requests  %lld total, %lld errors, %lld in flight, %lld streams open\n",
           (long long)json_integer_value(json_object_get(rq, "total")),
           (long long)json_integer_value(json_object_get(rq, "errors")),
           (long long)json_integer_value(json_object_get(rq, "in_flight")),
           (long long)json_integer_value(json_object_get(rq, "open_streams")));
    json_t *cache = json_object_get(doc, "cache");
    if (json_is_true(json_object_get(cache, "enabled")))
        printf("cache     %.1f%% hit rate, %lld in memory, saved $%.6f (aiproxyctl cache stats)\n",
               json_number_value(json_object_get(cache, "hit_rate")) * 100.0,
               (long long)json_integer_value(json_object_get(cache, "entries")),
               usd(json_object_get(cache, "saved_usd")));
    printf("\n%-20s %-10s %-9s %-11s %-10s %9s %9s %9s %9s  %s\n", "PROVIDER", "TYPE", "AVAILABLE",
           "HEALTH", "CIRCUIT", "LATENCY", "TTFT", "IN-FLIGHT", "FAILURES", "REASON");
    json_t *ps = json_object_get(doc, "providers");
    for (size_t i = 0; i < json_array_size(ps); i++) {
        json_t *p = json_array_get(ps, i);
        char lat[32], ttft[32], fl[48];
        json_t *maxc = json_object_get(p, "max_concurrency");
        if (json_is_integer(maxc))
            snprintf(fl, sizeof fl, "%lld/%lld", (long long)json_integer_value(json_object_get(p, "in_flight")),
                     (long long)json_integer_value(maxc));
        else
            snprintf(fl, sizeof fl, "%lld", (long long)json_integer_value(json_object_get(p, "in_flight")));
        printf("%-20s %-10s %-9s %-11s %-10s %9s %9s %9s %9lld  %s\n",
               str_or(json_object_get(p, "name"), "?"), str_or(json_object_get(p, "type"), "?"),
               json_is_true(json_object_get(p, "available")) ? "yes" : "no",
               str_or(json_object_get(p, "health"), "?"), str_or(json_object_get(p, "circuit"), "?"),
               num_or_dash(json_object_get(p, "avg_latency_ms"), " ms", lat, sizeof lat),
               num_or_dash(json_object_get(p, "avg_ttft_ms"), " ms", ttft, sizeof ttft), fl,
               (long long)json_integer_value(json_object_get(p, "failures")),
               str_or(json_object_get(p, "reason"), ""));
    }
    json_decref(doc);
    return 0;
}

static int cmd_mesh(const struct ctl *c)
{
    int status;
    json_t *doc = get_json(c, "/aiproxy/mesh/status", &status);
    if (!doc) return 1;
    if (status != 200) {
        explain_status(c, status, "/aiproxy/mesh/status", doc);
        json_decref(doc);
        return 1;
    }
    if (c->json) {
        print_json(doc);
        json_decref(doc);
        return 0;
    }
    json_t *node = json_object_get(doc, "node");
    json_t *mesh = json_object_get(doc, "mesh");
    printf("node %s (type %s, region %s), up %lld s, load %.0f%%, %lld models, spent today $%.6f\n",
           str_or(json_object_get(node, "id"), "?"), str_or(json_object_get(node, "type"), "-"),
           str_or(json_object_get(node, "region"), "-"),
           (long long)json_integer_value(json_object_get(node, "uptime_seconds")),
           json_number_value(json_object_get(node, "load")) * 100,
           (long long)json_integer_value(json_object_get(node, "models_available")),
           json_number_value(json_object_get(node, "spend_today")));
    if (!json_is_true(json_object_get(mesh, "enabled"))) {
        printf("mesh: off (node.mesh.enabled)\n");
    } else {
        printf("mesh: on, listening on %s, max_hops %lld, heartbeat every %lld ms, peer timeout "
               "%lld ms%s%s\n",
               str_or(json_object_get(node, "mesh_addr"), "(no listener)"),
               (long long)json_integer_value(json_object_get(mesh, "max_hops")),
               (long long)json_integer_value(json_object_get(mesh, "heartbeat_interval_ms")),
               (long long)json_integer_value(json_object_get(mesh, "peer_timeout_ms")),
               json_is_true(json_object_get(mesh, "authenticated")) ? ", secret" : "",
               json_is_true(json_object_get(mesh, "tls")) ? ", mutual TLS" : "");
    }
    json_t *peers = json_object_get(doc, "peers");
    if (!json_array_size(peers)) {
        printf("\nno peers\n");
    } else {
        printf("\n%-20s %-22s %-10s %8s %6s %6s %12s  %s\n", "PEER", "ADDRESS", "STATUS", "LATENCY",
               "LOAD", "MODELS", "SPEND TODAY", "MODELS SERVED");
        for (size_t i = 0; i < json_array_size(peers); i++) {
            json_t *p = json_array_get(peers, i);
            char lat[32], load[16], spend[32], models[256];
            json_t *l = json_object_get(p, "latency_ms");
            if (json_is_integer(l)) snprintf(lat, sizeof lat, "%lld ms", (long long)json_integer_value(l));
            else snprintf(lat, sizeof lat, "-");
            json_t *ld = json_object_get(p, "load");
            if (json_is_number(ld)) snprintf(load, sizeof load, "%.0f%%", json_number_value(ld) * 100);
            else snprintf(load, sizeof load, "-");
            json_t *sp = json_object_get(p, "spend_today");
            if (json_is_number(sp)) snprintf(spend, sizeof spend, "$%.6f", json_number_value(sp));
            else snprintf(spend, sizeof spend, "-");
            size_t off = 0;
            models[0] = '\0';
            json_t *ms = json_object_get(p, "models");
            for (size_t j = 0; j < json_array_size(ms) && off + 1 < sizeof models; j++) {
                int n = snprintf(models + off, sizeof models - off, "%s%s", j ? "," : "",
                                 str_or(json_array_get(ms, j), ""));
                if (n < 0) break;
                off += (size_t)n;
            }
            if (off >= sizeof models) snprintf(models + sizeof models - 4, 4, "...");
            printf("%-20s %-22s %-10s %8s %6s %6lld %12s  %s\n", str_or(json_object_get(p, "id"), "-"),
                   str_or(json_object_get(p, "addr"), "-"), str_or(json_object_get(p, "status"), "?"),
                   lat, load, (long long)json_integer_value(json_object_get(p, "models_available")),
                   spend, models);
            if (json_is_string(json_object_get(p, "last_error")) &&
                strcmp(str_or(json_object_get(p, "status"), ""), "healthy") != 0)
                printf("%-20s last error: %s\n", "", str_or(json_object_get(p, "last_error"), ""));
        }
    }
    printf("\n%-24s %-12s %s\n", "PROVIDER", "STATUS", "MODELS");
    const char *name;
    json_t *p;
    json_object_foreach(json_object_get(doc, "providers"), name, p) {
        printf("%-24s %-12s %lld\n", name, str_or(json_object_get(p, "status"), "?"),
               (long long)json_integer_value(json_object_get(p, "models")));
    }
    json_decref(doc);
    return 0;
}

/* ---- cache ---- */

/* "12.3 KiB" */
static void fmt_bytes(double b, char *buf, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    if (u == 0) snprintf(buf, cap, "%.0f B", b);
    else snprintf(buf, cap, "%.1f %s", b, units[u]);
}

static long long int_of(json_t *o, const char *name)
{
    return (long long)json_integer_value(json_object_get(o, name));
}

static int cmd_cache_stats(const struct ctl *c)
{
    int status;
    json_t *doc = call_json(c, "GET", "/aiproxy/status", NULL, &status);
    if (!doc) return 1;
    json_t *cache = json_object_get(doc, "cache");
    if (!json_is_object(cache)) {
        fprintf(stderr, "aiproxyctl: %s reports no cache (an aiproxyd without one?)\n", c->url);
        json_decref(doc);
        return 1;
    }
    if (c->json) {
        print_json(cache);
        json_decref(doc);
        return 0;
    }
    if (!json_is_true(json_object_get(cache, "enabled"))) {
        printf("cache       disabled on this node (cache.enabled in its config)\n");
        json_decref(doc);
        return 0;
    }
    printf("cache       enabled (mode %s, backend %s, ttl %lld s)\n",
           str_or(json_object_get(cache, "mode"), "?"), str_or(json_object_get(cache, "backend"), "?"),
           int_of(cache, "ttl_s"));
    json_t *sem = json_object_get(cache, "semantic");
    if (json_is_true(json_object_get(sem, "enabled")))
        printf("semantic    enabled (model %s, threshold %.3g, %lld vectors)\n",
               str_or(json_object_get(sem, "embedding_model"), "?"),
               json_number_value(json_object_get(sem, "threshold")), int_of(sem, "entries"));
    else
        printf("semantic    disabled\n");
    printf("hits        %lld exact, %lld semantic\n", int_of(cache, "hits"),
           int_of(cache, "semantic_hits"));
    printf("misses      %lld\n", int_of(cache, "misses"));
    printf("hit rate    %.1f%%\n", json_number_value(json_object_get(cache, "hit_rate")) * 100.0);
    printf("stores      %lld (%lld not stored: too big or unreadable)\n", int_of(cache, "stores"),
           int_of(cache, "not_stored"));
    char used[32], cap[32];
    fmt_bytes((double)int_of(cache, "bytes"), used, sizeof used);
    fmt_bytes((double)int_of(cache, "max_bytes"), cap, sizeof cap);
    bool redis = strcmp(str_or(json_object_get(cache, "backend"), ""), "redis") == 0;
    printf("entries     %lld%s\n", int_of(cache, "entries"),
           redis ? " (this node's in-memory front; the shared entries are on Redis)" : "");
    printf("memory      %s of %s\n", used, cap);
    printf("evictions   %lld (and %lld expired)\n", int_of(cache, "evictions"),
           int_of(cache, "expired"));
    printf("saved       $%.6f\n", usd(json_object_get(cache, "saved_usd")));
    printf("errors      %lld embedding, %lld backend\n", int_of(cache, "embed_errors"),
           int_of(cache, "backend_errors"));
    json_decref(doc);
    return 0;
}

/* Appends "&name=value" (value percent-encoded) to the query in q[cap]. */
static void query_add(char *q, size_t cap, const char *name, const char *value)
{
    size_t n = strlen(q);
    n += (size_t)snprintf(q + n, n < cap ? cap - n : 0, "%s%s=", n ? "&" : "", name);
    for (const unsigned char *v = (const unsigned char *)value; *v && n + 4 < cap; v++) {
        bool plain = (*v >= 'a' && *v <= 'z') || (*v >= 'A' && *v <= 'Z') ||
                     (*v >= '0' && *v <= '9') || *v == '-' || *v == '_' || *v == '.' || *v == '~';
        if (plain) q[n++] = (char)*v;
        else n += (size_t)snprintf(q + n, cap - n, "%%%02X", *v);
    }
    q[n < cap ? n : cap - 1] = '\0';
}

static int cmd_cache_clear(const struct ctl *c, int argc, char **argv)
{
    char query[4096] = ""; /* room for two values of 512 bytes, all escaped */
    const char *scope_opt = NULL;
    bool model = false;
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i];
        bool known = strcmp(opt, "--model") == 0 || strcmp(opt, "--tenant") == 0 ||
                     strcmp(opt, "--key-id") == 0 || strcmp(opt, "--scope") == 0;
        if (!known) {
            fprintf(stderr, "aiproxyctl: cache clear: unknown argument %s (see: aiproxyctl cache "
                            "--help)\n", opt);
            return 2;
        }
        if (i + 1 >= argc || !*argv[i + 1] || strlen(argv[i + 1]) > 512) {
            fprintf(stderr, "aiproxyctl: %s needs a value\n", opt);
            return 2;
        }
        if (strcmp(opt, "--model") == 0) {
            if (model) {
                fprintf(stderr, "aiproxyctl: cache clear: --model is given twice\n");
                return 2;
            }
            model = true;
        } else {
            if (scope_opt) {
                fprintf(stderr, "aiproxyctl: cache clear: give one of %s and %s\n", scope_opt, opt);
                return 2;
            }
            scope_opt = opt;
        }
        query_add(query, sizeof query, strcmp(opt, "--key-id") == 0 ? "key" : opt + 2, argv[++i]);
    }
    char *path = xasprintf("/aiproxy/admin/cache%s%s", query[0] ? "?" : "", query);
    int status;
    json_t *doc = call_json(c, "DELETE", path, NULL, &status);
    free(path);
    if (!doc) return 1;
    if (c->json) {
        print_json(doc);
        json_decref(doc);
        return 0;
    }
    json_t *cl = json_object_get(doc, "cleared");
    json_t *redis = json_object_get(cl, "redis");
    if (!json_is_true(json_object_get(doc, "enabled")))
        printf("the cache is disabled on this node\n");
    long long mem = int_of(cl, "memory");
    printf("cleared %lld %s from this node's memory", mem, mem == 1 ? "entry" : "entries");
    if (json_is_integer(redis)) printf(" and %lld from Redis", (long long)json_integer_value(redis));
    printf(" (model %s, scope %s)\n", str_or(json_object_get(doc, "model"), "any"),
           str_or(json_object_get(doc, "scope"), "any"));
    json_decref(doc);
    return 0;
}

static int cmd_reload(const struct ctl *c)
{
    char *url = xasprintf("%s/aiproxy/admin/reload", c->url);
    char *resp = NULL;
    size_t len = 0;
    int status = probe_request("POST", url, c->key, "{}", 2, RELOAD_TIMEOUT_MS, CTL_MAX_BODY, &resp,
                               &len);
    free(url);
    if (status < 0) {
        fprintf(stderr, "aiproxyctl: cannot reach %s (is aiproxyd running there?)\n", c->url);
        return 1;
    }
    json_error_t err;
    json_t *doc = json_loadb(resp, len, 0, &err);
    free(resp);
    if (!doc) {
        fprintf(stderr, "aiproxyctl: /aiproxy/admin/reload answered HTTP %d with a body that is "
                        "not JSON\n", status);
        return 1;
    }
    int rc = 0;
    if (c->json) {
        print_json(doc);
        rc = status == 200 ? 0 : status == 422 ? 2 : 1;
    } else if (status == 200) {
        printf("reloaded %s (config generation %lld)\n", str_or(json_object_get(doc, "source"), "?"),
               (long long)json_integer_value(json_object_get(doc, "generation")));
    } else if (status == 422) {
        fprintf(stderr, "aiproxyctl: the node rejected the new config; it keeps the running one:\n");
        json_t *errors = json_object_get(doc, "errors");
        for (size_t i = 0; i < json_array_size(errors); i++)
            fprintf(stderr, "  %s\n", str_or(json_array_get(errors, i), ""));
        rc = 2;
    } else {
        explain_status(c, status, "/aiproxy/admin/reload", doc);
        rc = 1;
    }
    json_decref(doc);
    return rc;
}

static int cmd_config_check(const char *path)
{
    struct diag_list diags = {0};
    struct config *cfg = config_load_file(path, &diags);
    diag_list_print(&diags, stderr);
    diag_list_cleanup(&diags);
    if (!cfg) {
        fprintf(stderr, "aiproxyctl: %s is invalid\n", path);
        return 2;
    }
    config_print_summary(cfg, stdout);
    config_unref(cfg);
    return 0;
}

int main(int argc, char **argv)
{
    struct ctl c = {.url = "http://127.0.0.1:8080", .key = getenv("AIPROXY_API_KEY")};
    /* Global options may come anywhere; everything else is the command and
     * its arguments, in order. */
    char **args = xcalloc((size_t)argc + 1, sizeof *args);
    int n = 0;
    bool want_help = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) c.json = true;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) want_help = true;
        else if (strcmp(a, "--version") == 0 || strcmp(a, "-v") == 0) {
            printf("aiproxyctl %s\n", CTL_VERSION);
            free(args);
            return 0;
        } else if (strcmp(a, "--url") == 0 || strcmp(a, "--key") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "aiproxyctl: %s needs a value\n", a);
                free(args);
                return 2;
            }
            if (a[2] == 'u') c.url = argv[++i];
            else c.key = argv[++i];
        } else if (strncmp(a, "--url=", 6) == 0) c.url = a + 6;
        else if (strncmp(a, "--key=", 6) == 0) c.key = a + 6;
        else args[n++] = argv[i];
    }
    if (n == 0) {
        usage(want_help ? stdout : stderr);
        free(args);
        return want_help ? 0 : 2;
    }
    const char *cmd = args[0];
    if (strcmp(cmd, "help") == 0) {
        int rc = n > 1 ? help_for(args[1], stdout) : (usage(stdout), 0);
        free(args);
        return rc;
    }
    if (want_help) {
        int rc = help_for(cmd, stdout);
        free(args);
        return rc;
    }
    if (c.key && !*c.key) c.key = NULL; /* an empty AIPROXY_API_KEY is no key */
    if (strncmp(c.url, "http://", 7) != 0) {
        fprintf(stderr, "aiproxyctl: --url %s: expected http://HOST:PORT\n", c.url);
        free(args);
        return 2;
    }
    size_t ul = strlen(c.url);
    char *url = xstrdup(c.url);
    while (ul > 0 && url[ul - 1] == '/') url[--ul] = '\0';
    c.url = url;
    int rc;
    if (strcmp(cmd, "status") == 0 && n == 1) rc = cmd_status(&c);
    else if (strcmp(cmd, "models") == 0 && n == 1) rc = cmd_models(&c);
    else if (strcmp(cmd, "budget") == 0) rc = cmd_budget(&c, n - 1, args + 1);
    else if (strcmp(cmd, "mesh") == 0 && n == 1) rc = cmd_mesh(&c);
    else if (strcmp(cmd, "reload") == 0 && n == 1) rc = cmd_reload(&c);
    else if (strcmp(cmd, "keys") == 0 && n == 2 && strcmp(args[1], "list") == 0)
        rc = cmd_keys_list(&c);
    else if (strcmp(cmd, "keys") == 0 && n >= 2 && strcmp(args[1], "create") == 0)
        rc = cmd_keys_create(&c, n - 2, args + 2);
    else if (strcmp(cmd, "keys") == 0 && n == 3 && strcmp(args[1], "revoke") == 0)
        rc = cmd_keys_revoke(&c, args[2]);
    else if (strcmp(cmd, "cache") == 0 && n == 2 && strcmp(args[1], "stats") == 0)
        rc = cmd_cache_stats(&c);
    else if (strcmp(cmd, "cache") == 0 && n >= 2 && strcmp(args[1], "clear") == 0)
        rc = cmd_cache_clear(&c, n - 2, args + 2);
    else if (strcmp(cmd, "context") == 0 && n >= 2)
        rc = ctl_context_command(c.url, c.key, c.json, n - 1, args + 1);
    else if (strcmp(cmd, "config") == 0 && n == 3 && strcmp(args[1], "check") == 0)
        rc = cmd_config_check(args[2]);
    else {
        bool known = false;
        for (size_t i = 0; i < sizeof command_help / sizeof command_help[0]; i++)
            known = known || strcmp(command_help[i].cmd, cmd) == 0;
        if (known) {
            fprintf(stderr, "aiproxyctl: %s: wrong arguments\n\n", cmd);
            help_for(cmd, stderr);
        } else {
            fprintf(stderr, "aiproxyctl: unknown command '%s'\n\n", cmd);
            usage(stderr);
        }
        rc = 2;
    }
    free(url);
    free(args);
    return rc;
}
