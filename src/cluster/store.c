/* store: the watcher thread and the deferred work (see store.h). */
#include "cluster/store.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/keys.h"
#include "cluster/redis.h"
#include "cluster/redis_url.h"
#include "cluster/scripts.h"
#include "config/config.h"
#include "core/alloc.h"
#include "budget/period.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/ids.h"
#include "core/log.h"
#include "core/str.h"

#define WATCH_PERIOD_MS 100
#define DEFERRED_MAX 1000000
#define STARTUP_WAIT_MS 2000

/* ---- deferred work ---- */

enum item_kind { ITEM_SETTLE, ITEM_RELEASE, ITEM_DELTA };

struct item {
    enum item_kind kind;
    struct item *next;
    struct cl_settle *settle; /* ITEM_SETTLE (cl_settle_copy) */
    /* ITEM_RELEASE */
    char member[CL_MEMBER_MAX];
    /* ITEM_DELTA */
    struct cl_delta delta;
};

static struct {
    bool enabled, closed;
    char *prefix, *node_id;
    char where[200];
    pthread_t thread;
    bool thread_started;
    struct event_base *base;
    struct redis_conn *conn;
    struct event *tick;
    bool busy; /* a probe or a flush awaits its answer */

    pthread_mutex_t lock;
    pthread_cond_t first_contact; /* the key salt is known (store_start waits a little) */
    struct item *head, *tail;
    size_t n_items;
    /* The batch in flight or to retry: deltas taken off the list keep their
     * batch id until Redis says it is applied. */
    struct cl_delta batch[CL_RECONCILE_BATCH];
    int batch_n;
    char batch_id[96];
    struct item *in_flight; /* a settle or release being sent */

    /* managed keys (cluster/keys.h) */
    struct keystore *keys;
    bool salt_known;
    long long keys_ver; /* -1: never read */
    int64_t poll_day, poll_month;
    void (*on_spend)(int64_t day, int64_t month, nanos_t day_spent, nanos_t month_spent);
} s = {.lock = PTHREAD_MUTEX_INITIALIZER, .first_contact = PTHREAD_COND_INITIALIZER};

static atomic_bool up;
static _Atomic uint64_t n_reconciled, n_down_events, n_dropped;

static void push(struct item *it)
{
    pthread_mutex_lock(&s.lock);
    if (s.n_items >= DEFERRED_MAX) {
        pthread_mutex_unlock(&s.lock);
        free(it->settle);
        free(it);
        if (atomic_fetch_add(&n_dropped, 1) == 0)
            log_event(LOG_ERROR, "store_deferred_full", "too much work deferred while Redis is "
                      "down (%d items): further items are dropped", DEFERRED_MAX);
        return;
    }
    if (s.tail) s.tail->next = it;
    else s.head = it;
    s.tail = it;
    s.n_items++;
    pthread_mutex_unlock(&s.lock);
}

void store_defer_settle(const struct cl_settle *in)
{
    struct item *it = xcalloc(1, sizeof *it);
    it->kind = ITEM_SETTLE;
    it->settle = cl_settle_copy(in);
    push(it);
}

void store_defer_release(const char *member)
{
    struct item *it = xcalloc(1, sizeof *it);
    it->kind = ITEM_RELEASE;
    snprintf(it->member, sizeof it->member, "%s", member);
    push(it);
}

void store_defer_delta(const char *scope, char kind, int64_t period, nanos_t amount)
{
    if (amount <= 0) return;
    struct item *it = xcalloc(1, sizeof *it);
    it->kind = ITEM_DELTA;
    snprintf(it->delta.scope, sizeof it->delta.scope, "%s", scope);
    it->delta.kind = kind;
    it->delta.period = period;
    it->delta.amount = amount;
    push(it);
}

/* ---- the watcher ---- */

static void set_up(bool now_up)
{
    bool was = atomic_exchange(&up, now_up);
    if (was == now_up) return;
    if (now_up) {
        log_event(LOG_INFO, "store_up", "the shared store %s answers: limits and budgets are "
                  "shared again", s.where);
    } else {
        atomic_fetch_add(&n_down_events, 1);
        log_event(LOG_WARN, "store_down", "the shared store %s does not answer: %s", s.where,
                  s.closed ? "requests are refused (on_store_down: closed)"
                           : "serving on node-local counters (on_store_down: local)");
    }
}

