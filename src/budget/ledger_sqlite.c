/* ledger_sqlite: the ledger's SQLite file (the ledger itself, or the spool
 * of a PostgreSQL ledger): its schema and migrations, opening it in WAL
 * mode, multi-row inserts in one transaction, and the sums read back. */
#include "budget/ledger_sqlite.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/log.h"

/* ---- schema ---- */

/* Migration i takes the schema from version i to i + 1. Never edit a
 * released step: add a new one. */
static const char *const migrations[] = {
    /* 0 -> 1: the request ledger */
    "CREATE TABLE requests ("
    " id INTEGER PRIMARY KEY,"
    " ts_ms INTEGER NOT NULL,"
    " request_id TEXT NOT NULL,"
    " key_id TEXT NOT NULL DEFAULT '',"
    " tenant TEXT NOT NULL DEFAULT '',"
    " model TEXT NOT NULL DEFAULT '',"
    " provider TEXT NOT NULL DEFAULT '',"
    " tokens_in INTEGER NOT NULL,"
    " tokens_out INTEGER NOT NULL,"
    " cost_nanos INTEGER NOT NULL,"
    " estimated INTEGER NOT NULL,"
    " status INTEGER NOT NULL);"
    "CREATE INDEX requests_ts ON requests(ts_ms);",
    /* 1 -> 2: managed API keys (hashed) and the per-database salt */
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);"
    "CREATE TABLE api_keys ("
    " id TEXT PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " hash BLOB NOT NULL UNIQUE,"
    " tenant TEXT,"
    " role TEXT NOT NULL DEFAULT 'user',"
    " models TEXT,"
    " daily_limit INTEGER NOT NULL DEFAULT 0,"
    " monthly_limit INTEGER NOT NULL DEFAULT 0,"
    " rate_limit_per_hour INTEGER NOT NULL DEFAULT 0,"
    " requests_per_minute INTEGER NOT NULL DEFAULT 0,"
    " tokens_per_minute INTEGER NOT NULL DEFAULT 0,"
    " expires_at INTEGER,"
    " created_at INTEGER NOT NULL,"
    " revoked_at INTEGER);",
    /* 2 -> 3: mesh federation: where the request entered, the nodes it went
     * through, and whether a peer paid the provider (then the cost is the
     * caller's, not this node's own spend) */
    "ALTER TABLE requests ADD COLUMN origin_node TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE requests ADD COLUMN route TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE requests ADD COLUMN via_peer INTEGER NOT NULL DEFAULT 0;",
    /* 3 -> 4: the node that wrote the record (a PostgreSQL ledger is shared
     * by every node; its spool has this schema too) */
    "ALTER TABLE requests ADD COLUMN node_id TEXT NOT NULL DEFAULT '';",
    /* 4 -> 5: the response cache (SPEC section 7): "hit", "semantic_hit",
     * "miss" or '' (not consulted), and what a hit saved (the stored
     * answer's cost when it was made; a hit's own cost_nanos is 0) */
    "ALTER TABLE requests ADD COLUMN cache TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE requests ADD COLUMN saved_nanos INTEGER NOT NULL DEFAULT 0;",
    /* 5 -> 6: the context delta buffer (SPEC section 8, context/persist.h):
     * per caller scope and project, its counters, and each file's current
     * content (NULL: deleted, not yet seen so) and the content the model
     * last saw (NULL: never, unless seen_same: then it is the current
     * content, not stored twice) */
    "CREATE TABLE context_projects ("
    " scope TEXT NOT NULL,"
    " project TEXT NOT NULL,"
    " injections INTEGER NOT NULL DEFAULT 0,"
    " tokens_injected INTEGER NOT NULL DEFAULT 0,"
    " tokens_saved INTEGER NOT NULL DEFAULT 0,"
    " updated_ms INTEGER NOT NULL,"
    " PRIMARY KEY (scope, project));"
    "CREATE TABLE context_files ("
    " scope TEXT NOT NULL,"
    " project TEXT NOT NULL,"
    " path TEXT NOT NULL,"
    " content BLOB,"
    " seen BLOB,"
    " seen_same INTEGER NOT NULL DEFAULT 0,"
    " version INTEGER NOT NULL,"
    " PRIMARY KEY (scope, project, path));",
    /* 6 -> 7: prompt caching (SPEC section 9): of tokens_in, the tokens
     * the provider read from its prompt cache and those it wrote to it */
    "ALTER TABLE requests ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE requests ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0;",
};

#define N_MIGRATIONS (sizeof migrations / sizeof migrations[0])
_Static_assert(N_MIGRATIONS == LEDGER_SCHEMA_VERSION, "one migration per schema version");

