/* jwks_fetch: the jwks_url refresher. One thread per configured URL, a
 * blocking GET with a deadline (poll for the connect, then socket timeouts;
 * OpenSSL for https), http-parser for the answer (chunked included). */
#include "security/jwks_fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "security/jwks.h"

/* ---- one GET ---- */

struct get_state {
    char *body;
    size_t len, cap, max;
    bool done, too_big;
};

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct get_state *s = p->data;
    if (s->len + n > s->max) {
        s->too_big = true;
        return 1;
    }
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->body = xrealloc(s->body, s->cap);
    }
    memcpy(s->body + s->len, at, n);
    s->len += n;
    s->body[s->len] = '\0';
    return 0;
}

static int on_complete(http_parser *p)
{
    ((struct get_state *)p->data)->done = true;
    return 0;
}

/* Connects to host:port before `deadline` (monotonic ms); a blocking
 * socket whose reads and writes time out at the deadline, or -1. */
static int connect_by(const char *host, const char *port, int64_t deadline, char *err, size_t errcap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errcap, "cannot resolve %s: %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
            int64_t left = deadline - clock_mono_ms();
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            if (left > 0 && poll(&pfd, 1, (int)left) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
                break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errcap, "cannot connect to %s:%s", host, port);
        return -1;
    }
    /* back to blocking, bounded by the socket timeouts */
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        snprintf(err, errcap, "cannot set up the socket");
        close(fd);
        return -1;
    }
    int64_t left = deadline - clock_mono_ms();
    if (left < 1) left = 1;
    struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static SSL_CTX *client_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int jwks_http_get(const char *url, int timeout_ms, size_t max_body, char **body, size_t *len,
                  char *err, size_t errcap)
{
    bool tls = strncmp(url, "https://", 8) == 0;
    if (!tls && strncmp(url, "http://", 7) != 0) {
        snprintf(err, errcap, "not an http(s) URL");
        return -1;
    }
    const char *hp = url + (tls ? 8 : 7);
    size_t hl = strcspn(hp, "/?#");
    const char *path = hp[hl] == '/' ? hp + hl : "/";
    char hostport[300], host[300], port[16];
    if (hl == 0 || hl >= sizeof hostport) {
        snprintf(err, errcap, "invalid host in the URL");
        return -1;
    }
    memcpy(hostport, hp, hl);
    hostport[hl] = '\0';
    snprintf(port, sizeof port, "%s", tls ? "443" : "80");
    char *colon = strrchr(hostport, ':');
    if (colon && !strchr(colon, ']')) {
        snprintf(port, sizeof port, "%s", colon + 1);
        snprintf(host, sizeof host, "%.*s", (int)(colon - hostport), hostport);
    } else {
        snprintf(host, sizeof host, "%s", hostport);
    }
    if (host[0] == '[') { /* [v6] */
        memmove(host, host + 1, strlen(host));
        char *rb = strchr(host, ']');
        if (rb) *rb = '\0';
    }
    size_t pl = strcspn(path, "#");
    int64_t deadline = clock_mono_ms() + timeout_ms;
    int fd = connect_by(host, port, deadline, err, errcap);
    if (fd < 0) return -1;

    int rc = -1;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    struct get_state st = {.max = max_body};
    if (tls) {
        ctx = client_ctx();
        ssl = ctx ? SSL_new(ctx) : NULL;
        if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_set_tlsext_host_name(ssl, host) != 1 ||
            SSL_set1_host(ssl, host) != 1) {
            snprintf(err, errcap, "cannot set up TLS");
            goto out;
        }
        if (SSL_connect(ssl) != 1) {
            long v = SSL_get_verify_result(ssl);
            snprintf(err, errcap, "TLS handshake failed%s%s", v != X509_V_OK ? ": " : "",
                     v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
            goto out;
        }
    }
    char req[2048];
    int n = snprintf(req, sizeof req, "GET %.*s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
                     "User-Agent: aiproxy\r\nConnection: close\r\n\r\n", (int)pl, path, hostport);
    if (n < 0 || (size_t)n >= sizeof req) {
        snprintf(err, errcap, "URL too long");
        goto out;
    }
    for (size_t off = 0; off < (size_t)n;) {
        ssize_t w = ssl ? SSL_write(ssl, req + off, n - (int)off)
                        : send(fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w <= 0) {
            if (!ssl && w < 0 && errno == EINTR) continue;
            snprintf(err, errcap, "cannot send the request");
            goto out;
        }
        off += (size_t)w;
    }
    http_parser parser;
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &st;
    http_parser_settings settings = {.on_body = on_body, .on_message_complete = on_complete};
    char buf[16384];
    while (!st.done) {
        if (clock_mono_ms() > deadline) {
            snprintf(err, errcap, "timed out");
            goto out;
        }
        ssize_t r = ssl ? SSL_read(ssl, buf, sizeof buf) : recv(fd, buf, sizeof buf, 0);
        if (r < 0 && !ssl && errno == EINTR) continue;
        if (r < 0 && ssl && SSL_get_error(ssl, (int)r) == SSL_ERROR_ZERO_RETURN) r = 0;
        if (r < 0) {
            snprintf(err, errcap, "%s", errno == EAGAIN ? "timed out" : "connection failed");
            goto out;
        }
        http_parser_execute(&parser, &settings, buf, (size_t)r);
        if (st.too_big) {
            snprintf(err, errcap, "the answer is larger than %zu bytes", max_body);
            goto out;
        }
        if (HTTP_PARSER_ERRNO(&parser) != HPE_OK) {
            snprintf(err, errcap, "invalid HTTP answer");
            goto out;
        }
        if (r == 0) break;
    }
    if (!st.done) {
        snprintf(err, errcap, "connection closed before the answer was complete");
        goto out;
    }
    if (parser.status_code != 200) {
        snprintf(err, errcap, "HTTP status %u", parser.status_code);
        goto out;
    }
    *body = st.body ? st.body : xstrdup("");
    *len = st.len;
    st.body = NULL;
    rc = 0;
out:
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    SSL_CTX_free(ctx);
    ERR_clear_error();
    free(st.body);
    close(fd);
    return rc;
}

