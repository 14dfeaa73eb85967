/* circuit: the health breaker over a provider's outcome window
 * (routing/stats.h). Closed: traffic flows. Open: the window holds at least
 * CIRCUIT_MIN_SAMPLES outcomes and its error rate is above the configured
 * threshold, and the last failure is younger than the cool-down: the
 * provider is skipped. Half-open: the cool-down has passed: one request (the
 * probe) is let through; its success empties the window (closed), its
 * failure restarts the cool-down (open). The state is derived from the
 * window and three timestamps, so there is nothing to keep consistent. */
#ifndef AIPROXY_ROUTING_CIRCUIT_H
#define AIPROXY_ROUTING_CIRCUIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct provider_stats;

#define CIRCUIT_MIN_SAMPLES 5
#define CIRCUIT_COOLDOWN_MS 5000

enum circuit_state { CIRCUIT_CLOSED, CIRCUIT_OPEN, CIRCUIT_HALF_OPEN };

const char *circuit_state_name(enum circuit_state s);

/* The state at `now_ms` (monotonic) for `threshold` (error ratio 0..1, open
 * when strictly above). Reads only. NULL stats are closed. */
enum circuit_state circuit_state(const struct provider_stats *s, double threshold, int64_t now_ms);

/* Whether routing should leave the provider out now. In half-open it lets
 * exactly one caller through per cool-down (taking the probe slot) and sets
 * *probe; everyone else is skipped until the probe reports. Fills `why`
 * (e.g. "circuit open: 4/5 recent attempts failed, retry in 3200 ms") when
 * skipping or probing. */
bool circuit_should_skip(struct provider_stats *s, double threshold, int64_t now_ms,
                         bool *probe, char *why, size_t why_cap);

/* The transition on an attempt's end (called by provider_stats_end after the
 * outcome entered the window): a failure restarts the cool-down; a success
 * while a probe is out closes the circuit (empties the window). */
void circuit_on_result(struct provider_stats *s, bool ok, int64_t now_ms);
/* An attempt ended without an outcome of the provider's (this gateway
 * could not even open a connection): a probe it held is free again, and
 * nothing is counted. */
void circuit_on_no_result(struct provider_stats *s);

#endif
