/* ratelimit: request and token rate limits, exact on one node. Each limit
 * is a GCRA (generic cell rate algorithm, the token bucket written as one
 * "theoretical arrival time"): `limit` units per `window`, with a burst of
 * the whole window. The decision is a pure function of the stored time and
 * the clock; the table keeps one entry per key or client IP under a mutex,
 * so concurrent workers cannot both take the last unit. */
#ifndef AIPROXY_SECURITY_RATELIMIT_H
#define AIPROXY_SECURITY_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RL_HOUR_US (3600LL * 1000000)
#define RL_MINUTE_US (60LL * 1000000)
#define RL_TABLE_MAX 100000 /* entries; past it, idle ones (full buckets) are swept */

struct rl_decision {
    bool allowed;
    int64_t limit;          /* units per window */
    int64_t remaining;      /* units left after this decision */
    int64_t reset_us;       /* until the bucket is full again */
    int64_t retry_after_us; /* when refused: until `cost` fits */
};

/* ---- pure ---- */

/* One GCRA step for `cost` units against `limit` per `window_us` at
 * `now_us`. Updates *tat_us only when allowed. A cost larger than the whole
 * limit is allowed only when the bucket is full (it could never fit). */
void rl_gcra(int64_t *tat_us, int64_t limit, int64_t window_us, int64_t now_us, int64_t cost,
             struct rl_decision *out);

/* Writes a duration as Go's time.Duration prints it ("12ms", "1s",
 * "6m0s", "1h0m0s"), rounded to milliseconds. Returns buf. */
char *rl_format_duration(int64_t us, char *buf, size_t cap);

/* The client address to limit: `peer` itself, unless `peer` is one of the
 * `trusted` proxies (an address or a CIDR, IPv4 or IPv6), in which case the
 * right-most X-Forwarded-For entry that is not itself trusted. Writes into
 * out (cap >= 64). */
void rl_client_ip(const char *peer, const char *xff, char *const *trusted, size_t n_trusted,
                  char *out, size_t cap);

/* True when `ip` matches `rule` (an address, or address/prefix). */
bool rl_ip_matches(const char *ip, const char *rule);

/* ---- the table ---- */

struct rl_table;

struct rl_table *rl_table_new(void);
void rl_table_free(struct rl_table *t);

/* Takes one request from `who`'s per-hour and per-minute limits (0 = none)
 * atomically: either both are charged or neither. `out` describes the
 * tighter of the two (the one refusing, or the one with less left).
 * Returns out->allowed. With no limit at all, allowed with limit 0. */
bool rl_take_request(struct rl_table *t, const char *who, int64_t per_hour, int64_t per_minute,
                     int64_t now_us, struct rl_decision *out);

/* One caller's request limits, for rl_take_requests. */
struct rl_ask {
    const char *who;
    int64_t per_hour, per_minute; /* 0 = none */
};

/* rl_take_request for each of `asks` in order under one lock: stops at the
 * first refusal (the ones before it stay charged, as with separate calls)
 * and returns its index, or -1 when all were allowed. out[i] is filled for
 * every ask looked at. */
int rl_take_requests(struct rl_table *t, const struct rl_ask *asks, int n, int64_t now_us,
                     struct rl_decision *out);

/* Takes `tokens` from `who`'s tokens-per-minute limit. */
bool rl_take_tokens(struct rl_table *t, const char *who, int64_t per_minute, int64_t tokens,
                    int64_t now_us, struct rl_decision *out);

/* Corrects an earlier rl_take_tokens by `delta` tokens (real - estimated;
 * negative gives tokens back). */
void rl_adjust_tokens(struct rl_table *t, const char *who, int64_t per_minute, int64_t delta,
                      int64_t now_us);

#endif
