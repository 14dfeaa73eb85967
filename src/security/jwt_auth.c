/* jwt_auth: the glue between the config snapshot, the refresher and the
 * pure verifier. The refresher pointer is swapped under a mutex; a worker
 * takes a reference to the key set, not to the refresher. */
#include "security/jwt_auth.h"

#include <pthread.h>
#include <string.h>

#include "config/config.h"
#include "core/clock.h"
#include "obs/metrics.h"
#include "security/jwks.h"
#include "security/jwks_fetch.h"

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

enum jwt_reason jwt_auth_verify(const struct config *cfg, const char *token, struct jwt_result *out)
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
