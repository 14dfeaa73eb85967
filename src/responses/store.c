/* store: stored responses in SQLite or PostgreSQL (responses/store.h). The
 * same five statements in both dialects; one connection behind a mutex.
 * PostgreSQL errors are reported by SQLSTATE only: libpq's messages may
 * quote the connection string. */
#include "responses/store.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "budget/pq_dl.h"
#include "core/alloc.h"
#include "core/log.h"

enum stmt { ST_PUT, ST_GET, ST_TURN, ST_HISTORY, ST_DELETE, ST_EXPIRE, ST_COUNT };

static const char sqlite_schema[] =
    "CREATE TABLE IF NOT EXISTS responses ("
    " id TEXT PRIMARY KEY, scope TEXT NOT NULL, previous_id TEXT, model TEXT,"
    " created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
    " response TEXT NOT NULL, turn TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires_at);";

static const char pg_schema[] =
    "CREATE TABLE IF NOT EXISTS responses ("
    " id TEXT PRIMARY KEY, scope TEXT NOT NULL, previous_id TEXT, model TEXT,"
    " created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,"
    " response TEXT NOT NULL, turn TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires_at);";

/* Parameters: ?1 id, ?2 scope, ?3 now; PUT's row ?4..?9. */
static const char *const sqlite_sql[ST_COUNT] = {
    [ST_PUT] = "INSERT OR REPLACE INTO responses (id, scope, previous_id, model, created_at,"
               " expires_at, response, turn) VALUES (?1, ?2, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_GET] = "SELECT response FROM responses WHERE id = ?1 AND scope = ?2 AND expires_at > ?3",
    [ST_TURN] = "SELECT turn FROM responses WHERE id = ?1 AND scope = ?2 AND expires_at > ?3",
    [ST_HISTORY] = "WITH RECURSIVE chain (id, previous_id, turn, depth) AS ("
                   " SELECT id, previous_id, turn, 0 FROM responses"
                   "  WHERE id = ?1 AND scope = ?2 AND expires_at > ?3"
                   " UNION ALL SELECT r.id, r.previous_id, r.turn, c.depth + 1 FROM responses r"
                   "  JOIN chain c ON r.id = c.previous_id"
                   "  WHERE r.scope = ?2 AND r.expires_at > ?3 AND c.depth < 1000)"
                   " SELECT turn FROM chain ORDER BY depth DESC",
    [ST_DELETE] = "DELETE FROM responses WHERE id = ?1 AND scope = ?2 AND expires_at > ?3",
    [ST_EXPIRE] = "DELETE FROM responses WHERE expires_at <= ?3",
};

static const char *const pg_sql[ST_COUNT] = {
    [ST_PUT] = "INSERT INTO responses (id, scope, previous_id, model, created_at, expires_at,"
               " response, turn) VALUES ($1, $2, $4, $5, $6::bigint, $7::bigint, $8, $9)"
               " ON CONFLICT (id) DO UPDATE SET scope = $2, previous_id = $4, model = $5,"
               " created_at = $6::bigint, expires_at = $7::bigint, response = $8, turn = $9",
    [ST_GET] = "SELECT response FROM responses WHERE id = $1 AND scope = $2"
               " AND expires_at > $3::bigint",
    [ST_TURN] = "SELECT turn FROM responses WHERE id = $1 AND scope = $2"
                " AND expires_at > $3::bigint",
    [ST_HISTORY] = "WITH RECURSIVE chain (id, previous_id, turn, depth) AS ("
                   " SELECT id, previous_id, turn, 0 FROM responses"
                   "  WHERE id = $1 AND scope = $2 AND expires_at > $3::bigint"
                   " UNION ALL SELECT r.id, r.previous_id, r.turn, c.depth + 1 FROM responses r"
                   "  JOIN chain c ON r.id = c.previous_id"
                   "  WHERE r.scope = $2 AND r.expires_at > $3::bigint AND c.depth < 1000)"
                   " SELECT turn FROM chain ORDER BY depth DESC",
    [ST_DELETE] = "DELETE FROM responses WHERE id = $1 AND scope = $2 AND expires_at > $3::bigint",
    [ST_EXPIRE] = "DELETE FROM responses WHERE expires_at <= $3::bigint",
};

struct resp_store {
    pthread_mutex_t lock;
    int64_t retention_s;
    /* SQLite */
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    /* PostgreSQL */
    char *pg_url;
    PGconn *pg;
    bool pg_prepared;
    int64_t pg_retry_at; /* after a failed connection: no new attempt before (unix s) */
};

/* A database that cannot be reached is tried again after this long; in
 * between, calls fail at once instead of waiting for a connection on the
 * worker each time. */
#define PG_RETRY_S 2

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* ---- PostgreSQL ---- */

