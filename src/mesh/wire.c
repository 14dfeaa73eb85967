/* wire: the heartbeat message as JSON (see wire.h). Encoded with jansson
 * (once per heartbeat round, for every peer) and parsed with yajl's event
 * parser in one pass (every answer from every peer) under explicit bounds:
 * the size, every string's length and UTF-8, every array's count. Money
 * travels as integer nano-dollars. */
#include "mesh/wire.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

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

/* ---- parsing ----
 * One pass of yajl's event parser, as the request path does: a heartbeat
 * is parsed every few seconds from every peer, and a DOM (jansson) cost
 * most of a busy node's heartbeat CPU. Known keys are typed and bounded;
 * unknown keys and their values are skipped (a newer node may send more);
 * a known key twice in one object is refused. */

enum hctx {
    H_ROOT,
    H_NODE,
    H_LOAD,
    H_SPEND,
    H_MODELS, /* arrays of entries */
    H_PROVIDERS,
    H_PEERS,
    H_MODEL, /* one entry */
    H_PROVIDER,
    H_PEER,
    H_SKIP, /* an unknown key's value */
};

#define H_DEPTH 4 /* root, section, entry; deeper is only ever skipped */
#define MONEY_MAX (INT64_MAX / 4)

struct hparse {
    yajl_handle h;
    struct mesh_node_state *out;
    char *err;
    size_t errcap;
    bool failed;
    int depth;              /* containers open */
    int skip_from;          /* > 0: skipping everything from this depth */
    enum hctx ctx[H_DEPTH]; /* ctx[d]: the container at depth d + 1 */
    uint32_t seen[H_DEPTH]; /* known keys met in that container */
    int key;                /* the key whose value comes next: its bit, -1 unknown */
    const char *key_name;
    bool have_node;
    int64_t v;
    size_t cap;                    /* entries allocated for the current array */
    struct mesh_model_info *model; /* the entry being filled */
    struct mesh_provider_info *prov;
    struct mesh_known_peer *peer;
};

__attribute__((format(printf, 2, 3))) static int hfail(struct hparse *p, const char *fmt, ...)
{
    if (!p->failed && p->errcap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, p->errcap, fmt, ap);
        va_end(ap);
    }
    p->failed = true;
    return 0; /* stops yajl */
}

/* The known keys of each container, by bit. */
static const char *const root_keys[] = {"v",      "node",      "load",  "spend",
                                        "models", "providers", "peers", NULL};
static const char *const node_keys[] = {"id",      "name", "region",   "type",
                                        "boot_id", "addr", "uptime_s", NULL};
static const char *const load_keys[] = {"in_flight", "capacity", "load_permille", NULL};
static const char *const spend_keys[] = {"day_nanos", "month_nanos", NULL};
static const char *const model_keys[] = {"name",
                                         "price_in_per_1k_nanos",
                                         "price_out_per_1k_nanos",
                                         "price_per_generation_nanos",
                                         "capabilities",
                                         "available",
                                         "latency_ms",
                                         "ttft_ms",
                                         NULL};
static const char *const provider_keys[] = {"name", "status", "models", NULL};
static const char *const peer_keys[] = {"id", "addr", "healthy", NULL};

static const char *const *keys_of(enum hctx c)
{
    switch (c) {
    case H_ROOT:
        return root_keys;
    case H_NODE:
        return node_keys;
    case H_LOAD:
        return load_keys;
    case H_SPEND:
        return spend_keys;
    case H_MODEL:
        return model_keys;
    case H_PROVIDER:
        return provider_keys;
    case H_PEER:
        return peer_keys;
    default:
        return NULL;
    }
}

static bool skipping(const struct hparse *p)
{
    return p->skip_from > 0;
}

static enum hctx here(const struct hparse *p)
{
    return p->depth > 0 && p->depth <= H_DEPTH ? p->ctx[p->depth - 1] : H_SKIP;
}

enum vkind { V_NULL, V_BOOL, V_NUM, V_STR, V_MAP, V_ARR };

/* Strict UTF-8 (no overlong forms, no surrogates, at most U+10FFFF):
 * yajl lets some through that the encoder (jansson) would refuse. */
static bool utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t extra;
        unsigned min, cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            extra = 1, min = 0x80, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2, min = 0x800, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3, min = 0x10000, cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= extra) return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += extra + 1;
    }
    return true;
}

