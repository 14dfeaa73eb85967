/* proxy_cache: the response cache in the request flow (SPEC section 7).
 *
 *   prepare (before admission): mode and headers -> read/write; the key
 *   begin (after admission):    memory (or Redis' front) -> Redis -> the
 *                               semantic step (embed, search the index,
 *                               fetch the entry) -> hit: answer from the
 *                               entry; miss: the providers (proxy.c)
 *   store:                      a whole answer, or a stream rebuilt from
 *                               its chunks once it ended properly
 *
 * A hit is answered in the request's own shape: whole or streamed (the
 * answer split into chunks, then usage and x-aiproxy, then [DONE]), OpenAI
 * or an inbound format (translated like a provider's answer). It costs
 * nothing but the semantic step's embedding; the ledger records what it
 * saved. Every entry is checked to belong to the caller's scope, model and
 * endpoint before it is served, whatever its key said. */
#include "api/proxy_cache.h"

#include <stdio.h>
#include <string.h>

#include "api/admission.h"
#include "api/cache_embed.h"
#include "api/proxy_context.h"
#include "api/proxy_internal.h"
#include "api/store_call.h"
#include "api/upstream_slot.h"
#include "cache/cache.h"
#include "cache/control.h"
#include "cache/entry.h"
#include "cache/key.h"
#include "cache/memstore.h"
#include "cache/redis_store.h"
#include "cache/semantic.h"
#include "cache/stream.h"
#include "cluster/redis.h"
#include "config/config.h"
#include "core/clock.h"
#include "core/log.h"
#include "http/server.h"
#include "obs/metrics.h"

#include <hiredis.h>

/* The semantic step embeds at most this much text: longer conversations
 * are looked up exactly only (they seldom repeat by meaning, and embedding
 * models take about 8k tokens). */
#define MAX_SEMANTIC_TEXT (24 * 1024)
/* An alias: under a request's raw key, the canonical key of its entry. */
#define ALIAS_MAGIC "AIPA\x01"
#define ALIAS_MAGIC_LEN 5
#define ALIAS_LEN (ALIAS_MAGIC_LEN + CACHE_KEY_LEN)
/* Bytes of content per replayed chunk. */
#define REPLAY_PIECE 48
/* The largest entry written to Redis. A Redis connection fails on a reply
 * of more than 16 MB (REPLY_MAX_BYTES in cluster/redis.c): a larger entry
 * (max_entry_size allows up to 256 MB) was written but could never be read
 * back, and each read of it failed the worker's cache connection, and with
 * it every call waiting there. Such an answer is only kept in the node's
 * memory front (when it fits there). */
#define MAX_REDIS_ENTRY ((size_t)15 << 20)

struct proxy_cache {
    struct proxy *px;
    struct cache_decision d;
    const char *scope, *endpoint, *model;
    /* The raw key (the body's bytes, no parse) is known from the start;
     * the canonical one is built on the first need (ensure_key): a
     * byte-identical repeat is answered through its alias without it. */
    uint8_t raw[CACHE_KEY_LEN];
    bool keyed, unkeyable;
    struct cache_key key;
    char redis_key[CACHE_REDIS_KEY_MAX];
    const char *status; /* "miss", "hit", "semantic_hit"; NULL: not consulted */
    float similarity;
    int64_t age_ms;
    /* the semantic step */
    bool semantic;
    const float *vec;
    size_t dims;
    nanos_t embed_cost;
    struct embed_call *embed;
    /* a streamed answer being rebuilt for storing */
    struct cache_stream_acc *acc;
    bool acc_failed;
};

static int64_t now_wall_ms(void)
{
    return clock_wall_ms();
}

static void free_acc(void *arg)
{
    struct proxy_cache *pc = arg;
    cache_acc_free(pc->acc);
    pc->acc = NULL;
}

