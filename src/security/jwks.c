/* jwks: JWKS documents into EVP_PKEYs (OpenSSL 3 EVP_PKEY_fromdata), and
 * the reference-counted holder workers read while a refresh swaps it. */
#include "security/jwks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>

#include "core/alloc.h"
#include "security/jwt.h"

#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192
#define B64_FIELD_MAX 2048 /* base64url characters of one parameter (n of 8192 bits is 683) */

/* ---- parameters ---- */

/* Decodes base64url member `name` of `key` into a heap buffer. A trailing
 * '=' padding is tolerated here (some issuers pad; the document is trusted
 * as much as the issuer is). Returns the length, or -1. */
static long b64_member(json_t *key, const char *name, unsigned char **out)
{
    *out = NULL;
    const char *s = json_string_value(json_object_get(key, name));
    if (!s) return -1;
    size_t len = strlen(s);
    while (len && s[len - 1] == '=') len--;
    if (len == 0 || len > B64_FIELD_MAX) return -1;
    *out = xmalloc(len * 3 / 4 + 1);
    long n = jwt_b64url_decode(s, len, *out);
    if (n <= 0) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return n;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    if (!pkey) return NULL;
    /* a point off the curve, an even exponent...: refused here, not at verify */
    EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    int ok = check && EVP_PKEY_public_check(check) == 1;
    EVP_PKEY_CTX_free(check);
    if (!ok) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    return pkey;
}

static EVP_PKEY *rsa_key(json_t *key, const char **why)
{
    unsigned char *n = NULL, *e = NULL;
    long nl = b64_member(key, "n", &n), el = b64_member(key, "e", &e);
    EVP_PKEY *pkey = NULL;
    BIGNUM *bn = NULL, *be = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    *why = "RSA key: n and e must be base64url";
    if (nl < 0 || el < 0 || el > 8) goto out;
    bn = BN_bin2bn(n, (int)nl, NULL);
    be = BN_bin2bn(e, (int)el, NULL);
    *why = "RSA key: invalid parameters";
    if (!bn || !be) goto out;
    if (BN_num_bits(bn) < RSA_MIN_BITS || BN_num_bits(bn) > RSA_MAX_BITS) {
        *why = "RSA key: the modulus must have 2048 to 8192 bits";
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        goto out;
    pkey = from_params("RSA", bld);
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    free(n);
    free(e);
    return pkey;
}

static EVP_PKEY *ec_key(json_t *key, const char **why)
{
    unsigned char *x = NULL, *y = NULL;
    long xl = b64_member(key, "x", &x), yl = b64_member(key, "y", &y);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    *why = "EC key: x and y must be 32 bytes each, base64url";
    if (xl != 32 || yl != 32) goto out;
    unsigned char point[65];
    point[0] = 0x04; /* uncompressed */
    memcpy(point + 1, x, 32);
    memcpy(point + 33, y, 32);
    *why = "EC key: not a point of P-256";
    bld = OSSL_PARAM_BLD_new();
    if (!bld ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point))
        goto out;
    pkey = from_params("EC", bld);
out:
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    return pkey;
}

/* ---- documents ---- */

static struct jwks *jwks_alloc(size_t cap)
{
    struct jwks *ks = xcalloc(1, sizeof *ks + cap * sizeof(struct jwk));
    ks->refs = 1;
    return ks;
}

static void jwks_free(struct jwks *ks)
{
    for (size_t i = 0; i < ks->n; i++) {
        free(ks->keys[i].kid);
        free(ks->keys[i].alg);
        EVP_PKEY_free(ks->keys[i].pkey);
    }
    free(ks);
}

