/* server: HTTP/1.1 workers over libevent bufferevents and http-parser.
 *
 * Each worker thread owns an event_base, a SO_REUSEPORT listener and its
 * connections; a request lives and dies on one worker, so nothing here
 * locks on the hot path. A connection handles one request at a time: the
 * parser pauses at message complete (pipelined bytes wait in the input
 * buffer), the handler answers now or later, then parsing resumes.
 *
 * Replies are written straight to the socket (evbuffer_write) and EV_WRITE
 * is armed only when the socket is full, which saves the writability round
 * trip a bufferevent would otherwise make per reply. */
#include "http/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <limits.h>
#include <netdb.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/str.h"
#include "core/clock.h"
#include "core/log.h"
#include "http/fast_request.h"
#include "http/h2.h"
#include "http/server_internal.h"
#include "http/tls.h"

bool http_server_is_draining(const struct http_request *req)
{
    return atomic_load(&req->worker->server->draining);
}

/* ---- helpers ---- */

void *http_conn_memo(const struct http_request *req)
{
    return req->conn ? req->conn->memo : NULL;
}

void http_conn_set_memo(struct http_request *req, void *memo, void (*free_cb)(void *memo))
{
    struct http_conn *c = req->conn;
    if (!c) {
        if (memo) free_cb(memo);
        return;
    }
    if (c->memo && c->memo != memo) c->memo_free(c->memo);
    c->memo = memo;
    c->memo_free = free_cb;
}

static const char *status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 529: return "Overloaded";
    default: return "Status";
    }
}

static enum http_method_kind method_kind(unsigned m)
{
    switch (m) {
    case HTTP_GET: return HTTP_M_GET;
    case HTTP_HEAD: return HTTP_M_HEAD;
    case HTTP_POST: return HTTP_M_POST;
    case HTTP_PUT: return HTTP_M_PUT;
    case HTTP_DELETE: return HTTP_M_DELETE;
    case HTTP_OPTIONS: return HTTP_M_OPTIONS;
    case HTTP_PATCH: return HTTP_M_PATCH;
    default: return HTTP_M_OTHER;
    }
}

const char *http_header_getn(const struct http_request *req, const char *name, size_t len)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len == len && memcmp(h->name, name, len) == 0) return h->value;
    }
    return NULL;
}

static void grow_append(char **buf, size_t *len, size_t *cap, const char *at, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        while (ncap < *len + n + 1) ncap *= 2;
        *buf = xrealloc(*buf, ncap);
        *cap = ncap;
    }
    memcpy(*buf + *len, at, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* ---- connection lifetime ---- */

static void conn_free_now(evutil_socket_t fd, short what, void *arg);
static void process_input(struct http_conn *c);
static void finish_request(struct http_request *req);

void http_request_free(struct http_request *req)
{
    config_unref(req->config);
    struct arena a = req->arena;
    arena_free(&a); /* req itself lives in its arena */
}

void http_conn_read_enable(struct http_conn *c, bool on)
{
    if (on == c->reading) return;
    c->reading = on;
    if (c->tls) {
        if (on) bufferevent_enable(c->bev, EV_READ);
        else bufferevent_disable(c->bev, EV_READ);
        return;
    }
    if (on) event_add(c->read_ev, NULL);
    else event_del(c->read_ev);
}

/* Closes at once (on the next loop turn): used for errors and aborts. */
void http_conn_close(struct http_conn *c)
{
    if (c->freed_scheduled) return;
    c->freed_scheduled = true;
    c->closing = true;
    http_conn_read_enable(c, false);
    bufferevent_disable(c->bev, EV_WRITE);
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    event_del(c->timer);
    event_base_once(c->w->base, -1, EV_TIMEOUT, conn_free_now, c, NULL);
}

/* Aborts the request a handler owns: the client left or the server must
 * drop it. The handler releases what it holds; then the request is freed. */
static void conn_abort_request(struct http_conn *c)
{
    struct http_request *req = c->req;
    if (!req) return;
    c->req = NULL;
    if (c->state == CONN_HANDLING && !req->responded) {
        if (req->on_abort) req->on_abort(req->handler_data);
        req->status = 499; /* nginx's "client closed request" */
        if (c->w->on_complete && req->config) c->w->on_complete(req);
    }
    http_request_free(req);
}

static void conn_free_now(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    struct http_worker *w = c->w;
    conn_abort_request(c);
    if (c->h2) h2_conn_free(c);
    if (c->prev) c->prev->next = c->next;
    else w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->n_conns--;
    event_free(c->timer);
    if (c->read_ev) event_free(c->read_ev);
    if (c->tls) evbuffer_free(c->out);
    bufferevent_free(c->bev);
    free(c->hname);
    free(c->hvalue);
    free(c->url);
    free(c->body);
    if (c->memo) c->memo_free(c->memo);
    free(c);
    if (w->draining && w->n_conns == 0) event_base_loopbreak(w->base);
}

/* TLS: encrypts and writes what is queued now, in records of up to 16 KB,
 * as the plain path writes (the bufferevent would write on the next loop
 * turn, after two epoll_ctl calls and a wake-up per reply). What the
 * socket refuses stays queued: a record OpenSSL could not finish
 * (WANT_WRITE) is retried by the bufferevent with the same bytes at the
 * front of the output. Returns false when the connection was closed. */
static bool tls_write_now(struct http_conn *c, struct evbuffer *out)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    bool ok = true;
    size_t len;
    while ((len = evbuffer_get_length(out)) > 0) {
        size_t n = len < TLS_RECORD_MAX ? len : TLS_RECORD_MAX;
        unsigned char *p = evbuffer_pullup(out, (ev_ssize_t)n);
        ERR_clear_error();
        int w = p ? SSL_write(ssl, p, (int)n) : -1;
        if (w > 0) {
            evbuffer_drain(out, (size_t)w);
            continue;
        }
        int e = p ? SSL_get_error(ssl, w) : SSL_ERROR_SSL;
        ok = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ;
        break;
    }
    if (!ok) {
        ERR_clear_error();
        http_conn_close(c);
    }
    return ok;
}

