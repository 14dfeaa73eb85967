/* responses_api: OpenAI's Responses API (SPEC section 9):
 *
 *   POST   /v1/responses                    create (stream or not)
 *   GET    /v1/responses/{id}               a stored response
 *   GET    /v1/responses/{id}/input_items   its input items
 *   DELETE /v1/responses/{id}               forget it
 *
 * A request is translated to a chat request by providers/responses.h
 * (after the conversation its previous_response_id names, read from the
 * store) and served by the proxy's one flow: routing, budgets, limits,
 * cache, ledger and metrics as for chat. Once the answer was translated in
 * full, and before its last bytes leave, the response and its turn are
 * stored (unless `store: false`), so a client that continues at once finds
 * it. Responses are stored per caller scope (admission_scope): another key
 * or tenant gets 404 for them. */
#include "api/responses_api.h"

#include <jansson.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/admission.h"
#include "api/proxy.h"
#include "config/config.h"
#include "core/ids.h"
#include "core/log.h"
#include "http/server.h"
#include "providers/responses.h"
#include "responses/store.h"

static struct resp_store *store;
static atomic_int_fast64_t last_expire_s;

#define EXPIRE_EVERY_S 60

int responses_api_start(const struct config *cfg, char *err, size_t errcap)
{
    if (!cfg->responses.enabled) return 0;
    const char *path = cfg->budget.cost_db_path;
    const char *url = cfg->budget.cost_db_url;
    if (!path && !url) return 0;
    store = resp_store_open(path, url, cfg->responses.retention_ms / 1000, err, errcap);
    if (!store) return -1;
    int64_t n = resp_store_expire(store);
    atomic_store(&last_expire_s, (int_fast64_t)time(NULL));
    if (n > 0)
        log_event(LOG_INFO, "responses_expired", "responses store: %lld expired responses removed",
                  (long long)n);
    return 0;
}

void responses_api_stop(void)
{
    resp_store_close(store);
    store = NULL;
}

static void maybe_expire(void)
{
    int_fast64_t now = (int_fast64_t)time(NULL);
    int_fast64_t last = atomic_load(&last_expire_s);
    if (now - last < EXPIRE_EVERY_S) return;
    if (!atomic_compare_exchange_strong(&last_expire_s, &last, now)) return;
    resp_store_expire(store);
}

static const char *scope_of(struct http_request *req)
{
    const char *s = admission_scope(req);
    return s ? s : "*";
}

static bool enabled_or_refuse(struct http_request *req)
{
    if (req->config->responses.enabled) return true;
    http_respond_error(req, GW_ERR_NOT_FOUND,
                       "The Responses API is turned off on this gateway (responses.enabled).",
                       NULL);
    return false;
}

/* ---- create ---- */

struct create {
    struct responses_ctx *ctx;
    const char *id;
    const char *scope;
    const char *previous_id;
    const char *model;
    int64_t created_at;
};

static void on_translated(struct http_request *req, void *arg)
{
    struct create *c = arg;
    size_t rlen, tlen;
    const char *response = responses_result(c->ctx, &rlen);
    const char *turn = response ? responses_turn(c->ctx, &tlen) : NULL;
    if (!response || !turn) return;
    struct resp_record r = {
        .id = c->id,
        .scope = c->scope,
        .previous_id = c->previous_id,
        .model = c->model,
        .created_at = c->created_at,
        .response = response,
        .response_len = rlen,
        .turn = turn,
        .turn_len = tlen,
    };
    if (resp_store_put(store, &r) != RESP_OK)
        log_event(LOG_WARN, "responses_not_stored",
                  "responses store: response %s was answered but not stored", c->id);
    maybe_expire();
}

static void new_id(char out[54])
{
    unsigned char b[24];
    if (RAND_bytes(b, sizeof b) != 1) {
        /* no entropy: a request id is unique still (the scope guards it) */
        char rid[ID_REQUEST_LEN + 1];
        ids_request(rid);
        snprintf(out, 54, "resp_%s", rid + 4);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "resp_", 5);
    for (size_t i = 0; i < sizeof b; i++) {
        out[5 + 2 * i] = hex[b[i] >> 4];
        out[6 + 2 * i] = hex[b[i] & 15];
    }
    out[5 + 2 * sizeof b] = '\0';
}

/* The turns of the stored responses the input refers to by item_reference
 * (the Vercel AI SDK names an earlier assistant message by its id), as
 * "[turn,turn...]" (arena); NULL when there are none. A response that
 * cannot be read is left out: its references are then a 400. */
#define MAX_REFERENCED 16