static void pg_drop(struct resp_store *s)
{
    if (s->pg) PQfinish(s->pg);
    s->pg = NULL;
    s->pg_prepared = false;
}

static bool pg_ok(PGresult *r, ExecStatusType want)
{
    return r && PQresultStatus(r) == want;
}

static void pg_report(const char *what, PGresult *r)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    log_event(LOG_WARN, "responses_store_failed", "responses store: PostgreSQL %s failed (%s)",
              what, state ? state : "no answer");
}

/* A live connection with the statements prepared; false when PostgreSQL
 * cannot be reached (the caller answers 503 or stores nothing). */
static bool pg_ready(struct resp_store *s)
{
    if (s->pg && PQstatus(s->pg) != CONNECTION_OK) pg_drop(s);
    if (s->pg_prepared) return true;
    if (!s->pg) {
        if (now_s() < s->pg_retry_at) return false;
        static const char *const keys[] = {"connect_timeout", "application_name", "options",
                                           "dbname", NULL};
        const char *vals[] = {"3", "aiproxy-responses", "-c statement_timeout=10000",
                              s->pg_url, NULL};
        s->pg = PQconnectdbParams(keys, vals, 1);
        if (!s->pg || PQstatus(s->pg) != CONNECTION_OK) {
            log_event(LOG_WARN, "responses_store_down",
                      "responses store: cannot connect to PostgreSQL");
            pg_drop(s);
            s->pg_retry_at = now_s() + PG_RETRY_S;
            return false;
        }
    }
    PGresult *r = PQexec(s->pg, pg_schema);
    bool ok = pg_ok(r, PGRES_COMMAND_OK);
    if (!ok) pg_report("creating the table", r);
    PQclear(r);
    for (int i = 0; ok && i < ST_COUNT; i++) {
        char name[16]; /* "rs" and an int (the -O1 sanitizer build checks the bound) */
        snprintf(name, sizeof name, "rs%d", i);
        /* every parameter is text (unused ones too: their type must be
         * known), cast where a number is meant */
        static const Oid text_types[9] = {25, 25, 25, 25, 25, 25, 25, 25, 25};
        r = PQprepare(s->pg, name, pg_sql[i], 9, text_types);
        ok = pg_ok(r, PGRES_COMMAND_OK);
        if (!ok) pg_report("preparing a statement", r);
        PQclear(r);
    }
    if (!ok) {
        pg_drop(s);
        return false;
    }
    s->pg_prepared = true;
    return true;
}

/* Runs statement `st` with up to nine text parameters; the result (the
 * caller clears it), NULL when the database could not be reached or
 * refused the statement. One retry on a dropped connection. */
static PGresult *pg_run(struct resp_store *s, enum stmt st, const char *const *params,
                        const int *lengths)
{
    char name[8];
    snprintf(name, sizeof name, "rs%d", (int)st);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!pg_ready(s)) return NULL;
        PGresult *r = PQexecPrepared(s->pg, name, 9, params, lengths, NULL, 0);
        ExecStatusType t = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        if (t == PGRES_COMMAND_OK || t == PGRES_TUPLES_OK) return r;
        bool lost = PQstatus(s->pg) != CONNECTION_OK;
        if (!lost || attempt == 1) pg_report("statement", r);
        PQclear(r);
        if (!lost) return NULL;
        pg_drop(s);
    }
    return NULL;
}

/* ---- SQLite ---- */

static void sqlite_report(struct resp_store *s, const char *what)
{
    log_event(LOG_WARN, "responses_store_failed", "responses store: SQLite %s failed: %s", what,
              sqlite3_errmsg(s->db));
}

/* ---- open, close ---- */

struct resp_store *resp_store_open(const char *sqlite_path, const char *pg_url,
                                   int64_t retention_s, char *err, size_t errcap)
{
    struct resp_store *s = xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    s->retention_s = retention_s;
    if (pg_url) {
        if (pq_load(err, errcap) != 0) {
            free(s);
            return NULL;
        }
        s->pg_url = xstrdup(pg_url);
        /* not reachable now: the first call tries again */
        pthread_mutex_lock(&s->lock);
        pg_ready(s);
        pthread_mutex_unlock(&s->lock);
        return s;
    }
    if (sqlite3_open_v2(sqlite_path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errcap, "responses store: cannot open %s: %s", sqlite_path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        resp_store_close(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 5000);
    char *emsg = NULL;
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     &emsg) != SQLITE_OK ||
        sqlite3_exec(s->db, sqlite_schema, NULL, NULL, &emsg) != SQLITE_OK) {
        snprintf(err, errcap, "responses store: %s: %s", sqlite_path, emsg ? emsg : "failed");
        sqlite3_free(emsg);
        resp_store_close(s);
        return NULL;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, sqlite_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK) {
            snprintf(err, errcap, "responses store: %s: %s", sqlite_path, sqlite3_errmsg(s->db));
            resp_store_close(s);
            return NULL;
        }
    }
    return s;
}

