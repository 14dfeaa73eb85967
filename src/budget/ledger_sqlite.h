/* ledger_sqlite: the ledger's SQLite file, internal to budget/: the ledger
 * itself, or the spool of a PostgreSQL ledger (same schema). The writer
 * thread of ledger.c is the only user of its connection once started. */
#ifndef AIPROXY_BUDGET_LEDGER_SQLITE_H
#define AIPROXY_BUDGET_LEDGER_SQLITE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "budget/ledger.h"
#include "budget/ledger_batch.h"
#include "budget/ledger_pg.h"

/* Opens `path` (creating it and its directory when missing), WAL with
 * synchronous=NORMAL, and applies the migrations. 0, or -1 with why. */
int ledger_sqlite_open(const char *path, sqlite3 **out, char *err, size_t errcap);

/* Runs `sql`; 0, or -1 with SQLite's message in err. */
int ledger_sqlite_exec(sqlite3 *db, const char *sql, char *err, size_t errcap);

/* The prepared INSERTs of one row and of a run of rows. */
struct ledger_inserts {
    sqlite3_stmt *one, *many;
};
void ledger_sqlite_prepare_inserts(sqlite3 *db, struct ledger_inserts *ins);
void ledger_sqlite_finalize_inserts(struct ledger_inserts *ins);

/* Commits the records in one transaction. 0, or -1 (rolled back, logged
 * as ledger_write_failed naming `path`). */
int ledger_sqlite_insert(sqlite3 *db, const char *path, const struct ledger_inserts *ins,
                         const struct records *b);

/* ledger_restore's sums, and the spend by node, over this file's rows. 0 or -1. */
int ledger_sqlite_restore(sqlite3 *db, int64_t day_start_ms, int64_t month_start_ms,
                          ledger_restore_cb cb, void *ctx);
int ledger_sqlite_by_node(sqlite3 *db, int64_t day_start_ms, int64_t month_start_ms,
                          ledger_node_cb cb, void *ctx);

#endif