static char *referenced_turns(struct http_request *req, const struct responses_request *info,
                              const char *scope, size_t *len)
{
    const char **ids;
    size_t n = 0;
    responses_referenced_in(&req->arena, info, &ids, &n);
    if (n == 0) return NULL;
    if (n > MAX_REFERENCED) n = MAX_REFERENCED;
    char **turns = arena_alloc(&req->arena, n * sizeof *turns);
    size_t *lens = arena_alloc(&req->arena, n * sizeof *lens);
    size_t total = 2, got = 0;
    for (size_t i = 0; i < n; i++) {
        if (resp_store_turn(store, ids[i], scope, &req->arena, &turns[got], &lens[got]) != RESP_OK)
            continue;
        total += lens[got] + 1;
        got++;
    }
    if (got == 0) return NULL;
    char *out = arena_alloc(&req->arena, total + 1), *w = out;
    *w++ = '[';
    for (size_t i = 0; i < got; i++) {
        if (i) *w++ = ',';
        memcpy(w, turns[i], lens[i]);
        w += lens[i];
    }
    *w++ = ']';
    *w = '\0';
    *len = (size_t)(w - out);
    return out;
}

void responses_api_create(struct http_request *req)
{
    proxy_set_error_format(req, &inbound_responses_ops);
    if (!enabled_or_refuse(req)) return;
    struct responses_request info;
    struct inbound_error e;
    memset(&e, 0, sizeof e);
    if (responses_parse(&req->arena, req->body, req->body_len, &info, &e) != 0) {
        http_respond_error(req, e.invalid_json ? GW_ERR_INVALID_JSON : GW_ERR_BAD_REQUEST,
                           e.message[0] ? e.message : "The request is not valid.", e.param);
        return;
    }
    struct create *c = arena_alloc(&req->arena, sizeof *c);
    memset(c, 0, sizeof *c);
    c->scope = scope_of(req);
    c->model = info.model;
    c->created_at = (int64_t)time(NULL);
    char *history = NULL;
    size_t hlen = 0;
    if (info.previous_response_id) {
        enum resp_result r = store ? resp_store_history(store, info.previous_response_id,
                                                        c->scope, &req->arena, &history, &hlen)
                                   : RESP_NOT_FOUND;
        if (r == RESP_FAILED) {
            http_respond_error(req, GW_ERR_STORE_UNAVAILABLE,
                               "Stored responses cannot be read right now; try again.",
                               "previous_response_id");
            return;
        }
        if (r == RESP_NOT_FOUND) {
            char msg[300];
            snprintf(msg, sizeof msg, "Previous response with id '%.200s' not found.",
                     info.previous_response_id);
            http_respond_error(req, GW_ERR_BAD_REQUEST, msg, "previous_response_id");
            return;
        }
        c->previous_id = info.previous_response_id;
    }
    size_t rlen = 0;
    char *refs = store ? referenced_turns(req, &info, c->scope, &rlen) : NULL;
    char id[54];
    new_id(id);
    c->id = arena_strdup(&req->arena, id);
    char *chat;
    size_t chat_len;
    /* the body responses_parse read, not parsed again */
    c->ctx = responses_begin_parsed(&req->arena, &info, history, hlen, refs, rlen, c->id,
                                    c->created_at, &chat, &chat_len, &e);
    if (!c->ctx) {
        http_respond_error(req, e.invalid_json ? GW_ERR_INVALID_JSON : GW_ERR_BAD_REQUEST,
                           e.message[0] ? e.message : "The request is not valid.", e.param);
        return;
    }
    bool keep = info.store && store;
    proxy_handle_translated(req, &inbound_responses_ops, c->ctx, chat, chat_len, info.stream,
                            keep ? on_translated : NULL, c);
}

/* ---- read, delete ---- */

static void respond_json_text(struct http_request *req, int status, const char *s, size_t n)
{
    http_respond(req, status, "application/json", NULL, s, n);
}

static void respond_json(struct http_request *req, int status, json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!s) {
        http_respond_error(req, GW_ERR_INTERNAL, "Out of memory.", NULL);
        return;
    }
    respond_json_text(req, status, s, strlen(s));
    free(s);
}

