/* ledger: the cost ledger, one SQLite database (WAL) with one record per
 * request. Workers append records to in-memory queues (one per thread, so
 * that they never wait for each other) and never touch the database; one
 * writer thread commits what all the queues hold in small batches (one
 * transaction each).
 *
 * Durability: a record is committed once its batch's transaction has
 * committed; committed records survive kill -9 of the process (WAL with
 * synchronous=NORMAL: the commit reached the OS before COMMIT returned; an
 * OS crash or power loss may lose the last batches, never corrupt the
 * file). The writer gathers records for up to LEDGER_GATHER_MS (less when a
 * queue reaches LEDGER_BATCH) and commits them in one transaction, so the window between
 * a response and its record being committed is about that long.
 * ledger_flush and ledger_close commit at once and wait until every queued
 * record is committed.
 *
 * The same database holds the managed API keys (security/keystore.h) and a
 * schema_version table; ledger_open applies the migrations in order. */
#ifndef AIPROXY_BUDGET_LEDGER_H
#define AIPROXY_BUDGET_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/money.h"

#define LEDGER_BATCH 4096 /* a queue this long cuts the writer's gathering short */
#define LEDGER_GATHER_MS 50 /* a record is committed within about this long under load */
/* Records waiting, split evenly among the appending threads' queues; past
 * it new ones are dropped and logged. */
#define LEDGER_QUEUE_MAX 1000000
#define LEDGER_SCHEMA_VERSION 3

#define LEDGER_TEXT_MAX 256 /* bytes kept of each string field; longer ones are cut */

/* One request's record as handed to ledger_append, which copies what it
 * needs: the strings are borrowed for the call only. NULL reads as "". */
struct ledger_record {
    int64_t ts_ms;          /* unix milliseconds when the request completed */
    const char *request_id;
    const char *key_id;     /* "" when unauthenticated */
    const char *tenant;     /* "" when none */
    const char *model;      /* as the client asked */
    const char *provider;   /* "" when no provider answered */
    int64_t tokens_in, tokens_out;
    nanos_t cost_nanos;
    bool estimated;
    int status; /* the HTTP status sent (499: the client left) */
    /* Mesh (SPEC section 5): the node the request entered at, the nodes it
     * went through ("a,b"), and whether a peer paid the provider: then the
     * cost is charged to the caller's key and tenant here, and counted in
     * the serving node's own spend, not this node's. */
    const char *origin_node;
    const char *route;
    bool via_peer;
};

struct ledger;

/* Opens (creating the file and its directory when missing) and migrates
 * the database at `path`, then starts the writer thread. Returns NULL and
 * writes why into `err` on failure. */
struct ledger *ledger_open(const char *path, char *err, size_t errcap);

/* Queues a copy of `r`. Never blocks on I/O; thread-safe. */
void ledger_append(struct ledger *l, const struct ledger_record *r);

/* Waits until everything queued before the call is committed. */
void ledger_flush(struct ledger *l);

/* Flushes, stops the writer and closes the database. NULL is ignored. */
void ledger_close(struct ledger *l);

/* How many records were committed / dropped since open (for tests, metrics). */
uint64_t ledger_committed(struct ledger *l);
uint64_t ledger_dropped(struct ledger *l);
/* Records queued and not yet committed (metrics; takes the queue's lock). */
size_t ledger_queue_depth(struct ledger *l);

/* Sums committed spend since `month_start_s` (unix seconds), grouped by
 * key, tenant, provider and model, whether the rows are from on or after
 * `day_start_s`, and whether a peer paid (`via_peer`). `cb` runs once per
 * group; strings may be "" (never NULL). Reads on its own connection.
 * Returns 0, or -1 on a database error. */
typedef void (*ledger_restore_cb)(void *ctx, const char *key_id, const char *tenant,
                                  const char *provider, const char *model, bool today,
                                  nanos_t cost, bool via_peer);
int ledger_restore(struct ledger *l, int64_t day_start_s, int64_t month_start_s,
                   ledger_restore_cb cb, void *ctx);

/* Applies the migrations to an open sqlite3 handle (void * to keep sqlite3.h
 * out of this header). Returns the resulting version, or -1 with `err`. */
int ledger_migrate(void *db, char *err, size_t errcap);

#endif
