/* scripts: the Lua scripts that keep limits and budgets in Redis (SPEC
 * section 6), run atomically by the server, and the SHA1 each is called by.
 * Their arguments and replies are built and read by cluster/limits.c.
 *
 * Keys (all under cluster.redis.prefix P):
 *   P rl:WHO:h, P rl:WHO:m   request-limit GCRA times (per hour, minute)
 *   P tpm:WHO                tokens-per-minute GCRA time
 *   P b:SCOPE:d:DAY, P b:SCOPE:m:MONTH
 *                            budget windows: hash {s = spent, r = reserved}
 *   P holds                  the reservations of requests not yet settled: members
 *                            "request_id amount day month n scope...", scored by
 *                            expiry (a node that dies mid-request has its holds
 *                            released after it)
 *   P swept                  holds released at their expiry, whose late
 *                            settlement still adds its cost (kept a day)
 *   P rc:BATCH               a reconciliation batch already applied
 *   P keys                   managed keys: HMAC (hex) -> record (JSON)
 *   P keys:ver               bumped on every change of P keys
 *   P keys:salt              the HMAC salt every node uses (hex)
 * Every time is the Redis server's own clock (TIME), one clock for all
 * nodes. Money is integer nano-dollars: Lua numbers are doubles, exact
 * below 2^53 (about 9 million dollars per window), which the C side caps. */
#ifndef AIPROXY_CLUSTER_SCRIPTS_H
#define AIPROXY_CLUSTER_SCRIPTS_H

enum {
    SCRIPT_RESERVE,   /* request limits, tokens per minute, budget holds (batched) */
    SCRIPT_SETTLE,    /* a held request's real cost; idempotent, the hold goes (batched) */
    SCRIPT_RECONCILE, /* spend counted locally while Redis was down; once per batch id */
    SCRIPT_RELEASE,   /* drops holds whose reservation answer was lost */
    SCRIPT_KEYPUT,    /* stores a managed key's record, bumps the keys' version */
    SCRIPT_KEYSALT,   /* the cluster's key salt, created by the first node that asks */
    SCRIPT_POLL,      /* the keys' version and the gateway's spend: the watcher's probe */
    SCRIPT_COUNT
};

int scripts_count(void);
const char *scripts_text(int i);
const char *scripts_sha(int i); /* 40 hex digits */

#endif
