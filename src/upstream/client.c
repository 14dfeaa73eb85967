/* upstream client: pooled HTTP/1.1 connections to providers (see client.h).
 *
 * A call walks: resolve (cache or evdns) -> connect -> [CONNECT tunnel] ->
 * [TLS handshake] -> send -> parse the response as it arrives. A connection
 * that completes a keep-alive response goes back to its origin's idle list
 * and stays registered with the loop, so a provider closing it is noticed.
 * A reused connection that dies before any response byte is retried once
 * on a fresh one, because the provider may have closed it while idle. */
#include "upstream/client.h"
#include "upstream/fast_response.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"

/* ---- limits ---- */

#define MAX_RESPONSE_HEAD (64 * 1024)
#define MAX_IDLE_PER_ORIGIN 256
#define IDLE_CONN_TIMEOUT_S 30
#define DNS_CACHE_TTL_S 60
#define DNS_CACHE_SIZE 64
#define PROXY_REPLY_MAX 8192

const char *upstream_error_text(int err)
{
    switch (err) {
#define X(name, val, text) case val: return text;
        UPSTREAM_ERROR_MAP(X)
#undef X
    default: return "upstream failure";
    }
}

/* ---- URLs ---- */

struct url {
    bool tls;
    char host[256];
    int port;
    const char *path; /* points into the original string */
};

static bool host_is_ip(const char *h)
{
    struct in6_addr a6;
    struct in_addr a4;
    return inet_pton(AF_INET, h, &a4) == 1 || inet_pton(AF_INET6, h, &a6) == 1;
}

static int parse_url(const char *s, struct url *u)
{
    if (strncmp(s, "https://", 8) == 0) {
        u->tls = true;
        s += 8;
    } else if (strncmp(s, "http://", 7) == 0) {
        u->tls = false;
        s += 7;
    } else {
        return -1;
    }
    const char *end = s + strcspn(s, "/?#");
    const char *host = s, *host_end;
    const char *port = NULL;
    if (*s == '[') {
        host = s + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (!host_end) return -1;
        if (host_end + 1 < end && host_end[1] == ':') port = host_end + 2;
    } else {
        host_end = memchr(s, ':', (size_t)(end - s));
        if (host_end) port = host_end + 1;
        else host_end = end;
    }
    if (host_end == host || (size_t)(host_end - host) >= sizeof u->host) return -1;
    if (memchr(host, '@', (size_t)(host_end - host))) return -1; /* no userinfo */
    memcpy(u->host, host, (size_t)(host_end - host));
    u->host[host_end - host] = '\0';
    u->port = u->tls ? 443 : 80;
    if (port) {
        int p = 0;
        if (port == end) return -1;
        for (const char *c = port; c < end; c++) {
            if (*c < '0' || *c > '9') return -1;
            p = p * 10 + (*c - '0');
            if (p > 65535) return -1;
        }
        if (p == 0) return -1;
        u->port = p;
    }
    u->path = *end ? end : "/";
    return 0;
}

/* ---- proxy settings from the environment ---- */

struct proxy_conf {
    bool set;
    char host[256];
    int port;
    char *no_proxy; /* comma list */
};

static void proxy_conf_load(struct proxy_conf *pc, const char *var_upper, const char *var_lower)
{
    memset(pc, 0, sizeof *pc);
    const char *v = getenv(var_lower);
    if (!v || !*v) v = getenv(var_upper);
    if (!v || !*v) return;
    struct url u;
    char *tmp = NULL;
    if (!strstr(v, "://")) v = tmp = xasprintf("http://%s", v);
    if (parse_url(v, &u) == 0 && !u.tls) {
        pc->set = true;
        snprintf(pc->host, sizeof pc->host, "%s", u.host);
        pc->port = u.port;
    } else {
        log_event(LOG_WARN, "proxy_ignored", "%s is not an http:// proxy URL; ignored", var_upper);
    }
    free(tmp);
    const char *np = getenv("no_proxy");
    if (!np || !*np) np = getenv("NO_PROXY");
    if (np) pc->no_proxy = xstrdup(np);
}

/* NO_PROXY: "*", exact hosts, and domain suffixes (".example.com" or
 * "example.com" both match sub.example.com). */
static bool no_proxy_matches(const char *list, const char *host)
{
    if (!list) return false;
    size_t hlen = strlen(host);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        const char *e = p + strcspn(p, ", ");
        size_t n = (size_t)(e - p);
        if (n == 1 && *p == '*') return true;
        const char *colon = memchr(p, ':', n); /* ignore a port in the entry */
        if (colon && !memchr(p, ']', n)) n = (size_t)(colon - p);
        if (n && *p == '.') {
            p++;
            n--;
        }
        if (n && hlen >= n && strncasecmp(host + hlen - n, p, n) == 0 &&
            (hlen == n || host[hlen - n - 1] == '.'))
            return true;
        p = e;
    }
    return false;
}

/* ---- pool structures ---- */

