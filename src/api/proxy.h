/* proxy: the inference endpoints' flow (see proxy.c). */
#ifndef AIPROXY_API_PROXY_H
#define AIPROXY_API_PROXY_H

#include "providers/provider.h"

struct http_request;

/* Validates the body, plans candidates and serves the request through
 * them, failing over as SPEC section 3 says. Answers asynchronously. */
void proxy_handle(struct http_request *req, enum api_kind kind);

#endif
