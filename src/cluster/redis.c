/* redis: one asynchronous Redis connection per event loop (see redis.h). */
#include "cluster/redis.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "cluster/redis_url.h"
#include "cluster/scripts.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/str.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define REPLY_MAX_BYTES (16 << 20) /* a reply larger than this is a broken server */

/* ---- process-wide settings ---- */

static struct {
    bool ready;
    struct redis_url url;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int64_t timeout_us;
    SSL_CTX *ssl_ctx;
    char where[160]; /* host:port or the socket path, for logs (no secret) */
} g;

static _Atomic uint64_t n_calls, n_errors, n_timeouts, n_connects, n_disconnects;
static atomic_bool auth_failure_logged;

static bool host_is_ip(const char *h)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

int redis_global_init(const char *url, int64_t timeout_ms, const char *tls_ca_file, char *err,
                      size_t errcap)
{
    redis_global_cleanup();
    if (redis_url_parse(url, &g.url, err, errcap) != 0) return -1;
    g.timeout_us = (timeout_ms > 0 ? timeout_ms : 50) * 1000;
    if (g.url.path) {
        struct sockaddr_un *un = (struct sockaddr_un *)&g.addr;
        if (strlen(g.url.path) >= sizeof un->sun_path) {
            snprintf(err, errcap, "the socket path is too long");
            goto fail;
        }
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof un->sun_path, "%s", g.url.path);
        g.addr_len = sizeof *un;
        snprintf(g.where, sizeof g.where, "unix:%s", g.url.path);
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        char port[16];
        snprintf(port, sizeof port, "%d", g.url.port);
        int rc = getaddrinfo(g.url.host, port, &hints, &res);
        if (rc != 0 || !res) {
            snprintf(err, errcap, "cannot resolve %s: %s", g.url.host, gai_strerror(rc));
            goto fail;
        }
        memcpy(&g.addr, res->ai_addr, res->ai_addrlen);
        g.addr_len = res->ai_addrlen;
        freeaddrinfo(res);
        snprintf(g.where, sizeof g.where, "%s:%d", g.url.host, g.url.port);
    }
    if (g.url.tls) {
        g.ssl_ctx = SSL_CTX_new(TLS_client_method());
        if (!g.ssl_ctx) {
            snprintf(err, errcap, "cannot create a TLS context");
            goto fail;
        }
        SSL_CTX_set_min_proto_version(g.ssl_ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(g.ssl_ctx, SSL_VERIFY_PEER, NULL);
        int ok = tls_ca_file ? SSL_CTX_load_verify_locations(g.ssl_ctx, tls_ca_file, NULL)
                             : SSL_CTX_set_default_verify_paths(g.ssl_ctx);
        if (ok != 1) {
            ERR_clear_error();
            snprintf(err, errcap, "cannot load CA certificates from %s",
                     tls_ca_file ? tls_ca_file : "the system store");
            goto fail;
        }
    }
    g.ready = true;
    return 0;
fail:
    redis_global_cleanup();
    return -1;
}

void redis_global_cleanup(void)
{
    redis_url_free(&g.url);
    if (g.ssl_ctx) SSL_CTX_free(g.ssl_ctx);
    memset(&g, 0, sizeof g);
}

void redis_stats_get(struct redis_stats *out)
{
    out->calls = atomic_load(&n_calls);
    out->errors = atomic_load(&n_errors);
    out->timeouts = atomic_load(&n_timeouts);
    out->connects = atomic_load(&n_connects);
    out->disconnects = atomic_load(&n_disconnects);
}

/* ---- the connection ---- */

enum conn_state { ST_DOWN, ST_CONNECTING, ST_UP };

struct pending {
    redis_reply_cb cb; /* NULL: a handshake step */
    void *arg;
    int64_t deadline_us;
};

/* The requests one loop turn gathered for a batched script. */
struct batch_entry {
    redis_reply_cb cb;
    void *arg;
};

struct batch {
    struct batch_entry *entries;
    size_t n, cap;
    char *bytes; /* every argument, back to back (each entry: its count, then its arguments) */
    size_t len, bytes_cap;
    size_t *arg_end; /* where each argument ends in `bytes` */
    size_t n_args, args_cap;
};

