/* cors: origin matching and the header text. */
#include "security/cors.h"

#include <ctype.h>
#include <string.h>

#include "config/config.h"
#include "core/arena.h"

#define CORS_DEFAULT_HEADERS "authorization, content-type, x-api-key, x-aiproxy-strategy"
#define CORS_EXPOSE "x-aiproxy-request-id, x-aiproxy-provider, x-aiproxy-node, " \
                    "x-ratelimit-limit-requests, x-ratelimit-remaining-requests, " \
                    "x-ratelimit-reset-requests, retry-after"
#define CORS_MAX_REQUEST_HEADERS 512

bool cors_origin_allowed(const struct config *cfg, const char *origin)
{
    if (!origin || !*origin || !cfg->security.cors_enabled) return false;
    for (size_t i = 0; i < cfg->security.n_cors_origins; i++) {
        const char *o = cfg->security.cors_origins[i];
        if (strcmp(o, "*") == 0 || strcasecmp(o, origin) == 0) return true;
    }
    return false;
}

/* Header values are echoed only when they cannot break the response head. */
static bool safe_value(const char *s, bool list_of_names)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (c < 0x20 || c >= 0x7f) return false;
        if (list_of_names && !(isalnum(c) || c == '-' || c == '_' || c == ',' || c == ' '))
            return false;
    }
    return n > 0 && n <= CORS_MAX_REQUEST_HEADERS;
}

char *cors_response_headers(struct arena *a, const char *origin)
{
    if (!safe_value(origin, false)) return NULL;
    return arena_printf(a, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n"
                           "Access-Control-Expose-Headers: " CORS_EXPOSE "\r\n", origin);
}

char *cors_preflight_headers(struct arena *a, const char *origin, const char *request_headers)
{
    if (!safe_value(origin, false)) return NULL;
    const char *allow = request_headers && safe_value(request_headers, true) ? request_headers
                                                                              : CORS_DEFAULT_HEADERS;
    return arena_printf(a, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n"
                           "Access-Control-Allow-Methods: GET, POST, DELETE, OPTIONS\r\n"
                           "Access-Control-Allow-Headers: %s\r\n"
                           "Access-Control-Max-Age: 600\r\n", origin, allow);
}
