/* jwt_test: security/jwt and security/jwks with keys generated here by
 * OpenSSL: good HS256/RS256/ES256 tokens, alg none, algorithm confusion,
 * time claims and leeway edges, issuer and audience, unknown kid, broken
 * encodings, duplicate keys, size caps, flipped bits, DER-vs-raw ECDSA,
 * claims mapping and JWKS parsing errors. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "security/jwks.h"
#include "security/jwt.h"

#define NOW 1700000000LL
static const char SECRET[] = "0123456789abcdef0123456789abcdef";

static EVP_PKEY *rsa_key, *ec_key, *rsa_other;
static struct jwks *keys;

/* ---- helpers ---- */

static char *b64url(const unsigned char *in, size_t n)
{
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n * 4 / 3 + 4), *o = out;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = al[v >> 18], *o++ = al[(v >> 12) & 63], *o++ = al[(v >> 6) & 63], *o++ = al[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *o++ = al[v >> 18], *o++ = al[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *o++ = al[v >> 18], *o++ = al[(v >> 12) & 63], *o++ = al[(v >> 6) & 63];
    }
    *o = '\0';
    return out;
}

static char *b64s(const char *s) { return b64url((const unsigned char *)s, strlen(s)); }

static char *bn_b64(EVP_PKEY *k, const char *param)
{
    BIGNUM *bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
    unsigned char buf[1024];
    int n = BN_bn2bin(bn, buf);
    BN_free(bn);
    return b64url(buf, (size_t)n);
}

/* JWKS text for the test keys. */
static char *jwks_text(void)
{
    char *n = bn_b64(rsa_key, OSSL_PKEY_PARAM_RSA_N), *e = bn_b64(rsa_key, OSSL_PKEY_PARAM_RSA_E);
    unsigned char pt[65];
    size_t ptl = 0;
    assert_int_equal(EVP_PKEY_get_octet_string_param(ec_key, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt, &ptl), 1);
    assert_int_equal(ptl, 65);
    char *x = b64url(pt + 1, 32), *y = b64url(pt + 33, 32);
    size_t cap = 4096;
    char *out = malloc(cap);
    snprintf(out, cap,
             "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r1\",\"use\":\"sig\",\"alg\":\"RS256\",\"n\":\"%s\",\"e\":\"%s\"},"
             "{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"},"
             "{\"kty\":\"oct\",\"kid\":\"o1\",\"k\":\"c2VjcmV0\"},"
             "{\"kty\":\"RSA\",\"kid\":\"enc\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
             n, e, x, y);
    free(n), free(e), free(x), free(y);
    return out;
}

/* header.payload.signature with `alg` over `key` (HS: the secret bytes). */
static char *make(const char *header, const char *payload, const char *alg, const void *key,
                  size_t keylen, bool der)
{
    char *h = b64s(header), *p = b64s(payload);
    size_t il = strlen(h) + strlen(p) + 1;
    char *input = malloc(il + 1);
    snprintf(input, il + 1, "%s.%s", h, p);
    unsigned char sig[1024];
    size_t sl = 0;
    if (strcmp(alg, "HS256") == 0) {
        unsigned int ml = 0;
        HMAC(EVP_sha256(), key, (int)keylen, (unsigned char *)input, il, sig, &ml);
        sl = ml;
    } else if (strcmp(alg, "RS256") == 0 || strcmp(alg, "ES256") == 0) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        sl = sizeof sig;
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, (EVP_PKEY *)key), 1);
        assert_int_equal(EVP_DigestSign(md, sig, &sl, (unsigned char *)input, il), 1);
        EVP_MD_CTX_free(md);
        if (strcmp(alg, "ES256") == 0 && !der) { /* DER -> JOSE raw r||s */
            const unsigned char *q = sig;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)sl);
            assert_non_null(es);
            BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
            BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
            ECDSA_SIG_free(es);
            sl = 64;
        }
    }
    char *s = b64url(sig, sl);
    size_t tl = il + strlen(s) + 2;
    char *tok = malloc(tl);
    snprintf(tok, tl, "%s.%s", input, s);
    free(h), free(p), free(input), free(s);
    return tok;
}

