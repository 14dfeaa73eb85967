/* fuzz_fast_request: differential target for http/fast_request. Whenever
 * the fast parser takes a message, http-parser must read the same bytes as
 * exactly one complete request with the same method, target, headers (in
 * order, byte for byte), body and keep-alive decision; a message it leaves
 * alone costs nothing to check. The input's first byte picks the limits. */
// fuzz-sources: src/http/fast_request.c
#include <assert.h>
#include <http_parser.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/fast_request.h"

#define CAP 8192

struct seen {
    char url[CAP];
    size_t url_n;
    char names[HTTP_MAX_HEADERS + 1][CAP / 4], values[HTTP_MAX_HEADERS + 1][CAP / 4];
    size_t name_n[HTTP_MAX_HEADERS + 1], value_n[HTTP_MAX_HEADERS + 1];
    size_t n;          /* headers begun */
    int in_value;
    char body[CAP];
    size_t body_n;
    int complete;
    int overflow;
};

static void put(char *dst, size_t *n, size_t cap, const char *at, size_t len, int *overflow)
{
    if (*n + len > cap) {
        *overflow = 1;
        return;
    }
    memcpy(dst + *n, at, len);
    *n += len;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct seen *s = p->data;
    put(s->url, &s->url_n, sizeof s->url, at, len, &s->overflow);
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t len)
{
    struct seen *s = p->data;
    if (s->n == 0 || s->in_value) {
        if (s->n > HTTP_MAX_HEADERS) {
            s->overflow = 1;
            return 0;
        }
        s->n++;
        s->in_value = 0;
    }
    put(s->names[s->n - 1], &s->name_n[s->n - 1], CAP / 4, at, len, &s->overflow);
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t len)
{
    struct seen *s = p->data;
    s->in_value = 1;
    if (s->n == 0) return 0;
    put(s->values[s->n - 1], &s->value_n[s->n - 1], CAP / 4, at, len, &s->overflow);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct seen *s = p->data;
    put(s->body, &s->body_n, sizeof s->body, at, len, &s->overflow);
    return 0;
}

static int on_complete(http_parser *p)
{
    struct seen *s = p->data;
    s->complete = 1;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

static enum http_method_kind kind_of(unsigned m)
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > CAP) return 0;
    size_t max_head = (data[0] & 1) ? 64 : 16384, max_body = (data[0] & 2) ? 4 : 1 << 20;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    struct fast_request fr;
    size_t took = fast_request_parse(buf, len, max_head, max_body, &fr);
    if (!took) return 0;
    assert(took <= len);
    assert(fr.body.n <= max_body);

    static struct seen s;
    memset(&s, 0, sizeof s);
    http_parser p;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = &s;
    size_t used = http_parser_execute(&p, &settings, buf, took);
    enum http_errno err = HTTP_PARSER_ERRNO(&p);
    /* one complete message, ending exactly where the fast parser said */
    assert(err == HPE_PAUSED || err == HPE_OK);
    assert(s.complete);
    /* (paused at a message's end, http-parser may leave its last '\n' for
     * the next message, where a leading CRLF is skipped) */
    assert(used == took || used + 1 == took);
    assert(!s.overflow);

    assert(kind_of(p.method) == fr.method);
    assert(strcmp(http_method_str(p.method), fr.method_name) == 0);
    assert(s.url_n == fr.target.n && memcmp(s.url, fr.target.p, s.url_n) == 0);
    assert(s.n == fr.n_headers);
    for (size_t i = 0; i < s.n; i++) {
        assert(s.name_n[i] == fr.names[i].n && memcmp(s.names[i], fr.names[i].p, s.name_n[i]) == 0);
        assert(s.value_n[i] == fr.values[i].n &&
               memcmp(s.values[i], fr.values[i].p, s.value_n[i]) == 0);
    }
    assert(s.body_n == fr.body.n && memcmp(s.body, fr.body.p, s.body_n) == 0);
    assert(!!http_should_keep_alive(&p) == fr.keep_alive);
    return 0;
}