/* Bytes queued and not yet written: staged and in the bufferevent. */
size_t http_conn_out_len(const struct http_conn *c)
{
    size_t n = evbuffer_get_length(c->out);
    return c->tls ? n + evbuffer_get_length(bufferevent_get_output(c->bev)) : n;
}

/* Writes what is queued straight to the socket; arms EV_WRITE only when
 * the kernel would not take it all. */
void http_conn_flush(struct http_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->tls) {
        /* Written here only while the bufferevent has nothing of its own
         * to write (OpenSSL wants a refused write retried by the writer
         * that began it, and order must hold); what is left moves to the
         * bufferevent (chains are moved, not copied), which writes it when
         * the socket takes more. */
        if (c->tls_handshaken && evbuffer_get_length(c->out) > 0 &&
            evbuffer_get_length(out) == 0 && !(bufferevent_get_enabled(c->bev) & EV_WRITE) &&
            !tls_write_now(c, c->out))
            return;
        if (evbuffer_get_length(c->out) > 0 && evbuffer_add_buffer(out, c->out) != 0) {
            http_conn_close(c);
            return;
        }
        if (evbuffer_get_length(out) > 0) bufferevent_enable(c->bev, EV_WRITE);
        else if (c->closing) http_conn_close(c);
        return;
    }
    /* A bufferevent keeps its output's front frozen outside its own write
     * callback; thaw it for our write, as that callback does. */
    evbuffer_unfreeze(out, 1);
    while (evbuffer_get_length(out) > 0) {
        errno = 0;
        int n = evbuffer_write(out, c->fd);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
            /* The peer is gone; the event callback would tell us later, but
             * there is no point waiting. */
            evbuffer_freeze(out, 1);
            http_conn_close(c);
            return;
        }
    }
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) > 0) {
        bufferevent_enable(c->bev, EV_WRITE);
    } else if (c->closing) {
        http_conn_close(c);
    }
}

void http_conn_start_timer(struct http_conn *c, int64_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    event_add(c->timer, &tv);
}

/* ---- response writing ---- */

static int add_bytes(struct http_conn *c, const void *data, size_t len)
{
    if (evbuffer_add(c->out, data, len) != 0) {
        /* A reply that cannot be queued is a closed connection, not a lost one. */
        http_conn_close(c);
        return -1;
    }
    return 0;
}

/* Appends a string to a bounded header buffer (truncating, never overflowing). */
static char *put(char *p, const char *end, const char *str)
{
    size_t n = strlen(str);
    if (n > (size_t)(end - p)) n = (size_t)(end - p);
    memcpy(p, str, n);
    return p + n;
}

static char *put_uint(char *p, const char *end, unsigned long long v)
{
    char digits[24];
    char *q = digits + sizeof digits;
    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    size_t n = (size_t)(digits + sizeof digits - q);
    if (n > (size_t)(end - p)) n = (size_t)(end - p);
    memcpy(p, q, n);
    return p + n;
}

static void write_head(struct http_request *req, int status, const char *content_type,
                       const char *extra_headers, long long content_length)
{
    struct http_conn *c = req->conn;
    bool keep = req->keep_alive && !c->w->draining && !c->close_after_response;
    const char *node = req->config && req->config->node.id ? req->config->node.id : "";
    /* Built by hand: this runs for every response. */
    char head[1024];
    char *p = head, *end = head + sizeof head;
    p = put(p, end, "HTTP/1.1 ");
    p = put_uint(p, end, (unsigned)status);
    p = put(p, end, " ");
    p = put(p, end, status_text(status));
    p = put(p, end, "\r\nContent-Type: ");
    p = put(p, end, content_type);
    if (content_length >= 0) {
        p = put(p, end, "\r\nContent-Length: ");
        p = put_uint(p, end, (unsigned long long)content_length);
    } else {
        p = put(p, end, "\r\nTransfer-Encoding: chunked");
    }
    p = put(p, end, "\r\nx-aiproxy-request-id: ");
    p = put(p, end, req->id);
    p = put(p, end, "\r\nx-request-id: ");
    p = put(p, end, req->id);
    p = put(p, end, "\r\nx-aiproxy-node: ");
    p = put(p, end, node);
    p = put(p, end, keep ? "\r\n" : "\r\nConnection: close\r\n");
    if (!keep) c->close_after_response = true;
    req->status = status;
    if (add_bytes(c, head, (size_t)(p - head)) != 0) return;
    if (extra_headers && add_bytes(c, extra_headers, strlen(extra_headers)) != 0) return;
    if (req->extra_headers && add_bytes(c, req->extra_headers, strlen(req->extra_headers)) != 0)
        return;
    add_bytes(c, "\r\n", 2);
}

void http_respond(struct http_request *req, int status, const char *content_type,
                  const char *extra_headers, const char *body, size_t len)
{
    struct http_conn *c = req->conn;
    if (req->h2) {
        h2_respond(req, status, content_type, extra_headers, body, len, NULL);
        return;
    }
    write_head(req, status, content_type, extra_headers, (long long)len);
    if (req->method != HTTP_M_HEAD && len) add_bytes(c, body, len);
    req->bytes_out += (int64_t)len;
    req->responded = true;
    finish_request(req);
}