enum conn_phase {
    PHASE_RESOLVING,
    PHASE_CONNECTING,
    PHASE_PROXY_REPLY, /* waiting for the proxy's answer to CONNECT */
    PHASE_TLS,         /* handshaking */
    PHASE_ACTIVE,      /* request sent or being answered */
    PHASE_IDLE,        /* in the pool */
};

struct origin;
struct conn;

struct upstream_call {
    struct upstream_pool *pool;
    struct upstream_request req; /* strings borrowed from the caller */
    struct url url;
    const struct upstream_callbacks *cb;
    void *ctx;
    struct conn *conn;
    struct event *timer;
    struct evdns_getaddrinfo_request *dns_req;
    bool retried_fresh;  /* already retried once on a fresh connection */
    bool got_response;   /* any response byte seen */
    bool head_done;
    bool cancelled;
    bool started; /* on_start ran */
    bool done;
    int in_callback;
    bool paused;
    struct event *resume_ev; /* goes on with input buffered while paused */
    /* response head being parsed */
    char *hname, *hvalue;
    size_t hname_len, hvalue_len, hname_cap, hvalue_cap;
    bool in_value;
    size_t head_bytes;
    char *content_type, *retry_after;
    bool keep_alive;
};

struct conn {
    struct upstream_pool *pool;
    struct origin *origin;
    struct bufferevent *bev;
    int fd;
    enum conn_phase phase;
    bool reused;
    http_parser parser;
    struct upstream_call *call;
    struct conn *next_idle, *prev_idle;
    /* Plain TCP, direct: reads are ours (recv into the bufferevent's
     * input), since a bufferevent read costs an ioctl(FIONREAD) first. The
     * read event stays registered while the connection is pooled, so a
     * close is noticed; `idle_timer` ends a pooled connection's life. */
    bool raw;
    bool raw_reading;
    struct event *read_ev;
    struct event *idle_timer;
};

/* Connections are pooled per origin: scheme, host, port, CA file, whether
 * certificates are checked, and whether they go through the proxy. */
struct origin {
    bool tls;
    char host[256];
    int port;
    char *ca_file; /* NULL: the system store */
    char *cert_file; /* NULL: no client certificate */
    bool insecure;
    bool via_proxy;
    SSL_CTX *ssl_ctx; /* borrowed from the pool's cache */
    struct conn *idle;
    size_t n_idle;
    struct origin *next;
};

struct ssl_ctx_entry {
    char *ca_file; /* NULL: system store */
    char *cert_file; /* NULL: no client certificate */
    bool insecure;
    SSL_CTX *ctx;
    struct ssl_ctx_entry *next;
};

struct dns_entry {
    char host[256];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int64_t expires_ms;
};

/* What the pool has done (for debugging sessions; not exported). */
struct upstream_pool_stats {
    uint64_t connections_opened;
    uint64_t connections_reused;
    uint64_t idle_connections;
};

struct upstream_pool {
    struct event_base *base;
    struct evdns_base *dns;
    struct origin *origins;
    struct ssl_ctx_entry *ssl_ctxs;
    struct dns_entry dns_cache[DNS_CACHE_SIZE];
    size_t dns_next;
    struct proxy_conf https_proxy, http_proxy;
    struct upstream_pool_stats stats;
};

/* ---- pool ---- */

struct upstream_pool *upstream_pool_new(struct event_base *base, struct evdns_base *dns)
{
    struct upstream_pool *p = xcalloc(1, sizeof *p);
    p->base = base;
    p->dns = dns;
    proxy_conf_load(&p->https_proxy, "HTTPS_PROXY", "https_proxy");
    proxy_conf_load(&p->http_proxy, "HTTP_PROXY", "http_proxy");
    return p;
}

static void conn_destroy(struct conn *c);

void upstream_pool_free(struct upstream_pool *p)
{
    if (!p) return;
    while (p->origins) {
        struct origin *o = p->origins;
        p->origins = o->next;
        while (o->idle) conn_destroy(o->idle);
        free(o->ca_file);
        free(o->cert_file);
        free(o);
    }
    while (p->ssl_ctxs) {
        struct ssl_ctx_entry *e = p->ssl_ctxs;
        p->ssl_ctxs = e->next;
        SSL_CTX_free(e->ctx);
        free(e->ca_file);
        free(e->cert_file);
        free(e);
    }
    free(p->https_proxy.no_proxy);
    free(p->http_proxy.no_proxy);
    free(p);
}