/* A string field: null is "", another type, too long, holding a NUL or
 * not UTF-8 is refused. */
static int set_str(struct hparse *p, char *dst, size_t cap, enum vkind k, const char *s, size_t n)
{
    dst[0] = '\0';
    if (k == V_NULL) return 1;
    if (k != V_STR) return hfail(p, "%s: expected a string", p->key_name);
    if (n >= cap || memchr(s, '\0', n) || !utf8_ok((const unsigned char *)s, n))
        return hfail(p, "%s: too long, or holds a NUL or invalid UTF-8", p->key_name);
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 1;
}

/* An integer field in [0, max]: null is 0; anything else is refused. */
static int set_int(struct hparse *p, int64_t *dst, int64_t max, enum vkind k, const char *s,
                   size_t n)
{
    *dst = 0;
    if (k == V_NULL) return 1;
    int64_t v = 0;
    bool ok = k == V_NUM && n > 0 && n <= 19;
    for (size_t i = 0; ok && i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            ok = false;
        else if (v > (INT64_MAX - 9) / 10)
            ok = false;
        else
            v = v * 10 + (s[i] - '0');
    }
    if (!ok || v > max)
        return hfail(p, "%s: expected a non-negative integer in range", p->key_name);
    *dst = v;
    return 1;
}

/* Opens the array of entries `c` (models, providers or peers). */
static int open_entries(struct hparse *p, enum vkind k, enum hctx c, enum hctx *child)
{
    if (k == V_NULL) return 1;
    if (k != V_ARR) return hfail(p, "%s: expected an array", p->key_name);
    p->cap = 0;
    *child = c;
    return 2;
}

static void *grow(void *arr, size_t *cap, size_t n, size_t size, size_t max)
{
    if (n < *cap) return arr;
    size_t c = *cap ? *cap * 2 : 8;
    if (c > max) c = max;
    arr = xrealloc(arr, c * size);
    memset((char *)arr + *cap * size, 0, (c - *cap) * size);
    *cap = c;
    return arr;
}

/* A value arrives in the current container; returns 0 to stop, 1 to go on,
 * 2 when the value is a container to push with *child. */
