/* ledger: the cost ledger, one record per request. Workers append records
 * to in-memory queues (one per thread, so that they never wait for each
 * other) and never touch a database; one writer thread commits what all the
 * queues hold in small batches (one transaction each).
 *
 * Where: by default one SQLite database (WAL). With a PostgreSQL URL
 * (budget.cost_db: postgres://..., SPEC section 6) the ledger of record is
 * PostgreSQL, shared by every node, and the local SQLite file is a spool:
 * a batch PostgreSQL cannot take (down, unreachable, refusing) is committed
 * there instead, and the writer sends the spool's rows to PostgreSQL when
 * it answers again (ON CONFLICT (request_id) DO NOTHING, then deleted from
 * the spool: none lost, none written twice). Opening never fails because
 * PostgreSQL is down; the writer retries it with backoff (250 ms doubling
 * to 5 s) and keeps its connection.
 *
 * Durability: a record is committed once its batch's transaction has
 * committed (in PostgreSQL or in the spool); committed records survive
 * kill -9 of the process (WAL with synchronous=NORMAL: the commit reached
 * the OS before COMMIT returned; an OS crash or power loss may lose the last
 * batches, never corrupt the file). The writer gathers records for up to
 * LEDGER_GATHER_MS (less when a queue reaches LEDGER_BATCH) and commits them
 * in one transaction, so the window between a response and its record
 * being committed is about that long. ledger_flush and ledger_close commit
 * at once and wait until every queued record is committed.
 *
 * The SQLite file also holds the managed API keys (security/keystore.h),
 * the context buffers (context/persist.h) and a schema_version table;
 * ledger_open applies the migrations in order (PostgreSQL has its own
 * schema_version and migrations, applied under an advisory lock so that
 * nodes starting together do not race). */
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
#define LEDGER_SCHEMA_VERSION 7

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
    const char *node_id; /* the node that wrote the record (node.id) */
    /* Response cache (SPEC section 7): "hit", "semantic_hit" or "miss" when
     * the cache was consulted, NULL or "" when not. A hit costs nothing
     * (cost_nanos 0); saved_nanos is what the stored answer cost when it was
     * made, 0 for anything but a hit. */
    const char *cache;
    nanos_t saved_nanos;
    /* Prompt caching (SPEC section 9): of tokens_in, those the provider
     * read from its prompt cache and those it wrote to it. */
    int64_t cached_tokens, cache_write_tokens;
};

struct ledger;

/* Opens (creating the file and its directory when missing) and migrates
 * the database at `path`, then starts the writer thread. Returns NULL and
 * writes why into `err` on failure. */
struct ledger *ledger_open(const char *path, char *err, size_t errcap);

/* The same with `postgres_url` (postgres:// or postgresql://, NULL for the
 * SQLite ledger): the ledger of record is PostgreSQL and `path` is the
 * spool. Fails only on a URL libpq cannot parse or an unusable spool (the
 * message never holds the password); PostgreSQL down at start is logged
 * (ledger_db_down) and retried. */
struct ledger *ledger_open_with(const char *path, const char *postgres_url, char *err,
                                size_t errcap);

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

/* The PostgreSQL ledger's figures (metrics, status): whether the ledger is
 * in PostgreSQL at all, whether PostgreSQL is reachable now (always true
 * for the SQLite ledger), records written to it since open (spool drains
 * included), records committed to the spool since open, and the spool's
 * rows waiting to be sent. */
bool ledger_is_shared(struct ledger *l);
bool ledger_backend_up(struct ledger *l);
uint64_t ledger_db_committed(struct ledger *l);
uint64_t ledger_spooled(struct ledger *l);
uint64_t ledger_spool_depth(struct ledger *l);

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
/* With PostgreSQL: the sums are the whole cluster's (every node's rows)
 * plus the spool's rows not yet sent; when PostgreSQL is down, the spool's
 * only, with a warning (ledger_restore_partial). The writer thread reads
 * them (it alone moves rows from the spool), the caller waits. */

/* Spend by node since `month_start_s`: for each node id (the records'
 * node_id; "" for records older than schema 4), its own provider spend
 * (rows a peer did not pay) today and this month, and its records. */
struct ledger_node_spend {
    char *node_id;
    nanos_t today, month;
    int64_t requests_today, requests_month;
};

/* A query run by the writer thread, so that no worker waits for a
 * database: start it, poll ledger_query_done (cheap), read the result,
 * release it (also when the asker gives up before it is done). */
struct ledger_query;
struct ledger_query *ledger_query_by_node(struct ledger *l, int64_t day_start_s,
                                          int64_t month_start_s);
bool ledger_query_done(struct ledger_query *q);
/* 0 with the rows (sorted by node id) and where they come from ("postgres"
 * or "sqlite"); -1 on a database error; -2 when PostgreSQL is unreachable. */
int ledger_query_result(struct ledger_query *q, const struct ledger_node_spend **rows, size_t *n,
                        const char **source);
void ledger_query_release(struct ledger_query *q);

/* Applies the migrations to an open sqlite3 handle (void * to keep sqlite3.h
 * out of this header). Returns the resulting version, or -1 with `err`. */
int ledger_migrate(void *db, char *err, size_t errcap);

#endif