/* ---- the refresher ---- */

struct jwks_fetcher {
    char *url;
    char *shown; /* the URL as logged: without its query (it may carry a token) */
    int64_t refresh_ms;
    struct jwks_holder keys;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* CLOCK_MONOTONIC */
    bool stop, kicked;
    int64_t last_kick_ms; /* 0: never */
    bool last_ok;
};

/* One fetch; the set is replaced only by a valid one. */
static bool do_fetch(struct jwks_fetcher *f)
{
    char err[300];
    char *body = NULL;
    size_t len = 0;
    struct jwks *ks = NULL;
    if (jwks_http_get(f->url, JWKS_FETCH_TIMEOUT_MS, JWKS_MAX_BYTES, &body, &len, err, sizeof err) == 0)
        ks = jwks_parse(body, len, err, sizeof err);
    free(body);
    if (!ks) {
        log_event(LOG_WARN, "jwks_refresh_failed", "cannot load the JWT key set from %s: %s; "
                  "keeping the last good set", f->shown, err);
        return false;
    }
    size_t n = ks->n;
    jwks_holder_set(&f->keys, ks);
    log_event(LOG_DEBUG, "jwks_loaded", "JWT key set from %s: %zu key(s)", f->shown, n);
    return true;
}

static struct timespec mono_at(int64_t ms)
{
    return (struct timespec){.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
}

static void *refresh_main(void *arg)
{
    struct jwks_fetcher *f = arg;
    pthread_mutex_lock(&f->mu);
    int64_t last = clock_mono_ms();
    while (!f->stop) {
        int64_t wait = f->last_ok || f->refresh_ms < JWKS_RETRY_MS ? f->refresh_ms : JWKS_RETRY_MS;
        struct timespec until = mono_at(last + wait);
        while (!f->stop && !f->kicked && clock_mono_ms() < last + wait)
            pthread_cond_timedwait(&f->cond, &f->mu, &until);
        if (f->stop) break;
        f->kicked = false;
        pthread_mutex_unlock(&f->mu);
        bool ok = do_fetch(f);
        pthread_mutex_lock(&f->mu);
        f->last_ok = ok;
        last = clock_mono_ms();
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

struct jwks_fetcher *jwks_fetcher_start(const char *url, int64_t refresh_ms)
{
    struct jwks_fetcher *f = xcalloc(1, sizeof *f);
    f->url = xstrdup(url);
    f->shown = xstrndup(url, strcspn(url, "?#"));
    f->refresh_ms = refresh_ms > 0 ? refresh_ms : 300000;
    jwks_holder_init(&f->keys);
    pthread_mutex_init(&f->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cond, &ca);
    pthread_condattr_destroy(&ca);
    f->last_ok = do_fetch(f);
    if (f->last_ok) {
        struct jwks *ks = jwks_holder_get(&f->keys);
        log_event(LOG_INFO, "jwks_loaded", "JWT key set from %s: %zu key(s), refreshed every %llds",
                  f->shown, ks ? ks->n : 0, (long long)(f->refresh_ms / 1000));
        jwks_unref(ks);
    }
    if (pthread_create(&f->thread, NULL, refresh_main, f) != 0) {
        log_event(LOG_ERROR, "jwks_refresh_failed", "cannot start the JWT key set refresher");
        abort(); /* as for any thread the daemon cannot do without */
    }
    return f;
}

void jwks_fetcher_stop(struct jwks_fetcher *f)
{
    if (!f) return;
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->mu);
    jwks_holder_cleanup(&f->keys);
    free(f->url);
    free(f->shown);
    free(f);
}

const char *jwks_fetcher_url(const struct jwks_fetcher *f)
{
    return f->url;
}

int64_t jwks_fetcher_refresh_ms(const struct jwks_fetcher *f)
{
    return f->refresh_ms;
}

struct jwks *jwks_fetcher_get(struct jwks_fetcher *f)
{
    return jwks_holder_get(&f->keys);
}

void jwks_fetcher_kick(struct jwks_fetcher *f)
{
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&f->mu);
    if (!f->last_kick_ms || now - f->last_kick_ms >= JWKS_KICK_MIN_MS) {
        f->last_kick_ms = now;
        f->kicked = true;
        pthread_cond_signal(&f->cond);
    }
    pthread_mutex_unlock(&f->mu);
}
