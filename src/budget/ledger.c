/* ledger: the append queues, the writer thread and the SQLite side (the
 * ledger itself, or PostgreSQL's spool); ledger_pg.c talks to PostgreSQL. */
#include "budget/ledger.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "budget/ledger_batch.h"
#include "budget/ledger_pg.h"
#include "budget/ledger_sqlite.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"

/* ---- the queue and the writer ---- */

void ledger_records_reserve(struct records *r, size_t more)
{
    if (r->bytes + more <= r->cap) return;
    size_t cap = r->cap ? r->cap : 16384;
    while (cap < r->bytes + more) cap *= 2;
    r->data = xrealloc(r->data, cap);
    r->cap = cap;
}

/* The record's strings in packed order (NULL as ""), their lengths cut at
 * LEDGER_TEXT_MAX, and its packed head. */
static void record_texts(const struct ledger_record *r, const char *text[LT_COUNT],
                         struct packed *h)
{
    *h = (struct packed){.ts_ms = r->ts_ms, .tokens_in = r->tokens_in,
                         .tokens_out = r->tokens_out, .cost_nanos = r->cost_nanos,
                         .saved_nanos = r->saved_nanos, .cached_tokens = r->cached_tokens,
                         .cache_write_tokens = r->cache_write_tokens, .status = r->status,
                         .estimated = r->estimated, .via_peer = r->via_peer};
    const char *t[LT_COUNT] = {
        [LT_REQUEST_ID] = r->request_id, [LT_KEY_ID] = r->key_id,
        [LT_TENANT] = r->tenant,         [LT_MODEL] = r->model,
        [LT_PROVIDER] = r->provider,     [LT_ORIGIN_NODE] = r->origin_node,
        [LT_ROUTE] = r->route,           [LT_NODE_ID] = r->node_id,
        [LT_CACHE] = r->cache,
    };
    for (int i = 0; i < LT_COUNT; i++) {
        text[i] = t[i] ? t[i] : "";
        h->len[i] = (uint16_t)strnlen(text[i], LEDGER_TEXT_MAX);
    }
}

static void push_packed(struct records *q, const struct packed *h, const char *const text[LT_COUNT])
{
    size_t size = packed_size(h);
    ledger_records_reserve(q, size);
    unsigned char *dst = q->data + q->bytes;
    memcpy(dst, h, sizeof *h);
    unsigned char *t = dst + sizeof *h;
    for (int i = 0; i < LT_COUNT; i++) {
        memcpy(t, text[i], h->len[i]);
        t += h->len[i];
    }
    q->bytes += size;
    q->n++;
}

void ledger_records_push(struct records *r, const struct ledger_record *rec)
{
    const char *text[LT_COUNT];
    struct packed h;
    record_texts(rec, text, &h);
    push_packed(r, &h, text);
}

/* Workers append to shards (one per thread, by a per-thread index), so two
 * workers never contend for one lock or write one cache line of queue; the
 * writer drains every shard at once. */
#define SHARDS 8

/* PostgreSQL retries: 250 ms after it failed, doubling to 5 s. */
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000
#define SPOOL_CHUNK 4096 /* spool rows sent to PostgreSQL per transaction */
#define TEXT_OF_(x) #x
#define TEXT_OF(x) TEXT_OF_(x)

/* The spool's oldest rows: id, ts_ms, the text fields in packed order, then
 * the numbers (drain_chunk reads them by position). */
#define SPOOL_READ_SQL                                                                          \
    "SELECT id, ts_ms, request_id, key_id, tenant, model, provider, origin_node, route,"       \
    " node_id, cache, tokens_in, tokens_out, cost_nanos, estimated, status, via_peer,"         \
    " saved_nanos, cached_tokens, cache_write_tokens FROM requests ORDER BY id LIMIT " TEXT_OF(SPOOL_CHUNK)
_Static_assert(LT_COUNT == 9, "SPOOL_READ_SQL names nine text columns");

struct shard {
    pthread_mutex_t lock;
    struct records q;
    uint64_t appended;  /* records ever queued here */
    uint64_t committed; /* of those, committed (the writer's count, under the ledger lock) */
    uint64_t taken;     /* of those, in the writer's current batch (ledger lock) */
    uint64_t dropped;
    bool used; /* counted in the ledger's shards_used */
} __attribute__((aligned(64)));

enum query_kind { QUERY_RESTORE, QUERY_BY_NODE };

