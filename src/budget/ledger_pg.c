/* ledger_pg: the ledger in PostgreSQL through libpq, for the writer thread
 * of ledger.c (see ledger_pg.h): the connection, the schema migrations,
 * batched inserts with binary parameters, and the sums read back. */
#include "budget/ledger_pg.h"

#include <endian.h>
#include "budget/pq_dl.h" /* <libpq-fe.h>, its calls through the loaded library */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/dburl.h"
#include "core/log.h"

/* PostgreSQL's type OIDs (catalog/pg_type_d.h is not installed with libpq). */
#define OID_BOOL 16
#define OID_INT8 20
#define OID_INT4 23
#define OID_TEXT 25

/* pg_advisory_xact_lock key of the migrations: "aiprxlg\0". */
#define MIGRATION_LOCK_KEY "7019241438478370560"

#define INSERT_SKIP "aiproxy_ledger_insert" /* the prepared full-size INSERT ... ON CONFLICT */
#define SQLSTATE_UNIQUE_VIOLATION "23505"

/* Migration i takes the schema from version i to i + 1. Never edit a
 * released step: add a new one. The columns are SQLite's `requests` (at
 * its version 4 for our version 1, its 5 for our 2, its 7 for our 3) but
 * its rowid `id`:
 * the request id is the key (one index fewer to maintain per row; compared
 * byte by byte whatever the database's locale), and ts_ms has a BRIN index
 * (rows arrive about in time order; it costs next to nothing per insert and
 * serves the month's range at start). Money and counts are BIGINT, never
 * floating point. */
static const char *const pg_migrations[] = {
    /* 0 -> 1: the request ledger, shared by every node */
    "CREATE TABLE requests ("
    " request_id TEXT COLLATE \"C\" PRIMARY KEY,"
    " ts_ms BIGINT NOT NULL,"
    " key_id TEXT NOT NULL DEFAULT '',"
    " tenant TEXT NOT NULL DEFAULT '',"
    " model TEXT NOT NULL DEFAULT '',"
    " provider TEXT NOT NULL DEFAULT '',"
    " tokens_in BIGINT NOT NULL,"
    " tokens_out BIGINT NOT NULL,"
    " cost_nanos BIGINT NOT NULL,"
    " estimated BOOLEAN NOT NULL,"
    " status INTEGER NOT NULL,"
    " origin_node TEXT NOT NULL DEFAULT '',"
    " route TEXT NOT NULL DEFAULT '',"
    " via_peer BOOLEAN NOT NULL DEFAULT false,"
    " node_id TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX requests_ts ON requests USING brin (ts_ms);",
    /* 1 -> 2: the response cache (SPEC section 7): "hit", "semantic_hit",
     * "miss" or '' (not consulted), and what a hit saved (a hit's own
     * cost_nanos is 0). Constant defaults: no table rewrite (PostgreSQL 11+). */
    "ALTER TABLE requests ADD COLUMN cache TEXT NOT NULL DEFAULT '',"
    " ADD COLUMN saved_nanos BIGINT NOT NULL DEFAULT 0;",
    /* 2 -> 3: prompt caching (SPEC section 9): of tokens_in, the tokens the
     * provider read from its prompt cache and those it wrote to it */
    "ALTER TABLE requests ADD COLUMN cached_tokens BIGINT NOT NULL DEFAULT 0,"
    " ADD COLUMN cache_write_tokens BIGINT NOT NULL DEFAULT 0;",
};

#define N_PG_MIGRATIONS (sizeof pg_migrations / sizeof pg_migrations[0])
_Static_assert(N_PG_MIGRATIONS == LEDGER_PG_SCHEMA_VERSION, "one migration per schema version");

/* Column order of the INSERT and the COPY (the text columns in packed
 * order), and each column's parameter type. */
#define INSERT_COLUMNS                                                                  \
    "ts_ms, request_id, key_id, tenant, model, provider, origin_node, route, node_id, " \
    "cache, tokens_in, tokens_out, cost_nanos, estimated, status, via_peer, saved_nanos, " \
    "cached_tokens, cache_write_tokens"