static const char *endpoint_name(const struct proxy *px)
{
    if (px->inbound) return px->inbound->name;
    switch (px->kind) {
    case API_CHAT: return "chat";
    case API_COMPLETIONS: return "completions";
    case API_EMBEDDINGS: return "embeddings";
    default: return NULL;
    }
}

bool proxy_cache_prepare(struct proxy *px)
{
    struct http_request *req = px->req;
    const struct config *cfg = req->config;
    if (!cfg->cache.enabled || req->from_peer) return true;
    const char *endpoint = endpoint_name(px);
    if (!endpoint) return true; /* images: every call should differ */
    /* Only answers of an authenticated scope (or of an open gateway). */
    const char *scope = admission_scope(req);
    if (!scope) return true;
    struct proxy_cache *pc = arena_alloc(&req->arena, sizeof *pc);
    memset(pc, 0, sizeof *pc);
    pc->px = px;
    pc->endpoint = endpoint;
    pc->model = px->plan.model;
    pc->scope = scope;
    double t = px->facts.temperature;
    cache_decide(cfg->cache.mode_always, cfg->cache.ttl_ms, http_header_get(req, "x-aiproxy-cache"),
                 http_header_get(req, "cache-control"), http_header_get(req, "x-aiproxy-cache-ttl"),
                 px->facts.n, t >= 0, t, &pc->d);
    if (pc->d.error) {
        http_respond_error(req, GW_ERR_BAD_REQUEST, pc->d.error, pc->d.error_param);
        return false;
    }
    if (!pc->d.read && !pc->d.write) return true;
    cache_key_raw(pc->scope, pc->model, endpoint, req->body, req->body_len, pc->raw);
    px->cache = pc;
    return true;
}

/* The canonical key (a parse of the body), once. False when the body
 * cannot be keyed (duplicate keys, say): then the cache is not used. */
static bool ensure_key(struct proxy_cache *pc)
{
    if (pc->keyed || pc->unkeyable) return pc->keyed;
    struct http_request *req = pc->px->req;
    const struct config *cfg = req->config;
    if (cache_key_build(&req->arena, pc->scope, pc->model, pc->endpoint, req->body, req->body_len,
                        &pc->key) != 0) {
        pc->unkeyable = true;
        return false;
    }
    pc->keyed = true;
    pc->semantic = cfg->cache.semantic.enabled && pc->key.text &&
                   pc->key.text_len <= MAX_SEMANTIC_TEXT &&
                   !(pc->key.has_temperature &&
                     pc->key.temperature > cfg->cache.semantic.max_temperature);
    if (cfg->cache.backend_redis)
        cache_redis_entry_key(pc->redis_key, pc->scope, pc->model, pc->key.exact);
    return true;
}

/* ---- answering from an entry ---- */

/* The model id the provider answered with (x-aiproxy.model on the miss
 * that stored it): a hit's x-aiproxy.model and a replayed stream's closing
 * chunk name it, as the answer's own chunks do. The entry's `model` is the
 * resolved client model, the one it is keyed and checked by. */
static const char *answer_model(const struct cache_entry *e)
{
    return e->upstream_model && *e->upstream_model ? e->upstream_model : e->model;
}

static size_t hit_meta(struct proxy_cache *pc, const struct cache_entry *e, const char *model,
                       char *out, size_t cap)
{
    struct proxy *px = pc->px;
    struct http_request *req = px->req;
    char usd[32];
    money_format_usd(pc->embed_cost, usd, sizeof usd);
    char saved[32];
    money_format_usd(e->cost_nanos, saved, sizeof saved);
    struct jsonw w;
    jsonw_init(&w, out, cap);
    jsonw_raw(&w, "{\"request_id\":");
    jsonw_str(&w, req->id);
    jsonw_raw(&w, ",\"provider\":");
    jsonw_str(&w, e->provider);
    jsonw_raw(&w, ",\"node\":");
    jsonw_str(&w, req->config->node.id);
    jsonw_raw(&w, ",\"model\":");
    jsonw_str(&w, model);
    jsonw_raw(&w, ",\"requested_model\":");
    jsonw_str(&w, px->facts.model[0] ? px->facts.model : px->plan.model);
    proxy_cache_meta(px, &w);
    proxy_context_meta(px, &w);
    jsonw_raw(&w, ",\"cost\":");
    jsonw_raw(&w, usd);
    jsonw_raw(&w, ",\"saved\":");
    jsonw_raw(&w, saved);
    jsonw_raw(&w, ",\"latency_ms\":");
    jsonw_int(&w, (clock_mono_us() - req->start_us) / 1000);
    jsonw_raw(&w, ",\"usage_estimated\":");
    jsonw_raw(&w, e->usage_estimated ? "true" : "false");
    jsonw_raw(&w, ",\"providers_tried\":[],\"attempts\":[],\"failovers\":0}");
    return jsonw_len(&w);
}

