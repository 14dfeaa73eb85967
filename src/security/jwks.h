/* jwks: JSON Web Key Sets (RFC 7517) as OpenSSL keys, for verifying JWTs
 * (security/jwt.h). A parsed set is immutable and reference-counted, so a
 * worker can keep using the set it took while a refresh replaces it: the
 * holder swaps the pointer under a mutex and the last user frees the old
 * set. Only signing keys JWT verification can use are kept: RSA (2048 bits
 * or more, for RS256) and EC P-256 (for ES256). */
#ifndef AIPROXY_SECURITY_JWKS_H
#define AIPROXY_SECURITY_JWKS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#define JWKS_MAX_BYTES (1024 * 1024) /* a JWKS document's size cap */
#define JWKS_MAX_KEYS 64             /* keys kept from one document */

enum jwk_type { JWK_RSA, JWK_EC_P256 };

/* One key of a set (owned by the set). */
struct jwk {
    char *kid;         /* NULL when the key has none */
    enum jwk_type type;
    char *alg;         /* the key's "alg" when given (e.g. "RS256"), else NULL */
    EVP_PKEY *pkey;
};

struct jwks {
    int refs; /* atomic */
    size_t n;
    struct jwk keys[];
};

/* Parses a JWKS document ({"keys": [...]}). Keys of other types (oct, OKP,
 * other curves) and keys whose "use" is not "sig" are skipped; a key of a
 * supported type with missing or invalid parameters, an RSA key under 2048
 * bits, a document that is not a JSON object with a "keys" array, or one
 * without any usable key is an error. Returns a set with one reference, or
 * NULL with a message in `err` (never containing key material). */
struct jwks *jwks_parse(const char *text, size_t len, char *err, size_t errcap);

/* Reads and parses a JWKS file (capped at JWKS_MAX_BYTES). */
struct jwks *jwks_load_file(const char *path, char *err, size_t errcap);

/* Takes one more reference (NULL is returned as is). */
struct jwks *jwks_ref(struct jwks *ks);
/* Drops one reference; frees the set at zero. NULL is ignored. */
void jwks_unref(struct jwks *ks);

/* ---- the holder: the current set, replaced while workers read ---- */

struct jwks_holder {
    pthread_mutex_t mu;
    struct jwks *cur; /* NULL until a set was stored */
};

void jwks_holder_init(struct jwks_holder *h);
/* Drops the held set. */
void jwks_holder_cleanup(struct jwks_holder *h);
/* The current set with a reference the caller drops with jwks_unref, or
 * NULL when none was stored yet. */
struct jwks *jwks_holder_get(struct jwks_holder *h);
/* Replaces the current set; takes ownership of `ks` (one reference). */
void jwks_holder_set(struct jwks_holder *h, struct jwks *ks);
/* A number that changes whenever any holder's set is replaced: a result
 * remembered under one epoch must not outlive it (a rotated-out key). */
uint64_t jwks_epoch(void);

#endif
