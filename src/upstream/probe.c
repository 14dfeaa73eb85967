/* probe: blocking GET/POST/DELETE with poll(2) deadlines, parsed with http-parser. */
#include "upstream/probe.h"

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"

struct probe_state {
    char *body;
    size_t len, cap, max;
    bool done, too_big;
};

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct probe_state *s = p->data;
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
    ((struct probe_state *)p->data)->done = true;
    return 0;
}

static bool wait_fd(int fd, short ev, int64_t deadline)
{
    int64_t left = deadline - clock_mono_ms();
    if (left <= 0) return false;
    struct pollfd pfd = {.fd = fd, .events = ev};
    return poll(&pfd, 1, (int)left) == 1;
}

/* Writes all of buf to the non-blocking socket before `deadline`. */
static bool write_all(int fd, const char *buf, size_t len, int64_t deadline)
{
    while (len) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (!wait_fd(fd, POLLOUT, deadline)) return false;
            continue;
        }
        if (w <= 0) return false;
        buf += w;
        len -= (size_t)w;
    }
    return true;
}

int probe_get(const char *url, const char *bearer, int timeout_ms, size_t max_body, char **body,
              size_t *len)
{
    return probe_request("GET", url, bearer, NULL, 0, timeout_ms, max_body, body, len);
}

int probe_request(const char *method, const char *url, const char *bearer, const char *req_body,
                  size_t req_len, int timeout_ms, size_t max_body, char **body, size_t *len)
{
    if (strncmp(url, "http://", 7) != 0) return -1;
    const char *hp = url + 7;
    const char *slash = strchr(hp, '/');
    const char *path = slash ? slash : "/";
    char hostport[300];
    size_t hl = slash ? (size_t)(slash - hp) : strlen(hp);
    if (hl == 0 || hl >= sizeof hostport) return -1;
    memcpy(hostport, hp, hl);
    hostport[hl] = '\0';
    char host[300], port[16] = "80";
    char *colon = strrchr(hostport, ':');
    if (colon && !strchr(colon, ']')) {
        snprintf(port, sizeof port, "%s", colon + 1);
        *colon = '\0';
    }
    snprintf(host, sizeof host, "%s", hostport[0] == '[' ? hostport + 1 : hostport);
    char *rb = strchr(host, ']');
    if (rb) *rb = '\0';

    int64_t deadline = clock_mono_ms() + timeout_ms;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = -1;
    struct probe_state st = {.max = max_body};
    if (fd < 0) goto out;
    if (connect(fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS) goto out;
    if (!wait_fd(fd, POLLOUT, deadline)) goto out;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr) goto out;

    char req[1400];
    char clen[80] = "";
    if (req_body)
        snprintf(clen, sizeof clen, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                 req_len);
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n"
                     "%s%s%s%sConnection: close\r\n\r\n", method, path, hostport,
                     bearer ? "Authorization: Bearer " : "", bearer ? bearer : "",
                     bearer ? "\r\n" : "", clen);
    if (n < 0 || (size_t)n >= sizeof req || !write_all(fd, req, (size_t)n, deadline)) goto out;
    if (req_body && req_len && !write_all(fd, req_body, req_len, deadline)) goto out;

    http_parser parser;
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &st;
    http_parser_settings settings = {.on_body = on_body, .on_message_complete = on_complete};
    char buf[8192];
    while (!st.done) {
        if (!wait_fd(fd, POLLIN, deadline)) goto out;
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r < 0) goto out;
        http_parser_execute(&parser, &settings, buf, (size_t)r);
        if (r == 0) break;
        if (HTTP_PARSER_ERRNO(&parser) != HPE_OK) goto out;
    }
    if (!st.done || st.too_big) goto out;
    rc = parser.status_code;
    *body = st.body ? st.body : xstrdup("");
    *len = st.len;
    st.body = NULL;
out:
    free(st.body);
    if (fd >= 0) close(fd);
    freeaddrinfo(res);
    return rc;
}
