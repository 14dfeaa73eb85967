/* ledger_test: the SQLite ledger on real files in a temp dir: records
 * committed and read back, spend restored by day and month, the schema
 * version and migrations from versions 1, 4 and 5 keeping old rows (5 -> 6
 * makes the context buffer's tables), a database from a newer build
 * refused, close flushing everything, every field of many records (the
 * response cache's too) surviving the packed queue and multi-row inserts
 * in order, and records kept and retried in order when the database
 * refuses a batch. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "budget/ledger.h"
#include "core/log.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/ledger_test_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(path, sizeof path, "%s/sub/costs.db", dir);
    log_configure(LOG_ERROR, false, "stderr");
    return 0;
}

static int teardown(void **state)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
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

static struct ledger_record rec(int64_t ts_ms, const char *id, const char *key, nanos_t cost)
{
    struct ledger_record r;
    memset(&r, 0, sizeof r);
    r.ts_ms = ts_ms;
    r.request_id = id;
    r.key_id = key;
    r.model = "gpt-test";
    r.provider = "p1";
    r.tokens_in = 10;
    r.tokens_out = 5;
    r.cost_nanos = cost;
    r.status = 200;
    return r;
}

struct sums {
    nanos_t today, month, key_a_today;
    int groups;
};

static void on_group(void *ctx, const char *key, const char *tenant, const char *provider,
                     const char *model, bool today, nanos_t cost, bool via_peer)
{
    struct sums *s = ctx;
    (void)via_peer;
    s->groups++;
    s->month += cost;
    if (today) s->today += cost;
    if (today && strcmp(key, "a") == 0) s->key_a_today += cost;
}

static void test_append_restore(void **state)
{
    char err[256];
    struct ledger *l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    assert_int_equal(scalar("SELECT version FROM schema_version"), LEDGER_SCHEMA_VERSION);
    int64_t month_start = 1700000000, day_start = 1700500000;
    struct ledger_record r = rec(month_start * 1000 - 1, "old", "a", 1000); /* last month */
    ledger_append(l, &r);
    r = rec(month_start * 1000 + 5, "m1", "a", 200); /* this month, not today */
    ledger_append(l, &r);
    for (int i = 0; i < 1000; i++) {
        char id[16];
        snprintf(id, sizeof id, "t%d", i);
        r = rec(day_start * 1000 + i, id, i % 2 ? "a" : "b", 3);
        r.estimated = i % 3 == 0;
        ledger_append(l, &r);
    }
    ledger_flush(l);
    assert_int_equal(ledger_committed(l), 1002);
    struct sums s = {0};
    assert_int_equal(ledger_restore(l, day_start, month_start, on_group, &s), 0);
    assert_int_equal(s.today, 3000);
    assert_int_equal(s.month, 3200);
    assert_int_equal(s.key_a_today, 1500);
    ledger_close(l);
    assert_int_equal(scalar("SELECT COUNT(*) FROM requests"), 1002);
    assert_int_equal(scalar("SELECT COUNT(*) FROM requests WHERE estimated = 1"), 334);
    assert_int_equal(scalar("SELECT SUM(cost_nanos) FROM requests"), 4200);
    /* Reopening is idempotent: no migration runs twice. */
    l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    ledger_close(l);
    assert_int_equal(scalar("SELECT COUNT(*) FROM schema_version"), 1);
}

static void test_close_flushes(void **state)
{
    char err[256];
    struct ledger *l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    for (int i = 0; i < 5000; i++) {
        struct ledger_record r = rec(1000 + i, "x", "", 1);
        ledger_append(l, &r);
    }
    ledger_close(l); /* no flush call: close must commit everything */
    assert_int_equal(scalar("SELECT COUNT(*) FROM requests"), 5000);
}

static void exec_sql(const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fprintf(stderr, "%s: %s\n", sql, msg);
    sqlite3_free(msg);
    sqlite3_close(db);
    assert_int_equal(rc, SQLITE_OK);
}

/* Every field of every record reads back as appended, in order, across
 * more records than one batch and counts that are not multiples of the
 * rows per INSERT; strings at their caps are cut, not overrun. */
