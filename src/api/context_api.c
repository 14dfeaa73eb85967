/* context_api: the context delta buffer's endpoints (SPEC section 8) and
 * its process-wide store:
 *
 *   POST   /v1/context/delta      apply a watcher's changed files
 *   GET    /v1/context/stats      the caller's projects
 *   DELETE /v1/context/{project}  forget one
 *
 * Everything is per caller scope (admission_scope): a project of one key
 * or tenant is invisible to every other. The store is kept in the ledger's
 * local SQLite file (context/persist.h), so a restart keeps the buffers;
 * what requests change (seen marks, injection counts) is written by a
 * flusher thread every second (ctx_store_flush), and at stop. */
#include "api/context_api.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "api/admission.h"
#include "config/config.h"
#include "context/buffer.h"
#include "context/delta.h"
#include "context/persist.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/log.h"
#include "http/server.h"

static struct ctx_store *store;
static struct ctx_persist *persist;

/* ---- the flusher: ctx_store_flush every second ---- */

#define FLUSH_EVERY_S 1

static struct {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool running, stop;
} flusher = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static void *flusher_main(void *arg)
{
    pthread_mutex_lock(&flusher.lock);
    while (!flusher.stop) {
        struct timespec at;
        clock_gettime(CLOCK_REALTIME, &at);
        at.tv_sec += FLUSH_EVERY_S;
        while (!flusher.stop && pthread_cond_timedwait(&flusher.wake, &flusher.lock, &at) == 0) {
        }
        if (flusher.stop) break;
        pthread_mutex_unlock(&flusher.lock);
        ctx_store_flush(store);
        pthread_mutex_lock(&flusher.lock);
    }
    pthread_mutex_unlock(&flusher.lock);
    return NULL;
}

int context_start(const struct config *cfg, char *err, size_t errcap)
{
    store = ctx_store_new(); /* libgit2 is loaded by the first diff (context/git_dl.h) */
    if (!cfg->budget.cost_db_path) return 0;
    persist = ctx_persist_open(cfg->budget.cost_db_path, err, errcap);
    if (!persist) return -1;
    if (ctx_persist_load(persist, store) != 0) {
        snprintf(err, errcap, "the context buffers in %s could not be read",
                 cfg->budget.cost_db_path);
        return -1;
    }
    ctx_store_set_persist(store, persist);
    flusher.stop = false;
    if (pthread_create(&flusher.thread, NULL, flusher_main, NULL) == 0)
        flusher.running = true;
    else /* then a project's next write, or the stop, writes them */
        log_event(LOG_WARN, "context_no_flusher",
                  "context buffer: no flusher thread; seen marks are written with deltas");
    struct ctx_totals t;
    ctx_store_totals(store, &t);
    if (t.projects)
        log_event(LOG_INFO, "context_loaded", "context buffer: %lld project(s), %lld file(s) restored",
                  (long long)t.projects, (long long)t.files);
    return 0;
}

void context_stop(void)
{
    if (flusher.running) {
        pthread_mutex_lock(&flusher.lock);
        flusher.stop = true;
        pthread_cond_signal(&flusher.wake);
        pthread_mutex_unlock(&flusher.lock);
        pthread_join(flusher.thread, NULL);
        flusher.running = false;
    }
    ctx_store_set_persist(store, NULL); /* writes what the flusher had not */
    ctx_persist_close(persist);
    persist = NULL;
    ctx_store_free(store);
    store = NULL;
}

struct ctx_store *context_store(void)
{
    return store;
}

void context_limits(const struct config *cfg, struct ctx_limits *out)
{
    out->max_files = cfg->context.max_files;
    out->max_bytes = cfg->context.max_bytes;
    out->max_projects = cfg->context.max_projects;
    out->ttl_ms = cfg->context.ttl_ms;
}

static void respond_json(struct http_request *req, int status, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    http_respond(req, status, "application/json", "Cache-Control: no-store\r\n", text, strlen(text));
    free(text);
}

/* The scope, or an answer when there is none to keep state under. */
static const char *scope_or_refuse(struct http_request *req)
{
    if (!req->config->context.enabled) {
        http_respond_error(req, GW_ERR_NOT_FOUND,
                           "The context buffer is disabled on this gateway (context.enabled).",
                           NULL);
        return NULL;
    }
    const char *scope = admission_scope(req);
    if (!scope)
        http_respond_error(req, GW_ERR_INVALID_API_KEY, "An API key is required.", NULL);
    return scope;
}

