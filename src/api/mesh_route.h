/* mesh_route: the mesh's part of the request flow (SPEC section 5): which
 * peers a request may be forwarded to under the loop rules, the hop count
 * and route it then carries, and the route an answer went through. */
#ifndef AIPROXY_API_MESH_ROUTE_H
#define AIPROXY_API_MESH_ROUTE_H

#include <stddef.h>

#include "providers/provider.h"

struct http_request;
struct config_provider;

/* The peers (PROVIDER_MESH views) `req` may go to: none when the mesh is
 * off or the request has already made node.mesh.max_hops hops; never this
 * node nor a node the request already passed (x-aiproxy-via). Sets the hop
 * count and the via list a forwarded attempt carries (this node last).
 * The view is held until the request is freed. Returns an arena array of
 * *n entries, or NULL. */
const struct config_provider **mesh_route_peers(struct http_request *req, int *hops_out,
                                                const char **via_out, size_t *n);

/* The node ids the answer went through, origin first, comma-separated
 * (arena): this node alone; the route the serving peer reported (`relay`);
 * or, for a request that came from a peer, its via list and this node. */
const char *mesh_route_answer(struct http_request *req, const struct provider_relay *relay,
                              const char *via_out);

#endif