/* "{id}" or "{id}/input_items": the id (arena) and whether it is the list. */
static const char *parse_rest(struct http_request *req, const char *rest, bool *input_items)
{
    const char *slash = strchr(rest, '/');
    *input_items = false;
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (slash) {
        if (strcmp(slash, "/input_items") != 0) return NULL;
        *input_items = true;
    }
    if (n == 0 || n > 100) return NULL;
    for (size_t i = 0; i < n; i++) {
        char ch = rest[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return NULL;
    }
    return arena_strndup(&req->arena, rest, n);
}

static bool answer_failure(struct http_request *req, enum resp_result r, const char *id)
{
    if (r == RESP_OK) return false;
    if (r == RESP_FAILED) {
        http_respond_error(req, GW_ERR_STORE_UNAVAILABLE,
                           "Stored responses cannot be read right now; try again.", NULL);
        return true;
    }
    char msg[300];
    snprintf(msg, sizeof msg, "No response found with id '%.200s'.", id ? id : "");
    http_respond_error(req, GW_ERR_NOT_FOUND, msg, NULL);
    return true;
}

/* Whether the query string asks for ascending order (default: descending,
 * as OpenAI's). */
static bool order_asc(const char *query)
{
    for (const char *p = query; p && *p;) {
        if (strncmp(p, "order=asc", 9) == 0 && (p[9] == '\0' || p[9] == '&')) return true;
        p = strchr(p, '&');
        if (p) p++;
    }
    return false;
}

static void input_items(struct http_request *req, const char *id, const char *scope)
{
    char *turn, *response;
    size_t tlen, rlen;
    if (answer_failure(req, resp_store_turn(store, id, scope, &req->arena, &turn, &tlen), id) ||
        answer_failure(req, resp_store_get(store, id, scope, &req->arena, &response, &rlen), id))
        return;
    json_t *items = json_loadb(turn, tlen, 0, NULL);
    json_t *resp = json_loadb(response, rlen, 0, NULL);
    size_t n_out = json_array_size(json_object_get(resp, "output"));
    size_t n = json_array_size(items);
    size_t n_in = n > n_out ? n - n_out : 0;
    bool asc = order_asc(req->query);
    json_t *data = json_array();
    for (size_t k = 0; k < n_in; k++) {
        size_t at = asc ? k : n_in - 1 - k;
        json_t *it = json_array_get(items, at);
        if (!json_is_object(it)) continue;
        it = json_deep_copy(it);
        /* as OpenAI lists them: typed message items with content parts and an id */
        json_t *content = json_object_get(it, "content");
        if (json_object_get(it, "role") && !json_object_get(it, "type"))
            json_object_set_new(it, "type", json_string("message"));
        if (json_is_string(content)) {
            json_t *part = json_object();
            const char *role = json_string_value(json_object_get(it, "role"));
            bool out = role && strcmp(role, "assistant") == 0;
            json_object_set_new(part, "type", json_string(out ? "output_text" : "input_text"));
            json_object_set(part, "text", content);
            json_t *parts = json_array();
            json_array_append_new(parts, part);
            json_object_set_new(it, "content", parts);
        }
        if (!json_object_get(it, "id")) {
            const char *rid = strncmp(id, "resp_", 5) == 0 ? id + 5 : id;
            char iid[160];
            snprintf(iid, sizeof iid, "in_%s_%zu", rid, at);
            json_object_set_new(it, "id", json_string(iid));
        }
        json_array_append_new(data, it);
    }
    n_in = json_array_size(data);
    json_t *doc = json_object();
    json_object_set_new(doc, "object", json_string("list"));
    json_object_set_new(doc, "data", data);
    json_t *first = json_array_get(data, 0), *last = json_array_get(data, n_in ? n_in - 1 : 0);
    json_object_set(doc, "first_id", json_is_object(first) && json_object_get(first, "id")
                                         ? json_object_get(first, "id")
                                         : json_null());
    json_object_set(doc, "last_id", json_is_object(last) && json_object_get(last, "id")
                                        ? json_object_get(last, "id")
                                        : json_null());
    json_object_set_new(doc, "has_more", json_false());
    json_decref(items);
    json_decref(resp);
    respond_json(req, 200, doc);
}

void responses_api_get(struct http_request *req, const char *rest)
{
    if (!enabled_or_refuse(req)) return;
    bool list;
    const char *id = parse_rest(req, rest, &list);
    if (!id || !store) {
        answer_failure(req, RESP_NOT_FOUND, id);
        return;
    }
    const char *scope = scope_of(req);
    if (list) {
        input_items(req, id, scope);
        return;
    }
    char *response;
    size_t len;
    if (answer_failure(req, resp_store_get(store, id, scope, &req->arena, &response, &len), id))
        return;
    respond_json_text(req, 200, response, len);
}

void responses_api_delete(struct http_request *req, const char *rest)
{
    if (!enabled_or_refuse(req)) return;
    bool list;
    const char *id = parse_rest(req, rest, &list);
    if (!id || list || !store) {
        answer_failure(req, RESP_NOT_FOUND, id);
        return;
    }
    if (answer_failure(req, resp_store_delete(store, id, scope_of(req)), id)) return;
    json_t *doc = json_object();
    json_object_set_new(doc, "id", json_string(id));
    json_object_set_new(doc, "object", json_string("response.deleted"));
    json_object_set_new(doc, "deleted", json_true());
    respond_json(req, 200, doc);
}
