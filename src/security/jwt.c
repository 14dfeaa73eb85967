/* jwt: compact JWS verification. The order of checks matters: the header
 * is read only to choose a key, the signature is verified before the
 * payload is parsed, and the claims (time, issuer, audience, mapping) come
 * last, so an unsigned or forged token never reaches the claim code. */
#include "security/jwt.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/alloc.h"
#include "security/jwks.h"

static const char *const reason_names[] = {
#define X(id, name, msg) name,
    JWT_REASON_MAP(X)
#undef X
};

static const char *const reason_messages[] = {
#define X(id, name, msg) msg,
    JWT_REASON_MAP(X)
#undef X
};

const char *jwt_reason_name(enum jwt_reason r)
{
    return (unsigned)r < JWT_N_REASONS ? reason_names[r] : "unknown";
}

const char *jwt_reason_message(enum jwt_reason r)
{
    return (unsigned)r < JWT_N_REASONS ? reason_messages[r] : "The token is invalid.";
}

void jwt_result_cleanup(struct jwt_result *r)
{
    free(r->key_name);
    free(r->tenant);
    free(r->role);
    memset(r, 0, sizeof *r);
}

/* ---- encoding ---- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

long jwt_b64url_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 == 1 || len > LONG_MAX / 3) return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    /* the unused low bits of the last character must be zero (one encoding per value) */
    if (bits && (acc & ((1u << bits) - 1))) return -1;
    out[o] = '\0';
    return (long)o;
}

bool jwt_looks_like(const char *s)
{
    if (!s) return false;
    const char *d1 = strchr(s, '.');
    if (!d1 || d1 == s) return false;
    const char *d2 = strchr(d1 + 1, '.');
    /* (an empty signature is allowed here: "alg none" gets its own refusal) */
    if (!d2 || d2 == d1 + 1) return false;
    return strchr(d2 + 1, '.') == NULL;
}

/* ---- signatures ---- */

static bool verify_hs256(const struct jwt_verifier *v, const char *input, size_t len,
                         const unsigned char *sig, size_t sig_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!v->secret || sig_len != 32) return false;
    if (!HMAC(EVP_sha256(), v->secret, (int)v->secret_len, (const unsigned char *)input, len, mac,
              &mac_len) || mac_len != 32)
        return false;
    bool ok = CRYPTO_memcmp(mac, sig, 32) == 0;
    OPENSSL_cleanse(mac, sizeof mac);
    return ok;
}

/* JWS carries ECDSA as raw r||s (RFC 7518 section 3.4); EVP wants DER.
 * Returns the DER length in *der (OPENSSL_free), or 0. */
static int es256_to_der(const unsigned char *sig, size_t sig_len, unsigned char **der)
{
    *der = NULL;
    if (sig_len != 64) return 0;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    int n = 0;
    if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es now */
        n = i2d_ECDSA_SIG(es, der);
        if (n < 0) n = 0;
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return n;
}

static bool verify_pkey(EVP_PKEY *pkey, const char *input, size_t len, const unsigned char *sig,
                        size_t sig_len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
              EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)input, len) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

static bool verify_with(const struct jwk *k, enum jwt_alg alg, const char *input, size_t len,
                        const unsigned char *sig, size_t sig_len)
{
    if (alg == JWT_RS256) {
        /* PKCS#1 v1.5 is EVP's default padding for an "RSA" key */
        if (!EVP_PKEY_is_a(k->pkey, "RSA") || sig_len != (size_t)EVP_PKEY_get_size(k->pkey))
            return false;
        return verify_pkey(k->pkey, input, len, sig, sig_len);
    }
    unsigned char *der = NULL;
    int der_len = es256_to_der(sig, sig_len, &der);
    bool ok = der_len > 0 && verify_pkey(k->pkey, input, len, der, (size_t)der_len);
    OPENSSL_free(der);
    return ok;
}

