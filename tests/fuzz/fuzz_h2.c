// fuzz-libs: libevent_extra libevent_pthreads libevent_openssl openssl libnghttp2
// fuzz-sources: src/http/h2.c src/http/tls.c src/http/fast_request.c
/* fuzz_h2: libFuzzer driver for the HTTP/2 transport. As fuzz_http_request
 * does for HTTP/1.1, it runs the real server code (src/http/server.c is
 * included; h2.c is linked) on one end of a socketpair and writes the
 * input, after the client preface, as raw client bytes into the other end:
 * the preface detection, nghttp2's session with our callbacks, stream
 * requests with their limits (413, 431, 408 paths), the data providers,
 * trailers, RST_STREAM and GOAWAY handling, and the close paths.
 *
 * The handler answers by :path: "/late..." on the next loop turn,
 * "/stream..." as a stream echoing the body (8 KB pieces, so that large
 * bodies reach the backpressure paths), "/trailers..." with a body and
 * trailers, "/tonly..." trailers-only, "/err..." an OpenAI error, anything
 * else at once. The first input byte picks the delivery: all at once, or
 * pieces of 1-505 bytes with the loop run between them.
 *
 * Checks: the server's output is a sequence of well-formed HTTP/2 frames
 * that starts with its SETTINGS; the connection is always freed;
 * ASan/UBSan/LSan watch the rest. */
#include "../../src/http/server.c"

#include <assert.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>

#include "config/config.h"

static struct event_base *base;
static struct config *cfg;
static struct http_worker worker;
static struct http_server server;
static const char client_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ---- the handler ---- */

static void on_late(evutil_socket_t fd, short what, void *arg)
{
    struct http_request *req = arg;
    char body[64];
    int n = snprintf(body, sizeof body, "{\"late\":%zu}", req->body_len);
    http_respond(req, 200, "application/json", "X-Late: yes\r\n", body, (size_t)n);
}

static void free_event(void *ev)
{
    event_free(ev);
}

static void handler(struct http_request *req)
{
    if (strncmp(req->path, "/late", 5) == 0) {
        struct event *ev = evtimer_new(base, on_late, req);
        arena_on_free(&req->arena, free_event, ev);
        struct timeval zero = {0, 0};
        event_add(ev, &zero);
        return;
    }
    if (strncmp(req->path, "/stream", 7) == 0) {
        http_stream_start(req, 200, "text/event-stream", "Cache-Control: no-cache\r\n");
        for (size_t off = 0; off < req->body_len; off += 8192) {
            size_t n = req->body_len - off < 8192 ? req->body_len - off : 8192;
            http_stream_write3(req, "data: ", 6, req->body + off, n, "\n\n", 2);
        }
        http_stream_flush(req);
        if (req->query) http_stream_end_trailers(req, "grpc-status: 0\r\n");
        else http_stream_end(req);
        return;
    }
    if (strncmp(req->path, "/trailers", 9) == 0) {
        http_respond_trailers(req, 200, "application/grpc", NULL, req->body, req->body_len,
                              "grpc-status: 0\r\ngrpc-message: ok\r\n");
        return;
    }
    if (strncmp(req->path, "/tonly", 6) == 0) {
        http_respond_trailers(req, 200, "application/grpc", NULL, NULL, 0, "grpc-status: 5\r\n");
        return;
    }
    if (strncmp(req->path, "/err", 4) == 0) {
        http_respond_error(req, GW_ERR_BAD_REQUEST, "fuzz error", "x");
        return;
    }
    char body[96];
    int n = snprintf(body, sizeof body, "{\"method\":\"%s\",\"len\":%zu,\"headers\":%zu}",
                     req->method_name ? req->method_name : "", req->body_len, req->n_headers);
    http_respond(req, 200, "application/json", NULL, body, (size_t)n);
}

/* ---- set-up ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static const char text[] =
        "{\"server\":{\"listen_addr\":\"127.0.0.1:1\",\"max_header_size\":\"1KB\","
        "\"max_request_size\":\"16KB\",\"read_timeout\":\"5s\",\"idle_timeout\":\"5s\"},"
        "\"budget\":{\"cost_db\":\"sqlite:///dev/null\"}}";
    struct diag_list diags = {0};
    cfg = config_load_text(text, sizeof text - 1, "fuzz.json", &diags);
    if (!cfg) {
        diag_list_print(&diags, stderr);
        abort();
    }
    diag_list_cleanup(&diags);
    base = event_base_new();
    worker.server = &server;
    worker.base = base;
    worker.config = cfg;
    worker.handler = handler;
    worker.spare_fd = -1;
    return 0;
}

/* ---- checking the output ---- */

static void check_frames(const uint8_t *out, size_t len)
{
    size_t off = 0;
    bool first = true;
    while (off + 9 <= len) {
        size_t flen = ((size_t)out[off] << 16) | ((size_t)out[off + 1] << 8) | out[off + 2];
        uint8_t type = out[off + 3];
        assert(flen <= 16384); /* the client's default SETTINGS_MAX_FRAME_SIZE */
        if (first) assert(type == NGHTTP2_SETTINGS);
        first = false;
        assert(type <= NGHTTP2_CONTINUATION); /* no extension frames from us */
        assert(type != NGHTTP2_PUSH_PROMISE);
        off += 9 + flen;
    }
}

/* ---- one input ---- */

static void pump(int peer, uint8_t *out, size_t *out_len, size_t cap, bool *wrapped)
{
    event_base_loop(base, EVLOOP_NONBLOCK);
    for (;;) {
        ssize_t r = read(peer, out + *out_len, cap - *out_len);
        if (r <= 0) break;
        *out_len += (size_t)r;
        if (*out_len == cap) {
            *out_len = 0; /* keep only what fits; the check is skipped then */
            *wrapped = true;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 64 * 1024) return 0;
    bool pieces = data[0] & 1;
    size_t piece = 1 + ((data[0] >> 1) % 64) * 8; /* 1 to 505 bytes */
    data++;
    size--;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    struct sockaddr_un { sa_family_t f; char p[108]; } sa = {.f = AF_UNIX};
    on_accept(NULL, sv[0], (struct sockaddr *)&sa, sizeof sa, &worker);

    static uint8_t out[512 * 1024];
    size_t out_len = 0;
    bool wrapped = false;
    ssize_t w = write(sv[1], client_preface, sizeof client_preface - 1);
    (void)w;
    size_t off = 0;
    while (off < size) {
        size_t n = pieces ? (size - off < piece ? size - off : piece) : size - off;
        ssize_t wr = write(sv[1], data + off, n);
        if (wr > 0) off += (size_t)wr;
        pump(sv[1], out, &out_len, sizeof out, &wrapped);
        if (worker.n_conns == 0) break; /* the server closed it */
        if (wr <= 0) break;              /* the server stopped reading */
    }
    for (int i = 0; i < 8 && worker.n_conns; i++) pump(sv[1], out, &out_len, sizeof out, &wrapped);
    if (!wrapped) check_frames(out, out_len);

    close(sv[1]);
    for (int i = 0; i < 50 && worker.n_conns; i++) event_base_loop(base, EVLOOP_NONBLOCK);
    while (worker.conns) {
        http_conn_close(worker.conns);
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    assert(worker.n_conns == 0);
    return 0;
}
