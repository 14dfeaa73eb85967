/* admin_keys: request bodies are parsed with jansson (DESIGN: whole
 * documents on admin paths); answers are built with jansson too, money
 * fields as exact integer nano-dollars plus a USD string. */
#include "api/admin_keys.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/admission.h"
#include "api/store_call.h"
#include "cluster/keys.h"
#include "cluster/scripts.h"
#include "cluster/store.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/str.h"
#include "http/server.h"
#include "security/keystore.h"

#define KEY_NAME_MAX 128

static void respond_json(struct http_request *req, int status, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    char *body = arena_strdup(&req->arena, text ? text : "{}");
    if (text) {
        OPENSSL_cleanse(text, strlen(text)); /* it may hold a new key */
        free(text);
    }
    http_respond(req, status, "application/json", NULL, body, strlen(body));
}

static json_t *money_json(nanos_t v)
{
    if (v <= 0) return json_null();
    char usd[32];
    money_format_usd(v, usd, sizeof usd);
    return json_string(usd);
}

static json_t *key_json(const struct key_view *k, const char *source)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(k->id));
    json_object_set_new(o, "name", json_string(k->name ? k->name : ""));
    json_object_set_new(o, "source", json_string(source));
    json_object_set_new(o, "tenant", k->tenant ? json_string(k->tenant) : json_null());
    json_object_set_new(o, "role", json_string(k->admin ? "admin" : "user"));
    json_t *m = json_array();
    for (size_t i = 0; i < k->n_models; i++) json_array_append_new(m, json_string(k->models[i]));
    json_object_set_new(o, "models", m);
    json_object_set_new(o, "daily_limit", money_json(k->daily_limit));
    json_object_set_new(o, "daily_limit_nanos", json_integer(k->daily_limit));
    json_object_set_new(o, "monthly_limit", money_json(k->monthly_limit));
    json_object_set_new(o, "monthly_limit_nanos", json_integer(k->monthly_limit));
    json_object_set_new(o, "rate_limit", json_integer(k->rate_limit_per_hour));
    json_object_set_new(o, "requests_per_minute", json_integer(k->requests_per_minute));
    json_object_set_new(o, "tokens_per_minute", json_integer(k->tokens_per_minute));
    json_object_set_new(o, "expires_at", k->expires_at ? json_integer(k->expires_at) : json_null());
    json_object_set_new(o, "created_at", k->created_at ? json_integer(k->created_at) : json_null());
    json_object_set_new(o, "revoked", json_boolean(k->revoked_at != 0));
    json_object_set_new(o, "revoked_at", k->revoked_at ? json_integer(k->revoked_at) : json_null());
    return o;
}

/* ---- create ---- */

static bool bad(struct http_request *req, const char *msg, const char *param)
{
    http_respond_error(req, GW_ERR_BAD_REQUEST, msg, param);
    return false;
}

/* A USD amount given as a JSON number or a decimal string. */
static bool parse_money(struct http_request *req, json_t *v, const char *param, nanos_t *out)
{
    if (!v || json_is_null(v)) return true;
    char text[64];
    if (json_is_string(v)) snprintf(text, sizeof text, "%s", json_string_value(v));
    else if (json_is_integer(v)) snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) snprintf(text, sizeof text, "%.9f", json_real_value(v));
    else return bad(req, "Expected a USD amount.", param);
    if (text[0] == '-' || !money_parse_usd(text, strlen(text), out))
        return bad(req, "Expected a non-negative USD amount like 5 or \"0.25\".", param);
    return true;
}

static bool parse_int(struct http_request *req, json_t *v, const char *param, int64_t max,
                      int64_t *out)
{
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return bad(req, "Expected a non-negative integer.", param);
    *out = json_integer_value(v);
    return true;
}