static char *hs(const char *payload)
{
    return make("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload, "HS256", SECRET, strlen(SECRET), false);
}

static struct jwt_verifier verifier(void)
{
    return (struct jwt_verifier){
        .secret = (const unsigned char *)SECRET, .secret_len = strlen(SECRET), .keys = keys,
        .algs = JWT_ALL_ALGS, .issuer = "iss1", .audience = "aud1", .leeway_s = 60,
        .claim_key_name = "sub", .claim_tenant = "org", .claim_role = "role"};
}

static enum jwt_reason check(const struct jwt_verifier *v, char *tok)
{
    struct jwt_result r;
    enum jwt_reason rc = jwt_verify(v, tok, strlen(tok), NOW, &r);
    if (rc == JWT_OK) assert_non_null(r.key_name);
    else assert_null(r.key_name);
    jwt_result_cleanup(&r);
    free(tok);
    return rc;
}

#define GOOD "\"iss\":\"iss1\",\"aud\":\"aud1\",\"sub\":\"alice\",\"exp\":1700000600"

/* ---- setup ---- */

static int setup(void **state)
{
    rsa_key = EVP_RSA_gen(2048);
    rsa_other = EVP_RSA_gen(2048);
    ec_key = EVP_EC_gen("P-256");
    assert_non_null(rsa_key), assert_non_null(ec_key), assert_non_null(rsa_other);
    char *t = jwks_text(), err[256];
    keys = jwks_parse(t, strlen(t), err, sizeof err);
    if (!keys) fail_msg("jwks_parse: %s", err);
    free(t);
    return 0;
}

static int teardown(void **state)
{
    jwks_unref(keys);
    EVP_PKEY_free(rsa_key), EVP_PKEY_free(ec_key), EVP_PKEY_free(rsa_other);
    return 0;
}

/* ---- tests ---- */

static void test_jwks_parse(void **state)
{
    assert_int_equal(keys->n, 2); /* oct and the encryption key skipped */
    assert_string_equal(keys->keys[0].kid, "r1");
    assert_int_equal(keys->keys[1].type, JWK_EC_P256);
    char err[256];
    const char *bad[] = {
        "", "[]", "{}", "{\"keys\":{}}", "{\"keys\":[]}", "{\"keys\":[1]}",
        "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AA\"}]}",
        "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",          /* 17-bit modulus */
        "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"!!\",\"e\":\"AQAB\"}]}",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}",
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
        "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}", /* not on the curve */
        "{\"keys\":[{\"kty\":\"RSA\",\"kid\":5}]}",
        "{\"keys\":[],\"keys\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct jwks *ks = jwks_parse(bad[i], strlen(bad[i]), err, sizeof err);
        if (ks) fail_msg("accepted: %s", bad[i]);
        assert_true(err[0]);
    }
    assert_null(jwks_load_file("/nonexistent/jwks.json", err, sizeof err));
    assert_non_null(strstr(err, "cannot read"));
}

static void test_good_tokens(void **state)
{
    struct jwt_verifier v = verifier();
    struct jwt_result r;
    char *t = hs("{" GOOD ",\"org\":\"acme\",\"role\":\"admin\"}");
    assert_int_equal(jwt_verify(&v, t, strlen(t), NOW, &r), JWT_OK);
    assert_string_equal(r.key_name, "alice");
    assert_string_equal(r.tenant, "acme");
    assert_string_equal(r.role, "admin");
    jwt_result_cleanup(&r);
    free(t);
    assert_int_equal(check(&v, make("{\"alg\":\"RS256\",\"kid\":\"r1\"}", "{" GOOD "}", "RS256", rsa_key, 0, false)), JWT_OK);
    assert_int_equal(check(&v, make("{\"alg\":\"ES256\",\"kid\":\"e1\"}", "{" GOOD "}", "ES256", ec_key, 0, false)), JWT_OK);
    /* without a kid, every key of the right type is tried */
    assert_int_equal(check(&v, make("{\"alg\":\"RS256\"}", "{" GOOD "}", "RS256", rsa_key, 0, false)), JWT_OK);
    /* nested claims and a role list */
    v.claim_role = "realm.roles";
    t = hs("{" GOOD ",\"realm\":{\"roles\":[\"user\",\"admin\"]}}");
    assert_int_equal(jwt_verify(&v, t, strlen(t), NOW, &r), JWT_OK);
    assert_string_equal(r.role, "admin");
    assert_null(r.tenant);
    jwt_result_cleanup(&r);
    free(t);
}