void context_api_delta(struct http_request *req)
{
    const char *scope = scope_or_refuse(req);
    if (!scope) return;
    struct ctx_delta d;
    char err[512];
    const char *param = NULL;
    if (ctx_delta_parse(&req->arena, req->body, req->body_len, &d, err, sizeof err, &param) != 0) {
        bool not_json = param && !*param;
        http_respond_error(req, not_json ? GW_ERR_INVALID_JSON : GW_ERR_BAD_REQUEST, err,
                           param && *param ? param : NULL);
        return;
    }
    struct ctx_limits lim;
    context_limits(req->config, &lim);
    struct ctx_applied out;
    enum ctx_err rc = ctx_store_apply(store, &lim, scope, &d, clock_wall_ms(), &req->arena, &out,
                                      err, sizeof err);
    if (rc != CTX_OK) {
        http_respond_error(req, rc == CTX_ERR_TOO_MANY_PROJECTS ? GW_ERR_BAD_REQUEST
                                                                : GW_ERR_REQUEST_TOO_LARGE,
                           err, rc == CTX_ERR_TOO_MANY_PROJECTS ? "project" : "files");
        return;
    }
    json_t *doc = json_object();
    json_object_set_new(doc, "project", json_string(d.project));
    json_t *changed = json_array();
    for (size_t i = 0; i < out.n_changed; i++) json_array_append_new(changed, json_string(out.changed[i]));
    json_object_set_new(doc, "changed", changed);
    json_object_set_new(doc, "added", json_integer(out.added));
    json_object_set_new(doc, "removed", json_integer(out.removed));
    json_object_set_new(doc, "files", json_integer(out.files));
    json_object_set_new(doc, "bytes", json_integer(out.bytes));
    json_object_set_new(doc, "pending", json_integer(out.pending));
    json_t *rejected = json_array();
    for (size_t i = 0; i < d.n_rejected; i++) {
        json_t *r = json_object();
        json_object_set_new(r, "path", json_string(d.rejected[i].path));
        json_object_set_new(r, "reason", json_string(d.rejected[i].reason));
        json_array_append_new(rejected, r);
    }
    json_object_set_new(doc, "rejected", rejected);
    respond_json(req, 200, doc);
}

void context_api_stats(struct http_request *req)
{
    const char *scope = scope_or_refuse(req);
    if (!scope) return;
    struct ctx_project_stats *ps = NULL;
    size_t n = ctx_store_stats(store, scope, &req->arena, &ps);
    json_t *doc = json_object();
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_object();
        json_object_set_new(p, "project", json_string(ps[i].project));
        json_object_set_new(p, "files", json_integer(ps[i].files));
        json_object_set_new(p, "bytes", json_integer(ps[i].bytes));
        json_object_set_new(p, "pending", json_integer(ps[i].pending));
        json_object_set_new(p, "injections", json_integer(ps[i].injections));
        json_object_set_new(p, "tokens_injected", json_integer(ps[i].tokens_injected));
        json_object_set_new(p, "tokens_saved", json_integer(ps[i].tokens_saved));
        json_object_set_new(p, "updated_at", json_integer(ps[i].updated_ms / 1000));
        json_array_append_new(arr, p);
    }
    json_object_set_new(doc, "projects", arr);
    respond_json(req, 200, doc);
}

void context_api_delete(struct http_request *req, const char *project)
{
    const char *scope = scope_or_refuse(req);
    if (!scope) return;
    if (!ctx_project_name_ok(project, strlen(project))) {
        http_respond_error(req, GW_ERR_BAD_REQUEST,
                           "A project name is 1 to 128 characters of letters, digits, '.', '_' "
                           "and '-'.",
                           "project");
        return;
    }
    if (!ctx_store_delete(store, scope, project)) {
        char msg[256];
        snprintf(msg, sizeof msg, "No context project '%s'.", project);
        http_respond_error(req, GW_ERR_NOT_FOUND, msg, "project");
        return;
    }
    json_t *doc = json_object();
    json_object_set_new(doc, "project", json_string(project));
    json_object_set_new(doc, "deleted", json_true());
    respond_json(req, 200, doc);
}
