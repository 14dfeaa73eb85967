/* redis_store: the response cache's redis backend (see redis_store.h). */
#include "cache/redis_store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <hiredis.h>

#include "cache/cache.h"
#include "cache/memstore.h"
#include "cache/semantic.h"
#include "cluster/redis.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/str.h"
#include "security/digest.h"

#define WATCH_PERIOD_MS 500
/* Entries per XRANGE page. A page is one reply, and a connection fails
 * when it holds more of a reply than it can parse at once (REPLY_MAX_BYTES,
 * 16 MB, in cluster/redis.c): 1000 vectors of 8192 dimensions (32 MB) failed
 * it, and the same page was asked again after the backoff, forever, so the
 * index was never built. The first page is small enough for any vector
 * (100 x 32 KB); the next ones hold about PAGE_BYTES of the vectors seen. */
#define PAGE_FIRST 100
#define PAGE_MAX 1000
#define PAGE_BYTES ((size_t)4 << 20)
#define MAX_PREFIX 120

static struct {
    atomic_bool enabled;
    bool own_redis; /* the settings were opened here (no cluster.redis) */
    char prefix[MAX_PREFIX + 1];
    bool semantic;
    /* the watcher (its thread only) */
    struct event_base *base;
    struct redis_conn *conn;
    struct event *tick;
    pthread_t thread;
    bool thread_started;
    bool busy;               /* a turn's calls are out */
    char last_id[64];        /* the stream's last entry read ("" = none yet) */
    long page;               /* entries the next XRANGE asks for */
    long asked;              /* entries the XRANGE in flight asked for */
    long long clears;        /* the clears counter last seen (-1: unknown) */
    struct cache_mem *front;
    struct sem_index *index;
} w;

bool cache_redis_enabled(void)
{
    return atomic_load_explicit(&w.enabled, memory_order_relaxed);
}

static void hex8(const char *s, char out[17])
{
    unsigned char d[DIGEST_SHA256_LEN];
    digest_sha256(s, strlen(s), d);
    str_hex(d, 8, out);
}

size_t cache_redis_entry_key(char *out, const char *scope, const char *model, const uint8_t key[32])
{
    char hs[17], hm[17], hk[65];
    hex8(scope, hs);
    hex8(model, hm);
    str_hex(key, 32, hk);
    int n = snprintf(out, CACHE_REDIS_KEY_MAX, "%sc:%s:%s:%s", w.prefix, hs, hm, hk);
    return n < 0 ? 0 : (size_t)n;
}

static void on_write(void *arg, struct redisReply *r)
{
    (void)arg;
    if (!r || r->type == REDIS_REPLY_ERROR) cache_count_backend_error();
}

void cache_redis_put(struct redis_conn *c, const char *redis_key, const char *blob, size_t len,
                     int64_t ttl_ms)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%lld", (long long)(ttl_ms > 0 ? ttl_ms : 1));
    const char *argv[] = {"SET", redis_key, blob, "PX", ttl};
    size_t lens[] = {3, strlen(redis_key), len, 2, strlen(ttl)};
    if (redis_conn_call(c, 5, argv, lens, on_write, NULL) != 0) cache_count_backend_error();
}

void cache_redis_put_vector(struct redis_conn *c, const uint8_t partition[32],
                            const uint8_t key[32], const float *vec, size_t dims,
                            int64_t expires_ms, int64_t max_entries)
{
    char stream[MAX_PREFIX + 8], maxlen[24], exp[24];
    snprintf(stream, sizeof stream, "%sc:sem", w.prefix);
    snprintf(maxlen, sizeof maxlen, "%lld", (long long)max_entries);
    snprintf(exp, sizeof exp, "%lld", (long long)expires_ms);
    const char *argv[] = {"XADD", stream, "MAXLEN", "~", maxlen, "*", "p", (const char *)partition,
                          "k", (const char *)key, "x", exp, "v", (const char *)vec};
    size_t lens[] = {4, strlen(stream), 6, 1, strlen(maxlen), 1, 1, 32, 1, 32, 1, strlen(exp), 1,
                     dims * sizeof(float)};
    if (redis_conn_call(c, 14, argv, lens, on_write, NULL) != 0) cache_count_backend_error();
}

