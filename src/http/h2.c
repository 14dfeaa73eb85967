/* h2: HTTP/2 on the front end's connections, over nghttp2.
 *
 * A transport, not a second gateway: each stream's HEADERS and DATA build
 * a struct http_request (in its own arena, with the same fields and limits
 * as an HTTP/1.1 request) handed to the worker's handler; the handler
 * answers with server.h's functions, which branch here on req->h2.
 *
 * I/O stays server.c's: bytes read from the connection are fed to
 * nghttp2_session_mem_recv, and what nghttp2_session_mem_send produces is
 * appended to the connection's output and written by http_conn_flush. Each
 * stream has its own output buffer read by an nghttp2 data provider, so a
 * stream whose client window is closed waits alone; past the stream's high
 * watermark http_stream_write reports backpressure and on_drain runs once
 * WINDOW_UPDATEs let it drain.
 *
 * Re-entrancy: nghttp2 must not be called to send from inside its own
 * callbacks, and handlers may answer at once. So requests that complete
 * during mem_recv are only queued (by stream id) and dispatched after it
 * returns, and every send while the session is busy is folded into the
 * send that follows (h->in_io, h->want_send). Streams are freed only in
 * on_stream_close (inside nghttp2 calls) or with the connection. */
#include "http/h2.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"
#include "http/server_internal.h"

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN 24

/* Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE) and the
 * connection's: a client may have this much request body in flight. */
#define STREAM_WINDOW (1024 * 1024)
#define CONN_WINDOW (16 * 1024 * 1024)

enum stream_state {
    ST_READING,  /* the request is arriving */
    ST_QUEUED,   /* complete (or refused), waits for dispatch after mem_recv */
    ST_HANDLING, /* the handler owns the request, or it was answered */
};

struct h2_stream {
    struct h2_session *h;
    int32_t id;
    enum stream_state state;
    struct http_request *req; /* NULL once answered (freed) or never made */
    enum gw_error reject;     /* answered with this error instead of dispatched */
    bool rejected;
    bool remote_closed;       /* the client's END_STREAM arrived */
    size_t header_bytes;
    bool headers_too_large;
    char *body;
    size_t body_len, body_cap;
    /* response */
    struct evbuffer *out; /* DATA not yet taken by nghttp2 */
    bool eof;             /* no more DATA after what is in `out` */
    bool deferred;        /* the data provider said NGHTTP2_ERR_DEFERRED */
    char *trailers;       /* "name: value\r\n"..., sent after the last DATA */
    struct event *timer;  /* read_timeout while ST_READING */
    struct h2_stream *prev, *next;
};

struct h2_session {
    struct http_conn *c;
    nghttp2_session *s;
    struct h2_stream *streams;
    size_t n_streams;
    int32_t *ready; /* ids of streams to dispatch after mem_recv */
    size_t n_ready, ready_cap;
    bool in_io;     /* inside mem_recv/mem_send or a dispatch loop */
    bool want_send; /* a send was asked for while in_io */
    bool goaway;    /* GOAWAY queued */
};

static void do_send(struct h2_session *h);

/* ---- streams ---- */

static void stream_free(struct h2_stream *st)
{
    struct h2_session *h = st->h;
    if (st->prev) st->prev->next = st->next;
    else h->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    h->n_streams--;
    if (st->timer) event_free(st->timer);
    if (st->out) evbuffer_free(st->out);
    free(st->body);
    free(st->trailers);
    free(st);
}

/* The stream went away with its request: abort it if a handler owns it
 * (on_abort, status 499, the access log), as a closed HTTP/1.1 connection
 * does, else just free it. */
static void stream_drop_request(struct h2_stream *st)
{
    struct http_request *req = st->req;
    if (!req) return;
    st->req = NULL;
    struct http_worker *w = st->h->c->w;
    if (st->state == ST_HANDLING && !req->responded) {
        if (req->on_abort) req->on_abort(req->handler_data);
        req->status = 499;
        if (w->on_complete && req->config) w->on_complete(req);
    }
    http_request_free(req);
}

