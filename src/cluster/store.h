/* store: the shared store's process-wide side (SPEC section 6). Opens the
 * Redis settings, runs the watcher thread (its own event loop and
 * connection) that tells whether Redis is up for /ready, status and
 * metrics, and that carries out the work deferred while it was down:
 * settlements whose answer was lost (idempotent: a settled hold is gone),
 * holds to drop (their requests went on with node-local counters) and the
 * spend counted node-locally meanwhile (in batches applied once each, by
 * batch id). Workers hold their own connections (api/upstream_slot.h). */
#ifndef AIPROXY_CLUSTER_STORE_H
#define AIPROXY_CLUSTER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/limits.h"

struct config;
struct keystore;

/* Starts the watcher when cluster.redis.url is set (else does nothing and
 * returns 0). Returns -1 with `err` on a bad URL or TLS setting; Redis being
 * down is not an error (the node serves per on_store_down). */
int store_start(const struct config *cfg, char *err, size_t errcap);
void store_stop(void);

/* The keystore the watcher keeps the cluster's managed keys in (call
 * before store_start). */
void store_set_keystore(struct keystore *ks);

/* Called on the watcher's thread with the gateway's shared spend, every
 * turn (the local view follows it). */
void store_set_spend_hook(void (*on_spend)(int64_t day, int64_t month, nanos_t day_spent,
                                           nanos_t month_spent));

bool store_enabled(void);
/* Redis answered the watcher's last probe. */
bool store_is_up(void);
/* on_store_down: closed (refuse with 503) rather than local. */
bool store_closed_when_down(void);
const char *store_prefix(void);
/* The node's id (for batch ids), as configured at start. */
const char *store_node_id(void);

/* Work for the watcher, carried out once Redis answers (copied). */
void store_defer_settle(const struct cl_settle *s);
void store_defer_release(const char *hold_member);
void store_defer_delta(const char *scope, char kind, int64_t period, nanos_t amount);

/* A caller's view of the store for metrics and status. */
struct store_status {
    bool enabled, up;
    uint64_t reconciliations; /* batches and deferred settlements carried out */
    uint64_t deferred;        /* items waiting */
    uint64_t down_events;
    char where[200]; /* the URL without its password */
};
void store_status_get(struct store_status *out);

#endif