/* A batch sent, waiting for its answer. */
struct sent_batch {
    struct batch_entry *entries;
    size_t n;
};

#define N_BATCHED 2 /* SCRIPT_RESERVE, SCRIPT_SETTLE */

struct redis_conn {
    struct event_base *base;
    struct batch batches[N_BATCHED];
    struct event *flush_ev;
    struct bufferevent *bev;
    redisReader *reader;
    enum conn_state state;
    struct event *deadline_timer, *retry_timer;
    int backoff_ms;
    int handshake_left; /* replies still expected before the connection is up */
    struct pending *ring;
    size_t cap, head, count;
};

static void conn_fail(struct redis_conn *c, const char *why, bool timeout);
static void start_connect(struct redis_conn *c);

static void push_pending(struct redis_conn *c, redis_reply_cb cb, void *arg)
{
    if (c->count == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        struct pending *n = xmalloc(ncap * sizeof *n);
        for (size_t i = 0; i < c->count; i++) n[i] = c->ring[(c->head + i) % c->cap];
        free(c->ring);
        c->ring = n;
        c->cap = ncap;
        c->head = 0;
    }
    int64_t deadline = clock_mono_us() + g.timeout_us;
    c->ring[(c->head + c->count) % c->cap] = (struct pending){cb, arg, deadline};
    if (c->count++ == 0) {
        struct timeval tv = {(time_t)(g.timeout_us / 1000000), (suseconds_t)(g.timeout_us % 1000000)};
        evtimer_add(c->deadline_timer, &tv);
    }
}

static struct pending pop_pending(struct redis_conn *c)
{
    struct pending p = c->ring[c->head];
    c->head = (c->head + 1) % c->cap;
    c->count--;
    if (c->count == 0) evtimer_del(c->deadline_timer);
    return p;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct redis_conn *c = arg;
    if (c->count == 0) return;
    int64_t now = clock_mono_us(), d = c->ring[c->head].deadline_us;
    if (d > now) {
        struct timeval tv = {(time_t)((d - now) / 1000000), (suseconds_t)((d - now) % 1000000)};
        evtimer_add(c->deadline_timer, &tv);
        return;
    }
    conn_fail(c, "an answer took longer than cluster.redis.timeout", true);
}

/* "*N\r\n" or "$N\r\n" at p. */
static char *put_count(char *p, char kind, size_t n)
{
    char buf[STR_I64_LEN];
    const char *d = str_i64((int64_t)n, buf);
    size_t len = (size_t)(buf + STR_I64_LEN - 1 - d);
    *p++ = kind;
    memcpy(p, d, len);
    p += len;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* The command in RESP (an array of bulk strings), written straight into
 * the connection's output buffer: no intermediate copy, no printf. */
static void send_argv(struct redis_conn *c, int argc, const char **argv, const size_t *lens)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t total = 3 + STR_I64_LEN;
    for (int i = 0; i < argc; i++) total += (lens ? lens[i] : strlen(argv[i])) + 5 + STR_I64_LEN;
    struct evbuffer_iovec v;
    /* (one vector: libevent makes it one chunk of at least `total`; out of
     * memory is fatal, as for every allocation here) */
    if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) < 1 || v.iov_len < total) abort();
    char *p = v.iov_base;
    p = put_count(p, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t n = lens ? lens[i] : strlen(argv[i]);
        p = put_count(p, '$', n);
        memcpy(p, argv[i], n);
        p += n;
        *p++ = '\r';
        *p++ = '\n';
    }
    v.iov_len = (size_t)(p - (char *)v.iov_base);
    evbuffer_commit_space(out, &v, 1);
}