/* Whether JWK `k` may verify `alg`: RSA keys only RS256, P-256 keys only
 * ES256, and the key's own "alg" (when given) must agree. */
static bool key_fits(const struct jwk *k, enum jwt_alg alg, const char *alg_name)
{
    if (alg == JWT_RS256 && k->type != JWK_RSA) return false;
    if (alg == JWT_ES256 && k->type != JWK_EC_P256) return false;
    return !k->alg || strcmp(k->alg, alg_name) == 0;
}

/* ---- claims ---- */

/* Claim `name` of `payload`: the member of that name, else a dotted path
 * into nested objects ("realm_access.roles"). */
static json_t *claim(json_t *payload, const char *name)
{
    json_t *v = json_object_get(payload, name);
    if (v || !strchr(name, '.')) return v;
    char *copy = xstrdup(name), *save = NULL;
    v = payload;
    for (char *part = strtok_r(copy, ".", &save); part && v; part = strtok_r(NULL, ".", &save))
        v = json_is_object(v) ? json_object_get(v, part) : NULL;
    free(copy);
    return v;
}

/* A claim value usable as a name: a non-empty string of at most
 * JWT_CLAIM_MAX bytes without control characters. */
static bool usable_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > JWT_CLAIM_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

/* A NumericDate claim: absent (true, *present false), a number (true), or
 * anything else (false). */
static bool numeric_date(json_t *payload, const char *name, int64_t *out, bool *present)
{
    json_t *v = json_object_get(payload, name);
    *present = v != NULL;
    if (!v) return true;
    if (!json_is_number(v)) return false;
    double d = json_number_value(v);
    if (!(d > -1e15 && d < 1e15)) return false; /* NaN never passes */
    *out = (int64_t)d;
    return true;
}

static bool audience_matches(json_t *aud, const char *want)
{
    if (json_is_string(aud)) return strcmp(json_string_value(aud), want) == 0;
    if (!json_is_array(aud)) return false;
    size_t i;
    json_t *a;
    json_array_foreach(aud, i, a)
        if (json_is_string(a) && strcmp(json_string_value(a), want) == 0) return true;
    return false;
}

static enum jwt_reason check_claims(const struct jwt_verifier *v, json_t *payload, int64_t now,
                                    struct jwt_result *out)
{
    int64_t exp = 0, nbf = 0, iat = 0;
    bool has_exp, has_nbf, has_iat;
    if (!numeric_date(payload, "exp", &exp, &has_exp) ||
        !numeric_date(payload, "nbf", &nbf, &has_nbf) ||
        !numeric_date(payload, "iat", &iat, &has_iat))
        return JWT_BAD_CLAIMS;
    if (!has_exp) return JWT_NO_EXPIRY;
    if (now >= exp + v->leeway_s) return JWT_EXPIRED;
    if (has_nbf && now + v->leeway_s < nbf) return JWT_NOT_YET_VALID;
    if (has_iat && now + v->leeway_s < iat) return JWT_NOT_YET_VALID;
    if (v->issuer) {
        const char *iss = json_string_value(json_object_get(payload, "iss"));
        if (!iss || strcmp(iss, v->issuer) != 0) return JWT_WRONG_ISSUER;
    }
    if (v->audience && !audience_matches(json_object_get(payload, "aud"), v->audience))
        return JWT_WRONG_AUDIENCE;
    const char *name = json_string_value(claim(payload, v->claim_key_name ? v->claim_key_name : "sub"));
    if (!usable_name(name)) return JWT_NO_SUBJECT;
    const char *tenant = v->claim_tenant ? json_string_value(claim(payload, v->claim_tenant)) : NULL;
    if (tenant && !usable_name(tenant)) return JWT_BAD_CLAIMS;
    char *role = NULL;
    json_t *r = v->claim_role ? claim(payload, v->claim_role) : NULL;
    if (json_is_string(r) && usable_name(json_string_value(r))) {
        role = xstrdup(json_string_value(r));
    } else if (json_is_array(r)) { /* a list of roles: admin when it lists admin */
        size_t i;
        json_t *a;
        json_array_foreach(r, i, a)
            if (json_is_string(a) && strcmp(json_string_value(a), "admin") == 0) role = xstrdup("admin");
    }
    out->key_name = xstrdup(name);
    out->tenant = tenant ? xstrdup(tenant) : NULL;
    out->role = role;
    out->exp = exp;
    return JWT_OK;
}

