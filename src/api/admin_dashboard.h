/* admin_dashboard: GET /dashboard, the operator's web page (HTML, CSS and
 * JS built into the binary from assets/dashboard/, no CDN). The page needs
 * the admin key; a browser can present it as a cookie, which
 * GET /dashboard?key=KEY sets (then redirects to /dashboard, so the key
 * leaves the address bar). The key is never written into a page. */
#ifndef AIPROXY_API_ADMIN_DASHBOARD_H
#define AIPROXY_API_ADMIN_DASHBOARD_H

#include <stdbool.h>

struct http_request;

#define DASHBOARD_COOKIE "aiproxy_key"

/* For GET routes that accept the cookie (the page and its data): when the
 * request has no Authorization or x-api-key header, the cookie's key is
 * presented as a bearer token. */
void dashboard_cookie_auth(struct http_request *req);

/* GET /dashboard (does its own authentication). */
void dashboard_page(struct http_request *req);
/* GET /dashboard/<asset>: the static script and style (no data, no key). */
void dashboard_asset(struct http_request *req, const char *name);

#endif
