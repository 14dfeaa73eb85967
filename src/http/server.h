/* server: the HTTP front end. N workers, each with its own event_base
 * and SO_REUSEPORT listener; connections on bufferevents parsed with
 * http-parser; keep-alive, pipelining (one request at a time per
 * connection), request limits and deadlines. A connection that opens with
 * the HTTP/2 preface (h2c) or picks "h2" by ALPN speaks HTTP/2 instead
 * (http/h2.c): each stream is a request like any other, answered through
 * the same functions below. A parsed request is handed to
 * a handler, which answers at once or later (after upstream I/O), whole or
 * as a stream. Errors are always OpenAI-shaped JSON. */
#ifndef AIPROXY_HTTP_SERVER_H
#define AIPROXY_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/ids.h"
#include "http/errors.h"

struct event_base;
struct evdns_base;
struct config;
struct http_conn;
struct http_worker;
struct ssl_ctx_st;
struct h2_stream;

#define HTTP_MAX_HEADERS 64

struct http_header {
    const char *name; /* lowercased */
    const char *value;
    size_t name_len, value_len;
};

enum http_method_kind { HTTP_M_GET, HTTP_M_HEAD, HTTP_M_POST, HTTP_M_PUT, HTTP_M_DELETE,
                        HTTP_M_OPTIONS, HTTP_M_PATCH, HTTP_M_OTHER };

/* Called when the client went away (or the server must drop the request)
 * while a handler still owned it. The handler must release what it holds
 * (close upstream connections) and call http_request_done-free paths no
 * more: after this returns, the request is freed. */
typedef void (*http_abort_cb)(void *handler_data);
/* Called when a streaming response's output buffer drained below the low
 * watermark after http_stream_write reported backpressure. */
typedef void (*http_drain_cb)(void *handler_data);

struct http_request {
    struct http_conn *conn;
    struct http_worker *worker;
    struct arena arena; /* freed when the response is complete */
    struct config *config; /* the snapshot this request runs on (a reference) */
    char id[ID_REQUEST_LEN + 1];
    int64_t start_us; /* first byte of the request */

    enum http_method_kind method;
    const char *method_name;
    const char *path;  /* without the query string */
    const char *query; /* NULL when absent */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t n_headers;
    char *body; /* NUL-terminated, arena-owned */
    size_t body_len;
    bool keep_alive;
    char client_ip[64];

    /* Mesh (SPEC section 5): set for requests that arrived on the mesh
     * listener from a peer (which proved node.mesh.secret): the hop count
     * and the node ids they passed (comma-separated, arena). Client-facing
     * requests have from_peer false and never read those headers. */
    bool from_peer;
    int mesh_hops;
    const char *mesh_via;

    /* Set by admission (api/admission.h): the authenticated caller and the
     * budget reservation; NULL when there is none. */
    struct principal *principal;
    void *admission;
    /* "Name: value\r\n"... added to every response head of this request
     * (CORS, rate-limit figures); arena-owned, NULL when none. */
    const char *extra_headers;

    /* Rewrites an OpenAI-shaped error body into the client's wire format
     * (inbound formats such as Anthropic's); NULL keeps OpenAI's shape.
     * Returns false to keep the original body. */
    bool (*error_filter)(struct http_request *req, int status, const char *body, size_t len,
                         char **out, size_t *out_len);
    const void *error_filter_data;

    /* Answers errors in the client's protocol instead of OpenAI's JSON
     * (the gRPC layer turns them into grpc-status trailers): when set,
     * http_respond_error_h calls it and does nothing else. The hook must
     * respond (http_respond_trailers, for instance). */
    void (*error_responder)(struct http_request *req, enum gw_error e, const char *message,
                            const char *param);

    /* obs/trace.h: the request's span context (arena-owned); NULL when the
     * request is not traced. */
    void *trace;

    /* Set by handlers that answer later. */
    void *handler_data;
    http_abort_cb on_abort;
    http_drain_cb on_drain;

    /* Filled by handlers for the access log. */
    struct {
        const char *model;    /* as the client asked */
        const char *provider; /* the one that answered */
        int64_t tokens_in, tokens_out;
        /* of tokens_in: read from / written to the provider's prompt cache */
        int64_t cached_tokens, cache_write_tokens;
        int64_t cost_nanos;
        bool estimated;
        int failovers;
        bool stream;
        /* Served by a mesh peer: the cost is what the peer paid its provider,
         * charged to the caller's key and tenant here but not to this node's
         * own spend (the serving node counts it). */
        bool via_peer;
        const char *route; /* node ids the request went through, comma-separated */
        /* Response cache (SPEC section 7): "hit", "semantic_hit" or "miss"
         * when the cache was consulted (NULL when not), and for a hit what
         * the stored answer cost when it was made (what the hit saved). */
        const char *cache;
        int64_t saved_nanos;
    } acct;

    /* private response state */
    struct h2_stream *h2; /* the HTTP/2 stream carrying it; NULL on HTTP/1.1 */
    int status;
    bool responded;  /* a complete response is queued */
    bool streaming;  /* stream headers sent, chunks may follow */
    bool drain_wanted;
    int64_t bytes_out;
};

/* Handlers: the request is theirs until they respond (or are aborted). */
typedef void (*http_handler_cb)(struct http_request *req);

/* Returns the value of header `name` (lowercase, `len` bytes), or NULL. */
const char *http_header_getn(const struct http_request *req, const char *name, size_t len);
/* The same for a NUL-terminated name (a literal's length is folded). */
static inline const char *http_header_get(const struct http_request *req, const char *name)
{
    return http_header_getn(req, name, strlen(name));
}

