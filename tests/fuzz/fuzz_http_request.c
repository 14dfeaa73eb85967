// fuzz-libs: libevent_extra libevent_pthreads libevent_openssl openssl libnghttp2
// fuzz-sources: src/http/h2.c src/http/tls.c src/http/fast_request.c
/* fuzz_http_request: libFuzzer driver for the HTTP front end. It runs the
 * real server code (src/http/server.c is included, so its static
 * connection machinery is exercised as it is in aiproxyd: on_accept,
 * http-parser callbacks, limits, pipelining, 100-continue, 413/431/400
 * answers, keep-alive, the close paths) on one end of a socketpair and
 * writes the input, as raw client bytes, into the other end.
 *
 * The handler answers by path: "/late..." on the next loop turn (a request
 * answered later, while pipelined bytes wait), "/stream..." as a chunked
 * stream echoing the body, anything else at once with the body length.
 * The first input byte picks how the bytes are delivered: all at once, or
 * in small pieces with the loop run between them (splits headers, chunk
 * sizes and bodies at every offset).
 *
 * Checks: whatever the server writes is a sequence of HTTP/1.1 responses
 * (unless the input opens with the HTTP/2 preface: fuzz_h2's ground)
 * (a status line, then for every 4xx/5xx a JSON content type); the
 * connection is always freed; ASan/UBSan/LSan watch the rest. */
#include "../../src/http/server.c"

#include <assert.h>
#include <sys/socket.h>

#include "config/config.h"

static struct event_base *base;
static struct config *cfg;
static struct http_worker worker;
static struct http_server server; /* the client listener: plain TCP, not the mesh */

/* ---- the handler ---- */

static void on_late(evutil_socket_t fd, short what, void *arg)
{
    struct http_request *req = arg;
    char body[64];
    int n = snprintf(body, sizeof body, "{\"late\":%zu}", req->body_len);
    http_respond(req, 200, "application/json", NULL, body, (size_t)n);
}

/* The timer lives as long as its request: freed with the arena whether the
 * request was answered or aborted (the client left first). */
static void free_event(void *ev)
{
    event_free(ev);
}

/* The methods of the requests handed to the handler, in order: an answer
 * to HEAD carries a Content-Length but no body. */
static enum http_method_kind handled[256];
static size_t n_handled;

static void handler(struct http_request *req)
{
    if (n_handled < sizeof handled / sizeof handled[0]) handled[n_handled++] = req->method;
    if (strncmp(req->path, "/late", 5) == 0) {
        struct event *ev = evtimer_new(base, on_late, req);
        arena_on_free(&req->arena, free_event, ev);
        struct timeval zero = {0, 0};
        event_add(ev, &zero);
        return;
    }
    if (strncmp(req->path, "/stream", 7) == 0) {
        http_stream_start(req, 200, "text/event-stream", NULL);
        if (req->body_len) http_stream_write3(req, "data: ", 6, req->body, req->body_len, "\n\n", 2);
        http_stream_end(req);
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
        "\"max_request_size\":\"4KB\",\"read_timeout\":\"5s\",\"idle_timeout\":\"5s\"},"
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

static void check_responses(const char *out, size_t len)
{
    size_t off = 0, k = 0;
    while (off < len) {
        /* A full head is needed to judge it; the tail may be cut. */
        const char *end = memmem(out + off, len - off, "\r\n\r\n", 4);
        if (!end) {
            assert(len - off < 9 || memcmp(out + off, "HTTP/1.1 ", 9) == 0);
            return;
        }
        assert(memcmp(out + off, "HTTP/1.1 ", 9) == 0);
        int status = atoi(out + off + 9);
        assert(status >= 100 && status <= 599);
        size_t head_len = (size_t)(end - (out + off)) + 4;
        const char *head = out + off;
        if (status >= 400)
            assert(memmem(head, head_len, "Content-Type: application/json\r\n", 32));
        if (status == 100) {
            off += head_len;
            continue;
        }
        bool head_req = k < n_handled && handled[k] == HTTP_M_HEAD;
        k++;
        const char *cl = memmem(head, head_len, "Content-Length: ", 16);
        if (cl) {
            size_t n = head_req ? 0 : strtoul(cl + 16, NULL, 10);
            off += head_len + n;
            continue;
        }
        /* Chunked: walk the chunks. */
        size_t p = off + head_len;
        for (;;) {
            const char *le = p < len ? memmem(out + p, len - p, "\r\n", 2) : NULL;
            if (!le) return;
            size_t n = strtoul(out + p, NULL, 16);
            p = (size_t)(le - out) + 2 + n + 2;
            if (n == 0) break;
            if (p > len) return;
        }
        off = p;
    }
}

/* ---- one input ---- */

static void pump(int peer, char *out, size_t *out_len, size_t cap)
{
    event_base_loop(base, EVLOOP_NONBLOCK);
    for (;;) {
        ssize_t r = read(peer, out + *out_len, cap - *out_len);
        if (r <= 0) break;
        *out_len += (size_t)r;
        if (*out_len == cap) *out_len = 0; /* keep only what fits; checks skip then */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 32 * 1024) return 0;
    n_handled = 0;
    bool pieces = data[0] & 1;
    size_t piece = 1 + (data[0] >> 1) % 16;
    data++;
    size--;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    struct sockaddr_un { sa_family_t f; char p[108]; } sa = {.f = AF_UNIX};
    on_accept(NULL, sv[0], (struct sockaddr *)&sa, sizeof sa, &worker);

    static char out[256 * 1024];
    size_t out_len = 0;
    bool wrapped = false;
    size_t off = 0;
    while (off < size) {
        size_t n = pieces ? (size - off < piece ? size - off : piece) : size - off;
        ssize_t w = write(sv[1], data + off, n);
        if (w > 0) off += (size_t)w;
        size_t before = out_len;
        pump(sv[1], out, &out_len, sizeof out);
        if (out_len < before) wrapped = true;
        if (worker.n_conns == 0) break; /* the server closed it */
    }
    for (int i = 0; i < 8 && worker.n_conns; i++) {
        size_t before = out_len;
        pump(sv[1], out, &out_len, sizeof out);
        if (out_len < before) wrapped = true;
    }
    /* An input that opens with the HTTP/2 preface is answered in HTTP/2
     * frames (fuzz_h2 checks those). */
    bool h2 = size >= 24 && memcmp(data, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24) == 0;
    if (!wrapped && !h2) check_responses(out, out_len);

    /* The client leaves: the connection must be freed whatever its state. */
    close(sv[1]);
    for (int i = 0; i < 50 && worker.n_conns; i++) event_base_loop(base, EVLOOP_NONBLOCK);
    while (worker.conns) {
        /* Still open (e.g. a close not yet noticed): close it as drain would. */
        http_conn_close(worker.conns);
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    assert(worker.n_conns == 0);
    return 0;
}