static void send_handshake(struct redis_conn *c)
{
    c->handshake_left = 0;
    if (g.url.password) {
        const char *av[3] = {"AUTH", g.url.user ? g.url.user : g.url.password, g.url.password};
        send_argv(c, g.url.user ? 3 : 2, av, NULL);
        push_pending(c, NULL, NULL);
        c->handshake_left++;
    }
    if (g.url.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", g.url.db);
        const char *av[2] = {"SELECT", db};
        send_argv(c, 2, av, NULL);
        push_pending(c, NULL, NULL);
        c->handshake_left++;
    }
    for (int i = 0; i < scripts_count(); i++) {
        const char *av[3] = {"SCRIPT", "LOAD", scripts_text(i)};
        send_argv(c, 3, av, NULL);
        push_pending(c, NULL, NULL);
        c->handshake_left++;
    }
    const char *ping[1] = {"PING"};
    send_argv(c, 1, ping, NULL);
    push_pending(c, NULL, NULL);
    c->handshake_left++;
}

static void on_handshake_reply(struct redis_conn *c, redisReply *r)
{
    if (r->type == REDIS_REPLY_ERROR) {
        bool auth = strncmp(r->str, "WRONGPASS", 9) == 0 || strncmp(r->str, "NOAUTH", 6) == 0 ||
                    strstr(r->str, "AUTH") != NULL;
        if (auth && !atomic_exchange(&auth_failure_logged, true))
            log_event(LOG_ERROR, "store_auth_failed", "Redis at %s refused the credentials of "
                      "cluster.redis.url", g.where);
        char why[200];
        /* (Redis error texts never echo the password) */
        snprintf(why, sizeof why, "the handshake failed: %.150s", r->str);
        conn_fail(c, why, false);
        return;
    }
    if (--c->handshake_left == 0) {
        c->state = ST_UP;
        c->backoff_ms = 0;
        atomic_fetch_add(&n_connects, 1);
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct redis_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    /* every chunk that arrived (no read event comes for what is left) */
    while (evbuffer_get_length(in)) {
        struct evbuffer_iovec v[8];
        int n = evbuffer_peek(in, -1, NULL, v, 8);
        if (n > 8) n = 8;
        size_t fed = 0;
        for (int i = 0; i < n; i++) {
            if (redisReaderFeed(c->reader, v[i].iov_base, v[i].iov_len) != REDIS_OK) {
                conn_fail(c, "a malformed reply", false);
                return;
            }
            fed += v[i].iov_len;
        }
        evbuffer_drain(in, fed);
        if (c->reader->len - c->reader->pos > 2 * (size_t)REPLY_MAX_BYTES) {
            conn_fail(c, "a reply too large", false);
            return;
        }
    }
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            conn_fail(c, "a malformed reply", false);
            return;
        }
        if (!reply) break;
        if (c->count == 0) { /* a reply nobody asked for */
            freeReplyObject(reply);
            conn_fail(c, "an unexpected reply", false);
            return;
        }
        struct pending p = pop_pending(c);
        redisReply *r = reply;
        if (!p.cb) {
            on_handshake_reply(c, r);
            freeReplyObject(reply);
            if (c->state == ST_DOWN) return;
            continue;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            atomic_fetch_add(&n_errors, 1);
            if (strncmp(r->str, "NOSCRIPT", 8) == 0) {
                /* (flushed scripts: the next connection loads them again) */
                p.cb(p.arg, r);
                freeReplyObject(reply);
                conn_fail(c, "the server lost its scripts", false);
                return;
            }
        }
        p.cb(p.arg, r);
        freeReplyObject(reply);
        if (c->state == ST_DOWN) return;
    }
    /* what the reader holds of a reply not complete yet */
    if (c->reader->len - c->reader->pos > REPLY_MAX_BYTES) conn_fail(c, "a reply too large", false);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct redis_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (!g.url.path) {
            int one = 1;
            setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_fail(c, (what & BEV_EVENT_EOF) ? "the server closed the connection"
                                            : "a connection error", false);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    start_connect(arg);
}

static void close_bev(struct redis_conn *c)
{
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    if (c->reader) {
        redisReaderFree(c->reader);
        c->reader = NULL;
    }
}