static int on_value(struct hparse *p, enum vkind k, const char *s, size_t n, bool b,
                    enum hctx *child)
{
    struct mesh_node_state *o = p->out;
    enum hctx c = here(p);
    *child = H_SKIP;
    if (p->depth == 0) {
        if (k != V_MAP) return hfail(p, "heartbeat is not a JSON object");
        *child = H_ROOT;
        return 2;
    }
    if (c == H_MODELS || c == H_PROVIDERS || c == H_PEERS) {
        const char *what = c == H_MODELS ? "models" : c == H_PROVIDERS ? "providers" : "peers";
        size_t max = c == H_MODELS      ? MESH_MAX_MODELS
                     : c == H_PROVIDERS ? MESH_MAX_PROVIDERS
                                        : MESH_MAX_KNOWN_PEERS;
        size_t count = c == H_MODELS ? o->n_models : c == H_PROVIDERS ? o->n_providers : o->n_peers;
        if (k != V_MAP) return hfail(p, "%s: expected objects", what);
        if (count >= max) return hfail(p, "%s: too many entries", what);
        if (c == H_MODELS) {
            o->models = grow(o->models, &p->cap, o->n_models, sizeof *o->models, max);
            p->model = &o->models[o->n_models];
            p->model->available = true;
            *child = H_MODEL;
        } else if (c == H_PROVIDERS) {
            o->providers = grow(o->providers, &p->cap, o->n_providers, sizeof *o->providers, max);
            p->prov = &o->providers[o->n_providers];
            *child = H_PROVIDER;
        } else {
            o->peers = grow(o->peers, &p->cap, o->n_peers, sizeof *o->peers, max);
            p->peer = &o->peers[o->n_peers];
            memset(p->peer, 0, sizeof *p->peer);
            *child = H_PEER;
        }
        return 2;
    }
    if (p->key < 0) return k == V_MAP || k == V_ARR ? 2 : 1; /* unknown: skipped */
    int64_t v;
    switch (c) {
    case H_ROOT:
        switch (p->key) {
        case 0:
            return set_int(p, &p->v, 1000, k, s, n);
        case 1:
        case 2:
        case 3:
            if (k == V_NULL) return 1;
            if (k != V_MAP) return hfail(p, "%s: expected an object", p->key_name);
            if (p->key == 1) p->have_node = true;
            *child = p->key == 1 ? H_NODE : p->key == 2 ? H_LOAD : H_SPEND;
            return 2;
        case 4:
            return open_entries(p, k, H_MODELS, child);
        case 5:
            return open_entries(p, k, H_PROVIDERS, child);
        case 6:
            return open_entries(p, k, H_PEERS, child);
        }
        break;
    case H_NODE:
        switch (p->key) {
        case 0:
            return set_str(p, o->id, sizeof o->id, k, s, n);
        case 1:
            return set_str(p, o->name, sizeof o->name, k, s, n);
        case 2:
            return set_str(p, o->region, sizeof o->region, k, s, n);
        case 3:
            return set_str(p, o->type, sizeof o->type, k, s, n);
        case 4:
            return set_str(p, o->boot_id, sizeof o->boot_id, k, s, n);
        case 5:
            return set_str(p, o->addr, sizeof o->addr, k, s, n);
        case 6:
            return set_int(p, &o->uptime_s, INT64_MAX / 2, k, s, n);
        }
        break;
    case H_LOAD:
        switch (p->key) {
        case 0:
            return set_int(p, &o->in_flight, INT32_MAX, k, s, n);
        case 1:
            return set_int(p, &o->capacity, INT32_MAX, k, s, n);
        case 2: {
            int r = set_int(p, &v, 1000, k, s, n);
            o->load_permille = (int)v;
            return r;
        }
        }
        break;
    case H_SPEND:
        if (p->key == 0) return set_int(p, &o->spend_day, MONEY_MAX, k, s, n);
        if (p->key == 1) return set_int(p, &o->spend_month, MONEY_MAX, k, s, n);
        break;
    case H_MODEL: {
        struct mesh_model_info *m = p->model;
        switch (p->key) {
        case 0:
            return set_str(p, m->name, sizeof m->name, k, s, n);
        case 1:
            return set_int(p, &m->price_in_per_1k, MONEY_MAX, k, s, n);
        case 2:
            return set_int(p, &m->price_out_per_1k, MONEY_MAX, k, s, n);
        case 3:
            return set_int(p, &m->price_per_generation, MONEY_MAX, k, s, n);
        case 4: {
            int r = set_int(p, &v, 0xffff, k, s, n);
            m->capabilities = (unsigned)v;
            return r;
        }
        case 5:
            m->available = k == V_BOOL && b;
            return 1;
        case 6:
            return set_int(p, &m->latency_ms, 86400000, k, s, n);
        case 7:
            return set_int(p, &m->ttft_ms, 86400000, k, s, n);
        }
        break;
    }
    case H_PROVIDER: {
        struct mesh_provider_info *pr = p->prov;
        switch (p->key) {
        case 0:
            return set_str(p, pr->name, sizeof pr->name, k, s, n);
        case 1:
            return set_str(p, pr->status, sizeof pr->status, k, s, n);
        case 2: {
            int r = set_int(p, &v, 1000000, k, s, n);
            pr->models = (int)v;
            return r;
        }
        }
        break;
    }
    case H_PEER: {
        struct mesh_known_peer *pe = p->peer;
        switch (p->key) {
        case 0:
            return set_str(p, pe->id, sizeof pe->id, k, s, n);
        case 1:
            return set_str(p, pe->addr, sizeof pe->addr, k, s, n);
        case 2:
            pe->healthy = k == V_BOOL && b;
            return 1;
        }
        break;
    }
    default:
        break;
    }
    return 1;
}

/* Pushes a container (or starts skipping one), after on_value said so. */
static int push(struct hparse *p, int r, enum hctx child)
{
    if (r != 2) return r;
    p->depth++;
    if (skipping(p)) return 1;
    if (child == H_SKIP || p->depth > H_DEPTH) {
        p->skip_from = p->depth;
        return 1;
    }
    p->ctx[p->depth - 1] = child;
    p->seen[p->depth - 1] = 0;
    p->key = -1;
    return 1;
}