/* A read the writer thread runs for someone (ledger_restore, GET
 * /v1/budget?by=node). Two references: the asker's and the writer's. */
struct ledger_query {
    enum query_kind kind;
    int64_t day_start_ms, month_start_ms;
    ledger_restore_cb cb; /* QUERY_RESTORE */
    void *ctx;
    int rc;
    const char *source;
    struct ledger_node_spend *rows; /* QUERY_BY_NODE */
    size_t n, cap;
    atomic_bool done;
    atomic_int refs;
    struct ledger_query *next;
};

struct ledger {
    char *path;
    sqlite3 *db; /* the writer's connection; only the writer thread uses it once started */
    pthread_t thread;
    pthread_mutex_t lock; /* the writer's state below */
    pthread_cond_t wake;  /* records queued, a shard full, flush, a query, or stop */
    pthread_cond_t done;  /* a batch committed, a query answered */
    bool pending;         /* a shard got its first record since the writer looked */
    bool shard_full;      /* a shard holds LEDGER_BATCH records: no gathering */
    bool flush_wanted;    /* ledger_flush is waiting: commit without gathering */
    bool stop;
    size_t held;          /* records taken by the writer and not yet committed */
    struct ledger_query *queries; /* waiting for the writer (lock) */
    atomic_bool closed;   /* appends are refused (ledger_close) */
    atomic_bool dropped_logged;
    atomic_int shards_used; /* shards that ever got a record: they split LEDGER_QUEUE_MAX */
    struct shard shards[SHARDS];

    /* PostgreSQL (NULL: the SQLite file is the ledger, else its spool).
     * The writer thread owns all of it; the atomics are read by metrics. */
    struct ledger_pg *pg;
    sqlite3_stmt *spool_read, *spool_delete;
    atomic_bool db_up;
    atomic_uint_fast64_t db_committed, spooled, spool_depth;
    int64_t retry_at_ms, backoff_ms; /* the next connection attempt */
    int64_t drain_at_ms; /* the next spool chunk (later after the spool failed) */
    bool outage_logged; /* ledger_db_down was logged; ledger_db_up not yet */
    bool report_drain;  /* log ledger_db_up once the spool is empty */
    uint64_t drained;   /* spool rows sent since the last ledger_db_up */
};

/* This thread's shard index: threads are numbered on first use. */
static int my_shard(void)
{
    static atomic_int next;
    static _Thread_local int mine = -1;
    if (mine < 0) mine = atomic_fetch_add(&next, 1) % SHARDS;
    return mine;
}

/* ---- PostgreSQL: connection state, spool, drain (writer thread) ---- */

/* Logs ledger_db_up once the spool is empty after an outage (or after a
 * start with rows waiting). */
static void note_drained(struct ledger *l)
{
    if (!l->report_drain || atomic_load(&l->spool_depth) > 0 || !atomic_load(&l->db_up)) return;
    log_event(LOG_INFO, "ledger_db_up", "PostgreSQL ledger %s reachable; %llu spooled records "
              "drained from %s", ledger_pg_target(l->pg), (unsigned long long)l->drained, l->path);
    l->report_drain = l->outage_logged = false;
    l->drained = 0;
}

/* PostgreSQL failed (`why` holds no password): spool from now on, retry
 * after the backoff; logged once per outage. */
static void backend_down(struct ledger *l, const char *why)
{
    ledger_pg_disconnect(l->pg);
    bool was_up = atomic_exchange(&l->db_up, false);
    if (!l->outage_logged) {
        log_event(LOG_WARN, "ledger_db_down", "PostgreSQL ledger %s unavailable (%s); records "
                  "are committed to the spool %s and sent when it answers",
                  ledger_pg_target(l->pg), why, l->path);
        l->outage_logged = l->report_drain = true;
    } else {
        log_event(LOG_DEBUG, "ledger_db_retry", "PostgreSQL ledger %s: %s",
                  ledger_pg_target(l->pg), why);
    }
    l->backoff_ms = was_up || l->backoff_ms == 0 ? BACKOFF_MIN_MS
                    : l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
    l->retry_at_ms = clock_mono_ms() + l->backoff_ms;
}

static void backend_connect(struct ledger *l)
{
    char err[512];
    if (ledger_pg_connect(l->pg, err, sizeof err) != 0) {
        backend_down(l, err);
        return;
    }
    atomic_store(&l->db_up, true);
    l->backoff_ms = 0;
    note_drained(l);
}

