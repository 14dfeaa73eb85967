/* upstream client: HTTP/1.1 requests to providers from a worker's event
 * loop. Per worker, a pool of keep-alive connections per origin (they stay
 * registered with the loop while idle, so a close is noticed); TLS through
 * bufferevent_openssl with the system CA store, SNI and hostname checks;
 * async DNS with a small cache; HTTPS_PROXY/NO_PROXY through CONNECT.
 * Responses are parsed with http-parser (chunked, content-length and
 * close-delimited) and handed over as they arrive. */
#ifndef AIPROXY_UPSTREAM_CLIENT_H
#define AIPROXY_UPSTREAM_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct upstream_pool;
struct upstream_call;

#define UPSTREAM_ERROR_MAP(X)                                                   \
    X(OK, 0, "ok")                                                              \
    X(URL, -1, "invalid upstream URL")                                          \
    X(DNS, -2, "DNS lookup failed")                                             \
    X(CONNECT, -3, "connection failed")                                         \
    X(TLS, -4, "TLS handshake or certificate verification failed")              \
    X(PROXY, -5, "the HTTPS proxy refused the tunnel")                          \
    X(TIMEOUT, -6, "timed out")                                                 \
    X(RESET, -7, "connection closed before the response was complete")          \
    X(PROTOCOL, -8, "invalid HTTP response")                                    \
    X(TOO_LARGE, -9, "response headers too large")                             \
    X(LOCAL, -10, "this gateway is out of descriptors or ports for a new connection")

enum upstream_error {
#define X(name, val, text) UPSTREAM_ERR_##name = val,
    UPSTREAM_ERROR_MAP(X)
#undef X
};

const char *upstream_error_text(int err);

struct upstream_request {
    const char *method;  /* "POST" */
    const char *url;     /* http(s)://host[:port]/path */
    const char *headers; /* extra "Name: value\r\n" lines, or NULL */
    const char *body;    /* borrowed until on_done or cancel */
    size_t body_len;
    /* Deadline for the response head; for a non-streaming call also for the
     * whole response. For a stream, after the head, `idle_timeout_ms` bounds
     * every gap between body bytes. */
    int64_t timeout_ms;
    bool stream;
    int64_t idle_timeout_ms;
    const char *tls_ca_file; /* NULL: the system store */
    bool tls_insecure;       /* skip certificate verification */
    /* A client certificate and its key (PEM files) for mutual TLS (the
     * mesh); NULL: none. */
    const char *tls_cert_file;
    const char *tls_key_file;
};

struct upstream_head {
    int status;
    const char *content_type; /* NULL when absent; valid during on_head */
    const char *retry_after;  /* NULL when absent */
};

struct upstream_callbacks {
    /* The response head arrived. */
    void (*on_head)(void *ctx, const struct upstream_head *head);
    /* Body bytes (after transfer decoding). */
    void (*on_data)(void *ctx, const char *data, size_t len);
    /* Last callback: 0 when the response completed, else an UPSTREAM_ERR_*.
     * The call is freed after it returns. */
    void (*on_done)(void *ctx, int err);
};

/* Pool lifetime: one per worker thread, used only from its loop. */
struct upstream_pool *upstream_pool_new(struct event_base *base, struct evdns_base *dns);
void upstream_pool_free(struct upstream_pool *p);

/* Starts a request. The callbacks run later, from the loop (never from
 * inside this call). Returns the call handle, owned by the pool. */
struct upstream_call *upstream_call_start(struct upstream_pool *p, const struct upstream_request *r,
                                          const struct upstream_callbacks *cb, void *ctx);
/* Stops a call before on_done: no more callbacks; its connection is closed,
 * never returned to the pool. Safe from inside the call's own callbacks. */
void upstream_call_cancel(struct upstream_call *c);
/* Backpressure: stop and restart reading the response. */
void upstream_call_pause(struct upstream_call *c);
void upstream_call_resume(struct upstream_call *c);

#endif
