/* fuzz_jwt: libFuzzer driver for security/jwt and security/jwks. The first
 * byte selects: 0 parses the rest as a JWKS document; anything else
 * verifies the rest as a token against a fixed HS256 secret and a fixed
 * JWKS (one RSA, one EC P-256 key), with every algorithm accepted. It must
 * never crash, and a token it accepts must carry a key name.
 * fuzz-sources: src/security/jwt.c src/security/jwks.c */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "security/jwks.h"
#include "security/jwt.h"

static const char JWKS[] = "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"yu4-t5KWM-eNDxE0naldXkfRqIgmLN3iH2OpaKXJHd7qiQ8hfPFYpvpyoyu16d_8J09_dADpTwXSd6Mi9Qr_cFgL2Z3hvfrNekwp8YWsrxZkEM9mgfbEYjptKrJCr1pKdK2CTFayNROXbojDbRbj8n5_fLK8TxQcMO21PiMD5a6CjetgQY86bhvQez0s_3O1WoZuU6BHDn03SCWlsCv8CEsb9yYVa04LhM67qmGpHUlNlwrwLSMn97fF5R-5dxfeLZ-WKUMz__mhBY6mxuGl5zbChUTHyKC1V-8x6c0uCCxxAEBlowusY649ZZ_6BZb15oU2SvILgaSZGoJc23CmLQ\",\"e\":\"AQAB\",\"kid\":\"r1\",\"alg\":\"RS256\"},{\"kty\":\"EC\",\"x\":\"Ba_aFZ-4FdFOCE7dPCuYa_gRJ4FDxOSPLvMk-npPtTc\",\"y\":\"o8i1sM-1zky-Z5jmm4Ii9ij26ivQnvC7TP4O33QBtW8\",\"crv\":\"P-256\",\"kid\":\"e1\"}]}";
static const char SECRET[] = "fuzz-secret-0123456789abcdef0123456789";

static struct jwks *keys;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > JWT_MAX_LEN + 1024) return 0;
    char err[300];
    if (!keys) {
        keys = jwks_parse(JWKS, strlen(JWKS), err, sizeof err);
        assert(keys);
    }
    if (data[0] == 0) {
        struct jwks *ks = jwks_parse((const char *)data + 1, size - 1, err, sizeof err);
        assert(ks || err[0]);
        jwks_unref(ks);
        return 0;
    }
    /* a token arrives as a header value: NUL-terminated */
    char *tok = malloc(size);
    memcpy(tok, data + 1, size - 1);
    tok[size - 1] = '\0';
    struct jwt_verifier v = {
        .secret = (const unsigned char *)SECRET, .secret_len = strlen(SECRET), .keys = keys,
        .algs = JWT_ALL_ALGS, .issuer = "iss", .audience = "aud", .leeway_s = 60,
        .claim_key_name = "sub", .claim_tenant = "org", .claim_role = "role"};
    struct jwt_result r;
    (void)jwt_looks_like(tok);
    enum jwt_reason rc = jwt_verify(&v, tok, strlen(tok), 1700000000, &r);
    assert(rc < JWT_N_REASONS);
    assert((rc == JWT_OK) == (r.key_name != NULL));
    assert(jwt_reason_message(rc) != NULL);
    jwt_result_cleanup(&r);
    free(tok);
    return 0;
}
