/* parse_security: the schema of the security section (client keys,
 * authentication, rate limits, CORS), applied by config/walk.h. */
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

/* ---- security ---- */

static const struct key_spec api_key_budget_keys[] = {
    {.name = "daily_limit", .type = KT_MONEY, .offset = AT(struct config_api_key, daily_limit)},
    {.name = "monthly_limit", .type = KT_MONEY, .offset = AT(struct config_api_key, monthly_limit)},
    {.name = NULL},
};

static const struct key_spec api_key_keys[] = {
    {.name = "key", .type = KT_SECRET, .offset = AT(struct config_api_key, key)},
    {.name = "name", .type = KT_STR, .offset = AT(struct config_api_key, name)},
    {.name = "rate_limit", .type = KT_INT, .min = 0, .max = 1000000000, .def = "0", .offset = AT(struct config_api_key, rate_limit_per_hour)},
    {.name = "requests_per_minute", .type = KT_INT, .min = 0, .max = 1000000000, .def = "0", .offset = AT(struct config_api_key, requests_per_minute)},
    {.name = "tokens_per_minute", .type = KT_INT, .min = 0, .max = 1000000000, .def = "0", .offset = AT(struct config_api_key, tokens_per_minute)},
    {.name = "role", .type = KT_STR, .offset = AT(struct config_api_key, role)},
    {.name = "tenant", .type = KT_STR, .offset = AT(struct config_api_key, tenant)},
    {.name = "models", .type = KT_STRLIST, .offset = AT(struct config_api_key, models),
     .count_offset = AT(struct config_api_key, n_models)},
    {.name = "budget", .type = KT_SECTION, .sub = api_key_budget_keys},
    {.name = NULL},
};

static void on_api_key(struct parse_ctx *cx, const struct cnode *m, const char *path,
                       void *base)
{
    struct config *c = base;
    struct config_api_key k = {0};
    walk_defaults(api_key_keys, &k);
    free(cx->secret_reason);
    cx->secret_reason = NULL;
    cx->reason_skip = strlen(path) + 1;
    uint64_t seen = walk_map(cx, m, path, api_key_keys, &k);
    if (!walk_seen_key(api_key_keys, seen, "key")) {
        ERR(cx, m->line, path, "key: missing (expected the secret or ${VAR})");
        free(k.name);
        free(k.role);
        free(k.tenant);
        walk_free_strlist(&k.models, &k.n_models);
        return;
    }
    k.available = k.key != NULL;
    if (k.role && strcmp(k.role, "admin") != 0 && strcmp(k.role, "user") != 0)
        ERR(cx, m->line, path, "role: unknown value '%s' (expected admin, user)", k.role);
    k.admin = k.role && strcmp(k.role, "admin") == 0;
    if (cx->secret_reason) {
        WARN(cx, m->line, path, "%s; this key is disabled", cx->secret_reason);
        free(cx->secret_reason);
        cx->secret_reason = NULL;
    }
    if (!k.name) k.name = xasprintf("key%zu", c->security.n_api_keys + 1);
    c->security.api_keys =
        xrealloc(c->security.api_keys, (c->security.n_api_keys + 1) * sizeof k);
    c->security.api_keys[c->security.n_api_keys++] = k;
}

static void parse_api_keys(struct parse_ctx *cx, const struct cnode *v, const char *path,
                           void *base)
{
    walk_each_item(cx, v, path, on_api_key, base);
}

static void parse_auth_type(struct parse_ctx *cx, const struct cnode *v, const char *path,
                            void *base)
{
    struct config *c = base;
    const char *t = walk_scalar_text(cx, v, path, "api_key");
    if (!t) return;
    /* jwt and oauth2 are in the standard but not implemented: accepting them
     * silently would leave a gateway open that its owner thinks is closed. */
    if (strcmp(t, "api_key") != 0) {
        ERR(cx, v->line, path, "unsupported value '%s' (expected api_key)", t);
        return;
    }
    free(c->security.auth_type);
    c->security.auth_type = xstrdup(t);
}

static const struct key_spec auth_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "false", .offset = CFG(security.auth_enabled)},
    {.name = "type", .type = KT_CUSTOM, .def = "api_key", .parse = parse_auth_type},
    {.name = "api_keys", .type = KT_CUSTOM, .parse = parse_api_keys},
    {.name = NULL},
};

static const struct key_spec rate_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "false", .offset = CFG(security.rate_limiting_enabled)},
    {.name = "default_limit", .type = KT_INT, .min = 0, .max = 1000000000, .def = "0", .offset = CFG(security.default_limit_per_hour)},
    {.name = "by_ip", .type = KT_BOOL, .def = "true", .offset = CFG(security.rl_by_ip)},
    {.name = "by_api_key", .type = KT_BOOL, .def = "true", .offset = CFG(security.rl_by_api_key)},
    {.name = "requests_per_minute", .type = KT_INT, .min = 0, .max = 1000000000, .def = "0", .offset = CFG(security.requests_per_minute)},
    {.name = "tokens_per_minute", .type = KT_INT, .min = 0, .max = 1000000000, .def = "0", .offset = CFG(security.tokens_per_minute)},
    {.name = "trusted_proxies", .type = KT_STRLIST, .offset = CFG(security.trusted_proxies),
     .count_offset = CFG(security.n_trusted_proxies)},
    {.name = NULL},
};

static const struct key_spec cors_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "true", .offset = CFG(security.cors_enabled)},
    {.name = "allowed_origins", .type = KT_STRLIST, .offset = CFG(security.cors_origins),
     .count_offset = CFG(security.n_cors_origins)},
    {.name = NULL},
};

const struct key_spec config_security_keys[] = {
    {.name = "auth", .type = KT_SECTION, .sub = auth_keys},
    {.name = "rate_limiting", .type = KT_SECTION, .sub = rate_keys},
    {.name = "cors", .type = KT_SECTION, .sub = cors_keys},
    {.name = NULL},
};
