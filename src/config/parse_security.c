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
#include "security/jwks.h"
#include "security/jwt.h"

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
    /* One name or a list of them. oauth2 is in the standard but not
     * implemented: accepting it silently would leave a gateway open that its
     * owner thinks is closed. */
    bool api_key = false, jwt = false;
    size_t n = v->kind == CNODE_SEQ ? v->n : 1;
    if (v->kind == CNODE_SEQ && n == 0) {
        ERR(cx, v->line, path, "empty list (expected api_key, jwt or both)");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct cnode *item = v->kind == CNODE_SEQ ? v->items[i] : v;
        const char *t = walk_scalar_text(cx, item, path, "api_key, jwt or a list of them");
        if (!t) return;
        if (strcmp(t, "api_key") == 0) api_key = true;
        else if (strcmp(t, "jwt") == 0) jwt = true;
        else {
            ERR(cx, item->line, path, "unsupported value '%s' (expected api_key, jwt)", t);
            return;
        }
    }
    c->security.auth_api_key = api_key;
    c->security.auth_jwt = jwt;
    free(c->security.auth_type);
    c->security.auth_type = xstrdup(api_key && jwt ? "api_key,jwt" : jwt ? "jwt" : "api_key");
}

#define JWT(m) CFG(security.jwt.m)

static const struct key_spec jwt_budget_keys[] = {
    {.name = "daily_limit", .type = KT_MONEY, .offset = JWT(daily_limit)},
    {.name = "monthly_limit", .type = KT_MONEY, .offset = JWT(monthly_limit)},
    {.name = NULL},
};

static const struct key_spec jwt_claim_keys[] = {
    {.name = "key_name", .type = KT_STR, .def = "sub", .offset = JWT(claim_key_name)},
    {.name = "tenant", .type = KT_STR, .offset = JWT(claim_tenant)},
    {.name = "role", .type = KT_STR, .def = "role", .offset = JWT(claim_role)},
    {.name = NULL},
};

static const struct key_spec jwt_keys[] = {
    {.name = "issuer", .type = KT_STR, .offset = JWT(issuer)},
    {.name = "audience", .type = KT_STR, .offset = JWT(audience)},
    {.name = "jwks_file", .type = KT_STR, .offset = JWT(jwks_file)},
    {.name = "jwks_url", .type = KT_STR, .offset = JWT(jwks_url)},
    {.name = "secret", .type = KT_SECRET, .offset = JWT(secret)},
    {.name = "refresh", .type = KT_DURATION, .min = 1000, .max = 24 * 3600 * 1000LL, .def = "5m", .offset = JWT(refresh_ms)},
    {.name = "leeway", .type = KT_DURATION, .min = 0, .max = 3600 * 1000LL, .def = "60s", .offset = JWT(leeway_ms)},
    {.name = "algorithms", .type = KT_STRLIST, .offset = JWT(algorithms), .count_offset = JWT(n_algorithms)},
    {.name = "claims", .type = KT_SECTION, .sub = jwt_claim_keys},
    {.name = "rate_limit", .type = KT_INT, .min = 0, .max = 1000000000, .def = "0", .offset = JWT(rate_limit_per_hour)},
    {.name = "requests_per_minute", .type = KT_INT, .min = 0, .max = 1000000000, .def = "0", .offset = JWT(requests_per_minute)},
    {.name = "tokens_per_minute", .type = KT_INT, .min = 0, .max = 1000000000, .def = "0", .offset = JWT(tokens_per_minute)},
    {.name = "models", .type = KT_STRLIST, .offset = JWT(models), .count_offset = JWT(n_models)},
    {.name = "budget", .type = KT_SECTION, .sub = jwt_budget_keys},
    {.name = NULL},
};

static const struct key_spec auth_keys[] = {
    {.name = "enabled", .type = KT_BOOL, .def = "false", .offset = CFG(security.auth_enabled)},
    {.name = "type", .type = KT_CUSTOM, .def = "api_key", .parse = parse_auth_type},
    {.name = "api_keys", .type = KT_CUSTOM, .parse = parse_api_keys},
    {.name = "jwt", .type = KT_SECTION, .sub = jwt_keys},
    {.name = NULL},
};

/* ---- security.auth.jwt: checks across its keys ---- */

/* http:// is allowed only to this host: a key set fetched in clear over a
 * network could be replaced by anyone on the path, and with it every
 * token's signature. */
