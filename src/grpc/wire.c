/* wire: gRPC message framing, grpc-timeout, status codes and grpc-message
 * encoding (see wire.h). */
#include "grpc/wire.h"

#include <stdio.h>
#include <string.h>

enum grpc_frame_result grpc_frame_read(const uint8_t *body, size_t len, const char *encoding,
                                       size_t max_len, const uint8_t **msg, size_t *msg_len)
{
    if (len < GRPC_PREFIX_LEN) return GRPC_FRAME_MALFORMED;
    uint8_t flag = body[0];
    uint32_t n = (uint32_t)body[1] << 24 | (uint32_t)body[2] << 16 | (uint32_t)body[3] << 8 |
                 (uint32_t)body[4];
    if (flag > 1) return GRPC_FRAME_MALFORMED;
    /* The flag is judged before the length: a compressed message gets the
     * answer that says why, whatever its size. */
    if (flag == 1 && !(encoding && strcmp(encoding, "identity") == 0)) return GRPC_FRAME_COMPRESSED;
    if (n > max_len) return GRPC_FRAME_TOO_LARGE;
    if ((size_t)n != len - GRPC_PREFIX_LEN) return GRPC_FRAME_MALFORMED;
    *msg = body + GRPC_PREFIX_LEN;
    *msg_len = n;
    return GRPC_FRAME_OK;
}

void grpc_frame_prefix(uint8_t out[GRPC_PREFIX_LEN], size_t len)
{
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
}

int grpc_timeout_parse(const char *s, int64_t *ms)
{
    if (!s) return -1;
    int64_t v = 0;
    size_t digits = 0;
    while (s[digits] >= '0' && s[digits] <= '9') {
        if (digits == 8) return -1; /* TimeoutValue is at most 8 digits */
        v = v * 10 + (s[digits] - '0');
        digits++;
    }
    if (digits == 0 || s[digits] == '\0' || s[digits + 1] != '\0') return -1;
    int64_t out;
    switch (s[digits]) {
    case 'H': out = v * 3600 * 1000; break;
    case 'M': out = v * 60 * 1000; break;
    case 'S': out = v * 1000; break;
    case 'm': out = v; break;
    case 'u': out = (v + 999) / 1000; break;
    case 'n': out = (v + 999999) / 1000000; break;
    default: return -1;
    }
    *ms = out < 1 ? 1 : out;
    return 0;
}

enum grpc_status grpc_status_from_http(int st)
{
    switch (st) {
    case 200: return GRPC_OK;
    case 400:
    case 415:
    case 422: return GRPC_INVALID_ARGUMENT;
    case 401: return GRPC_UNAUTHENTICATED;
    case 403: return GRPC_PERMISSION_DENIED;
    case 404: return GRPC_NOT_FOUND;
    case 405:
    case 501: return GRPC_UNIMPLEMENTED;
    case 408:
    case 504: return GRPC_DEADLINE_EXCEEDED;
    case 409: return GRPC_ABORTED;
    case 413:
    case 429:
    case 431: return GRPC_RESOURCE_EXHAUSTED;
    case 499: return GRPC_CANCELLED;
    case 502:
    case 503: return GRPC_UNAVAILABLE;
    case 500: return GRPC_INTERNAL;
    default: return st >= 500 ? GRPC_INTERNAL : GRPC_UNKNOWN;
    }
}

enum grpc_status grpc_status_from_error(enum gw_error e)
{
    return grpc_status_from_http(gw_error_status(e));
}

const char *grpc_status_name(int code)
{
    static const char *const names[] = {
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    return code >= 0 && code < (int)(sizeof names / sizeof names[0]) ? names[code] : "UNKNOWN";
}

size_t grpc_percent_encode(const char *msg, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        bool plain = *p >= 0x20 && *p <= 0x7e && *p != '%';
        size_t need = plain ? 1 : 3;
        if (n + need >= cap) break;
        if (plain) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    return n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

size_t grpc_percent_decode(const char *msg, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = msg; *p && n + 1 < cap; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0) {
            out[n++] = (char)(hi * 16 + lo);
            p += 2;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return n;
}

char *grpc_trailers(struct arena *a, enum grpc_status status, const char *message)
{
    if (!message || !*message) return arena_printf(a, "grpc-status: %d\r\n", (int)status);
    char enc[1024];
    grpc_percent_encode(message, enc, sizeof enc);
    return arena_printf(a, "grpc-status: %d\r\ngrpc-message: %s\r\n", (int)status, enc);
}