static void on_stream_timer(evutil_socket_t fd, short what, void *arg);

static void queue_ready(struct h2_session *h, struct h2_stream *st)
{
    if (st->state != ST_READING) return;
    st->state = ST_QUEUED;
    if (st->timer) event_del(st->timer);
    if (h->n_ready == h->ready_cap) {
        h->ready_cap = h->ready_cap ? h->ready_cap * 2 : 16;
        h->ready = xrealloc(h->ready, h->ready_cap * sizeof *h->ready);
    }
    h->ready[h->n_ready++] = st->id;
}

static void reject(struct h2_session *h, struct h2_stream *st, enum gw_error e)
{
    if (st->state != ST_READING) return;
    st->rejected = true;
    st->reject = e;
    queue_ready(h, st);
}

/* ---- header lists ---- */

/* Skipped in HTTP/2 responses: connection-specific (RFC 9113 8.2.2). */
static bool connection_header(const char *name, size_t n)
{
    static const char *const names[] = {"connection", "keep-alive", "transfer-encoding",
                                        "upgrade", "proxy-connection", "content-length"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && strncasecmp(names[i], name, n) == 0) return true;
    return false;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++)
        if (*s == '\n') n++;
    return n + 1;
}

/* Appends "Name: value\r\n"... as lowercase-named entries to nv (at most
 * `cap`). Names and values are copied into `scratch` (at least as long as
 * the text), which must outlive the nghttp2_submit_* call that copies them. */
static size_t add_header_lines(nghttp2_nv *nv, size_t n, size_t cap, const char *text,
                               char **scratch)
{
    const char *p = text;
    while (p && *p && n < cap) {
        const char *eol = strchr(p, '\n');
        const char *line_end = eol ? eol : p + strlen(p);
        const char *next = eol ? eol + 1 : line_end;
        if (line_end > p && line_end[-1] == '\r') line_end--;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon && colon > p) {
            size_t nlen = (size_t)(colon - p);
            const char *v = colon + 1;
            while (v < line_end && (*v == ' ' || *v == '\t')) v++;
            size_t vlen = (size_t)(line_end - v);
            if (!connection_header(p, nlen)) {
                char *name = *scratch;
                for (size_t i = 0; i < nlen; i++) {
                    char ch = p[i];
                    name[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
                }
                *scratch += nlen;
                /* Copied by nghttp2 (no NO_COPY flags): the request's arena
                 * may be gone before the frame is serialised. */
                nv[n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)v, nlen, vlen,
                                       NGHTTP2_NV_FLAG_NONE};
            }
        }
        p = next;
    }
    return n;
}

/* ---- data provider ---- */

/* Hands nghttp2 what the stream has queued; NGHTTP2_ERR_DEFERRED when
 * nothing is queued yet (h2_stream_write resumes it); at the end, the
 * trailers if any. */
