/* proxy_cache: the response cache's place in the request flow (SPEC
 * section 7); see proxy_cache.c. For proxy.c only. */
#ifndef AIPROXY_API_PROXY_CACHE_H
#define AIPROXY_API_PROXY_CACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/jsonw.h"
#include "core/money.h"

struct proxy;
struct resp_facts;

/* Before admission: decides whether this request reads and writes the
 * cache and computes its key. Returns false when it answered the request
 * (a 400 for a header it cannot read). */
bool proxy_cache_prepare(struct proxy *px);

/* After admission: answers from the cache (exact, then semantic), or
 * carries on with proxy_start_next on a miss (possibly later: the Redis
 * read and the embedding are asynchronous). */
void proxy_cache_begin(struct proxy *px);

/* "x-aiproxy-cache: miss\r\n" for an answer that consulted the cache, else "". */
const char *proxy_cache_header(const struct proxy *px);
/* ,"cache":{...} in the x-aiproxy object, when consulted. */
void proxy_cache_meta(const struct proxy *px, struct jsonw *w);
/* What the cache's own work cost (the semantic step's embedding). */
nanos_t proxy_cache_cost(const struct proxy *px);

/* A whole answer that was served (OpenAI shape, no x-aiproxy; `rf` its
 * scan): kept when the request may write the cache. */
void proxy_cache_store_whole(struct proxy *px, const char *body, size_t len,
                             const struct resp_facts *rf);
/* Each OpenAI chunk relayed to the client, and the stream's proper end. */
void proxy_cache_stream_chunk(struct proxy *px, const char *json, size_t len);
void proxy_cache_store_stream(struct proxy *px);

/* The client left: stop the cache's own calls. */
void proxy_cache_abort(struct proxy *px);

#endif