/* A glob pattern matching `s` literally (SCAN MATCH). */
static char *glob_escape(struct arena *a, const char *s)
{
    size_t n = strlen(s);
    char *out = arena_alloc(a, 2 * n + 1), *o = out;
    for (; *s; s++) {
        if (strchr("*?[]\\", *s)) *o++ = '\\';
        *o++ = *s;
    }
    *o = '\0';
    return out;
}

static const char clear_script[] =
    "local n = 0\n"
    "local cursor = '0'\n"
    "repeat\n"
    "  local r = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)\n"
    "  cursor = r[1]\n"
    "  for _, k in ipairs(r[2]) do redis.call('UNLINK', k); n = n + 1 end\n"
    "until cursor == '0'\n"
    "if ARGV[2] ~= '' then redis.call('UNLINK', ARGV[2]) end\n"
    "redis.call('INCR', ARGV[3])\n"
    "return n\n";

int cache_redis_clear_command(struct arena *a, const char *model, const char *scope,
                              const char **argv, size_t *lens)
{
    char hs[17] = "*", hm[17] = "*";
    if (scope) hex8(scope, hs);
    if (model) hex8(model, hm);
    int n = 0;
    argv[n++] = "EVAL";
    argv[n++] = clear_script;
    argv[n++] = "0";
    argv[n++] = arena_concat(a, glob_escape(a, w.prefix), "c:", hs, ":", hm, ":*", NULL);
    argv[n++] = model || scope ? "" : arena_concat(a, w.prefix, "c:sem", NULL);
    argv[n++] = arena_concat(a, w.prefix, "c:clears", NULL);
    for (int i = 0; i < n; i++) lens[i] = strlen(argv[i]);
    return n;
}

/* ---- the watcher ---- */

static void on_stream(void *arg, struct redisReply *r);

static void read_stream(void)
{
    char stream[MAX_PREFIX + 8], from[70], count[24];
    snprintf(stream, sizeof stream, "%sc:sem", w.prefix);
    if (w.last_id[0]) snprintf(from, sizeof from, "(%s", w.last_id);
    else snprintf(from, sizeof from, "-");
    if (w.page <= 0) w.page = PAGE_FIRST;
    w.asked = w.page;
    snprintf(count, sizeof count, "%ld", w.asked);
    const char *argv[] = {"XRANGE", stream, from, "+", "COUNT", count};
    size_t lens[6];
    for (int i = 0; i < 6; i++) lens[i] = strlen(argv[i]);
    if (redis_conn_call(w.conn, 6, argv, lens, on_stream, NULL) != 0) w.busy = false;
}

static const struct redisReply *field(const struct redisReply *fields, const char *name)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const struct redisReply *k = fields->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == strlen(name) && memcmp(k->str, name, k->len) == 0)
            return fields->element[i + 1];
    }
    return NULL;
}

static void on_stream(void *arg, struct redisReply *r)
{
    (void)arg;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        w.busy = false;
        return;
    }
    int64_t now = clock_wall_ms();
    for (size_t i = 0; i < r->elements; i++) {
        const struct redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        snprintf(w.last_id, sizeof w.last_id, "%.*s", (int)e->element[0]->len, e->element[0]->str);
        const struct redisReply *f = e->element[1];
        const struct redisReply *p = field(f, "p"), *k = field(f, "k"), *x = field(f, "x"),
                                *v = field(f, "v");
        if (!p || !k || !x || !v || p->len != 32 || k->len != 32 || v->len == 0 ||
            v->len % sizeof(float) != 0)
            continue;
        char exp[24];
        snprintf(exp, sizeof exp, "%.*s", (int)(x->len < 23 ? x->len : 23), x->str);
        int64_t expires = strtoll(exp, NULL, 10);
        if (expires <= now) continue;
        size_t fit = PAGE_BYTES / v->len;
        w.page = fit < 1 ? 1 : fit > PAGE_MAX ? PAGE_MAX : (long)fit;
        size_t dims = v->len / sizeof(float);
        float *vec = xmalloc(v->len); /* the reply's bytes may be unaligned */
        memcpy(vec, v->str, v->len);
        sem_index_add(w.index, (const uint8_t *)p->str, (const uint8_t *)k->str, vec, dims, expires);
        free(vec);
    }
    if ((long)r->elements >= w.asked) {
        read_stream(); /* more to read */
        return;
    }
    w.busy = false;
}