static void test_fields_in_order(void **state)
{
    char err[256];
    struct ledger *l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    const int n = LEDGER_BATCH + 77;
    /* NULL and "" both read back as "" */
    static const char *const caches[5] = {NULL, "hit", "semantic_hit", "miss", ""};
    for (int i = 0; i < n; i++) {
        char id[24];
        snprintf(id, sizeof id, "r%d", i);
        struct ledger_record r = rec(5000 + i, id, i % 3 ? "k" : "", i);
        r.tenant = i % 5 ? NULL : "team";
        char long_model[LEDGER_TEXT_MAX + 50];
        memset(long_model, 'm', sizeof long_model - 1);
        long_model[sizeof long_model - 1] = '\0';
        if (i == 7) r.model = long_model; /* cut at the cap */
        r.tokens_in = i * 2;
        r.tokens_out = i * 3;
        r.estimated = i % 2;
        r.status = i % 4 ? 200 : 499;
        r.cache = caches[i % 5];
        r.saved_nanos = i % 5 == 1 || i % 5 == 2 ? 1000000 + i : 0;
        ledger_append(l, &r);
        if (i % 1000 == 999) ledger_flush(l); /* batches of odd sizes too */
    }
    ledger_close(l);
    assert_int_equal(scalar("SELECT COUNT(*) FROM requests"), n);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT ts_ms, request_id, key_id, tenant, model, "
                     "provider, tokens_in, tokens_out, cost_nanos, estimated, status, cache, "
                     "saved_nanos FROM requests ORDER BY id", -1, &st, NULL), SQLITE_OK);
    int i = 0;
    for (; sqlite3_step(st) == SQLITE_ROW; i++) {
        char id[24];
        snprintf(id, sizeof id, "r%d", i);
        assert_int_equal(sqlite3_column_int64(st, 0), 5000 + i);
        assert_string_equal((const char *)sqlite3_column_text(st, 1), id);
        assert_string_equal((const char *)sqlite3_column_text(st, 2), i % 3 ? "k" : "");
        assert_string_equal((const char *)sqlite3_column_text(st, 3), i % 5 ? "" : "team");
        if (i == 7) assert_int_equal(sqlite3_column_bytes(st, 4), LEDGER_TEXT_MAX);
        else assert_string_equal((const char *)sqlite3_column_text(st, 4), "gpt-test");
        assert_string_equal((const char *)sqlite3_column_text(st, 5), "p1");
        assert_int_equal(sqlite3_column_int64(st, 6), i * 2);
        assert_int_equal(sqlite3_column_int64(st, 7), i * 3);
        assert_int_equal(sqlite3_column_int64(st, 8), i);
        assert_int_equal(sqlite3_column_int(st, 9), i % 2);
        assert_int_equal(sqlite3_column_int(st, 10), i % 4 ? 200 : 499);
        const char *cache = caches[i % 5];
        assert_string_equal((const char *)sqlite3_column_text(st, 11), cache ? cache : "");
        assert_int_equal(sqlite3_column_int64(st, 12),
                         i % 5 == 1 || i % 5 == 2 ? 1000000 + i : 0);
    }
    assert_int_equal(i, n);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void text_is(const char *sql, const char *want)
{
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), want);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* The response cache's columns (SPEC section 7): a hit is recorded with
 * cost 0 and what it saved; a record that did not consult the cache gets
 * '' and 0; a hit's saving is not spend. */
static void test_cache_columns(void **state)
{
    char err[256];
    struct ledger *l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    struct ledger_record r = rec(1700000000000, "hit1", "a", 0);
    r.cache = "hit";
    r.saved_nanos = 123456789012;
    ledger_append(l, &r);
    r = rec(1700000000001, "sem1", "a", 0);
    r.cache = "semantic_hit";
    r.saved_nanos = 42;
    ledger_append(l, &r);
    r = rec(1700000000002, "miss1", "a", 900);
    r.cache = "miss";
    ledger_append(l, &r);
    r = rec(1700000000003, "none1", "a", 700); /* cache NULL, saved_nanos 0 */
    ledger_append(l, &r);
    ledger_flush(l);
    struct sums s = {0};
    assert_int_equal(ledger_restore(l, 1700000000, 1690000000, on_group, &s), 0);
    assert_int_equal(s.month, 1600); /* the hits cost nothing */
    ledger_close(l);
    text_is("SELECT cache FROM requests WHERE request_id = 'hit1'", "hit");
    assert_int_equal(scalar("SELECT saved_nanos FROM requests WHERE request_id = 'hit1'"),
                     123456789012);
    assert_int_equal(scalar("SELECT cost_nanos FROM requests WHERE request_id = 'hit1'"), 0);
    text_is("SELECT cache FROM requests WHERE request_id = 'sem1'", "semantic_hit");
    assert_int_equal(scalar("SELECT saved_nanos FROM requests WHERE request_id = 'sem1'"), 42);
    text_is("SELECT cache FROM requests WHERE request_id = 'miss1'", "miss");
    assert_int_equal(scalar("SELECT saved_nanos FROM requests WHERE request_id = 'miss1'"), 0);
    text_is("SELECT cache FROM requests WHERE request_id = 'none1'", "");
    assert_int_equal(scalar("SELECT saved_nanos FROM requests WHERE request_id = 'none1'"), 0);
    assert_int_equal(scalar("SELECT typeof(cache) = 'text' AND typeof(saved_nanos) = 'integer'"
                            " FROM requests WHERE request_id = 'none1'"), 1);
}