static ssize_t on_read_data(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *user)
{
    struct h2_stream *st = source->ptr;
    int n = evbuffer_remove(st->out, buf, length);
    if (n < 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (evbuffer_get_length(st->out) > 0) return n;
    if (!st->eof) {
        if (n > 0) return n;
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (st->trailers) {
        nghttp2_nv nv[HTTP_MAX_HEADERS];
        char *scratch = xmalloc(strlen(st->trailers) + 1);
        char *sp = scratch;
        size_t nn = add_header_lines(nv, 0, HTTP_MAX_HEADERS, st->trailers, &sp);
        if (nghttp2_submit_trailer(s, id, nv, nn) == 0) *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        free(scratch);
    }
    return n;
}

/* ---- nghttp2 callbacks (requests) ---- */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
    struct h2_session *h = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct http_conn *c = h->c;
    struct h2_stream *st = xcalloc(1, sizeof *st);
    st->h = h;
    st->id = frame->hd.stream_id;
    st->req = http_request_new(c);
    st->req->h2 = st;
    st->req->keep_alive = true;
    st->next = h->streams;
    if (h->streams) h->streams->prev = st;
    h->streams = st;
    h->n_streams++;
    nghttp2_session_set_stream_user_data(s, st->id, st);
    /* read_timeout: the whole request, from its first frame, as for 1.1. */
    st->timer = evtimer_new(c->w->base, on_stream_timer, st);
    int64_t ms = c->w->config->server.read_timeout_ms;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    event_add(st->timer, &tv);
    c->state = CONN_HANDLING;
    event_del(c->timer); /* not idle while a stream is open */
    return 0;
}

static enum http_method_kind method_from_name(const char *m)
{
    static const struct {
        const char *name;
        enum http_method_kind kind;
    } map[] = {{"GET", HTTP_M_GET},         {"POST", HTTP_M_POST},   {"HEAD", HTTP_M_HEAD},
               {"PUT", HTTP_M_PUT},         {"DELETE", HTTP_M_DELETE}, {"OPTIONS", HTTP_M_OPTIONS},
               {"PATCH", HTTP_M_PATCH}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].name, m) == 0) return map[i].kind;
    return HTTP_M_OTHER;
}

static void store_header(struct http_request *req, const char *name, size_t nlen,
                         const uint8_t *value, size_t vlen, bool *too_many)
{
    if (req->n_headers >= HTTP_MAX_HEADERS) {
        *too_many = true;
        return;
    }
    struct http_header *hd = &req->headers[req->n_headers++];
    hd->name = arena_strndup(&req->arena, name, nlen); /* nghttp2 checked: lowercase */
    hd->name_len = nlen;
    hd->value = arena_strndup(&req->arena, (const char *)value, vlen);
    hd->value_len = vlen;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nlen, const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    struct h2_session *h = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* request trailers are not used */
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (!st || !st->req || st->headers_too_large) return 0;
    struct http_request *req = st->req;
    /* The same budget as HTTP/1.1's request line plus headers. */
    st->header_bytes += nlen + vlen;
    if (st->header_bytes > (size_t)h->c->w->config->server.max_header_size) {
        st->headers_too_large = true;
        return 0;
    }
    const char *n = (const char *)name;
    if (nlen > 0 && n[0] == ':') {
        if (nlen == 7 && memcmp(n, ":method", 7) == 0) {
            char *m = arena_strndup(&req->arena, (const char *)value, vlen);
            req->method_name = m;
            req->method = method_from_name(m);
        } else if (nlen == 5 && memcmp(n, ":path", 5) == 0) {
            char *url = arena_strndup(&req->arena, (const char *)value, vlen);
            char *q = strchr(url, '?');
            if (q) {
                *q = '\0';
                req->query = q + 1;
            }
            req->path = url;
        } else if (nlen == 10 && memcmp(n, ":authority", 10) == 0) {
            /* HTTP/1.1's Host, unless the client sent both. */
            if (!http_header_get(req, "host"))
                store_header(req, "host", 4, value, vlen, &st->headers_too_large);
        }
        return 0;
    }
    if (nlen == 4 && memcmp(n, "host", 4) == 0) {
        for (size_t i = 0; i < req->n_headers; i++)
            if (strcmp(req->headers[i].name, "host") == 0) return 0; /* :authority won */
    }
    store_header(req, n, nlen, value, vlen, &st->headers_too_large);
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                              size_t len, void *user)
{
    struct h2_session *h = user;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (!st || st->state != ST_READING) return 0; /* answered already: dropped */
    size_t max = (size_t)h->c->w->config->server.max_request_size;
    if (st->body_len + len > max) {
        reject(h, st, GW_ERR_REQUEST_TOO_LARGE);
        return 0;
    }
    if (st->body_len + len + 1 > st->body_cap) {
        size_t cap = st->body_cap ? st->body_cap * 2 : 1024;
        while (cap < st->body_len + len + 1) cap *= 2;
        st->body = xrealloc(st->body, cap);
        st->body_cap = cap;
    }
    memcpy(st->body + st->body_len, data, len);
    st->body_len += len;
    st->body[st->body_len] = '\0';
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
    struct h2_session *h = user;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (!st) return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST &&
        st->req) {
        struct http_request *req = st->req;
        if (st->headers_too_large) {
            reject(h, st, GW_ERR_HEADERS_TOO_LARGE);
        } else if (!req->path || !req->method_name) {
            reject(h, st, GW_ERR_BAD_REQUEST); /* CONNECT: no :path */
        } else {
            /* A declared body over the limit is refused before it arrives. */
            const char *cl = http_header_get(req, "content-length");
            if (cl && strtoull(cl, NULL, 10) > (unsigned long long)h->c->w->config->server.max_request_size)
                reject(h, st, GW_ERR_REQUEST_TOO_LARGE);
        }
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        st->remote_closed = true;
        queue_ready(h, st);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *user)
{
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, id);
    if (!st) return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    /* RST_STREAM from the client, or the response done: a request still
     * with its handler is aborted, which cancels the upstream call. */
    stream_drop_request(st);
    struct h2_session *h = st->h;
    stream_free(st);
    if (h->n_streams == 0) h->c->state = CONN_IDLE;
    return 0;
}

