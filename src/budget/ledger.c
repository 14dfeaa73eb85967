/* ledger: queue + writer thread + migrations over SQLite. */
#include "budget/ledger.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
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

/* ---- the queue and the writer ---- */

/* A queued record, packed: its numbers, then its five strings' bytes (no
 * NULs) in field order, padded to 8 bytes: about 100 bytes a record where
 * struct ledger_record takes 600, for the copy into the queue and for the
 * memory a burst holds. */
#define N_TEXT 7 /* text fields per record */

struct packed {
    int64_t ts_ms, tokens_in, tokens_out, cost_nanos;
    int32_t status;
    uint16_t len[N_TEXT]; /* request_id, key_id, tenant, model, provider, origin_node, route */
    uint8_t estimated;
    uint8_t via_peer;
};

static size_t packed_size(const struct packed *p)
{
    size_t n = sizeof *p;
    for (int i = 0; i < N_TEXT; i++) n += p->len[i];
    return (n + 7) & ~(size_t)7;
}

static const struct packed *packed_next(const struct packed *p)
{
    return (const struct packed *)((const unsigned char *)p + packed_size(p));
}

/* A run of packed records. */
struct records {
    unsigned char *data;
    size_t bytes, cap, n;
};

/* Workers append to shards (one per thread, by a per-thread index), so two
 * workers never contend for one lock or write one cache line of queue; the
 * writer drains every shard at once. */
#define SHARDS 8

struct shard {
    pthread_mutex_t lock;
    struct records q;
    uint64_t appended;  /* records ever queued here */
    uint64_t committed; /* of those, committed (the writer's count, under the ledger lock) */
    uint64_t taken;     /* of those, in the writer's current batch (ledger lock) */
    uint64_t dropped;
    bool used; /* counted in the ledger's shards_used */
} __attribute__((aligned(64)));

struct ledger {
    char *path;
    sqlite3 *db; /* the writer's connection; only the writer thread uses it once started */
    pthread_t thread;
    pthread_mutex_t lock; /* the writer's state below */
    pthread_cond_t wake;  /* records queued, a shard full, flush, or stop */
    pthread_cond_t done;  /* a batch committed */
    bool pending;         /* a shard got its first record since the writer looked */
    bool shard_full;      /* a shard holds LEDGER_BATCH records: no gathering */
    bool flush_wanted;    /* ledger_flush is waiting: commit without gathering */
    bool stop;
    size_t held;          /* records taken by the writer and not yet committed */
    atomic_bool closed;   /* appends are refused (ledger_close) */
    atomic_bool dropped_logged;
    atomic_int shards_used; /* shards that ever got a record: they split LEDGER_QUEUE_MAX */
    struct shard shards[SHARDS];
};

