/* fast_response: the common upstream answer, parsed in one pass.
 *
 * Most answers a provider sends to a whole (non-streaming) request are
 * alike: "HTTP/1.1 200 OK", a few plain headers, a Content-Length body, all
 * in one read. For those this parser finds the whole message in place
 * (pointers into the input) at a fraction of http-parser's cost. Anything
 * else (not whole in the buffer, chunked or read-until-close bodies, 1xx,
 * 204, 304, answers to HEAD, bytes outside plain ASCII in the head, a
 * second Content-Length, a head past the limit...) is left to http-parser,
 * which reads the same bytes with its full rules. It takes only messages
 * http-parser reads the same way (fuzz_fast_response checks that).
 * Pure: no I/O, no allocation. */
#ifndef AIPROXY_UPSTREAM_FAST_RESPONSE_H
#define AIPROXY_UPSTREAM_FAST_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

struct fast_answer {
    int status;
    const char *content_type; /* the last such header's value, or NULL */
    size_t content_type_len;
    const char *retry_after;  /* likewise */
    size_t retry_after_len;
    const char *body;
    size_t body_len;
    bool keep_alive;
};

/* Parses the answer at the start of buf[0, len). Returns the bytes it
 * takes (head and body) with *out filled, or 0 when the answer is not one
 * for this parser: the caller then gives the same bytes to http-parser. */
size_t fast_response_parse(const char *buf, size_t len, size_t max_head, struct fast_answer *out);

#endif