/* After the server's END_STREAM, a request still arriving (answered early:
 * 413, 408) is cut with RST_STREAM NO_ERROR (RFC 9113 8.1). */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) return 0;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (st && !st->remote_closed)
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    return 0;
}

/* ---- session set-up ---- */

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;

static void init_once(void)
{
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    nghttp2_option_new(&options);
    /* Closed streams are not kept for the priority tree: a stream's user
     * data is ours until on_stream_close, never after. */
    nghttp2_option_set_no_closed_streams(options, 1);
}

int h2_conn_detect(struct http_conn *c)
{
    if (c->tls) {
        const unsigned char *alpn = NULL;
        unsigned len = 0;
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl) SSL_get0_alpn_selected(ssl, &alpn, &len);
        if (len == 2 && memcmp(alpn, "h2", 2) == 0) return 1;
    }
    struct evbuffer *in = bufferevent_get_input(c->bev);
    char first[PREFACE_LEN];
    ev_ssize_t n = evbuffer_copyout(in, first, PREFACE_LEN);
    if (n <= 0) return -1;
    if (memcmp(first, preface, (size_t)n) != 0) return 0;
    return n == PREFACE_LEN ? 1 : -1;
}

void h2_conn_start(struct http_conn *c)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_once);
    struct h2_session *h = xcalloc(1, sizeof *h);
    h->c = c;
    c->h2 = h;
    nghttp2_session_server_new2(&h->s, callbacks, h, options);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_CONCURRENT_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)c->w->config->server.max_header_size},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
    nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
}

/* ---- dispatch ---- */

static void dispatch(struct h2_session *h, struct h2_stream *st)
{
    struct http_request *req = st->req;
    struct http_conn *c = h->c;
    st->state = ST_HANDLING;
    if (!req) return;
    req->config = config_ref(c->w->config);
    if (c->w->prepare) c->w->prepare(req);
    if (st->rejected) {
        char msg[160];
        const char *m = msg;
        switch (st->reject) {
        case GW_ERR_REQUEST_TOO_LARGE:
            snprintf(msg, sizeof msg,
                     "Request body is larger than the server's limit of %lld bytes.",
                     (long long)req->config->server.max_request_size);
            break;
        case GW_ERR_HEADERS_TOO_LARGE: m = "Request headers are too large."; break;
        case GW_ERR_REQUEST_TIMEOUT:
            m = "The request was not received in time (server.read_timeout).";
            break;
        default: m = "Malformed HTTP/2 request."; break;
        }
        http_respond_error(req, st->reject, m, NULL);
        return;
    }
    if (st->body_len) {
        req->body = st->body;
        req->body_len = st->body_len;
        arena_on_free(&req->arena, free, st->body);
        st->body = NULL;
        st->body_len = st->body_cap = 0;
    } else {
        req->body = arena_strdup(&req->arena, "");
    }
    c->w->handler(req);
}