/* Sends the spool's oldest rows (up to SPOOL_CHUNK) to PostgreSQL in one
 * transaction, then deletes them from the spool: a crash between the two
 * sends them again, and ON CONFLICT (request_id) skips them. */
static void drain_chunk(struct ledger *l, struct records *buf)
{
    buf->bytes = buf->n = 0;
    int64_t last_id = 0;
    sqlite3_stmt *st = l->spool_read;
    sqlite3_reset(st);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        /* the columns of SPOOL_READ_SQL: id, ts_ms, the text fields, the numbers */
        const char *t[LT_COUNT];
        for (int i = 0; i < LT_COUNT; i++) t[i] = (const char *)sqlite3_column_text(st, 2 + i);
        const int c = 2 + LT_COUNT;
        struct ledger_record r = {
            .ts_ms = sqlite3_column_int64(st, 1), .request_id = t[LT_REQUEST_ID],
            .key_id = t[LT_KEY_ID], .tenant = t[LT_TENANT], .model = t[LT_MODEL],
            .provider = t[LT_PROVIDER], .origin_node = t[LT_ORIGIN_NODE], .route = t[LT_ROUTE],
            .node_id = t[LT_NODE_ID], .cache = t[LT_CACHE],
            .tokens_in = sqlite3_column_int64(st, c), .tokens_out = sqlite3_column_int64(st, c + 1),
            .cost_nanos = sqlite3_column_int64(st, c + 2),
            .estimated = sqlite3_column_int(st, c + 3) != 0,
            .status = sqlite3_column_int(st, c + 4), .via_peer = sqlite3_column_int(st, c + 5) != 0,
            .saved_nanos = sqlite3_column_int64(st, c + 6),
            .cached_tokens = sqlite3_column_int64(st, c + 7),
            .cache_write_tokens = sqlite3_column_int64(st, c + 8),
        };
        last_id = sqlite3_column_int64(st, 0);
        ledger_records_push(buf, &r);
    }
    sqlite3_reset(st);
    if (s != SQLITE_DONE) {
        log_event(LOG_ERROR, "ledger_spool_failed", "reading the spool %s: %s", l->path,
                  sqlite3_errmsg(l->db));
        l->drain_at_ms = clock_mono_ms() + BACKOFF_MAX_MS;
        return;
    }
    if (buf->n == 0) {
        atomic_store(&l->spool_depth, 0);
        note_drained(l);
        return;
    }
    char err[512];
    if (ledger_pg_insert(l->pg, buf, true, err, sizeof err) != 0) {
        backend_down(l, err);
        return;
    }
    atomic_fetch_add(&l->db_committed, buf->n);
    l->drained += buf->n;
    sqlite3_reset(l->spool_delete);
    sqlite3_bind_int64(l->spool_delete, 1, last_id);
    if (sqlite3_step(l->spool_delete) != SQLITE_DONE) {
        /* sent, still spooled: sent again later and skipped by PostgreSQL */
        log_event(LOG_ERROR, "ledger_spool_failed", "deleting sent rows from the spool %s: %s",
                  l->path, sqlite3_errmsg(l->db));
        l->drain_at_ms = clock_mono_ms() + BACKOFF_MAX_MS;
    } else {
        uint64_t depth = atomic_load(&l->spool_depth);
        atomic_store(&l->spool_depth, depth > buf->n ? depth - buf->n : 0);
    }
    sqlite3_reset(l->spool_delete);
    note_drained(l);
}

/* When the backend next wants the writer (monotonic ms; INT64_MAX: not
 * until records come): PostgreSQL down, its next connection attempt; up
 * with rows in the spool, the next chunk. */
static int64_t backend_next_ms(struct ledger *l)
{
    if (!l->pg) return INT64_MAX;
    if (!atomic_load(&l->db_up)) return l->retry_at_ms;
    return atomic_load(&l->spool_depth) > 0 ? l->drain_at_ms : INT64_MAX;
}

static bool backend_due(struct ledger *l)
{
    int64_t next = backend_next_ms(l);
    return next != INT64_MAX && clock_mono_ms() >= next;
}

/* One step: reconnect when due, else send one chunk of the spool. */
static void backend_step(struct ledger *l, struct records *buf)
{
    if (!backend_due(l)) return;
    if (!atomic_load(&l->db_up)) backend_connect(l);
    else drain_chunk(l, buf);
}