static bool plain_text(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

/* ---- keys in the shared store (cluster.redis) ---- */

static void refuse_store_down(struct http_request *req)
{
    http_respond_error_h(req, GW_ERR_STORE_UNAVAILABLE, "The shared store (Redis) that holds "
                         "this cluster's managed keys does not answer. Retry shortly.", NULL,
                         "Retry-After: 1\r\n");
}

/* A shared key being written: what the answer needs. */
struct shared_put {
    struct key_view view; /* strings in `doc` or the arena of the request */
    unsigned char hash[KEYSTORE_HASH_LEN];
    char key[KEYSTORE_KEY_LEN + 1]; /* creation only: shown once */
    json_t *doc;
    bool revoke;
};

static void shared_put_free(void *data)
{
    struct shared_put *p = data;
    OPENSSL_cleanse(p->key, sizeof p->key);
    json_decref(p->doc);
    free(p);
}

static void on_shared_put(struct http_request *req, struct redisReply *r, void *data)
{
    struct shared_put *p = data;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_event(LOG_ERROR, "key_store_failed", "the shared store refused a key: %.200s", r->str);
        refuse_store_down(req);
        return;
    }
    struct keystore *ks = admission_keystore();
    if (ks) keystore_put_shared(ks, &p->view, p->hash); /* in force here at once */
    if (p->revoke) {
        log_event(LOG_INFO, "key_revoked", "managed key %s revoked by %s (cluster-wide)",
                  p->view.id, req->principal ? req->principal->name : "-");
        json_t *doc = json_object();
        json_object_set_new(doc, "id", json_string(p->view.id));
        json_object_set_new(doc, "object", json_string("api_key"));
        json_object_set_new(doc, "revoked", json_true());
        respond_json(req, 200, doc);
        return;
    }
    json_t *out = key_json(&p->view, "managed");
    json_object_set_new(out, "key", json_string(p->key));
    json_object_set_new(out, "object", json_string("api_key"));
    log_event(LOG_INFO, "key_created", "managed key %s (%s) created by %s (cluster-wide)",
              p->view.id, p->view.name, req->principal ? req->principal->name : "-");
    respond_json(req, 201, out);
}

/* Writes p's record into the shared store; the answer follows. */
static void shared_put(struct http_request *req, struct shared_put *p)
{
    char hex[2 * KEYSTORE_HASH_LEN + 1];
    str_hex(p->hash, KEYSTORE_HASH_LEN, hex);
    char *record = shared_key_encode(&p->view);
    const char *av[3] = {store_prefix(), hex, record};
    int rc = store_call_script(req, SCRIPT_KEYPUT, 3, av, NULL, on_shared_put, p, shared_put_free);
    free(record);
    if (rc != 0) {
        shared_put_free(p);
        refuse_store_down(req);
    }
}

static void create_shared(struct http_request *req, struct keystore *ks,
                          const struct key_view *spec, json_t *doc, int64_t now)
{
    struct shared_put *p = xcalloc(1, sizeof *p);
    p->view = *spec;
    p->doc = doc;
    keys_generate(p->key, p->view.id);
    p->view.created_at = now;
    if (!keystore_shared_hash(ks, p->key, p->hash)) {
        shared_put_free(p);
        refuse_store_down(req); /* (the cluster's key salt is not read yet) */
        return;
    }
    shared_put(req, p);
}