static bool same_file(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static SSL_CTX *get_ssl_ctx(struct upstream_pool *p, const char *ca_file, bool insecure,
                            const char *cert_file, const char *key_file)
{
    for (struct ssl_ctx_entry *e = p->ssl_ctxs; e; e = e->next)
        if (same_file(e->ca_file, ca_file) && same_file(e->cert_file, cert_file) &&
            e->insecure == insecure)
            return e->ctx;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                         : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            log_event(LOG_ERROR, "tls_ca_error", "cannot load CA certificates from %s",
                      ca_file ? ca_file : "the system store");
            ERR_clear_error();
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    if (cert_file && (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
                      SSL_CTX_use_PrivateKey_file(ctx, key_file ? key_file : cert_file,
                                                  SSL_FILETYPE_PEM) != 1 ||
                      SSL_CTX_check_private_key(ctx) != 1)) {
        log_event(LOG_ERROR, "tls_cert_error", "cannot load the client certificate %s and its key",
                  cert_file);
        ERR_clear_error();
        SSL_CTX_free(ctx);
        return NULL;
    }
    struct ssl_ctx_entry *e = xcalloc(1, sizeof *e);
    e->cert_file = cert_file ? xstrdup(cert_file) : NULL;
    e->ca_file = ca_file ? xstrdup(ca_file) : NULL;
    e->insecure = insecure;
    e->ctx = ctx;
    e->next = p->ssl_ctxs;
    p->ssl_ctxs = e;
    return ctx;
}

static struct origin *get_origin(struct upstream_pool *p, const struct upstream_call *call)
{
    const struct url *u = &call->url;
    bool via_proxy = false;
    const struct proxy_conf *pc = u->tls ? &p->https_proxy : &p->http_proxy;
    if (pc->set && !no_proxy_matches(pc->no_proxy, u->host)) via_proxy = true;
    const char *ca = call->req.tls_ca_file ? call->req.tls_ca_file : "";
    bool insecure = call->req.tls_insecure;
    const char *cert = u->tls ? call->req.tls_cert_file : NULL;
    for (struct origin *o = p->origins; o; o = o->next)
        if (o->tls == u->tls && o->port == u->port && o->insecure == insecure &&
            o->via_proxy == via_proxy && strcmp(o->host, u->host) == 0 &&
            strcmp(o->ca_file ? o->ca_file : "", ca) == 0 && same_file(o->cert_file, cert))
            return o;
    SSL_CTX *ctx = NULL;
    if (u->tls) {
        ctx = get_ssl_ctx(p, call->req.tls_ca_file, call->req.tls_insecure, cert,
                          call->req.tls_key_file);
        if (!ctx) return NULL;
    }
    struct origin *o = xcalloc(1, sizeof *o);
    o->cert_file = cert ? xstrdup(cert) : NULL;
    o->ca_file = *ca ? xstrdup(ca) : NULL;
    o->insecure = insecure;
    o->tls = u->tls;
    snprintf(o->host, sizeof o->host, "%s", u->host);
    o->port = u->port;
    o->via_proxy = via_proxy;
    o->ssl_ctx = ctx;
    o->next = p->origins;
    p->origins = o;
    return o;
}

/* ---- DNS cache ---- */

static bool dns_cache_get(struct upstream_pool *p, const char *host, struct sockaddr_storage *out,
                          socklen_t *len)
{
    int64_t now = clock_mono_ms();
    for (size_t i = 0; i < DNS_CACHE_SIZE; i++) {
        struct dns_entry *e = &p->dns_cache[i];
        if (e->addrlen && e->expires_ms > now && strcasecmp(e->host, host) == 0) {
            memcpy(out, &e->addr, e->addrlen);
            *len = e->addrlen;
            return true;
        }
    }
    return false;
}

static void dns_cache_put(struct upstream_pool *p, const char *host, const struct sockaddr *sa,
                          socklen_t len)
{
    if (len > sizeof(struct sockaddr_storage)) return;
    struct dns_entry *e = &p->dns_cache[p->dns_next++ % DNS_CACHE_SIZE];
    snprintf(e->host, sizeof e->host, "%s", host);
    memcpy(&e->addr, sa, len);
    e->addrlen = len;
    e->expires_ms = clock_mono_ms() + DNS_CACHE_TTL_S * 1000;
}

/* ---- reading ---- */

static void conn_read_set(struct conn *c, bool on)
{
    if (!c->raw) {
        if (on) bufferevent_enable(c->bev, EV_READ);
        else bufferevent_disable(c->bev, EV_READ);
        return;
    }
    if (on == c->raw_reading) return;
    c->raw_reading = on;
    if (on) event_add(c->read_ev, NULL);
    else event_del(c->read_ev);
}

/* ---- call completion ---- */

static void call_free(struct upstream_call *call)
{
    if (call->timer) event_free(call->timer);
    if (call->resume_ev) event_free(call->resume_ev);
    if (call->dns_req) evdns_getaddrinfo_cancel(call->dns_req);
    free(call->hname);
    free(call->hvalue);
    free(call->content_type);
    free(call->retry_after);
    free(call);
}

/* Ends the call with `err` (0: success), detaching it from its connection.
 * The connection is pooled only after a clean keep-alive response. */
static void call_finish(struct upstream_call *call, int err)
{
    if (call->done) return;
    call->done = true;
    struct conn *c = call->conn;
    call->conn = NULL;
    if (c) {
        c->call = NULL;
        if (err == 0 && call->keep_alive && !call->cancelled) {
            struct origin *o = c->origin;
            if (o->n_idle < MAX_IDLE_PER_ORIGIN) {
                c->phase = PHASE_IDLE;
                c->reused = true;
                c->next_idle = o->idle;
                c->prev_idle = NULL;
                if (o->idle) o->idle->prev_idle = c;
                o->idle = c;
                o->n_idle++;
                c->pool->stats.idle_connections++;
                bufferevent_disable(c->bev, EV_WRITE);
                struct timeval tv = {IDLE_CONN_TIMEOUT_S, 0};
                conn_read_set(c, true);
                if (c->raw) evtimer_add(c->idle_timer, &tv);
                else bufferevent_set_timeouts(c->bev, &tv, NULL);
            } else {
                conn_destroy(c);
            }
        } else {
            conn_destroy(c);
        }
    }
    if (!call->cancelled) {
        call->in_callback++;
        call->cb->on_done(call->ctx, err);
        call->in_callback--;
    }
    call_free(call);
}

void upstream_call_cancel(struct upstream_call *call)
{
    if (call->done || call->cancelled) return;
    call->cancelled = true;
    /* Inside a callback, or before on_start ran: finished later. */
    if (call->in_callback || !call->started) return;
    struct conn *c = call->conn;
    call->conn = NULL;
    if (c) {
        c->call = NULL;
        conn_destroy(c);
    }
    call->done = true;
    call_free(call);
}

/* After running one of the caller's callbacks: a cancel made inside it
 * is carried out now. Returns true when the call is gone. */
static bool call_settle(struct upstream_call *call)
{
    if (call->cancelled && call->in_callback == 0) {
        struct conn *c = call->conn;
        call->conn = NULL;
        if (c) {
            c->call = NULL;
            conn_destroy(c);
        }
        if (!call->done) {
            call->done = true;
            call_free(call);
        }
        return true;
    }
    return false;
}

void upstream_call_pause(struct upstream_call *call)
{
    call->paused = true;
    if (call->conn && call->conn->phase == PHASE_ACTIVE) conn_read_set(call->conn, false);
}

static void on_conn_read(struct bufferevent *bev, void *arg);

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_call *call = arg;
    struct conn *c = call->conn;
    if (c && !call->paused && c->phase == PHASE_ACTIVE &&
        evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        on_conn_read(c->bev, c);
}

void upstream_call_resume(struct upstream_call *call)
{
    call->paused = false;
    struct conn *c = call->conn;
    if (!c || c->phase != PHASE_ACTIVE) return;
    conn_read_set(c, true);
    /* Bytes read before the pause produce no new read event: feed them on
     * the next loop turn (not from inside the caller's stack). */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        if (!call->resume_ev) call->resume_ev = evtimer_new(call->pool->base, on_resume, call);
        struct timeval zero = {0, 0};
        event_add(call->resume_ev, &zero);
    }
}