static const Oid column_types[LEDGER_PG_COLS] = {
    OID_INT8, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT,
    OID_TEXT, OID_INT8, OID_INT8, OID_INT8, OID_BOOL, OID_INT4, OID_BOOL, OID_INT8,
    OID_INT8, OID_INT8,
};
_Static_assert(LT_COUNT == 9, "the INSERT names nine text columns");
_Static_assert(LEDGER_PG_COLS == 1 + LT_COUNT + 9, "ts_ms, the text, nine numbers");

#define MAX_PARAMS (LEDGER_PG_ROWS_PER_INSERT * LEDGER_PG_COLS)
#define SQL_CAP (256 + LEDGER_PG_ROWS_PER_INSERT * LEDGER_PG_COLS * 8)

struct ledger_pg {
    char *url;
    char *password;     /* decoded, to scrub messages with; cleansed on free */
    char *raw_password; /* as written in the URL (maybe percent-encoded); ditto */
    char target[320];
    PGconn *conn;
    /* one statement's parameters (binary format) */
    const char **values;
    int *lengths, *formats;
    Oid *types;
    char *scratch; /* numbers in network order, cleaned text */
    size_t scratch_cap;
    char *sql;
};

/* ---- pure helpers ---- */

static char *put_be16(char *p, uint16_t v)
{
    uint16_t be = htobe16(v);
    memcpy(p, &be, 2);
    return p + 2;
}

static char *put_be32(char *p, uint32_t v)
{
    uint32_t be = htobe32(v);
    memcpy(p, &be, 4);
    return p + 4;
}

static char *put_be64(char *p, int64_t v)
{
    uint64_t be = htobe64((uint64_t)v);
    memcpy(p, &be, 8);
    return p + 8;
}

/* One field of COPY's binary format: its length, then its bytes. */
static char *put_field(char *p, const void *data, uint32_t len)
{
    p = put_be32(p, len);
    memcpy(p, data, len);
    return p + len;
}

size_t ledger_pg_copy_size(const struct records *b)
{
    /* signature, flags, extension length, trailer; per row: field count,
     * LEDGER_PG_COLS lengths, 62 bytes of numbers, the text */
    return 19 + 2 + b->n * (2 + LEDGER_PG_COLS * 4 + 62) + b->bytes;
}

size_t ledger_pg_copy_encode(const struct records *b, char *out)
{
    static const char signature[11] = "PGCOPY\n\377\r\n";
    char *p = out;
    memcpy(p, signature, 11);
    p = put_be32(p + 11, 0); /* flags */
    p = put_be32(p, 0);      /* header extension length */
    const struct packed *r = (const struct packed *)b->data;
    for (size_t k = 0; k < b->n; k++, r = packed_next(r)) {
        p = put_be16(p, LEDGER_PG_COLS);
        p = put_be64(put_be32(p, 8), r->ts_ms);
        const char *text = packed_text(r);
        for (int i = 0; i < LT_COUNT; i++) {
            size_t n = r->len[i];
            char *at = p + 4;
            p = put_field(p, text, (uint32_t)n);
            if (ledger_pg_utf8_valid_prefix(at, n) != n) ledger_pg_utf8_clean(text, n, at);
            text += n;
        }
        p = put_be64(put_be32(p, 8), r->tokens_in);
        p = put_be64(put_be32(p, 8), r->tokens_out);
        p = put_be64(put_be32(p, 8), r->cost_nanos);
        char estimated = r->estimated ? 1 : 0, via_peer = r->via_peer ? 1 : 0;
        p = put_field(p, &estimated, 1);
        p = put_be32(put_be32(p, 4), (uint32_t)r->status);
        p = put_field(p, &via_peer, 1);
        p = put_be64(put_be32(p, 8), r->saved_nanos);
        p = put_be64(put_be32(p, 8), r->cached_tokens);
        p = put_be64(put_be32(p, 8), r->cache_write_tokens);
    }
    p = put_be16(p, 0xFFFF); /* the trailer: a field count of -1 */
    return (size_t)(p - out);
}

