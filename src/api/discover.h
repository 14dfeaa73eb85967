/* discover: model discovery and reachability for providers with
 * `discover_models` (local inference servers, OCF networks). Run by the
 * daemon's main thread at start and periodically, with short blocking
 * probes; never on a worker. The result is applied to a snapshot that is
 * not yet shared, which then replaces the serving one when it differs. */
#ifndef AIPROXY_API_DISCOVER_H
#define AIPROXY_API_DISCOVER_H

#include <stdint.h>

struct config;

/* Probes each discovering provider of `cfg`: adds the models it lists and
 * marks it unavailable (with the reason) when it does not answer, keeping
 * the models it listed in `previous` (NULL at start). */
void discover_apply(struct config *cfg, const struct config *previous, int timeout_ms);

/* A digest of what routing sees of every provider (availability, reason,
 * model names): equal digests mean nothing worth a swap changed. */
uint64_t discover_fingerprint(const struct config *cfg);

/* Logs provider_up / provider_down for providers whose availability
 * differs between two snapshots. */
void discover_log_changes(const struct config *before, const struct config *after);

#endif