/* One pointer kept with the request's connection, for what later requests
 * on the same connection can reuse (api/admission.c: the key it presented).
 * Setting it again frees the previous one; `free_cb` runs when the
 * connection closes. */
void *http_conn_memo(const struct http_request *req);
void http_conn_set_memo(struct http_request *req, void *memo, void (*free_cb)(void *memo));

/* ---- whole responses ---- */

/* Queues a complete response. `extra_headers` is "Name: value\r\n..." or NULL.
 * The gateway headers (x-aiproxy-request-id, x-aiproxy-node) are added. */
void http_respond(struct http_request *req, int status, const char *content_type,
                  const char *extra_headers, const char *body, size_t len);
/* An OpenAI-shaped error response. */
void http_respond_error(struct http_request *req, enum gw_error e, const char *message,
                        const char *param);
void http_respond_error_h(struct http_request *req, enum gw_error e, const char *message,
                          const char *param, const char *extra_headers);

/* A complete response followed by trailers: `trailers` is
 * "name: value\r\n"... with lowercase names (copied). On HTTP/2 the
 * trailers go in a HEADERS frame after the body; with len == 0 the head and
 * the trailers leave as one HEADERS frame (gRPC's "Trailers-Only"). On
 * HTTP/1.1 the trailers are dropped and this is http_respond (gRPC is
 * HTTP/2 only). */
void http_respond_trailers(struct http_request *req, int status, const char *content_type,
                           const char *extra_headers, const char *body, size_t len,
                           const char *trailers);

/* True when the request arrived on an HTTP/2 stream. */
bool http_request_is_h2(const struct http_request *req);

/* ---- streams (chunked transfer encoding; DATA frames on HTTP/2) ---- */

void http_stream_start(struct http_request *req, int status, const char *content_type,
                       const char *extra_headers);
/* Queues one chunk (sent at the next http_stream_flush, or at once past
 * the high watermark). Returns true when the client's output buffer stays
 * over its high watermark: the caller should stop reading upstream until
 * on_drain is called. */
bool http_stream_write(struct http_request *req, const char *data, size_t len);
/* Two-part chunk (prefix + data + suffix) with one chunk header. */
bool http_stream_write3(struct http_request *req, const char *a, size_t alen, const char *b,
                        size_t blen, const char *c, size_t clen);
void http_stream_end(struct http_request *req);
/* Ends a stream started with http_stream_start with trailers
 * ("name: value\r\n"..., lowercase names; copied) in a last HEADERS frame.
 * On HTTP/1.1 the trailers are dropped: this is http_stream_end. */
void http_stream_end_trailers(struct http_request *req, const char *trailers);
/* Writes what the stream has queued (the head and chunks gather between
 * flushes, so that one upstream read costs one write to the client). */
void http_stream_flush(struct http_request *req);

/* ---- workers ---- */

struct http_server;

struct http_server_opts {
    const char *host;
    int port;
    int workers;
    http_handler_cb handler;
    /* The mesh listener (node.mesh.listen_addr): its requests have
     * from_peer set (the handler authenticates them). */
    bool mesh;
    /* TLS on this listener (PEM files); NULL: plain TCP. With a client CA,
     * every client must present a certificate it signed (mutual TLS). */
    const char *tls_cert_file;
    const char *tls_key_file;
    const char *tls_client_ca_file;
    /* Runs once per request when its response is complete or it was
     * aborted (status 499), before it is freed: the access log. */
    void (*on_complete)(struct http_request *req);
    /* Runs once per HTTP/2 request when its head is known, before the
     * handler, and before the transport answers a request it refused (body
     * over max_request_size, too slow): lets the api layer choose the
     * error's wire form (req->error_responder, for gRPC). May be NULL. */
    void (*prepare)(struct http_request *req);
    /* Frees a worker's slot (see http_worker_set_slot) when it exits. */
    void (*slot_free)(void *slot);
};

/* Binds one SO_REUSEPORT listener per worker (so a bind error is reported
 * before any thread starts) and starts the worker threads. Returns NULL and
 * prints why on failure. `cfg` is referenced by every worker. */
struct http_server *http_server_start(const struct http_server_opts *opts, struct config *cfg);
/* Hands every worker a new config snapshot (reload); requests in flight keep theirs. */
void http_server_set_config(struct http_server *s, struct config *cfg);
/* Replaces the TLS context that connections accepted from now on get
 * (http/tls.h builds one); connections already open keep theirs, so none
 * is dropped. NULL makes new connections plain TCP. Takes ownership of the
 * caller's reference. Safe from any thread; each worker switches on its
 * next loop turn. */
void http_server_set_tls(struct http_server *s, struct ssl_ctx_st *ctx);
/* Stops accepting, lets in-flight requests and streams finish (up to the
 * config's drain_timeout), closes idle connections, then joins the threads
 * and frees the server. */
void http_server_drain_and_free(struct http_server *s);

/* Per-worker resources for handlers. */
struct event_base *http_worker_base(struct http_worker *w);
struct evdns_base *http_worker_dns(struct http_worker *w);
/* Opaque per-worker slot for the upstream client (set by the api layer). */
void *http_worker_get_slot(struct http_worker *w);
void http_worker_set_slot(struct http_worker *w, void *slot);

/* True once http_server_drain_and_free has begun on the server that owns
 * `req` (for /ready); another server of the process (after a listener was
 * rebound on reload) is not affected. */
bool http_server_is_draining(const struct http_request *req);

#endif