static void conn_fail(struct redis_conn *c, const char *why, bool timeout)
{
    bool was_up = c->state == ST_UP;
    c->state = ST_DOWN;
    close_bev(c);
    if (timeout) atomic_fetch_add(&n_timeouts, 1);
    if (was_up) {
        atomic_fetch_add(&n_disconnects, 1);
        log_event(LOG_DEBUG, "store_conn_lost", "Redis connection to %s lost: %s", g.where, why);
    }
    /* every pending call fails (callbacks may call in again: refused, down) */
    while (c->count) {
        struct pending p = pop_pending(c);
        if (p.cb) {
            atomic_fetch_add(&n_errors, 1);
            p.cb(p.arg, NULL);
        }
    }
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (c->backoff_ms > BACKOFF_MAX_MS) c->backoff_ms = BACKOFF_MAX_MS;
    struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
    evtimer_add(c->retry_timer, &tv);
}

static void start_connect(struct redis_conn *c)
{
    if (!g.ready) return;
    close_bev(c);
    c->state = ST_CONNECTING;
    c->reader = redisReaderCreate();
    if (c->reader) c->reader->maxbuf = 0;
    if (g.ssl_ctx) {
        SSL *ssl = SSL_new(g.ssl_ctx);
        if (ssl && g.url.host) {
            if (!host_is_ip(g.url.host)) SSL_set_tlsext_host_name(ssl, g.url.host);
            X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
            if (host_is_ip(g.url.host)) X509_VERIFY_PARAM_set1_ip_asc(param, g.url.host);
            else X509_VERIFY_PARAM_set1_host(param, g.url.host, 0);
        }
        c->bev = ssl ? bufferevent_openssl_socket_new(c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                      BEV_OPT_CLOSE_ON_FREE)
                     : NULL;
        if (c->bev) bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        else if (ssl) SSL_free(ssl);
    } else {
        c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!c->bev || !c->reader) {
        conn_fail(c, "out of resources", false);
        return;
    }
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&g.addr, (int)g.addr_len) != 0) {
        conn_fail(c, "connect failed", false);
        return;
    }
    /* the handshake is queued now and written once connected; its replies
     * are bound by the same deadline as any call */
    send_handshake(c);
}

/* ---- batches ---- */

static void batch_put_arg(struct batch *b, const char *s, size_t n)
{
    if (b->len + n > b->bytes_cap) {
        b->bytes_cap = (b->len + n) * 2 + 256;
        b->bytes = xrealloc(b->bytes, b->bytes_cap);
    }
    memcpy(b->bytes + b->len, s, n);
    b->len += n;
    if (b->n_args == b->args_cap) {
        b->args_cap = b->args_cap ? b->args_cap * 2 : 64;
        b->arg_end = xrealloc(b->arg_end, b->args_cap * sizeof *b->arg_end);
    }
    b->arg_end[b->n_args++] = b->len;
}

/* Hands every entry of `b` (taken off it) a failure. */
static void batch_fail(struct batch *b)
{
    size_t n = b->n;
    struct batch_entry *e = b->entries;
    b->entries = NULL;
    b->n = b->cap = b->len = b->n_args = 0;
    for (size_t i = 0; i < n; i++) e[i].cb(e[i].arg, NULL);
    free(e);
}

static void on_batch_reply(void *arg, struct redisReply *r)
{
    struct sent_batch *sb = arg;
    bool whole = r && r->type == REDIS_REPLY_ARRAY && r->elements == sb->n;
    for (size_t i = 0; i < sb->n; i++) {
        struct redisReply *mine = whole ? r->element[i] : (r && r->type == REDIS_REPLY_ERROR ? r : NULL);
        sb->entries[i].cb(sb->entries[i].arg, mine);
    }
    free(sb->entries);
    free(sb);
}

