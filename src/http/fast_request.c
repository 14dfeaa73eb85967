/* fast_request: the one-pass parser of plain HTTP/1.1 requests (see
 * fast_request.h). Every check that fails means "not mine" (0), never an
 * error: http-parser then reads the same bytes and gives the answer. */
#include "http/fast_request.h"

#include <string.h>

/* tchar (RFC 9110 5.6.2) */
static const unsigned char is_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

/* Bytes taken in a request-target: RFC 3986's pchar, '/' and '?' (no
 * fragment, no bytes that only some parsers take). */
static const unsigned char is_target[256] = {
    ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['0' ... '9'] = 1, ['-'] = 1, ['.'] = 1, ['_'] = 1,
    ['~'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1,
    ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1, [':'] = 1, ['@'] = 1, ['/'] = 1, ['?'] = 1,
    ['%'] = 1,
};

/* Bytes taken in a header value: visible ASCII, space and tab. */
static const unsigned char is_value[256] = {
    ['\t'] = 1, [' ' ... '~'] = 1,
};

static const struct {
    const char *name;
    size_t len;
    enum http_method_kind kind;
} methods[] = {
    {"GET", 3, HTTP_M_GET},         {"POST", 4, HTTP_M_POST},     {"PUT", 3, HTTP_M_PUT},
    {"DELETE", 6, HTTP_M_DELETE},   {"HEAD", 4, HTTP_M_HEAD},     {"OPTIONS", 7, HTTP_M_OPTIONS},
    {"PATCH", 5, HTTP_M_PATCH},
};

static bool name_is(const struct fast_span *s, const char *lower, size_t n)
{
    if (s->n != n) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s->p[i];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
        if (c != (unsigned char)lower[i]) return false;
    }
    return true;
}

/* Content-Length's value: 1 to 15 digits (far past any body limit). */
static bool parse_length(const struct fast_span *v, size_t *out)
{
    if (v->n == 0 || v->n > 15) return false;
    size_t n = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (v->p[i] < '0' || v->p[i] > '9') return false;
        n = n * 10 + (size_t)(v->p[i] - '0');
    }
    *out = n;
    return true;
}

size_t fast_request_parse(const char *buf, size_t len, size_t max_head, size_t max_body,
                          struct fast_request *out)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t limit = len < max_head ? len : max_head;
    size_t i = 0;

    /* request-line */
    size_t m = 0;
    while (m < sizeof methods / sizeof methods[0] &&
           !(limit > methods[m].len && memcmp(buf, methods[m].name, methods[m].len) == 0 &&
             b[methods[m].len] == ' '))
        m++;
    if (m == sizeof methods / sizeof methods[0]) return 0;
    out->method = methods[m].kind;
    out->method_name = methods[m].name;
    i = methods[m].len + 1;
    if (i >= limit || b[i] != '/') return 0;
    size_t t = i;
    while (i < limit && is_target[b[i]]) i++;
    out->target = (struct fast_span){buf + t, i - t};
    if (limit - i < 10 || memcmp(buf + i, " HTTP/1.", 8) != 0) return 0;
    bool http11;
    if (b[i + 8] == '1') http11 = true;
    else if (b[i + 8] == '0') http11 = false;
    else return 0;
    if (b[i + 9] != '\r' || i + 10 >= limit || b[i + 10] != '\n') return 0;
    i += 11;

    /* header fields, up to the empty line */
    bool have_length = false, conn_close = false, conn_keep_alive = false;
    size_t length = 0;
    out->n_headers = 0;
    for (;;) {
        if (i + 1 >= limit) return 0;
        if (b[i] == '\r') {
            if (b[i + 1] != '\n') return 0;
            i += 2;
            break;
        }
        size_t ns = i;
        while (i < limit && is_tchar[b[i]]) i++;
        if (i == ns || i >= limit || b[i] != ':') return 0;
        struct fast_span name = {buf + ns, i - ns};
        i++;
        while (i < limit && (b[i] == ' ' || b[i] == '\t')) i++;
        size_t vs = i;
        while (i < limit && is_value[b[i]]) i++;
        if (i + 1 >= limit || b[i] != '\r' || b[i + 1] != '\n') return 0;
        struct fast_span value = {buf + vs, i - vs};
        i += 2;
        /* empty values and trailing whitespace: http-parser's business */
        if (value.n == 0 || value.p[value.n - 1] == ' ' || value.p[value.n - 1] == '\t') return 0;
        if (out->n_headers == HTTP_MAX_HEADERS) return 0;
        out->names[out->n_headers] = name;
        out->values[out->n_headers] = value;
        out->n_headers++;

        switch (name.n) {
        case 6:
            if (name_is(&name, "expect", 6)) return 0;
            break;
        case 7:
            if (name_is(&name, "upgrade", 7) || name_is(&name, "trailer", 7)) return 0;
            break;
        case 10:
            if (name_is(&name, "connection", 10)) {
                if (name_is(&value, "close", 5)) conn_close = true;
                else if (name_is(&value, "keep-alive", 10)) conn_keep_alive = true;
                else return 0;
            }
            break;
        case 14:
            if (name_is(&name, "content-length", 14)) {
                if (have_length || !parse_length(&value, &length)) return 0;
                have_length = true;
            }
            break;
        case 16:
            if (name_is(&name, "proxy-connection", 16)) return 0;
            break;
        case 17:
            if (name_is(&name, "transfer-encoding", 17)) return 0;
            break;
        default: break;
        }
    }
    if (conn_close && conn_keep_alive) return 0;

    /* the body, whole */
    if (length > max_body || len - i < length) return 0;
    out->body = (struct fast_span){buf + i, length};
    out->keep_alive = http11 ? !conn_close : conn_keep_alive;
    return i + length;
}