void admin_keys_create(struct http_request *req)
{
    struct keystore *ks = admission_keystore();
    if (!ks) {
        http_respond_error(req, GW_ERR_UNAVAILABLE, "The key store is not open.", NULL);
        return;
    }
    json_error_t jerr;
    json_t *doc = req->body_len ? json_loadb(req->body, req->body_len, 0, &jerr) : json_object();
    if (!doc || !json_is_object(doc)) {
        json_decref(doc);
        http_respond_error(req, GW_ERR_INVALID_JSON, "The body must be a JSON object.", NULL);
        return;
    }
    struct key_view spec;
    memset(&spec, 0, sizeof spec);
    const char *models[KEYSTORE_MAX_MODELS];
    int64_t rl = 0, rpm = 0, tpm = 0, exp_at = 0, exp_in = 0;
    json_t *name = json_object_get(doc, "name");
    json_t *tenant = json_object_get(doc, "tenant");
    json_t *role = json_object_get(doc, "role");
    json_t *ms = json_object_get(doc, "models");
    json_t *budget = json_object_get(doc, "budget");
    bool ok = true;
    if (!json_is_string(name) || !plain_text(json_string_value(name), KEY_NAME_MAX))
        ok = bad(req, "name is required: a string of 1 to 128 printable characters.", "name");
    else spec.name = json_string_value(name);
    if (ok && tenant && !json_is_null(tenant)) {
        if (!json_is_string(tenant) || !plain_text(json_string_value(tenant), KEY_NAME_MAX))
            ok = bad(req, "tenant must be a string of 1 to 128 printable characters.", "tenant");
        else spec.tenant = json_string_value(tenant);
    }
    if (ok && role && !json_is_null(role)) {
        const char *r = json_is_string(role) ? json_string_value(role) : "";
        if (strcmp(r, "admin") != 0 && strcmp(r, "user") != 0)
            ok = bad(req, "role must be \"admin\" or \"user\".", "role");
        spec.admin = strcmp(r, "admin") == 0;
    }
    if (ok && ms && !json_is_null(ms)) {
        if (!json_is_array(ms) || json_array_size(ms) > KEYSTORE_MAX_MODELS) {
            ok = bad(req, "models must be a list of up to 64 model names or aliases.", "models");
        } else {
            for (size_t i = 0; ok && i < json_array_size(ms); i++) {
                json_t *m = json_array_get(ms, i);
                if (!json_is_string(m) || !plain_text(json_string_value(m), 256))
                    ok = bad(req, "models must be a list of model names.", "models");
                else models[spec.n_models++] = json_string_value(m);
            }
            spec.models = models;
        }
    }
    if (ok && budget && !json_is_null(budget) && !json_is_object(budget))
        ok = bad(req, "budget must be an object {daily_limit, monthly_limit}.", "budget");
    if (ok) ok = parse_money(req, json_object_get(budget, "daily_limit"), "budget.daily_limit",
                             &spec.daily_limit);
    if (ok) ok = parse_money(req, json_object_get(budget, "monthly_limit"), "budget.monthly_limit",
                             &spec.monthly_limit);
    if (ok) ok = parse_int(req, json_object_get(doc, "rate_limit"), "rate_limit", 1000000000, &rl);
    if (ok) ok = parse_int(req, json_object_get(doc, "requests_per_minute"), "requests_per_minute",
                           1000000000, &rpm);
    if (ok) ok = parse_int(req, json_object_get(doc, "tokens_per_minute"), "tokens_per_minute",
                           1000000000, &tpm);
    if (ok) ok = parse_int(req, json_object_get(doc, "expires_at"), "expires_at", INT64_MAX / 2,
                           &exp_at);
    if (ok) ok = parse_int(req, json_object_get(doc, "expires_in"), "expires_in", 100LL * 365 * 86400,
                           &exp_in);
    if (!ok) {
        json_decref(doc);
        return;
    }
    int64_t now = clock_wall_s();
    spec.rate_limit_per_hour = (int)rl;
    spec.requests_per_minute = (int)rpm;
    spec.tokens_per_minute = (int)tpm;
    spec.expires_at = exp_in ? now + exp_in : exp_at;

    if (store_enabled()) {
        create_shared(req, ks, &spec, doc, now); /* doc goes with it */
        return;
    }
    char key[KEYSTORE_KEY_LEN + 1], id[KEYSTORE_ID_LEN + 1], err[256];
    if (keystore_create(ks, &spec, now, key, id, err, sizeof err) != 0) {
        json_decref(doc);
        log_event(LOG_ERROR, "key_create_failed", "%s", err);
        http_respond_error(req, GW_ERR_INTERNAL, "The key could not be stored.", NULL);
        return;
    }
    snprintf(spec.id, sizeof spec.id, "%s", id);
    spec.created_at = now;
    json_t *out = key_json(&spec, "managed");
    json_object_set_new(out, "key", json_string(key));
    json_object_set_new(out, "object", json_string("api_key"));
    OPENSSL_cleanse(key, sizeof key);
    log_event(LOG_INFO, "key_created", "managed key %s (%s) created by %s", id, spec.name,
              req->principal ? req->principal->name : "-");
    json_decref(doc);
    respond_json(req, 201, out);
}

