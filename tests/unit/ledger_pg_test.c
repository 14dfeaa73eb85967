/* ledger_pg_test: the PostgreSQL ledger's pure parts (the multi-row INSERT
 * builder, the binary COPY stream, UTF-8 cleaning, scrubbing the password
 * out of messages, masking database URLs) and the ledger with PostgreSQL
 * unreachable from the start
 * (a closed port): open succeeds, records are committed to the spool and
 * counted there, spend is restored from the spool, spend by node answers
 * "unreachable", a URL libpq cannot read is refused without the password
 * in the message or the log. With AIPROXY_TEST_PG_URL (set by
 * tests/integration/ledger-pg.test.mjs, which runs this binary against its
 * throwaway server): duplicates skipped, bad UTF-8 cleaned, on a live
 * PostgreSQL; the migration from schema 1 keeping rows, and the response
 * cache's columns through COPY and through the spool's drain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "budget/ledger.h"
#include "budget/ledger_batch.h"
#include "budget/ledger_pg.h"
#include "core/dburl.h"
#include "core/log.h"

static char dir[64];
static char path[128];
static char logpath[128];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/ledger_pg_test_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(path, sizeof path, "%s/spool.db", dir);
    snprintf(logpath, sizeof logpath, "%s/log.txt", dir);
    log_configure(LOG_DEBUG, false, logpath);
    return 0;
}

static int teardown(void **state)
{
    log_configure(LOG_ERROR, false, "stderr");
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- the INSERT builder ---- */

static void test_insert_sql(void **state)
{
    char sql[64 * 1024];
    size_t n = ledger_pg_insert_sql(1, sql, sizeof sql);
    assert_int_equal(n, strlen(sql));
    assert_string_equal(sql, "INSERT INTO requests (ts_ms, request_id, key_id, tenant, model, "
                             "provider, origin_node, route, node_id, cache, tokens_in, "
                             "tokens_out, cost_nanos, estimated, status, via_peer, saved_nanos, "
                             "cached_tokens, cache_write_tokens) "
                             "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,"
                             "$18,$19) ON CONFLICT (request_id) DO NOTHING");
    n = ledger_pg_insert_sql(3, sql, sizeof sql);
    assert_non_null(strstr(sql, "$19),($20,$21,"));
    assert_non_null(strstr(sql, ",$57) ON CONFLICT (request_id) DO NOTHING"));
    assert_null(strstr(sql, "$58"));
    n = ledger_pg_insert_sql(LEDGER_PG_ROWS_PER_INSERT, sql, sizeof sql);
    assert_true(n > 0);
    char last[32];
    snprintf(last, sizeof last, ",$%d)", LEDGER_PG_ROWS_PER_INSERT * LEDGER_PG_COLS);
    assert_non_null(strstr(sql, last));
    /* too small a buffer, or no row: nothing */
    assert_int_equal(ledger_pg_insert_sql(3, sql, 200), 0);
    assert_int_equal(ledger_pg_insert_sql(0, sql, sizeof sql), 0);
}

/* ---- the COPY stream ---- */