static void dispatch_ready(struct h2_session *h)
{
    /* A handler may answer at once; its sends gather into one. */
    for (size_t i = 0; i < h->n_ready && !h->c->freed_scheduled; i++) {
        struct h2_stream *st = nghttp2_session_get_stream_user_data(h->s, h->ready[i]);
        if (st && st->state == ST_QUEUED) dispatch(h, st);
    }
    h->n_ready = 0;
}

static void on_stream_timer(evutil_socket_t fd, short what, void *arg)
{
    struct h2_stream *st = arg;
    struct h2_session *h = st->h;
    if (st->state == ST_HANDLING && st->req && st->req->drain_wanted) {
        /* write_timeout for one stream: its client has not opened its
         * window for that long. Cancel it (the handler is aborted on
         * close); the connection's other streams go on. */
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
        do_send(h);
        return;
    }
    if (st->state != ST_READING) return;
    h->in_io = true;
    reject(h, st, GW_ERR_REQUEST_TIMEOUT);
    dispatch_ready(h);
    h->in_io = false;
    do_send(h);
}

/* ---- I/O ---- */

static void fatal(struct h2_session *h, int rv)
{
    /* nghttp2 queued a GOAWAY for most protocol errors; for the rest
     * (a bad preface, a flood), end the session here. */
    if (rv != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
        nghttp2_session_terminate_session(h->s, NGHTTP2_PROTOCOL_ERROR);
    else
        h->c->closing = true;
}

/* Runs drain callbacks of streams whose buffered output fell below the
 * low watermark. */
static void run_drains(struct h2_session *h)
{
    for (struct h2_stream *st = h->streams; st; st = st->next) {
        struct http_request *req = st->req;
        if (req && req->drain_wanted && evbuffer_get_length(st->out) <= OUT_LOW_WATERMARK) {
            req->drain_wanted = false;
            event_del(st->timer);
            if (req->on_drain) req->on_drain(req->handler_data);
        }
    }
}

/* Moves frames from the session to the connection's output (up to its high
 * watermark: a client that reads slowly holds frames in the session, not
 * in our buffers), writes them, and closes when the session is done. */
static void do_send(struct h2_session *h)
{
    struct http_conn *c = h->c;
    if (h->in_io) {
        h->want_send = true;
        return;
    }
    if (c->freed_scheduled) return;
    struct evbuffer *out = c->out; /* http_conn_flush writes it (and encrypts on TLS) */
    h->in_io = true;
    do {
        h->want_send = false;
        while (http_conn_out_len(c) <= OUT_HIGH_WATERMARK) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(h->s, &data);
            if (n < 0) {
                log_event(LOG_WARN, "h2_send", "HTTP/2 session error: %s", nghttp2_strerror((int)n));
                http_conn_close(c);
                break;
            }
            if (n == 0) break;
            if (evbuffer_add(out, data, (size_t)n) != 0) {
                http_conn_close(c);
                break;
            }
        }
        if (c->freed_scheduled) break;
        run_drains(h);
    } while (h->want_send && !c->freed_scheduled);
    h->in_io = false;
    if (c->freed_scheduled) return;
    if (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s))
        c->closing = true; /* http_conn_flush closes once the output is out */
    else if (h->n_streams == 0)
        http_conn_start_timer(c, c->w->config->server.idle_timeout_ms);
    http_conn_flush(c);
}