/* Puts an item taken off the list back first (retried as it was). */
static void push_front(struct item *it)
{
    pthread_mutex_lock(&s.lock);
    it->next = s.head;
    s.head = it;
    if (!s.tail) s.tail = it;
    s.n_items++;
    pthread_mutex_unlock(&s.lock);
}

static void free_item(struct item *it)
{
    if (!it) return;
    free(it->settle);
    free(it);
}

static void on_item_done(void *arg, struct redisReply *r)
{
    (void)arg;
    s.busy = false;
    struct item *it = s.in_flight;
    s.in_flight = NULL;
    bool ok = r && r->type == REDIS_REPLY_ARRAY;
    if (!ok) {
        /* put it back first: retried once Redis answers */
        push_front(it);
        set_up(false);
        return;
    }
    atomic_fetch_add(&n_reconciled, 1);
    free_item(it);
}

static void on_batch_done(void *arg, struct redisReply *r)
{
    (void)arg;
    s.busy = false;
    int rc = cl_reconcile_decode(r);
    if (rc < 0) {
        set_up(false);
        return; /* the batch keeps its id: retried as it is */
    }
    atomic_fetch_add(&n_reconciled, 1);
    s.batch_n = 0;
}

/* Takes the next deltas off the list into a batch with a fresh id. */
static void form_batch(void)
{
    pthread_mutex_lock(&s.lock);
    struct item **pp = &s.head, *prev = NULL;
    while (*pp && s.batch_n < CL_RECONCILE_BATCH) {
        struct item *it = *pp;
        if (it->kind != ITEM_DELTA) {
            prev = it;
            pp = &it->next;
            continue;
        }
        *pp = it->next;
        if (s.tail == it) s.tail = prev;
        s.n_items--;
        s.batch[s.batch_n++] = it->delta;
        free(it);
    }
    pthread_mutex_unlock(&s.lock);
    if (s.batch_n) {
        char id[ID_REQUEST_LEN + 1]; /* unique across workers and restarts */
        ids_request(id);
        snprintf(s.batch_id, sizeof s.batch_id, "%s:%s", s.node_id, id);
    }
}

static struct item *take_other(void)
{
    pthread_mutex_lock(&s.lock);
    struct item **pp = &s.head, *prev = NULL, *found = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next)
        if ((*pp)->kind != ITEM_DELTA) {
            found = *pp;
            *pp = found->next;
            if (s.tail == found) s.tail = prev;
            found->next = NULL;
            s.n_items--;
            break;
        }
    pthread_mutex_unlock(&s.lock);
    return found;
}

/* One step of deferred work; true when something was sent. */
static bool flush_one(void)
{
    struct cl_argv a;
    if (s.batch_n == 0) form_batch();
    if (s.batch_n) {
        cl_reconcile_argv(s.prefix, s.batch_id, s.batch, s.batch_n, &a);
        return redis_conn_script(s.conn, SCRIPT_RECONCILE, a.argc, a.argv, a.lens, on_batch_done,
                                 NULL) == 0;
    }
    struct item *it = take_other();
    if (!it) return false;
    int rc;
    if (it->kind == ITEM_SETTLE) {
        it->settle->prefix = s.prefix;
        cl_settle_argv(it->settle, &a);
        s.in_flight = it;
        rc = redis_conn_batch(s.conn, SCRIPT_SETTLE, a.argc, a.argv, a.lens, on_item_done, NULL);
    } else {
        const char *av[2] = {s.prefix, it->member};
        s.in_flight = it;
        rc = redis_conn_script(s.conn, SCRIPT_RELEASE, 2, av, NULL, on_item_done, NULL);
    }
    if (rc != 0) {
        s.in_flight = NULL;
        push_front(it);
        return false;
    }
    return true;
}

/* ---- managed keys ---- */

