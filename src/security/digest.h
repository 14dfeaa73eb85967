/* digest: SHA-256 and HMAC-SHA256 for key lookups, on the request path.
 * OpenSSL 3's one-shot SHA256() and HMAC() look the algorithm up by name on
 * every call (about 0.5 and 1.6 µs); these fetch it once and keep HMAC's
 * padded key states, so a digest of a key costs about 0.2 µs. */
#ifndef AIPROXY_SECURITY_DIGEST_H
#define AIPROXY_SECURITY_DIGEST_H

#include <stddef.h>

#define DIGEST_SHA256_LEN 32

void digest_sha256(const void *data, size_t len, unsigned char out[DIGEST_SHA256_LEN]);

/* An HMAC-SHA256 key with its inner and outer states computed once.
 * Read-only after hmac_key_init, so threads may share one. */
struct hmac_key {
    void *inner, *outer; /* EVP_MD_CTX * (kept out of this header) */
};

void hmac_key_init(struct hmac_key *k, const unsigned char *key, size_t len);
void hmac_key_free(struct hmac_key *k);
void hmac_sha256(const struct hmac_key *k, const void *data, size_t len,
                 unsigned char out[DIGEST_SHA256_LEN]);

#endif
