/* cors: Cross-Origin Resource Sharing for browsers (security.cors). Only
 * origins listed in allowed_origins ("*" allows any) get Access-Control-*
 * headers, on preflights and on normal responses; other origins get
 * nothing, so the browser blocks them. CORS is on when allowed_origins is
 * non-empty, unless `enabled: false`. Pure: builds header text. */
#ifndef AIPROXY_SECURITY_CORS_H
#define AIPROXY_SECURITY_CORS_H

#include <stdbool.h>

struct arena;
struct config;

/* True when `origin` (the Origin header; NULL when absent) may read responses. */
bool cors_origin_allowed(const struct config *cfg, const char *origin);

/* Headers for a normal response to an allowed origin ("Name: value\r\n"...),
 * arena-owned. */
char *cors_response_headers(struct arena *a, const char *origin);

/* Headers for a preflight answer to an allowed origin: allowed methods,
 * the requested headers when they are plain header names (else a default
 * list), max age. Arena-owned. */
char *cors_preflight_headers(struct arena *a, const char *origin, const char *request_headers);

#endif