size_t ledger_pg_insert_sql(int rows, char *out, size_t cap)
{
    if (rows < 1 || !out) return 0;
    size_t n = 0;
    int w = snprintf(out, cap, "INSERT INTO requests (" INSERT_COLUMNS ") VALUES ");
    if (w < 0 || (size_t)w >= cap) return 0;
    n = (size_t)w;
    int p = 1;
    for (int r = 0; r < rows; r++) {
        if (n + 2 >= cap) return 0;
        if (r) out[n++] = ',';
        out[n++] = '(';
        for (int c = 0; c < LEDGER_PG_COLS; c++) {
            w = snprintf(out + n, cap - n, c ? ",$%d" : "$%d", p++);
            if (w < 0 || (size_t)w >= cap - n) return 0;
            n += (size_t)w;
        }
        if (n + 1 >= cap) return 0;
        out[n++] = ')';
    }
    w = snprintf(out + n, cap - n, " ON CONFLICT (request_id) DO NOTHING");
    if (w < 0 || (size_t)w >= cap - n) return 0;
    return n + (size_t)w;
}

/* Length of the well-formed UTF-8 sequence at s[0..n), 0 when there is none
 * (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

size_t ledger_pg_utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(u + i, n - i);
        if (!k) return i;
        i += k;
    }
    return n;
}

bool ledger_pg_utf8_clean(const char *s, size_t n, char *out)
{
    const unsigned char *u = (const unsigned char *)s;
    bool replaced = false;
    for (size_t i = 0; i < n;) {
        size_t k = u[i] < 0x80 ? 1 : utf8_seq(u + i, n - i);
        if (!k) {
            out[i++] = '?';
            replaced = true;
            continue;
        }
        memcpy(out + i, s + i, k);
        i += k;
    }
    return replaced;
}

void ledger_pg_scrub(char *msg, size_t cap, const char *secret)
{
    if (!msg || !cap) return;
    size_t sl = secret ? strlen(secret) : 0;
    if (sl) {
        char *out = xmalloc(cap);
        size_t o = 0, len = strlen(msg);
        for (const char *p = msg; *p && o + 1 < cap;) {
            size_t left = len - (size_t)(p - msg);
            /* the secret, or (at the very end of a message cut short) a
             * start of it */
            if (strncmp(p, secret, left < sl ? left : sl) == 0) {
                for (int k = 0; k < 3 && o + 1 < cap; k++) out[o++] = '*';
                p += left < sl ? left : sl;
            } else {
                out[o++] = *p++;
            }
        }
        out[o] = '\0';
        memcpy(msg, out, o + 1);
        free(out);
    }
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
    /* no trailing blank from libpq's final newline */
    size_t len = strlen(msg);
    while (len && msg[len - 1] == ' ') msg[--len] = '\0';
}

/* ---- messages ---- */

/* `what`: `detail`, without the password, into err. */
static void fail(const struct ledger_pg *pg, char *err, size_t errcap, const char *what,
                 const char *detail)
{
    if (!err || !errcap) return;
    snprintf(err, errcap, "%s: %s", what, detail && *detail ? detail : "unknown error");
    ledger_pg_scrub(err, errcap, pg->password);
    ledger_pg_scrub(err, errcap, pg->raw_password);
}

static void quiet_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* "relation ... already exists, skipping" and the like */
}

/* ---- life cycle ---- */

