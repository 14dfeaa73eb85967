/* errors: the one table of gateway errors (STYLE rule 7): each row gives the
 * HTTP status, OpenAI's error `type` and `code`. Every error a client sees
 * comes from here, in OpenAI's shape. */
#ifndef AIPROXY_HTTP_ERRORS_H
#define AIPROXY_HTTP_ERRORS_H

#include <stddef.h>

/*      name                 status type                      code */
#define GW_ERROR_MAP(X)                                                                    \
    X(BAD_REQUEST,           400, "invalid_request_error", "invalid_request_error")        \
    X(INVALID_JSON,          400, "invalid_request_error", "invalid_json")                 \
    X(INVALID_API_KEY,       401, "invalid_request_error", "invalid_api_key")              \
    X(FORBIDDEN,             403, "invalid_request_error", "permission_denied")            \
    X(NOT_FOUND,             404, "invalid_request_error", "not_found")                    \
    X(MODEL_NOT_FOUND,       404, "invalid_request_error", "model_not_found")              \
    X(METHOD_NOT_ALLOWED,    405, "invalid_request_error", "method_not_allowed")           \
    X(REQUEST_TIMEOUT,       408, "invalid_request_error", "request_timeout")              \
    X(REQUEST_TOO_LARGE,     413, "invalid_request_error", "request_too_large")            \
    X(HEADERS_TOO_LARGE,     431, "invalid_request_error", "headers_too_large")            \
    X(UNSUPPORTED_MEDIA,     415, "invalid_request_error", "unsupported_media_type")       \
    X(RATE_LIMITED,          429, "rate_limit_error",      "rate_limit_exceeded")          \
    X(BUDGET_EXCEEDED,       429, "insufficient_quota",    "budget_exceeded")              \
    X(INTERNAL,              500, "server_error",          "internal_error")               \
    X(NOT_IMPLEMENTED,       501, "invalid_request_error", "not_implemented")              \
    X(UPSTREAM,              502, "server_error",          "upstream_error")               \
    X(UNAVAILABLE,           503, "server_error",          "service_unavailable")          \
    X(STORE_UNAVAILABLE,     503, "server_error",          "store_unavailable")            \
    X(TIMEOUT,               504, "server_error",          "timeout")

enum gw_error {
#define X(name, status, type, code) GW_ERR_##name,
    GW_ERROR_MAP(X)
#undef X
};

int gw_error_status(enum gw_error e);

/* Writes {"error":{"message":..,"type":..,"param":..,"code":..}} into buf.
 * `param` may be NULL (JSON null). Returns the length (truncated to fit;
 * buf needs at least 128 bytes). */
size_t gw_error_body(enum gw_error e, const char *message, const char *param, char *buf,
                     size_t cap);

#endif
