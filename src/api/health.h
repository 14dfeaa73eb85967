/* health: active health checks (routing.load_balancing.health_check_*). A
 * thread of its own, with its own event loop, DNS and upstream pool, sends
 * every interval one cheap GET to each endpoint of each enabled, available
 * provider (see docs/routing.md for the request per type) and feeds the
 * verdict to routing/stats.h: an endpoint is down after
 * `health_check_failures` failed checks in a row (routing then treats it as
 * a last resort, like an open circuit) and up again after one success; the
 * changes are logged as provider_down / provider_up. A check fails on no
 * answer, a timeout or a 5xx; any other status means the server is there. */
#ifndef AIPROXY_API_HEALTH_H
#define AIPROXY_API_HEALTH_H

struct config;

/* Starts the thread with `cfg` (a reference is taken). Returns 0, or -1 when
 * the thread could not be created (the gateway runs without checks). */
int health_start(struct config *cfg);
/* Hands the thread the current snapshot after a reload or a discovery swap
 * (a reference is taken; the previous one is dropped). Any thread. */
void health_set_config(struct config *cfg);
/* Cancels checks in flight, stops and joins the thread. Idempotent. */
void health_stop(void);

#endif