/* This thread's shard index: threads are numbered on first use. */
static int my_shard(void)
{
    static atomic_int next;
    static _Thread_local int mine = -1;
    if (mine < 0) mine = atomic_fetch_add(&next, 1) % SHARDS;
    return mine;
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

/* Rows per multi-row INSERT: one statement run per 32 records instead of
 * per record (each run has a fixed cost in SQLite's VM). */
#define ROWS_PER_INSERT 32
#define COLS 14 /* values per row */

static sqlite3_stmt *prepare_insert(sqlite3 *db, int rows)
{
    static const char head[] = "INSERT INTO requests (ts_ms, request_id, key_id, tenant, model, "
                               "provider, origin_node, route, tokens_in, tokens_out, cost_nanos, "
                               "estimated, status, via_peer) VALUES ";
    static const char row[] = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
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
    int c = row * COLS;
    sqlite3_bind_int64(st, c + 1, r->ts_ms);
    const char *text = (const char *)(r + 1);
    for (int i = 0; i < N_TEXT; i++) {
        sqlite3_bind_text(st, c + 2 + i, text, r->len[i], SQLITE_STATIC);
        text += r->len[i];
    }
    sqlite3_bind_int64(st, c + 9, r->tokens_in);
    sqlite3_bind_int64(st, c + 10, r->tokens_out);
    sqlite3_bind_int64(st, c + 11, r->cost_nanos);
    sqlite3_bind_int(st, c + 12, r->estimated);
    sqlite3_bind_int(st, c + 13, r->status);
    sqlite3_bind_int(st, c + 14, r->via_peer);
}

struct inserts {
    sqlite3_stmt *one, *many; /* 1 and ROWS_PER_INSERT rows */
};

/* Commits the records in one transaction. Returns 0 or -1 (rolled back). */
static int commit_batch(struct ledger *l, const struct inserts *ins, const struct records *b)
{
    char err[256];
    if (exec(l->db, "BEGIN IMMEDIATE", err, sizeof err) != 0) goto fail;
    const struct packed *r = (const struct packed *)b->data;
    for (size_t i = 0; i < b->n;) {
        bool many = b->n - i >= ROWS_PER_INSERT;
        sqlite3_stmt *st = many ? ins->many : ins->one;
        int rows = many ? ROWS_PER_INSERT : 1;
        sqlite3_reset(st);
        for (int k = 0; k < rows; k++, r = packed_next(r)) bind_record(st, k, r);
        if (sqlite3_step(st) != SQLITE_DONE) {
            snprintf(err, sizeof err, "%s", sqlite3_errmsg(l->db));
            sqlite3_reset(st);
            exec(l->db, "ROLLBACK", err + strlen(err), 0);
            goto fail;
        }
        i += (size_t)rows;
    }
    if (exec(l->db, "COMMIT", err, sizeof err) != 0) {
        exec(l->db, "ROLLBACK", err + strlen(err), 0);
        goto fail;
    }
    return 0;
fail:
    log_event(LOG_ERROR, "ledger_write_failed", "ledger %s: %s; retrying", l->path, err);
    return -1;
}

static void reserve_bytes(struct records *r, size_t more)
{
    if (r->bytes + more <= r->cap) return;
    size_t cap = r->cap ? r->cap : 16384;
    while (cap < r->bytes + more) cap *= 2;
    r->data = xrealloc(r->data, cap);
    r->cap = cap;
}

static void *writer_main(void *arg)
{
    struct ledger *l = arg;
    /* Appending touches only the right edge of the table and its index: a
     * small page cache does (SQLite's default is 2 MB per connection). */
    char err[128];
    exec(l->db, "PRAGMA cache_size=-512", err, sizeof err);
    struct inserts ins = {prepare_insert(l->db, 1), prepare_insert(l->db, ROWS_PER_INSERT)};
    struct records batch = {0};
    pthread_mutex_lock(&l->lock);
    for (;;) {
        while (!l->pending && !l->stop && !l->flush_wanted && batch.n == 0)
            pthread_cond_wait(&l->wake, &l->lock);
        /* Gather for a moment: one transaction per interval under load, not
         * one per request (each commit costs WAL writes and locks). */
        if (!l->stop && !l->flush_wanted && !l->shard_full) {
            struct timespec ts = clock_realtime_after_ms(LEDGER_GATHER_MS);
            while (!l->stop && !l->flush_wanted && !l->shard_full)
                if (pthread_cond_timedwait(&l->wake, &l->lock, &ts) != 0) break;
        }
        l->pending = l->shard_full = false;
        bool flushing = l->flush_wanted;
        /* Take what every shard holds, counting it per shard for ledger_flush. */
        for (int i = 0; i < SHARDS; i++) {
            struct shard *sh = &l->shards[i];
            pthread_mutex_lock(&sh->lock);
            size_t n = sh->q.n;
            if (n && batch.n == 0) { /* the common case: trade buffers, copy nothing */
                struct records t = sh->q;
                sh->q = batch;
                batch = t;
            } else if (n) {
                reserve_bytes(&batch, sh->q.bytes);
                memcpy(batch.data + batch.bytes, sh->q.data, sh->q.bytes);
                batch.bytes += sh->q.bytes;
                batch.n += n;
                sh->q.bytes = sh->q.n = 0;
            }
            pthread_mutex_unlock(&sh->lock);
            sh->taken += n;
        }
        l->held = batch.n;
        if (batch.n == 0) {
            if (l->stop) break;
            if (flushing) l->flush_wanted = false;
            pthread_cond_broadcast(&l->done);
            continue;
        }
        pthread_mutex_unlock(&l->lock);
        int rc = ins.one && ins.many ? commit_batch(l, &ins, &batch) : -1;
        pthread_mutex_lock(&l->lock);
        if (rc != 0) {
            /* Keep the records (in front of later ones); try again shortly
             * (a full disk, a lock). */
            if (l->stop) break; /* shutting down and the database refuses: give up, logged */
            struct timespec ts = clock_realtime_after_ms(1000);
            pthread_cond_timedwait(&l->wake, &l->lock, &ts);
            continue;
        }
        for (int i = 0; i < SHARDS; i++) {
            l->shards[i].committed += l->shards[i].taken;
            l->shards[i].taken = 0;
        }
        batch.bytes = batch.n = 0;
        l->held = 0;
        if (flushing) l->flush_wanted = false;
        pthread_cond_broadcast(&l->done);
    }
    l->stop = true;
    pthread_cond_broadcast(&l->done);
    pthread_mutex_unlock(&l->lock);
    free(batch.data);
    sqlite3_finalize(ins.one);
    sqlite3_finalize(ins.many);
    return NULL;
}

static void free_ledger(struct ledger *l)
{
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_destroy(&l->shards[i].lock);
        free(l->shards[i].q.data);
    }
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->wake);
    pthread_cond_destroy(&l->done);
    free(l->path);
    free(l);
}