static int batched_script(int i)
{
    return i == 0 ? SCRIPT_RESERVE : SCRIPT_SETTLE;
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct redis_conn *c = arg;
    for (int i = 0; i < N_BATCHED; i++) {
        struct batch *b = &c->batches[i];
        if (b->n == 0) continue;
        if (c->state == ST_DOWN) {
            batch_fail(b);
            continue;
        }
        size_t argc = 4 + b->n_args;
        const char **argv = xmalloc(argc * sizeof *argv);
        size_t *lens = xmalloc(argc * sizeof *lens);
        char count[24];
        snprintf(count, sizeof count, "%zu", b->n);
        argv[0] = "EVALSHA";
        argv[1] = scripts_sha(batched_script(i));
        argv[2] = "0";
        argv[3] = count;
        for (int k = 0; k < 4; k++) lens[k] = strlen(argv[k]);
        for (size_t k = 0, start = 0; k < b->n_args; start = b->arg_end[k++]) {
            argv[4 + k] = b->bytes + start;
            lens[4 + k] = b->arg_end[k] - start;
        }
        struct sent_batch *sb = xmalloc(sizeof *sb);
        sb->entries = b->entries;
        sb->n = b->n;
        atomic_fetch_add(&n_calls, 1);
        send_argv(c, (int)argc, argv, lens);
        push_pending(c, on_batch_reply, sb);
        free(argv);
        free(lens);
        b->entries = NULL;
        b->n = b->cap = b->len = b->n_args = 0;
    }
}

int redis_conn_batch(struct redis_conn *c, int script, int argc, const char **argv,
                     const size_t *lens, redis_reply_cb cb, void *arg)
{
    if (!c || c->state == ST_DOWN) return -1;
    int i = script == SCRIPT_RESERVE ? 0 : script == SCRIPT_SETTLE ? 1 : -1;
    if (i < 0) return -1;
    struct batch *b = &c->batches[i];
    char count[24];
    int n = snprintf(count, sizeof count, "%d", argc);
    batch_put_arg(b, count, (size_t)n);
    for (int k = 0; k < argc; k++) batch_put_arg(b, argv[k], lens ? lens[k] : strlen(argv[k]));
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->entries = xrealloc(b->entries, b->cap * sizeof *b->entries);
    }
    b->entries[b->n++] = (struct batch_entry){cb, arg};
    if (b->n == 1) event_active(c->flush_ev, EV_TIMEOUT, 1);
    return 0;
}

struct redis_conn *redis_conn_new(struct event_base *base)
{
    struct redis_conn *c = xcalloc(1, sizeof *c);
    c->base = base;
    c->flush_ev = event_new(base, -1, 0, on_flush, c);
    c->deadline_timer = evtimer_new(base, on_deadline, c);
    c->retry_timer = evtimer_new(base, on_retry, c);
    start_connect(c);
    return c;
}

void redis_conn_free(struct redis_conn *c)
{
    if (!c) return;
    c->state = ST_DOWN;
    close_bev(c);
    while (c->count) {
        struct pending p = pop_pending(c);
        if (p.cb) p.cb(p.arg, NULL);
    }
    for (int i = 0; i < N_BATCHED; i++) {
        batch_fail(&c->batches[i]);
        free(c->batches[i].bytes);
        free(c->batches[i].arg_end);
    }
    event_free(c->flush_ev);
    event_free(c->deadline_timer);
    event_free(c->retry_timer);
    free(c->ring);
    free(c);
}

bool redis_conn_down(const struct redis_conn *c)
{
    return !c || c->state == ST_DOWN;
}

int redis_conn_call(struct redis_conn *c, int argc, const char **argv, const size_t *lens,
                    redis_reply_cb cb, void *arg)
{
    /* while connecting, calls queue behind the handshake (the first request
     * of a worker need not find the connection up) */
    if (!c || c->state == ST_DOWN) return -1;
    atomic_fetch_add(&n_calls, 1);
    send_argv(c, argc, argv, lens);
    push_pending(c, cb, arg);
    return 0;
}

int redis_conn_script(struct redis_conn *c, int script, int argc, const char **argv,
                      const size_t *lens, redis_reply_cb cb, void *arg)
{
    if (!c || c->state == ST_DOWN) return -1;
    enum { MAX_ARGS = 512 };
    if (argc + 3 > MAX_ARGS) return -1;
    const char *av[MAX_ARGS];
    size_t lv[MAX_ARGS];
    av[0] = "EVALSHA";
    lv[0] = 7;
    av[1] = scripts_sha(script);
    lv[1] = 40;
    av[2] = "0";
    lv[2] = 1;
    for (int i = 0; i < argc; i++) {
        av[3 + i] = argv[i];
        lv[3 + i] = lens ? lens[i] : strlen(argv[i]);
    }
    return redis_conn_call(c, argc + 3, av, lv, cb, arg);
}