struct jwks *jwks_parse(const char *text, size_t len, char *err, size_t errcap)
{
    if (len > JWKS_MAX_BYTES) {
        snprintf(err, errcap, "the key set is larger than %d bytes", JWKS_MAX_BYTES);
        return NULL;
    }
    json_error_t je;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        snprintf(err, errcap, "not valid JSON (line %d: %s)", je.line, je.text);
        return NULL;
    }
    json_t *keys = json_object_get(doc, "keys");
    if (!json_is_object(doc) || !json_is_array(keys)) {
        snprintf(err, errcap, "expected a JSON object with a \"keys\" array");
        json_decref(doc);
        return NULL;
    }
    size_t cap = json_array_size(keys) < JWKS_MAX_KEYS ? json_array_size(keys) : JWKS_MAX_KEYS;
    struct jwks *ks = jwks_alloc(cap);
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k) {
        if (ks->n == cap) break;
        if (!json_is_object(k)) {
            snprintf(err, errcap, "keys[%zu]: expected an object", i);
            goto fail;
        }
        const char *kty = json_string_value(json_object_get(k, "kty"));
        const char *use = json_string_value(json_object_get(k, "use"));
        const char *crv = json_string_value(json_object_get(k, "crv"));
        json_t *kid = json_object_get(k, "kid"), *alg = json_object_get(k, "alg");
        if (!kty) {
            snprintf(err, errcap, "keys[%zu]: kty missing", i);
            goto fail;
        }
        if (use && strcmp(use, "sig") != 0) continue; /* an encryption key */
        if ((kid && !json_is_string(kid)) || (alg && !json_is_string(alg))) {
            snprintf(err, errcap, "keys[%zu]: kid and alg must be strings", i);
            goto fail;
        }
        enum jwk_type type;
        if (strcmp(kty, "RSA") == 0) type = JWK_RSA;
        else if (strcmp(kty, "EC") == 0 && crv && strcmp(crv, "P-256") == 0) type = JWK_EC_P256;
        else continue; /* oct, OKP, other curves: not for us */
        const char *why = NULL;
        EVP_PKEY *pkey = type == JWK_RSA ? rsa_key(k, &why) : ec_key(k, &why);
        if (!pkey) {
            snprintf(err, errcap, "keys[%zu]: %s", i, why);
            goto fail;
        }
        struct jwk *dst = &ks->keys[ks->n++];
        dst->type = type;
        dst->pkey = pkey;
        dst->kid = kid ? xstrdup(json_string_value(kid)) : NULL;
        dst->alg = alg ? xstrdup(json_string_value(alg)) : NULL;
    }
    json_decref(doc);
    if (ks->n == 0) {
        snprintf(err, errcap, "no usable key (RSA or EC P-256 signing keys)");
        jwks_free(ks);
        return NULL;
    }
    return ks;
fail:
    json_decref(doc);
    jwks_free(ks);
    return NULL;
}

struct jwks *jwks_load_file(const char *path, char *err, size_t errcap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errcap, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = xmalloc(JWKS_MAX_BYTES + 1);
    size_t n = fread(buf, 1, JWKS_MAX_BYTES + 1, f);
    bool bad = ferror(f);
    fclose(f);
    struct jwks *ks = NULL;
    if (bad) snprintf(err, errcap, "cannot read %s", path);
    else if (n > JWKS_MAX_BYTES) snprintf(err, errcap, "%s is larger than %d bytes", path, JWKS_MAX_BYTES);
    else ks = jwks_parse(buf, n, err, errcap);
    free(buf);
    return ks;
}

struct jwks *jwks_ref(struct jwks *ks)
{
    if (ks) __atomic_add_fetch(&ks->refs, 1, __ATOMIC_RELAXED);
    return ks;
}

void jwks_unref(struct jwks *ks)
{
    if (ks && __atomic_sub_fetch(&ks->refs, 1, __ATOMIC_ACQ_REL) == 0) jwks_free(ks);
}

/* ---- the holder ---- */

/* Bumped whenever any holder's set is replaced (see jwks_epoch). */
static uint64_t sets_replaced;

uint64_t jwks_epoch(void)
{
    return __atomic_load_n(&sets_replaced, __ATOMIC_ACQUIRE);
}

void jwks_holder_init(struct jwks_holder *h)
{
    pthread_mutex_init(&h->mu, NULL);
    h->cur = NULL;
}

void jwks_holder_cleanup(struct jwks_holder *h)
{
    jwks_unref(h->cur);
    h->cur = NULL;
    pthread_mutex_destroy(&h->mu);
}

struct jwks *jwks_holder_get(struct jwks_holder *h)
{
    pthread_mutex_lock(&h->mu);
    struct jwks *ks = jwks_ref(h->cur);
    pthread_mutex_unlock(&h->mu);
    return ks;
}

void jwks_holder_set(struct jwks_holder *h, struct jwks *ks)
{
    pthread_mutex_lock(&h->mu);
    struct jwks *old = h->cur;
    h->cur = ks;
    __atomic_add_fetch(&sets_replaced, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&h->mu);
    jwks_unref(old); /* (outside the lock: freeing keys takes a while) */
}
