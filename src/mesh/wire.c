/* wire: the heartbeat message as JSON (see wire.h). Encoded with jansson
 * (a heartbeat is a few KB every few seconds, not the request path) and
 * parsed with jansson under explicit bounds: the size, every string's
 * length, every array's count. Money travels as integer nano-dollars. */
#include "mesh/wire.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

bool mesh_id_valid(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok || n >= MESH_ID_MAX - 1) return false;
    }
    return n > 0;
}

void mesh_state_cleanup(struct mesh_node_state *s)
{
    free(s->models);
    free(s->providers);
    free(s->peers);
    s->models = NULL;
    s->providers = NULL;
    s->peers = NULL;
    s->n_models = s->n_providers = s->n_peers = 0;
}

static void *dup_array(const void *src, size_t n, size_t size)
{
    if (!n) return NULL;
    void *d = xcalloc(n, size);
    memcpy(d, src, n * size);
    return d;
}

void mesh_state_copy(struct mesh_node_state *dst, const struct mesh_node_state *src)
{
    *dst = *src;
    dst->models = dup_array(src->models, src->n_models, sizeof *src->models);
    dst->providers = dup_array(src->providers, src->n_providers, sizeof *src->providers);
    dst->peers = dup_array(src->peers, src->n_peers, sizeof *src->peers);
}

/* ---- encoding ---- */

char *mesh_state_encode(const struct mesh_node_state *s, size_t *len)
{
    json_t *root = json_object();
    json_object_set_new(root, "v", json_integer(MESH_WIRE_VERSION));
    json_object_set_new(root, "node",
                        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "id", s->id, "name",
                                  s->name, "region", s->region, "type", s->type, "boot_id",
                                  s->boot_id, "addr", s->addr, "uptime_s",
                                  (json_int_t)s->uptime_s));
    json_object_set_new(root, "load",
                        json_pack("{s:I, s:I, s:I}", "in_flight", (json_int_t)s->in_flight,
                                  "capacity", (json_int_t)s->capacity, "load_permille",
                                  (json_int_t)s->load_permille));
    json_object_set_new(root, "spend",
                        json_pack("{s:I, s:I}", "day_nanos", (json_int_t)s->spend_day,
                                  "month_nanos", (json_int_t)s->spend_month));
    json_t *models = json_array();
    for (size_t i = 0; i < s->n_models; i++) {
        const struct mesh_model_info *m = &s->models[i];
        json_array_append_new(
            models,
            json_pack("{s:s, s:I, s:I, s:I, s:I, s:b, s:I, s:I}", "name", m->name,
                      "price_in_per_1k_nanos", (json_int_t)m->price_in_per_1k,
                      "price_out_per_1k_nanos", (json_int_t)m->price_out_per_1k,
                      "price_per_generation_nanos", (json_int_t)m->price_per_generation,
                      "capabilities", (json_int_t)m->capabilities, "available", m->available,
                      "latency_ms", (json_int_t)m->latency_ms, "ttft_ms", (json_int_t)m->ttft_ms));
    }
    json_object_set_new(root, "models", models);
    json_t *provs = json_array();
    for (size_t i = 0; i < s->n_providers; i++)
        json_array_append_new(provs,
                              json_pack("{s:s, s:s, s:i}", "name", s->providers[i].name, "status",
                                        s->providers[i].status, "models", s->providers[i].models));
    json_object_set_new(root, "providers", provs);
    json_t *peers = json_array();
    for (size_t i = 0; i < s->n_peers; i++)
        json_array_append_new(peers, json_pack("{s:s, s:s, s:b}", "id", s->peers[i].id, "addr",
                                               s->peers[i].addr, "healthy", s->peers[i].healthy));
    json_object_set_new(root, "peers", peers);
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    char *out = xstrdup(text ? text : "{}");
    free(text);
    if (len) *len = strlen(out);
    return out;
}

/* ---- parsing ---- */

struct perr {
    char *buf;
    size_t cap;
    bool failed;
};

static void fail(struct perr *e, const char *fmt, const char *what)
{
    if (e->failed) return;
    e->failed = true;
    snprintf(e->buf, e->cap, fmt, what);
}

/* Copies an optional string field; absent is "", another type or too long
 * is an error. */
static void get_str(struct perr *e, const json_t *obj, const char *key, char *dst, size_t cap)
{
    dst[0] = '\0';
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return;
    if (!json_is_string(v)) {
        fail(e, "%s: expected a string", key);
        return;
    }
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n >= cap || memchr(s, '\0', n)) {
        fail(e, "%s: too long or holds a NUL", key);
        return;
    }
    memcpy(dst, s, n + 1);
}

/* An optional non-negative integer field; absent is 0. */
static int64_t get_int(struct perr *e, const json_t *obj, const char *key, int64_t max)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max) {
        fail(e, "%s: expected a non-negative integer in range", key);
        return 0;
    }
    return (int64_t)json_integer_value(v);
}

static const json_t *get_array(struct perr *e, const json_t *obj, const char *key, size_t max)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return NULL;
    if (!json_is_array(v)) {
        fail(e, "%s: expected an array", key);
        return NULL;
    }
    if (json_array_size(v) > max) {
        fail(e, "%s: too many entries", key);
        return NULL;
    }
    return v;
}

static const json_t *get_object(struct perr *e, const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return NULL;
    if (!json_is_object(v)) {
        fail(e, "%s: expected an object", key);
        return NULL;
    }
    return v;
}

#define MONEY_MAX (INT64_MAX / 4)

