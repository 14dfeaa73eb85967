/* fuzz_fast_response: differential target for upstream/fast_response.
 * Whenever the fast parser takes an answer, http-parser must read the same
 * bytes as one complete response with the same status, the same last
 * Content-Type and Retry-After values, the same body and keep-alive
 * decision. The input's first byte picks the head limit. */
// fuzz-sources: src/upstream/fast_response.c
#include <assert.h>
#include <http_parser.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "upstream/fast_response.h"

#define CAP 8192

struct seen {
    char name[CAP], value[CAP];
    size_t name_n, value_n;
    int in_value;
    char ctype[CAP], retry[CAP];
    size_t ctype_n, retry_n;
    int has_ctype, has_retry;
    char body[CAP];
    size_t body_n;
    int complete;
};

static void store(struct seen *s)
{
    if (!s->name_n) return;
    if (s->name_n == 12 && strncasecmp(s->name, "content-type", 12) == 0) {
        memcpy(s->ctype, s->value, s->value_n);
        s->ctype_n = s->value_n;
        s->has_ctype = 1;
    } else if (s->name_n == 11 && strncasecmp(s->name, "retry-after", 11) == 0) {
        memcpy(s->retry, s->value, s->value_n);
        s->retry_n = s->value_n;
        s->has_retry = 1;
    }
    s->name_n = s->value_n = 0;
    s->in_value = 0;
}

static int on_field(http_parser *p, const char *at, size_t n)
{
    struct seen *s = p->data;
    if (s->in_value) store(s);
    if (s->name_n + n > CAP) return 1;
    memcpy(s->name + s->name_n, at, n);
    s->name_n += n;
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t n)
{
    struct seen *s = p->data;
    s->in_value = 1;
    if (s->value_n + n > CAP) return 1;
    memcpy(s->value + s->value_n, at, n);
    s->value_n += n;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct seen *s = p->data;
    if (s->in_value) store(s);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct seen *s = p->data;
    if (s->body_n + n > CAP) return 1;
    memcpy(s->body + s->body_n, at, n);
    s->body_n += n;
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
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > CAP) return 0;
    size_t max_head = (data[0] & 1) ? 64 : 65536;
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;

    struct fast_answer fa;
    size_t took = fast_response_parse(buf, len, max_head, &fa);
    if (!took) return 0;
    assert(took <= len);

    static struct seen s;
    memset(&s, 0, sizeof s);
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &s;
    size_t used = http_parser_execute(&p, &settings, buf, took);
    enum http_errno err = HTTP_PARSER_ERRNO(&p);
    assert(err == HPE_PAUSED || err == HPE_OK);
    assert(s.complete);
    assert(used == took || used + 1 == took);

    assert((int)p.status_code == fa.status);
    assert(s.has_ctype == (fa.content_type != NULL));
    if (s.has_ctype)
        assert(s.ctype_n == fa.content_type_len && memcmp(s.ctype, fa.content_type, s.ctype_n) == 0);
    assert(s.has_retry == (fa.retry_after != NULL));
    if (s.has_retry)
        assert(s.retry_n == fa.retry_after_len && memcmp(s.retry, fa.retry_after, s.retry_n) == 0);
    assert(s.body_n == fa.body_len && memcmp(s.body, fa.body, s.body_n) == 0);
    assert(!!http_should_keep_alive(&p) == fa.keep_alive);
    return 0;
}