/* ---- timers ---- */

static void arm_timer(struct upstream_call *call, int64_t ms)
{
    if (ms <= 0) ms = 60000;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    event_add(call->timer, &tv);
}

static void on_call_timeout(evutil_socket_t fd, short what, void *arg)
{
    call_finish(arg, UPSTREAM_ERR_TIMEOUT);
}

/* ---- connections ---- */

static void conn_destroy(struct conn *c)
{
    if (c->phase == PHASE_IDLE) {
        struct origin *o = c->origin;
        if (c->prev_idle) c->prev_idle->next_idle = c->next_idle;
        else o->idle = c->next_idle;
        if (c->next_idle) c->next_idle->prev_idle = c->prev_idle;
        o->n_idle--;
        c->pool->stats.idle_connections--;
    }
    if (c->read_ev) event_free(c->read_ev);
    if (c->idle_timer) event_free(c->idle_timer);
    if (c->bev) {
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
        bufferevent_free(c->bev);
    }
    free(c);
}

static void start_attempt(struct upstream_call *call, bool allow_reuse);
static void proxy_reply_ready(struct conn *c);

/* The connection failed or closed. Idle: drop it. Active: finish the
 * call, or retry once on a fresh connection when a reused one died before
 * answering. */
static void conn_failed(struct conn *c, int err)
{
    struct upstream_call *call = c->call;
    if (!call) {
        conn_destroy(c);
        return;
    }
    if (c->reused && !call->got_response && !call->retried_fresh && c->phase == PHASE_ACTIVE) {
        call->retried_fresh = true;
        call->conn = NULL;
        c->call = NULL;
        conn_destroy(c);
        start_attempt(call, false);
        return;
    }
    call_finish(call, err);
}

/* -- response parsing -- */

static void head_append(char **buf, size_t *len, size_t *cap, const char *at, size_t n)
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

static void head_store(struct upstream_call *call)
{
    if (!call->hname_len) return;
    const char *v = call->hvalue ? call->hvalue : "";
    if (strcasecmp(call->hname, "content-type") == 0) {
        free(call->content_type);
        call->content_type = xstrdup(v);
    } else if (strcasecmp(call->hname, "retry-after") == 0) {
        free(call->retry_after);
        call->retry_after = xstrdup(v);
    }
    call->hname_len = call->hvalue_len = 0;
    if (call->hname) call->hname[0] = '\0';
    if (call->hvalue) call->hvalue[0] = '\0';
    call->in_value = false;
}

