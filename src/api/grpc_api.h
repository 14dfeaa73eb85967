/* grpc_api: the gRPC service on the client listener (SPEC section 10):
 * aiproxy.v1.Gateway (Chat, ChatStream, Embed, Predict, ListModels) and
 * grpc.health.v1.Health (Check, Watch), over HTTP/2. A call is routed by
 * its path, its one message read from the body, its key taken from the
 * `authorization` metadata, and it then runs the REST endpoint's flow
 * (api/proxy.c, api/models.c) with grpc/translate.c as its wire format.
 * Every error of that flow leaves as Trailers-Only with grpc-status and
 * grpc-message (the REST message). See docs/grpc.md. */
#ifndef AIPROXY_API_GRPC_API_H
#define AIPROXY_API_GRPC_API_H

#include <stdbool.h>

struct http_request;

/* Whether the request is a gRPC call: content-type application/grpc
 * (with or without a "+proto" or ";..." suffix). */
bool grpc_api_is_grpc(const struct http_request *req);

/* For a gRPC call on HTTP/2: makes every error answer of the request a
 * gRPC status (req->error_responder). Nothing for other requests. */
void grpc_api_prepare(struct http_request *req);

/* Serves a gRPC call (grpc_api_is_grpc). Over HTTP/1.1 the answer is an
 * HTTP 415: gRPC needs HTTP/2. */
void grpc_api_handle(struct http_request *req);

#endif
