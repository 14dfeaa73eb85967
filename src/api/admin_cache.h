/* admin_cache: the response cache's operator endpoint (SPEC section 7):
 * DELETE /aiproxy/admin/cache empties the cache, or the part of it one
 * model or one caller scope owns (admin role; dispatch checks it). */
#ifndef AIPROXY_API_ADMIN_CACHE_H
#define AIPROXY_API_ADMIN_CACHE_H

struct http_request;

/* Query: model=NAME (the resolved model), and one of tenant=NAME,
 * key=ID or scope=RAW ("t:<tenant>", "k:<key id>", "*"); none clears
 * everything. Clears this node's memory and, with backend redis, the
 * shared entries, then answers 200 {"cleared":{"memory":N,"redis":M|null},
 * "model","scope","enabled"}; 400 on a bad or unknown parameter; 503
 * (store_unavailable) when Redis does not answer, after the local part
 * was cleared. */
void admin_cache_clear(struct http_request *req);

#endif