void http_respond_error_h(struct http_request *req, enum gw_error e, const char *message,
                          const char *param, const char *extra_headers)
{
    if (req->error_responder) {
        req->error_responder(req, e, message, param);
        return;
    }
    char body[2048];
    size_t n = gw_error_body(e, message, param, body, sizeof body);
    char *out;
    size_t out_len;
    if (req->error_filter && req->error_filter(req, gw_error_status(e), body, n, &out, &out_len)) {
        http_respond(req, gw_error_status(e), "application/json", extra_headers, out, out_len);
        return;
    }
    http_respond(req, gw_error_status(e), "application/json", extra_headers, body, n);
}

void http_respond_error(struct http_request *req, enum gw_error e, const char *message,
                        const char *param)
{
    http_respond_error_h(req, e, message, param, NULL);
}

void http_respond_trailers(struct http_request *req, int status, const char *content_type,
                           const char *extra_headers, const char *body, size_t len,
                           const char *trailers)
{
    if (req->h2) h2_respond(req, status, content_type, extra_headers, body, len, trailers);
    else http_respond(req, status, content_type, extra_headers, body, len);
}

bool http_request_is_h2(const struct http_request *req)
{
    return req->h2 != NULL;
}

void http_stream_start(struct http_request *req, int status, const char *content_type,
                       const char *extra_headers)
{
    if (req->h2) {
        h2_stream_start(req, status, content_type, extra_headers);
        return;
    }
    /* Queued, not written: the head leaves with the first chunks, in one
     * system call, when the handler calls http_stream_flush. */
    write_head(req, status, content_type, extra_headers, -1);
    req->streaming = true;
}

void http_stream_flush(struct http_request *req)
{
    if (req->h2) {
        h2_stream_flush(req);
        return;
    }
    if (!req->conn->freed_scheduled) http_conn_flush(req->conn);
}

bool http_stream_write3(struct http_request *req, const char *a, size_t alen, const char *b,
                        size_t blen, const char *cc, size_t clen)
{
    struct http_conn *c = req->conn;
    if (req->h2) return h2_stream_write3(req, a, alen, b, blen, cc, clen);
    size_t total = alen + blen + clen;
    if (total == 0 || c->freed_scheduled) return false;
    char size_line[24];
    static const char hexdig[] = "0123456789abcdef";
    char *e = size_line + sizeof size_line, *q = e;
    *--q = '\n';
    *--q = '\r';
    for (size_t v = total; v; v >>= 4) *--q = hexdig[v & 15];
    size_t n = (size_t)(e - q);
    struct evbuffer *out = c->out;
    int rc;
    if (total <= 2048) {
        /* A stream event: framed in one buffer, one append (an append
         * costs more than copying a couple of hundred bytes). */
        char one[2048 + 32];
        size_t k = 0;
        memcpy(one, q, n);
        k += n;
        if (alen) memcpy(one + k, a, alen);
        k += alen;
        if (blen) memcpy(one + k, b, blen);
        k += blen;
        if (clen) memcpy(one + k, cc, clen);
        k += clen;
        memcpy(one + k, "\r\n", 2);
        rc = evbuffer_add(out, one, k + 2);
    } else {
        rc = (evbuffer_add(out, q, n) != 0 || (alen && evbuffer_add(out, a, alen) != 0) ||
              (blen && evbuffer_add(out, b, blen) != 0) ||
              (clen && evbuffer_add(out, cc, clen) != 0) || evbuffer_add(out, "\r\n", 2) != 0)
                 ? -1
                 : 0;
    }
    if (rc != 0) {
        http_conn_close(c);
        return false;
    }
    req->bytes_out += (int64_t)total;
    /* Chunks gather until http_stream_flush (one write per upstream read);
     * past the high watermark they go now, and the caller is told to wait. */
    if (http_conn_out_len(c) > OUT_HIGH_WATERMARK) {
        http_conn_flush(c);
        if (c->freed_scheduled) return false;
        if (http_conn_out_len(c) > OUT_HIGH_WATERMARK) {
            req->drain_wanted = true;
            return true;
        }
    }
    return false;
}

bool http_stream_write(struct http_request *req, const char *data, size_t len)
{
    return http_stream_write3(req, data, len, NULL, 0, NULL, 0);
}

void http_stream_end(struct http_request *req)
{
    if (req->h2) {
        h2_stream_end(req, NULL);
        return;
    }
    add_bytes(req->conn, "0\r\n\r\n", 5);
    req->responded = true;
    finish_request(req);
}

void http_stream_end_trailers(struct http_request *req, const char *trailers)
{
    if (req->h2) h2_stream_end(req, trailers);
    else http_stream_end(req);
}

/* The response is queued: free the request, then either close or go on
 * with the next (possibly already pipelined) request. */
static void finish_request(struct http_request *req)
{
    struct http_conn *c = req->conn;
    if (c->req == req) c->req = NULL;
    if (c->w->on_complete) c->w->on_complete(req);
    http_request_free(req);
    c->state = CONN_IDLE;
    if (c->close_after_response) c->closing = true;
    http_conn_flush(c);
    if (c->freed_scheduled) return;
    if (c->closing) {
        /* conn_flush closes once the output is empty. */
        http_conn_read_enable(c, false);
        return;
    }
    http_parser_pause(&c->parser, 0);
    http_conn_start_timer(c, c->w->config->server.idle_timeout_ms);
    http_conn_read_enable(c, true);
    if (!c->in_dispatch) process_input(c);
}

