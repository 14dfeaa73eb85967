/* auth: key extraction and constant-time lookup. Both sides are hashed
 * with SHA-256 first so that the comparison length never depends on the
 * secret. */
#include "security/auth.h"

#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "config/config.h"
#include "security/digest.h"

const char *auth_presented_key(const char *authorization, const char *x_api_key)
{
    if (authorization) {
        const char *s = authorization;
        while (*s == ' ') s++;
        if (strncasecmp(s, "Bearer ", 7) == 0) {
            s += 7;
            while (*s == ' ') s++;
            if (*s) return s;
        }
    }
    if (x_api_key && *x_api_key) return x_api_key;
    return NULL;
}

const struct config_api_key *auth_find_key(const struct config *cfg, const char *presented)
{
    if (!presented) return NULL;
    unsigned char want[DIGEST_SHA256_LEN];
    digest_sha256(presented, strlen(presented), want);
    const struct config_api_key *found = NULL;
    for (size_t i = 0; i < cfg->security.n_api_keys; i++) {
        const struct config_api_key *k = &cfg->security.api_keys[i];
        if (!k->available || !k->key || !*k->key) continue;
        if (CRYPTO_memcmp(want, k->key_sha256, sizeof want) == 0 && !found) found = k;
    }
    return found;
}
