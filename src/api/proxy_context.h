/* proxy_context: the context delta buffer in the request flow (SPEC
 * section 8); see proxy_context.c. For proxy.c and proxy_cache.c only. */
#ifndef AIPROXY_API_PROXY_CONTEXT_H
#define AIPROXY_API_PROXY_CONTEXT_H

#include <stdbool.h>

#include "core/jsonw.h"

struct proxy;

/* Before the body is scanned: with X-Inject-Context: true, the caller's
 * pending changes of X-Context-Project (default "default") are appended
 * to the system message of the (OpenAI chat) body, which is replaced.
 * Returns false when it answered the request (a 400: a bad project name,
 * a body whose messages cannot take the block). */
bool proxy_context_inject(struct proxy *px);

/* The answer succeeded (whole, a stream that ended properly, or a cache
 * hit): what was injected counts as seen. Once per request. */
void proxy_context_done(struct proxy *px);

/* ,"context":{...} in x-aiproxy, when the request asked for it. */
void proxy_context_meta(const struct proxy *px, struct jsonw *w);

#endif