/* ---- parsing ---- */

struct http_request *http_request_new(struct http_conn *c)
{
    struct arena a;
    arena_init(&a);
    struct http_request *req = arena_alloc(&a, sizeof *req);
    memset(req, 0, sizeof *req);
    req->arena = a;
    req->conn = c;
    req->worker = c->w;
    req->start_us = clock_mono_us();
    ids_request(req->id);
    str_copy(req->client_ip, sizeof req->client_ip, c->peer_ip);
    req->from_peer = c->w->server && c->w->server->mesh;
    return req;
}

static int on_message_begin(http_parser *p)
{
    struct http_conn *c = p->data;
    c->parser_mid_message = true;
    c->state = CONN_READING;
    c->req = http_request_new(c);
    c->url_len = 0;
    c->hname_len = c->hvalue_len = 0;
    c->in_value = false;
    c->header_bytes = 0;
    c->body_len = 0;
    c->body_too_large = false;
    c->headers_too_large = false;
    http_conn_start_timer(c, c->w->config->server.read_timeout_ms);
    return 0;
}

static bool count_header_bytes(struct http_conn *c, size_t n)
{
    c->header_bytes += n;
    if (c->header_bytes > (size_t)c->w->config->server.max_header_size) {
        c->headers_too_large = true;
        return false;
    }
    return true;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    if (!count_header_bytes(c, n)) return 1;
    grow_append(&c->url, &c->url_len, &c->url_cap, at, n);
    return 0;
}

/* Adds a header to the request: its name lowercased, both copied into the
 * request's arena (both parsers build requests through here). */