static void on_salt(void *arg, struct redisReply *r)
{
    (void)arg;
    s.busy = false;
    unsigned char salt[SHARED_SALT_HEX / 2];
    if (!r) {
        set_up(false);
        return;
    }
    if (r->type != REDIS_REPLY_STRING || str_unhex(r->str, r->len, salt, sizeof salt) != 0) {
        log_event(LOG_ERROR, "store_key_salt_invalid", "the shared store's key salt is not 64 "
                  "hex digits: managed keys of the cluster are not available");
        s.salt_known = true; /* (not asked again: an operator must fix it) */
        return;
    }
    keystore_set_shared_salt(s.keys, salt, sizeof salt);
    OPENSSL_cleanse(salt, sizeof salt);
    s.salt_known = true;
    pthread_mutex_lock(&s.lock);
    pthread_cond_broadcast(&s.first_contact);
    pthread_mutex_unlock(&s.lock);
}

static void on_all_keys(void *arg, struct redisReply *r)
{
    long long ver = (long long)(intptr_t)arg;
    s.busy = false;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        if (!r) set_up(false);
        return;
    }
    struct arena a;
    arena_init(&a);
    size_t n = r->elements / 2, kept = 0;
    struct key_view *views = xcalloc(n ? n : 1, sizeof *views);
    unsigned char(*hashes)[KEYSTORE_HASH_LEN] = xcalloc(n ? n : 1, sizeof *hashes);
    for (size_t i = 0; i < n; i++) {
        const redisReply *f = r->element[2 * i], *v = r->element[2 * i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        if (str_unhex(f->str, f->len, hashes[kept], KEYSTORE_HASH_LEN) != 0) continue;
        if (shared_key_decode(v->str, v->len, &views[kept], &a) != 0) continue;
        kept++;
    }
    keystore_replace_shared(s.keys, views, (const unsigned char(*)[KEYSTORE_HASH_LEN])hashes, kept);
    if (kept < n)
        log_event(LOG_WARN, "store_keys_skipped", "%zu managed-key records in the shared store "
                  "are not valid and were skipped", n - kept);
    free(views);
    free(hashes);
    arena_free(&a);
    s.keys_ver = ver;
}

static void on_poll(void *arg, struct redisReply *r)
{
    (void)arg;
    s.busy = false;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_INTEGER) {
        set_up(false);
        return;
    }
    set_up(true);
    if (s.on_spend)
        s.on_spend(s.poll_day, s.poll_month, r->element[1]->integer, r->element[2]->integer);
    long long ver = r->element[0]->integer;
    if (ver == s.keys_ver || !s.keys) return;
    char key[300];
    snprintf(key, sizeof key, "%skeys", s.prefix);
    const char *av[2] = {"HGETALL", key};
    if (redis_conn_call(s.conn, 2, av, NULL, on_all_keys, (void *)(intptr_t)ver) == 0)
        s.busy = true;
}

/* ---- the steps ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (redis_conn_down(s.conn)) {
        set_up(false);
        return;
    }
    if (s.busy) return; /* (calls made while connecting queue behind the handshake) */
    if (s.keys && !s.salt_known) {
        char fresh[SHARED_SALT_HEX + 1];
        unsigned char salt[SHARED_SALT_HEX / 2];
        if (RAND_bytes(salt, sizeof salt) != 1) return;
        str_hex(salt, sizeof salt, fresh);
        OPENSSL_cleanse(salt, sizeof salt);
        const char *av[2] = {s.prefix, fresh};
        if (redis_conn_script(s.conn, SCRIPT_KEYSALT, 2, av, NULL, on_salt, NULL) == 0)
            s.busy = true;
        OPENSSL_cleanse(fresh, sizeof fresh);
        return;
    }
    if (atomic_load(&up) && flush_one()) {
        s.busy = true;
        return;
    }
    /* every turn: the keys' version (a revocation reaches every node within
     * a turn or two) and the gateway's spend (the local view); the probe */
    int64_t now = clock_wall_s();
    s.poll_day = period_day(now);
    s.poll_month = period_month(now);
    char day[24], month[24];
    snprintf(day, sizeof day, "%lld", (long long)s.poll_day);
    snprintf(month, sizeof month, "%lld", (long long)s.poll_month);
    const char *av[3] = {s.prefix, day, month};
    if (redis_conn_script(s.conn, SCRIPT_POLL, 3, av, NULL, on_poll, NULL) == 0) s.busy = true;
}

void store_set_spend_hook(void (*on_spend)(int64_t day, int64_t month, nanos_t day_spent,
                                           nanos_t month_spent))
{
    s.on_spend = on_spend;
}

void store_set_keystore(struct keystore *ks)
{
    s.keys = ks;
}