struct replay_ctx {
    struct proxy *px;
};

static void emit_raw(void *ctx, const char *bytes, size_t len)
{
    struct proxy *px = ctx;
    http_stream_write(px->req, bytes, len);
}

static void emit_chunk(void *ctx, const char *json, size_t len)
{
    struct proxy *px = ctx;
    if (px->inbound_state) px->inbound->stream_chunk(px->inbound_state, json, len, emit_raw, px);
    else http_stream_write3(px->req, "data: ", 6, json, len, "\n\n", 2);
}

static void replay_stream(struct proxy_cache *pc, const struct cache_entry *e, const char *upstream,
                          const char *meta, size_t mlen, const char *headers)
{
    struct proxy *px = pc->px;
    struct http_request *req = px->req;
    bool completions = px->kind == API_COMPLETIONS;
    proxy_stream_open(px, arena_concat(&req->arena, "Cache-Control: no-cache\r\n", headers, NULL));
    cache_replay(&req->arena, e->body, e->body_len, completions, req->id, REPLAY_PIECE, emit_chunk,
                 px);
    char model[600];
    struct jsonw w;
    jsonw_init(&w, model, sizeof model);
    jsonw_str(&w, upstream);
    char *chunk = arena_printf(&req->arena,
                               "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":%s,"
                               "\"choices\":[],\"usage\":{\"prompt_tokens\":%lld,"
                               "\"completion_tokens\":%lld,\"total_tokens\":%lld},\"x-aiproxy\":%.*s}",
                               req->id, completions ? "text_completion" : "chat.completion.chunk",
                               (long long)clock_wall_s(), model, (long long)e->prompt_tokens,
                               (long long)e->completion_tokens,
                               (long long)(e->prompt_tokens + e->completion_tokens), (int)mlen, meta);
    if (px->inbound_state) {
        proxy_inbound_stream_finish(px, chunk, strlen(chunk));
    } else {
        http_stream_write3(req, "data: ", 6, chunk, strlen(chunk), "\n\ndata: [DONE]\n\n", 16);
    }
    proxy_stream_close(px);
}

static void respond_whole(struct proxy_cache *pc, const struct cache_entry *e, const char *meta,
                          size_t mlen, const char *headers)
{
    struct proxy *px = pc->px;
    struct http_request *req = px->req;
    struct resp_facts rf;
    if (scan_response(e->body, e->body_len, &rf) != 0) {
        http_respond_error(req, GW_ERR_INTERNAL, "A cached answer could not be read.", NULL);
        return;
    }
    static const char key[] = ",\"x-aiproxy\":";
    size_t skip = rf.root_empty ? 1 : 0;
    size_t n = e->body_len + mlen + sizeof key;
    char *out = arena_alloc(&req->arena, n + 1);
    size_t o = 0;
    memcpy(out, e->body, rf.close_off);
    o += rf.close_off;
    memcpy(out + o, key + skip, sizeof key - 1 - skip);
    o += sizeof key - 1 - skip;
    memcpy(out + o, meta, mlen);
    o += mlen;
    memcpy(out + o, e->body + rf.close_off, e->body_len - rf.close_off);
    o += e->body_len - rf.close_off;
    if (px->inbound) {
        char *translated;
        size_t tlen;
        if (px->inbound->response_from_openai(&req->arena, px->inbound_ctx, out, o, &translated, &tlen) != 0) {
            http_respond_error(req, GW_ERR_UPSTREAM,
                               "The cached answer could not be translated to this API.", NULL);
            return;
        }
        out = translated;
        o = tlen;
        proxy_inbound_done(px);
    }
    proxy_respond_answer(px, headers, out, o);
}