struct ledger_pg *ledger_pg_new(const char *url, char *err, size_t errcap)
{
    if (!url || (strncmp(url, "postgres://", 11) != 0 && strncmp(url, "postgresql://", 13) != 0)) {
        snprintf(err, errcap, "budget.cost_db: expected a postgres:// or postgresql:// URL");
        return NULL;
    }
    if (!dburl_unambiguous(url)) {
        snprintf(err, errcap, "budget.cost_db: %s", DBURL_AMBIGUOUS_MESSAGE);
        return NULL;
    }
    if (pq_load(err, errcap) != 0) return NULL;
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &msg);
    if (!opts) {
        /* libpq's message may quote part of the URL, the password too */
        PQfreemem(msg);
        snprintf(err, errcap, "budget.cost_db: not a PostgreSQL URL libpq can read (expected "
                 "postgres://USER:PASS@HOST:PORT/DB, special characters percent-encoded)");
        return NULL;
    }
    struct ledger_pg *pg = xcalloc(1, sizeof *pg);
    pg->url = xstrdup(url);
    const char *user = "", *host = "localhost", *port = "5432", *db = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val) continue;
        if (strcmp(o->keyword, "user") == 0) user = o->val;
        else if (strcmp(o->keyword, "host") == 0) host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0 && strcmp(host, "localhost") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "port") == 0) port = o->val;
        else if (strcmp(o->keyword, "dbname") == 0) db = o->val;
        else if (strcmp(o->keyword, "password") == 0) pg->password = xstrdup(o->val);
    }
    char raw[256];
    if (dburl_raw_password(url, raw, sizeof raw)) pg->raw_password = xstrdup(raw);
    OPENSSL_cleanse(raw, sizeof raw);
    snprintf(pg->target, sizeof pg->target, "%s%s%s:%s/%s", user, *user ? "@" : "", host, port,
             db ? db : user);
    ledger_pg_scrub(pg->target, sizeof pg->target, pg->password);
    ledger_pg_scrub(pg->target, sizeof pg->target, pg->raw_password);
    /* the parsed options hold the password too */
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val && strcmp(o->keyword, "password") == 0) OPENSSL_cleanse(o->val, strlen(o->val));
    PQconninfoFree(opts);
    pg->values = xcalloc(MAX_PARAMS, sizeof *pg->values);
    pg->lengths = xcalloc(MAX_PARAMS, sizeof *pg->lengths);
    pg->formats = xcalloc(MAX_PARAMS, sizeof *pg->formats);
    pg->types = xcalloc(MAX_PARAMS, sizeof *pg->types);
    for (int i = 0; i < MAX_PARAMS; i++) {
        pg->formats[i] = 1; /* binary */
        pg->types[i] = column_types[i % LEDGER_PG_COLS];
    }
    pg->sql = xmalloc(SQL_CAP);
    return pg;
}