static void test_alg_none_and_confusion(void **state)
{
    struct jwt_verifier v = verifier();
    char *h = b64s("{\"alg\":\"none\"}"), *p = b64s("{" GOOD "}"), tok[2048];
    snprintf(tok, sizeof tok, "%s.%s.", h, p);
    assert_int_equal(check(&v, strdup(tok)), JWT_ALG_NONE);
    snprintf(tok, sizeof tok, "%s.%s.AAAA", h, p);
    assert_int_equal(check(&v, strdup(tok)), JWT_ALG_NONE);
    free(h), free(p);
    h = b64s("{\"alg\":\"NoNe\"}"), p = b64s("{" GOOD "}");
    snprintf(tok, sizeof tok, "%s.%s.", h, p);
    assert_int_equal(check(&v, strdup(tok)), JWT_ALG_NONE);
    free(h), free(p);
    assert_int_equal(check(&v, make("{\"alg\":\"HS512\"}", "{" GOOD "}", "HS256", SECRET, strlen(SECRET), false)), JWT_ALG_REFUSED);
    assert_int_equal(check(&v, make("{\"alg\":\"PS256\",\"kid\":\"r1\"}", "{" GOOD "}", "RS256", rsa_key, 0, false)), JWT_ALG_REFUSED);
    /* HS256 keyed with the RSA public key's PEM: never verified with JWK material */
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, rsa_key);
    char *pem = NULL;
    long pl = BIO_get_mem_data(bio, &pem);
    struct jwt_verifier keys_only = verifier();
    keys_only.secret = NULL;
    keys_only.algs = JWT_RS256 | JWT_ES256;
    assert_int_equal(check(&keys_only, make("{\"alg\":\"HS256\",\"kid\":\"r1\"}", "{" GOOD "}", "HS256", pem, (size_t)pl, false)), JWT_ALG_REFUSED);
    keys_only.algs = JWT_ALL_ALGS; /* even when HS256 is listed: no secret, no HS256 */
    assert_int_equal(check(&keys_only, make("{\"alg\":\"HS256\",\"kid\":\"r1\"}", "{" GOOD "}", "HS256", pem, (size_t)pl, false)), JWT_ALG_REFUSED);
    assert_int_equal(check(&v, make("{\"alg\":\"HS256\",\"kid\":\"r1\"}", "{" GOOD "}", "HS256", pem, (size_t)pl, false)), JWT_BAD_SIGNATURE);
    BIO_free(bio);
    /* an algorithm outside the accepted set */
    v.algs = JWT_ES256;
    assert_int_equal(check(&v, make("{\"alg\":\"RS256\",\"kid\":\"r1\"}", "{" GOOD "}", "RS256", rsa_key, 0, false)), JWT_ALG_REFUSED);
    assert_int_equal(check(&v, hs("{" GOOD "}")), JWT_ALG_REFUSED);
    /* RS256 with the EC key's kid, ES256 with the RSA key's: the key type must match */
    v.algs = JWT_ALL_ALGS;
    assert_int_equal(check(&v, make("{\"alg\":\"RS256\",\"kid\":\"e1\"}", "{" GOOD "}", "RS256", rsa_key, 0, false)), JWT_UNKNOWN_KID);
    assert_int_equal(check(&v, make("{\"alg\":\"ES256\",\"kid\":\"r1\"}", "{" GOOD "}", "ES256", ec_key, 0, false)), JWT_UNKNOWN_KID);
    /* a critical header we do not understand */
    assert_int_equal(check(&v, make("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", "{" GOOD "}", "HS256", SECRET, strlen(SECRET), false)), JWT_BAD_HEADER);
}

