/* persist: the context delta buffer in the ledger's local SQLite file
 * (context/persist.h): its own connection and prepared statements for the
 * store's write-through (context/persist_internal.h), and the load at
 * start. The tables come from the ledger's migration 5 -> 6
 * (budget/ledger_sqlite.c). */
#include "context/persist.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context/persist_internal.h"
#include "core/alloc.h"
#include "core/log.h"

enum stmt {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_PUT_PROJECT,
    ST_PUT_FILE,
    ST_SET_SEEN,
    ST_DELETE_FILE,
    ST_DELETE_FILES,
    ST_DELETE_PROJECT,
    ST_COUNT
};

static const char *const sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_PUT_PROJECT] = ("INSERT INTO context_projects (scope, project, injections, tokens_injected,"
                        " tokens_saved, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                        " ON CONFLICT (scope, project) DO UPDATE SET injections = ?3,"
                        " tokens_injected = ?4, tokens_saved = ?5, updated_ms = ?6"),
    [ST_PUT_FILE] = ("INSERT INTO context_files (scope, project, path, content, seen, seen_same,"
                     " version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                     " ON CONFLICT (scope, project, path) DO UPDATE SET content = ?4, seen = ?5,"
                     " seen_same = ?6, version = ?7"),
    [ST_SET_SEEN] = ("UPDATE context_files SET seen = ?4, seen_same = ?5"
                     " WHERE scope = ?1 AND project = ?2 AND path = ?3"),
    [ST_DELETE_FILE] = "DELETE FROM context_files WHERE scope = ?1 AND project = ?2 AND path = ?3",
    [ST_DELETE_FILES] = "DELETE FROM context_files WHERE scope = ?1 AND project = ?2",
    [ST_DELETE_PROJECT] = "DELETE FROM context_projects WHERE scope = ?1 AND project = ?2",
};

struct ctx_persist {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *st[ST_COUNT];
    bool in_txn; /* BEGIN succeeded */
    bool failed; /* a statement of this operation failed: the rest are skipped */
    char why[256];
};

/* ---- open, close ---- */

struct ctx_persist *ctx_persist_open(const char *path, char *err, size_t errcap)
{
    struct ctx_persist *p = xcalloc(1, sizeof *p);
    p->path = xstrdup(path);
    /* NOMUTEX: the store's lock serialises every use of the connection. */
    if (sqlite3_open_v2(path, &p->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, errcap, "cannot open %s: %s", path,
                 p->db ? sqlite3_errmsg(p->db) : "out of memory");
        ctx_persist_close(p);
        return NULL;
    }
    sqlite3_busy_timeout(p->db, 5000);
    /* journal_mode=WAL is the file's (the ledger set it); synchronous is
     * per connection: the ledger's durability (a commit survives kill -9) */
    if (sqlite3_exec(p->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errcap, "cannot use %s: %s", path, sqlite3_errmsg(p->db));
        ctx_persist_close(p);
        return NULL;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(p->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &p->st[i], NULL) !=
            SQLITE_OK) {
            snprintf(err, errcap,
                     "cannot use %s for the context buffer: %s (the ledger's schema 6 makes its "
                     "tables)",
                     path, sqlite3_errmsg(p->db));
            ctx_persist_close(p);
            return NULL;
        }
    }
    return p;
}

void ctx_persist_close(struct ctx_persist *p)
{
    if (!p) return;
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(p->st[i]);
    sqlite3_close(p->db);
    free(p->path);
    free(p);
}

/* ---- statements ---- */

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* NULL binds NULL; an empty content a zero-length blob (not NULL). */
static void bind_content(sqlite3_stmt *st, int i, const char *s, size_t len)
{
    if (!s)
        sqlite3_bind_null(st, i);
    else if (len == 0)
        sqlite3_bind_zeroblob(st, i, 0);
    else
        sqlite3_bind_blob64(st, i, s, (sqlite3_uint64)len, SQLITE_STATIC);
}

/* Runs the bound statement; on failure remembers why and fails the
 * operation. Returns false when it did not run (or failed). */
static bool run(struct ctx_persist *p, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW && !p->failed) {
        snprintf(p->why, sizeof p->why, "%s", sqlite3_errmsg(p->db));
        p->failed = true;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW;
}

/* The statement `i`, ready to bind, or NULL when the operation already
 * failed (or p is NULL: memory only). */
static sqlite3_stmt *stmt(struct ctx_persist *p, enum stmt i)
{
    if (!p || !p->in_txn || p->failed) return NULL;
    return p->st[i];
}

void ctx_persist_begin(struct ctx_persist *p)
{
    if (!p) return;
    p->failed = false;
    p->why[0] = '\0';
    p->in_txn = run(p, p->st[ST_BEGIN]);
}

int ctx_persist_end(struct ctx_persist *p, const char *op, const char *project)
{
    if (!p) return 0;
    if (p->in_txn && !p->failed) run(p, p->st[ST_COMMIT]);
    if (p->in_txn && p->failed) {
        /* a failed COMMIT may leave the transaction open */
        if (!sqlite3_get_autocommit(p->db)) {
            sqlite3_step(p->st[ST_ROLLBACK]);
            sqlite3_reset(p->st[ST_ROLLBACK]);
        }
    }
    p->in_txn = false;
    if (!p->failed) return 0;
    log_event(LOG_ERROR, "context_persist_failed",
              "context buffer: %s of project %s not saved in %s: %s (kept in memory only)", op,
              project, p->path, p->why);
    return -1;
}