static int on_r_header_field(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    struct upstream_call *call = c->call;
    if ((call->head_bytes += n) > MAX_RESPONSE_HEAD) return 1;
    if (call->in_value) head_store(call);
    head_append(&call->hname, &call->hname_len, &call->hname_cap, at, n);
    return 0;
}

static int on_r_header_value(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    struct upstream_call *call = c->call;
    if ((call->head_bytes += n) > MAX_RESPONSE_HEAD) return 1;
    call->in_value = true;
    head_append(&call->hvalue, &call->hvalue_len, &call->hvalue_cap, at, n);
    return 0;
}

static int on_r_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct upstream_call *call = c->call;
    if (call->in_value) head_store(call);
    if (p->status_code < 200) return 0; /* 1xx: another head follows */
    call->head_done = true;
    call->keep_alive = http_should_keep_alive(p);
    if (call->req.stream) arm_timer(call, call->req.idle_timeout_ms);
    struct upstream_head h = {.status = p->status_code,
                              .content_type = call->content_type,
                              .retry_after = call->retry_after};
    call->in_callback++;
    call->cb->on_head(call->ctx, &h);
    call->in_callback--;
    return call->cancelled ? 1 : 0;
}

static int on_r_body(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    struct upstream_call *call = c->call;
    if (call->req.stream) arm_timer(call, call->req.idle_timeout_ms);
    call->in_callback++;
    call->cb->on_data(call->ctx, at, n);
    call->in_callback--;
    return call->cancelled ? 1 : 0;
}

static int on_r_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct upstream_call *call = c->call;
    if (!call->head_done) return 0; /* end of a 1xx */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings response_settings = {
    .on_header_field = on_r_header_field,
    .on_header_value = on_r_header_value,
    .on_headers_complete = on_r_headers_complete,
    .on_body = on_r_body,
    .on_message_complete = on_r_message_complete,
};

/* Feeds what arrived to the parser. Returns true while the call goes on
 * on this connection; false once it ended or was cancelled (the call, and
 * maybe the connection, are gone then). */
static bool feed_response(struct conn *c, const char *data, size_t len)
{
    struct upstream_call *call = c->call;
    size_t used = http_parser_execute(&c->parser, &response_settings, data, len);
    if (call_settle(call)) return false;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED) {
        /* Bytes after a complete response on a keep-alive connection are
         * a protocol violation: never pool such a connection. */
        if (used < len) call->keep_alive = false;
        call_finish(call, 0);
        return false;
    }
    if (e != HPE_OK) {
        call_finish(call, call->head_bytes > MAX_RESPONSE_HEAD ? UPSTREAM_ERR_TOO_LARGE
                                                              : UPSTREAM_ERR_PROTOCOL);
        return false;
    }
    return true;
}

/* A whole answer found by fast_response: the same calls, in the same
 * order, as http-parser's callbacks and feed_response would make. */
static void take_whole_response(struct conn *c, const struct fast_answer *fa, bool extra_bytes)
{
    struct upstream_call *call = c->call;
    if (fa->content_type) {
        free(call->content_type);
        call->content_type = xstrndup(fa->content_type, fa->content_type_len);
    }
    if (fa->retry_after) {
        free(call->retry_after);
        call->retry_after = xstrndup(fa->retry_after, fa->retry_after_len);
    }
    call->head_done = true;
    call->keep_alive = fa->keep_alive;
    if (call->req.stream) arm_timer(call, call->req.idle_timeout_ms);
    struct upstream_head h = {.status = fa->status,
                              .content_type = call->content_type,
                              .retry_after = call->retry_after};
    call->in_callback++;
    call->cb->on_head(call->ctx, &h);
    call->in_callback--;
    if (!call->cancelled && fa->body_len > 0) {
        if (call->req.stream) arm_timer(call, call->req.idle_timeout_ms);
        call->in_callback++;
        call->cb->on_data(call->ctx, fa->body, fa->body_len);
        call->in_callback--;
    }
    if (call_settle(call)) return;
    /* Bytes after a complete response: never pool such a connection. */
    if (extra_bytes) call->keep_alive = false;
    call_finish(call, 0);
}

static void on_conn_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->phase == PHASE_IDLE || !c->call) {
        /* A pooled connection must be silent. */
        conn_destroy(c);
        return;
    }
    if (c->phase == PHASE_PROXY_REPLY) {
        proxy_reply_ready(c);
        return;
    }
    struct upstream_call *call = c->call;
    bool fresh = !call->got_response; /* nothing of the answer parsed yet */
    call->got_response = true;
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) break;
        /* Copy out first: finishing the call may free this connection. */
        char buf[16384];
        size_t n = v.iov_len < sizeof buf ? v.iov_len : sizeof buf;
        memcpy(buf, v.iov_base, n);
        evbuffer_drain(in, n);
        if (fresh) {
            /* The common answer, whole in the first read: one pass. */
            fresh = false;
            struct fast_answer fa;
            size_t took = fast_response_parse(buf, n, MAX_RESPONSE_HEAD, &fa);
            if (took) {
                take_whole_response(c, &fa, took < n || evbuffer_get_length(in) > 0);
                return;
            }
        }
        if (!feed_response(c, buf, n)) return;
        if (call->paused) return;
    }
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg);

