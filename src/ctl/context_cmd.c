/* ctl/context_cmd: the `aiproxyctl context` commands. */
#include "ctl/context_cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/alloc.h"
#include "ctl/context_watch.h"
#include "ctl/http.h"

#define CALL_TIMEOUT_MS 5000
#define DEFAULT_DEBOUNCE_MS 300
#define DEFAULT_MAX_FILE_SIZE (1024 * 1024)
#define DEFAULT_CHECK_INTERVAL_MS 10000
#define PROJECT_MAX 128

const char ctl_context_help[] =
    "Usage: aiproxyctl context watch DIR [--project NAME] [--debounce MS]\n"
    "                  [--max-file-size BYTES] [--check-interval MS] [--json]\n"
    "       aiproxyctl context stats [--json]\n"
    "       aiproxyctl context clear PROJECT [--json]\n\n"
    "The context delta buffer: the node keeps a project's files and gives requests\n"
    "sent with X-Inject-Context: true what changed since they last saw them.\n\n"
    "watch: sends a snapshot of DIR's text files (POST /v1/context/delta, reset),\n"
    "then watches DIR (inotify) and sends each change once no event came for the\n"
    "debounce time (default 300 ms). Leaves out .git, what .gitignore files ignore\n"
    "(DIR need not be a git work tree), binary files (a NUL byte, invalid UTF-8),\n"
    "files over --max-file-size (default 1 MiB; K and M suffixes), symlinks and\n"
    "special files. --project: default \"default\", the project requests get without\n"
    "X-Context-Project. Prints one line per delta; keeps the changes and retries\n"
    "while the node is away (200 ms doubling to 5 s), and sends a new snapshot when\n"
    "the node lost the project (asked every --check-interval, default 10000 ms; 0:\n"
    "never). --json prints each answer as one JSON line. Stops on SIGINT/SIGTERM\n"
    "(exit 0).\n\n"
    "stats: every project of the key's scope (GET /v1/context/stats): files, bytes,\n"
    "pending changes, injections, tokens injected and saved, last update.\n\n"
    "clear: empties and removes PROJECT (DELETE /v1/context/PROJECT); exit 1 when\n"
    "the node has no such project.\n";

static void print_json(json_t *doc)
{
    json_dumpf(doc, stdout, JSON_INDENT(2));
    putchar('\n');
}

static bool project_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PROJECT_MAX) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* Parses a non-negative integer in [0, max], with an optional k/K (KiB) or
 * m/M (MiB) suffix when `sizes`. */
static bool parse_num(const char *s, bool sizes, long long max, long long *out)
{
    char *end = NULL;
    if (!*s || *s == '-') return false;
    long long v = strtoll(s, &end, 10);
    if (end == s) return false;
    long long mult = 1;
    if (sizes && (*end == 'k' || *end == 'K')) mult = 1024, end++;
    else if (sizes && (*end == 'm' || *end == 'M')) mult = 1024 * 1024, end++;
    if (sizes && mult > 1 && (*end == 'i' || *end == 'I')) end++;
    if (sizes && mult > 1 && (*end == 'b' || *end == 'B')) end++;
    if (*end || v < 0 || v > max / mult) return false;
    *out = v * mult;
    return true;
}

static int usage_error(const char *fmt, const char *arg)
{
    fputs("aiproxyctl: context ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (see: aiproxyctl context --help)\n", stderr);
    return 2;
}

static int cmd_watch(const char *url, const char *key, bool json, int argc, char **argv)
{
    struct context_watch_opts o = {
        .url = url,
        .key = key,
        .project = "default",
        .debounce_ms = DEFAULT_DEBOUNCE_MS,
        .max_file_size = DEFAULT_MAX_FILE_SIZE,
        .check_interval_ms = DEFAULT_CHECK_INTERVAL_MS,
        .json = json,
    };
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            if (o.dir) return usage_error("watch: one DIR only (%s)", a);
            o.dir = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        const char *val = eq ? eq + 1 : i + 1 < argc ? argv[i + 1] : NULL;
        bool project = strncmp(a, "--project", nl) == 0 && nl == 9;
        bool debounce = strncmp(a, "--debounce", nl) == 0 && nl == 10;
        bool max_size = strncmp(a, "--max-file-size", nl) == 0 && nl == 15;
        bool check = strncmp(a, "--check-interval", nl) == 0 && nl == 16;
        if (!project && !debounce && !max_size && !check)
            return usage_error("watch: unknown option %s", a);
        if (!val) return usage_error("watch: %s needs a value", a);
        if (!eq) i++;
        long long v = 0;
        if (project) {
            if (!project_ok(val))
                return usage_error("watch: --project %s: expected 1 to 128 letters, digits, "
                                   "'.', '_' or '-'", val);
            o.project = val;
        } else if (debounce) {
            if (!parse_num(val, false, 600000, &v))
                return usage_error("watch: --debounce %s: expected milliseconds (0 to 600000)",
                                   val);
            o.debounce_ms = (int)v;
        } else if (check) {
            if (!parse_num(val, false, 86400000, &v))
                return usage_error("watch: --check-interval %s: expected milliseconds (0: never)",
                                   val);
            o.check_interval_ms = (int)v;
        } else {
            if (!parse_num(val, true, 1024LL * 1024 * 1024, &v) || v == 0)
                return usage_error("watch: --max-file-size %s: expected bytes (1 to 1G; K and M "
                                   "suffixes)", val);
            o.max_file_size = v;
        }
    }
    if (!o.dir) return usage_error("watch: %s", "needs a DIR");
    return context_watch_run(&o);
}