void h2_conn_input(struct http_conn *c)
{
    struct h2_session *h = c->h2;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    h->in_io = true;
    while (!c->freed_scheduled && !c->closing && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        ssize_t n = nghttp2_session_mem_recv(h->s, v.iov_base, v.iov_len);
        if (n < 0) {
            fatal(h, (int)n);
            evbuffer_drain(in, evbuffer_get_length(in));
            break;
        }
        evbuffer_drain(in, (size_t)n);
    }
    if (c->closing) evbuffer_drain(in, evbuffer_get_length(in));
    dispatch_ready(h);
    h->in_io = false;
    do_send(h);
    if (c->freed_scheduled) return;
    /* Frames the client makes us queue (answers, PING and SETTINGS acks)
     * wait while it does not read: stop reading until on_write. */
    if (http_conn_out_len(c) > OUT_HIGH_WATERMARK || c->closing)
        http_conn_read_enable(c, false);
}

void h2_conn_on_write(struct http_conn *c)
{
    struct h2_session *h = c->h2;
    if (c->freed_scheduled) return;
    do_send(h);
    if (!c->freed_scheduled && !c->closing && !c->reading &&
        http_conn_out_len(c) <= OUT_HIGH_WATERMARK)
        http_conn_read_enable(c, true);
}

static void goaway(struct h2_session *h, uint32_t code)
{
    if (h->goaway) return;
    h->goaway = true;
    nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->s),
                          code, NULL, 0);
}

void h2_conn_on_timer(struct http_conn *c)
{
    struct h2_session *h = c->h2;
    if (h->n_streams > 0 || c->freed_scheduled) return;
    goaway(h, NGHTTP2_NO_ERROR);
    do_send(h);
    c->closing = true;
    if (!c->freed_scheduled) http_conn_flush(c);
}

void h2_conn_shutdown(struct http_conn *c)
{
    if (c->freed_scheduled) return;
    goaway(c->h2, NGHTTP2_NO_ERROR);
    do_send(c->h2);
}

void h2_conn_free(struct http_conn *c)
{
    struct h2_session *h = c->h2;
    c->h2 = NULL;
    while (h->streams) {
        struct h2_stream *st = h->streams;
        stream_drop_request(st);
        stream_free(st);
    }
    nghttp2_session_del(h->s);
    free(h->ready);
    free(h);
}

/* ---- responses ---- */

/* The request's part is over once its response is queued: the access log
 * runs and its arena goes; the stream lives on until nghttp2 sent it all. */
static void finish(struct http_request *req)
{
    struct h2_stream *st = req->h2;
    struct http_worker *w = st->h->c->w;
    req->responded = true;
    st->req = NULL;
    if (w->on_complete) w->on_complete(req);
    http_request_free(req);
    do_send(st->h);
}

/* Submits the response HEADERS: `trailers` (trailers-only) are added to the
 * same frame; `with_data` attaches the stream's data provider. */
static void submit_head(struct http_request *req, int status, const char *content_type,
                        const char *extra_headers, long long content_length, bool with_data,
                        const char *trailers)
{
    struct h2_stream *st = req->h2;
    struct h2_session *h = st->h;
    const char *node = req->config && req->config->node.id ? req->config->node.id : "";
    size_t cap = 8 + count_lines(extra_headers) + count_lines(req->extra_headers) +
                 count_lines(trailers);
    nghttp2_nv *nv = arena_alloc(&req->arena, cap * sizeof *nv);
    size_t scratch_len = (extra_headers ? strlen(extra_headers) : 0) +
                         (req->extra_headers ? strlen(req->extra_headers) : 0) +
                         (trailers ? strlen(trailers) : 0) + 1;
    char *scratch = arena_alloc(&req->arena, scratch_len);
    char status_s[8], len_s[24];
    snprintf(status_s, sizeof status_s, "%d", status);
    size_t n = 0;
#define NV(k, v) \
    (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), sizeof(k) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
    nv[n++] = NV(":status", status_s);
    if (content_type) nv[n++] = NV("content-type", content_type);
    if (content_length >= 0) {
        snprintf(len_s, sizeof len_s, "%lld", content_length);
        nv[n++] = NV("content-length", len_s);
    }
    nv[n++] = NV("x-aiproxy-request-id", req->id);
    nv[n++] = NV("x-request-id", req->id);
    nv[n++] = NV("x-aiproxy-node", node);
#undef NV
    n = add_header_lines(nv, n, cap, extra_headers, &scratch);
    n = add_header_lines(nv, n, cap, req->extra_headers, &scratch);
    n = add_header_lines(nv, n, cap, trailers, &scratch);
    req->status = status;
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = on_read_data};
    if (!st->out) st->out = evbuffer_new();
    int rv = nghttp2_submit_response(h->s, st->id, nv, n, with_data ? &prd : NULL);
    if (rv != 0)
        log_event(LOG_WARN, "h2_submit", "stream %d: cannot submit the response: %s", st->id,
                  nghttp2_strerror(rv));
}

