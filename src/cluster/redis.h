/* redis: an asynchronous Redis connection on one event loop, for the
 * shared store (SPEC section 6). hiredis parses the replies (RESP);
 * commands are written straight into the output buffer here; the
 * transport is a libevent bufferevent, plain TCP,
 * a unix socket or TLS (rediss://: Debian 12's hiredis 0.14 has no TLS of
 * its own). Never blocks: a call either queues (its callback runs exactly
 * once, with the reply or with NULL on failure) or is refused at once when
 * the connection is not up.
 *
 * Every call has a deadline (cluster.redis.timeout): when the oldest
 * unanswered call passes it, the connection counts as down (a slow Redis is
 * a down Redis for the requests waiting on it): every pending call fails,
 * the connection is closed and reopened with backoff (100 ms doubling to
 * 5 s). A fresh connection authenticates (AUTH [user] password), selects
 * its database and answers a PING before it is up. */
#ifndef AIPROXY_CLUSTER_REDIS_H
#define AIPROXY_CLUSTER_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct redisReply;
struct redis_conn;

/* Opens the process-wide settings from the cluster.redis config (parses the
 * URL, resolves the host, builds the TLS context). Returns 0, or -1 with
 * `err` (never holding the password). Call once before any connection. */
int redis_global_init(const char *url, int64_t timeout_ms, const char *tls_ca_file, char *err,
                      size_t errcap);
void redis_global_cleanup(void);

/* reply: NULL when the call failed (timeout, connection lost); an error
 * reply is passed as it is (type REDIS_REPLY_ERROR). Owned by the caller
 * of the callback only for its duration. */
typedef void (*redis_reply_cb)(void *arg, struct redisReply *reply);

/* A connection on `base`; starts connecting at once. */
struct redis_conn *redis_conn_new(struct event_base *base);
/* Fails every pending call (their callbacks run) and closes. */
void redis_conn_free(struct redis_conn *c);

/* Down: waiting to reconnect (calls are refused); not while connecting. */
bool redis_conn_down(const struct redis_conn *c);

/* Sends one command. Returns 0 when queued (while connecting: behind the
 * handshake), -1 when the connection is down, waiting to reconnect (the
 * callback is not called). */
int redis_conn_call(struct redis_conn *c, int argc, const char **argv, const size_t *lens,
                    redis_reply_cb cb, void *arg);

/* Runs script number `script` of cluster/scripts.h by its SHA1 (EVALSHA:
 * every connection loads the scripts in its handshake, so one round trip).
 * argv are the script's ARGV (no KEYS). Same return as redis_conn_call. A
 * NOSCRIPT answer (the server's scripts were flushed) fails the call and
 * reopens the connection, which loads them again. */
int redis_conn_script(struct redis_conn *c, int script, int argc, const char **argv,
                      const size_t *lens, redis_reply_cb cb, void *arg);

/* Adds one request's arguments (its A: see cluster/scripts.c) to the batch
 * of a batched script (SCRIPT_RESERVE, SCRIPT_SETTLE) this loop turn
 * gathers. The batch goes as one EVALSHA once the turn's other ready events
 * have run; each callback then gets its own request's reply (an array), or
 * the error reply or NULL when the whole call failed. Never calls back
 * before returning. Same return as redis_conn_call. */
int redis_conn_batch(struct redis_conn *c, int script, int argc, const char **argv,
                     const size_t *lens, redis_reply_cb cb, void *arg);

/* Process-wide figures for metrics and status. */
struct redis_stats {
    uint64_t calls, errors, timeouts, connects, disconnects;
};
void redis_stats_get(struct redis_stats *out);

#endif