/* Commits a batch: to PostgreSQL when it is up, else (or when it fails) to
 * the spool; without PostgreSQL, to the SQLite ledger. 0 or -1. */
static int commit_records(struct ledger *l, const struct ledger_inserts *ins,
                          const struct records *b)
{
    if (l->pg && atomic_load(&l->db_up)) {
        char err[512];
        if (ledger_pg_insert(l->pg, b, false, err, sizeof err) == 0) {
            atomic_fetch_add(&l->db_committed, b->n);
            return 0;
        }
        backend_down(l, err);
    }
    if (ledger_sqlite_insert(l->db, l->path, ins, b) != 0) return -1;
    if (l->pg) {
        atomic_fetch_add(&l->spooled, b->n);
        atomic_fetch_add(&l->spool_depth, b->n);
    }
    return 0;
}

/* ---- queries run by the writer ---- */

static void add_node_row(void *ctx, const char *node_id, nanos_t today, nanos_t month,
                         int64_t requests_today, int64_t requests_month)
{
    struct ledger_query *q = ctx;
    struct ledger_node_spend *row = NULL;
    for (size_t i = 0; i < q->n && !row; i++)
        if (strcmp(q->rows[i].node_id, node_id) == 0) row = &q->rows[i];
    if (!row) {
        if (q->n == q->cap) {
            q->cap = q->cap ? q->cap * 2 : 8;
            q->rows = xrealloc(q->rows, q->cap * sizeof *q->rows);
        }
        row = &q->rows[q->n++];
        *row = (struct ledger_node_spend){.node_id = xstrdup(node_id)};
    }
    row->today += today;
    row->month += month;
    row->requests_today += requests_today;
    row->requests_month += requests_month;
}

static int by_node_id(const void *a, const void *b)
{
    return strcmp(((const struct ledger_node_spend *)a)->node_id,
                  ((const struct ledger_node_spend *)b)->node_id);
}

static void clear_rows(struct ledger_query *q)
{
    for (size_t i = 0; i < q->n; i++) free(q->rows[i].node_id);
    q->n = 0;
}

/* PostgreSQL's rows plus the spool's (rows not yet sent: the writer alone
 * moves rows from the spool, and it is here). */
static void run_by_node(struct ledger *l, struct ledger_query *q)
{
    q->source = l->pg ? "postgres" : "sqlite";
    if (l->pg) {
        char err[512];
        if (!atomic_load(&l->db_up)) {
            q->rc = -2;
            return;
        }
        if (ledger_pg_by_node(l->pg, q->day_start_ms, q->month_start_ms, add_node_row, q, err,
                              sizeof err) != 0) {
            backend_down(l, err);
            clear_rows(q);
            q->rc = -2;
            return;
        }
    }
    q->rc = ledger_sqlite_by_node(l->db, q->day_start_ms, q->month_start_ms, add_node_row, q);
    if (q->rc == 0 && q->n > 1) qsort(q->rows, q->n, sizeof *q->rows, by_node_id);
}

static void run_restore(struct ledger *l, struct ledger_query *q, struct records *buf)
{
    if (l->pg) {
        /* A crash between sending a chunk and deleting it leaves it in the
         * spool: it is the oldest one, and sending it again settles it
         * before the spool's rows are counted. */
        if (atomic_load(&l->db_up) && atomic_load(&l->spool_depth) > 0) drain_chunk(l, buf);
        char err[512] = "";
        if (atomic_load(&l->db_up) &&
            ledger_pg_restore(l->pg, q->day_start_ms, q->month_start_ms, q->cb, q->ctx, err,
                              sizeof err) != 0)
            backend_down(l, err);
        if (!atomic_load(&l->db_up))
            log_event(LOG_WARN, "ledger_restore_partial", "PostgreSQL ledger %s unreachable: "
                      "spend restored from this node's spool only (%llu rows); the other nodes' "
                      "spend is not counted", ledger_pg_target(l->pg),
                      (unsigned long long)atomic_load(&l->spool_depth));
    }
    q->rc = ledger_sqlite_restore(l->db, q->day_start_ms, q->month_start_ms, q->cb, q->ctx);
}

static void finish_query(struct ledger_query *q)
{
    atomic_store(&q->done, true);
    ledger_query_release(q);
}

/* ---- the writer ---- */

