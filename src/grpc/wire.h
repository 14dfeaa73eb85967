/* wire: the pieces of gRPC over HTTP/2 (grpc/doc/PROTOCOL-HTTP2.md) that
 * are not protobuf: the 5-byte message prefix, grpc-timeout, status codes
 * for the gateway's errors, and grpc-message's percent-encoding. Pure
 * functions, no I/O. */
#ifndef AIPROXY_GRPC_WIRE_H
#define AIPROXY_GRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "http/errors.h"

/* The gRPC status codes (grpc/doc/statuscodes.md). */
enum grpc_status {
    GRPC_OK = 0,
    GRPC_CANCELLED = 1,
    GRPC_UNKNOWN = 2,
    GRPC_INVALID_ARGUMENT = 3,
    GRPC_DEADLINE_EXCEEDED = 4,
    GRPC_NOT_FOUND = 5,
    GRPC_ALREADY_EXISTS = 6,
    GRPC_PERMISSION_DENIED = 7,
    GRPC_RESOURCE_EXHAUSTED = 8,
    GRPC_FAILED_PRECONDITION = 9,
    GRPC_ABORTED = 10,
    GRPC_OUT_OF_RANGE = 11,
    GRPC_UNIMPLEMENTED = 12,
    GRPC_INTERNAL = 13,
    GRPC_UNAVAILABLE = 14,
    GRPC_DATA_LOSS = 15,
    GRPC_UNAUTHENTICATED = 16,
};

/* A length-prefixed message: compressed flag (1 byte), length (4, big-endian). */
#define GRPC_PREFIX_LEN 5

enum grpc_frame_result {
    GRPC_FRAME_OK = 0,
    GRPC_FRAME_MALFORMED,  /* shorter than its prefix says, a flag other than 0/1, or
                              more than one message where one is expected */
    GRPC_FRAME_COMPRESSED, /* compressed, with an encoding other than identity */
    GRPC_FRAME_TOO_LARGE,  /* the prefix announces more than the limit */
};

/* Reads the single message of a unary (or server-streaming) request body:
 * exactly one framed message, nothing after it. `encoding` is the request's
 * grpc-encoding (NULL when absent): a message flagged compressed is taken as
 * it is only when that is "identity". `max_len` bounds the announced length.
 * On GRPC_FRAME_OK, `*msg`/`*msg_len` point into `body`. */
enum grpc_frame_result grpc_frame_read(const uint8_t *body, size_t len, const char *encoding,
                                       size_t max_len, const uint8_t **msg, size_t *msg_len);

/* Writes the prefix of an uncompressed message of `len` bytes. */
void grpc_frame_prefix(uint8_t out[GRPC_PREFIX_LEN], size_t len);

/* Parses a grpc-timeout value ("100m", "5S": 1 to 8 digits and a unit of
 * H M S m u n) into milliseconds, rounded up, at least 1. Returns 0, or -1
 * when the value is malformed. */
int grpc_timeout_parse(const char *s, int64_t *ms);

/* The status for an HTTP status of the REST API (400 INVALID_ARGUMENT,
 * 401 UNAUTHENTICATED, 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 504
 * DEADLINE_EXCEEDED...; see docs/grpc.md). */
enum grpc_status grpc_status_from_http(int http_status);
/* The status for one of the gateway's errors (by its HTTP status). */
enum grpc_status grpc_status_from_error(enum gw_error e);
/* The canonical name ("NOT_FOUND"), "UNKNOWN" for values out of range. */
const char *grpc_status_name(int code);

/* Percent-encodes `msg` for grpc-message: bytes outside 0x20-0x7E and '%'
 * become %XX. Writes a NUL-terminated string into `out` (truncated on a
 * whole escape to fit `cap`, which must be at least 1) and returns its
 * length. */
size_t grpc_percent_encode(const char *msg, char *out, size_t cap);
/* Decodes a grpc-message back (malformed escapes are kept as they are).
 * Same contract as grpc_percent_encode. */
size_t grpc_percent_decode(const char *msg, char *out, size_t cap);

/* The trailers "grpc-status: N\r\n" and, when `message` is non-empty,
 * "grpc-message: <percent-encoded, at most 1 KB>\r\n" (arena). */
char *grpc_trailers(struct arena *a, enum grpc_status status, const char *message);

#endif
