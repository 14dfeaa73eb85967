/* inbound: client-facing wire formats other than OpenAI's (the Anthropic
 * Messages API at POST /v1/messages, the standard's POST /aiproxy/predict).
 * A request in such a format is translated to an OpenAI chat request, served
 * by the normal flow through any provider, and its answer translated back.
 * Pure functions, no I/O; everything comes from the given arena. */
#ifndef AIPROXY_PROVIDERS_INBOUND_H
#define AIPROXY_PROVIDERS_INBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

/* Receives translated bytes for the client: complete SSE events with
 * their framing ("event: x\ndata: {...}\n\n"). */
typedef void (*inbound_emit_cb)(void *ctx, const char *bytes, size_t len);

struct inbound_error {
    char message[256];
    char param[64]; /* the field at fault, "" when none */
    bool invalid_json;
};

/* Per-request routing options some formats carry (predict's `routing`). */
struct inbound_routing {
    char strategy[32];     /* "" when not given */
    int64_t max_cost_nanos; /* -1 when not given */
    int64_t timeout_ms;     /* 0 when not given */
};

struct inbound_ops {
    const char *name; /* "anthropic", "predict" */

    /* The client's body -> an OpenAI chat completions body (arena), valid
     * for scan_request(SCAN_CHAT). `stream` tells whether the client asked
     * for a stream. Returns 0, or -1 with `err` (a 400 for the client). */
    int (*request_to_openai)(struct arena *a, const char *body, size_t len, char **out,
                             size_t *out_len, bool *stream, struct inbound_routing *routing,
                             struct inbound_error *err);

    /* A whole OpenAI chat completion (it carries the "x-aiproxy" object)
     * -> the client's response body. `ctx` is the request's translator
     * context (NULL for formats that need none: see proxy_handle_inbound_ctx).
     * Returns 0, or -1 when it cannot be translated (the gateway answers 502). */
    int (*response_from_openai)(struct arena *a, void *ctx, const char *body, size_t len,
                                char **out, size_t *out_len);

    /* Streams. stream_begin returns the translator's state (arena).
     * stream_chunk gets each OpenAI chunk JSON in order, the last one
     * carrying usage and "x-aiproxy" (choices: []); stream_end is called
     * once after it (the OpenAI stream's [DONE]); stream_error when the
     * stream breaks (an OpenAI error object JSON). Each emits zero or more
     * complete events. NULL stream_begin: the format has no streams. */
    void *(*stream_begin)(struct arena *a, const char *request_id, void *ctx);
    void (*stream_chunk)(void *state, const char *json, size_t len, inbound_emit_cb emit,
                         void *ctx);
    void (*stream_end)(void *state, inbound_emit_cb emit, void *ctx);
    void (*stream_error)(void *state, const char *error_json, size_t len, inbound_emit_cb emit,
                         void *ctx);

    /* An OpenAI-shaped error body -> the client's error body (arena). */
    int (*error_from_openai)(struct arena *a, int status, const char *body, size_t len,
                             char **out, size_t *out_len);

    /* For formats that are not JSON over HTTP (gRPC): the content type of
     * answers and streams (NULL: application/json, text/event-stream), the
     * trailers that end a whole answer (NULL: none) and those that end a
     * stream (NULL op: ok_trailers), which after stream_error carry the
     * error (arena string from the state). */
    const char *content_type;
    const char *ok_trailers;
    const char *(*stream_trailers)(void *state);
};

extern const struct inbound_ops inbound_anthropic_ops;
extern const struct inbound_ops inbound_predict_ops;
/* The gRPC service's methods (grpc/translate.c): bodies are protobuf
 * messages, answers framed protobuf messages. */
extern const struct inbound_ops grpc_chat_ops;
extern const struct inbound_ops grpc_chat_stream_ops;
extern const struct inbound_ops grpc_embed_ops;
extern const struct inbound_ops grpc_predict_ops;

#endif