static int exec(sqlite3 *db, const char *sql, char *err, size_t errcap)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errcap, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int ledger_migrate(void *handle, char *err, size_t errcap)
{
    sqlite3 *db = handle;
    if (exec(db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", err,
             errcap) != 0)
        return -1;
    for (;;) {
        if (exec(db, "BEGIN IMMEDIATE", err, errcap) != 0) return -1;
        sqlite3_stmt *st = NULL;
        int version = 0;
        bool has_row = false;
        if (sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1, &st, NULL) ==
                SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            version = sqlite3_column_int(st, 0);
            has_row = true;
        }
        sqlite3_finalize(st);
        if (version > (int)N_MIGRATIONS) {
            exec(db, "ROLLBACK", err, errcap);
            snprintf(err, errcap, "the database has schema version %d, newer than this build's %d",
                     version, (int)N_MIGRATIONS);
            return -1;
        }
        if (version == (int)N_MIGRATIONS) {
            exec(db, "COMMIT", err, errcap);
            return version;
        }
        char set[96];
        snprintf(set, sizeof set, has_row ? "UPDATE schema_version SET version = %d"
                                          : "INSERT INTO schema_version VALUES (%d)", version + 1);
        if (exec(db, migrations[version], err, errcap) != 0 || exec(db, set, err, errcap) != 0 ||
            exec(db, "COMMIT", err, errcap) != 0) {
            char keep[256];
            snprintf(keep, sizeof keep, "%s", err);
            exec(db, "ROLLBACK", err, errcap);
            snprintf(err, errcap, "migration to schema version %d failed: %s", version + 1, keep);
            return -1;
        }
        log_event(LOG_INFO, "ledger_migrated", "ledger schema migrated to version %d",
                  version + 1);
    }
}

/* SQLite counts every allocation under one global mutex unless told not
 * to; it must be told before its first use in the process. */
static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

static void configure_sqlite(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); /* SQLITE_MISUSE if already in use: harmless */
}

static int open_db(const char *path, sqlite3 **out, char *err, size_t errcap)
{
    pthread_once(&sqlite_once, configure_sqlite);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errcap, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    if (exec(db, "PRAGMA journal_mode=WAL", err, errcap) != 0 ||
        exec(db, "PRAGMA synchronous=NORMAL", err, errcap) != 0) {
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

static void make_parent_dirs(const char *path)
{
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) break;
        *s = '/';
    }
    free(p);
}

/* ---- inserts and reads ---- */

/* Rows per multi-row INSERT: one statement run per 32 records instead of
 * per record (each run has a fixed cost in SQLite's VM). */
#define ROWS_PER_INSERT 32
#define COLS 19 /* values per row: ts_ms, the LT_COUNT text fields, nine numbers */
_Static_assert(COLS == 1 + LT_COUNT + 9, "the INSERT's columns are the packed record's");

static sqlite3_stmt *prepare_insert(sqlite3 *db, int rows)
{
    /* the text columns in packed order (bind_record binds them so) */
    static const char head[] = "INSERT INTO requests (ts_ms, request_id, key_id, tenant, model, "
                               "provider, origin_node, route, node_id, cache, tokens_in, "
                               "tokens_out, cost_nanos, estimated, status, via_peer, saved_nanos, "
                               "cached_tokens, cache_write_tokens) VALUES ";
    static const char row[] = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    char sql[sizeof head + ROWS_PER_INSERT * sizeof row];
    size_t n = sizeof head - 1;
    memcpy(sql, head, n);
    for (int i = 0; i < rows; i++) {
        if (i) sql[n++] = ',';
        memcpy(sql + n, row, sizeof row - 1);
        n += sizeof row - 1;
    }
    sql[n] = '\0';
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db, sql, (int)n, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        log_event(LOG_ERROR, "ledger_prepare_failed", "ledger insert: %s", sqlite3_errmsg(db));
        return NULL;
    }
    return st;
}

static void bind_record(sqlite3_stmt *st, int row, const struct packed *r)
{
    int c = row * COLS + 1; /* parameters are numbered from 1 */
    sqlite3_bind_int64(st, c++, r->ts_ms);
    const char *text = packed_text(r);
    for (int i = 0; i < LT_COUNT; i++) {
        sqlite3_bind_text(st, c++, text, r->len[i], SQLITE_STATIC);
        text += r->len[i];
    }
    sqlite3_bind_int64(st, c++, r->tokens_in);
    sqlite3_bind_int64(st, c++, r->tokens_out);
    sqlite3_bind_int64(st, c++, r->cost_nanos);
    sqlite3_bind_int(st, c++, r->estimated);
    sqlite3_bind_int(st, c++, r->status);
    sqlite3_bind_int(st, c++, r->via_peer);
    sqlite3_bind_int64(st, c++, r->saved_nanos);
    sqlite3_bind_int64(st, c++, r->cached_tokens);
    sqlite3_bind_int64(st, c, r->cache_write_tokens);
}

