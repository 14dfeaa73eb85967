/* ledger_pg: the PostgreSQL side of the ledger (SPEC section 6), internal
 * to budget/ and used by the writer thread of ledger.c only: one kept
 * connection (made again when it breaks), the schema and its migrations
 * under an advisory lock, each batch in one transaction (COPY for new
 * records, INSERT ... ON CONFLICT (request_id) DO NOTHING where a row may
 * be there already), and the sums read back at start and for GET
 * /v1/budget?by=node. No message from here holds the password. */
#ifndef AIPROXY_BUDGET_LEDGER_PG_H
#define AIPROXY_BUDGET_LEDGER_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "budget/ledger.h"
#include "budget/ledger_batch.h"

#define LEDGER_PG_SCHEMA_VERSION 3
#define LEDGER_PG_CONNECT_TIMEOUT_S 3
#define LEDGER_PG_ROWS_PER_INSERT 256 /* rows per INSERT statement (LEDGER_PG_COLS parameters each) */
#define LEDGER_PG_COLS 19

struct ledger_pg;

/* Checks `url` (postgres:// or postgresql://) with libpq and keeps it;
 * connects nothing. NULL with a message in `err` (without the URL, which
 * holds the password) when libpq cannot parse it. */
struct ledger_pg *ledger_pg_new(const char *url, char *err, size_t errcap);
void ledger_pg_free(struct ledger_pg *pg);

/* "user@host:port/db": where the ledger is, for messages. */
const char *ledger_pg_target(const struct ledger_pg *pg);

/* Connects when not connected (connect_timeout LEDGER_PG_CONNECT_TIMEOUT_S)
 * and brings the schema to LEDGER_PG_SCHEMA_VERSION. 0, or -1 with why. */
int ledger_pg_connect(struct ledger_pg *pg, char *err, size_t errcap);
bool ledger_pg_connected(const struct ledger_pg *pg);
/* Closes the connection (the next ledger_pg_connect makes a new one). */
void ledger_pg_disconnect(struct ledger_pg *pg);

/* Inserts the records in one transaction; rows whose request id is there
 * already are skipped: with `may_exist` (spool drains), a multi-row INSERT
 * ... ON CONFLICT (request_id) DO NOTHING; else COPY (binary), and when
 * PostgreSQL refuses it for a request id it holds, that INSERT. 0, or -1
 * with why: rolled back and disconnected (whatever failed, the next attempt
 * starts afresh). */
int ledger_pg_insert(struct ledger_pg *pg, const struct records *b, bool may_exist, char *err,
                     size_t errcap);

/* ledger_restore's sums over the whole table (every node). 0 or -1. */
int ledger_pg_restore(struct ledger_pg *pg, int64_t day_start_ms, int64_t month_start_ms,
                      ledger_restore_cb cb, void *ctx, char *err, size_t errcap);

/* Spend by node since month_start_ms; `cb` once per node. 0 or -1. */
typedef void (*ledger_node_cb)(void *ctx, const char *node_id, nanos_t today, nanos_t month,
                               int64_t requests_today, int64_t requests_month);
int ledger_pg_by_node(struct ledger_pg *pg, int64_t day_start_ms, int64_t month_start_ms,
                      ledger_node_cb cb, void *ctx, char *err, size_t errcap);

/* ---- pure helpers (unit tested) ---- */

/* The INSERT of `rows` rows ($1.. numbered, ON CONFLICT (request_id) DO
 * NOTHING) into `out`; returns its length, or 0 when it does not fit. */
size_t ledger_pg_insert_sql(int rows, char *out, size_t cap);

/* The records as COPY's binary format (PGCOPY signature, one tuple of
 * LEDGER_PG_COLS fields per record in the INSERT's column order, invalid
 * UTF-8 cleaned, the trailer) into `out`, which holds
 * ledger_pg_copy_size(b) bytes; returns the length written. */
size_t ledger_pg_copy_size(const struct records *b);
size_t ledger_pg_copy_encode(const struct records *b, char *out);

/* Copies `n` bytes of `s` to `out` (n bytes), each byte that is not part
 * of a well-formed UTF-8 sequence replaced by '?' (PostgreSQL refuses a
 * whole batch for one such byte; a field cut at LEDGER_TEXT_MAX can end
 * inside a character). Returns true when something was replaced. */
bool ledger_pg_utf8_clean(const char *s, size_t n, char *out);

/* Length of the well-formed UTF-8 prefix of s[0..n) (n when all of it). */
size_t ledger_pg_utf8_valid_prefix(const char *s, size_t n);

/* Replaces every occurrence of `secret` (when not empty) in `msg` by "***"
 * and folds newlines and tabs into spaces (one log line), in place. */
void ledger_pg_scrub(char *msg, size_t cap, const char *secret);

#endif