static void add_header(struct http_request *req, const char *name, size_t name_len,
                       const char *value, size_t value_len)
{
    struct http_header *h = &req->headers[req->n_headers++];
    /* name, NUL, value, NUL: one allocation, the name lowercased on the way */
    char *mem = arena_alloc(&req->arena, name_len + value_len + 2);
    for (size_t i = 0; i < name_len; i++) {
        char ch = name[i];
        mem[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
    }
    mem[name_len] = '\0';
    memcpy(mem + name_len + 1, value, value_len);
    mem[name_len + 1 + value_len] = '\0';
    h->name = mem;
    h->name_len = name_len;
    h->value = mem + name_len + 1;
    h->value_len = value_len;
}

/* Sets the request's path and query from its request-target. */
static void set_target(struct http_request *req, const char *target, size_t len)
{
    char *url = arena_strndup(&req->arena, target, len);
    char *q = strchr(url, '?');
    if (q) {
        *q = '\0';
        req->query = q + 1;
    }
    req->path = url;
}

static int store_header(struct http_conn *c)
{
    struct http_request *req = c->req;
    if (c->hname_len == 0) return 0;
    if (req->n_headers >= HTTP_MAX_HEADERS) {
        c->headers_too_large = true;
        return 1;
    }
    add_header(req, c->hname, c->hname_len, c->hvalue ? c->hvalue : "", c->hvalue_len);
    c->hname_len = c->hvalue_len = 0;
    c->in_value = false;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    if (!count_header_bytes(c, n)) return 1;
    if (c->in_value && store_header(c) != 0) return 1;
    grow_append(&c->hname, &c->hname_len, &c->hname_cap, at, n);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    if (!count_header_bytes(c, n)) return 1;
    c->in_value = true;
    grow_append(&c->hvalue, &c->hvalue_len, &c->hvalue_cap, at, n);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_request *req = c->req;
    if (c->in_value && store_header(c) != 0) return 1;
    req->method = method_kind(p->method);
    req->method_name = http_method_str(p->method);
    req->keep_alive = http_should_keep_alive(p);

    set_target(req, c->url ? c->url : "", c->url_len);

    int64_t max = c->w->config->server.max_request_size;
    if (p->content_length != ULLONG_MAX && p->content_length > (uint64_t)max) {
        c->body_too_large = true;
    } else if (p->content_length != ULLONG_MAX && p->content_length > 0) {
        c->body_cap = (size_t)p->content_length + 1;
        c->body = xrealloc(c->body, c->body_cap);
    }
    const char *expect = http_header_get(req, "expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && !c->body_too_large &&
        p->content_length != 0 && add_bytes(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0)
        http_conn_flush(c);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    if (c->body_too_large) return 0; /* drain: read and drop */
    if (c->body_len + n > (size_t)c->w->config->server.max_request_size) {
        c->body_too_large = true;
        return 0;
    }
    grow_append(&c->body, &c->body_len, &c->body_cap, at, n);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    http_parser_pause(p, 1);
    (void)c;
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Answers a request that could not be parsed, then closes. */
static void respond_parse_error(struct http_conn *c, enum gw_error e, const char *message)
{
    if (!c->req) c->req = http_request_new(c);
    struct http_request *req = c->req;
    req->config = config_ref(c->w->config);
    req->keep_alive = false;
    c->close_after_response = true;
    c->state = CONN_HANDLING;
    http_respond_error(req, e, message, NULL);
}

static void dispatch(struct http_conn *c)
{
    struct http_request *req = c->req;
    c->parser_mid_message = false;
    event_del(c->timer);
    c->state = CONN_HANDLING;
    req->config = config_ref(c->w->config);
    if (c->body_too_large) {
        req->keep_alive = false;
        char msg[160];
        snprintf(msg, sizeof msg, "Request body is larger than the server's limit of %lld bytes.",
                 (long long)req->config->server.max_request_size);
        http_respond_error(req, GW_ERR_REQUEST_TOO_LARGE, msg, NULL);
        return;
    }
    /* Hand the body to the request (freed with its arena). */
    if (c->body_len) {
        req->body = c->body;
        req->body_len = c->body_len;
        arena_on_free(&req->arena, free, c->body);
        c->body = NULL;
        c->body_cap = 0;
        c->body_len = 0;
    } else if (!req->body) {
        req->body = arena_strdup(&req->arena, "");
    }
    c->w->handler(req);
}

/* A whole plain request found by fast_request: the request as the
 * http-parser callbacks would have built it (names lowercased, the query
 * split off, the body copied into the request's arena: nothing points into
 * the input afterwards). */
static void take_fast(struct http_conn *c, const struct fast_request *fr)
{
    struct http_request *req = http_request_new(c);
    c->req = req;
    c->state = CONN_READING;
    for (size_t i = 0; i < fr->n_headers; i++)
        add_header(req, fr->names[i].p, fr->names[i].n, fr->values[i].p, fr->values[i].n);
    req->method = fr->method;
    req->method_name = fr->method_name;
    req->keep_alive = fr->keep_alive;
    set_target(req, fr->target.p, fr->target.n);
    req->body = arena_strndup(&req->arena, fr->body.p, fr->body.n);
    req->body_len = fr->body.n;
}

/* Feeds buffered input to the parser and dispatches complete requests, one
 * at a time, until the input is used up or a handler answers later. */
static void process_input(struct http_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (!c->proto_checked) {
        /* The first read of a connection: HTTP/2 (preface or ALPN) or 1.1. */
        int h2 = h2_conn_detect(c);
        if (h2 < 0) {
            /* A strict prefix of the preface: more must come, in time. */
            http_conn_start_timer(c, c->w->config->server.read_timeout_ms);
            return;
        }
        c->proto_checked = true;
        if (h2) {
            h2_conn_start(c);
            h2_conn_input(c);
            return;
        }
    }
    c->in_dispatch = true;
    /* A client that pipelines requests but does not read the answers must
     * not make the gateway queue answers without end: past the output's
     * high watermark, parsing waits for on_write (and the input stops at
     * its own watermark; write_timeout ends a client that never reads). */
    while (!c->freed_scheduled && !c->closing && c->state != CONN_HANDLING &&
           evbuffer_get_length(in) > 0 && http_conn_out_len(c) <= OUT_HIGH_WATERMARK) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        if (!c->parser_mid_message) {
            /* The common request, whole in the first segment: one pass. */
            struct fast_request fr;
            const struct config *cfg = c->w->config;
            size_t took = fast_request_parse(v.iov_base, v.iov_len,
                                             (size_t)cfg->server.max_header_size,
                                             (size_t)cfg->server.max_request_size, &fr);
            if (took) {
                take_fast(c, &fr);
                evbuffer_drain(in, took);
                dispatch(c);
                continue;
            }
        }
        size_t used = http_parser_execute(&c->parser, &parser_settings, v.iov_base, v.iov_len);
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        evbuffer_drain(in, used);
        if (err == HPE_PAUSED) {
            dispatch(c);
            continue;
        }
        if (err != HPE_OK) {
            if (c->headers_too_large)
                respond_parse_error(c, GW_ERR_HEADERS_TOO_LARGE,
                                    "Request headers are too large.");
            else {
                char msg[160];
                snprintf(msg, sizeof msg, "Malformed HTTP request: %s.",
                         http_errno_description(err));
                respond_parse_error(c, GW_ERR_BAD_REQUEST, msg);
            }
            break;
        }
    }
    c->in_dispatch = false;
    /* Reading paused at the read-ahead cap goes on once input was used. */
    if (!c->reading && !c->freed_scheduled && !c->closing &&
        evbuffer_get_length(in) < IN_HIGH_WATERMARK)
        http_conn_read_enable(c, true);
}

/* ---- socket and bufferevent callbacks ---- */

#define READ_CHUNK 16384

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (evbuffer_get_length(in) >= IN_HIGH_WATERMARK) {
        /* Pipelined input is read ahead only so far; process_input turns
         * reading back on once it has used some. */
        http_conn_read_enable(c, false);
        return;
    }
    struct evbuffer_iovec v;
    /* The bufferevent keeps its input's end frozen outside its own read
     * callback; thaw it for this read, as that callback does. */
    evbuffer_unfreeze(in, 0);
    if (evbuffer_reserve_space(in, READ_CHUNK, &v, 1) < 1) {
        evbuffer_freeze(in, 0);
        http_conn_close(c);
        return;
    }
    ssize_t n = recv(fd, v.iov_base, v.iov_len, 0);
    if (n > 0) {
        v.iov_len = (size_t)n;
        evbuffer_commit_space(in, &v, 1);
    }
    evbuffer_freeze(in, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        /* EOF or a socket error: a request being read cannot complete, and
         * one being handled has lost its reader, so its upstream stops. */
        http_conn_close(c);
        return;
    }
    if (n < 0) return;
    if (c->h2) {
        h2_conn_input(c);
        return;
    }
    if (c->state == CONN_IDLE) event_del(c->timer);
    if (c->state == CONN_HANDLING) return; /* pipelined bytes wait */
    process_input(c);
}

/* TLS connections: decrypted bytes are in the bufferevent's input. */
static void on_tls_read(struct bufferevent *bev, void *arg)
{
    struct http_conn *c = arg;
    if (evbuffer_get_length(bufferevent_get_input(bev)) >= IN_HIGH_WATERMARK)
        http_conn_read_enable(c, false);
    if (c->freed_scheduled) return;
    if (c->h2) {
        h2_conn_input(c);
        return;
    }
    if (c->state == CONN_IDLE) event_del(c->timer);
    if (c->state == CONN_HANDLING) return;
    process_input(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    struct http_conn *c = arg;
    struct evbuffer *out = bufferevent_get_output(bev);
    if (c->h2) {
        /* HTTP/2: the session fills the output again, or the close waits. */
        h2_conn_on_write(c);
        if (evbuffer_get_length(out) == 0) {
            bufferevent_disable(bev, EV_WRITE);
            if (c->closing && http_conn_out_len(c) == 0) http_conn_close(c);
        }
        return;
    }
    size_t len = http_conn_out_len(c);
    if (c->req && c->req->drain_wanted && len <= OUT_LOW_WATERMARK) {
        c->req->drain_wanted = false;
        if (c->req->on_drain) c->req->on_drain(c->req->handler_data);
    }
    if (evbuffer_get_length(out) == 0) {
        bufferevent_disable(bev, EV_WRITE);
        if (c->closing && http_conn_out_len(c) == 0) http_conn_close(c);
    }
    /* Pipelined requests held back by a full output go on. */
    if (len <= OUT_LOW_WATERMARK && c->state != CONN_HANDLING && !c->closing &&
        !c->freed_scheduled && !c->in_dispatch &&
        evbuffer_get_length(bufferevent_get_input(bev)) > 0)
        process_input(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct http_conn *c = arg;
    if (what == BEV_EVENT_CONNECTED) { /* a TLS handshake completed */
        c->tls_handshaken = true;
        return;
    }
    if (c->tls && !c->tls_handshaken && (what & BEV_EVENT_ERROR)) {
        /* Refused protocol or cipher, a missing or unverified client
         * certificate, or the client's alert about ours. OpenSSL's reason
         * names no secret. (A connection closed before its first byte is a
         * port probe, not a failure.) */
        tls_count_handshake_failure();
        unsigned long e = bufferevent_get_openssl_error(bev);
        char why[200] = "connection reset";
        if (e) ERR_error_string_n(e, why, sizeof why);
        while (bufferevent_get_openssl_error(bev)) continue;
        log_event(LOG_DEBUG, "tls_handshake_failed", "TLS handshake with %s failed: %s",
                  c->peer_ip, why);
    }
    /* EOF, error or write timeout: a request being read cannot complete,
     * and one being handled has lost its reader, so its upstream stops. */
    http_conn_close(c);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct http_conn *c = arg;
    if (c->h2) {
        h2_conn_on_timer(c);
        return;
    }
    if (c->state == CONN_READING) {
        /* read_timeout: a deadline for the whole request, from its first byte. */
        respond_parse_error(c, GW_ERR_REQUEST_TIMEOUT,
                            "The request was not received in time (server.read_timeout).");
        return;
    }
    if (c->state == CONN_IDLE) http_conn_close(c);
}

/* ---- accepting ---- */

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct http_worker *w = arg;
    if (w->draining) {
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* The one TLS test per connection: requests on it never ask again. */
    SSL *ssl = NULL;
    if (w->tls && !(ssl = SSL_new(w->tls))) {
        close(fd); /* never fall back to plain on a TLS listener */
        return;
    }
    struct http_conn *c = xcalloc(1, sizeof *c);
    c->w = w;
    c->fd = fd;
    if (ssl) {
        c->tls = true;
        c->bev = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                BEV_OPT_CLOSE_ON_FREE);
    } else {
        c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev) {
        if (ssl) SSL_free(ssl);
        close(fd);
        free(c);
        return;
    }
    c->out = c->tls ? evbuffer_new() : bufferevent_get_output(c->bev);
    if (!c->out) {
        bufferevent_free(c->bev); /* closes fd and frees the SSL */
        free(c);
        return;
    }
    c->timer = evtimer_new(w->base, on_timer, c);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->peer_ip, sizeof c->peer_ip);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->peer_ip,
                  sizeof c->peer_ip);
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->n_conns++;

    struct timeval wt = {.tv_sec = w->config->server.write_timeout_ms / 1000,
                         .tv_usec = (w->config->server.write_timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, NULL, &wt);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW_WATERMARK, 0);
    bufferevent_setcb(c->bev, c->tls ? on_tls_read : NULL, on_write, on_event, c);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    if (!c->tls) c->read_ev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_readable, c);
    http_conn_read_enable(c, true);
    http_conn_start_timer(c, w->config->server.idle_timeout_ms);
}

