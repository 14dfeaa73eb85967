/* mesh_api: the mesh's HTTP side (SPEC section 5). On the mesh listener:
 * authenticating peers (node.mesh.secret, constant time), reading the hop
 * count and route they send, and POST /aiproxy/mesh/heartbeat. On the
 * client listener: GET /aiproxy/mesh/status (the standard's 5.4),
 * GET /aiproxy/mesh/metrics (every reachable node's exposition, labelled
 * node) and GET /v1/budget?scope=cluster. And this node's own heartbeat
 * message, for the heartbeat thread. */
#ifndef AIPROXY_API_MESH_API_H
#define AIPROXY_API_MESH_API_H

#include <stdbool.h>
#include <stddef.h>

struct http_request;
struct config;

/* Once at start: this run's boot id. */
void mesh_api_init(void);

/* A request on the mesh listener: checks the secret (401 when missing or
 * wrong: nothing else is done) and the mesh headers (400 when malformed),
 * and fills req->mesh_hops / mesh_via. Returns false when it answered. */
bool mesh_api_admit(struct http_request *req);

/* POST /aiproxy/mesh/heartbeat (mesh listener): learns the sender, answers
 * with this node's state. */
void mesh_api_heartbeat(struct http_request *req);

/* Every known peer as the status page shows it (a new JSON array). */
struct json_t *mesh_api_peers_json(void);

/* GET /aiproxy/mesh/status. */
void mesh_api_status(struct http_request *req);

/* GET /aiproxy/mesh/metrics: this node's exposition and every peer's that
 * answers within the deadline, each sample labelled node, plus
 * aiproxy_mesh_node_up per node. Answers asynchronously. */
void mesh_api_cluster_metrics(struct http_request *req);

/* GET /v1/budget?scope=cluster: each node's own provider spend (this one's
 * counters, the peers' as their last heartbeat said) and the sum. */
void mesh_api_cluster_budget(struct http_request *req);

/* This node's heartbeat message (mesh_self_cb of mesh/heartbeat.h). */
char *mesh_api_self_state(const struct config *cfg, size_t *len);

/* Appends the per-peer mesh series (aiproxy_mesh_*) to a metrics text
 * (realloc'ed; *len updated). */
char *mesh_api_metrics_append(const struct config *cfg, char *text, size_t *len);

#endif