static void test_time_claims(void **state)
{
    struct jwt_verifier v = verifier();
    char p[256];
    /* leeway 60: exp == now-59 passes, now-60 is expired */
    snprintf(p, sizeof p, "{\"iss\":\"iss1\",\"aud\":\"aud1\",\"sub\":\"a\",\"exp\":%lld}", NOW - 59);
    assert_int_equal(check(&v, hs(p)), JWT_OK);
    snprintf(p, sizeof p, "{\"iss\":\"iss1\",\"aud\":\"aud1\",\"sub\":\"a\",\"exp\":%lld}", NOW - 60);
    assert_int_equal(check(&v, hs(p)), JWT_EXPIRED);
    v.leeway_s = 0;
    snprintf(p, sizeof p, "{\"iss\":\"iss1\",\"aud\":\"aud1\",\"sub\":\"a\",\"exp\":%lld}", NOW);
    assert_int_equal(check(&v, hs(p)), JWT_EXPIRED);
    snprintf(p, sizeof p, "{\"iss\":\"iss1\",\"aud\":\"aud1\",\"sub\":\"a\",\"exp\":%lld}", NOW + 1);
    assert_int_equal(check(&v, hs(p)), JWT_OK);
    v.leeway_s = 60;
    snprintf(p, sizeof p, "{" GOOD ",\"nbf\":%lld}", NOW + 60);
    assert_int_equal(check(&v, hs(p)), JWT_OK);
    snprintf(p, sizeof p, "{" GOOD ",\"nbf\":%lld}", NOW + 61);
    assert_int_equal(check(&v, hs(p)), JWT_NOT_YET_VALID);
    snprintf(p, sizeof p, "{" GOOD ",\"iat\":%lld}", NOW + 3600);
    assert_int_equal(check(&v, hs(p)), JWT_NOT_YET_VALID);
    assert_int_equal(check(&v, hs("{\"iss\":\"iss1\",\"aud\":\"aud1\",\"sub\":\"a\"}")), JWT_NO_EXPIRY);
    assert_int_equal(check(&v, hs("{" GOOD ",\"nbf\":\"soon\"}")), JWT_BAD_CLAIMS);
    assert_int_equal(check(&v, hs("{\"iss\":\"iss1\",\"aud\":\"aud1\",\"sub\":\"a\",\"exp\":1e300}")), JWT_BAD_CLAIMS);
}

static void test_iss_aud_sub(void **state)
{
    struct jwt_verifier v = verifier();
    assert_int_equal(check(&v, hs("{\"iss\":\"other\",\"aud\":\"aud1\",\"sub\":\"a\",\"exp\":1700000600}")), JWT_WRONG_ISSUER);
    assert_int_equal(check(&v, hs("{\"aud\":\"aud1\",\"sub\":\"a\",\"exp\":1700000600}")), JWT_WRONG_ISSUER);
    assert_int_equal(check(&v, hs("{\"iss\":\"iss1\",\"aud\":\"aud2\",\"sub\":\"a\",\"exp\":1700000600}")), JWT_WRONG_AUDIENCE);
    assert_int_equal(check(&v, hs("{\"iss\":\"iss1\",\"sub\":\"a\",\"exp\":1700000600}")), JWT_WRONG_AUDIENCE);
    assert_int_equal(check(&v, hs("{\"iss\":\"iss1\",\"aud\":[\"x\",\"aud1\"],\"sub\":\"a\",\"exp\":1700000600}")), JWT_OK);
    assert_int_equal(check(&v, hs("{\"iss\":\"iss1\",\"aud\":[\"x\",7],\"sub\":\"a\",\"exp\":1700000600}")), JWT_WRONG_AUDIENCE);
    assert_int_equal(check(&v, hs("{\"iss\":\"iss1\",\"aud\":\"aud1\",\"exp\":1700000600}")), JWT_NO_SUBJECT);
    assert_int_equal(check(&v, hs("{\"iss\":\"iss1\",\"aud\":\"aud1\",\"sub\":\"\",\"exp\":1700000600}")), JWT_NO_SUBJECT);
    assert_int_equal(check(&v, hs("{\"iss\":\"iss1\",\"aud\":\"aud1\",\"sub\":\"a\\nb\",\"exp\":1700000600}")), JWT_NO_SUBJECT);
    assert_int_equal(check(&v, hs("{\"iss\":\"iss1\",\"aud\":\"aud1\",\"sub\":12,\"exp\":1700000600}")), JWT_NO_SUBJECT);
    v.issuer = v.audience = NULL; /* not checked when not configured */
    assert_int_equal(check(&v, hs("{\"sub\":\"a\",\"exp\":1700000600}")), JWT_OK);
}

