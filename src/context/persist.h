/* persist: the context delta buffer kept in the ledger's local SQLite
 * database (budget.cost_db, or the spool of a PostgreSQL ledger), in its
 * own tables (created by the ledger's schema migrations), so that a
 * restart keeps every project: each file's current and seen content, and
 * each project's counters. Writes are synchronous on the caller's thread
 * (deltas are rare; a write is a few hundred microseconds in WAL mode). */
#ifndef AIPROXY_CONTEXT_PERSIST_H
#define AIPROXY_CONTEXT_PERSIST_H

#include <stddef.h>

struct ctx_persist;
struct ctx_store;

/* Opens its own connection to the SQLite file at `path` (the ledger made
 * the tables). Returns NULL with `err` on failure. */
struct ctx_persist *ctx_persist_open(const char *path, char *err, size_t errcap);
void ctx_persist_close(struct ctx_persist *p); /* NULL is ignored */

/* Loads every project into `s` (before it serves). Returns 0 or -1. */
int ctx_persist_load(struct ctx_persist *p, struct ctx_store *s);

#endif
