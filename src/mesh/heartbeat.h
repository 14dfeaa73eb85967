/* heartbeat: the mesh's heartbeat thread (SPEC section 5). A thread of its
 * own, with its own event loop, DNS and upstream pool (like the health
 * checks), sends each peer a POST /aiproxy/mesh/heartbeat carrying this
 * node's state, authenticated with node.mesh.secret, every
 * mesh_heartbeat_period_ms; the answer is the peer's state (one round trip
 * tells both sides about each other). Results go to mesh/peers.h, which
 * keeps statuses and the routing view. */
#ifndef AIPROXY_MESH_HEARTBEAT_H
#define AIPROXY_MESH_HEARTBEAT_H

#include <stddef.h>

struct config;

/* Builds this node's heartbeat message (JSON, malloc'ed; *len its length).
 * Supplied by the daemon, which knows the live figures. */
typedef char *(*mesh_self_cb)(const struct config *cfg, size_t *len);

/* Starts the thread with `cfg` (a reference is taken). Returns 0, or -1. */
int mesh_heartbeat_start(struct config *cfg, mesh_self_cb self);
/* Hands the thread a new snapshot (reload); any thread. */
void mesh_heartbeat_set_config(struct config *cfg);
/* Cancels heartbeats in flight, stops and joins the thread. Idempotent. */
void mesh_heartbeat_stop(void);

#endif