/* Whether `blob` is a live entry of this request's scope, model and
 * endpoint (decoded into *e). */
static bool entry_usable(const struct proxy_cache *pc, const char *blob, size_t len, int64_t now,
                         struct cache_entry *e)
{
    return cache_entry_decode(blob, len, e) == 0 && e->expires_ms > now &&
           strcmp(e->scope, pc->scope) == 0 && strcmp(e->model, pc->model) == 0 &&
           strcmp(e->endpoint, pc->endpoint) == 0;
}

/* Serves `blob` when it is a live entry of this request's scope, model
 * and endpoint. Returns false (nothing sent) otherwise. True: the answer
 * may have freed the request at once (its arena, with pc, and its config
 * reference): the caller must not touch them again. */
static bool serve_blob(struct proxy_cache *pc, const char *blob, size_t len, bool semantic)
{
    struct proxy *px = pc->px;
    struct http_request *req = px->req;
    struct cache_entry e;
    int64_t now = now_wall_ms();
    if (!entry_usable(pc, blob, len, now, &e)) return false;
    pc->status = semantic ? "semantic_hit" : "hit";
    char meta[4096];
    size_t mlen = 0;
    req->acct.cache = pc->status;
    req->acct.saved_nanos = e.cost_nanos;
    /* Not the provider's request: per-provider figures stay the providers' own. */
    req->acct.provider = "cache";
    req->acct.cost_nanos = pc->embed_cost;
    req->acct.tokens_in = req->acct.tokens_out = 0;
    req->acct.estimated = false;
    req->acct.failovers = 0;
    pc->age_ms = now - e.created_ms;
    const char *upstream = answer_model(&e);
    mlen = hit_meta(pc, &e, upstream, meta, sizeof meta);
    cache_count_hit(semantic, e.cost_nanos);
    proxy_context_done(px); /* a hit is an answer the caller got */
    const char *headers = arena_concat(&req->arena, "x-aiproxy-cache: ", pc->status,
                                       "\r\nx-aiproxy-provider: ", e.provider, "\r\n", NULL);
    if (req->acct.stream) replay_stream(pc, &e, upstream, meta, mlen, headers);
    else respond_whole(pc, &e, meta, mlen, headers);
    return true;
}

/* ---- the lookup ---- */

static void miss(struct proxy_cache *pc)
{
    pc->status = "miss";
    pc->px->req->acct.cache = "miss";
    if (pc->d.read) cache_count_miss();
    proxy_start_next(pc->px);
}

/* A vector found in the index: its entry, from memory or Redis. */
static void fetch_semantic(struct proxy_cache *pc, const uint8_t key[32]);

static void on_embedding(void *arg, const float *vec, size_t dims, nanos_t cost)
{
    struct proxy_cache *pc = arg;
    struct http_request *req = pc->px->req;
    pc->embed = NULL;
    pc->embed_cost = cost;
    if (!vec) {
        cache_count_embed_error();
        miss(pc);
        return;
    }
    pc->vec = vec;
    pc->dims = dims;
    if (!pc->d.read) { /* refresh: the vector only goes with the answer it stores */
        miss(pc);
        return;
    }
    struct sem_index *idx = cache_index_create(req->config);
    uint8_t key[32];
    float sim = 0;
    if (!sem_index_search(idx, pc->key.partition, vec, dims,
                          (float)req->config->cache.semantic.threshold, now_wall_ms(), key, &sim)) {
        miss(pc);
        return;
    }
    pc->similarity = sim;
    fetch_semantic(pc, key);
}