/* ---- list, revoke ---- */

static void on_key(void *ctx, const struct key_view *k)
{
    json_array_append_new((json_t *)ctx, key_json(k, "managed"));
}

void admin_keys_list(struct http_request *req)
{
    const struct config *cfg = req->config;
    json_t *data = json_array();
    for (size_t i = 0; i < cfg->security.n_api_keys; i++) {
        const struct config_api_key *k = &cfg->security.api_keys[i];
        struct key_view v;
        memset(&v, 0, sizeof v);
        snprintf(v.id, sizeof v.id, "%s", k->name ? k->name : "");
        v.name = k->name;
        v.tenant = k->tenant;
        v.admin = k->admin;
        v.models = (const char *const *)k->models;
        v.n_models = k->n_models;
        v.daily_limit = k->daily_limit;
        v.monthly_limit = k->monthly_limit;
        v.rate_limit_per_hour = k->rate_limit_per_hour;
        v.requests_per_minute = k->requests_per_minute;
        v.tokens_per_minute = k->tokens_per_minute;
        json_t *o = key_json(&v, "config");
        json_object_set_new(o, "available", json_boolean(k->available));
        json_array_append_new(data, o);
    }
    struct keystore *ks = admission_keystore();
    if (ks) keystore_each(ks, on_key, data);
    json_t *doc = json_object();
    json_object_set_new(doc, "object", json_string("list"));
    json_object_set_new(doc, "data", data);
    respond_json(req, 200, doc);
}

void admin_keys_revoke(struct http_request *req, const char *id)
{
    struct keystore *ks = admission_keystore();
    if (!ks) {
        http_respond_error(req, GW_ERR_UNAVAILABLE, "The key store is not open.", NULL);
        return;
    }
    const struct config *cfg = req->config;
    for (size_t i = 0; i < cfg->security.n_api_keys; i++) {
        const char *n = cfg->security.api_keys[i].name;
        if (n && strcmp(n, id) == 0) {
            http_respond_error(req, GW_ERR_BAD_REQUEST, "This key is defined in the configuration "
                               "file: remove it there and reload.", "id");
            return;
        }
    }
    unsigned char hash[KEYSTORE_HASH_LEN];
    struct key_view *shared = keystore_get_shared(ks, id, hash, &req->arena);
    if (shared && !shared->revoked_at) {
        struct shared_put *p = xcalloc(1, sizeof *p);
        p->view = *shared;
        p->view.revoked_at = clock_wall_s();
        memcpy(p->hash, hash, sizeof hash);
        p->revoke = true;
        shared_put(req, p);
        return;
    }
    int rc = keystore_revoke(ks, id, clock_wall_s());
    if (rc == 1) {
        http_respond_error(req, GW_ERR_NOT_FOUND, "No active managed key has this id.", "id");
        return;
    }
    if (rc != 0) {
        http_respond_error(req, GW_ERR_INTERNAL, "The key could not be revoked.", NULL);
        return;
    }
    log_event(LOG_INFO, "key_revoked", "managed key %s revoked by %s", id,
              req->principal ? req->principal->name : "-");
    json_t *doc = json_object();
    json_object_set_new(doc, "id", json_string(id));
    json_object_set_new(doc, "object", json_string("api_key"));
    json_object_set_new(doc, "revoked", json_true());
    respond_json(req, 200, doc);
}
