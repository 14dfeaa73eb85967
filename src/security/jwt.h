/* jwt: verification of JSON Web Tokens in compact JWS form (RFC 7515,
 * 7519) for security.auth.type jwt. Pure: no I/O and no globals; the
 * caller gives the keys (an HS256 secret and/or a JWKS), the accepted
 * algorithms, the expected issuer and audience, the clock and the leeway.
 * The algorithm must be both accepted and matched to the key's type
 * (HS256 only with the configured secret, RS256 only with RSA keys, ES256
 * only with EC P-256 keys), so "none" and algorithm confusion (an HS256
 * token signed with a public key) are refused. Signatures are checked
 * with OpenSSL's EVP; no home-made crypto. */
#ifndef AIPROXY_SECURITY_JWT_H
#define AIPROXY_SECURITY_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jwks;

#define JWT_MAX_LEN 8192   /* a presented token's size cap */
#define JWT_CLAIM_MAX 200  /* a mapped claim's (key name, tenant, role) length cap */

enum jwt_alg {
    JWT_HS256 = 1,
    JWT_RS256 = 2,
    JWT_ES256 = 4,
};
#define JWT_ALL_ALGS (JWT_HS256 | JWT_RS256 | JWT_ES256)

/* Every outcome: name (metrics, logs) and the 401 message. No message
 * echoes any part of the token. */
#define JWT_REASON_MAP(X)                                                                      \
    X(OK, "ok", "")                                                                            \
    X(MALFORMED, "malformed", "The token is not a well-formed JWT.")                          \
    X(TOO_LARGE, "too_large", "The token is too large.")                                      \
    X(BAD_HEADER, "bad_header", "The token's header is invalid.")                             \
    X(ALG_NONE, "alg_none", "Unsigned tokens (alg none) are not accepted.")                   \
    X(ALG_REFUSED, "alg_refused", "The token's signing algorithm is not accepted.")           \
    X(UNKNOWN_KID, "unknown_kid", "The token's signing key (kid) is not known.")              \
    X(BAD_SIGNATURE, "bad_signature", "The token's signature is invalid.")                    \
    X(BAD_CLAIMS, "bad_claims", "The token's claims are invalid.")                            \
    X(EXPIRED, "expired", "The token has expired.")                                           \
    X(NOT_YET_VALID, "not_yet_valid", "The token is not valid yet.")                          \
    X(NO_EXPIRY, "no_expiry", "The token has no expiry (exp).")                               \
    X(WRONG_ISSUER, "wrong_issuer", "The token was issued by another issuer.")                \
    X(WRONG_AUDIENCE, "wrong_audience", "The token is meant for another audience.")           \
    X(NO_SUBJECT, "no_subject", "The token does not name its holder (the key name claim is "  \
                                "missing or invalid).")

enum jwt_reason {
#define X(id, name, msg) JWT_##id,
    JWT_REASON_MAP(X)
#undef X
    JWT_N_REASONS
};

const char *jwt_reason_name(enum jwt_reason r);
const char *jwt_reason_message(enum jwt_reason r);

/* What a token is checked against (all borrowed). */
struct jwt_verifier {
    const unsigned char *secret; /* HS256 key; NULL: HS256 refused */
    size_t secret_len;
    const struct jwks *keys;     /* RS256/ES256 keys; NULL: none */
    unsigned algs;               /* enum jwt_alg bits accepted */
    const char *issuer;          /* NULL: iss not checked */
    const char *audience;        /* NULL: aud not checked */
    int64_t leeway_s;            /* clock skew allowed on exp, nbf, iat */
    /* Claim names (a name, else a dotted path into nested objects). */
    const char *claim_key_name;  /* e.g. "sub"; required in the token */
    const char *claim_tenant;    /* NULL: no tenant */
    const char *claim_role;      /* NULL: no role */
};

/* The mapped claims of a valid token (heap strings; jwt_result_cleanup). */
struct jwt_result {
    char *key_name; /* never NULL after JWT_OK */
    char *tenant;   /* NULL when absent */
    char *role;     /* "admin" when the role claim is, or lists, "admin"; else its
                     * string value or NULL */
    int64_t exp;
};

void jwt_result_cleanup(struct jwt_result *r);

/* Whether `s` has the shape of a compact JWS (three dot-separated parts,
 * the first two non-empty), so that it is verified as a token rather than
 * looked up as a key. */
bool jwt_looks_like(const char *s);

/* Verifies `token` (len bytes) at wall time `now` (Unix seconds). On
 * JWT_OK fills `out` (the caller cleans it up); on any other result
 * `out` is left empty. Never reads past `len`. */
enum jwt_reason jwt_verify(const struct jwt_verifier *v, const char *token, size_t len,
                           int64_t now, struct jwt_result *out);

/* Strict base64url without padding (RFC 7515 section 2) into `out`
 * (room for len*3/4+1 bytes). Returns the decoded length, or -1. */
long jwt_b64url_decode(const char *in, size_t len, unsigned char *out);

#endif