static void *writer_main(void *arg)
{
    struct ledger *l = arg;
    struct ledger_inserts ins;
    ledger_sqlite_prepare_inserts(l->db, &ins);
    struct records batch = {0}, spool_buf = {0};
    pthread_mutex_lock(&l->lock);
    for (;;) {
        while (!l->pending && !l->stop && !l->flush_wanted && batch.n == 0 && !l->queries) {
            int64_t now = clock_mono_ms(), next = backend_next_ms(l);
            if (next <= now) break;
            if (next == INT64_MAX) {
                pthread_cond_wait(&l->wake, &l->lock);
            } else {
                struct timespec ts = clock_realtime_after_ms(next - now);
                pthread_cond_timedwait(&l->wake, &l->lock, &ts);
            }
        }
        /* Gather for a moment: one transaction per interval under load, not
         * one per request (each commit costs WAL writes and locks). Not
         * while a query waits or the spool drains. */
        if (!l->stop && !l->flush_wanted && !l->shard_full && !l->queries && !backend_due(l)) {
            struct timespec ts = clock_realtime_after_ms(LEDGER_GATHER_MS);
            while (!l->stop && !l->flush_wanted && !l->shard_full && !l->queries)
                if (pthread_cond_timedwait(&l->wake, &l->lock, &ts) != 0) break;
        }
        l->pending = l->shard_full = false;
        bool flushing = l->flush_wanted, stopping = l->stop;
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
                ledger_records_reserve(&batch, sh->q.bytes);
                memcpy(batch.data + batch.bytes, sh->q.data, sh->q.bytes);
                batch.bytes += sh->q.bytes;
                batch.n += n;
                sh->q.bytes = sh->q.n = 0;
            }
            pthread_mutex_unlock(&sh->lock);
            sh->taken += n;
        }
        l->held = batch.n;
        struct ledger_query *queries = l->queries;
        l->queries = NULL;
        pthread_mutex_unlock(&l->lock);

        if (l->pg && !stopping) backend_step(l, &spool_buf);
        while (queries) {
            struct ledger_query *q = queries;
            queries = q->next;
            if (q->kind == QUERY_RESTORE) run_restore(l, q, &spool_buf);
            else run_by_node(l, q);
            finish_query(q);
        }
        int rc = batch.n ? commit_records(l, &ins, &batch) : 0;

        pthread_mutex_lock(&l->lock);
        pthread_cond_broadcast(&l->done); /* a query may have been answered */
        if (batch.n == 0) {
            if (l->stop) break;
            if (flushing) l->flush_wanted = false;
            continue;
        }
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
    /* Queries that came too late are answered with a failure. */
    for (struct ledger_query *q = l->queries, *next; q; q = next) {
        next = q->next;
        q->rc = -1;
        finish_query(q);
    }
    l->queries = NULL;
    pthread_cond_broadcast(&l->done);
    pthread_mutex_unlock(&l->lock);
    free(batch.data);
    free(spool_buf.data);
    ledger_sqlite_finalize_inserts(&ins);
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
    sqlite3_finalize(l->spool_read);
    sqlite3_finalize(l->spool_delete);
    ledger_pg_free(l->pg);
    free(l->path);
    free(l);
}

/* PostgreSQL mode at open: the spool's statements and depth, then a first
 * connection (a failure is logged and retried, never fatal). */