static int cmd_stats(const char *url, const char *key, bool json)
{
    json_t *doc = NULL;
    const char *path = "/v1/context/stats";
    int status = ctl_http_call(url, key, "GET", path, NULL, 0, CALL_TIMEOUT_MS, &doc);
    json_t *projects = json_object_get(doc, "projects");
    if (status == 200 && !json_is_array(projects)) {
        fprintf(stderr, "aiproxyctl: %s answered without a project list (an aiproxyd without the "
                        "context buffer?)\n", path);
        json_decref(doc);
        return 1;
    }
    if (status != 200) {
        ctl_http_explain(url, key != NULL, path, status, doc);
        json_decref(doc);
        return 1;
    }
    if (json) {
        print_json(doc);
        json_decref(doc);
        return 0;
    }
    if (!json_array_size(projects)) {
        printf("no context projects (start one with: aiproxyctl context watch DIR)\n");
        json_decref(doc);
        return 0;
    }
    printf("%-24s %7s %11s %8s %10s %16s %13s  %s\n", "PROJECT", "FILES", "BYTES", "PENDING",
           "INJECTIONS", "TOKENS INJECTED", "TOKENS SAVED", "UPDATED");
    for (size_t i = 0; i < json_array_size(projects); i++) {
        json_t *p = json_array_get(projects, i);
        const char *name = json_string_value(json_object_get(p, "project"));
        char updated[32] = "-";
        json_t *u = json_object_get(p, "updated_at");
        if (json_is_integer(u) && json_integer_value(u) > 0) {
            time_t t = (time_t)json_integer_value(u);
            struct tm tm;
            if (gmtime_r(&t, &tm)) strftime(updated, sizeof updated, "%Y-%m-%d %H:%M:%S UTC", &tm);
        }
        printf("%-24s %7lld %11lld %8lld %10lld %16lld %13lld  %s\n", name ? name : "?",
               (long long)json_integer_value(json_object_get(p, "files")),
               (long long)json_integer_value(json_object_get(p, "bytes")),
               (long long)json_integer_value(json_object_get(p, "pending")),
               (long long)json_integer_value(json_object_get(p, "injections")),
               (long long)json_integer_value(json_object_get(p, "tokens_injected")),
               (long long)json_integer_value(json_object_get(p, "tokens_saved")), updated);
    }
    json_decref(doc);
    return 0;
}

static int cmd_clear(const char *url, const char *key, bool json, const char *project)
{
    if (!project_ok(project))
        return usage_error("clear: %s: a project name is 1 to 128 letters, digits, '.', '_' or "
                           "'-'", project);
    char *path = xasprintf("/v1/context/%s", project);
    json_t *doc = NULL;
    int status = ctl_http_call(url, key, "DELETE", path, NULL, 0, CALL_TIMEOUT_MS, &doc);
    int rc = 0;
    if (status == 200 && doc) {
        if (json) print_json(doc);
        else printf("cleared context project %s\n", project);
    } else if (status == 404 && doc && json_object_get(doc, "error")) {
        fprintf(stderr, "aiproxyctl: %s\n",
                ctl_http_error_message(doc, "no such context project"));
        rc = 1;
    } else {
        ctl_http_explain(url, key != NULL, path, status, doc);
        rc = 1;
    }
    json_decref(doc);
    free(path);
    return rc;
}

int ctl_context_command(const char *url, const char *key, bool json, int argc, char **argv)
{
    const char *sub = argc > 0 ? argv[0] : "";
    if (strcmp(sub, "watch") == 0) return cmd_watch(url, key, json, argc - 1, argv + 1);
    if (strcmp(sub, "stats") == 0 && argc == 1) return cmd_stats(url, key, json);
    if (strcmp(sub, "clear") == 0 && argc == 2) return cmd_clear(url, key, json, argv[1]);
    fprintf(stderr, "aiproxyctl: context: wrong arguments\n\n");
    fputs(ctl_context_help, stderr);
    return 2;
}