void ledger_sqlite_prepare_inserts(sqlite3 *db, struct ledger_inserts *ins)
{
    /* Appending touches only the right edge of the table and its index: a
     * small page cache does (SQLite's default is 2 MB per connection). */
    char err[128];
    exec(db, "PRAGMA cache_size=-512", err, sizeof err);
    ins->one = prepare_insert(db, 1);
    ins->many = prepare_insert(db, ROWS_PER_INSERT);
}

void ledger_sqlite_finalize_inserts(struct ledger_inserts *ins)
{
    sqlite3_finalize(ins->one);
    sqlite3_finalize(ins->many);
    ins->one = ins->many = NULL;
}

int ledger_sqlite_insert(sqlite3 *db, const char *path, const struct ledger_inserts *ins,
                         const struct records *b)
{
    char err[256];
    if (!ins->one || !ins->many) {
        snprintf(err, sizeof err, "the INSERT could not be prepared");
        goto fail;
    }
    if (exec(db, "BEGIN IMMEDIATE", err, sizeof err) != 0) goto fail;
    const struct packed *r = (const struct packed *)b->data;
    for (size_t i = 0; i < b->n;) {
        bool many = b->n - i >= ROWS_PER_INSERT;
        sqlite3_stmt *st = many ? ins->many : ins->one;
        int rows = many ? ROWS_PER_INSERT : 1;
        sqlite3_reset(st);
        for (int k = 0; k < rows; k++, r = packed_next(r)) bind_record(st, k, r);
        if (sqlite3_step(st) != SQLITE_DONE) {
            snprintf(err, sizeof err, "%s", sqlite3_errmsg(db));
            sqlite3_reset(st);
            exec(db, "ROLLBACK", err + strlen(err), 0);
            goto fail;
        }
        i += (size_t)rows;
    }
    if (exec(db, "COMMIT", err, sizeof err) != 0) {
        exec(db, "ROLLBACK", err + strlen(err), 0);
        goto fail;
    }
    return 0;
fail:
    log_event(LOG_ERROR, "ledger_write_failed", "ledger %s: %s; retrying", path, err);
    return -1;
}

static const char restore_sql[] =
    "SELECT key_id, tenant, provider, model, ts_ms >= ?1, SUM(cost_nanos), via_peer"
    " FROM requests WHERE ts_ms >= ?2 GROUP BY 1, 2, 3, 4, 5, 7";

int ledger_sqlite_restore(sqlite3 *db, int64_t day_start_ms, int64_t month_start_ms,
                          ledger_restore_cb cb, void *ctx)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db, restore_sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, day_start_ms);
        sqlite3_bind_int64(st, 2, month_start_ms);
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            const char *k = (const char *)sqlite3_column_text(st, 0);
            const char *t = (const char *)sqlite3_column_text(st, 1);
            const char *p = (const char *)sqlite3_column_text(st, 2);
            const char *m = (const char *)sqlite3_column_text(st, 3);
            cb(ctx, k ? k : "", t ? t : "", p ? p : "", m ? m : "", sqlite3_column_int(st, 4) != 0,
               sqlite3_column_int64(st, 5), sqlite3_column_int(st, 6) != 0);
        }
        rc = s == SQLITE_DONE ? 0 : -1;
    }
    if (rc != 0) log_event(LOG_ERROR, "ledger_restore_failed", "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}

int ledger_sqlite_by_node(sqlite3 *db, int64_t day_start_ms, int64_t month_start_ms,
                          ledger_node_cb cb, void *ctx)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT node_id,"
                           " SUM(CASE WHEN ts_ms >= ?1 AND via_peer = 0"
                           "  THEN cost_nanos ELSE 0 END),"
                           " SUM(CASE WHEN via_peer = 0 THEN cost_nanos ELSE 0 END),"
                           " SUM(ts_ms >= ?1), COUNT(*)"
                           " FROM requests WHERE ts_ms >= ?2 GROUP BY node_id",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, day_start_ms);
        sqlite3_bind_int64(st, 2, month_start_ms);
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            const char *n = (const char *)sqlite3_column_text(st, 0);
            cb(ctx, n ? n : "", sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
               sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4));
        }
        rc = s == SQLITE_DONE ? 0 : -1;
    }
    if (rc != 0)
        log_event(LOG_ERROR, "ledger_query_failed", "spend by node: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc;
}


int ledger_sqlite_open(const char *path, sqlite3 **out, char *err, size_t errcap)
{
    make_parent_dirs(path);
    if (open_db(path, out, err, errcap) != 0) return -1;
    if (ledger_migrate(*out, err, errcap) < 0) {
        sqlite3_close(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

int ledger_sqlite_exec(sqlite3 *db, const char *sql, char *err, size_t errcap)
{
    return exec(db, sql, err, errcap);
}
