/* aiproxyctl: the management CLI. Talks to a running node over its HTTP
 * API (--url, --key) and prints tables for people or JSON for scripts.
 * This build has: status, models, budget, keys list|create|revoke,
 * config check. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config/config.h"
#include "core/alloc.h"
#include "upstream/probe.h"

#define CTL_VERSION "0.1.0"
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
            "Usage: aiproxyctl [--url URL] [--key KEY] [--json] COMMAND\n"
            "\n"
            "Commands:\n"
            "  status             node health and every provider's availability\n"
            "  models             the models the node serves, with their providers\n"
            "  budget             spend today and this month against the limits\n"
            "  keys list          every API key (admin key needed); secrets are never shown\n"
            "  keys create NAME [--tenant T] [--role admin|user] [--models a,b]\n"
            "                     [--daily-limit USD] [--monthly-limit USD] [--rate-limit N]\n"
            "                     [--expires-in SECONDS]\n"
            "                     create a managed key; the key is printed once\n"
            "  keys revoke ID     revoke a managed key at once\n"
            "  config check FILE  validate a config file locally (exit 0 valid, 2 invalid)\n"
            "\n"
            "Options:\n"
            "  --url URL   the node (default http://127.0.0.1:8080)\n"
            "  --key KEY   API key (default $AIPROXY_API_KEY)\n"
            "  --json      machine-readable output\n"
            "  --version, --help\n"
            "\n"
            "Exit codes: 0 success, 1 runtime failure (node unreachable, refused), 2 bad usage.\n");
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
    if (*status == 401) {
        fprintf(stderr, "aiproxyctl: the node refused the API key (HTTP 401); pass --key or set "
                        "AIPROXY_API_KEY\n");
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
        const char *msg = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
        fprintf(stderr, "aiproxyctl: HTTP %d: %s\n", *status, msg ? msg : "request refused");
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

static int cmd_budget(const struct ctl *c)
{
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

static int cmd_status(const struct ctl *c)
{
    int status;
    json_t *health = get_json(c, "/health", &status);
    if (!health) return 1;
    int ready_status;
    json_t *ready = get_json(c, "/ready", &ready_status);
    json_t *models = get_json(c, "/v1/models", &status);
    if (!models) {
        json_decref(health);
        json_decref(ready);
        return 1;
    }
    /* Providers, from the models list (one row per provider). */
    json_t *providers = json_object();
    json_t *data = json_object_get(models, "data");
    for (size_t i = 0; i < json_array_size(data); i++) {
        json_t *ps = json_object_get(json_array_get(data, i), "providers");
        for (size_t j = 0; j < json_array_size(ps); j++) {
            json_t *p = json_array_get(ps, j);
            const char *name = json_string_value(json_object_get(p, "name"));
            if (!name) continue;
            json_t *row = json_object_get(providers, name);
            if (!row) {
                row = json_object();
                json_object_set(row, "available", json_object_get(p, "available"));
                json_t *reason = json_object_get(p, "reason");
                if (reason) json_object_set(row, "reason", reason);
                json_object_set_new(row, "models", json_integer(0));
                json_object_set_new(providers, name, row);
            }
            json_object_set_new(row, "models",
                                json_integer(json_integer_value(json_object_get(row, "models")) + 1));
        }
    }
    if (c->json) {
        json_t *out = json_object();
        json_object_set_new(out, "url", json_string(c->url));
        json_object_set_new(out, "ready", json_boolean(ready_status == 200));
        json_object_set_new(out, "providers", providers);
        json_dumpf(out, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(out);
    } else {
        printf("node %s: %s\n\n", c->url, ready_status == 200 ? "ready" : "not ready");
        printf("%-20s %-10s %-7s %s\n", "PROVIDER", "AVAILABLE", "MODELS", "REASON");
        const char *name;
        json_t *row;
        json_object_foreach(providers, name, row) {
            printf("%-20s %-10s %-7lld %s\n", name,
                   json_is_true(json_object_get(row, "available")) ? "yes" : "no",
                   (long long)json_integer_value(json_object_get(row, "models")),
                   json_string_value(json_object_get(row, "reason")) ?: "");
        }
        json_decref(providers);
    }
    json_decref(health);
    json_decref(ready);
    json_decref(models);
    return 0;
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
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'}, {"key", required_argument, NULL, 'k'},
        {"json", no_argument, NULL, 'j'},      {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},      {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "+hv", longopts, NULL)) != -1) {
        switch (ch) {
        case 'u': c.url = optarg; break;
        case 'k': c.key = optarg; break;
        case 'j': c.json = true; break;
        case 'v': printf("aiproxyctl %s\n", CTL_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    size_t ul = strlen(c.url);
    char *url = xstrdup(c.url);
    while (ul > 0 && url[ul - 1] == '/') url[--ul] = '\0';
    c.url = url;
    const char *cmd = argv[optind];
    int rc;
    if (strcmp(cmd, "status") == 0) rc = cmd_status(&c);
    else if (strcmp(cmd, "models") == 0) rc = cmd_models(&c);
    else if (strcmp(cmd, "budget") == 0) rc = cmd_budget(&c);
    else if (strcmp(cmd, "keys") == 0 && argc - optind >= 2 && strcmp(argv[optind + 1], "list") == 0)
        rc = cmd_keys_list(&c);
    else if (strcmp(cmd, "keys") == 0 && argc - optind >= 2 && strcmp(argv[optind + 1], "create") == 0)
        rc = cmd_keys_create(&c, argc - optind - 2, argv + optind + 2);
    else if (strcmp(cmd, "keys") == 0 && argc - optind == 3 && strcmp(argv[optind + 1], "revoke") == 0)
        rc = cmd_keys_revoke(&c, argv[optind + 2]);
    else if (strcmp(cmd, "config") == 0 && optind + 2 < argc + 0 + 1 && argc - optind == 3 &&
             strcmp(argv[optind + 1], "check") == 0)
        rc = cmd_config_check(argv[optind + 2]);
    else {
        fprintf(stderr, "aiproxyctl: unknown or incomplete command '%s'\n", cmd);
        usage(stderr);
        rc = 2;
    }
    free(url);
    return rc;
}