/* A descriptor kept in reserve: when accept fails for want of descriptors,
 * closing it makes room to accept one connection, answer it 503 in
 * OpenAI's shape and close it, so a client is told "overloaded" at once
 * instead of waiting in the backlog (the technique of libev's and nginx's
 * documentation). */
static int spare_open(void)
{
    return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void shed_one(int fd)
{
    char body[1024]; /* (gw_error_body keeps (cap - 200) / 6 bytes of the message) */
    size_t n = gw_error_body(GW_ERR_UNAVAILABLE,
                             "The gateway is out of file descriptors; retry shortly.", NULL,
                             body, sizeof body);
    char head[256];
    int h = snprintf(head, sizeof head,
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
                     n);
    /* Best effort, never blocking: the socket buffer of a fresh connection
     * takes a few hundred bytes. The request is not read; shutting down
     * the write side first lets the client see the answer before the close. */
    struct iovec iov[2] = {{head, (size_t)h}, {body, n}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    ssize_t w = sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)w;
    shutdown(fd, SHUT_WR);
    close(fd);
}

/* Sheds what waits in the backlog through the spare descriptor. Returns
 * the number of connections answered; stops when the backlog is empty or
 * the spare cannot be re-opened (another thread took the slot). */
static int shed_backlog(struct http_worker *w, evutil_socket_t lfd)
{
    int shed = 0;
    while (w->spare_fd >= 0 && shed < 64) {
        close(w->spare_fd);
        w->spare_fd = -1;
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            shed_one(fd);
            shed++;
        }
        w->spare_fd = spare_open();
        if (fd < 0) break; /* EAGAIN: the backlog is empty */
    }
    return shed;
}