/* The clears counter: another node (or this one) cleared the cache. */
static void on_clears(void *arg, struct redisReply *r)
{
    (void)arg;
    if (!r || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)) {
        w.busy = false;
        return;
    }
    long long n = 0;
    if (r->type == REDIS_REPLY_STRING) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.*s", (int)(r->len < 31 ? r->len : 31), r->str);
        n = strtoll(buf, NULL, 10);
    }
    if (w.clears >= 0 && n != w.clears) {
        /* Entries may be gone: the front forgets everything, the index
         * is read again from the stream (what is left of it). */
        cache_mem_clear(w.front, NULL, NULL);
        if (w.index) sem_index_clear(w.index);
        w.last_id[0] = '\0';
    }
    w.clears = n;
    if (w.semantic && w.index) read_stream();
    else w.busy = false;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (w.busy) return;
    char key[MAX_PREFIX + 12];
    snprintf(key, sizeof key, "%sc:clears", w.prefix);
    const char *argv[] = {"GET", key};
    size_t lens[] = {3, strlen(key)};
    w.busy = true;
    if (redis_conn_call(w.conn, 2, argv, lens, on_clears, NULL) != 0) w.busy = false;
}

static void *watch_main(void *arg)
{
    (void)arg;
    event_base_dispatch(w.base);
    return NULL;
}

int cache_redis_start(const struct config *cfg, char *err, size_t errcap)
{
    if (!cfg->cache.enabled || !cfg->cache.backend_redis) return 0;
    if (!cfg->cluster.redis_url) {
        if (redis_global_init(cfg->cache.redis_url, cfg->cluster.redis_timeout_ms,
                              cfg->cluster.redis_ca_file, err, errcap) != 0)
            return -1;
        w.own_redis = true;
    }
    snprintf(w.prefix, sizeof w.prefix, "%s", cfg->cluster.redis_prefix ? cfg->cluster.redis_prefix : "aiproxy:");
    w.semantic = cfg->cache.semantic.enabled;
    w.clears = -1;
    w.front = cache_store(cfg);
    w.index = w.semantic ? cache_index_create(cfg) : NULL;
    w.base = event_base_new();
    if (!w.base || evthread_make_base_notifiable(w.base) != 0) {
        snprintf(err, errcap, "cannot set up the cache watcher's event loop");
        return -1;
    }
    w.conn = redis_conn_new(w.base);
    w.tick = event_new(w.base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, WATCH_PERIOD_MS * 1000};
    event_add(w.tick, &tv);
    event_active(w.tick, EV_TIMEOUT, 0); /* the index is rebuilt at once */
    atomic_store(&w.enabled, true);
    if (pthread_create(&w.thread, NULL, watch_main, NULL) != 0) {
        snprintf(err, errcap, "cannot start the cache watcher thread");
        return -1;
    }
    w.thread_started = true;
    log_event(LOG_INFO, "cache_redis", "response cache on Redis (prefix %s%s)", w.prefix,
              w.semantic ? ", semantic index rebuilt from its stream" : "");
    return 0;
}

void cache_redis_stop(void)
{
    if (!w.base) return;
    if (w.thread_started) {
        event_base_loopbreak(w.base);
        pthread_join(w.thread, NULL);
        w.thread_started = false;
    }
    redis_conn_free(w.conn);
    w.conn = NULL;
    event_free(w.tick);
    event_base_free(w.base);
    w.base = NULL;
    atomic_store(&w.enabled, false);
    if (w.own_redis) redis_global_cleanup();
}
