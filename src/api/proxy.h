/* proxy: the inference endpoints' flow (see proxy.c). */
#ifndef AIPROXY_API_PROXY_H
#define AIPROXY_API_PROXY_H

#include "providers/provider.h"

struct http_request;

/* Validates the body, plans candidates and serves the request through
 * them, failing over as SPEC section 3 says. Answers asynchronously. */
void proxy_handle(struct http_request *req, enum api_kind kind);

struct inbound_ops;

/* The same flow for a client-facing format other than OpenAI's: the body is
 * translated to an OpenAI chat request, served, and the answer (whole or
 * streamed) and every error translated back. */
void proxy_handle_inbound(struct http_request *req, const struct inbound_ops *ops);

/* Serves a request its format already translated to an OpenAI chat body
 * (`chat_body`, in the request's arena) and that keeps per-request state
 * (the Responses API): the ops' answer side gets `ctx`; `done` runs once
 * the answer was translated in full (before its last bytes leave) with
 * `done_arg`. */
typedef void (*proxy_translated_cb)(struct http_request *req, void *arg);
void proxy_handle_translated(struct http_request *req, const struct inbound_ops *ops, void *ctx,
                             char *chat_body, size_t len, bool stream, proxy_translated_cb done,
                             void *done_arg);

struct anthropic_passthrough;

/* The client's anthropic-version, anthropic-beta and pass-through fields
 * of an Anthropic-format request (arena), read before its body is
 * replaced; NULL when it has none. */
struct anthropic_passthrough *proxy_anthropic_passthrough(struct http_request *req);

/* The same for a format whose body is another endpoint's request once
 * translated (`kind`: API_CHAT or API_EMBEDDINGS), with the transport's
 * deadline `timeout_ms` (gRPC's grpc-timeout; 0: none), which bounds the
 * whole request as predict's routing.timeout does. */
void proxy_handle_inbound_kind(struct http_request *req, const struct inbound_ops *ops,
                               enum api_kind kind, int64_t timeout_ms);

/* Makes every error answer of this request use `ops`'s error shape. */
void proxy_set_error_format(struct http_request *req, const struct inbound_ops *ops);

#endif