static void cleanse_free(char *s)
{
    if (!s) return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

void ledger_pg_free(struct ledger_pg *pg)
{
    if (!pg) return;
    ledger_pg_disconnect(pg);
    cleanse_free(pg->url);
    cleanse_free(pg->password);
    cleanse_free(pg->raw_password);
    free(pg->values);
    free(pg->lengths);
    free(pg->formats);
    free(pg->types);
    free(pg->scratch);
    free(pg->sql);
    free(pg);
}

const char *ledger_pg_target(const struct ledger_pg *pg)
{
    return pg->target;
}

bool ledger_pg_connected(const struct ledger_pg *pg)
{
    return pg->conn && PQstatus(pg->conn) == CONNECTION_OK;
}

void ledger_pg_disconnect(struct ledger_pg *pg)
{
    if (pg->conn) PQfinish(pg->conn);
    pg->conn = NULL;
}

/* Runs `sql` (no parameters); 0 when it succeeded. */
static int run(struct ledger_pg *pg, const char *sql, char *err, size_t errcap)
{
    PGresult *res = PQexec(pg->conn, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    /* COMMIT of a transaction that failed answers OK with the tag ROLLBACK */
    if (rc == 0 && strcmp(sql, "COMMIT") == 0 && strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        fail(pg, err, errcap, "COMMIT", "the transaction was rolled back");
        PQclear(res);
        return -1;
    }
    if (rc != 0) fail(pg, err, errcap, sql, PQerrorMessage(pg->conn));
    PQclear(res);
    return rc;
}

/* Brings the schema to LEDGER_PG_SCHEMA_VERSION in one transaction, under
 * an advisory lock: nodes starting together migrate one after another. */
static int migrate(struct ledger_pg *pg, char *err, size_t errcap)
{
    if (run(pg, "BEGIN", err, errcap) != 0 ||
        run(pg, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY ")", err, errcap) != 0 ||
        run(pg, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", err,
            errcap) != 0)
        return -1;
    PGresult *res = PQexec(pg->conn, "SELECT version FROM schema_version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fail(pg, err, errcap, "reading schema_version", PQerrorMessage(pg->conn));
        PQclear(res);
        return -1;
    }
    bool has_row = PQntuples(res) > 0;
    int version = has_row ? (int)strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    PQclear(res);
    if (version > (int)N_PG_MIGRATIONS) {
        snprintf(err, errcap, "the PostgreSQL ledger has schema version %d, newer than this "
                 "build's %d", version, (int)N_PG_MIGRATIONS);
        return -1;
    }
    for (int v = version; v < (int)N_PG_MIGRATIONS; v++) {
        if (run(pg, pg_migrations[v], err, errcap) != 0) {
            char keep[512];
            snprintf(keep, sizeof keep, "%s", err);
            snprintf(err, errcap, "migration to schema version %d failed: %s", v + 1, keep);
            return -1;
        }
    }
    if (version < (int)N_PG_MIGRATIONS) {
        char set[96];
        snprintf(set, sizeof set, has_row ? "UPDATE schema_version SET version = %d"
                                          : "INSERT INTO schema_version VALUES (%d)",
                 (int)N_PG_MIGRATIONS);
        if (run(pg, set, err, errcap) != 0) return -1;
    }
    if (run(pg, "COMMIT", err, errcap) != 0) return -1;
    if (version < (int)N_PG_MIGRATIONS)
        log_event(LOG_INFO, "ledger_migrated", "PostgreSQL ledger %s: schema migrated from "
                  "version %d to %d", pg->target, version, (int)N_PG_MIGRATIONS);
    return 0;
}

int ledger_pg_connect(struct ledger_pg *pg, char *err, size_t errcap)
{
    if (ledger_pg_connected(pg)) return 0;
    ledger_pg_disconnect(pg);
    /* Our defaults come first: what the URL says (?connect_timeout=...)
     * overrides them. statement_timeout and tcp_user_timeout bound a server
     * that stops answering (the writer must not hang on it forever). */
    static const char *const keys[] = {"connect_timeout", "application_name", "keepalives",
                                       "keepalives_idle", "keepalives_interval",
                                       "keepalives_count", "tcp_user_timeout", "options",
                                       "dbname", NULL};
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", LEDGER_PG_CONNECT_TIMEOUT_S);
    const char *vals[] = {timeout, "aiproxy", "1", "10", "5", "3", "20000",
                          "-c statement_timeout=30000", pg->url, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        fail(pg, err, errcap, "cannot connect", c ? PQerrorMessage(c) : "out of memory");
        if (c) PQfinish(c);
        return -1;
    }
    PQsetNoticeProcessor(c, quiet_notice, NULL);
    pg->conn = c;
    if (migrate(pg, err, errcap) != 0) {
        ledger_pg_disconnect(pg);
        return -1;
    }
    PGresult *res = ledger_pg_insert_sql(LEDGER_PG_ROWS_PER_INSERT, pg->sql, SQL_CAP)
                        ? PQprepare(c, INSERT_SKIP, pg->sql, MAX_PARAMS, pg->types)
                        : NULL;
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
        fail(pg, err, errcap, "preparing the INSERT", PQerrorMessage(c));
        PQclear(res);
        ledger_pg_disconnect(pg);
        return -1;
    }
    PQclear(res);
    return 0;
}

/* ---- inserts ---- */

/* Fills the parameters of `rows` records from `r`; returns the next record.
 * Text goes as it is (binary format is its bytes) unless it holds bytes
 * that are not UTF-8, then a cleaned copy in the scratch. */
static const struct packed *bind_rows(struct ledger_pg *pg, const struct packed *r, int rows,
                                      char **scratch)
{
    char *s = *scratch;
    for (int k = 0; k < rows; k++, r = packed_next(r)) {
        int c = k * LEDGER_PG_COLS;
        const char **v = pg->values + c;
        int *len = pg->lengths + c;
        v[0] = s, len[0] = 8, s = put_be64(s, r->ts_ms);
        const char *text = packed_text(r);
        for (int i = 0; i < LT_COUNT; i++) {
            size_t n = r->len[i];
            if (ledger_pg_utf8_valid_prefix(text, n) == n) {
                v[1 + i] = text;
            } else {
                ledger_pg_utf8_clean(text, n, s);
                v[1 + i] = s;
                s += n;
            }
            len[1 + i] = (int)n;
            text += n;
        }
        int col = 1 + LT_COUNT; /* the numbers after the text, in INSERT_COLUMNS order */
        v[col] = s, len[col++] = 8, s = put_be64(s, r->tokens_in);
        v[col] = s, len[col++] = 8, s = put_be64(s, r->tokens_out);
        v[col] = s, len[col++] = 8, s = put_be64(s, r->cost_nanos);
        v[col] = s, len[col++] = 1, *s++ = r->estimated ? 1 : 0;
        v[col] = s, len[col++] = 4, s = put_be32(s, (uint32_t)r->status);
        v[col] = s, len[col++] = 1, *s++ = r->via_peer ? 1 : 0;
        v[col] = s, len[col++] = 8, s = put_be64(s, r->saved_nanos);
        v[col] = s, len[col++] = 8, s = put_be64(s, r->cached_tokens);
        v[col] = s, len[col] = 8, s = put_be64(s, r->cache_write_tokens);
    }
    *scratch = s;
    return r;
}

static bool is_unique_violation(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state && strcmp(state, SQLSTATE_UNIQUE_VIOLATION) == 0;
}

/* The batch with INSERT ... ON CONFLICT (request_id) DO NOTHING, in one
 * transaction (one statement commits on its own). 0 or -1. */
static int insert_skipping(struct ledger_pg *pg, const struct records *b, char *err,
                           size_t errcap)
{
    size_t statements = (b->n + LEDGER_PG_ROWS_PER_INSERT - 1) / LEDGER_PG_ROWS_PER_INSERT;
    bool tx = statements > 1;
    if (tx && run(pg, "BEGIN", err, errcap) != 0) return -1;
    const struct packed *r = (const struct packed *)b->data;
    char *scratch = pg->scratch;
    for (size_t i = 0; i < b->n;) {
        int rows = b->n - i >= LEDGER_PG_ROWS_PER_INSERT ? LEDGER_PG_ROWS_PER_INSERT
                                                         : (int)(b->n - i);
        r = bind_rows(pg, r, rows, &scratch);
        int np = rows * LEDGER_PG_COLS;
        PGresult *res;
        if (rows == LEDGER_PG_ROWS_PER_INSERT) {
            res = PQexecPrepared(pg->conn, INSERT_SKIP, np, pg->values, pg->lengths, pg->formats,
                                 0);
        } else {
            ledger_pg_insert_sql(rows, pg->sql, SQL_CAP);
            res = PQexecParams(pg->conn, pg->sql, np, pg->types, pg->values, pg->lengths,
                               pg->formats, 0);
        }
        if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
            fail(pg, err, errcap, "INSERT", PQerrorMessage(pg->conn));
            PQclear(res);
            return -1;
        }
        PQclear(res);
        i += (size_t)rows;
    }
    if (tx && run(pg, "COMMIT", err, errcap) != 0) return -1;
    return 0;
}