/* Closes this worker's longest-idle keep-alive connection (a client
 * between requests, nothing buffered), if it has one. */
static void reclaim_idle(struct http_worker *w)
{
    struct http_conn *oldest = NULL;
    for (struct http_conn *c = w->conns; c; c = c->next) /* newest first */
        if (c->state == CONN_IDLE && !c->freed_scheduled && !c->req &&
            evbuffer_get_length(bufferevent_get_input(c->bev)) == 0 &&
            http_conn_out_len(c) == 0)
            oldest = c;
    if (oldest) http_conn_close(oldest);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct http_worker *w = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        int shed = (err == EMFILE || err == ENFILE) ? shed_backlog(w, evconnlistener_get_fd(l)) : 0;
        if (shed > 0 && w->spare_fd >= 0) {
            /* The backlog was answered; keep listening, so the next
             * connection is served as soon as a descriptor frees up. */
            log_event(LOG_WARN, "accept_shed", "accept failed: %s; answered %d connection%s 503",
                      evutil_socket_error_to_string(err), shed, shed == 1 ? "" : "s");
            return;
        }
        /* Out of descriptors with no spare: give up the longest-idle
         * keep-alive connection (as nginx reuses idle connections), so the
         * spare can be reopened, and pause accepting briefly instead of
         * spinning; connections at work keep being served. */
        if (w->spare_fd < 0) reclaim_idle(w);
        log_event(LOG_WARN, "accept_paused", "accept failed: %s; pausing 100ms",
                  evutil_socket_error_to_string(err));
        evconnlistener_disable(l);
        struct timeval tv = {0, 100000};
        event_add(w->accept_retry_ev, &tv);
    }
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    struct http_worker *w = arg;
    if (w->spare_fd < 0) w->spare_fd = spare_open();
    if (!w->draining && w->listener) evconnlistener_enable(w->listener);
}

/* ---- drain and reload ---- */

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct http_worker *w = arg;
    log_event(LOG_WARN, "drain_deadline", "worker %d: %zu connections still open at the drain "
              "deadline; closing them", w->index, w->n_conns);
    event_base_loopbreak(w->base);
}

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    struct http_worker *w = arg;
    w->draining = true;
    if (w->listener) {
        evconnlistener_free(w->listener);
        w->listener = NULL;
    }
    /* Idle connections go now; busy ones close after their response. */
    for (struct http_conn *c = w->conns; c; c = c->next) {
        if (c->h2) h2_conn_shutdown(c); /* GOAWAY; closes when its streams end */
        else if (c->state == CONN_IDLE && !c->freed_scheduled) http_conn_close(c);
        else c->close_after_response = true;
    }
    int64_t ms = w->config->server.drain_timeout_ms;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    event_add(w->drain_deadline_ev, &tv);
    if (w->n_conns == 0) event_base_loopbreak(w->base);
}

static void on_config(evutil_socket_t fd, short what, void *arg)
{
    struct http_worker *w = arg;
    pthread_mutex_lock(&w->config_lock);
    struct config *next = w->pending_config;
    w->pending_config = NULL;
    pthread_mutex_unlock(&w->config_lock);
    if (next) {
        config_unref(w->config);
        w->config = next;
    }
}

static void on_tls(struct http_worker *w)
{
    pthread_mutex_lock(&w->config_lock);
    bool apply = w->has_pending_tls;
    SSL_CTX *next = w->pending_tls;
    w->pending_tls = NULL;
    w->has_pending_tls = false;
    pthread_mutex_unlock(&w->config_lock);
    if (!apply) return; /* an earlier wake-up took it */
    tls_ctx_unref(w->tls);
    w->tls = next;
}

/* Runs on the worker: what other threads asked for. */
static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    struct http_worker *w = arg;
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof n); /* clears the eventfd */
    (void)r;
    if (atomic_exchange(&w->config_pending, false)) on_config(-1, 0, w);
    if (atomic_exchange(&w->tls_pending, false)) on_tls(w);
    if (atomic_load(&w->drain_requested) && !w->draining) on_drain(-1, 0, w);
}

/* Wakes a worker from another thread. */
static void notify(struct http_worker *w)
{
    uint64_t one = 1;
    ssize_t r = write(w->notify_fd, &one, sizeof one);
    (void)r; /* a full counter still wakes the loop */
}

/* ---- workers ---- */

static void *worker_main(void *arg)
{
    struct http_worker *w = arg;
    event_base_dispatch(w->base);
    /* Close what is left (after the drain deadline). */
    while (w->conns) {
        struct http_conn *c = w->conns;
        if (!c->freed_scheduled) {
            c->freed_scheduled = true;
            bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
        }
        conn_free_now(-1, 0, c);
    }
    return NULL;
}