struct ledger *ledger_open(const char *path, char *err, size_t errcap)
{
    make_parent_dirs(path);
    sqlite3 *db;
    if (open_db(path, &db, err, errcap) != 0) return NULL;
    if (ledger_migrate(db, err, errcap) < 0) {
        sqlite3_close(db);
        return NULL;
    }
    struct ledger *l = xcalloc(1, sizeof *l);
    l->path = xstrdup(path);
    l->db = db;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->wake, NULL);
    pthread_cond_init(&l->done, NULL);
    for (int i = 0; i < SHARDS; i++) pthread_mutex_init(&l->shards[i].lock, NULL);
    if (pthread_create(&l->thread, NULL, writer_main, l) != 0) {
        snprintf(err, errcap, "cannot start the ledger thread");
        sqlite3_close(db);
        free_ledger(l);
        return NULL;
    }
    return l;
}

/* Tells the writer (under its lock, so that it cannot miss it). */
static void wake_writer(struct ledger *l, bool full)
{
    pthread_mutex_lock(&l->lock);
    l->pending = true;
    if (full) l->shard_full = true;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
}

void ledger_append(struct ledger *l, const struct ledger_record *r)
{
    struct packed h = {.ts_ms = r->ts_ms, .tokens_in = r->tokens_in, .tokens_out = r->tokens_out,
                       .cost_nanos = r->cost_nanos, .status = r->status, .estimated = r->estimated,
                       .via_peer = r->via_peer};
    const char *text[N_TEXT] = {r->request_id, r->key_id,      r->tenant, r->model,
                                r->provider,   r->origin_node, r->route};
    for (int i = 0; i < N_TEXT; i++) {
        if (!text[i]) text[i] = "";
        h.len[i] = (uint16_t)strnlen(text[i], LEDGER_TEXT_MAX);
    }
    size_t size = packed_size(&h);

    struct shard *sh = &l->shards[my_shard()];
    pthread_mutex_lock(&sh->lock);
    if (!sh->used) {
        sh->used = true;
        atomic_fetch_add(&l->shards_used, 1);
    }
    int used = atomic_load_explicit(&l->shards_used, memory_order_relaxed);
    if (sh->q.n >= LEDGER_QUEUE_MAX / (size_t)(used > 0 ? used : 1) || atomic_load(&l->closed)) {
        sh->dropped++;
        pthread_mutex_unlock(&sh->lock);
        if (!atomic_exchange(&l->dropped_logged, true))
            log_event(LOG_ERROR, "ledger_dropped", "ledger %s: the queue is full or closed; "
                      "records are being dropped (request %s)", l->path, text[0]);
        return;
    }
    reserve_bytes(&sh->q, size);
    unsigned char *dst = sh->q.data + sh->q.bytes;
    memcpy(dst, &h, sizeof h);
    unsigned char *t = dst + sizeof h;
    for (int i = 0; i < N_TEXT; i++) {
        memcpy(t, text[i], h.len[i]);
        t += h.len[i];
    }
    sh->q.bytes += size;
    size_t n = ++sh->q.n;
    sh->appended++;
    pthread_mutex_unlock(&sh->lock);
    /* The writer sleeps until some shard has records, then gathers; a full
     * shard cuts the gathering short. */
    if (n == 1 || n == LEDGER_BATCH) wake_writer(l, n == LEDGER_BATCH);
}

