/* reload: the handshake between POST /aiproxy/admin/reload (a worker) and
 * the main thread that reloads on SIGHUP. The endpoint takes a ticket
 * (reload_request: a counter, then SIGHUP to the own process); the main
 * thread, before reading the config, notes how many tickets exist
 * (reload_begin) and, once done, publishes the outcome for all of them
 * (reload_publish). A ticket is answered by the first reload that began
 * after it was taken, so concurrent requests share one reload and none
 * waits for a reload that read the file before it asked. */
#ifndef AIPROXY_OBS_RELOAD_H
#define AIPROXY_OBS_RELOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RELOAD_MESSAGE_MAX 4096

/* Takes a ticket and raises SIGHUP. Returns the ticket. */
uint64_t reload_request(void);

/* Main thread: a reload begins; returns the tickets it answers. */
uint64_t reload_begin(void);
/* Main thread: the reload that began with `upto` ended. `message` is the
 * source on success, the config errors (one per line) on failure. */
void reload_publish(uint64_t upto, bool ok, const char *message);

/* Whether ticket `t` has its outcome; when it has, fills ok, the message
 * and the generation (successful reloads so far). */
bool reload_outcome(uint64_t t, bool *ok, char *message, size_t cap, uint64_t *generation);

/* Counters for /metrics and status. */
struct reload_stats {
    uint64_t ok, failed, generation;
    int64_t last_ok_s, last_failed_s; /* unix seconds, 0 when never */
};
void reload_stats(struct reload_stats *out);

#endif
