/* watch: notices circuit breaker transitions. The breaker's state is
 * derived from each provider's outcome window and timestamps
 * (routing/circuit.h), so nothing "changes" it: this module samples every
 * provider's state every WATCH_INTERVAL_MS from its own thread and logs
 * each transition as an event (circuit_open, circuit_half_open,
 * circuit_closed) and counts it for /metrics. Workers are never involved. */
#ifndef AIPROXY_OBS_WATCH_H
#define AIPROXY_OBS_WATCH_H

#include <stdint.h>

struct config;

#define WATCH_INTERVAL_MS 200

/* Starts the thread on `cfg` (a reference is taken). */
void watch_start(struct config *cfg);
/* Hands the watcher a new snapshot (reload); it drops its old reference. */
void watch_set_config(struct config *cfg);
/* Stops the thread and drops the snapshot. Safe when never started. */
void watch_stop(void);

/* Transitions seen for provider `name` since start (0 when unknown). */
uint64_t watch_transitions(const char *name);

#endif
