/* cache_embed: the semantic cache's embedding call (SPEC section 7): the
 * request's text embedded with cache.semantic.embedding_model, routed like
 * any embeddings request (the plan's first candidates, through their
 * adapters), but on the side of the request: it is not an attempt of the
 * request, and its failure is a cache miss, never an error. */
#ifndef AIPROXY_API_CACHE_EMBED_H
#define AIPROXY_API_CACHE_EMBED_H

#include <stddef.h>
#include <stdint.h>

#include "core/money.h"

struct http_request;
struct embed_call;

/* vec: the embedding (arena of the request), NULL when the call failed;
 * cost: what it cost (0 when it failed before an answer). */
typedef void (*embed_done_cb)(void *arg, const float *vec, size_t dims, nanos_t cost);

/* Starts the call; NULL when it could not start (no provider serves the
 * model with embeddings): then `done` is not called. Otherwise `done` is
 * called exactly once, unless embed_cancel or the request's end comes
 * first. */
struct embed_call *embed_start(struct http_request *req, const char *model, const char *text,
                               size_t len, int64_t timeout_ms, embed_done_cb done, void *arg);
void embed_cancel(struct embed_call *ec); /* NULL is ignored */

#endif