static void send_request(struct conn *c)
{
    struct upstream_call *call = c->call;
    const struct upstream_request *r = &call->req;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    bool default_port = (call->url.tls && call->url.port == 443) || (!call->url.tls && call->url.port == 80);
    bool v6 = strchr(call->url.host, ':') != NULL;
    /* The request head, built by hand (it is sent for every attempt):
     * "METHOD path HTTP/1.1\r\nHost: host[:port]\r\nContent-Length: n\r\n". */
    size_t mlen = strlen(r->method), plen = strlen(call->url.path), hlen = strlen(call->url.host);
    if (mlen + plen + hlen > 8192) {
        call_finish(call, UPSTREAM_ERR_URL);
        return;
    }
    char num[24], *np = num + sizeof num;
    size_t len_digits = 0;
    for (size_t v = r->body_len;; v /= 10) {
        *--np = (char)('0' + v % 10);
        len_digits++;
        if (v < 10) break;
    }
    char port[8], *pp = port + sizeof port;
    size_t port_digits = 0;
    for (int v = call->url.port; v > 0; v /= 10) {
        *--pp = (char)('0' + v % 10);
        port_digits++;
    }
    struct evbuffer_iovec vec;
    size_t need = mlen + plen + hlen + len_digits + port_digits + 64;
    if (evbuffer_reserve_space(out, (ev_ssize_t)need, &vec, 1) < 1) {
        call_finish(call, UPSTREAM_ERR_CONNECT);
        return;
    }
    char *h = vec.iov_base;
#define PUT(str, n) (memcpy(h, (str), (n)), h += (n))
    PUT(r->method, mlen);
    PUT(" ", 1);
    PUT(call->url.path, plen);
    PUT(" HTTP/1.1\r\nHost: ", 17);
    if (v6) PUT("[", 1);
    PUT(call->url.host, hlen);
    if (v6) PUT("]", 1);
    if (!default_port) {
        PUT(":", 1);
        PUT(pp, port_digits);
    }
    PUT("\r\nContent-Length: ", 18);
    PUT(np, len_digits);
    PUT("\r\n", 2);
#undef PUT
    vec.iov_len = (size_t)(h - (char *)vec.iov_base);
    int rc = evbuffer_commit_space(out, &vec, 1);
    if (r->headers) rc |= evbuffer_add(out, r->headers, strlen(r->headers));
    rc |= evbuffer_add(out, "\r\n", 2);
    if (r->body_len) rc |= evbuffer_add(out, r->body, r->body_len);
    if (rc != 0) {
        call_finish(call, UPSTREAM_ERR_CONNECT);
        return;
    }
    c->phase = PHASE_ACTIVE;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    if (!c->origin->tls && c->fd >= 0) {
        /* Plain TCP: write now rather than one loop turn later (thawing the
         * front of the output, as the bufferevent's own write callback does). */
        evbuffer_unfreeze(out, 1);
        while (evbuffer_get_length(out) > 0) {
            int w = evbuffer_write(out, c->fd);
            if (w <= 0) break;
        }
        evbuffer_freeze(out, 1);
    }
    if (evbuffer_get_length(out) > 0) bufferevent_enable(c->bev, EV_WRITE);
    if (c->raw) evtimer_del(c->idle_timer);
    conn_read_set(c, !call->paused);
}

static void on_conn_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) bufferevent_disable(bev, EV_WRITE);
    (void)c;
}

static SSL *new_ssl(struct conn *c)
{
    SSL *ssl = SSL_new(c->origin->ssl_ctx);
    if (!ssl) return NULL;
    const char *host = c->origin->host;
    if (!host_is_ip(host)) SSL_set_tlsext_host_name(ssl, host);
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (host_is_ip(host)) X509_VERIFY_PARAM_set1_ip_asc(param, host);
    else X509_VERIFY_PARAM_set1_host(param, host, 0);
    return ssl;
}

static void start_tls_over(struct conn *c)
{
    SSL *ssl = new_ssl(c);
    if (!ssl) {
        conn_failed(c, UPSTREAM_ERR_TLS);
        return;
    }
    struct bufferevent *tls = bufferevent_openssl_filter_new(
        c->pool->base, c->bev, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!tls) {
        SSL_free(ssl);
        conn_failed(c, UPSTREAM_ERR_TLS);
        return;
    }
    c->bev = tls;
    c->fd = -1;
    c->phase = PHASE_TLS;
    bufferevent_setcb(tls, on_conn_read, on_conn_write, on_conn_event, c);
    bufferevent_enable(tls, EV_READ | EV_WRITE);
}