static int bind_listener(const char *host, int port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host && *host ? host : NULL, portstr, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "aiproxyd: cannot resolve listen address %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    }
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 4096) != 0) {
        fprintf(stderr, "aiproxyd: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

struct http_server *http_server_start(const struct http_server_opts *opts, struct config *cfg)
{
    SSL_CTX *tls = NULL;
    if (opts->tls_cert_file) {
        char err[512];
        tls = tls_server_ctx_new(opts->tls_cert_file, opts->tls_key_file,
                                 opts->tls_client_ca_file, err, sizeof err);
        if (!tls) {
            fprintf(stderr, "aiproxyd: TLS listener %s:%d: %s\n", opts->host, opts->port, err);
            return NULL;
        }
    }
    struct http_server *s = xcalloc(1, sizeof *s);
    s->n_workers = opts->workers;
    s->mesh = opts->mesh;
    s->workers = xcalloc((size_t)opts->workers, sizeof *s->workers);
    for (int i = 0; i < s->n_workers; i++) {
        struct http_worker *w = &s->workers[i];
        w->index = i;
        w->server = s;
        w->handler = opts->handler;
        w->slot_free = opts->slot_free;
        w->on_complete = opts->on_complete;
        w->prepare = opts->prepare;
        w->config = config_ref(cfg);
        w->tls = tls_ctx_ref(tls);
        pthread_mutex_init(&w->config_lock, NULL);
        int fd = bind_listener(opts->host, opts->port);
        if (fd < 0) {
            for (int j = 0; j <= i; j++) {
                struct http_worker *x = &s->workers[j];
                if (x->listener) evconnlistener_free(x->listener);
                if (x->dns) evdns_base_free(x->dns, 0);
                if (x->base) {
                    event_free(x->notify_ev);
                    close(x->notify_fd);
                    event_free(x->drain_deadline_ev);
                    event_free(x->accept_retry_ev);
                    if (x->spare_fd >= 0) close(x->spare_fd);
                    event_base_free(x->base);
                }
                config_unref(x->config);
                tls_ctx_unref(x->tls);
                pthread_mutex_destroy(&x->config_lock);
            }
            free(s->workers);
            tls_ctx_unref(tls);
            free(s);
            return NULL;
        }
        w->base = event_base_new();
        w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (!w->dns) w->dns = evdns_base_new(w->base, 0); /* no resolv.conf: IPs only */
        w->listener = evconnlistener_new(w->base, on_accept, w, LEV_OPT_CLOSE_ON_FREE, -1, fd);
        evconnlistener_set_error_cb(w->listener, on_accept_error);
        w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->notify_ev = event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST, on_notify, w);
        event_add(w->notify_ev, NULL);
        w->drain_deadline_ev = evtimer_new(w->base, on_drain_deadline, w);
        w->accept_retry_ev = evtimer_new(w->base, on_accept_retry, w);
        w->spare_fd = spare_open();
    }
    tls_ctx_unref(tls); /* the workers hold theirs */
    for (int i = 0; i < s->n_workers; i++)
        pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
    return s;
}

void http_server_set_tls(struct http_server *s, struct ssl_ctx_st *ctx)
{
    for (int i = 0; i < s->n_workers; i++) {
        struct http_worker *w = &s->workers[i];
        pthread_mutex_lock(&w->config_lock);
        tls_ctx_unref(w->pending_tls);
        w->pending_tls = tls_ctx_ref(ctx);
        w->has_pending_tls = true;
        pthread_mutex_unlock(&w->config_lock);
        atomic_store(&w->tls_pending, true);
        notify(w);
    }
    tls_ctx_unref(ctx);
}

void http_server_set_config(struct http_server *s, struct config *cfg)
{
    for (int i = 0; i < s->n_workers; i++) {
        struct http_worker *w = &s->workers[i];
        pthread_mutex_lock(&w->config_lock);
        if (w->pending_config) config_unref(w->pending_config);
        w->pending_config = config_ref(cfg);
        pthread_mutex_unlock(&w->config_lock);
        atomic_store(&w->config_pending, true);
        notify(w);
    }
}

void http_server_drain_and_free(struct http_server *s)
{
    atomic_store(&s->draining, true);
    for (int i = 0; i < s->n_workers; i++) {
        atomic_store(&s->workers[i].drain_requested, true);
        notify(&s->workers[i]);
    }
    for (int i = 0; i < s->n_workers; i++) {
        struct http_worker *w = &s->workers[i];
        pthread_join(w->thread, NULL);
        if (w->slot && w->slot_free) w->slot_free(w->slot);
        if (w->listener) evconnlistener_free(w->listener);
        event_free(w->notify_ev);
        close(w->notify_fd);
        event_free(w->drain_deadline_ev);
        event_free(w->accept_retry_ev);
        if (w->spare_fd >= 0) close(w->spare_fd);
        evdns_base_free(w->dns, 0);
        event_base_free(w->base);
        config_unref(w->config);
        config_unref(w->pending_config);
        tls_ctx_unref(w->tls);
        tls_ctx_unref(w->pending_tls);
        pthread_mutex_destroy(&w->config_lock);
    }
    free(s->workers);
    free(s);
}

struct event_base *http_worker_base(struct http_worker *w)
{
    return w->base;
}

struct evdns_base *http_worker_dns(struct http_worker *w)
{
    return w->dns;
}

void *http_worker_get_slot(struct http_worker *w)
{
    return w->slot;
}

void http_worker_set_slot(struct http_worker *w, void *slot)
{
    w->slot = slot;
}
