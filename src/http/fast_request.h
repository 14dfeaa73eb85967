/* fast_request: the common HTTP/1.1 request, parsed in one pass.
 *
 * Most requests a gateway sees are alike: a known method, an origin-form
 * target, a few plain headers, a Content-Length body, all in one read. For
 * those, this parser finds the whole message in place (pointers into the
 * input, nothing copied) at a fraction of http-parser's cost per byte.
 * Anything else is not its business: a message it does not take whole (a
 * part missing, chunked, Upgrade, Expect, obs-fold, a byte outside plain
 * ASCII, a second Content-Length, too many or too large headers...) is
 * left to http-parser, which gives the full rules and errors. It takes only
 * messages http-parser reads the same way (fuzz_fast_request checks that).
 * Pure: no I/O, no allocation. */
#ifndef AIPROXY_HTTP_FAST_REQUEST_H
#define AIPROXY_HTTP_FAST_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "http/server.h" /* HTTP_MAX_HEADERS, enum http_method_kind */

struct fast_span {
    const char *p;
    size_t n;
};

struct fast_request {
    enum http_method_kind method;
    const char *method_name;  /* "GET", "POST", ... */
    struct fast_span target;  /* the request-target as sent */
    struct fast_span names[HTTP_MAX_HEADERS], values[HTTP_MAX_HEADERS];
    size_t n_headers;
    struct fast_span body;    /* Content-Length bytes (n 0 without one) */
    bool keep_alive;
};

/* Parses the message at the start of buf[0, len). Returns the bytes it
 * takes (head and body) with *out filled, or 0 when the message is not one
 * for this parser (not whole in the buffer, or not plain): the caller then
 * gives the same bytes to http-parser. Heads longer than max_head or bodies
 * longer than max_body are left to it too. */
size_t fast_request_parse(const char *buf, size_t len, size_t max_head, size_t max_body,
                          struct fast_request *out);

#endif
