/* admin_cache: DELETE /aiproxy/admin/cache, how an operator empties the
 * response cache (SPEC section 7) after a model or a prompt changed, or to
 * take one tenant's or key's answers out. It clears this node's memory
 * store (with backend redis: its in-memory front) and, with backend redis,
 * the entries every node shares; the other nodes' fronts follow through
 * the clear counter their watchers read (cache/redis_store.h).
 *
 * Answers:
 *   200 {"cleared":{"memory":N,"redis":M|null},"model":..,"scope":..,
 *        "enabled":bool}   redis is null when the cache is not on Redis.
 *   A disabled cache is not an error: an operator's script that clears
 *   after every deploy must not fail on the nodes that do not cache. It
 *   answers 200 with "enabled": false (and still empties what an earlier
 *   config left in memory: a reload that turned the cache off frees it).
 *   400 on a malformed, repeated or unknown parameter: a misspelt filter
 *   ("modle=") must not clear everything.
 *   503 store_unavailable when Redis does not answer: this node's part is
 *   cleared by then, the shared entries are not (the message says so). */
#include "api/admin_cache.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/admission.h"
#include "api/store_call.h"
#include "api/upstream_slot.h"
#include "cache/cache.h"
#include "cache/redis_store.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/log.h"
#include "core/str.h"
#include "http/server.h"

#define PARAM_MAX 512 /* a decoded parameter value, in bytes */

/* ---- the query ---- */

struct clear_query {
    const char *model; /* NULL: every model */
    const char *scope; /* NULL: every scope */
};

/* Percent-decodes s[0..len) into the arena. NULL when empty, too long, or
 * holding a control byte (no NUL can hide in a filter). */
static char *decode(struct arena *a, const char *s, size_t len)
{
    if (len == 0 || len > 3 * PARAM_MAX) return NULL;
    char *out = arena_alloc(a, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= len) return NULL;
            int hi = str_hex_value(s[i + 1]), lo = str_hex_value(s[i + 2]);
            if (hi < 0 || lo < 0) return NULL;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if ((unsigned char)c < 0x20 || c == 0x7f) return NULL;
        out[n++] = c;
    }
    out[n] = '\0';
    return n > 0 && n <= PARAM_MAX ? out : NULL;
}

static bool refuse(struct http_request *req, const char *msg, const char *param)
{
    http_respond_error(req, GW_ERR_BAD_REQUEST, msg, param);
    return false;
}

/* Reads model, tenant, key and scope; answers 400 and returns false on a
 * bad query. */
static bool parse_query(struct http_request *req, struct clear_query *q)
{
    enum { P_MODEL, P_TENANT, P_KEY, P_SCOPE, N_PARAMS };
    static const char *const names[N_PARAMS] = {"model", "tenant", "key", "scope"};
    const char *v[N_PARAMS] = {0};
    for (const char *s = req->query; s && *s;) {
        size_t len = strcspn(s, "&");
        const char *eq = memchr(s, '=', len);
        size_t nl = eq ? (size_t)(eq - s) : len;
        int p = 0;
        while (p < N_PARAMS && !(strlen(names[p]) == nl && strncmp(s, names[p], nl) == 0))
            p++;
        if (len > 0) {
            if (p == N_PARAMS)
                return refuse(req,
                              "Unknown query parameter (expected model, and one of tenant, "
                              "key and scope).",
                              NULL);
            if (v[p]) return refuse(req, "A query parameter is given twice.", names[p]);
            v[p] = eq ? decode(&req->arena, eq + 1, len - nl - 1) : NULL;
            if (!v[p])
                return refuse(req, "Expected a value of 1 to 512 printable characters.", names[p]);
        }
        s += len;
        if (*s == '&') s++;
    }
    if (!!v[P_TENANT] + !!v[P_KEY] + !!v[P_SCOPE] > 1)
        return refuse(req, "Give one of tenant, key and scope, not several.",
                      v[P_TENANT] ? "tenant" : "key");
    const char *scope = v[P_SCOPE];
    if (scope && strcmp(scope, "*") != 0 && strncmp(scope, "t:", 2) != 0 &&
        strncmp(scope, "k:", 2) != 0)
        return refuse(req, "scope must be \"t:<tenant>\", \"k:<key id>\" or \"*\".", "scope");
    q->model = v[P_MODEL];
    if (v[P_TENANT])
        q->scope = arena_concat(&req->arena, "t:", v[P_TENANT], NULL);
    else if (v[P_KEY])
        q->scope = arena_concat(&req->arena, "k:", v[P_KEY], NULL);
    else
        q->scope = scope;
    return true;
}