static int open_backend(struct ledger *l, char *err, size_t errcap)
{
    if (sqlite3_prepare_v3(l->db, SPOOL_READ_SQL, -1, SQLITE_PREPARE_PERSISTENT, &l->spool_read,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(l->db, "DELETE FROM requests WHERE id <= ?1", -1,
                           SQLITE_PREPARE_PERSISTENT, &l->spool_delete, NULL) != SQLITE_OK) {
        snprintf(err, errcap, "the spool %s: %s", l->path, sqlite3_errmsg(l->db));
        return -1;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(l->db, "SELECT COUNT(*) FROM requests", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        atomic_store(&l->spool_depth, (uint64_t)sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    uint64_t waiting = atomic_load(&l->spool_depth);
    l->report_drain = waiting > 0;
    backend_connect(l);
    if (atomic_load(&l->db_up))
        log_event(LOG_INFO, "ledger_db_connected", "PostgreSQL ledger %s connected; spool %s "
                  "(%llu records waiting)", ledger_pg_target(l->pg), l->path,
                  (unsigned long long)waiting);
    return 0;
}

struct ledger *ledger_open_with(const char *path, const char *postgres_url, char *err,
                                size_t errcap)
{
    struct ledger_pg *pg = NULL;
    if (postgres_url && *postgres_url && !(pg = ledger_pg_new(postgres_url, err, errcap)))
        return NULL;
    sqlite3 *db;
    if (ledger_sqlite_open(path, &db, err, errcap) != 0) {
        ledger_pg_free(pg);
        return NULL;
    }
    struct ledger *l = xcalloc(1, sizeof *l);
    l->path = xstrdup(path);
    l->db = db;
    l->pg = pg;
    atomic_init(&l->db_up, pg == NULL);
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->wake, NULL);
    pthread_cond_init(&l->done, NULL);
    for (int i = 0; i < SHARDS; i++) pthread_mutex_init(&l->shards[i].lock, NULL);
    if (pg && open_backend(l, err, errcap) != 0) {
        free_ledger(l);
        sqlite3_close(db);
        return NULL;
    }
    if (pthread_create(&l->thread, NULL, writer_main, l) != 0) {
        snprintf(err, errcap, "cannot start the ledger thread");
        free_ledger(l);
        sqlite3_close(db);
        return NULL;
    }
    return l;
}

struct ledger *ledger_open(const char *path, char *err, size_t errcap)
{
    return ledger_open_with(path, NULL, err, errcap);
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
    const char *text[LT_COUNT];
    struct packed h;
    record_texts(r, text, &h);

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
                      "records are being dropped (request %s)", l->path, text[LT_REQUEST_ID]);
        return;
    }
    push_packed(&sh->q, &h, text);
    size_t n = sh->q.n;
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
    sqlite3 *db = l->db;
    free_ledger(l); /* finalizes the spool's statements before the close */
    ledger_sqlite_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", err, sizeof err);
    sqlite3_close(db);
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

bool ledger_is_shared(struct ledger *l)
{
    return l->pg != NULL;
}

bool ledger_backend_up(struct ledger *l)
{
    return atomic_load(&l->db_up);
}

uint64_t ledger_db_committed(struct ledger *l)
{
    return atomic_load(&l->db_committed);
}

uint64_t ledger_spooled(struct ledger *l)
{
    return atomic_load(&l->spooled);
}

uint64_t ledger_spool_depth(struct ledger *l)
{
    return atomic_load(&l->spool_depth);
}

/* ---- queries ---- */

static struct ledger_query *submit(struct ledger *l, struct ledger_query *q)
{
    atomic_init(&q->refs, 2);
    atomic_init(&q->done, false);
    pthread_mutex_lock(&l->lock);
    if (l->stop) {
        pthread_mutex_unlock(&l->lock);
        q->rc = -1;
        finish_query(q);
        return q;
    }
    struct ledger_query **tail = &l->queries;
    while (*tail) tail = &(*tail)->next;
    *tail = q;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
    return q;
}

int ledger_restore(struct ledger *l, int64_t day_start_s, int64_t month_start_s,
                   ledger_restore_cb cb, void *ctx)
{
    struct ledger_query *q = xcalloc(1, sizeof *q);
    *q = (struct ledger_query){.kind = QUERY_RESTORE, .day_start_ms = day_start_s * 1000,
                               .month_start_ms = month_start_s * 1000, .cb = cb, .ctx = ctx};
    submit(l, q);
    pthread_mutex_lock(&l->lock);
    while (!atomic_load(&q->done)) pthread_cond_wait(&l->done, &l->lock);
    pthread_mutex_unlock(&l->lock);
    int rc = q->rc;
    ledger_query_release(q);
    return rc;
}

struct ledger_query *ledger_query_by_node(struct ledger *l, int64_t day_start_s,
                                          int64_t month_start_s)
{
    struct ledger_query *q = xcalloc(1, sizeof *q);
    *q = (struct ledger_query){.kind = QUERY_BY_NODE, .day_start_ms = day_start_s * 1000,
                               .month_start_ms = month_start_s * 1000};
    return submit(l, q);
}

bool ledger_query_done(struct ledger_query *q)
{
    return atomic_load(&q->done);
}

int ledger_query_result(struct ledger_query *q, const struct ledger_node_spend **rows, size_t *n,
                        const char **source)
{
    *rows = q->rows;
    *n = q->rc == 0 ? q->n : 0;
    *source = q->source ? q->source : "";
    return q->rc;
}

void ledger_query_release(struct ledger_query *q)
{
    if (!q || atomic_fetch_sub(&q->refs, 1) != 1) return;
    clear_rows(q);
    free(q->rows);
    free(q);
}