static bool loopback_http(const char *url)
{
    if (strncmp(url, "http://", 7) != 0) return false;
    const char *h = url + 7;
    static const char *const loopback[] = {"127.", "localhost:", "localhost/", "[::1]"};
    for (size_t i = 0; i < sizeof loopback / sizeof *loopback; i++)
        if (strncmp(h, loopback[i], strlen(loopback[i])) == 0) return true;
    return strcmp(h, "localhost") == 0;
}

static const struct cnode *jwt_node(const struct cnode *jn, const char *key, int *line)
{
    const struct cnode *n = jn ? cnode_get(jn, key) : NULL;
    if (n) *line = n->line;
    return n;
}

void config_validate_jwt(struct parse_ctx *cx, const struct cnode *root)
{
    struct config *c = cx->cfg;
    struct config_jwt *j = &c->security.jwt;
    const struct cnode *auth = cnode_get(cnode_get(root, "security"), "auth");
    const struct cnode *jn = auth ? cnode_get(auth, "jwt") : NULL;
    int line = jn ? jn->line : auth ? auth->line : root->line;
    if (!c->security.auth_jwt) {
        if (jn && !walk_is_null(jn))
            WARN(cx, line, "security.auth.jwt", "set but security.auth.type does not include jwt "
                 "(ignored)");
        return;
    }
    if (!jn || walk_is_null(jn)) {
        const struct cnode *type = auth ? cnode_get(auth, "type") : NULL;
        ERR(cx, type ? type->line : line, "security.auth.jwt", "missing (expected the token settings: issuer, "
            "audience and one of jwks_file, jwks_url, secret)");
        return;
    }
    int kl = line;
    const struct cnode *secret_node = jwt_node(jn, "secret", &kl);
    int sources = !!j->jwks_file + !!j->jwks_url + !!secret_node;
    if (sources != 1) {
        ERR(cx, line, "security.auth.jwt", "%s (expected exactly one of jwks_file, jwks_url, "
            "secret)", sources ? "more than one key source" : "no key source");
        return;
    }
    if (secret_node) {
        if (!j->secret) {
            ERR(cx, kl, "security.auth.jwt.secret", "is empty (its variable is unset?) (expected "
                "an HS256 key of at least 32 bytes)");
            return;
        }
        if (strlen(j->secret) < 32) {
            ERR(cx, kl, "security.auth.jwt.secret", "too short (expected at least 32 bytes)");
            return;
        }
    }
    if (j->jwks_url) {
        jwt_node(jn, "jwks_url", &kl);
        if (strncmp(j->jwks_url, "https://", 8) != 0 && !loopback_http(j->jwks_url)) {
            ERR(cx, kl, "security.auth.jwt.jwks_url", "'%s' (expected an https:// URL, or "
                "http:// to 127.0.0.1, [::1] or localhost)", j->jwks_url);
            return;
        }
    }
    if (j->jwks_file) {
        char err[300];
        jwt_node(jn, "jwks_file", &kl);
        j->jwks = jwks_load_file(j->jwks_file, err, sizeof err);
        if (!j->jwks) {
            ERR(cx, kl, "security.auth.jwt.jwks_file", "%s", err);
            return;
        }
    }
    /* The algorithms the key source can verify; a listed one it cannot is
     * a mistake worth stopping for. */
    unsigned possible = j->secret ? JWT_HS256 : JWT_RS256 | JWT_ES256;
    j->algs = possible;
    if (j->n_algorithms) {
        jwt_node(jn, "algorithms", &kl);
        j->algs = 0;
        for (size_t i = 0; i < j->n_algorithms; i++) {
            const char *a = j->algorithms[i];
            unsigned bit = strcmp(a, "HS256") == 0 ? JWT_HS256 : strcmp(a, "RS256") == 0 ? JWT_RS256
                         : strcmp(a, "ES256") == 0 ? JWT_ES256 : 0;
            if (!bit) {
                ERR(cx, kl, "security.auth.jwt.algorithms", "unsupported value '%s' (expected "
                    "HS256, RS256, ES256)", a);
                return;
            }
            if (!(bit & possible)) {
                ERR(cx, kl, "security.auth.jwt.algorithms", "'%s' cannot be verified with %s "
                    "(HS256 needs secret; RS256 and ES256 need jwks_file or jwks_url)", a,
                    j->secret ? "secret" : "a key set");
                return;
            }
            j->algs |= bit;
        }
    }
    if (j->claim_key_name && !*j->claim_key_name) {
        free(j->claim_key_name);
        j->claim_key_name = xstrdup("sub");
    }
}

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