/* ---- the answer ---- */

static void respond_cleared(struct http_request *req, const struct clear_query *q, size_t memory,
                            json_t *redis)
{
    json_t *doc = json_object();
    json_object_set_new(doc, "cleared",
                        json_pack("{s:I, s:o}", "memory", (json_int_t)memory, "redis", redis));
    json_object_set_new(doc, "model", q->model ? json_string(q->model) : json_null());
    json_object_set_new(doc, "scope", q->scope ? json_string(q->scope) : json_null());
    json_object_set_new(doc, "enabled", json_boolean(req->config->cache.enabled));
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    http_respond(req, 200, "application/json", "Cache-Control: no-store\r\n", text, strlen(text));
    free(text);
}

/* redis: -1 when the cache is not on Redis. */
static void log_clear(const struct http_request *req, const struct clear_query *q, size_t memory,
                      long long redis)
{
    char shared[48] = "";
    if (redis >= 0) snprintf(shared, sizeof shared, ", %lld on redis", redis);
    log_event(LOG_INFO, "cache_cleared",
              "cache cleared by %s (model %s, scope %s): %zu in "
              "memory%s",
              req->principal ? req->principal->name : "-", q->model ? q->model : "any",
              q->scope ? q->scope : "any", memory, shared);
}

static void refuse_redis_down(struct http_request *req, const struct clear_query *q, size_t memory)
{
    log_event(LOG_WARN, "cache_clear_partial",
              "cache clear by %s (model %s, scope %s): %zu in "
              "memory, the shared entries not: redis does not answer",
              req->principal ? req->principal->name : "-", q->model ? q->model : "any",
              q->scope ? q->scope : "any", memory);
    char msg[300];
    snprintf(msg, sizeof msg,
             "This node's cache was cleared (%zu in memory), but the shared "
             "cache on Redis does not answer: its entries were not cleared. Retry shortly.",
             memory);
    http_respond_error_h(req, GW_ERR_STORE_UNAVAILABLE, msg, NULL, "Retry-After: 1\r\n");
}

/* ---- the shared entries ---- */

struct redis_clear {
    struct clear_query q;
    size_t memory; /* cleared before the call */
};

static void on_redis_cleared(struct http_request *req, struct redisReply *r, void *data)
{
    struct redis_clear *rc = data;
    if (!r || r->type != REDIS_REPLY_INTEGER) {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_event(LOG_ERROR, "cache_clear_failed", "redis refused the cache clear: %.200s",
                      r->str);
        refuse_redis_down(req, &rc->q, rc->memory);
        return;
    }
    /* Again: a request on this node may have copied a shared entry into
     * the front while the script ran. */
    size_t memory = rc->memory + cache_clear_local(rc->q.model, rc->q.scope);
    log_clear(req, &rc->q, memory, (long long)r->integer);
    respond_cleared(req, &rc->q, memory, json_integer((json_int_t)r->integer));
}

/* ---- DELETE /aiproxy/admin/cache ---- */

void admin_cache_clear(struct http_request *req)
{
    struct clear_query q = {0};
    if (!parse_query(req, &q)) return;
    /* The local part first: it is done whatever Redis does. */
    size_t memory = cache_clear_local(q.model, q.scope);
    if (!cache_redis_enabled()) {
        log_clear(req, &q, memory, -1);
        respond_cleared(req, &q, memory, json_null());
        return;
    }
    const char *argv[CACHE_REDIS_CLEAR_ARGS];
    size_t lens[CACHE_REDIS_CLEAR_ARGS];
    int argc = cache_redis_clear_command(&req->arena, q.model, q.scope, argv, lens);
    struct redis_clear *rc = arena_alloc(&req->arena, sizeof *rc);
    rc->q = q;
    rc->memory = memory;
    struct redis_conn *conn = api_cache_conn(req->worker);
    if (!conn ||
        store_call_command_on(conn, req, argc, argv, lens, on_redis_cleared, rc, NULL) != 0)
        refuse_redis_down(req, &q, memory);
}
