/* digest: see digest.h. Any OpenSSL failure here means a broken library
 * or no memory: abort, as the allocation wrappers do. */
#include "security/digest.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static EVP_MD *sha256_md;
static pthread_key_t ctx_key; /* each thread's reusable EVP_MD_CTX, freed when it exits */
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void free_ctx(void *c)
{
    EVP_MD_CTX_free(c);
}

static void fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!sha256_md || pthread_key_create(&ctx_key, free_ctx) != 0) abort();
}

/* This thread's context (created on first use): no allocation per digest. */
static EVP_MD_CTX *thread_ctx(void)
{
    pthread_once(&fetch_once, fetch);
    EVP_MD_CTX *c = pthread_getspecific(ctx_key);
    if (!c) {
        c = EVP_MD_CTX_new();
        if (!c || pthread_setspecific(ctx_key, c) != 0) abort();
    }
    return c;
}

static const EVP_MD *md(void)
{
    pthread_once(&fetch_once, fetch);
    return sha256_md;
}

void digest_sha256(const void *data, size_t len, unsigned char out[DIGEST_SHA256_LEN])
{
    EVP_MD_CTX *c = thread_ctx();
    if (EVP_DigestInit_ex2(c, sha256_md, NULL) != 1 || EVP_DigestUpdate(c, data, len) != 1 ||
        EVP_DigestFinal_ex(c, out, NULL) != 1)
        abort();
}

#define HMAC_BLOCK 64 /* SHA-256's block size */

static EVP_MD_CTX *padded_state(const unsigned char key[HMAC_BLOCK], unsigned char pad)
{
    unsigned char block[HMAC_BLOCK];
    for (size_t i = 0; i < HMAC_BLOCK; i++) block[i] = key[i] ^ pad;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || EVP_DigestInit_ex2(c, md(), NULL) != 1 || EVP_DigestUpdate(c, block, sizeof block) != 1)
        abort();
    OPENSSL_cleanse(block, sizeof block);
    return c;
}

void hmac_key_init(struct hmac_key *k, const unsigned char *key, size_t len)
{
    unsigned char block[HMAC_BLOCK] = {0};
    if (len > HMAC_BLOCK) digest_sha256(key, len, block); /* RFC 2104: long keys are hashed first */
    else if (len) memcpy(block, key, len);
    k->inner = padded_state(block, 0x36);
    k->outer = padded_state(block, 0x5c);
    OPENSSL_cleanse(block, sizeof block);
}

void hmac_key_free(struct hmac_key *k)
{
    EVP_MD_CTX_free(k->inner);
    EVP_MD_CTX_free(k->outer);
    k->inner = k->outer = NULL;
}

void hmac_sha256(const struct hmac_key *k, const void *data, size_t len,
                 unsigned char out[DIGEST_SHA256_LEN])
{
    unsigned char inner[DIGEST_SHA256_LEN];
    EVP_MD_CTX *c = thread_ctx();
    if (EVP_MD_CTX_copy_ex(c, k->inner) != 1 || EVP_DigestUpdate(c, data, len) != 1 ||
        EVP_DigestFinal_ex(c, inner, NULL) != 1 || EVP_MD_CTX_copy_ex(c, k->outer) != 1 ||
        EVP_DigestUpdate(c, inner, sizeof inner) != 1 || EVP_DigestFinal_ex(c, out, NULL) != 1)
        abort();
}