static void test_broken_tokens(void **state)
{
    struct jwt_verifier v = verifier();
    const char *bad[] = {"", ".", "..", "a.b", "a.b.c.d", ".b.c", "a..c", "!!!.b.c", "e30.e30.AAAA"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        enum jwt_reason r = check(&v, strdup(bad[i]));
        if (r != JWT_MALFORMED && r != JWT_BAD_HEADER) fail_msg("'%s': %s", bad[i], jwt_reason_name(r));
    }
    /* bad JSON in the header, a non-object, duplicate keys, padding */
    assert_int_equal(check(&v, make("{\"alg\":\"HS256\"", "{" GOOD "}", "HS256", SECRET, strlen(SECRET), false)), JWT_MALFORMED);
    assert_int_equal(check(&v, make("[\"HS256\"]", "{" GOOD "}", "HS256", SECRET, strlen(SECRET), false)), JWT_MALFORMED);
    assert_int_equal(check(&v, make("{\"alg\":\"HS256\",\"alg\":\"none\"}", "{" GOOD "}", "HS256", SECRET, strlen(SECRET), false)), JWT_MALFORMED);
    assert_int_equal(check(&v, hs("{" GOOD ",\"sub\":\"mallory\"}")), JWT_MALFORMED);
    assert_int_equal(check(&v, hs("{" GOOD "")), JWT_MALFORMED);
    char *t = hs("{" GOOD "}");
    size_t n = strlen(t);
    char *padded = malloc(n + 2);
    snprintf(padded, n + 2, "%s=", t);
    assert_int_equal(check(&v, padded), JWT_BAD_SIGNATURE);
    /* every single-bit flip of the signature part is refused */
    const char *dot = strrchr(t, '.');
    for (size_t i = (size_t)(dot + 1 - t); i < n; i++) {
        char *c = strdup(t);
        c[i] = c[i] == 'A' ? 'B' : 'A';
        assert_int_not_equal(check(&v, c), JWT_OK);
    }
    /* and of the payload */
    char *c = strdup(t);
    c[strchr(t, '.') - t + 3] ^= 1;
    assert_int_not_equal(check(&v, c), JWT_OK);
    free(t);
    /* oversize */
    char big[JWT_MAX_LEN + 200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char *bp = malloc(sizeof big + 100);
    snprintf(bp, sizeof big + 100, "{" GOOD ",\"pad\":\"%s\"}", big + 2000);
    assert_int_equal(check(&v, hs(bp)), JWT_TOO_LARGE);
    free(bp);
    /* a foreign RSA key with a known kid */
    assert_int_equal(check(&v, make("{\"alg\":\"RS256\",\"kid\":\"r1\"}", "{" GOOD "}", "RS256", rsa_other, 0, false)), JWT_BAD_SIGNATURE);
    assert_int_equal(check(&v, make("{\"alg\":\"RS256\",\"kid\":\"zz\"}", "{" GOOD "}", "RS256", rsa_key, 0, false)), JWT_UNKNOWN_KID);
    assert_int_equal(check(&v, make("{\"alg\":\"RS256\",\"kid\":7}", "{" GOOD "}", "RS256", rsa_key, 0, false)), JWT_BAD_HEADER);
}

static void test_es256_der_vs_raw(void **state)
{
    struct jwt_verifier v = verifier();
    assert_int_equal(check(&v, make("{\"alg\":\"ES256\",\"kid\":\"e1\"}", "{" GOOD "}", "ES256", ec_key, 0, true)), JWT_BAD_SIGNATURE);
    assert_int_equal(check(&v, make("{\"alg\":\"ES256\",\"kid\":\"e1\"}", "{" GOOD "}", "ES256", ec_key, 0, false)), JWT_OK);
}

static void test_b64url(void **state)
{
    unsigned char out[16];
    assert_int_equal(jwt_b64url_decode("QQ", 2, out), 1);
    assert_int_equal(out[0], 'A');
    assert_int_equal(jwt_b64url_decode("QR", 2, out), -1); /* non-zero trailing bits */
    assert_int_equal(jwt_b64url_decode("Q", 1, out), -1);
    assert_int_equal(jwt_b64url_decode("QQ==", 4, out), -1);
    assert_int_equal(jwt_b64url_decode("a+b/", 4, out), -1);
    assert_int_equal(jwt_b64url_decode("_-_-", 4, out), 3);
    assert_true(jwt_looks_like("a.b.c"));
    assert_true(jwt_looks_like("a.b."));
    assert_false(jwt_looks_like("a.b"));
    assert_false(jwt_looks_like("sk-abc"));
    assert_false(jwt_looks_like(".b.c"));
    assert_false(jwt_looks_like("a.b.c.d"));
    assert_false(jwt_looks_like(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwks_parse),
        cmocka_unit_test(test_good_tokens),
        cmocka_unit_test(test_alg_none_and_confusion),
        cmocka_unit_test(test_time_claims),
        cmocka_unit_test(test_iss_aud_sub),
        cmocka_unit_test(test_broken_tokens),
        cmocka_unit_test(test_es256_der_vs_raw),
        cmocka_unit_test(test_b64url),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