static void proxy_reply_ready(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (end.pos < 0) {
        if (evbuffer_get_length(in) > PROXY_REPLY_MAX) conn_failed(c, UPSTREAM_ERR_PROXY);
        return;
    }
    char line[64] = {0};
    evbuffer_copyout(in, line, sizeof line - 1);
    int status = 0;
    if (sscanf(line, "HTTP/1.%*d %d", &status) != 1 || status < 200 || status > 299) {
        log_event(LOG_WARN, "proxy_refused", "proxy answered CONNECT %s:%d with status %d",
                  c->origin->host, c->origin->port, status);
        conn_failed(c, UPSTREAM_ERR_PROXY);
        return;
    }
    evbuffer_drain(in, (size_t)end.pos + 4);
    if (c->origin->tls) start_tls_over(c);
    else send_request(c);
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg);

#define RAW_READ_CHUNK 16384

/* Reads what a plain connection has, as the bufferevent would, then hands
 * it to the usual read and event paths (which may free the connection). */
static void on_raw_readable(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_iovec v;
    evbuffer_unfreeze(in, 0); /* the bufferevent keeps the end frozen */
    if (evbuffer_reserve_space(in, RAW_READ_CHUNK, &v, 1) < 1) {
        evbuffer_freeze(in, 0);
        on_conn_event(c->bev, BEV_EVENT_ERROR | BEV_EVENT_READING, c);
        return;
    }
    ssize_t n = recv(fd, v.iov_base, v.iov_len, 0);
    if (n > 0) {
        v.iov_len = (size_t)n;
        evbuffer_commit_space(in, &v, 1);
    }
    evbuffer_freeze(in, 0);
    if (n == 0) {
        on_conn_event(c->bev, BEV_EVENT_EOF | BEV_EVENT_READING, c);
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            on_conn_event(c->bev, BEV_EVENT_ERROR | BEV_EVENT_READING, c);
        return;
    }
    on_conn_read(c->bev, c);
}

static void on_idle_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    on_conn_event(c->bev, BEV_EVENT_TIMEOUT | BEV_EVENT_READING, c);
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (c->phase == PHASE_CONNECTING && c->origin->via_proxy) {
            char req[600];
            int n = snprintf(req, sizeof req, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
                             c->origin->host, c->origin->port, c->origin->host, c->origin->port);
            c->phase = PHASE_PROXY_REPLY;
            bufferevent_write(bev, req, (size_t)n);
            bufferevent_enable(bev, EV_READ);
            return;
        }
        int one = 1;
        if (c->fd >= 0) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        bufferevent_disable(bev, EV_WRITE);
        if (!c->origin->tls && !c->origin->via_proxy && c->fd >= 0) {
            /* Plain TCP: from now on, reads are ours (see struct conn). */
            bufferevent_disable(bev, EV_READ);
            c->raw = true;
            c->read_ev = event_new(c->pool->base, c->fd, EV_READ | EV_PERSIST, on_raw_readable, c);
            c->idle_timer = evtimer_new(c->pool->base, on_idle_timeout, c);
        }
        send_request(c);
        return;
    }
    int err = UPSTREAM_ERR_RESET;
    if (what & BEV_EVENT_TIMEOUT) err = UPSTREAM_ERR_TIMEOUT;
    else if (c->phase == PHASE_CONNECTING || c->phase == PHASE_TLS) err = UPSTREAM_ERR_CONNECT;
    else if (c->phase == PHASE_PROXY_REPLY) err = UPSTREAM_ERR_PROXY;
    if (c->origin->tls && (what & BEV_EVENT_ERROR)) {
        unsigned long e = bufferevent_get_openssl_error(bev);
        if (e) {
            char buf[256];
            ERR_error_string_n(e, buf, sizeof buf);
            log_event(LOG_WARN, "upstream_tls_error", "%s:%d: %s", c->origin->host,
                      c->origin->port, buf);
            if (c->phase == PHASE_TLS) err = UPSTREAM_ERR_TLS;
        }
        while (bufferevent_get_openssl_error(bev)) {
        }
    }
    if ((what & BEV_EVENT_EOF) && c->phase == PHASE_ACTIVE && c->call) {
        /* Close-delimited bodies end at EOF. */
        struct upstream_call *call = c->call;
        if (call->head_done) {
            http_parser_execute(&c->parser, &response_settings, NULL, 0);
            if (call_settle(call)) return;
            if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) {
                call->keep_alive = false;
                call_finish(call, 0);
                return;
            }
        }
    }
    conn_failed(c, err);
}

