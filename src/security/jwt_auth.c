/* jwt_auth: the glue between the config snapshot, the refresher and the
 * pure verifier. The refresher pointer is swapped under a mutex; a worker
 * takes a reference to the key set, not to the refresher.
 *
 * Tokens verified are remembered per thread (a small direct-mapped table
 * keyed by the token's SHA-256 and the config snapshot), for at most
 * JWT_CACHE_TTL_S and never past the token's expiry: a client sends the
 * same token on every request, and an RS256 or ES256 check costs tens of
 * microseconds where a lookup costs one hash. A key removed from a JWKS
 * stops accepting tokens it signed within JWT_CACHE_TTL_S. */
#include "security/jwt_auth.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "obs/metrics.h"
#include "security/jwks.h"
#include "security/jwks_fetch.h"

#define JWT_CACHE_SLOTS 64
#define JWT_CACHE_TTL_S 60

struct verified {
    unsigned char digest[32];
    uint64_t generation; /* the config snapshot it was checked under (0: empty slot) */
    uint64_t keys_epoch; /* the fetched key sets it was checked under (jwks_epoch) */
    int64_t until;       /* unix s: used while now < until */
    int64_t exp;
    char key_name[128], tenant[128], role[64]; /* "" when absent (tenant, role) */
};

static _Thread_local struct verified verified[JWT_CACHE_SLOTS];

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct jwks_fetcher *fetcher; /* under mu */

void jwt_auth_configure(const struct config *cfg)
{
    const struct config_jwt *j = &cfg->security.jwt;
    const char *url = cfg->security.auth_jwt ? j->jwks_url : NULL;
    pthread_mutex_lock(&mu);
    struct jwks_fetcher *cur = fetcher;
    bool same = cur && url && strcmp(jwks_fetcher_url(cur), url) == 0 &&
                jwks_fetcher_refresh_ms(cur) == j->refresh_ms;
    pthread_mutex_unlock(&mu);
    if (same || (!cur && !url)) return;
    /* the first fetch happens before the swap: requests keep the old set meanwhile */
    struct jwks_fetcher *next = url ? jwks_fetcher_start(url, j->refresh_ms) : NULL;
    pthread_mutex_lock(&mu);
    fetcher = next;
    pthread_mutex_unlock(&mu);
    jwks_fetcher_stop(cur);
}

void jwt_auth_stop(void)
{
    pthread_mutex_lock(&mu);
    struct jwks_fetcher *cur = fetcher;
    fetcher = NULL;
    pthread_mutex_unlock(&mu);
    jwks_fetcher_stop(cur);
}

static char *dup_or_null(const char *s)
{
    return *s ? xstrdup(s) : NULL;
}

/* The remembered result for this token, or false. */
static bool cache_get(struct verified *slot, const unsigned char *digest, uint64_t gen,
                      uint64_t epoch, int64_t now, struct jwt_result *out)
{
    if (slot->generation != gen || slot->keys_epoch != epoch || now >= slot->until ||
        memcmp(slot->digest, digest, sizeof slot->digest) != 0)
        return false;
    memset(out, 0, sizeof *out);
    out->key_name = dup_or_null(slot->key_name);
    out->tenant = dup_or_null(slot->tenant);
    out->role = dup_or_null(slot->role);
    out->exp = slot->exp;
    if (!out->key_name || (slot->tenant[0] && !out->tenant) || (slot->role[0] && !out->role)) {
        jwt_result_cleanup(out);
        return false;
    }
    return true;
}

static bool fits(const char *s, size_t cap)
{
    return !s || strlen(s) < cap;
}

static void cache_put(struct verified *slot, const unsigned char *digest, uint64_t gen,
                      uint64_t epoch, int64_t now, int64_t leeway_s, const struct jwt_result *r)
{
    if (!fits(r->key_name, sizeof slot->key_name) || !fits(r->tenant, sizeof slot->tenant) ||
        !fits(r->role, sizeof slot->role))
        return;
    memcpy(slot->digest, digest, sizeof slot->digest);
    slot->generation = gen;
    slot->keys_epoch = epoch;
    int64_t until = now + JWT_CACHE_TTL_S;
    if (r->exp + leeway_s < until) until = r->exp + leeway_s;
    slot->until = until;
    slot->exp = r->exp;
    snprintf(slot->key_name, sizeof slot->key_name, "%s", r->key_name);
    snprintf(slot->tenant, sizeof slot->tenant, "%s", r->tenant ? r->tenant : "");
    snprintf(slot->role, sizeof slot->role, "%s", r->role ? r->role : "");
}

static enum jwt_reason verify_now(const struct config *cfg, const char *token,
                                  struct jwt_result *out);

enum jwt_reason jwt_auth_verify(const struct config *cfg, const char *token, struct jwt_result *out)
{
    unsigned char digest[32];
    unsigned int dlen = 0;
    size_t len = strlen(token);
    int64_t now = clock_wall_s();
    bool hashed = len <= 8192 && EVP_Digest(token, len, digest, &dlen, EVP_sha256(), NULL) == 1 &&
                  dlen == sizeof digest;
    struct verified *slot = hashed ? &verified[digest[0] % JWT_CACHE_SLOTS] : NULL;
    /* read before verifying: a set replaced meanwhile leaves this result stale */
    uint64_t epoch = jwks_epoch();
    /* generation 0 never names a snapshot: slots start empty */
    if (slot && cache_get(slot, digest, cfg->generation, epoch, now, out)) return JWT_OK;
    enum jwt_reason r = verify_now(cfg, token, out);
    if (r == JWT_OK && slot)
        cache_put(slot, digest, cfg->generation, epoch, now, cfg->security.jwt.leeway_ms / 1000,
                  out);
    return r;
}

static enum jwt_reason verify_now(const struct config *cfg, const char *token,
                                  struct jwt_result *out)
{
    const struct config_jwt *j = &cfg->security.jwt;
    struct jwks *ks = NULL;
    if (j->jwks_file) {
        ks = jwks_ref(j->jwks);
    } else if (j->jwks_url) {
        pthread_mutex_lock(&mu);
        if (fetcher) ks = jwks_fetcher_get(fetcher);
        pthread_mutex_unlock(&mu);
    }
    struct jwt_verifier v = {
        .secret = (const unsigned char *)j->secret,
        .secret_len = j->secret ? strlen(j->secret) : 0,
        .keys = ks,
        .algs = j->algs,
        .issuer = j->issuer,
        .audience = j->audience,
        .leeway_s = j->leeway_ms / 1000,
        .claim_key_name = j->claim_key_name,
        .claim_tenant = j->claim_tenant,
        .claim_role = j->claim_role,
    };
    /* a jwks_url not fetched yet: an empty set, so that every kid is unknown */
    static const struct jwks no_keys = {.refs = 1, .n = 0};
    if (!j->secret && !ks) v.keys = &no_keys;
    enum jwt_reason r = jwt_verify(&v, token, strlen(token), clock_wall_s(), out);
    jwks_unref(ks);
    if (r == JWT_UNKNOWN_KID && j->jwks_url) {
        pthread_mutex_lock(&mu);
        if (fetcher) jwks_fetcher_kick(fetcher);
        pthread_mutex_unlock(&mu);
    }
    if (r != JWT_OK) metrics_jwt_refused((int)r);
    return r;
}