static int value(void *ctx, enum vkind k, const char *s, size_t n, bool b)
{
    struct hparse *p = ctx;
    if (skipping(p)) {
        if (k == V_MAP || k == V_ARR) p->depth++;
        return 1;
    }
    enum hctx child;
    int r = on_value(p, k, s, n, b, &child);
    if (r == 0) return 0;
    if (p->depth > 0 && here(p) != H_MODELS && here(p) != H_PROVIDERS && here(p) != H_PEERS)
        p->key = -1;
    return push(p, r, child);
}

/* A container closes: an entry is checked and counted. */
static int close_container(void *ctx)
{
    struct hparse *p = ctx;
    if (skipping(p)) {
        if (p->depth == p->skip_from) p->skip_from = 0;
        p->depth--;
        return 1;
    }
    enum hctx c = here(p);
    struct mesh_node_state *o = p->out;
    if (c == H_MODEL) {
        if (!p->model->name[0]) return hfail(p, "%s: a model without a name", "models");
        o->n_models++;
    } else if (c == H_PROVIDER) {
        o->n_providers++;
    } else if (c == H_PEER) {
        /* An entry we cannot use is skipped, not fatal: gossip from a
         * newer node may carry what this one does not know. */
        const struct mesh_known_peer *k = p->peer;
        if ((!k->id[0] || mesh_id_valid(k->id)) && k->addr[0] && strchr(k->addr, ':')) o->n_peers++;
    }
    p->depth--;
    p->key = -1;
    return 1;
}

static int on_key(void *ctx, const unsigned char *s, size_t n)
{
    struct hparse *p = ctx;
    if (skipping(p)) return 1;
    const char *const *keys = keys_of(here(p));
    p->key = -1;
    for (int i = 0; keys && keys[i]; i++) {
        if (strlen(keys[i]) != n || memcmp(keys[i], s, n) != 0) continue;
        uint32_t bit = 1u << i;
        if (p->seen[p->depth - 1] & bit) return hfail(p, "%s: duplicate key", keys[i]);
        p->seen[p->depth - 1] |= bit;
        p->key = i;
        p->key_name = keys[i];
        break;
    }
    return 1;
}

static int on_null(void *ctx)
{
    return value(ctx, V_NULL, NULL, 0, false);
}
static int on_bool(void *ctx, int b)
{
    return value(ctx, V_BOOL, NULL, 0, b != 0);
}
static int on_number(void *ctx, const char *s, size_t n)
{
    return value(ctx, V_NUM, s, n, false);
}
static int on_string(void *ctx, const unsigned char *s, size_t n)
{
    return value(ctx, V_STR, (const char *)s, n, false);
}
static int on_start_map(void *ctx)
{
    return value(ctx, V_MAP, NULL, 0, false);
}
static int on_start_array(void *ctx)
{
    return value(ctx, V_ARR, NULL, 0, false);
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_bool,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = close_container,
    .yajl_start_array = on_start_array,
    .yajl_end_array = close_container,
};

int mesh_state_parse(const char *text, size_t len, struct mesh_node_state *out, char *err,
                     size_t errcap)
{
    memset(out, 0, sizeof *out);
    if (errcap) err[0] = '\0';
    if (len > MESH_MAX_MESSAGE) {
        snprintf(err, errcap, "heartbeat larger than %d bytes", MESH_MAX_MESSAGE);
        return -1;
    }
    struct hparse p = {.out = out, .err = err, .errcap = errcap, .key = -1};
    p.h = yajl_alloc(&callbacks, NULL, &p);
    yajl_config(p.h, yajl_allow_comments, 0);
    yajl_config(p.h, yajl_dont_validate_strings, 0);
    yajl_status st = yajl_parse(p.h, (const unsigned char *)text, len);
    if (st == yajl_status_ok) st = yajl_complete_parse(p.h);
    yajl_free(p.h);
    if (st != yajl_status_ok && !p.failed) hfail(&p, "heartbeat is not a JSON object");
    if (!p.failed && p.v != MESH_WIRE_VERSION) hfail(&p, "%s: unsupported heartbeat version", "v");
    if (!p.failed && !p.have_node) hfail(&p, "%s: missing", "node");
    if (!p.failed && !mesh_id_valid(out->id)) hfail(&p, "%s: missing or invalid", "node.id");
    if (p.failed) {
        mesh_state_cleanup(out);
        return -1;
    }
    return 0;
}