/* A batch the database refuses stays queued, ahead of later records, and
 * is committed once the database accepts writes again. */
static void test_refused_batch_retried_in_order(void **state)
{
    char err[256];
    struct ledger *l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    exec_sql("CREATE TABLE block (x); INSERT INTO block VALUES (1);"
             "CREATE TRIGGER refuse BEFORE INSERT ON requests WHEN (SELECT COUNT(*) FROM block) > 0"
             " BEGIN SELECT RAISE(ABORT, 'refused for the test'); END;");
    for (int i = 0; i < 40; i++) {
        char id[16];
        snprintf(id, sizeof id, "a%d", i);
        struct ledger_record r = rec(1000 + i, id, "", 1);
        ledger_append(l, &r);
    }
    usleep(300 * 1000); /* the writer tries, is refused, waits */
    assert_int_equal(ledger_committed(l), 0);
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "b%d", i);
        struct ledger_record r = rec(2000 + i, id, "", 1);
        ledger_append(l, &r);
    }
    /* all 43 queued (the refused 40 put back in front), none committed */
    for (int waited = 0; ledger_queue_depth(l) != 43 && waited < 5000; waited += 10) usleep(10 * 1000);
    assert_int_equal(ledger_queue_depth(l), 43);
    assert_int_equal(ledger_committed(l), 0);
    exec_sql("DELETE FROM block");
    ledger_flush(l);
    assert_int_equal(ledger_committed(l), 43);
    ledger_close(l);
    assert_int_equal(scalar("SELECT COUNT(*) FROM requests"), 43);
    /* order kept: every a* row before every b* row */
    assert_int_equal(scalar("SELECT MAX(id) FROM requests WHERE request_id LIKE 'a%'") <
                         scalar("SELECT MIN(id) FROM requests WHERE request_id LIKE 'b%'"),
                     1);
    assert_int_equal(scalar("SELECT MIN(ts_ms) FROM requests WHERE request_id LIKE 'b%'"), 2000);
}

/* Threads append at once (each to its own queue); a flush waits for every
 * record appended before it, and each thread's records keep their order. */
struct appender {
    struct ledger *l;
    int k;
};

static void *append_many(void *arg)
{
    struct appender *a = arg;
    for (int i = 0; i < 3000; i++) {
        char id[24];
        snprintf(id, sizeof id, "t%d-%05d", a->k, i);
        struct ledger_record r = rec(1000 + i, id, "", 1);
        ledger_append(a->l, &r);
    }
    return NULL;
}

static void test_concurrent_appenders(void **state)
{
    char err[256];
    struct ledger *l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    pthread_t th[4];
    struct appender a[4];
    for (int k = 0; k < 4; k++) {
        a[k] = (struct appender){l, k};
        pthread_create(&th[k], NULL, append_many, &a[k]);
    }
    for (int k = 0; k < 4; k++) pthread_join(th[k], NULL);
    ledger_flush(l);
    assert_int_equal(ledger_committed(l), 12000);
    assert_int_equal(ledger_queue_depth(l), 0);
    assert_int_equal(ledger_dropped(l), 0);
    ledger_close(l);
    assert_int_equal(scalar("SELECT COUNT(DISTINCT request_id) FROM requests"), 12000);
    /* within a thread, ids (zero-padded) ascend with the row id */
    assert_int_equal(scalar("SELECT COUNT(*) FROM (SELECT request_id, LAG(request_id) OVER"
                            " (PARTITION BY substr(request_id, 1, 3) ORDER BY id) AS prev"
                            " FROM requests) WHERE prev > request_id"), 0);
}