void ctx_persist_put_project(struct ctx_persist *p, const char *scope, const char *project,
                             int64_t injections, int64_t tokens_injected, int64_t tokens_saved,
                             int64_t updated_ms)
{
    sqlite3_stmt *st = stmt(p, ST_PUT_PROJECT);
    if (!st) return;
    bind_text(st, 1, scope);
    bind_text(st, 2, project);
    sqlite3_bind_int64(st, 3, injections);
    sqlite3_bind_int64(st, 4, tokens_injected);
    sqlite3_bind_int64(st, 5, tokens_saved);
    sqlite3_bind_int64(st, 6, updated_ms);
    run(p, st);
}

void ctx_persist_put_file(struct ctx_persist *p, const char *scope, const char *project,
                          const char *path, const char *content, size_t content_len,
                          const char *seen, size_t seen_len, bool seen_same, int64_t version)
{
    sqlite3_stmt *st = stmt(p, ST_PUT_FILE);
    if (!st) return;
    bind_text(st, 1, scope);
    bind_text(st, 2, project);
    bind_text(st, 3, path);
    bind_content(st, 4, content, content_len);
    bind_content(st, 5, seen_same ? NULL : seen, seen_len);
    sqlite3_bind_int(st, 6, seen_same);
    sqlite3_bind_int64(st, 7, version);
    run(p, st);
}

void ctx_persist_set_seen(struct ctx_persist *p, const char *scope, const char *project,
                          const char *path, const char *seen, size_t seen_len, bool seen_same)
{
    sqlite3_stmt *st = stmt(p, ST_SET_SEEN);
    if (!st) return;
    bind_text(st, 1, scope);
    bind_text(st, 2, project);
    bind_text(st, 3, path);
    bind_content(st, 4, seen_same ? NULL : seen, seen_len);
    sqlite3_bind_int(st, 5, seen_same);
    run(p, st);
}

static void delete_by(struct ctx_persist *p, enum stmt i, const char *scope, const char *project,
                      const char *path)
{
    sqlite3_stmt *st = stmt(p, i);
    if (!st) return;
    bind_text(st, 1, scope);
    bind_text(st, 2, project);
    if (path) bind_text(st, 3, path);
    run(p, st);
}

void ctx_persist_delete_file(struct ctx_persist *p, const char *scope, const char *project,
                             const char *path)
{
    delete_by(p, ST_DELETE_FILE, scope, project, path);
}

void ctx_persist_delete_files(struct ctx_persist *p, const char *scope, const char *project)
{
    delete_by(p, ST_DELETE_FILES, scope, project, NULL);
}

void ctx_persist_delete_project(struct ctx_persist *p, const char *scope, const char *project)
{
    delete_by(p, ST_DELETE_FILES, scope, project, NULL);
    delete_by(p, ST_DELETE_PROJECT, scope, project, NULL);
}

/* ---- load ---- */

/* A content column: NULL stays NULL, a zero-length blob is "" (SQLite
 * gives NULL for its pointer). */
static const char *column_content(sqlite3_stmt *st, int i, size_t *len)
{
    *len = 0;
    if (sqlite3_column_type(st, i) == SQLITE_NULL) return NULL;
    const char *b = sqlite3_column_blob(st, i);
    *len = (size_t)sqlite3_column_bytes(st, i);
    return b ? b : "";
}

static const char *column_str(sqlite3_stmt *st, int i)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? (const char *)s : "";
}

int ctx_persist_load(struct ctx_persist *p, struct ctx_store *s)
{
    sqlite3_stmt *st = NULL;
    int rc = SQLITE_OK;
    if (sqlite3_prepare_v2(p->db,
                           "SELECT scope, project, injections, tokens_injected, tokens_saved,"
                           " updated_ms FROM context_projects ORDER BY scope, project",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ctx_store_load_project(s, column_str(st, 0), column_str(st, 1),
                               sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3),
                               sqlite3_column_int64(st, 4), sqlite3_column_int64(st, 5));
    if (rc != SQLITE_DONE) goto fail;
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(p->db,
                           "SELECT scope, project, path, content, seen, seen_same, version"
                           " FROM context_files ORDER BY scope, project, path",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        size_t content_len, seen_len;
        const char *content = column_content(st, 3, &content_len);
        const char *seen = column_content(st, 4, &seen_len);
        ctx_store_load_file(s, column_str(st, 0), column_str(st, 1), column_str(st, 2), content,
                            content_len, seen, seen_len, sqlite3_column_int(st, 5) != 0,
                            sqlite3_column_int64(st, 6));
    }
    if (rc != SQLITE_DONE) goto fail;
    sqlite3_finalize(st);
    return 0;
fail:
    log_event(LOG_ERROR, "context_load_failed", "context buffer: cannot read %s: %s", p->path,
              sqlite3_errmsg(p->db));
    sqlite3_finalize(st);
    return -1;
}