static void semantic_step(struct proxy_cache *pc)
{
    struct http_request *req = pc->px->req;
    if (!pc->semantic || !pc->d.read) {
        /* Refresh still embeds: the answer it stores is found by meaning later. */
        if (pc->semantic && pc->d.write) {
            pc->embed = embed_start(req, req->config->cache.semantic.embedding_model, pc->key.text,
                                    pc->key.text_len, req->config->cache.semantic.timeout_ms,
                                    on_embedding, pc);
            if (pc->embed) return;
        }
        miss(pc);
        return;
    }
    pc->embed = embed_start(req, req->config->cache.semantic.embedding_model, pc->key.text,
                            pc->key.text_len, req->config->cache.semantic.timeout_ms, on_embedding,
                            pc);
    if (!pc->embed) {
        cache_count_embed_error();
        miss(pc);
    }
}

struct redis_get {
    struct proxy_cache *pc;
    bool semantic;
    uint8_t key[32]; /* semantic: the entry the index pointed at */
};

static void on_redis_get(struct http_request *req, redisReply *r, void *data)
{
    struct redis_get *g = data;
    struct proxy_cache *pc = g->pc;
    if (!r || r->type == REDIS_REPLY_ERROR) cache_count_backend_error();
    if (r && r->type == REDIS_REPLY_STRING) {
        /* Kept in front for the next reads on this node - before it is
         * served: serving may free the request, and with it pc, g and the
         * config (the put used to come after, and stored the entry under
         * freed memory's key, so that the front missed it). */
        struct cache_entry e;
        if (entry_usable(pc, r->str, r->len, now_wall_ms(), &e))
            cache_mem_put(cache_store(req->config), g->semantic ? g->key : pc->key.exact, r->str,
                          r->len, e.expires_ms);
        if (serve_blob(pc, r->str, r->len, g->semantic)) return;
    }
    if (g->semantic) {
        /* The entry is gone (expired, cleared): so is its vector. */
        struct sem_index *idx = cache_index();
        if (idx && (!r || r->type == REDIS_REPLY_NIL)) sem_index_remove(idx, g->key);
        miss(pc);
        return;
    }
    semantic_step(pc);
}

/* Asks Redis for the entry under `redis_key`; false when Redis cannot be
 * asked now. */
static bool redis_get(struct proxy_cache *pc, const char *redis_key, bool semantic,
                      const uint8_t key[32])
{
    struct http_request *req = pc->px->req;
    struct redis_conn *c = api_cache_conn(req->worker);
    if (!c) return false;
    struct redis_get *g = arena_alloc(&req->arena, sizeof *g);
    g->pc = pc;
    g->semantic = semantic;
    memcpy(g->key, key, 32);
    const char *argv[] = {"GET", arena_strdup(&req->arena, redis_key)};
    size_t lens[] = {3, strlen(argv[1])};
    if (store_call_command_on(c, req, 2, argv, lens, on_redis_get, g, NULL) != 0) {
        cache_count_backend_error();
        return false;
    }
    return true;
}

static void fetch_semantic(struct proxy_cache *pc, const uint8_t key[32])
{
    struct http_request *req = pc->px->req;
    char *blob;
    size_t len;
    if (cache_mem_get(cache_store(req->config), key, now_wall_ms(), &req->arena, &blob, &len) &&
        serve_blob(pc, blob, len, true))
        return;
    if (req->config->cache.backend_redis) {
        char rk[CACHE_REDIS_KEY_MAX];
        cache_redis_entry_key(rk, pc->scope, pc->model, key);
        if (redis_get(pc, rk, true, key)) return;
    } else {
        struct sem_index *idx = cache_index();
        if (idx) sem_index_remove(idx, key);
    }
    miss(pc);
}

