/* peers: this node's table of mesh peers and the routing view built from it
 * (SPEC section 5). Peers come from node.mesh.peers and --peers (by mesh
 * address; their ids are learned from their answers), from the peer lists
 * other nodes send in their heartbeats, and from nodes that send us a
 * heartbeat. Each has a status:
 *   connecting  no heartbeat has succeeded yet;
 *   healthy     one has succeeded within node.mesh.peer_timeout;
 *   unhealthy   none has for peer_timeout (it is still sent heartbeats and
 *               comes back by itself when one succeeds).
 * Every healthy peer becomes a provider of type PROVIDER_MESH named
 * "mesh:<id>" serving the models it advertised, in an immutable,
 * reference-counted view the request path takes (mesh_view_acquire) and
 * hands to the router, which ranks peers like providers.
 * The table is process-wide, behind one mutex: it changes a few times per
 * heartbeat interval, and requests only take the view's pointer under it. */
#ifndef AIPROXY_MESH_PEERS_H
#define AIPROXY_MESH_PEERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "mesh/wire.h"

enum mesh_peer_status { MESH_PEER_CONNECTING, MESH_PEER_HEALTHY, MESH_PEER_UNHEALTHY };
const char *mesh_peer_status_name(enum mesh_peer_status s);

/* What the status page, the CLI and the metrics see of one peer (a copy). */
struct mesh_peer_info {
    char id[MESH_ID_MAX];     /* learned id, or the configured one, or the address */
    char addr[MESH_ADDR_MAX]; /* where heartbeats and forwarded requests go */
    int priority;
    bool configured; /* from the config or --peers (else learned) */
    enum mesh_peer_status status;
    int64_t rtt_us;            /* heartbeat round trip, EWMA; 0 unmeasured */
    int64_t last_seen_wall_ms; /* last successful heartbeat, 0 never */
    uint64_t heartbeats_ok, heartbeats_failed;
    uint64_t received; /* requests this node served for it */
    char last_error[128];
    bool has_state;
    struct mesh_node_state state; /* its last answer (owned by the copy) */
};

/* Peers as providers, for the router (immutable once published). */
struct mesh_view {
    atomic_int refs;
    struct config_provider *providers; /* type PROVIDER_MESH, one per healthy peer */
    size_t n;
};

/* Applies a config snapshot: this node's id and mesh address, the secret
 * and TLS the view's providers use, and the configured peers (added when
 * new; peers no longer configured are dropped unless learned since). Call
 * at start and after every reload. */
void mesh_peers_configure(const struct config *cfg);

/* The effective heartbeat period: node.mesh.heartbeat_interval, but at
 * least three per peer_timeout so that a lost peer is noticed within it. */
int64_t mesh_heartbeat_period_ms(const struct config *cfg);

/* ---- for the heartbeat thread ---- */

/* Fills `addrs` with the peers due a heartbeat at `now_ms` (monotonic) and
 * marks them in flight; returns how many (at most `cap`). */
size_t mesh_peers_due(int64_t now_ms, int64_t period_ms, char (*addrs)[MESH_ADDR_MAX], size_t cap);
/* A heartbeat to `addr` ended: with the peer's state (`st`, copied) on
 * success, or with `why` on failure; `answered` tells a peer that answered
 * (refusing our secret, say: alive, but not usable) from one that did not
 * (down, frozen, unreachable: requests out to it are given up). */
void mesh_peers_on_heartbeat(const char *addr, const struct mesh_node_state *st, int64_t rtt_us,
                             const char *why, bool answered, int64_t now_ms);
/* Status changes due at `now_ms` (a peer silent for peer_timeout turns
 * unhealthy); logs peer_joined / peer_lost and republishes the view. */
void mesh_peers_tick(int64_t now_ms);

/* ---- for the mesh listener ---- */

/* A heartbeat arrived from a node (its state as sent, its connection's
 * address): learns it and the peers it lists. */
void mesh_peers_heard_from(const struct mesh_node_state *st, const char *from_ip);
/* A request forwarded by peer `id` is being served here (metrics). */
void mesh_peers_count_received(const char *id);

/* ---- for anyone ---- */

/* This node's known peers as heartbeat entries (at most `cap`). */
size_t mesh_peers_known(struct mesh_known_peer *out, size_t cap);
/* A copy of every peer (the caller frees it with mesh_peers_info_free). */
size_t mesh_peers_snapshot(struct mesh_peer_info **out);
void mesh_peers_info_free(struct mesh_peer_info *v, size_t n);

/* The current view (a reference; never NULL) and its release. */
struct mesh_view *mesh_view_acquire(void);
void mesh_view_release(struct mesh_view *v);

/* Forgets every peer and the view (tests, shutdown). */
void mesh_peers_reset(void);

#endif