/* New rows with COPY ... FROM STDIN (FORMAT binary): one statement (one
 * transaction), no SQL to parse, rows inserted in bulk. 0; 1 when a request
 * id was there already (nothing inserted, still connected); -1. */
static int copy_once(struct ledger_pg *pg, const struct records *b, char *err, size_t errcap)
{
    static const char copy_sql[] = "COPY requests (" INSERT_COLUMNS ") FROM STDIN "
                                   "(FORMAT binary)";
    PGresult *res = PQexec(pg->conn, copy_sql);
    if (!res || PQresultStatus(res) != PGRES_COPY_IN) {
        fail(pg, err, errcap, "COPY", PQerrorMessage(pg->conn));
        PQclear(res);
        return -1;
    }
    PQclear(res);
    size_t len = ledger_pg_copy_encode(b, pg->scratch);
    if (PQputCopyData(pg->conn, pg->scratch, (int)len) != 1 ||
        PQputCopyEnd(pg->conn, NULL) != 1) {
        fail(pg, err, errcap, "COPY", PQerrorMessage(pg->conn));
        return -1;
    }
    int rc = 0;
    while ((res = PQgetResult(pg->conn)) != NULL) {
        if (rc == 0 && PQresultStatus(res) != PGRES_COMMAND_OK) {
            rc = is_unique_violation(res) ? 1 : -1;
            fail(pg, err, errcap, "COPY", PQerrorMessage(pg->conn));
        }
        PQclear(res);
    }
    return rc;
}

