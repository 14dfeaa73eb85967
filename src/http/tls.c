/* tls: server contexts for the listeners, with one protocol policy for all
 * of them (the choices of Mozilla's "intermediate" profile, as nginx and
 * h2o ship it): TLS 1.2 and 1.3 only; for 1.2, ECDHE key exchange with
 * AEAD ciphers (forward secrecy, no CBC); for 1.3, OpenSSL's suites (all
 * AEAD). The server's cipher order wins, compression (CRIME) and
 * renegotiation (a client-triggered CPU cost) are off; session tickets
 * stay on, their keys are per context, so a reload starts new ones. */
#include "http/tls.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* TLS 1.2 suites, strongest-first within each family; ECDSA before RSA so
 * that a node holding both kinds of certificate offers the cheaper one. */
#define TLS12_CIPHERS                                                                      \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                           \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                           \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Protocols offered in ALPN, in the server's order of preference, in the
 * wire format (a length byte, then the name): HTTP/2 first (SPEC section
 * 10); the connection reads which one was chosen (SSL_get0_alpn_selected,
 * http/h2.c) before parsing. */
static const unsigned char alpn_protos[] = "\x02h2\x08http/1.1";

static atomic_ullong handshake_failures;

void tls_count_handshake_failure(void)
{
    atomic_fetch_add_explicit(&handshake_failures, 1, memory_order_relaxed);
}

uint64_t tls_handshake_failures(void)
{
    return atomic_load_explicit(&handshake_failures, memory_order_relaxed);
}

/* A client that offers ALPN but none of our protocols gets a fatal alert
 * (RFC 7301 section 3.2, and what nginx does): it would otherwise speak a
 * protocol we do not parse. A client that offers no ALPN at all is not
 * asked here and speaks HTTP/1.1. */
static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned char *chosen = NULL;
    unsigned char chosen_len = 0;
    if (SSL_select_next_proto(&chosen, &chosen_len, alpn_protos, sizeof alpn_protos - 1, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = chosen;
    *outlen = chosen_len;
    return SSL_TLSEXT_ERR_OK;
}

/* An encrypted key would make OpenSSL prompt on the terminal for its
 * passphrase, which a daemon must never do: refuse instead. */
static int no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    return 0;
}

static void set_error(char *err, size_t errcap, const char *what, const char *file)
{
    char e[256] = "";
    unsigned long code = ERR_get_error();
    if (code) ERR_error_string_n(code, e, sizeof e);
    ERR_clear_error();
    snprintf(err, errcap, "cannot load %s %s: %s", what, file,
             e[0] ? e : "not a usable PEM file");
}

struct ssl_ctx_st *tls_server_ctx_new(const char *cert_file, const char *key_file,
                                      const char *client_ca_file, char *err, size_t errcap)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errcap, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    uint64_t opts = SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION;
#ifdef SSL_OP_NO_RENEGOTIATION
    opts |= SSL_OP_NO_RENEGOTIATION;
#endif
#ifdef SSL_OP_NO_CLIENT_RENEGOTIATION
    opts |= SSL_OP_NO_CLIENT_RENEGOTIATION;
#endif
    SSL_CTX_set_options(ctx, opts);
    /* Idle keep-alive connections give their 2 x 16 KB record buffers
     * back; a write OpenSSL could not finish may be retried from another
     * address holding the same bytes (the server writes from an evbuffer,
     * whose front can move between the attempts). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Resumed sessions must be tied to this service (OpenSSL refuses to
     * resume a verified session without it). */
    static const unsigned char sid_ctx[] = "aiproxy";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, NULL);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        set_error(err, errcap, "the cipher list", "");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        set_error(err, errcap, "certificate", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        set_error(err, errcap, "private key", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errcap, "the private key %s does not match the certificate %s", key_file,
                 cert_file);
        goto fail;
    }
    if (client_ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, client_ca_file, NULL) != 1) {
            set_error(err, errcap, "client CA", client_ca_file);
            goto fail;
        }
        /* The CA names go into the CertificateRequest, so that a client
         * holding several certificates picks the right one. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca_file);
        if (!names) {
            set_error(err, errcap, "client CA", client_ca_file);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct ssl_ctx_st *tls_ctx_ref(struct ssl_ctx_st *ctx)
{
    if (ctx) SSL_CTX_up_ref(ctx);
    return ctx;
}

void tls_ctx_unref(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx); /* NULL is a no-op */
}

void tls_ctx_describe(struct ssl_ctx_st *ctx, char *out, size_t cap)
{
    X509 *x = ctx ? SSL_CTX_get0_certificate(ctx) : NULL;
    if (!x) {
        snprintf(out, cap, "no certificate");
        return;
    }
    char subject[256];
    X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof subject);
    char *serial = NULL;
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    if (bn) serial = BN_bn2hex(bn);
    char expires[32] = "?";
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
        strftime(expires, sizeof expires, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(out, cap, "subject %s, serial %s, expires %s", subject, serial ? serial : "?",
             expires);
    OPENSSL_free(serial);
    BN_free(bn);
}