/* A byte-identical repeat: its raw key's alias names the entry. */
static bool serve_alias(struct proxy_cache *pc)
{
    struct http_request *req = pc->px->req;
    struct cache_mem *m = cache_store(req->config);
    int64_t now = now_wall_ms();
    char *blob;
    size_t len;
    if (!cache_mem_get(cache_aliases(req->config), pc->raw, now, &req->arena, &blob, &len))
        return false;
    if (len != ALIAS_LEN || memcmp(blob, ALIAS_MAGIC, ALIAS_MAGIC_LEN) != 0) return false;
    const uint8_t *key = (const uint8_t *)blob + ALIAS_MAGIC_LEN;
    if (!cache_mem_get(m, key, now, &req->arena, &blob, &len)) return false;
    return serve_blob(pc, blob, len, false); /* its scope, model and endpoint checked there */
}

void proxy_cache_begin(struct proxy *px)
{
    struct proxy_cache *pc = px->cache;
    if (!pc) {
        proxy_start_next(px);
        return;
    }
    struct http_request *req = px->req;
    if (pc->d.read && serve_alias(pc)) return;
    if (!ensure_key(pc)) {
        px->cache = NULL; /* not a body the cache can key: served as usual */
        proxy_start_next(px);
        return;
    }
    if (pc->d.read) {
        char *blob;
        size_t len;
        if (cache_mem_get(cache_store(req->config), pc->key.exact, now_wall_ms(), &req->arena,
                          &blob, &len) &&
            serve_blob(pc, blob, len, false))
            return;
        if (req->config->cache.backend_redis && redis_get(pc, pc->redis_key, false, pc->key.exact))
            return;
    }
    semantic_step(pc);
}

/* ---- what a served answer says ---- */

const char *proxy_cache_header(const struct proxy *px)
{
    const struct proxy_cache *pc = px->cache;
    return pc && pc->status ? (strcmp(pc->status, "miss") == 0 ? "x-aiproxy-cache: miss\r\n" : "")
                            : "";
}

void proxy_cache_meta(const struct proxy *px, struct jsonw *w)
{
    const struct proxy_cache *pc = px->cache;
    if (!pc || !pc->status) return;
    jsonw_raw(w, ",\"cache\":{\"status\":");
    jsonw_str(w, pc->status);
    if (strcmp(pc->status, "miss") != 0) {
        jsonw_raw(w, ",\"age_s\":");
        jsonw_int(w, pc->age_ms / 1000);
    }
    if (strcmp(pc->status, "semantic_hit") == 0) {
        char sim[32];
        snprintf(sim, sizeof sim, "%.4f", (double)pc->similarity);
        jsonw_raw(w, ",\"similarity\":");
        jsonw_raw(w, sim);
    }
    jsonw_raw(w, "}");
}

nanos_t proxy_cache_cost(const struct proxy *px)
{
    return px->cache ? px->cache->embed_cost : 0;
}

/* ---- storing ---- */