static void parse_models(struct perr *e, const json_t *arr, struct mesh_node_state *out)
{
    size_t n = json_array_size(arr);
    if (!n) return;
    out->models = xcalloc(n, sizeof *out->models);
    for (size_t i = 0; i < n && !e->failed; i++) {
        const json_t *m = json_array_get(arr, i);
        if (!json_is_object(m)) {
            fail(e, "%s: expected objects", "models");
            break;
        }
        struct mesh_model_info *mi = &out->models[out->n_models];
        get_str(e, m, "name", mi->name, sizeof mi->name);
        mi->price_in_per_1k = get_int(e, m, "price_in_per_1k_nanos", MONEY_MAX);
        mi->price_out_per_1k = get_int(e, m, "price_out_per_1k_nanos", MONEY_MAX);
        mi->price_per_generation = get_int(e, m, "price_per_generation_nanos", MONEY_MAX);
        mi->capabilities = (unsigned)get_int(e, m, "capabilities", 0xffff);
        const json_t *av = json_object_get(m, "available");
        mi->available = av ? json_is_true(av) : true;
        mi->latency_ms = get_int(e, m, "latency_ms", 86400000);
        mi->ttft_ms = get_int(e, m, "ttft_ms", 86400000);
        if (!e->failed && !mi->name[0]) fail(e, "%s: a model without a name", "models");
        if (!e->failed) out->n_models++;
    }
}

static void parse_providers(struct perr *e, const json_t *arr, struct mesh_node_state *out)
{
    size_t n = json_array_size(arr);
    if (!n) return;
    out->providers = xcalloc(n, sizeof *out->providers);
    for (size_t i = 0; i < n && !e->failed; i++) {
        const json_t *p = json_array_get(arr, i);
        if (!json_is_object(p)) {
            fail(e, "%s: expected objects", "providers");
            break;
        }
        struct mesh_provider_info *pi = &out->providers[out->n_providers];
        get_str(e, p, "name", pi->name, sizeof pi->name);
        get_str(e, p, "status", pi->status, sizeof pi->status);
        pi->models = (int)get_int(e, p, "models", 1000000);
        if (!e->failed) out->n_providers++;
    }
}

static void parse_peers(struct perr *e, const json_t *arr, struct mesh_node_state *out)
{
    size_t n = json_array_size(arr);
    if (!n) return;
    out->peers = xcalloc(n, sizeof *out->peers);
    for (size_t i = 0; i < n && !e->failed; i++) {
        const json_t *p = json_array_get(arr, i);
        if (!json_is_object(p)) {
            fail(e, "%s: expected objects", "peers");
            break;
        }
        struct mesh_known_peer *k = &out->peers[out->n_peers];
        get_str(e, p, "id", k->id, sizeof k->id);
        get_str(e, p, "addr", k->addr, sizeof k->addr);
        k->healthy = json_is_true(json_object_get(p, "healthy"));
        /* An entry we could not use is skipped, not fatal: gossip from a
         * newer node may carry what this one does not know. */
        if (e->failed) break;
        if (k->id[0] && !mesh_id_valid(k->id)) continue;
        if (!k->addr[0] || !strchr(k->addr, ':')) continue;
        out->n_peers++;
    }
}

int mesh_state_parse(const char *text, size_t len, struct mesh_node_state *out, char *err,
                     size_t errcap)
{
    memset(out, 0, sizeof *out);
    struct perr e = {.buf = err, .cap = errcap};
    if (errcap) err[0] = '\0';
    if (len > MESH_MAX_MESSAGE) {
        snprintf(err, errcap, "heartbeat larger than %d bytes", MESH_MAX_MESSAGE);
        return -1;
    }
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        snprintf(err, errcap, "heartbeat is not a JSON object");
        return -1;
    }
    int64_t v = get_int(&e, root, "v", 1000);
    if (!e.failed && v != MESH_WIRE_VERSION) fail(&e, "%s: unsupported heartbeat version", "v");
    const json_t *node = get_object(&e, root, "node");
    if (!e.failed && !node) fail(&e, "%s: missing", "node");
    if (node) {
        get_str(&e, node, "id", out->id, sizeof out->id);
        get_str(&e, node, "name", out->name, sizeof out->name);
        get_str(&e, node, "region", out->region, sizeof out->region);
        get_str(&e, node, "type", out->type, sizeof out->type);
        get_str(&e, node, "boot_id", out->boot_id, sizeof out->boot_id);
        get_str(&e, node, "addr", out->addr, sizeof out->addr);
        out->uptime_s = get_int(&e, node, "uptime_s", INT64_MAX / 2);
        if (!e.failed && !mesh_id_valid(out->id)) fail(&e, "%s: missing or invalid", "node.id");
    }
    const json_t *load = get_object(&e, root, "load");
    if (load) {
        out->in_flight = get_int(&e, load, "in_flight", INT32_MAX);
        out->capacity = get_int(&e, load, "capacity", INT32_MAX);
        out->load_permille = (int)get_int(&e, load, "load_permille", 1000);
    }
    const json_t *spend = get_object(&e, root, "spend");
    if (spend) {
        out->spend_day = get_int(&e, spend, "day_nanos", MONEY_MAX);
        out->spend_month = get_int(&e, spend, "month_nanos", MONEY_MAX);
    }
    const json_t *arr;
    if ((arr = get_array(&e, root, "models", MESH_MAX_MODELS))) parse_models(&e, arr, out);
    if (!e.failed && (arr = get_array(&e, root, "providers", MESH_MAX_PROVIDERS)))
        parse_providers(&e, arr, out);
    if (!e.failed && (arr = get_array(&e, root, "peers", MESH_MAX_KNOWN_PEERS)))
        parse_peers(&e, arr, out);
    json_decref(root);
    if (e.failed) {
        mesh_state_cleanup(out);
        return -1;
    }
    return 0;
}
