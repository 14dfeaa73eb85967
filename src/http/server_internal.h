/* server_internal: what the HTTP/1.1 connection code (server.c) shares
 * with the HTTP/2 transport (h2.c): the worker, server and connection
 * structs and the connection primitives. Not for use outside src/http/. */
#ifndef AIPROXY_HTTP_SERVER_INTERNAL_H
#define AIPROXY_HTTP_SERVER_INTERNAL_H

#include <http_parser.h>
#include <pthread.h>
#include <stdatomic.h>

#include <openssl/ssl.h>

#include "http/server.h"

struct event;
struct bufferevent;
struct evconnlistener;
struct h2_session;

/* ---- limits ---- */

#define OUT_HIGH_WATERMARK (256 * 1024) /* stream backpressure starts here */
#define OUT_LOW_WATERMARK (64 * 1024)   /* and ends here */
#define IN_HIGH_WATERMARK (1024 * 1024) /* pipelined input read ahead at most */
#define TLS_RECORD_MAX 16384              /* plaintext per TLS record (RFC 8446 5.1) */

struct http_worker {
    int index;
    pthread_t thread;
    struct http_server *server;
    struct event_base *base;
    struct evdns_base *dns;
    struct evconnlistener *listener;
    /* Cross-thread wake-ups (drain, new config) arrive on an eventfd: the
     * loops run without libevent's locks, which would cost a mutex round
     * per buffer operation on the hot path. */
    int notify_fd;
    struct event *notify_ev;
    atomic_bool drain_requested;
    atomic_bool config_pending;
    struct event *drain_deadline_ev;
    struct event *accept_retry_ev;
    int spare_fd; /* held for the EMFILE answer (see on_accept_error); -1 when lost */
    pthread_mutex_t config_lock;
    struct config *config;         /* current snapshot (a reference) */
    struct config *pending_config; /* handed over by http_server_set_config */
    /* TLS context new connections get (a reference; NULL: plain TCP). A
     * reload hands a new one over like a config (pending_tls, under
     * config_lock), so accepting reads it without a lock; connections
     * made before keep theirs (an SSL holds a reference to its context). */
    SSL_CTX *tls;
    SSL_CTX *pending_tls;
    bool has_pending_tls; /* pending_tls is to be applied (NULL: go plain) */
    atomic_bool tls_pending;
    bool draining;
    struct http_conn *conns; /* doubly linked list of open connections */
    size_t n_conns;
    http_handler_cb handler;
    void (*on_complete)(struct http_request *req);
    void (*prepare)(struct http_request *req);
    void *slot;
    void (*slot_free)(void *slot);
};

struct http_server {
    struct http_worker *workers;
    int n_workers;
    bool mesh; /* the mesh listener: requests come from peers */
    atomic_bool draining; /* per server: a reload drains an old listener alone */
};

enum conn_state {
    CONN_IDLE,     /* waiting for a request's first byte */
    CONN_READING,  /* a request is arriving */
    CONN_HANDLING, /* the handler owns the request */
};

struct http_conn {
    struct http_worker *w;
    struct bufferevent *bev;
    int fd;
    http_parser parser;
    enum conn_state state;
    struct http_request *req;
    struct event *timer; /* read deadline, or keep-alive idle */
    /* Reads are ours (recv into the bufferevent's input), not the
     * bufferevent's: libevent asks the kernel how much is waiting before
     * every read (ioctl FIONREAD), one system call per read for nothing.
     * The bufferevent still does the writing, with its write timeout. */
    struct event *read_ev; /* NULL on TLS connections: the bufferevent reads */
    /* Where replies are queued: the bufferevent's output, or on a TLS
     * connection a buffer of its own that conn_flush encrypts from (data
     * added to an openssl bufferevent's output arms its write event at
     * once, a wasted epoll_ctl pair per reply when we write it ourselves). */
    struct evbuffer *out;
    bool reading;
    bool tls;
    bool tls_handshaken; /* the TLS handshake completed */
    /* HTTP/2 (h2.c): the connection's session once the client sent the
     * preface (h2c) or chose "h2" by ALPN; NULL on HTTP/1.1. */
    struct h2_session *h2;
    bool proto_checked; /* the first bytes were looked at */
    /* header being assembled (fields can arrive split) */
    char *hname, *hvalue;
    size_t hname_len, hvalue_len, hname_cap, hvalue_cap;
    bool in_value;
    size_t header_bytes;
    char *url;
    size_t url_len, url_cap;
    /* body */
    char *body;
    size_t body_len, body_cap;
    bool body_too_large;
    bool headers_too_large;
    bool in_dispatch; /* inside process_input: don't recurse */
    bool parser_mid_message; /* http-parser has begun a message (no fast path then) */
    bool close_after_response; /* answered with Connection: close */
    bool closing;     /* close once the output is flushed */
    bool freed_scheduled;
    char peer_ip[64];
    void *memo; /* http_conn_set_memo */
    void (*memo_free)(void *memo);
    struct http_conn *prev, *next;
};

/* Closes at once (on the next loop turn): errors and aborts. Requests a
 * handler still owns are aborted when the connection is freed. */
void http_conn_close(struct http_conn *c);
/* Writes what is queued straight to the socket; arms EV_WRITE only when
 * the kernel would not take it all; closes once empty when c->closing. */
void http_conn_flush(struct http_conn *c);
/* Bytes queued and not yet written (on TLS: ours and the bufferevent's). */
size_t http_conn_out_len(const struct http_conn *c);
void http_conn_start_timer(struct http_conn *c, int64_t ms);
void http_conn_read_enable(struct http_conn *c, bool on);
/* A fresh request in its own arena, owned by the caller until dispatched. */
struct http_request *http_request_new(struct http_conn *c);
/* Drops the request's config reference and frees its arena (and it). */
void http_request_free(struct http_request *req);

#endif