void h2_respond(struct http_request *req, int status, const char *content_type,
                const char *extra_headers, const char *body, size_t len, const char *trailers)
{
    struct h2_stream *st = req->h2;
    bool head = req->method == HTTP_M_HEAD;
    if (len == 0 && trailers) {
        /* Trailers-Only: one HEADERS frame with END_STREAM. */
        submit_head(req, status, content_type, extra_headers, -1, false, trailers);
    } else if ((len == 0 || head) && !trailers) {
        submit_head(req, status, content_type, extra_headers, (long long)len, false, NULL);
    } else {
        submit_head(req, status, content_type, extra_headers, trailers ? -1 : (long long)len,
                    true, NULL);
        if (!head && len && evbuffer_add(st->out, body, len) != 0) http_conn_close(st->h->c);
        if (trailers) st->trailers = xstrdup(trailers);
        st->eof = true;
    }
    req->bytes_out += (int64_t)len;
    finish(req);
}

void h2_stream_start(struct http_request *req, int status, const char *content_type,
                     const char *extra_headers)
{
    submit_head(req, status, content_type, extra_headers, -1, true, NULL);
    req->streaming = true;
}

static void resume(struct h2_stream *st)
{
    if (!st->deferred) return;
    st->deferred = false;
    nghttp2_session_resume_data(st->h->s, st->id);
}

bool h2_stream_write3(struct http_request *req, const char *a, size_t alen, const char *b,
                      size_t blen, const char *cc, size_t clen)
{
    struct h2_stream *st = req->h2;
    struct http_conn *c = st->h->c;
    size_t total = alen + blen + clen;
    if (total == 0 || c->freed_scheduled) return false;
    if ((alen && evbuffer_add(st->out, a, alen) != 0) ||
        (blen && evbuffer_add(st->out, b, blen) != 0) ||
        (clen && evbuffer_add(st->out, cc, clen) != 0)) {
        http_conn_close(c);
        return false;
    }
    req->bytes_out += (int64_t)total;
    resume(st);
    /* As for 1.1: writes gather until http_stream_flush; past the high
     * watermark they go now, and past it still (the client's window for
     * this stream is closed), the caller waits for on_drain. */
    if (evbuffer_get_length(st->out) > OUT_HIGH_WATERMARK) {
        do_send(st->h);
        if (c->freed_scheduled) return false;
        if (evbuffer_get_length(st->out) > OUT_HIGH_WATERMARK) {
            if (!req->drain_wanted) {
                int64_t ms = c->w->config->server.write_timeout_ms;
                struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
                event_add(st->timer, &tv);
            }
            req->drain_wanted = true;
            return true;
        }
    }
    return false;
}

void h2_stream_end(struct http_request *req, const char *trailers)
{
    struct h2_stream *st = req->h2;
    if (trailers) st->trailers = xstrdup(trailers);
    st->eof = true;
    resume(st);
    finish(req);
}

void h2_stream_flush(struct http_request *req)
{
    do_send(req->h2->h);
}
