/* provider: the adapter interface (DESIGN.md). A provider type is a table
 * of pure functions that turn the OpenAI-shaped call into the provider's
 * request (URL, headers, body) and, for non-OpenAI wire formats, its
 * answers back into the OpenAI shape, whole or one stream event at a time.
 * No adapter touches a socket; everything they allocate comes from the
 * call's arena. */
#ifndef AIPROXY_PROVIDERS_PROVIDER_H
#define AIPROXY_PROVIDERS_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/scan.h"
#include "core/arena.h"
#include "core/money.h"
#include "core/sse.h"

struct config_provider;
struct config_model;
struct anthropic_passthrough;

enum api_kind { API_CHAT, API_COMPLETIONS, API_EMBEDDINGS, API_IMAGES };

/* What the client asked for, already validated (OpenAI shape). */
struct provider_call {
    enum api_kind kind;
    const char *body; /* the client's JSON body, NUL-terminated */
    size_t body_len;
    const struct req_facts *facts;
    const struct config_provider *provider;
    const struct config_model *model;
    /* The base URL of this attempt (one of the provider's `endpoints`);
     * NULL means provider->endpoint. Adapters read it through
     * provider_call_endpoint() (providers/internal.h). */
    const char *endpoint;
    struct arena *arena; /* for everything an adapter allocates */
    const char *request_id; /* for ids the adapter must invent */
    /* Mesh peers only: the hop count and the node ids to send along
     * (x-aiproxy-hops, x-aiproxy-via), this node included. */
    int mesh_hops;
    const char *mesh_via;
    /* A /v1/messages client's Anthropic-only headers and fields, for
     * Anthropic providers (providers/anthropic_native.h); NULL otherwise. */
    const struct anthropic_passthrough *anthropic;
};

/* The provider request prepare builds (arena-owned). */
struct provider_request {
    char *url;
    char *headers; /* "Name: value\r\n" lines */
    char *body;
    size_t body_len;
    bool stream;   /* the answer will be an event stream */
};

/* What a mesh peer said about an answer it served: its x-aiproxy object,
 * taken out of the answer so that this node's own replaces it. */
struct provider_relay {
    bool present;
    nanos_t cost;         /* what the serving node paid its provider */
    const char *node;     /* the serving node (arena) */
    const char *provider; /* the provider there (arena) */
    const char *route;    /* JSON array of node ids as the peer wrote it (arena) */
};

struct provider_usage {
    bool present;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cached_tokens;      /* of prompt_tokens: read from the provider's prompt cache */
    int64_t cache_write_tokens; /* of prompt_tokens: written to it */
    struct provider_relay relay; /* mesh peers (finish) */
};

/* A provider's complete answer, as received. */
struct provider_response {
    int status;
    const char *content_type; /* may be NULL */
    const char *body;
    size_t len;
};

/* One attempt's stream translation state (arena-owned, zeroed before the
 * first event). Adapters keep their own state behind `state`. */
struct provider_stream {
    void *state;
    struct provider_usage usage; /* filled as the provider reports it */
    bool done;                   /* the provider signalled the end */
    struct provider_relay relay; /* mesh peers: from the last chunk */
    char error[256];             /* set with a -1 return: why the event is an error */
};

/* Receives one translated OpenAI chunk: a complete JSON object, without
 * the "data: " framing. */
typedef void (*provider_emit_cb)(void *ctx, const char *json, size_t len);

struct provider_ops {
    const char *type;
    /* How the provider frames its stream. */
    enum sse_mode stream_mode;

    /* Builds the upstream request. Returns 0, or -1 with a message in
     * `err`: the request cannot be expressed for this provider (a 400 when
     * no other candidate can take it). */
    int (*prepare)(const struct provider_call *call, struct provider_request *out, char *err,
                   size_t err_cap);

    /* Translates a 2xx answer into the OpenAI shape for call->kind and fills
     * `usage` when the provider reported it. Returns 0 with `*out` (arena),
     * or -1 with `err` when the answer is not a valid one (an error inside
     * a 200, an unexpected shape): the gateway fails over. NULL: 2xx bodies
     * are OpenAI-shaped already. */
    int (*finish)(const struct provider_call *call, const struct provider_response *resp,
                  char **out, size_t *out_len, struct provider_usage *usage, char *err,
                  size_t err_cap);

    /* Translates one stream event into zero or more OpenAI chunks (emit).
     * Sets st->usage when usage arrives and st->done at the provider's end
     * of stream. Returns 0, or -1 with st->error set when the event is an
     * error. NULL: events are OpenAI chunks already. */
    int (*stream_event)(const struct provider_call *call, struct provider_stream *st,
                        const struct sse_event *ev, provider_emit_cb emit, void *emit_ctx);

    /* Whether a non-2xx status is worth failing over (true) or is the
     * client's fault and passed through (false). NULL: SPEC's rule (400,
     * 413, 422 pass through; everything else fails over). */
    bool (*retryable_status)(int status);

    /* Turns a non-2xx error body into an OpenAI-shaped error body for
     * pass-through (arena). NULL or -1: pass the body when it is already
     * OpenAI-shaped, else wrap. */
    int (*error_body)(const struct provider_call *call, const struct provider_response *resp,
                      char **out, size_t *out_len);
};

/* The ops for a provider's type; NULL if no adapter exists for it. */
const struct provider_ops *provider_ops_for(const struct config_provider *p);

#endif