void resp_store_close(struct resp_store *s)
{
    if (!s) return;
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(s->st[i]);
    if (s->db) sqlite3_close(s->db);
    pg_drop(s);
    free(s->pg_url);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* ---- statements ---- */

/* The parameters every statement takes: $1 id, $2 scope, $3 now; PUT's
 * $4..$9. Text parameters; lengths for the JSON (PostgreSQL text
 * parameters are NUL-terminated: lengths are for SQLite). */
struct params {
    const char *v[9];
    int len[9];
};

static void params_base(struct params *p, const char *id, const char *scope, char *nowbuf,
                        size_t cap)
{
    memset(p, 0, sizeof *p);
    snprintf(nowbuf, cap, "%lld", (long long)now_s());
    p->v[0] = id;
    p->v[1] = scope;
    p->v[2] = nowbuf;
    for (int i = 0; i < 9; i++) p->len[i] = p->v[i] ? (int)strlen(p->v[i]) : 0;
}

static sqlite3_stmt *sqlite_bind(struct resp_store *s, enum stmt st, const struct params *p)
{
    sqlite3_stmt *q = s->st[st];
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    int n = sqlite3_bind_parameter_count(q);
    for (int i = 0; i < 9; i++) {
        int idx = i + 1;
        if (idx > n || !sqlite3_bind_parameter_name(q, idx)) continue;
        if (!p->v[i]) continue; /* NULL */
        if (i == 2 || i == 5 || i == 6)
            sqlite3_bind_int64(q, idx, strtoll(p->v[i], NULL, 10));
        else
            sqlite3_bind_text(q, idx, p->v[i], p->len[i], SQLITE_STATIC);
    }
    return q;
}

enum resp_result resp_store_put(struct resp_store *s, const struct resp_record *r)
{
    char nowbuf[24], created[24], expires[24];
    struct params p;
    params_base(&p, r->id, r->scope, nowbuf, sizeof nowbuf);
    snprintf(created, sizeof created, "%lld", (long long)r->created_at);
    snprintf(expires, sizeof expires, "%lld", (long long)(r->created_at + s->retention_s));
    p.v[3] = r->previous_id;
    p.v[4] = r->model;
    p.v[5] = created;
    p.v[6] = expires;
    p.v[7] = r->response;
    p.v[8] = r->turn;
    for (int i = 3; i < 7; i++) p.len[i] = p.v[i] ? (int)strlen(p.v[i]) : 0;
    p.len[7] = (int)r->response_len;
    p.len[8] = (int)r->turn_len;
    enum resp_result out = RESP_FAILED;
    pthread_mutex_lock(&s->lock);
    if (s->db) {
        sqlite3_stmt *q = sqlite_bind(s, ST_PUT, &p);
        if (sqlite3_step(q) == SQLITE_DONE) out = RESP_OK;
        else sqlite_report(s, "storing a response");
        sqlite3_reset(q);
    } else {
        PGresult *res = pg_run(s, ST_PUT, p.v, p.len);
        if (res) out = RESP_OK;
        PQclear(res);
    }
    pthread_mutex_unlock(&s->lock);
    return out;
}

/* One text column of the first row of `st` into the arena. */
static enum resp_result get_text(struct resp_store *s, enum stmt st, const char *id,
                                 const char *scope, struct arena *a, char **out, size_t *len)
{
    char nowbuf[24];
    struct params p;
    params_base(&p, id, scope, nowbuf, sizeof nowbuf);
    enum resp_result res = RESP_FAILED;
    *out = NULL;
    *len = 0;
    pthread_mutex_lock(&s->lock);
    if (s->db) {
        sqlite3_stmt *q = sqlite_bind(s, st, &p);
        int rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            const void *t = sqlite3_column_text(q, 0);
            size_t n = (size_t)sqlite3_column_bytes(q, 0);
            *out = arena_alloc(a, n + 1);
            if (n) memcpy(*out, t, n);
            (*out)[n] = '\0';
            *len = n;
            res = RESP_OK;
        } else if (rc == SQLITE_DONE) {
            res = RESP_NOT_FOUND;
        } else {
            sqlite_report(s, "reading a response");
        }
        sqlite3_reset(q);
    } else {
        PGresult *r = pg_run(s, st, p.v, p.len);
        if (r && PQntuples(r) > 0) {
            const char *t = PQgetvalue(r, 0, 0);
            *len = strlen(t);
            *out = arena_strdup(a, t);
            res = RESP_OK;
        } else if (r) {
            res = RESP_NOT_FOUND;
        }
        PQclear(r);
    }
    pthread_mutex_unlock(&s->lock);
    return res;
}

