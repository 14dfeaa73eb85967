/* admin_dashboard: serves the embedded dashboard (assets/dashboard/, turned
 * into C arrays at build time by scripts/embed-assets.sh) and handles the
 * key-as-cookie sign-in. The page itself holds no data: its script reads
 * GET /aiproxy/admin/stats (admin, cookie accepted) every few seconds. */
#include "api/admin_dashboard.h"

#include <stdio.h>
#include <string.h>

#include "api/admission.h"
#include "config/config.h"
#include "http/server.h"
#include "obs/dashboard_assets.h"

#define KEY_MAX 512

/* Page headers: no caching, no framing, nothing loaded from elsewhere, and
 * no Referer that could carry anything out. */
#define PAGE_HEADERS                                                                              \
    "Cache-Control: no-store\r\n"                                                                 \
    "X-Content-Type-Options: nosniff\r\n"                                                         \
    "X-Frame-Options: DENY\r\n"                                                                   \
    "Referrer-Policy: no-referrer\r\n"                                                            \
    "Content-Security-Policy: default-src 'self'; img-src 'self' data:; "                         \
    "frame-ancestors 'none'; form-action 'self'\r\n"

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Copies the value of `name` from a "a=b&c=d" query, percent-decoded.
 * Returns false when absent, empty, too long or holding control bytes. */
static bool query_param(const char *q, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *s = q; s && *s;) {
        const char *amp = strchr(s, '&');
        size_t len = amp ? (size_t)(amp - s) : strlen(s);
        if (len > nl && strncmp(s, name, nl) == 0 && s[nl] == '=') {
            size_t n = 0;
            for (size_t i = nl + 1; i < len; i++) {
                char c = s[i];
                if (c == '+') c = ' ';
                if (c == '%' && i + 2 < len + 1 && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
                    c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
                    i += 2;
                }
                if ((unsigned char)c < 0x21 || c == 0x7f || n + 1 >= cap) return false;
                out[n++] = c;
            }
            out[n] = '\0';
            return n > 0;
        }
        s = amp ? amp + 1 : NULL;
    }
    return false;
}

/* The value of cookie DASHBOARD_COOKIE, or false. */
static bool cookie_key(const struct http_request *req, char *out, size_t cap)
{
    const char *c = http_header_get(req, "cookie");
    size_t nl = strlen(DASHBOARD_COOKIE);
    while (c && *c) {
        while (*c == ' ' || *c == ';') c++;
        size_t len = strcspn(c, ";");
        if (len > nl && strncmp(c, DASHBOARD_COOKIE, nl) == 0 && c[nl] == '=') {
            size_t vl = len - nl - 1;
            if (vl == 0 || vl >= cap) return false;
            memcpy(out, c + nl + 1, vl);
            out[vl] = '\0';
            for (size_t i = 0; i < vl; i++)
                if ((unsigned char)out[i] < 0x21 || out[i] == 0x7f) return false;
            return true;
        }
        c += len;
    }
    return false;
}

static bool has_credentials(const struct http_request *req)
{
    return http_header_get(req, "authorization") || http_header_get(req, "x-api-key");
}

static void present_key(struct http_request *req, const char *key)
{
    if (req->n_headers >= HTTP_MAX_HEADERS) return;
    struct http_header *h = &req->headers[req->n_headers++];
    h->name = "authorization";
    h->name_len = strlen(h->name);
    h->value = arena_printf(&req->arena, "Bearer %s", key);
    h->value_len = strlen(h->value);
}

void dashboard_cookie_auth(struct http_request *req)
{
    char key[KEY_MAX];
    if (!has_credentials(req) && cookie_key(req, key, sizeof key)) present_key(req, key);
}

static void respond_login(struct http_request *req, int status)
{
    http_respond(req, status, "text/html; charset=utf-8", PAGE_HEADERS, (const char *)dashboard_login_html,
                 dashboard_login_html_len);
}

void dashboard_page(struct http_request *req)
{
    char key[KEY_MAX];
    if (req->query && query_param(req->query, "key", key, sizeof key)) {
        /* Sign-in: check the key as the admin API would, then keep it in an
         * HttpOnly cookie and send the browser to the bare address. */
        req->n_headers = 0; /* only the key from the form counts */
        present_key(req, key);
        if (admission_authenticate(req, true, false, NULL) != ADMIT_OK) return;
        const char *h = arena_printf(&req->arena,
                                     "Location: /dashboard\r\n"
                                     "Set-Cookie: " DASHBOARD_COOKIE "=%s; Path=/; HttpOnly; "
                                     "SameSite=Strict; Max-Age=43200\r\n" PAGE_HEADERS, key);
        static const char body[] = "{\"status\":\"signed in\"}";
        http_respond(req, 303, "application/json", h, body, sizeof body - 1);
        return;
    }
    dashboard_cookie_auth(req);
    if (!has_credentials(req) && req->config->security.auth_enabled) {
        respond_login(req, 401);
        return;
    }
    if (admission_authenticate(req, true, false, NULL) != ADMIT_OK) return;
    http_respond(req, 200, "text/html; charset=utf-8", PAGE_HEADERS,
                 (const char *)dashboard_index_html, dashboard_index_html_len);
}

void dashboard_asset(struct http_request *req, const char *name)
{
    if (strcmp(name, "app.js") == 0)
        http_respond(req, 200, "text/javascript; charset=utf-8", PAGE_HEADERS,
                     (const char *)dashboard_app_js, dashboard_app_js_len);
    else if (strcmp(name, "app.css") == 0)
        http_respond(req, 200, "text/css; charset=utf-8", PAGE_HEADERS,
                     (const char *)dashboard_app_css, dashboard_app_css_len);
    else
        http_respond_error(req, GW_ERR_NOT_FOUND, "No such dashboard asset.", NULL);
}