static void test_migrates_from_v1(void **state)
{
    /* A database as the first release wrote it. */
    char err[256];
    char mk[256];
    snprintf(mk, sizeof mk, "mkdir -p '%s/sub'", dir);
    assert_int_equal(system(mk), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE schema_version (version INTEGER NOT NULL);"
                                      "INSERT INTO schema_version VALUES (0);", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    db = NULL;
    sqlite3_open(path, &db);
    assert_int_equal(ledger_migrate(db, err, sizeof err), LEDGER_SCHEMA_VERSION);
    /* Back to what version 1 had: no key tables, no mesh columns. */
    sqlite3_exec(db, "UPDATE schema_version SET version = 1; DROP TABLE meta; DROP TABLE api_keys;"
                     "ALTER TABLE requests DROP COLUMN origin_node;"
                     "ALTER TABLE requests DROP COLUMN route;"
                     "ALTER TABLE requests DROP COLUMN via_peer;"
                     "ALTER TABLE requests DROP COLUMN node_id;"
                     "ALTER TABLE requests DROP COLUMN cache;"
                     "ALTER TABLE requests DROP COLUMN saved_nanos;"
                     "ALTER TABLE requests DROP COLUMN cached_tokens;"
                     "ALTER TABLE requests DROP COLUMN cache_write_tokens;"
                     "DROP TABLE context_projects; DROP TABLE context_files;"
                     "INSERT INTO requests (ts_ms, request_id, tokens_in, tokens_out, cost_nanos,"
                     " estimated, status) VALUES (1, 'kept', 1, 1, 42, 0, 200);",
                 NULL, NULL, NULL);
    sqlite3_close(db);
    struct ledger *l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    ledger_close(l);
    assert_int_equal(scalar("SELECT version FROM schema_version"), LEDGER_SCHEMA_VERSION);
    assert_int_equal(scalar("SELECT cost_nanos FROM requests WHERE request_id = 'kept'"), 42);
    assert_int_equal(scalar("SELECT via_peer FROM requests WHERE request_id = 'kept'"), 0);
    assert_int_equal(scalar("SELECT length(node_id) FROM requests WHERE request_id = 'kept'"), 0);
    assert_int_equal(scalar("SELECT length(cache) FROM requests WHERE request_id = 'kept'"), 0);
    assert_int_equal(scalar("SELECT saved_nanos FROM requests WHERE request_id = 'kept'"), 0);
    assert_int_equal(scalar("SELECT COUNT(*) FROM api_keys"), 0);
}

/* A ledger at schema 4 (before the cache columns) with rows: opened, it
 * reaches the current version, its rows kept with cache '' and saved_nanos
 * 0, and new rows carry their cache fields after them. */
static void test_migrates_from_v4(void **state)
{
    char err[256];
    struct ledger *l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    ledger_close(l);
    exec_sql("UPDATE schema_version SET version = 4;"
             "ALTER TABLE requests DROP COLUMN cache;"
             "ALTER TABLE requests DROP COLUMN saved_nanos;"
             "ALTER TABLE requests DROP COLUMN cached_tokens;"
             "ALTER TABLE requests DROP COLUMN cache_write_tokens;"
             "DROP TABLE context_projects; DROP TABLE context_files;"
             "INSERT INTO requests (ts_ms, request_id, key_id, tokens_in, tokens_out, cost_nanos,"
             " estimated, status, origin_node, route, via_peer, node_id)"
             " VALUES (1, 'old4', 'k', 3, 4, 77, 1, 200, 'n0', 'n0', 0, 'n0');");
    assert_int_equal(scalar("SELECT COUNT(*) FROM pragma_table_info('requests')"
                            " WHERE name IN ('cache', 'saved_nanos')"), 0);
    l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    struct ledger_record r = rec(2, "new5", "k", 0);
    r.cache = "hit";
    r.saved_nanos = 77;
    ledger_append(l, &r);
    ledger_close(l);
    assert_int_equal(scalar("SELECT version FROM schema_version"), LEDGER_SCHEMA_VERSION);
    assert_int_equal(scalar("SELECT COUNT(*) FROM requests"), 2);
    assert_int_equal(scalar("SELECT cost_nanos FROM requests WHERE request_id = 'old4'"), 77);
    assert_int_equal(scalar("SELECT estimated FROM requests WHERE request_id = 'old4'"), 1);
    text_is("SELECT node_id FROM requests WHERE request_id = 'old4'", "n0");
    text_is("SELECT cache FROM requests WHERE request_id = 'old4'", "");
    assert_int_equal(scalar("SELECT saved_nanos FROM requests WHERE request_id = 'old4'"), 0);
    text_is("SELECT cache FROM requests WHERE request_id = 'new5'", "hit");
    assert_int_equal(scalar("SELECT saved_nanos FROM requests WHERE request_id = 'new5'"), 77);
    assert_int_equal(scalar("SELECT MAX(id) FROM requests WHERE request_id = 'old4'") <
                         scalar("SELECT MIN(id) FROM requests WHERE request_id = 'new5'"),
                     1);
}

/* A ledger at schema 5 (before the context buffer) with rows: opened, it
 * reaches the current version with its rows kept and the context tables
 * made, empty, with their keys (one row per scope and project, per scope,
 * project and path) and NULL contents allowed. */
static void test_migrates_from_v5(void **state)
{
    char err[256];
    struct ledger *l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    struct ledger_record r = rec(1, "old5", "k", 55);
    ledger_append(l, &r);
    ledger_close(l);
    exec_sql("UPDATE schema_version SET version = 5;"
             "ALTER TABLE requests DROP COLUMN cached_tokens;"
             "ALTER TABLE requests DROP COLUMN cache_write_tokens;"
             "DROP TABLE context_projects; DROP TABLE context_files;");
    assert_int_equal(scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'context_%'"), 0);
    l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    ledger_close(l);
    assert_int_equal(scalar("SELECT version FROM schema_version"), LEDGER_SCHEMA_VERSION);
    assert_int_equal(scalar("SELECT cost_nanos FROM requests WHERE request_id = 'old5'"), 55);
    assert_int_equal(scalar("SELECT COUNT(*) FROM context_projects"), 0);
    assert_int_equal(scalar("SELECT COUNT(*) FROM context_files"), 0);
    exec_sql("INSERT INTO context_projects (scope, project, updated_ms) VALUES ('k:a', 'p', 7);"
             "INSERT INTO context_files (scope, project, path, content, seen, version)"
             " VALUES ('k:a', 'p', 'a.c', NULL, x'41', 3);"
             "INSERT INTO context_files (scope, project, path, content, seen, version)"
             " VALUES ('k:b', 'p', 'a.c', x'42', NULL, 1);");
    assert_int_equal(scalar("SELECT injections + tokens_injected + tokens_saved"
                            " FROM context_projects"), 0);
    assert_int_equal(scalar("SELECT SUM(seen_same) FROM context_files"), 0);
    sqlite3 *db;
    sqlite3_open(path, &db);
    assert_int_not_equal(sqlite3_exec(db, "INSERT INTO context_files (scope, project, path,"
                                          " version) VALUES ('k:a', 'p', 'a.c', 4)",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
    assert_int_not_equal(sqlite3_exec(db, "INSERT INTO context_projects (scope, project,"
                                          " updated_ms) VALUES ('k:a', 'p', 8)",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
    sqlite3_close(db);
}

/* A ledger at schema 6 (before the prompt-cache counts) with rows: opened,
 * its rows are kept with 0 cached and 0 written tokens, and new rows carry
 * theirs. */
static void test_migrates_from_v6(void **state)
{
    char err[256];
    struct ledger *l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    struct ledger_record r = rec(1, "old6", "k", 66);
    ledger_append(l, &r);
    ledger_close(l);
    exec_sql("UPDATE schema_version SET version = 6;"
             "ALTER TABLE requests DROP COLUMN cached_tokens;"
             "ALTER TABLE requests DROP COLUMN cache_write_tokens;");
    l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    r = rec(2, "new7", "k", 77);
    r.tokens_in = 2000;
    r.cached_tokens = 1500;
    r.cache_write_tokens = 400;
    ledger_append(l, &r);
    ledger_close(l);
    assert_int_equal(scalar("SELECT version FROM schema_version"), LEDGER_SCHEMA_VERSION);
    assert_int_equal(scalar("SELECT cost_nanos FROM requests WHERE request_id = 'old6'"), 66);
    assert_int_equal(scalar("SELECT cached_tokens + cache_write_tokens FROM requests"
                            " WHERE request_id = 'old6'"), 0);
    assert_int_equal(scalar("SELECT cached_tokens FROM requests WHERE request_id = 'new7'"), 1500);
    assert_int_equal(scalar("SELECT cache_write_tokens FROM requests WHERE request_id = 'new7'"),
                     400);
}

static void test_refuses_newer_schema(void **state)
{
    char err[256];
    struct ledger *l = ledger_open(path, err, sizeof err);
    assert_non_null(l);
    ledger_close(l);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_exec(db, "UPDATE schema_version SET version = 99", NULL, NULL, NULL);
    sqlite3_close(db);
    l = ledger_open(path, err, sizeof err);
    assert_null(l);
    assert_non_null(strstr(err, "newer"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_flushes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fields_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_batch_retried_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appenders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_from_v1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_from_v4, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_from_v5, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_from_v6, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_newer_schema, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