enum resp_result resp_store_get(struct resp_store *s, const char *id, const char *scope,
                                struct arena *a, char **response, size_t *len)
{
    return get_text(s, ST_GET, id, scope, a, response, len);
}

enum resp_result resp_store_turn(struct resp_store *s, const char *id, const char *scope,
                                 struct arena *a, char **turn, size_t *len)
{
    return get_text(s, ST_TURN, id, scope, a, turn, len);
}

/* Appends the inside of the JSON array `t` (brackets and outer blanks
 * dropped) to the buffer; `first` tells whether a comma is needed. */
static void append_items(struct arena *a, char **buf, size_t *len, size_t *cap, const char *t,
                         size_t n, bool *first)
{
    while (n && (*t == ' ' || *t == '\n' || *t == '\t' || *t == '\r')) t++, n--;
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\n' || t[n - 1] == '\t' || t[n - 1] == '\r'))
        n--;
    if (n < 2 || t[0] != '[' || t[n - 1] != ']') return;
    t++;
    n -= 2;
    size_t k = 0;
    while (k < n && (t[k] == ' ' || t[k] == '\n' || t[k] == '\t' || t[k] == '\r')) k++;
    if (k == n) return; /* an empty turn */
    size_t need = *len + n + 2;
    if (need > *cap) {
        size_t ncap = *cap ? *cap * 2 : 4096;
        while (ncap < need) ncap *= 2;
        char *nb = arena_alloc(a, ncap);
        if (*len) memcpy(nb, *buf, *len);
        *buf = nb;
        *cap = ncap;
    }
    if (!*first) (*buf)[(*len)++] = ',';
    memcpy(*buf + *len, t, n);
    *len += n;
    *first = false;
}

enum resp_result resp_store_history(struct resp_store *s, const char *id, const char *scope,
                                    struct arena *a, char **items, size_t *len)
{
    char nowbuf[24];
    struct params p;
    params_base(&p, id, scope, nowbuf, sizeof nowbuf);
    char *buf = NULL;
    size_t blen = 0, cap = 0;
    bool first = true;
    size_t rows = 0;
    enum resp_result res = RESP_FAILED;
    pthread_mutex_lock(&s->lock);
    if (s->db) {
        sqlite3_stmt *q = sqlite_bind(s, ST_HISTORY, &p);
        int rc;
        while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
            append_items(a, &buf, &blen, &cap, (const char *)sqlite3_column_text(q, 0),
                         (size_t)sqlite3_column_bytes(q, 0), &first);
            rows++;
        }
        if (rc == SQLITE_DONE) res = rows ? RESP_OK : RESP_NOT_FOUND;
        else sqlite_report(s, "reading a conversation");
        sqlite3_reset(q);
    } else {
        PGresult *r = pg_run(s, ST_HISTORY, p.v, p.len);
        if (r) {
            rows = (size_t)PQntuples(r);
            for (size_t i = 0; i < rows; i++) {
                const char *t = PQgetvalue(r, (int)i, 0);
                append_items(a, &buf, &blen, &cap, t, strlen(t), &first);
            }
            res = rows ? RESP_OK : RESP_NOT_FOUND;
        }
        PQclear(r);
    }
    pthread_mutex_unlock(&s->lock);
    if (res != RESP_OK) return res;
    char *out = arena_alloc(a, blen + 3);
    out[0] = '[';
    if (blen) memcpy(out + 1, buf, blen);
    out[blen + 1] = ']';
    out[blen + 2] = '\0';
    *items = out;
    *len = blen + 2;
    return RESP_OK;
}

/* DELETE and EXPIRE: the number of rows removed, -1 on failure. */
static int64_t run_delete(struct resp_store *s, enum stmt st, const char *id, const char *scope)
{
    char nowbuf[24];
    struct params p;
    params_base(&p, id, scope, nowbuf, sizeof nowbuf);
    int64_t n = -1;
    pthread_mutex_lock(&s->lock);
    if (s->db) {
        sqlite3_stmt *q = sqlite_bind(s, st, &p);
        if (sqlite3_step(q) == SQLITE_DONE) n = sqlite3_changes(s->db);
        else sqlite_report(s, "deleting responses");
        sqlite3_reset(q);
    } else {
        PGresult *r = pg_run(s, st, p.v, p.len);
        if (r) n = strtoll(PQcmdTuples(r), NULL, 10);
        PQclear(r);
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

enum resp_result resp_store_delete(struct resp_store *s, const char *id, const char *scope)
{
    int64_t n = run_delete(s, ST_DELETE, id, scope);
    return n < 0 ? RESP_FAILED : n == 0 ? RESP_NOT_FOUND : RESP_OK;
}

int64_t resp_store_expire(struct resp_store *s)
{
    return run_delete(s, ST_EXPIRE, NULL, NULL);
}