static void store(struct proxy_cache *pc, const char *body, size_t len, const struct usage *u,
                  bool estimated)
{
    struct proxy *px = pc->px;
    struct http_request *req = px->req;
    const struct config *cfg = req->config;
    if (!ensure_key(pc)) return;
    if ((int64_t)len > cfg->cache.max_entry_size) {
        cache_count_not_stored();
        return;
    }
    int64_t now = now_wall_ms();
    nanos_t cost = req->acct.cost_nanos - pc->embed_cost - px->hedge_loser_cost;
    struct cache_entry e = {
        .created_ms = now,
        .expires_ms = now + pc->d.ttl_ms,
        .prompt_tokens = u->prompt_tokens,
        .completion_tokens = u->completion_tokens,
        .cached_tokens = u->cached_tokens,
        .cost_nanos = cost > 0 ? cost : 0,
        .usage_estimated = estimated,
        .scope = pc->scope,
        .model = pc->model,
        .endpoint = pc->endpoint,
        .provider = px->relay.present ? px->relay.provider : px->cand->provider->name,
        .upstream_model = px->cand->model->upstream_id,
        .body = body,
        .body_len = len,
    };
    size_t blen;
    char *blob = cache_entry_encode(&req->arena, &e, &blen);
    struct cache_mem *m = cache_store(cfg);
    if (cache_mem_put(m, pc->key.exact, blob, blen, e.expires_ms)) {
        char alias[ALIAS_LEN];
        memcpy(alias, ALIAS_MAGIC, ALIAS_MAGIC_LEN);
        memcpy(alias + ALIAS_MAGIC_LEN, pc->key.exact, CACHE_KEY_LEN);
        cache_mem_put(cache_aliases(cfg), pc->raw, alias, sizeof alias, e.expires_ms);
    }
    struct redis_conn *c = cfg->cache.backend_redis ? api_cache_conn(req->worker) : NULL;
    if (blen > MAX_REDIS_ENTRY) c = NULL; /* neither the entry nor its vector */
    if (c) cache_redis_put(c, pc->redis_key, blob, blen, pc->d.ttl_ms);
    if (pc->vec) {
        struct sem_index *idx = cache_index_create(cfg);
        sem_index_add(idx, pc->key.partition, pc->key.exact, pc->vec, pc->dims, e.expires_ms);
        if (c)
            cache_redis_put_vector(c, pc->key.partition, pc->key.exact, pc->vec, pc->dims,
                                   e.expires_ms, cfg->cache.semantic.max_entries);
    }
    cache_count_store();
}

void proxy_cache_store_whole(struct proxy *px, const char *body, size_t len,
                             const struct resp_facts *rf)
{
    struct proxy_cache *pc = px->cache;
    if (!pc || !pc->d.write) return;
    if (rf->usage.present) {
        store(pc, body, len, &px->usage, px->usage_estimated);
        return;
    }
    /* The provider sent no usage: keep the estimate with the answer. */
    struct arena *a = &px->req->arena;
    char *with = arena_printf(a, "%.*s%s\"usage\":{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,"
                                 "\"total_tokens\":%lld}%.*s",
                              (int)rf->close_off, body, rf->root_empty ? "" : ",",
                              (long long)px->usage.prompt_tokens,
                              (long long)px->usage.completion_tokens,
                              (long long)px->usage.total_tokens, (int)(len - rf->close_off),
                              body + rf->close_off);
    store(pc, with, strlen(with), &px->usage, px->usage_estimated);
}

void proxy_cache_stream_chunk(struct proxy *px, const char *json, size_t len)
{
    struct proxy_cache *pc = px->cache;
    if (!pc || !pc->d.write || pc->acc_failed) return;
    if (!pc->acc) {
        pc->acc = cache_acc_new(px->kind == API_COMPLETIONS);
        arena_on_free(&px->req->arena, free_acc, pc);
    }
    if (cache_acc_feed(pc->acc, json, len) != 0 ||
        (int64_t)cache_acc_bytes(pc->acc) > px->req->config->cache.max_entry_size) {
        pc->acc_failed = true;
        free_acc(pc);
    }
}

void proxy_cache_store_stream(struct proxy *px)
{
    struct proxy_cache *pc = px->cache;
    if (!pc || !pc->d.write) return;
    if (pc->acc_failed || !pc->acc) {
        cache_count_not_stored();
        return;
    }
    size_t len = 0;
    char *body = cache_acc_finish(pc->acc, &px->req->arena, px->usage.prompt_tokens,
                                  px->usage.completion_tokens, &len);
    free_acc(pc);
    if (!body) {
        cache_count_not_stored();
        return;
    }
    store(pc, body, len, &px->usage, px->usage_estimated);
}

void proxy_cache_abort(struct proxy *px)
{
    struct proxy_cache *pc = px->cache;
    if (!pc) return;
    embed_cancel(pc->embed);
    pc->embed = NULL;
}