static uint64_t appended_now(struct shard *sh)
{
    pthread_mutex_lock(&sh->lock);
    uint64_t n = sh->appended;
    pthread_mutex_unlock(&sh->lock);
    return n;
}

void ledger_flush(struct ledger *l)
{
    uint64_t target[SHARDS];
    for (int i = 0; i < SHARDS; i++) target[i] = appended_now(&l->shards[i]);
    pthread_mutex_lock(&l->lock);
    l->flush_wanted = true;
    pthread_cond_signal(&l->wake);
    for (int i = 0; i < SHARDS; i++)
        while (l->shards[i].committed < target[i] && !l->stop)
            pthread_cond_wait(&l->done, &l->lock);
    pthread_mutex_unlock(&l->lock);
}

void ledger_close(struct ledger *l)
{
    if (!l) return;
    atomic_store(&l->closed, true);
    pthread_mutex_lock(&l->lock);
    l->stop = true;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
    pthread_join(l->thread, NULL);
    size_t unwritten = ledger_queue_depth(l);
    if (unwritten)
        log_event(LOG_ERROR, "ledger_unwritten", "ledger %s: %zu records could not be written",
                  l->path, unwritten);
    char err[128];
    exec(l->db, "PRAGMA wal_checkpoint(TRUNCATE)", err, sizeof err);
    sqlite3_close(l->db);
    free_ledger(l);
}

uint64_t ledger_committed(struct ledger *l)
{
    pthread_mutex_lock(&l->lock);
    uint64_t n = 0;
    for (int i = 0; i < SHARDS; i++) n += l->shards[i].committed;
    pthread_mutex_unlock(&l->lock);
    return n;
}

size_t ledger_queue_depth(struct ledger *l)
{
    pthread_mutex_lock(&l->lock);
    size_t n = l->held;
    pthread_mutex_unlock(&l->lock);
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&l->shards[i].lock);
        n += l->shards[i].q.n;
        pthread_mutex_unlock(&l->shards[i].lock);
    }
    return n;
}

uint64_t ledger_dropped(struct ledger *l)
{
    uint64_t n = 0;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&l->shards[i].lock);
        n += l->shards[i].dropped;
        pthread_mutex_unlock(&l->shards[i].lock);
    }
    return n;
}

int ledger_restore(struct ledger *l, int64_t day_start_s, int64_t month_start_s,
                   ledger_restore_cb cb, void *ctx)
{
    sqlite3 *db;
    char err[256];
    if (open_db(l->path, &db, err, sizeof err) != 0) {
        log_event(LOG_ERROR, "ledger_restore_failed", "%s", err);
        return -1;
    }
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT key_id, tenant, provider, model, ts_ms >= ?1, SUM(cost_nanos),"
                           " via_peer FROM requests WHERE ts_ms >= ?2 GROUP BY 1, 2, 3, 4, 5, 7",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, day_start_s * 1000);
    sqlite3_bind_int64(st, 2, month_start_s * 1000);
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
out:
    if (rc != 0) log_event(LOG_ERROR, "ledger_restore_failed", "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}
