/* tls: the server-side TLS contexts of the listeners (client, metrics,
 * mesh): building one from PEM files with the gateway's protocol policy
 * (TLS 1.2 or later, ECDHE with AEAD ciphers, no compression, no
 * renegotiation, ALPN), mutual TLS with a client CA, and the handshake
 * failure count. The http server holds the contexts; a reload builds a new
 * one here and swaps it in for new connections (http_server_set_tls). */
#ifndef AIPROXY_HTTP_TLS_H
#define AIPROXY_HTTP_TLS_H

#include <stddef.h>
#include <stdint.h>

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

/* Builds a server context from `cert_file` (a PEM chain, leaf first) and
 * `key_file`; with `client_ca_file`, every client must present a
 * certificate that CA signed. Returns a context with one reference (free
 * it with tls_ctx_unref), or NULL with the reason in `err` (file names and
 * OpenSSL's message; never the key's contents). */
struct ssl_ctx_st *tls_server_ctx_new(const char *cert_file, const char *key_file,
                                      const char *client_ca_file, char *err, size_t errcap);

/* Another reference to `ctx` (an SSL made from it holds its own). */
struct ssl_ctx_st *tls_ctx_ref(struct ssl_ctx_st *ctx);
/* Drops one reference; NULL is fine. */
void tls_ctx_unref(struct ssl_ctx_st *ctx);

/* "subject CN=..., serial 1A2B, expires 2026-01-01": what a context
 * serves, for the log. */
void tls_ctx_describe(struct ssl_ctx_st *ctx, char *out, size_t cap);

/* Handshakes that failed (a protocol or cipher the policy refuses, a
 * client certificate missing or unverified, an alert from a client that
 * does not trust ours): counted by the server, shown in /metrics. */
void tls_count_handshake_failure(void);
uint64_t tls_handshake_failures(void);

#endif