static uint32_t be32_at(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_copy_encode(void **state)
{
    struct records b = {0};
    struct ledger_record r = {.ts_ms = 0x0102030405060708, .request_id = "req_1", .key_id = "k",
                              .model = "ab\xe2\x82", .provider = "p", .node_id = "n1",
                              .cache = "hit", .tokens_in = 3, .tokens_out = 4, .cost_nanos = 0,
                              .estimated = true, .status = 200, .via_peer = false,
                              .saved_nanos = 0x1112131415161718, .cached_tokens = 1500,
                              .cache_write_tokens = 400};
    ledger_records_push(&b, &r);
    r.request_id = "req_2";
    r.model = "m";
    ledger_records_push(&b, &r);
    size_t cap = ledger_pg_copy_size(&b);
    unsigned char *out = malloc(cap);
    size_t n = ledger_pg_copy_encode(&b, (char *)out);
    assert_true(n <= cap);
    assert_memory_equal(out, "PGCOPY\n\377\r\n\0", 11);
    assert_int_equal(be32_at(out + 11), 0); /* flags */
    assert_int_equal(be32_at(out + 15), 0); /* no header extension */
    const unsigned char *p = out + 19;
    assert_int_equal(p[0] << 8 | p[1], LEDGER_PG_COLS);
    p += 2;
    assert_int_equal(be32_at(p), 8); /* ts_ms */
    assert_memory_equal(p + 4, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    p += 12;
    assert_int_equal(be32_at(p), 5); /* request_id */
    assert_memory_equal(p + 4, "req_1", 5);
    p += 9;
    assert_int_equal(be32_at(p), 1); /* key_id */
    p += 5;
    assert_int_equal(be32_at(p), 0); /* tenant: empty, not NULL */
    p += 4;
    assert_int_equal(be32_at(p), 4); /* model, cut inside a character: cleaned */
    assert_memory_equal(p + 4, "ab??", 4);
    p += 8;
    assert_int_equal(be32_at(p), 1); /* provider */
    p += 5;
    assert_int_equal(be32_at(p), 0); /* origin_node */
    assert_int_equal(be32_at(p + 4), 0); /* route */
    p += 8;
    assert_int_equal(be32_at(p), 2); /* node_id */
    assert_memory_equal(p + 4, "n1", 2);
    p += 6;
    assert_int_equal(be32_at(p), 3); /* cache: the last text column */
    assert_memory_equal(p + 4, "hit", 3);
    p += 7;
    assert_int_equal(be32_at(p), 8); /* tokens_in */
    assert_memory_equal(p + 4, "\0\0\0\0\0\0\0\x03", 8);
    /* the trailer ends the stream */
    assert_int_equal(out[n - 2], 0xFF);
    assert_int_equal(out[n - 1], 0xFF);
    /* the last tuple's last fields: status 200, via_peer false, saved_nanos,
     * cached_tokens, cache_write_tokens */
    const unsigned char *end = out + n - 2;
    assert_int_equal(be32_at(end - 12), 8);
    assert_memory_equal(end - 8, "\0\0\0\0\0\0\x01\x90", 8); /* 400 */
    assert_int_equal(be32_at(end - 24), 8);
    assert_memory_equal(end - 20, "\0\0\0\0\0\0\x05\xdc", 8); /* 1500 */
    end -= 24;
    assert_int_equal(be32_at(end - 12), 8);
    assert_memory_equal(end - 8, "\x11\x12\x13\x14\x15\x16\x17\x18", 8);
    assert_int_equal(be32_at(end - 12 - 5), 1);
    assert_int_equal(end[-12 - 1], 0);
    assert_int_equal(be32_at(end - 17 - 8), 4);
    assert_int_equal(be32_at(end - 17 - 4), 200);
    assert_true(n <= ledger_pg_copy_size(&b));
    free(out);
    free(b.data);
}

/* ---- UTF-8 ---- */

static void clean_is(const char *in, size_t n, const char *want, bool replaced)
{
    char out[64];
    assert_int_equal(ledger_pg_utf8_clean(in, n, out), replaced);
    assert_memory_equal(out, want, n);
    assert_int_equal(ledger_pg_utf8_valid_prefix(in, n) == n, !replaced);
}

static void test_utf8_clean(void **state)
{
    clean_is("gpt-4o", 6, "gpt-4o", false);
    const char *mixed = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"; /* 2, 3 and 4 bytes */
    clean_is(mixed, 14, mixed, false);
    /* a field cut inside a character */
    clean_is("ab\xe2\x82", 4, "ab??", true);
    clean_is("\xf0\x9f\x98", 3, "???", true);
    /* overlong, surrogate, past U+10FFFF, a lone continuation byte, 0xff */
    clean_is("\xc0\x80", 2, "??", true);
    clean_is("\xe0\x80\x80", 3, "???", true);
    clean_is("\xed\xa0\x80", 3, "???", true);
    clean_is("\xf4\x90\x80\x80", 4, "????", true);
    clean_is("a\x80" "b\xff", 4, "a?b?", true);
    assert_int_equal(ledger_pg_utf8_valid_prefix("ok\xc3\xa9\xc3", 5), 4);
}

/* ---- secrets ---- */

static void test_scrub(void **state)
{
    char m[128];
    snprintf(m, sizeof m, "FATAL:  password hunter2 refused\n\tfor hunter2\n");
    ledger_pg_scrub(m, sizeof m, "hunter2");
    assert_string_equal(m, "FATAL:  password *** refused  for ***");
    /* a message cut inside the secret */
    snprintf(m, sizeof m, "connect to x with hunt");
    ledger_pg_scrub(m, sizeof m, "hunter2");
    assert_string_equal(m, "connect to x with ***");
    /* a short secret grows into "***", within the buffer */
    snprintf(m, sizeof m, "a=pw b=pw");
    ledger_pg_scrub(m, sizeof m, "pw");
    assert_string_equal(m, "a=*** b=***");
    char small[9];
    memcpy(small, "pw pw pw", 9);
    ledger_pg_scrub(small, sizeof small, "pw");
    assert_null(strstr(small, "pw"));
    /* no secret: only the line is folded */
    snprintf(m, sizeof m, "one\ntwo\n");
    ledger_pg_scrub(m, sizeof m, NULL);
    assert_string_equal(m, "one two");
}

static void masked_is(const char *url, const char *want)
{
    char out[256];
    assert_string_equal(dburl_masked(url, out, sizeof out), want);
}

static void test_dburl(void **state)
{
    masked_is("postgres://aiproxy:s3cr%40t@db.example:5432/ledger",
              "postgres://aiproxy:***@db.example:5432/ledger");
    masked_is("postgresql://u@h/db", "postgresql://u@h/db");
    masked_is("postgres://h/db", "postgres://h/db");
    masked_is("postgres://u:@h/db", "postgres://u:@h/db");
    masked_is("postgres://h/db?sslmode=require&password=x1&connect_timeout=5",
              "postgres://h/db?sslmode=require&password=***&connect_timeout=5");
    masked_is("postgres://h/db?%70assword=x1", "postgres://h/db?%70assword=***");
    masked_is("postgres://u:p:q@h/db?password=z", "postgres://u:***@h/db?password=***");
    /* a strange URL: everything from the first ':' to the last '@' */
    masked_is("postgres://u:a@b@h/db", "postgres://u:***@h/db");
    /* cut short: never a piece of the password */
    char out[16];
    dburl_masked("postgres://u:hunter2@h/db", out, sizeof out);
    assert_string_equal(out, "postgres://u:**");
    dburl_masked("postgres://u:hunter2@h/db", out, 14);
    assert_string_equal(out, "postgres://u:");

    assert_true(dburl_unambiguous("postgres://u:p%40ss@h:5432/db?sslmode=disable"));
    assert_true(dburl_unambiguous("postgres://h/db"));
    assert_true(dburl_unambiguous("postgres://u:pa?ss@h/db"));
    assert_false(dburl_unambiguous("postgres://u:p@ss@h/db"));
    assert_false(dburl_unambiguous("postgres://u:p/ss@h/db"));
    assert_false(dburl_unambiguous("postgres://u:p\nss@h/db"));
    assert_false(dburl_unambiguous("not a url"));

    char raw[32];
    assert_true(dburl_raw_password("postgres://u:s3cr%40t@h/db", raw, sizeof raw));
    assert_string_equal(raw, "s3cr%40t");
    assert_false(dburl_raw_password("postgres://u@h/db", raw, sizeof raw));
    assert_false(dburl_raw_password("postgres://u:@h/db", raw, sizeof raw));
}

/* ---- the ledger with PostgreSQL unreachable ---- */

static bool file_holds(const char *file, const char *needle)
{
    FILE *f = fopen(file, "r");
    if (!f) return false;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

static int64_t scalar(const char *sql)
{
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void on_group(void *ctx, const char *key, const char *tenant, const char *provider,
                     const char *model, bool today, nanos_t cost, bool via_peer)
{
    nanos_t *sum = ctx;
    if (!via_peer) *sum += cost;
}

/* Port 1 on loopback: refused at once. */
#define DOWN_URL "postgres://aiproxy:hunter2-secret@127.0.0.1:1/ledger"

static void test_down_at_start_spools(void **state)
{
    char err[256] = "";
    struct ledger *l = ledger_open_with(path, DOWN_URL, err, sizeof err);
    assert_non_null(l);
    assert_true(ledger_is_shared(l));
    assert_false(ledger_backend_up(l));
    for (int i = 0; i < 100; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        struct ledger_record r = {.ts_ms = 1700000000000 + i, .request_id = id, .model = "m",
                                  .provider = "p", .cost_nanos = 7, .status = 200,
                                  .node_id = "n1", .via_peer = i == 0};
        if (i >= 90) { /* served from the cache: free, and what it saved */
            r.cost_nanos = 0;
            r.cache = "hit";
            r.saved_nanos = 1000 + i;
        }
        ledger_append(l, &r);
    }
    ledger_flush(l);
    assert_int_equal(ledger_committed(l), 100);
    assert_int_equal(ledger_spooled(l), 100);
    assert_int_equal(ledger_spool_depth(l), 100);
    assert_int_equal(ledger_db_committed(l), 0);
    nanos_t sum = 0;
    assert_int_equal(ledger_restore(l, 1700000000, 1690000000, on_group, &sum), 0);
    assert_int_equal(sum, 89 * 7); /* the spool's rows, one paid by a peer, ten hits */
    struct ledger_query *q = ledger_query_by_node(l, 1700000000, 1690000000);
    for (int i = 0; i < 500 && !ledger_query_done(q); i++) usleep(10 * 1000);
    assert_true(ledger_query_done(q));
    const struct ledger_node_spend *rows;
    size_t n;
    const char *source;
    assert_int_equal(ledger_query_result(q, &rows, &n, &source), -2);
    ledger_query_release(q);
    ledger_close(l);
    assert_int_equal(scalar("SELECT COUNT(*) FROM requests WHERE node_id = 'n1'"), 100);
    assert_int_equal(scalar("SELECT version FROM schema_version"), LEDGER_SCHEMA_VERSION);
    assert_int_equal(scalar("SELECT COUNT(*) FROM requests WHERE cache = 'hit'"), 10);
    assert_int_equal(scalar("SELECT COUNT(*) FROM requests WHERE cache = ''"), 90);
    assert_int_equal(scalar("SELECT SUM(saved_nanos) FROM requests"), 10 * 1000 + 945);
    /* reopened: the spool's rows are still waiting */
    l = ledger_open_with(path, DOWN_URL, err, sizeof err);
    assert_non_null(l);
    assert_int_equal(ledger_spool_depth(l), 100);
    ledger_close(l);
    assert_true(file_holds(logpath, "ledger_db_down"));
    assert_true(file_holds(logpath, "aiproxy@127.0.0.1:1/ledger"));
    assert_false(file_holds(logpath, "hunter2"));
}

/* Spend by node from a SQLite ledger: this node's rows, grouped. */
static void test_by_node_sqlite(void **state)
{
    char err[256];
    struct ledger *l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    const char *nodes[3] = {"b", "a", ""};
    for (int i = 0; i < 30; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        struct ledger_record r = {.ts_ms = (i % 2 ? 1700000000000 : 1695000000000) + i,
                                  .request_id = id, .cost_nanos = 10, .status = 200,
                                  .node_id = nodes[i % 3], .via_peer = i == 29};
        ledger_append(l, &r);
    }
    ledger_flush(l);
    struct ledger_query *q = ledger_query_by_node(l, 1700000000, 1690000000);
    for (int i = 0; i < 500 && !ledger_query_done(q); i++) usleep(10 * 1000);
    const struct ledger_node_spend *rows;
    size_t n;
    const char *source;
    assert_int_equal(ledger_query_result(q, &rows, &n, &source), 0);
    assert_string_equal(source, "sqlite");
    assert_int_equal(n, 3);
    assert_string_equal(rows[0].node_id, "");
    assert_string_equal(rows[1].node_id, "a");
    assert_string_equal(rows[2].node_id, "b");
    assert_int_equal(rows[1].requests_month, 10);
    assert_int_equal(rows[1].month, 100);
    assert_int_equal(rows[1].today, 50); /* odd i: today */
    assert_int_equal(rows[0].month, 90); /* r29 (node "") was paid by a peer */
    assert_int_equal(rows[0].requests_month, 10);
    ledger_query_release(q);
    ledger_close(l);
}

static void test_bad_url_refused(void **state)
{
    char err[256] = "";
    struct ledger *l =
        ledger_open_with(path, "postgres://u:hunter2@h/db?no_such_option=1", err, sizeof err);
    assert_null(l);
    assert_non_null(strstr(err, "budget.cost_db"));
    assert_null(strstr(err, "hunter2"));
    l = ledger_open_with(path, "postgres://u:hun@ter2@h/db", err, sizeof err);
    assert_null(l);
    assert_null(strstr(err, "ter2"));
}

/* ---- against a live server (AIPROXY_TEST_PG_URL; ledger-pg.test.mjs sets it) ---- */

static PGconn *live;

static int64_t pg_scalar(const char *sql)
{
    PGresult *res = PQexec(live, sql);
    int64_t v = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
                    ? strtoll(PQgetvalue(res, 0, 0), NULL, 10)
                    : -1;
    PQclear(res);
    return v;
}

static void append_range(struct ledger *l, const char *prefix, int from, int to, const char *model)
{
    for (int i = from; i < to; i++) {
        char id[48];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        struct ledger_record r = {.ts_ms = 1796083200000 + i, .request_id = id, .model = model,
                                  .provider = "p", .cost_nanos = 1000 + i, .status = 200,
                                  .tokens_in = i, .node_id = "unit"};
        ledger_append(l, &r);
    }
    ledger_flush(l);
}

/* New records go in with COPY; a batch holding request ids the server has
 * already (here: sent by an earlier ledger) is sent again with INSERT ...
 * ON CONFLICT DO NOTHING, more rows than one statement: each request once.
 * A model cut inside a character goes in cleaned. */
static void test_live_duplicates_utf8_sums(void **state)
{
    const char *url = getenv("AIPROXY_TEST_PG_URL");
    if (!url || !*url) {
        skip();
        return;
    }
    live = PQconnectdb(url);
    assert_int_equal(PQstatus(live), CONNECTION_OK);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "unit-%d", (int)getpid());
    char err[256];
    struct ledger *l = ledger_open_with(path, url, err, sizeof err);
    assert_non_null(l);
    assert_true(ledger_backend_up(l));
    append_range(l, prefix, 0, 300, "gpt");
    assert_int_equal(ledger_db_committed(l), 300);
    ledger_close(l);
    l = ledger_open_with(path, url, err, sizeof err);
    assert_non_null(l);
    append_range(l, prefix, 200, 600, "caf\xc3"); /* 100 already there */
    assert_int_equal(ledger_spooled(l), 0);
    char q[256];
    snprintf(q, sizeof q, "SELECT COUNT(*) FROM requests WHERE request_id LIKE '%s-%%'", prefix);
    assert_int_equal(pg_scalar(q), 600);
    snprintf(q, sizeof q, "SELECT SUM(cost_nanos) FROM requests WHERE request_id LIKE '%s-%%'",
             prefix);
    assert_int_equal(pg_scalar(q), 600 * 1000 + 599 * 600 / 2);
    snprintf(q, sizeof q, "SELECT COUNT(*) FROM requests WHERE request_id LIKE '%s-%%' AND "
             "model = 'caf?'", prefix);
    assert_int_equal(pg_scalar(q), 300); /* 300..599: the first 200..299 kept "gpt" */
    ledger_close(l);
    PQfinish(live);
    live = NULL;
    char log_has[64];
    snprintf(log_has, sizeof log_has, "ledger_db_duplicates");
    assert_true(file_holds(logpath, log_has));
}

static void pg_exec(const char *sql)
{
    PGresult *res = PQexec(live, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) fprintf(stderr, "%s: %s", sql,
                                                         PQerrorMessage(live));
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
}

/* One text value (the first row's first column), "" when none. */
static void pg_text_is(const char *sql, const char *want)
{
    PGresult *res = PQexec(live, sql);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 1);
    assert_string_equal(PQgetvalue(res, 0, 0), want);
    PQclear(res);
}

/* The response cache's columns on a live server: a ledger at schema 1
 * (before them) with a row migrates keeping it ('' and 0); a hit's cache
 * and saved_nanos go in through COPY, and through the spool (PostgreSQL
 * down when it was recorded) and its drain (INSERT ... ON CONFLICT). */
static void test_live_cache_columns(void **state)
{
    const char *url = getenv("AIPROXY_TEST_PG_URL");
    if (!url || !*url) {
        skip();
        return;
    }
    live = PQconnectdb(url);
    assert_int_equal(PQstatus(live), CONNECTION_OK);
    char prefix[32], q[512];
    snprintf(prefix, sizeof prefix, "cache-%d", (int)getpid());
    char err[256];
    struct ledger *l = ledger_open_with(path, url, err, sizeof err);
    assert_non_null(l);
    assert_true(ledger_backend_up(l));
    ledger_close(l);
    assert_int_equal(pg_scalar("SELECT version FROM schema_version"), LEDGER_PG_SCHEMA_VERSION);

    /* Back to schema 1, with a row written then. */
    snprintf(q, sizeof q, "BEGIN; ALTER TABLE requests DROP COLUMN cache, DROP COLUMN saved_nanos,"
             " DROP COLUMN cached_tokens, DROP COLUMN cache_write_tokens;"
             " UPDATE schema_version SET version = 1; INSERT INTO requests (request_id, ts_ms,"
             " tokens_in, tokens_out, cost_nanos, estimated, status, node_id) VALUES"
             " ('%s-v1', 1, 1, 2, 33, false, 200, 'old'); COMMIT", prefix);
    pg_exec(q);
    l = ledger_open_with(path, url, err, sizeof err);
    assert_non_null(l);
    assert_true(ledger_backend_up(l));
    assert_int_equal(pg_scalar("SELECT version FROM schema_version"), LEDGER_PG_SCHEMA_VERSION);
    snprintf(q, sizeof q, "SELECT cost_nanos FROM requests WHERE request_id = '%s-v1'", prefix);
    assert_int_equal(pg_scalar(q), 33);
    snprintf(q, sizeof q, "SELECT saved_nanos FROM requests WHERE request_id = '%s-v1'", prefix);
    assert_int_equal(pg_scalar(q), 0);
    snprintf(q, sizeof q, "SELECT cache || '|' || node_id FROM requests WHERE request_id = "
             "'%s-v1'", prefix);
    pg_text_is(q, "|old");

    /* COPY: a hit, a semantic hit, a miss, one that did not consult the cache */
    static const char *const caches[4] = {"hit", "semantic_hit", "miss", NULL};
    for (int i = 0; i < 4; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-copy-%d", prefix, i);
        struct ledger_record r = {.ts_ms = 1796083200000 + i, .request_id = id, .model = "m",
                                  .provider = "p", .cost_nanos = i < 2 ? 0 : 500,
                                  .status = 200, .node_id = "unit", .cache = caches[i],
                                  .saved_nanos = i < 2 ? 9000000000 + i : 0};
        ledger_append(l, &r);
    }
    ledger_flush(l);
    assert_int_equal(ledger_spooled(l), 0);
    ledger_close(l);
    snprintf(q, sizeof q, "SELECT string_agg(cache || ':' || saved_nanos || ':' || cost_nanos, ','"
             " ORDER BY request_id) FROM requests WHERE request_id LIKE '%s-copy-%%'", prefix);
    pg_text_is(q, "hit:9000000000:0,semantic_hit:9000000001:0,miss:0:500,:0:500");

    /* The spool: recorded while PostgreSQL is down, sent when it is back. */
    l = ledger_open_with(path, DOWN_URL, err, sizeof err);
    assert_non_null(l);
    for (int i = 0; i < 3; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-spool-%d", prefix, i);
        struct ledger_record r = {.ts_ms = 1796083200100 + i, .request_id = id, .model = "m",
                                  .provider = "p", .status = 200, .node_id = "unit",
                                  .cache = caches[i], .cost_nanos = i == 2 ? 600 : 0,
                                  .saved_nanos = i < 2 ? 700 + i : 0};
        ledger_append(l, &r);
    }
    ledger_flush(l);
    assert_int_equal(ledger_spooled(l), 3);
    ledger_close(l);
    l = ledger_open_with(path, url, err, sizeof err);
    assert_non_null(l);
    for (int i = 0; i < 500 && ledger_spool_depth(l) > 0; i++) usleep(10 * 1000);
    assert_int_equal(ledger_spool_depth(l), 0);
    ledger_close(l);
    snprintf(q, sizeof q, "SELECT string_agg(cache || ':' || saved_nanos || ':' || cost_nanos, ','"
             " ORDER BY request_id) FROM requests WHERE request_id LIKE '%s-spool-%%'", prefix);
    pg_text_is(q, "hit:700:0,semantic_hit:701:0,miss:0:600");
    PQfinish(live);
    live = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_sql),
        cmocka_unit_test(test_copy_encode),
        cmocka_unit_test(test_utf8_clean),
        cmocka_unit_test(test_scrub),
        cmocka_unit_test(test_dburl),
        cmocka_unit_test_setup_teardown(test_down_at_start_spools, setup, teardown),
        cmocka_unit_test_setup_teardown(test_by_node_sqlite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_url_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_duplicates_utf8_sums, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_cache_columns, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