static void *watch_main(void *arg)
{
    (void)arg;
    event_base_dispatch(s.base);
    return NULL;
}

int store_start(const struct config *cfg, char *err, size_t errcap)
{
    if (!cfg->cluster.redis_url) return 0;
    if (redis_global_init(cfg->cluster.redis_url, cfg->cluster.redis_timeout_ms,
                          cfg->cluster.redis_ca_file, err, errcap) != 0)
        return -1;
    s.enabled = true;
    s.keys_ver = -1;
    s.closed = cfg->cluster.store_down_closed;
    s.prefix = xstrdup(cfg->cluster.redis_prefix ? cfg->cluster.redis_prefix : "aiproxy:");
    s.node_id = xstrdup(cfg->node.id ? cfg->node.id : "node");
    redis_url_masked(cfg->cluster.redis_url, s.where, sizeof s.where);
    s.base = event_base_new();
    if (evthread_make_base_notifiable(s.base) != 0) {
        snprintf(err, errcap, "cannot set up the store watcher's event loop");
        return -1;
    }
    s.conn = redis_conn_new(s.base);
    s.tick = event_new(s.base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, WATCH_PERIOD_MS * 1000};
    event_add(s.tick, &tv);
    atomic_store(&up, true); /* until the first probe says otherwise */
    if (pthread_create(&s.thread, NULL, watch_main, NULL) != 0) {
        snprintf(err, errcap, "cannot start the store watcher thread");
        return -1;
    }
    s.thread_started = true;
    /* The first turn at once; the node waits briefly for the cluster's key
     * salt so that keys made on other nodes work from its first request
     * (Redis down: it serves without, per on_store_down). */
    event_active(s.tick, EV_TIMEOUT, 0);
    if (s.keys) {
        struct timespec until = clock_realtime_after_ms(STARTUP_WAIT_MS);
        pthread_mutex_lock(&s.lock);
        while (!s.salt_known)
            if (pthread_cond_timedwait(&s.first_contact, &s.lock, &until) != 0) break;
        bool known = s.salt_known;
        pthread_mutex_unlock(&s.lock);
        if (!known)
            log_event(LOG_WARN, "store_not_reached", "the shared store %s did not answer within "
                      "%d ms at start: serving on (on_store_down %s)", s.where, STARTUP_WAIT_MS,
                      s.closed ? "closed" : "local");
    }
    log_event(LOG_INFO, "store_configured", "shared store %s (prefix %s, timeout %lldms, "
              "on_store_down %s)", s.where, s.prefix, (long long)cfg->cluster.redis_timeout_ms,
              s.closed ? "closed" : "local");
    return 0;
}

void store_stop(void)
{
    if (!s.enabled) return;
    if (s.thread_started) {
        event_base_loopbreak(s.base);
        pthread_join(s.thread, NULL);
    }
    redis_conn_free(s.conn);
    free_item(s.in_flight);
    event_free(s.tick);
    event_base_free(s.base);
    struct item *it = s.head;
    while (it) {
        struct item *n = it->next;
        free_item(it);
        it = n;
    }
    if (s.n_items || s.batch_n)
        log_event(LOG_WARN, "store_deferred_lost", "%zu deferred items were not written to the "
                  "shared store before shutdown", s.n_items + (size_t)s.batch_n);
    free(s.prefix);
    free(s.node_id);
    redis_global_cleanup();
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.first_contact, NULL);
}

bool store_enabled(void)
{
    return s.enabled;
}

bool store_is_up(void)
{
    return s.enabled && atomic_load(&up);
}

bool store_closed_when_down(void)
{
    return s.closed;
}

const char *store_prefix(void)
{
    return s.prefix;
}

const char *store_node_id(void)
{
    return s.node_id;
}

void store_status_get(struct store_status *out)
{
    memset(out, 0, sizeof *out);
    out->enabled = s.enabled;
    if (!s.enabled) return;
    out->up = atomic_load(&up);
    out->reconciliations = atomic_load(&n_reconciled);
    out->down_events = atomic_load(&n_down_events);
    pthread_mutex_lock(&s.lock);
    out->deferred = s.n_items + (size_t)s.batch_n;
    pthread_mutex_unlock(&s.lock);
    snprintf(out->where, sizeof out->where, "%s", s.where);
}