/* ---- the whole check ---- */

static json_t *decode_json(const char *part, size_t len, unsigned char *buf)
{
    long n = jwt_b64url_decode(part, len, buf);
    if (n <= 0) return NULL;
    json_t *j = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

enum jwt_reason jwt_verify(const struct jwt_verifier *v, const char *token, size_t len,
                           int64_t now, struct jwt_result *out)
{
    memset(out, 0, sizeof *out);
    if (len > JWT_MAX_LEN) return JWT_TOO_LARGE;
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) return JWT_MALFORMED;
    size_t hl = (size_t)(d1 - token), pl = (size_t)(d2 - d1 - 1);
    size_t sl = len - (size_t)(d2 + 1 - token);
    if (hl == 0 || pl == 0) return JWT_MALFORMED;

    /* One buffer for every decoded part (each at most 3/4 of the token). */
    unsigned char *buf = xmalloc(len + 1);
    enum jwt_reason rc = JWT_MALFORMED;
    json_t *header = decode_json(token, hl, buf), *payload = NULL;
    if (!header) goto out;
    rc = JWT_BAD_HEADER;
    const char *alg_name = json_string_value(json_object_get(header, "alg"));
    json_t *kidv = json_object_get(header, "kid");
    if (!alg_name || (kidv && !json_is_string(kidv))) goto out;
    /* RFC 7515 4.1.11: a critical extension we do not understand is fatal */
    if (json_object_get(header, "crit")) goto out;
    enum jwt_alg alg;
    if (strcmp(alg_name, "HS256") == 0) alg = JWT_HS256;
    else if (strcmp(alg_name, "RS256") == 0) alg = JWT_RS256;
    else if (strcmp(alg_name, "ES256") == 0) alg = JWT_ES256;
    else {
        rc = strcasecmp(alg_name, "none") == 0 ? JWT_ALG_NONE : JWT_ALG_REFUSED;
        goto out;
    }
    rc = JWT_ALG_REFUSED;
    if (!(v->algs & alg) || (alg == JWT_HS256 && !v->secret) || (alg != JWT_HS256 && !v->keys))
        goto out;

    rc = JWT_BAD_SIGNATURE;
    long sig_len = sl ? jwt_b64url_decode(d2 + 1, sl, buf) : -1;
    if (sig_len <= 0) goto out;
    const char *input = token;
    size_t input_len = (size_t)(d2 - token);
    if (alg == JWT_HS256) {
        if (!verify_hs256(v, input, input_len, buf, (size_t)sig_len)) goto out;
    } else {
        /* With a kid: that key (of the right type). Without: every key of
         * the right type is tried (bounded by JWKS_MAX_KEYS). */
        const char *kid = json_string_value(kidv);
        bool tried = false, ok = false;
        for (size_t i = 0; i < v->keys->n && !ok; i++) {
            const struct jwk *k = &v->keys->keys[i];
            if (kid && (!k->kid || strcmp(k->kid, kid) != 0)) continue;
            if (!key_fits(k, alg, alg_name)) continue;
            tried = true;
            ok = verify_with(k, alg, input, input_len, buf, (size_t)sig_len);
        }
        if (!tried) rc = JWT_UNKNOWN_KID;
        if (!ok) goto out;
    }

    rc = JWT_MALFORMED;
    payload = decode_json(d1 + 1, pl, buf);
    if (!payload) goto out;
    rc = check_claims(v, payload, now, out);
out:
    json_decref(header);
    json_decref(payload);
    free(buf);
    return rc;
}
