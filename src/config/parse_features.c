/* parse_features: the schema of the sections for the subsystems beyond a
 * single proxy: cluster (shared state), cache, context and the Responses
 * API's store, applied by config/walk.h. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/redis_url.h"
#include "config/parse_sections.h"
#include "config/walk.h"
#include "core/alloc.h"
#include "core/dburl.h"
#include "core/log.h"

/* ---- cluster ---- */

static void parse_store_down(struct parse_ctx *cx, const struct cnode *v, const char *path,
                             void *base)
{
    struct config *c = base;
    const char *t = walk_scalar_text(cx, v, path, "local or closed");
    if (!t) return;
    if (strcmp(t, "local") == 0) c->cluster.store_down_closed = false;
    else if (strcmp(t, "closed") == 0) c->cluster.store_down_closed = true;
    else ERR(cx, v->line, path, "'%s' is not local or closed", t);
}

static const struct key_spec redis_keys[] = {
    {.name = "url", .type = KT_STR, .offset = CFG(cluster.redis_url)},
    {.name = "prefix", .type = KT_STR, .def = "aiproxy:", .offset = CFG(cluster.redis_prefix)},
    {.name = "timeout", .type = KT_DURATION, .min = 1, .max = 60000, .def = "50ms", .offset = CFG(cluster.redis_timeout_ms)},
    {.name = "ca_file", .type = KT_STR, .offset = CFG(cluster.redis_ca_file)},
    {.name = NULL},
};

const struct key_spec config_cluster_keys[] = {
    {.name = "redis", .type = KT_SECTION, .sub = redis_keys},
    {.name = "on_store_down", .type = KT_CUSTOM, .def = "local", .parse = parse_store_down},
    {.name = NULL},
};

/* ---- cache ---- */

static void parse_cache_mode(struct parse_ctx *cx, const struct cnode *v, const char *path,
                             void *base)
{
    struct config *c = base;
    const char *t = walk_scalar_text(cx, v, path, "opt_in or always");
    if (!t) return;
    if (strcmp(t, "opt_in") == 0) c->cache.mode_always = false;
    else if (strcmp(t, "always") == 0) c->cache.mode_always = true;
    else ERR(cx, v->line, path, "'%s' is not opt_in or always", t);
}

static void parse_cache_backend(struct parse_ctx *cx, const struct cnode *v, const char *path,
                                void *base)
{
    struct config *c = base;
    const char *t = walk_scalar_text(cx, v, path, "memory or redis");
    if (!t) return;
    if (strcmp(t, "memory") == 0) c->cache.backend_redis = false;
    else if (strcmp(t, "redis") == 0) c->cache.backend_redis = true;
    else ERR(cx, v->line, path, "'%s' is not memory or redis", t);
}

/* A sampling temperature, 0 to 2 (OpenAI's range). */
static void parse_max_temperature(struct parse_ctx *cx, const struct cnode *v, const char *path,
                                  void *base)
{
    struct config *c = base;
    const char *t = walk_scalar_text(cx, v, path, "a number from 0 to 2");
    if (!t) return;
    char *end = NULL;
    double d = strtod(t, &end);
    if (!end || end == t || *end || !(d >= 0 && d <= 2))
        ERR(cx, v->line, path, "'%s' is not a number from 0 to 2", t);
    else c->cache.semantic.max_temperature = d;
}

static const struct key_spec cache_redis_keys[] = {
    {.name = "url", .type = KT_STR, .offset = CFG(cache.redis_url)},
    {.name = "front_memory", .type = KT_SIZE, .min = 0, .max = 16384LL * MB, .def = "8MB", .offset = CFG(cache.front_memory)},
    {.name = NULL},
};

static const struct key_spec cache_semantic_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "false", .offset = CFG(cache.semantic.enabled)},
    {.name = "embedding_model", .type = KT_STR, .def = "text-embedding-3-small", .offset = CFG(cache.semantic.embedding_model)},
    {.name = "threshold", .type = KT_RATIO, .def = "0.95", .offset = CFG(cache.semantic.threshold)},
    {.name = "max_entries", .type = KT_INT, .min = 1, .max = 10000000, .def = "100000", .offset = CFG(cache.semantic.max_entries)},
    {.name = "max_temperature", .type = KT_CUSTOM, .def = "1.0", .parse = parse_max_temperature},
    {.name = "timeout", .type = KT_DURATION, .min = 1, .max = 600000, .def = "2s", .offset = CFG(cache.semantic.timeout_ms)},
    {.name = NULL},
};

const struct key_spec config_cache_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "false", .offset = CFG(cache.enabled)},
    {.name = "mode", .type = KT_CUSTOM, .def = "opt_in", .parse = parse_cache_mode},
    {.name = "ttl", .type = KT_DURATION, .min = 1000, .max = 365LL * 86400 * 1000, .def = "1h", .offset = CFG(cache.ttl_ms)},
    {.name = "max_memory", .type = KT_SIZE, .min = 64 * KB, .max = 1024LL * 1024 * MB, .def = "64MB", .offset = CFG(cache.max_memory)},
    {.name = "max_entry_size", .type = KT_SIZE, .min = 1 * KB, .max = 256 * MB, .def = "1MB", .offset = CFG(cache.max_entry_size)},
    {.name = "backend", .type = KT_CUSTOM, .def = "memory", .parse = parse_cache_backend},
    {.name = "redis", .type = KT_SECTION, .sub = cache_redis_keys},
    {.name = "semantic", .type = KT_SECTION, .sub = cache_semantic_keys},
    {.name = NULL},
};

/* ---- context ---- */

const struct key_spec config_context_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "true", .offset = CFG(context.enabled)},
    {.name = "max_inject_tokens", .type = KT_INT, .min = 100, .max = 10000000, .def = "8000", .offset = CFG(context.max_inject_tokens)},
    {.name = "max_files", .type = KT_INT, .min = 1, .max = 1000000, .def = "2000", .offset = CFG(context.max_files)},
    {.name = "max_bytes", .type = KT_SIZE, .min = 1 * KB, .max = 4096LL * MB, .def = "20MB", .offset = CFG(context.max_bytes)},
    {.name = "max_projects", .type = KT_INT, .min = 1, .max = 100000, .def = "50", .offset = CFG(context.max_projects)},
    {.name = "ttl", .type = KT_DURATION, .min = 0, .max = 3650LL * 86400 * 1000, .def = "7d", .offset = CFG(context.ttl_ms)},
    {.name = NULL},
};

/* ---- responses ---- */

const struct key_spec config_responses_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "true", .offset = CFG(responses.enabled)},
    {.name = "retention", .type = KT_DURATION, .min = 60 * 1000, .max = 3650LL * 86400 * 1000, .def = "30d", .offset = CFG(responses.retention_ms)},
    {.name = NULL},
};
