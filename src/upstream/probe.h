/* probe: a small blocking HTTP/1.1 client (GET, and POST/DELETE for the
 * CLI and alert webhooks) for start-up checks (is a local
 * inference server answering, what models does it list). Plain http only,
 * with a hard deadline; never used on the request path. */
#ifndef AIPROXY_UPSTREAM_PROBE_H
#define AIPROXY_UPSTREAM_PROBE_H

#include <stddef.h>

/* GETs `url` (http://host:port/path). On success returns the HTTP status
 * and sets *body (heap, NUL-terminated, caller frees) and *len; returns -1
 * on connection failure, timeout, or a response over `max_body` bytes. */
int probe_get(const char *url, const char *bearer, int timeout_ms, size_t max_body, char **body,
              size_t *len);

/* The same for any method, with an optional JSON request body (`req_body`,
 * `req_len`; NULL for none): aiproxyctl's admin calls, alert webhooks.
 * Blocking: never call it from a worker's event loop. */
int probe_request(const char *method, const char *url, const char *bearer, const char *req_body,
                  size_t req_len, int timeout_ms, size_t max_body, char **body, size_t *len);

#endif