int ledger_pg_insert(struct ledger_pg *pg, const struct records *b, bool may_exist, char *err,
                     size_t errcap)
{
    if (!ledger_pg_connected(pg)) {
        snprintf(err, errcap, "not connected");
        return -1;
    }
    if (b->n == 0) return 0;
    /* the COPY stream, or the parameters' numbers (62 bytes a row) and
     * cleaned text: the stream is the larger */
    size_t need = ledger_pg_copy_size(b);
    if (pg->scratch_cap < need) {
        free(pg->scratch);
        pg->scratch = xmalloc(need);
        pg->scratch_cap = need;
    }
    /* New rows go in with COPY: a fraction of the server's work of a
     * multi-row INSERT, whose ON CONFLICT costs twice a plain insert's
     * (speculative insertion). Should PostgreSQL hold one of them already
     * (a COMMIT whose answer was lost), the batch is sent again with
     * INSERT ... ON CONFLICT DO NOTHING, skipping the rows it holds. */
    int rc = may_exist ? insert_skipping(pg, b, err, errcap) : copy_once(pg, b, err, errcap);
    if (rc == 1) {
        log_event(LOG_INFO, "ledger_db_duplicates", "PostgreSQL ledger %s already holds some of "
                  "%zu records: sent again, skipping those", pg->target, b->n);
        rc = insert_skipping(pg, b, err, errcap);
    }
    if (rc != 0) {
        /* Dropping the connection rolls back whatever it had begun; the
         * writer connects again before its next try. */
        ledger_pg_disconnect(pg);
        return -1;
    }
    return 0;
}

/* ---- reads ---- */

static int64_t int_at(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* Runs a query with the two bounds as parameters; NULL (disconnected, with
 * err) on failure. */
static PGresult *query_bounds(struct ledger_pg *pg, const char *sql, int64_t day_start_ms,
                              int64_t month_start_ms, char *err, size_t errcap)
{
    if (!ledger_pg_connected(pg)) {
        snprintf(err, errcap, "not connected");
        return NULL;
    }
    char day[24], month[24];
    snprintf(day, sizeof day, "%lld", (long long)day_start_ms);
    snprintf(month, sizeof month, "%lld", (long long)month_start_ms);
    const char *params[2] = {day, month};
    static const Oid types[2] = {OID_INT8, OID_INT8};
    PGresult *res = PQexecParams(pg->conn, sql, 2, types, params, NULL, NULL, 0);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        fail(pg, err, errcap, "query", PQerrorMessage(pg->conn));
        PQclear(res);
        ledger_pg_disconnect(pg);
        return NULL;
    }
    return res;
}

int ledger_pg_restore(struct ledger_pg *pg, int64_t day_start_ms, int64_t month_start_ms,
                      ledger_restore_cb cb, void *ctx, char *err, size_t errcap)
{
    PGresult *res = query_bounds(
        pg,
        "SELECT key_id, tenant, provider, model, ts_ms >= $1, SUM(cost_nanos)::BIGINT, via_peer"
        " FROM requests WHERE ts_ms >= $2 GROUP BY 1, 2, 3, 4, 5, 7",
        day_start_ms, month_start_ms, err, errcap);
    if (!res) return -1;
    for (int i = 0, n = PQntuples(res); i < n; i++)
        cb(ctx, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
           PQgetvalue(res, i, 3), PQgetvalue(res, i, 4)[0] == 't', int_at(res, i, 5),
           PQgetvalue(res, i, 6)[0] == 't');
    PQclear(res);
    return 0;
}

int ledger_pg_by_node(struct ledger_pg *pg, int64_t day_start_ms, int64_t month_start_ms,
                      ledger_node_cb cb, void *ctx, char *err, size_t errcap)
{
    PGresult *res = query_bounds(
        pg,
        "SELECT node_id,"
        " COALESCE(SUM(cost_nanos) FILTER (WHERE ts_ms >= $1 AND NOT via_peer), 0)::BIGINT,"
        " COALESCE(SUM(cost_nanos) FILTER (WHERE NOT via_peer), 0)::BIGINT,"
        " COUNT(*) FILTER (WHERE ts_ms >= $1), COUNT(*)"
        " FROM requests WHERE ts_ms >= $2 GROUP BY node_id ORDER BY node_id",
        day_start_ms, month_start_ms, err, errcap);
    if (!res) return -1;
    for (int i = 0, n = PQntuples(res); i < n; i++)
        cb(ctx, PQgetvalue(res, i, 0), int_at(res, i, 1), int_at(res, i, 2), int_at(res, i, 3),
           int_at(res, i, 4));
    PQclear(res);
    return 0;
}