static void connect_to(struct upstream_call *call, struct origin *o, const struct sockaddr *sa,
                       socklen_t len)
{
    struct upstream_pool *p = call->pool;
    struct conn *c = xcalloc(1, sizeof *c);
    c->pool = p;
    c->origin = o;
    c->call = call;
    c->fd = -1;
    call->conn = c;
    p->stats.connections_opened++;
    c->phase = PHASE_CONNECTING;
    if (o->tls && !o->via_proxy) {
        SSL *ssl = new_ssl(c);
        if (!ssl) {
            conn_failed(c, UPSTREAM_ERR_TLS);
            return;
        }
        c->bev = bufferevent_openssl_socket_new(p->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        c->phase = PHASE_TLS;
    } else {
        c->bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    bufferevent_setcb(c->bev, on_conn_read, on_conn_write, on_conn_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)sa, (int)len) != 0) {
        /* No socket, or no local port, for it: this process's shortage,
         * which says nothing of the provider. */
        int e = errno;
        bool local = e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM || e == EADDRNOTAVAIL;
        conn_failed(c, local ? UPSTREAM_ERR_LOCAL : UPSTREAM_ERR_CONNECT);
        return;
    }
    c->fd = o->tls && !o->via_proxy ? -1 : bufferevent_getfd(c->bev);
}

struct resolve_ctx {
    struct upstream_call *call;
    struct origin *origin;
    char host[256];
    int port;
};

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    struct resolve_ctx *rc = arg;
    struct upstream_call *call = rc->call;
    if (result == EVUTIL_EAI_CANCEL) {
        free(rc);
        return;
    }
    call->dns_req = NULL;
    if (result != 0 || !res) {
        log_event(LOG_WARN, "upstream_dns_error", "cannot resolve %s: %s", rc->host,
                  evutil_gai_strerror(result));
        if (res) evutil_freeaddrinfo(res);
        free(rc);
        call_finish(call, UPSTREAM_ERR_DNS);
        return;
    }
    dns_cache_put(call->pool, rc->host, res->ai_addr, (socklen_t)res->ai_addrlen);
    struct sockaddr_storage ss;
    socklen_t len = (socklen_t)res->ai_addrlen;
    memcpy(&ss, res->ai_addr, len);
    ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)rc->port);
    evutil_freeaddrinfo(res);
    struct origin *o = rc->origin;
    free(rc);
    connect_to(call, o, (struct sockaddr *)&ss, len);
}

static void on_start(evutil_socket_t fd, short what, void *arg);

static void start_attempt(struct upstream_call *call, bool allow_reuse)
{
    struct upstream_pool *p = call->pool;
    struct origin *o = get_origin(p, call);
    if (!o) {
        call_finish(call, UPSTREAM_ERR_TLS);
        return;
    }
    if (allow_reuse && o->idle) {
        struct conn *c = o->idle;
        o->idle = c->next_idle;
        if (o->idle) o->idle->prev_idle = NULL;
        o->n_idle--;
        p->stats.idle_connections--;
        p->stats.connections_reused++;
        c->phase = PHASE_ACTIVE;
        c->call = call;
        call->conn = c;
        send_request(c);
        return;
    }
    const char *host = o->via_proxy ? (o->tls ? p->https_proxy.host : p->http_proxy.host) : o->host;
    int port = o->via_proxy ? (o->tls ? p->https_proxy.port : p->http_proxy.port) : o->port;

    struct sockaddr_storage ss;
    socklen_t len = 0;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        len = sizeof *s4;
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        len = sizeof *s6;
    } else if (dns_cache_get(p, host, &ss, &len)) {
        s4->sin_port = htons((uint16_t)port); /* same offset for v4 and v6 */
    } else {
        struct resolve_ctx *rc = xcalloc(1, sizeof *rc);
        rc->call = call;
        rc->origin = o;
        snprintf(rc->host, sizeof rc->host, "%s", host);
        rc->port = port;
        struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                                        .ai_protocol = IPPROTO_TCP};
        if (strcasecmp(host, "localhost") == 0) hints.ai_family = AF_INET;
        /* It may complete (and even free the call) before returning. */
        struct evdns_getaddrinfo_request *dr =
            evdns_getaddrinfo(p->dns, host, NULL, &hints, on_resolved, rc);
        if (dr) call->dns_req = dr;
        return;
    }
    connect_to(call, o, (struct sockaddr *)&ss, len);
}

struct upstream_call *upstream_call_start(struct upstream_pool *p, const struct upstream_request *r,
                                          const struct upstream_callbacks *cb, void *ctx)
{
    struct upstream_call *call = xcalloc(1, sizeof *call);
    call->pool = p;
    call->req = *r;
    call->cb = cb;
    call->ctx = ctx;
    call->timer = evtimer_new(p->base, on_call_timeout, call);
    arm_timer(call, r->timeout_ms);
    /* Start on the next loop turn so no callback runs inside this call. */
    event_base_once(p->base, -1, EV_TIMEOUT, on_start, call, NULL);
    return call;
}

static void on_start(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_call *call = arg;
    call->started = true;
    if (call->cancelled) {
        call_settle(call);
        return;
    }
    if (parse_url(call->req.url, &call->url) != 0) {
        call_finish(call, UPSTREAM_ERR_URL);
        return;
    }
    start_attempt(call, true);
}
