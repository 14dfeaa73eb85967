/* fast_response: the one-pass parser of plain upstream answers (see
 * fast_response.h). Every check that fails means "not mine" (0), never an
 * error: http-parser then reads the same bytes and gives the answer. */
#include "upstream/fast_response.h"

#include <string.h>

/* tchar (RFC 9110 5.6.2) */
static const unsigned char is_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

/* Bytes taken in a header value or reason phrase: visible ASCII, space, tab. */
static const unsigned char is_text[256] = {
    ['\t'] = 1, [' ' ... '~'] = 1,
};

static bool lower_is(const char *p, size_t n, const char *lower, size_t ln)
{
    if (n != ln) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
        if (c != (unsigned char)lower[i]) return false;
    }
    return true;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

size_t fast_response_parse(const char *buf, size_t len, size_t max_head, struct fast_answer *out)
{
    const unsigned char *b = (const unsigned char *)buf;
    size_t limit = len < max_head ? len : max_head;

    /* status-line: "HTTP/1.x NNN reason\r\n" */
    if (limit < 15 || memcmp(buf, "HTTP/1.", 7) != 0) return 0;
    bool http11;
    if (b[7] == '1') http11 = true;
    else if (b[7] == '0') http11 = false;
    else return 0;
    if (b[8] != ' ' || !is_digit(b[9]) || !is_digit(b[10]) || !is_digit(b[11]) || b[12] != ' ')
        return 0;
    int status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    /* no body or another head follows: http-parser's business */
    if (status < 200 || status > 599 || status == 204 || status == 304) return 0;
    size_t i = 13;
    while (i < limit && is_text[b[i]]) i++;
    if (i + 1 >= limit || b[i] != '\r' || b[i + 1] != '\n') return 0;
    i += 2;

    memset(out, 0, sizeof *out);
    out->status = status;
    bool have_length = false, conn_close = false, conn_keep_alive = false;
    size_t length = 0;
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
        const char *name = buf + ns;
        size_t name_n = i - ns;
        i++;
        while (i < limit && (b[i] == ' ' || b[i] == '\t')) i++;
        size_t vs = i;
        while (i < limit && is_text[b[i]]) i++;
        if (i + 1 >= limit || b[i] != '\r' || b[i + 1] != '\n') return 0;
        const char *value = buf + vs;
        size_t value_n = i - vs;
        i += 2;
        if (value_n == 0 || value[value_n - 1] == ' ' || value[value_n - 1] == '\t') return 0;

        switch (name_n) {
        case 7:
            if (lower_is(name, name_n, "upgrade", 7) || lower_is(name, name_n, "trailer", 7))
                return 0;
            break;
        case 10:
            if (lower_is(name, name_n, "connection", 10)) {
                if (lower_is(value, value_n, "close", 5)) conn_close = true;
                else if (lower_is(value, value_n, "keep-alive", 10)) conn_keep_alive = true;
                else return 0;
            }
            break;
        case 11:
            if (lower_is(name, name_n, "retry-after", 11)) {
                out->retry_after = value;
                out->retry_after_len = value_n;
            }
            break;
        case 12:
            if (lower_is(name, name_n, "content-type", 12)) {
                out->content_type = value;
                out->content_type_len = value_n;
            }
            break;
        case 14:
            if (lower_is(name, name_n, "content-length", 14)) {
                if (have_length || value_n > 15) return 0;
                length = 0;
                for (size_t k = 0; k < value_n; k++) {
                    if (!is_digit((unsigned char)value[k])) return 0;
                    length = length * 10 + (size_t)(value[k] - '0');
                }
                have_length = true;
            }
            break;
        case 16:
            if (lower_is(name, name_n, "proxy-connection", 16)) return 0;
            break;
        case 17:
            if (lower_is(name, name_n, "transfer-encoding", 17)) return 0;
            break;
        default: break;
        }
    }
    /* without a length the body runs to the close: http-parser's business */
    if (!have_length || (conn_close && conn_keep_alive)) return 0;
    if (len - i < length) return 0;
    out->body = buf + i;
    out->body_len = length;
    out->keep_alive = http11 ? !conn_close : conn_keep_alive;
    return i + length;
}
