/* cluster_scripts_test: the shared store's Lua scripts (cluster/scripts.c)
 * run by a real redis-server, with their arguments built and their replies
 * read by cluster/limits.c, checked to the microsecond and the nano-dollar:
 * request limits against the node-local GCRA (security/ratelimit.c),
 * tokens per minute, budget holds (all or nothing), settlement exactly
 * once, the sweep of expired holds (and a late settlement counted once),
 * release, reconciliation batches, the poll script, managed keys' records
 * and salt, scope names, and money at the edge of a double's exactness.
 *
 * Reserve and settle are batched, as the daemon calls them (cluster/redis.c):
 * ARGV = n, then for each request its argument count and its arguments;
 * the reply has one element per request. A single request is a batch of
 * one; test_batch sends several. A hold is a member of the sorted set
 * P holds (cl_hold_member), so the test keeps, per request id, the member
 * it was reserved with (member_of) to settle, release and look it up.
 *
 * The test starts its own redis-server (no persistence, a fresh temp dir,
 * a free loopback port) and kills it by PID at the end; every test starts
 * from FLUSHALL. Without redis-server on PATH (or $REDIS_SERVER) every test
 * is skipped.
 *
 * The script's clock is the server's (TIME). A decision's clock is read
 * back exactly from the reply: reset_us = stored TAT - now, so
 * now = GET(key) - reset_us (an admitted call stores its new TAT, a refused
 * one leaves the old one). rl_gcra run locally at that instant must then
 * give the very same decision and the very same stored time. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "cluster/limits.h"
#include "cluster/scripts.h"
#include "security/ratelimit.h"

#define P "aptest:"
#define DAY 20261204
#define MONTH 202612
#define S 1000000LL
#define NUM_MAX ((int64_t)1 << 53)

/* ---- the server ---- */

static struct {
    bool have;      /* redis-server found and started */
    pid_t pid;
    int port;
    char dir[64];
    redisContext *c;
} srv = {.pid = -1};

static bool find_redis(char *out, size_t cap)
{
    const char *env = getenv("REDIS_SERVER");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return access(out, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        snprintf(out, cap, "%.*s/redis-server", (int)n, path);
        if (n > 0 && access(out, X_OK) == 0) return true;
        path += n;
        if (*path == ':') path++;
    }
    return false;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void stop_server(void)
{
    if (srv.c) {
        redisFree(srv.c);
        srv.c = NULL;
    }
    if (srv.pid > 0) {
        kill(srv.pid, SIGTERM);
        int status;
        bool gone = false;
        for (int i = 0; i < 100 && !gone; i++) {
            if (waitpid(srv.pid, &status, WNOHANG) == srv.pid) gone = true;
            else sleep_ms(20);
        }
        if (!gone) {
            kill(srv.pid, SIGKILL);
            waitpid(srv.pid, &status, 0);
        }
        srv.pid = -1;
    }
}

/* One attempt on a fresh port: 0 when it answers PING. */
static int start_once(const char *bin)
{
    srv.port = free_port();
    if (srv.port <= 0) return -1;
    char port[16], log[128];
    snprintf(port, sizeof port, "%d", srv.port);
    snprintf(log, sizeof log, "%s/redis.log", srv.dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        if (getppid() != parent) _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(bin, bin, "--port", port, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1",
              "--daemonize", "no", "--dir", srv.dir, (char *)NULL);
        _exit(127);
    }
    srv.pid = pid;
    for (int i = 0; i < 250; i++) { /* up to about 10 s */
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) { /* exited: the port was taken? */
            srv.pid = -1;
            return -1;
        }
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            bool ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            if (r) freeReplyObject(r);
            if (ok) {
                srv.c = c;
                return 0;
            }
        }
        if (c) redisFree(c);
        sleep_ms(40);
    }
    stop_server();
    return -1;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static int group_setup(void **state)
{
    char bin[512];
    if (!find_redis(bin, sizeof bin)) {
        fprintf(stderr, "cluster_scripts_test: redis-server not found: skipping\n");
        return 0;
    }
    snprintf(srv.dir, sizeof srv.dir, "/tmp/aiproxy-redis-XXXXXX");
    if (!mkdtemp(srv.dir)) return -1;
    for (int attempt = 0; attempt < 3; attempt++)
        if (start_once(bin) == 0) {
            srv.have = true;
            break;
        }
    if (!srv.have) {
        fprintf(stderr, "cluster_scripts_test: redis-server did not start (see %s/redis.log)\n",
                srv.dir);
        return -1;
    }
    /* The scripts are called by SHA, as the daemon does (EVAL as a fallback). */
    for (int i = 0; i < scripts_count(); i++) {
        redisReply *r = redisCommand(srv.c, "SCRIPT LOAD %s", scripts_text(i));
        if (!r) return -1;
        freeReplyObject(r);
    }
    return 0;
}

static int group_teardown(void **state)
{
    stop_server();
    if (srv.dir[0]) remove_dir(srv.dir);
    return 0;
}

/* ---- holds: the member each request id was reserved with ---- */

static struct {
    char id[64];
    char member[CL_MEMBER_MAX];
} members[128];
static int n_members;

/* The member `id` was last reserved with; the id itself (a member no hold
 * has) when it never was. */
static const char *member_of(const char *id)
{
    for (int i = n_members - 1; i >= 0; i--)
        if (strcmp(members[i].id, id) == 0) return members[i].member;
    return id;
}

/* Sets in->member to request `id`'s hold (cl_hold_member), kept for member_of. */
static void make_member(struct cl_reserve *in, const char *id)
{
    assert_true(n_members < (int)(sizeof members / sizeof members[0]));
    assert_true(strlen(id) < sizeof members[0].id);
    snprintf(members[n_members].id, sizeof members[0].id, "%s", id);
    assert_non_null(cl_hold_member(in, id, members[n_members].member, CL_MEMBER_MAX));
    in->member = members[n_members++].member;
}

static int flush(void **state)
{
    n_members = 0;
    if (!srv.have) return 0;
    redisReply *r = redisCommand(srv.c, "FLUSHALL");
    if (!r) return -1;
    freeReplyObject(r);
    return 0;
}

#define NEED_REDIS()                                                                               \
    do {                                                                                           \
        if (!srv.have) skip();                                                                     \
    } while (0)

/* ---- Redis helpers ---- */

static redisReply *cmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(srv.c, fmt, ap);
    va_end(ap);
    if (!r) fail_msg("redis: %s", srv.c->errstr);
    if (r->type == REDIS_REPLY_ERROR) fail_msg("redis error for %s: %s", fmt, r->str);
    return r;
}

/* GET key as a number; `dflt` when there is no such key. */
static long long get_num(const char *key, long long dflt)
{
    redisReply *r = cmd("GET %s", key);
    long long v = dflt;
    if (r->type == REDIS_REPLY_STRING) v = strtoll(r->str, NULL, 10);
    else assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    return v;
}

static bool exists(const char *key)
{
    redisReply *r = cmd("EXISTS %s", key);
    bool e = r->integer != 0;
    freeReplyObject(r);
    return e;
}

#define NONE LLONG_MIN

/* Field `field` ('s' spent, 'r' reserved) of scope's budget window; NONE
 * when the field does not exist. */
static long long win(const char *scope, char kind, const char *field)
{
    char key[256];
    snprintf(key, sizeof key, P "b:%s:%c:%d", scope, kind, kind == 'd' ? DAY : MONTH);
    redisReply *r = cmd("HGET %s %s", key, field);
    long long v = NONE;
    if (r->type == REDIS_REPLY_STRING) v = strtoll(r->str, NULL, 10);
    else assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);
    return v;
}

/* Both windows' field equals v. */
static void assert_win(const char *scope, const char *field, long long v)
{
    long long d = win(scope, 'd', field), m = win(scope, 'm', field);
    if (d != v || m != v)
        fail_msg("%s %s: day %lld, month %lld, want %lld", scope, field, d, m, v);
}

/* The score of request id's member in P holds or P swept (`set`); NONE
 * when it is not there. */
static long long zscore(const char *set, const char *id)
{
    redisReply *r = cmd("ZSCORE " P "%s %s", set, member_of(id));
    long long v = NONE;
    if (r->type == REDIS_REPLY_STRING) v = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    return v;
}

static bool held(const char *id)
{
    return zscore("holds", id) != NONE;
}

static bool swept(const char *id)
{
    return zscore("swept", id) != NONE;
}

static long long zcard(const char *set)
{
    redisReply *r = cmd("ZCARD " P "%s", set);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

static long long server_ms(void)
{
    redisReply *r = cmd("TIME");
    long long ms = strtoll(r->element[0]->str, NULL, 10) * 1000 +
                   strtoll(r->element[1]->str, NULL, 10) / 1000;
    freeReplyObject(r);
    return ms;
}

/* Runs script `which` with `argc` ARGV by EVALSHA (EVAL when the server
 * lost it). Returns the reply as it is (an error reply too). */
static redisReply *script_raw(int which, int argc, const char *const *argv, const size_t *lens)
{
    const char **av = malloc((size_t)(3 + argc) * sizeof *av);
    size_t *al = malloc((size_t)(3 + argc) * sizeof *al);
    assert_true(av && al);
    av[0] = "EVALSHA";
    av[1] = scripts_sha(which);
    av[2] = "0";
    al[0] = 7;
    al[1] = strlen(av[1]);
    al[2] = 1;
    for (int i = 0; i < argc; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = lens ? lens[i] : strlen(argv[i]);
    }
    redisReply *r = redisCommandArgv(srv.c, 3 + argc, av, al);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        av[0] = "EVAL";
        al[0] = 4;
        av[1] = scripts_text(which);
        al[1] = strlen(av[1]);
        r = redisCommandArgv(srv.c, 3 + argc, av, al);
    }
    free(av);
    free(al);
    if (!r) fail_msg("redis: %s", srv.c->errstr);
    return r;
}

static redisReply *script(int which, const struct cl_argv *a)
{
    redisReply *r = script_raw(which, a->argc, a->argv, a->lens);
    if (r->type == REDIS_REPLY_ERROR) fail_msg("script %d: %s", which, r->str);
    return r;
}

/* A batched script (reserve, settle) on n requests' arguments, as
 * cluster/redis.c sends it: n, then each request's count and arguments.
 * Returns the reply, an array of n. */
static redisReply *batch(int which, int n, const struct cl_argv *a)
{
    int argc = 1;
    for (int i = 0; i < n; i++) argc += 1 + a[i].argc;
    const char **argv = malloc((size_t)argc * sizeof *argv);
    size_t *lens = malloc((size_t)argc * sizeof *lens);
    char(*counts)[16] = malloc((size_t)(n + 1) * sizeof *counts);
    assert_true(argv && lens && counts);
    int k = 0;
    for (int i = 0; i <= n; i++) {
        snprintf(counts[i], sizeof counts[i], "%d", i == 0 ? n : a[i - 1].argc);
        argv[k] = counts[i];
        lens[k++] = strlen(counts[i]);
        for (int j = 0; i > 0 && j < a[i - 1].argc; j++) {
            argv[k] = a[i - 1].argv[j];
            lens[k++] = a[i - 1].lens[j];
        }
    }
    redisReply *r = script_raw(which, argc, argv, lens);
    free(argv);
    free(lens);
    free(counts);
    if (r->type == REDIS_REPLY_ERROR) fail_msg("script %d: %s", which, r->str);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)n)
        fail_msg("script %d: not an array of %d", which, n);
    return r;
}

/* ---- the scripts through limits.c ---- */

static struct cl_reserve new_reserve(void)
{
    struct cl_reserve in = {.prefix = P, .hold_ms = 60000, .day = DAY, .month = MONTH};
    return in;
}

#define BATCH_MAX 8

/* Reserves n requests in one call (in[i] for request ids[i]: its member is
 * set here); each reply is decoded into out[i]. */
static void reserve_n(int n, struct cl_reserve *in, const char *const *ids,
                      struct cl_reserve_result *out)
{
    struct cl_argv a[BATCH_MAX];
    assert_true(n <= BATCH_MAX);
    for (int i = 0; i < n; i++) {
        make_member(&in[i], ids[i]);
        cl_reserve_argv(&in[i], &a[i]);
    }
    redisReply *r = batch(SCRIPT_RESERVE, n, a);
    for (int i = 0; i < n; i++)
        if (cl_reserve_decode(r->element[i], &in[i], &out[i]) != 0)
            fail_msg("reserve: reply %d of %d is not one", i, n);
    freeReplyObject(r);
}

static enum cl_code reserve(struct cl_reserve *in, const char *id, struct cl_reserve_result *out)
{
    reserve_n(1, in, &id, out);
    return out->code;
}

static void settle_n(int n, const struct cl_settle *in, struct cl_settle_result *out)
{
    struct cl_argv a[BATCH_MAX];
    assert_true(n <= BATCH_MAX);
    for (int i = 0; i < n; i++) cl_settle_argv(&in[i], &a[i]);
    redisReply *r = batch(SCRIPT_SETTLE, n, a);
    for (int i = 0; i < n; i++)
        if (cl_settle_decode(r->element[i], in[i].n_scopes, &out[i]) != 0)
            fail_msg("settle: reply %d of %d is not one", i, n);
    freeReplyObject(r);
}

static bool settle(const struct cl_settle *in, struct cl_settle_result *out)
{
    settle_n(1, in, out);
    return out->applied;
}

/* Request id's settlement (its member as reserved). */
static struct cl_settle new_settle(const char *id, nanos_t cost, nanos_t first_cost)
{
    struct cl_settle in = {.prefix = P, .member = member_of(id), .cost = cost,
                           .first_cost = first_cost, .day = DAY, .month = MONTH};
    return in;
}

/* Both seeds of a settle or reserve result's scope i. */
#define assert_seeds(res, i, d, m)                                                                 \
    do {                                                                                           \
        assert_int_equal((res).day_spent[i], (d));                                                 \
        assert_int_equal((res).month_spent[i], (m));                                               \
    } while (0)

/* Runs the release script on the requests' members; returns how many it
 * released. */
static long long release(int n, const char *const *ids)
{
    const char *argv[16];
    assert_true(n < 16);
    argv[0] = P;
    for (int i = 0; i < n; i++) argv[1 + i] = member_of(ids[i]);
    redisReply *r = script_raw(SCRIPT_RELEASE, 1 + n, argv, NULL);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_INTEGER);
    long long v = r->element[0]->integer;
    freeReplyObject(r);
    return v;
}

/* Runs the poll script for (day, month): out = {keys version, the
 * gateway's day spent, its month spent}. */
static void poll_at(int day, int month, long long out[3])
{
    char d[16], m[16];
    snprintf(d, sizeof d, "%d", day);
    snprintf(m, sizeof m, "%d", month);
    const char *argv[3] = {P, d, m};
    redisReply *r = script_raw(SCRIPT_POLL, 3, argv, NULL);
    if (r->type == REDIS_REPLY_ERROR) fail_msg("poll: %s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(r->element[i]->type, REDIS_REPLY_INTEGER);
        out[i] = r->element[i]->integer;
    }
    freeReplyObject(r);
}

static void poll_now(long long out[3])
{
    poll_at(DAY, MONTH, out);
}

/* Adds spend to one window through the reconcile script (batch id `id`). */
static void spend(const char *id, const char *scope, char kind, nanos_t amount)
{
    struct cl_delta d = {.kind = kind, .period = kind == 'd' ? DAY : MONTH, .amount = amount};
    snprintf(d.scope, sizeof d.scope, "%s", scope);
    struct cl_argv a;
    cl_reconcile_argv(P, id, &d, 1, &a);
    redisReply *r = script(SCRIPT_RECONCILE, &a);
    assert_int_equal(cl_reconcile_decode(r), 1);
    freeReplyObject(r);
}

/* Stores a managed key's record; returns the keys' version. */
static long long keyput(const char *hash, const char *record)
{
    const char *argv[3] = {P, hash, record};
    redisReply *r = script_raw(SCRIPT_KEYPUT, 3, argv, NULL);
    if (r->type == REDIS_REPLY_ERROR) fail_msg("keyput: %s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_INTEGER);
    long long v = r->element[0]->integer;
    freeReplyObject(r);
    return v;
}

/* Asks for prefix's key salt, offering `fresh`; the salt in force into out. */
static void keysalt(const char *prefix, const char *fresh, char *out, size_t cap)
{
    const char *argv[2] = {prefix, fresh};
    redisReply *r = script_raw(SCRIPT_KEYSALT, 2, argv, NULL);
    if (r->type == REDIS_REPLY_ERROR) fail_msg("keysalt: %s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    snprintf(out, cap, "%s", r->str);
    freeReplyObject(r);
}

static void assert_decision(const struct rl_decision *got, const struct rl_decision *want)
{
    if (got->allowed != want->allowed || got->limit != want->limit ||
        got->remaining != want->remaining || got->reset_us != want->reset_us ||
        got->retry_after_us != want->retry_after_us)
        fail_msg("decision {allowed %d, limit %lld, remaining %lld, reset %lld, retry %lld}, "
                 "rl_gcra says {%d, %lld, %lld, %lld, %lld}",
                 got->allowed, (long long)got->limit, (long long)got->remaining,
                 (long long)got->reset_us, (long long)got->retry_after_us, want->allowed,
                 (long long)want->limit, (long long)want->remaining, (long long)want->reset_us,
                 (long long)want->retry_after_us);
}

/* ---- tests ---- */

static void test_scripts_load_by_sha(void **state)
{
    NEED_REDIS();
    assert_int_equal(scripts_count(), SCRIPT_COUNT);
    for (int i = 0; i < scripts_count(); i++) {
        assert_int_equal(strlen(scripts_sha(i)), 40);
        redisReply *r = cmd("SCRIPT LOAD %s", scripts_text(i));
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_string_equal(r->str, scripts_sha(i));
        freeReplyObject(r);
    }
    /* EVAL with the text and EVALSHA agree (the poll script: nothing to sweep) */
    redisReply *a = cmd("EVAL %s 0 " P " %d %d", scripts_text(SCRIPT_POLL), DAY, MONTH);
    redisReply *b = cmd("EVALSHA %s 0 " P " %d %d", scripts_sha(SCRIPT_POLL), DAY, MONTH);
    assert_int_equal(a->type, REDIS_REPLY_ARRAY);
    assert_int_equal(b->type, REDIS_REPLY_ARRAY);
    assert_int_equal(a->elements, 3);
    assert_int_equal(b->elements, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(a->element[i]->integer, 0);
        assert_int_equal(b->element[i]->integer, 0);
    }
    freeReplyObject(a);
    freeReplyObject(b);
    /* an empty batch: an empty reply, nothing written */
    for (int w = SCRIPT_RESERVE; w <= SCRIPT_SETTLE; w++) {
        redisReply *r = batch(w, 0, NULL);
        assert_int_equal(r->elements, 0);
        freeReplyObject(r);
    }
    redisReply *r = cmd("DBSIZE");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

/* per_hour 30: exactly 30 admitted, remaining 29..0, then refusals that
 * charge nothing; every decision is rl_gcra's at the script's instant. */
static void test_requests_per_hour(void **state)
{
    NEED_REDIS();
    const char *key = P "rl:key:abc:h";
    int64_t ltat = 0;
    int admitted = 0;
    for (int i = 0; i < 34; i++) {
        char id[32];
        snprintf(id, sizeof id, "ph-%d", i);
        struct cl_reserve in = new_reserve();
        in.n_asks = 1;
        in.asks[0].who = "key:abc";
        in.asks[0].per_hour = 30;
        long long before = get_num(key, 0);
        struct cl_reserve_result res;
        enum cl_code code = reserve(&in, id, &res);
        long long after = get_num(key, 0);
        const struct rl_decision *d = &res.asks[0];
        int64_t now = after - d->reset_us;
        struct rl_decision want;
        rl_gcra(&ltat, 30, RL_HOUR_US, now, 1, &want);
        assert_decision(d, &want);
        assert_int_equal(ltat, after);
        assert_int_equal(d->limit, 30);
        if (i < 30) {
            assert_int_equal(code, CL_ADMITTED);
            assert_true(d->allowed);
            assert_int_equal(d->remaining, 29 - i);
            assert_int_equal(d->retry_after_us, 0);
            assert_true(after > before);
            assert_true(held(id));
            admitted++;
        } else {
            assert_int_equal(code, CL_RATE);
            assert_int_equal(res.index, 0);
            assert_false(d->allowed);
            assert_int_equal(d->remaining, 0);
            assert_true(d->retry_after_us > 0);
            assert_true(d->retry_after_us <= 120 * S);
            assert_int_equal(after, before); /* a refusal charges nothing */
            assert_false(held(id));
        }
        /* no minute limit asked: no minute key */
        assert_false(exists(P "rl:key:abc:m"));
    }
    assert_int_equal(admitted, 30);
    assert_int_equal(zcard("holds"), 30);
    /* The key lives as long as its time is in the future. */
    redisReply *r = cmd("PTTL %s", key);
    assert_true(r->integer > 3500 * 1000 && r->integer <= 3601 * 1000);
    freeReplyObject(r);
}

static void test_requests_per_minute(void **state)
{
    NEED_REDIS();
    const char *key = P "rl:ip:10.0.0.1:m";
    int64_t ltat = 0;
    for (int i = 0; i < 7; i++) {
        char id[32];
        snprintf(id, sizeof id, "pm-%d", i);
        struct cl_reserve in = new_reserve();
        in.n_asks = 1;
        in.asks[0].who = "ip:10.0.0.1";
        in.asks[0].per_minute = 5;
        struct cl_reserve_result res;
        enum cl_code code = reserve(&in, id, &res);
        long long after = get_num(key, 0);
        int64_t now = after - res.asks[0].reset_us;
        struct rl_decision want;
        rl_gcra(&ltat, 5, RL_MINUTE_US, now, 1, &want);
        assert_decision(&res.asks[0], &want);
        assert_int_equal(ltat, after);
        if (i < 5) {
            assert_int_equal(code, CL_ADMITTED);
            assert_int_equal(res.asks[0].remaining, 4 - i);
        } else {
            assert_int_equal(code, CL_RATE);
            assert_int_equal(res.index, 0);
            assert_true(res.asks[0].retry_after_us > 0 && res.asks[0].retry_after_us <= 12 * S);
        }
        assert_false(exists(P "rl:ip:10.0.0.1:h"));
    }
    /* No limit at all: admitted, limit 0, nothing stored. */
    struct cl_reserve in = new_reserve();
    in.n_asks = 1;
    in.asks[0].who = "ip:10.0.0.2";
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, "pm-none", &res), CL_ADMITTED);
    assert_true(res.asks[0].allowed);
    assert_int_equal(res.asks[0].limit, 0);
    assert_false(exists(P "rl:ip:10.0.0.2:h"));
    assert_false(exists(P "rl:ip:10.0.0.2:m"));
}

/* Limits that do not divide the window: the increment is rounded down (as
 * rl_gcra does), so that exactly `limit` fit in a burst. */
static void test_requests_uneven_limits(void **state)
{
    NEED_REDIS();
    static const struct {
        const char *who, *key;
        int64_t per_hour, per_minute, window;
    } cases[] = {
        {"key:odd-h", P "rl:key:odd-h:h", 7, 0, RL_HOUR_US},
        {"key:odd-m", P "rl:key:odd-m:m", 0, 7, RL_MINUTE_US},
        {"key:odd-m2", P "rl:key:odd-m2:m", 0, 13, RL_MINUTE_US},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t limit = cases[c].per_hour ? cases[c].per_hour : cases[c].per_minute;
        int64_t ltat = 0;
        for (int i = 0; i <= limit; i++) {
            char id[48];
            snprintf(id, sizeof id, "odd-%zu-%d", c, i);
            struct cl_reserve in = new_reserve();
            in.n_asks = 1;
            in.asks[0].who = cases[c].who;
            in.asks[0].per_hour = cases[c].per_hour;
            in.asks[0].per_minute = cases[c].per_minute;
            struct cl_reserve_result res;
            enum cl_code code = reserve(&in, id, &res);
            long long after = get_num(cases[c].key, 0);
            struct rl_decision want;
            rl_gcra(&ltat, limit, cases[c].window, after - res.asks[0].reset_us, 1, &want);
            assert_decision(&res.asks[0], &want);
            assert_int_equal(ltat, after);
            assert_int_equal(code, i < limit ? CL_ADMITTED : CL_RATE);
            if (i < limit) assert_int_equal(res.asks[0].remaining, limit - 1 - i);
        }
    }
}

/* Hour and minute together, against rl_take_request on a local table at
 * the same instants: the tighter one is shown; a minute refusal leaves
 * the hour uncharged. */
static void test_requests_hour_and_minute(void **state)
{
    NEED_REDIS();
    struct rl_table *t = rl_table_new();
    const char *hk = P "rl:key:both:h", *mk = P "rl:key:both:m";
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "hm-%d", i);
        struct cl_reserve in = new_reserve();
        in.n_asks = 1;
        in.asks[0].who = "key:both";
        in.asks[0].per_hour = 100;
        in.asks[0].per_minute = 3;
        long long hour_before = get_num(hk, 0);
        struct cl_reserve_result res;
        enum cl_code code = reserve(&in, id, &res);
        /* the minute is the tighter (and, from the 4th, the refusing) one */
        int64_t now = get_num(mk, 0) - res.asks[0].reset_us;
        struct rl_decision want;
        bool ok = rl_take_request(t, "key:both", 100, 3, now, &want);
        assert_decision(&res.asks[0], &want);
        assert_int_equal(res.asks[0].limit, 3);
        if (i < 3) {
            assert_true(ok);
            assert_int_equal(code, CL_ADMITTED);
            assert_int_equal(res.asks[0].remaining, 2 - i);
            assert_int_equal(get_num(hk, 0) - (hour_before > now ? hour_before : now), 36 * S);
        } else {
            assert_false(ok);
            assert_int_equal(code, CL_RATE);
            assert_int_equal(get_num(hk, 0), hour_before); /* hour not charged */
        }
    }
    rl_table_free(t);
}

/* Hour and minute both refusing: the answer must not send the client back
 * before both allow, i.e. the hour's retry (1800 s here), not the
 * minute's (30 s). */
static void test_requests_both_refuse(void **state)
{
    NEED_REDIS();
    struct cl_reserve in = new_reserve();
    in.n_asks = 1;
    in.asks[0].who = "key:both2";
    in.asks[0].per_hour = 2;
    in.asks[0].per_minute = 2;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, "both-0", &res), CL_ADMITTED);
    assert_int_equal(reserve(&in, "both-1", &res), CL_ADMITTED);
    long long h = get_num(P "rl:key:both2:h", 0), m = get_num(P "rl:key:both2:m", 0);
    assert_int_equal(reserve(&in, "both-2", &res), CL_RATE);
    assert_false(res.asks[0].allowed);
    assert_int_equal(res.asks[0].limit, 2);
    int64_t now = h - res.asks[0].reset_us; /* the hour is shown */
    int64_t hour_retry = h + 1800 * S - RL_HOUR_US - now;
    assert_true(hour_retry > 1799 * S);
    assert_int_equal(res.asks[0].retry_after_us, hour_retry);
    assert_int_equal(get_num(P "rl:key:both2:h", 0), h);
    assert_int_equal(get_num(P "rl:key:both2:m", 0), m);
}

/* Two asks (key, then client IP): when the second refuses, the first stays
 * charged (as rl_take_requests); when the first refuses, the second is not
 * looked at. */
static void test_two_asks(void **state)
{
    NEED_REDIS();
    struct rl_table *t = rl_table_new();
    const char *kk = P "rl:key:k1:h", *ik = P "rl:ip:1.2.3.4:h";
    struct rl_ask asks[2] = {{"key:k1", 10, 0}, {"ip:1.2.3.4", 2, 0}};
    for (int i = 0; i < 4; i++) {
        char id[32];
        snprintf(id, sizeof id, "two-%d", i);
        struct cl_reserve in = new_reserve();
        in.n_asks = 2;
        in.asks[0].who = "key:k1";
        in.asks[0].per_hour = 10;
        in.asks[1].who = "ip:1.2.3.4";
        in.asks[1].per_hour = 2;
        long long key_before = get_num(kk, 0), ip_before = get_num(ik, 0);
        struct cl_reserve_result res;
        enum cl_code code = reserve(&in, id, &res);
        int64_t now = get_num(kk, 0) - res.asks[0].reset_us;
        struct rl_decision want[2];
        memset(want, 0, sizeof want);
        int refused = rl_take_requests(t, asks, 2, now, want);
        assert_decision(&res.asks[0], &want[0]);
        assert_decision(&res.asks[1], &want[1]);
        assert_int_equal(res.asks[0].remaining, 9 - i);
        assert_int_equal(get_num(kk, 0) - (key_before > now ? key_before : now), 360 * S);
        if (i < 2) {
            assert_int_equal(refused, -1);
            assert_int_equal(code, CL_ADMITTED);
        } else {
            assert_int_equal(refused, 1);
            assert_int_equal(code, CL_RATE);
            assert_int_equal(res.index, 1);
            assert_true(res.asks[0].allowed);
            assert_false(res.asks[1].allowed);
            assert_true(res.asks[1].retry_after_us > 0);
            assert_int_equal(get_num(ik, 0), ip_before);
        }
    }
    /* The first refusing: the second is not charged. */
    struct cl_reserve in = new_reserve();
    in.n_asks = 2;
    in.asks[0].who = "key:k2";
    in.asks[0].per_hour = 1;
    in.asks[1].who = "ip:5.6.7.8";
    in.asks[1].per_hour = 100;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, "two-first", &res), CL_ADMITTED);
    long long ip_tat = get_num(P "rl:ip:5.6.7.8:h", 0);
    assert_true(ip_tat > 0);
    assert_int_equal(reserve(&in, "two-first-2", &res), CL_RATE);
    assert_int_equal(res.index, 0);
    assert_false(res.asks[0].allowed);
    assert_int_equal(get_num(P "rl:ip:5.6.7.8:h", 0), ip_tat);
    rl_table_free(t);
}

/* Refused requests charge nothing, however many. */
static void test_refused_charges_nothing(void **state)
{
    NEED_REDIS();
    struct cl_reserve in = new_reserve();
    in.n_asks = 1;
    in.asks[0].who = "key:once";
    in.asks[0].per_hour = 1;
    in.asks[0].per_minute = 10;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, "rc-0", &res), CL_ADMITTED);
    long long h = get_num(P "rl:key:once:h", 0), m = get_num(P "rl:key:once:m", 0);
    assert_true(h > 0 && m > 0);
    for (int i = 1; i < 6; i++) {
        char id[32];
        snprintf(id, sizeof id, "rc-%d", i);
        assert_int_equal(reserve(&in, id, &res), CL_RATE);
        assert_false(held(id));
    }
    assert_int_equal(zcard("holds"), 1);
    /* the hour refused: the minute (which would have allowed) is not charged either */
    assert_int_equal(get_num(P "rl:key:once:h", 0), h);
    assert_int_equal(get_num(P "rl:key:once:m", 0), m);
}

/* Tokens per minute: the estimate is charged, a request over the limit is
 * refused (CL_TOKENS) without a hold, settlement corrects the count. */
static void test_tokens_per_minute(void **state)
{
    NEED_REDIS();
    const char *key = P "tpm:key:tok";
    int64_t ltat = 0;
    struct cl_reserve in = new_reserve();
    in.tpm_who = "key:tok";
    in.tpm_limit = 1000;
    in.est_tokens = 600;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, "tok-a", &res), CL_ADMITTED);
    struct rl_decision want;
    int64_t now = get_num(key, 0) - res.tokens.reset_us;
    rl_gcra(&ltat, 1000, RL_MINUTE_US, now, 600, &want);
    assert_decision(&res.tokens, &want);
    assert_int_equal(get_num(key, 0), ltat);
    assert_true(res.tokens.allowed);
    assert_int_equal(res.tokens.limit, 1000);
    assert_int_equal(res.tokens.remaining, 400);

    /* 500 more do not fit: refused, nothing charged, no hold */
    in.est_tokens = 500;
    assert_int_equal(reserve(&in, "tok-b", &res), CL_TOKENS);
    now = get_num(key, 0) - res.tokens.reset_us;
    rl_gcra(&ltat, 1000, RL_MINUTE_US, now, 500, &want);
    assert_decision(&res.tokens, &want);
    assert_false(res.tokens.allowed);
    assert_true(res.tokens.retry_after_us > 0 && res.tokens.retry_after_us <= 6 * S);
    assert_int_equal(get_num(key, 0), ltat);
    assert_false(held("tok-b"));
    assert_true(held("tok-a"));

    /* tokens that fit, refused by a budget: the tokens are not charged */
    in.est_tokens = 100;
    in.amount = 20;
    in.n_scopes = 1;
    in.scopes[0].name = "g";
    in.scopes[0].daily = 10;
    assert_int_equal(reserve(&in, "tok-budget", &res), CL_BUDGET);
    assert_true(res.tokens.allowed);
    assert_int_equal(get_num(key, 0), ltat);
    assert_false(held("tok-budget"));
    in.amount = 0;
    in.n_scopes = 0;
    in.est_tokens = 500;

    /* The first used 300 tokens only: 300 given back (18 s of the minute). */
    struct cl_settle st = new_settle("tok-a", 0, 0);
    st.tpm_who = "key:tok";
    st.tpm_limit = 1000;
    st.tpm_delta = -300;
    struct cl_settle_result sr;
    assert_true(settle(&st, &sr));
    ltat -= 18 * S;
    assert_int_equal(get_num(key, 0), ltat);
    /* a retry of that settlement gives nothing back twice */
    assert_false(settle(&st, &sr));
    assert_int_equal(get_num(key, 0), ltat);

    /* now 500 fit: 300 + 500 of 1000 */
    assert_int_equal(reserve(&in, "tok-c", &res), CL_ADMITTED);
    now = get_num(key, 0) - res.tokens.reset_us;
    rl_gcra(&ltat, 1000, RL_MINUTE_US, now, 500, &want);
    assert_decision(&res.tokens, &want);
    assert_int_equal(get_num(key, 0), ltat);
    assert_true(res.tokens.remaining >= 200 && res.tokens.remaining <= 210);

    /* used 100 more than estimated: charged */
    st = new_settle("tok-c", 0, 0);
    st.tpm_who = "key:tok";
    st.tpm_limit = 1000;
    st.tpm_delta = 100;
    assert_true(settle(&st, &sr));
    ltat += 6 * S;
    assert_int_equal(get_num(key, 0), ltat);

    /* giving back more than is counted empties the bucket */
    in.est_tokens = 0;
    assert_int_equal(reserve(&in, "tok-d", &res), CL_ADMITTED);
    st = new_settle("tok-d", 0, 0);
    st.tpm_who = "key:tok";
    st.tpm_limit = 1000;
    st.tpm_delta = -100000;
    assert_true(settle(&st, &sr));
    assert_false(exists(key));
    in.est_tokens = 1000;
    assert_int_equal(reserve(&in, "tok-e", &res), CL_ADMITTED);
    assert_int_equal(res.tokens.remaining, 0);
}

/* Budgets on three scopes with daily and monthly limits: admitted while
 * spent + reserved + amount <= limit, refused all or nothing. */
static void test_budgets(void **state)
{
    NEED_REDIS();
    char g[CL_SCOPE_MAX], k[CL_SCOPE_MAX], t[CL_SCOPE_MAX], k2[CL_SCOPE_MAX];
    cl_scope_name('g', NULL, g, sizeof g);
    cl_scope_name('k', "key1", k, sizeof k);
    cl_scope_name('t', "acme", t, sizeof t);
    cl_scope_name('k', "key2", k2, sizeof k2);
    assert_string_equal(g, "g");
    assert_string_equal(k, "k:key1");
    assert_string_equal(t, "t:acme");

    struct cl_reserve in = new_reserve();
    in.amount = 200;
    in.n_scopes = 3;
    in.scopes[0].name = g;
    in.scopes[0].daily = 1000;
    in.scopes[0].monthly = 5000;
    in.scopes[1].name = k;
    in.scopes[1].daily = 500;
    in.scopes[2].name = t;
    in.scopes[2].monthly = 700;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, "b-a", &res), CL_ADMITTED);
    for (int i = 0; i < 3; i++) assert_seeds(res, i, 0, 0); /* each has a limit: read */
    assert_win(g, "r", 200);
    assert_win(k, "r", 200);
    assert_win(t, "r", 200);
    assert_win(g, "s", NONE);

    /* k: 0 + 200 + 300 = 500 <= 500 */
    in.amount = 300;
    assert_int_equal(reserve(&in, "b-b", &res), CL_ADMITTED);
    assert_win(k, "r", 500);

    /* k: 0 + 500 + 1 > 500: refused by scope 1, daily; nothing reserved */
    in.amount = 1;
    assert_int_equal(reserve(&in, "b-c", &res), CL_BUDGET);
    assert_int_equal(res.index, 1);
    assert_false(res.monthly);
    assert_win(g, "r", 500);
    assert_win(k, "r", 500);
    assert_win(t, "r", 500);
    assert_false(held("b-c"));

    /* a's real cost: 150 (170 for the gateway's own scope) */
    struct cl_settle st = new_settle("b-a", 150, 170);
    st.n_scopes = 3;
    st.scopes[0] = g;
    st.scopes[1] = k;
    st.scopes[2] = t;
    struct cl_settle_result sr;
    assert_true(settle(&st, &sr));
    assert_seeds(sr, 0, 170, 170);
    assert_seeds(sr, 1, 150, 150);
    assert_seeds(sr, 2, 150, 150);
    assert_win(g, "r", 300);
    assert_win(k, "r", 300);
    assert_win(t, "r", 300);
    assert_win(g, "s", 170);
    assert_win(k, "s", 150);
    assert_win(t, "s", 150);

    /* k: 150 + 300 + 50 = 500: admitted; the seeds say what was spent */
    in.amount = 50;
    assert_int_equal(reserve(&in, "b-d", &res), CL_ADMITTED);
    assert_seeds(res, 0, 170, 170);
    assert_seeds(res, 1, 150, 150);
    assert_seeds(res, 2, 150, 150);
    assert_win(t, "r", 350);

    /* another key, no limits of its own: t's month 150 + 350 + 201 > 700,
     * refused by scope 2, monthly; neither g nor k2 reserved */
    struct cl_reserve in2 = new_reserve();
    in2.amount = 201;
    in2.n_scopes = 3;
    in2.scopes[0].name = g;
    in2.scopes[0].daily = 1000;
    in2.scopes[0].monthly = 5000;
    in2.scopes[1].name = k2;
    in2.scopes[2].name = t;
    in2.scopes[2].monthly = 700;
    assert_int_equal(reserve(&in2, "b-e", &res), CL_BUDGET);
    assert_int_equal(res.index, 2);
    assert_true(res.monthly);
    assert_seeds(res, 0, 170, 170);
    assert_seeds(res, 1, -1, -1); /* no limit: not read */
    assert_seeds(res, 2, 150, 150);
    assert_win(g, "r", 350);
    assert_win(t, "r", 350);
    assert_win(k2, "r", NONE);
    /* exactly at the limit: 150 + 350 + 200 = 700 */
    in2.amount = 200;
    assert_int_equal(reserve(&in2, "b-f", &res), CL_ADMITTED);
    assert_win(g, "r", 550);
    assert_win(t, "r", 550);
    assert_win(k2, "r", NONE); /* no limit: nothing to hold */
    assert_false(exists(P "b:k:key2:d:20261204"));

    /* the gateway's daily limit: 170 + 550 + 281 > 1000 (monthly 5000 fine) */
    in2.amount = 281;
    in2.scopes[2].monthly = 0;
    assert_int_equal(reserve(&in2, "b-g", &res), CL_BUDGET);
    assert_int_equal(res.index, 0);
    assert_false(res.monthly);
    assert_seeds(res, 2, -1, -1);
    /* the gateway's monthly limit alone */
    in2.amount = 280;
    in2.scopes[0].daily = 0;
    in2.scopes[0].monthly = 999;
    assert_int_equal(reserve(&in2, "b-h", &res), CL_BUDGET);
    assert_int_equal(res.index, 0);
    assert_true(res.monthly);
    assert_win(g, "r", 550);
    assert_int_equal(zcard("holds"), 3); /* b, d, f (a settled) */

    /* The windows expire: a day's after 3 days, a month's after 70. */
    redisReply *r = cmd("TTL " P "b:g:d:%d", DAY);
    assert_true(r->integer > 259000 && r->integer <= 259200);
    freeReplyObject(r);
    r = cmd("TTL " P "b:g:m:%d", MONTH);
    assert_true(r->integer > 6047000 && r->integer <= 6048000);
    freeReplyObject(r);
}

/* A hold lives from reserve to settle, and settles exactly once. */
static void test_holds_exactly_once(void **state)
{
    NEED_REDIS();
    const char *scopes[2] = {"g", "k:x"};
    struct cl_reserve in = new_reserve();
    in.hold_ms = 30000;
    in.amount = 100;
    in.n_scopes = 2;
    in.scopes[0].name = scopes[0];
    in.scopes[0].daily = 1000;
    in.scopes[1].name = scopes[1];
    struct cl_reserve_result res;
    long long t0 = server_ms();
    assert_int_equal(reserve(&in, "h-1", &res), CL_ADMITTED);
    long long t1 = server_ms();
    /* the hold: its amount, periods and the scopes with a limit, scored by expiry */
    assert_string_equal(member_of("h-1"), "h-1 100 20261204 202612 1 g");
    long long score = zscore("holds", "h-1");
    assert_true(score >= t0 + 30000 && score <= t1 + 30000);
    assert_int_equal(zcard("holds"), 1);
    assert_win("g", "r", 100);
    assert_win("k:x", "r", NONE);

    struct cl_settle st = new_settle("h-1", 70, 90);
    st.n_scopes = 2;
    st.scopes[0] = scopes[0];
    st.scopes[1] = scopes[1];
    struct cl_settle_result sr;
    assert_true(settle(&st, &sr));
    assert_seeds(sr, 0, 90, 90);
    assert_seeds(sr, 1, 70, 70);
    assert_win("g", "r", 0);
    assert_win("g", "s", 90);
    assert_win("k:x", "s", 70);
    assert_false(held("h-1"));
    assert_false(swept("h-1"));

    /* the same settlement again (its answer was lost): nothing applied,
     * nothing written */
    assert_false(settle(&st, &sr));
    assert_seeds(sr, 0, -1, -1);
    assert_seeds(sr, 1, -1, -1);
    assert_win("g", "r", 0);
    assert_win("g", "s", 90);
    assert_win("k:x", "s", 70);
    /* nor released again */
    const char *ids[1] = {"h-1"};
    assert_int_equal(release(1, ids), 0);
    assert_win("g", "r", 0);

    /* a request that cost nothing: released, nothing added */
    assert_int_equal(reserve(&in, "h-2", &res), CL_ADMITTED);
    assert_win("g", "r", 100);
    st = new_settle("h-2", 0, 0);
    st.n_scopes = 2;
    st.scopes[0] = scopes[0];
    st.scopes[1] = scopes[1];
    assert_true(settle(&st, &sr));
    assert_seeds(sr, 0, -1, -1);
    assert_seeds(sr, 1, -1, -1);
    assert_win("g", "r", 0);
    assert_win("g", "s", 90);
    assert_false(held("h-2"));
    /* a settle of a request never reserved: nothing */
    st = new_settle("h-never", 5, 5);
    st.n_scopes = 1;
    st.scopes[0] = scopes[0];
    assert_false(settle(&st, &sr));
    assert_win("g", "s", 90);
    assert_int_equal(zcard("holds"), 0);
}

/* A hold past its expiry (its node died) is released by the next reserve
 * or poll, and kept in P swept: a late settlement still adds its cost,
 * once, without releasing twice. */
static void test_sweep(void **state)
{
    NEED_REDIS();
    const char *scopes[1] = {"g"};
    struct cl_reserve in = new_reserve();
    in.hold_ms = 1;
    in.amount = 100;
    in.n_scopes = 1;
    in.scopes[0].name = "g";
    in.scopes[0].daily = 1000;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, "sw-1", &res), CL_ADMITTED);
    assert_win("g", "r", 100);
    sleep_ms(20);

    in.hold_ms = 60000;
    in.amount = 10;
    long long t0 = server_ms();
    assert_int_equal(reserve(&in, "sw-2", &res), CL_ADMITTED);
    long long t1 = server_ms();
    assert_win("g", "r", 10); /* sw-1's 100 released, sw-2's 10 held */
    assert_false(held("sw-1"));
    long long kept = zscore("swept", "sw-1"); /* kept a day for a late settlement */
    assert_true(kept >= t0 + 86400000 && kept <= t1 + 86400000);
    assert_true(held("sw-2"));

    /* sw-1 was served after all: its cost counts, once */
    struct cl_settle st = new_settle("sw-1", 80, 80);
    st.n_scopes = 1;
    st.scopes[0] = scopes[0];
    struct cl_settle_result sr;
    assert_true(settle(&st, &sr));
    assert_seeds(sr, 0, 80, 80);
    assert_win("g", "r", 10);
    assert_win("g", "s", 80);
    assert_false(swept("sw-1"));
    assert_false(settle(&st, &sr));
    assert_seeds(sr, 0, -1, -1);
    assert_win("g", "r", 10);
    assert_win("g", "s", 80);

    /* the poll sweeps too; a swept hold is released once only */
    in.hold_ms = 1;
    in.amount = 40;
    assert_int_equal(reserve(&in, "sw-3", &res), CL_ADMITTED);
    assert_win("g", "r", 50);
    sleep_ms(20);
    long long v[3];
    poll_now(v);
    assert_int_equal(v[1], 80);
    assert_win("g", "r", 10);
    assert_true(swept("sw-3"));
    poll_now(v);
    assert_win("g", "r", 10);
    /* released after the sweep (its answer was lost): not released again,
     * dropped: its late settlement adds nothing (it went on locally) */
    const char *ids[1] = {"sw-3"};
    assert_int_equal(release(1, ids), 0);
    assert_win("g", "r", 10);
    assert_false(swept("sw-3"));
    st = new_settle("sw-3", 5, 5);
    st.n_scopes = 1;
    st.scopes[0] = scopes[0];
    assert_false(settle(&st, &sr));
    assert_win("g", "s", 80);

    /* more than one sweep's worth (8 per call) expire together: all released in time */
    in.hold_ms = 150;
    in.amount = 1;
    for (int i = 0; i < 12; i++) {
        char id[32];
        snprintf(id, sizeof id, "sw-many-%d", i);
        assert_int_equal(reserve(&in, id, &res), CL_ADMITTED);
    }
    assert_win("g", "r", 22);
    sleep_ms(170);
    poll_now(v);
    assert_win("g", "r", 14);
    poll_now(v);
    assert_win("g", "r", 10);
    assert_int_equal(zcard("holds"), 1); /* sw-2 */
    assert_int_equal(zcard("swept"), 12);
}

static void test_release(void **state)
{
    NEED_REDIS();
    struct cl_reserve in = new_reserve();
    in.amount = 30;
    in.n_scopes = 2;
    in.scopes[0].name = "g";
    in.scopes[0].daily = 1000;
    in.scopes[1].name = "t:acme";
    in.scopes[1].monthly = 1000;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, "rel-1", &res), CL_ADMITTED);
    assert_int_equal(reserve(&in, "rel-2", &res), CL_ADMITTED);
    assert_int_equal(reserve(&in, "rel-3", &res), CL_ADMITTED);
    assert_win("g", "r", 90);
    assert_win("t:acme", "r", 90);

    const char *ids[3] = {"rel-1", "rel-2", "rel-unknown"};
    assert_int_equal(release(3, ids), 2);
    assert_win("g", "r", 30);
    assert_win("t:acme", "r", 30);
    assert_false(held("rel-1"));
    assert_false(held("rel-2"));
    assert_false(swept("rel-1"));
    assert_true(held("rel-3"));
    /* again: nothing left to release */
    assert_int_equal(release(3, ids), 0);
    assert_win("g", "r", 30);
    assert_win("t:acme", "r", 30);
    /* a released request's settlement applies nothing (it went on locally) */
    struct cl_settle st = new_settle("rel-1", 10, 10);
    const char *g = "g";
    st.n_scopes = 1;
    st.scopes[0] = g;
    struct cl_settle_result sr;
    assert_false(settle(&st, &sr));
    assert_win("g", "s", NONE);
    assert_win("g", "r", 30);
    /* no members at all */
    assert_int_equal(release(0, ids), 0);
    assert_true(held("rel-3"));
}

static void test_reconcile(void **state)
{
    NEED_REDIS();
    struct cl_delta d[3] = {
        {.scope = "g", .kind = 'd', .period = DAY, .amount = 100},
        {.scope = "g", .kind = 'm', .period = MONTH, .amount = 250},
        {.scope = "k:x", .kind = 'd', .period = DAY, .amount = 7},
    };
    struct cl_argv a;
    cl_reconcile_argv(P, "node1-1", d, 3, &a);
    assert_int_equal(a.argc, 3 + 3 * 4);
    redisReply *r = script(SCRIPT_RECONCILE, &a);
    assert_int_equal(cl_reconcile_decode(r), 1);
    freeReplyObject(r);
    assert_int_equal(win("g", 'd', "s"), 100);
    assert_int_equal(win("g", 'm', "s"), 250);
    assert_int_equal(win("k:x", 'd', "s"), 7);
    assert_int_equal(win("k:x", 'm', "s"), NONE);
    /* the same batch again (a lost answer): applied before, nothing added */
    r = script(SCRIPT_RECONCILE, &a);
    assert_int_equal(cl_reconcile_decode(r), 0);
    freeReplyObject(r);
    assert_int_equal(win("g", 'd', "s"), 100);
    assert_int_equal(win("g", 'm', "s"), 250);
    assert_int_equal(win("k:x", 'd', "s"), 7);
    /* another batch adds */
    cl_reconcile_argv(P, "node1-2", d, 1, &a);
    r = script(SCRIPT_RECONCILE, &a);
    assert_int_equal(cl_reconcile_decode(r), 1);
    freeReplyObject(r);
    assert_int_equal(win("g", 'd', "s"), 200);
    r = cmd("TTL " P "rc:node1-1");
    assert_true(r->integer > 2590000 && r->integer <= 2592000);
    freeReplyObject(r);
    r = cmd("TTL " P "b:k:x:d:%d", DAY);
    assert_true(r->integer > 259000 && r->integer <= 259200);
    freeReplyObject(r);

    /* a full batch is CL_RECONCILE_BATCH deltas, more are cut */
    struct cl_delta many[20];
    memset(many, 0, sizeof many);
    for (int i = 0; i < 20; i++) {
        snprintf(many[i].scope, sizeof many[i].scope, "k:m%d", i);
        many[i].kind = i % 2 ? 'm' : 'd';
        many[i].period = i % 2 ? MONTH : DAY;
        many[i].amount = i + 1;
    }
    cl_reconcile_argv(P, "node1-3", many, 20, &a);
    assert_int_equal(a.argc, 3 + CL_RECONCILE_BATCH * 4);
    assert_true(a.argc <= CL_MAX_ARGS);
    r = script(SCRIPT_RECONCILE, &a);
    assert_int_equal(cl_reconcile_decode(r), 1);
    freeReplyObject(r);
    for (int i = 0; i < 20; i++)
        assert_int_equal(win(many[i].scope, many[i].kind, "s"), i < CL_RECONCILE_BATCH ? i + 1 : NONE);
}

/* The watcher's poll: the keys' version and the gateway's spend in the
 * asked day and month (nothing else), and a sweep of expired holds. */
static void test_poll(void **state)
{
    NEED_REDIS();
    long long v[3];
    poll_now(v);
    assert_int_equal(v[0], 0);
    assert_int_equal(v[1], 0);
    assert_int_equal(v[2], 0);
    spend("pl-1", "g", 'd', 11);
    spend("pl-2", "g", 'm', 22);
    spend("pl-3", "t:acme", 'm', 33); /* not the gateway's */
    redisReply *r = cmd("HINCRBY " P "b:g:d:%d s 1000", DAY - 1); /* another day's */
    freeReplyObject(r);
    poll_now(v);
    assert_int_equal(v[0], 0);
    assert_int_equal(v[1], 11);
    assert_int_equal(v[2], 22);
    poll_at(DAY - 1, MONTH - 1, v);
    assert_int_equal(v[1], 1000);
    assert_int_equal(v[2], 0);
    /* a key stored: the version moves */
    assert_int_equal(keyput("ab01", "{}"), 1);
    poll_now(v);
    assert_int_equal(v[0], 1);
    assert_int_equal(v[1], 11);

    /* it sweeps: an expired hold is released and kept for a late settlement */
    struct cl_reserve in = new_reserve();
    in.hold_ms = 1;
    in.amount = 40;
    in.n_scopes = 1;
    in.scopes[0].name = "g";
    in.scopes[0].daily = 1000;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, "pl-hold", &res), CL_ADMITTED);
    assert_win("g", "r", 40);
    sleep_ms(20);
    poll_now(v);
    assert_int_equal(v[1], 11); /* a reservation is not spend */
    assert_win("g", "r", 0);
    assert_false(held("pl-hold"));
    assert_true(swept("pl-hold"));
    struct cl_settle st = new_settle("pl-hold", 30, 30);
    st.n_scopes = 1;
    st.scopes[0] = "g";
    struct cl_settle_result sr;
    assert_true(settle(&st, &sr));
    assert_seeds(sr, 0, 41, 52);
    poll_now(v);
    assert_int_equal(v[1], 41);
    assert_int_equal(v[2], 52);
    assert_win("g", "r", 0);
}

/* Managed keys: KEYPUT stores a record under its hash and bumps the
 * version every time; KEYSALT keeps the first salt offered. */
static void test_keys(void **state)
{
    NEED_REDIS();
    assert_int_equal(keyput("00aa", "{\"id\":\"k1\"}"), 1);
    assert_int_equal(keyput("00bb", "{\"id\":\"k2\"}"), 2);
    assert_int_equal(keyput("00aa", "{\"id\":\"k1\",\"revoked\":true}"), 3); /* a change */
    redisReply *r = cmd("HGET " P "keys 00aa");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "{\"id\":\"k1\",\"revoked\":true}");
    freeReplyObject(r);
    r = cmd("HLEN " P "keys");
    assert_int_equal(r->integer, 2);
    freeReplyObject(r);
    assert_int_equal(get_num(P "keys:ver", 0), 3);
    long long v[3];
    poll_now(v);
    assert_int_equal(v[0], 3);

    char salt[80];
    keysalt(P, "5a17f00d", salt, sizeof salt);
    assert_string_equal(salt, "5a17f00d");
    keysalt(P, "0e1f", salt, sizeof salt); /* another node's fresh salt: the first stays */
    assert_string_equal(salt, "5a17f00d");
    keysalt("aptest2:", "0e1f", salt, sizeof salt); /* another prefix: its own */
    assert_string_equal(salt, "0e1f");
    r = cmd("GET " P "keys:salt");
    assert_string_equal(r->str, "5a17f00d");
    freeReplyObject(r);
    assert_int_equal(get_num(P "keys:ver", 0), 3); /* the salt is not a key change */
}

/* Several requests in one call, as a worker loop turn sends them: each gets
 * its own reply, in order, at one instant; each sees the effects of those
 * before it; a refusal in the middle changes nothing for the others. */
static void test_batch(void **state)
{
    NEED_REDIS();
    struct cl_reserve in[5];
    const char *ids[5] = {"bt-0", "bt-1", "bt-2", "bt-3", "bt-4"};
    for (int i = 0; i < 5; i++) {
        in[i] = new_reserve();
        in[i].n_asks = 1;
        in[i].asks[0].who = i < 3 ? "key:a" : "key:b";
        in[i].asks[0].per_hour = 2;
        in[i].amount = 100;
        in[i].n_scopes = 1;
        in[i].scopes[0].name = "g";
        in[i].scopes[0].daily = 250;
    }
    /* bt-2: key:a's third in an hour of 2 (refused); bt-3: 200 + 100 > 250
     * (refused, its request limit charged); bt-4: 200 + 50 fits, with a
     * second ask and a scope without a limit (another shape in the batch) */
    in[4].amount = 50;
    in[4].n_asks = 2;
    in[4].asks[1].who = "ip:9.9.9.9";
    in[4].asks[1].per_minute = 10;
    in[4].n_scopes = 2;
    in[4].scopes[1].name = "k:free";
    struct cl_reserve_result res[5];
    reserve_n(5, in, ids, res);
    assert_int_equal(res[0].code, CL_ADMITTED);
    assert_int_equal(res[1].code, CL_ADMITTED);
    assert_int_equal(res[2].code, CL_RATE);
    assert_int_equal(res[3].code, CL_BUDGET);
    assert_int_equal(res[3].index, 0);
    assert_int_equal(res[4].code, CL_ADMITTED);

    /* key:a: the three decisions are rl_gcra's at the batch's one instant */
    long long ta = get_num(P "rl:key:a:h", 0);
    int64_t now = ta - res[1].asks[0].reset_us, ltat = 0;
    for (int i = 0; i < 3; i++) {
        struct rl_decision want;
        rl_gcra(&ltat, 2, RL_HOUR_US, now, 1, &want);
        assert_decision(&res[i].asks[0], &want);
    }
    assert_int_equal(ltat, ta);
    /* key:b: bt-3's charge stays (refused by the budget, after the limits) */
    assert_int_equal(res[3].asks[0].remaining, 1);
    assert_int_equal(res[4].asks[0].remaining, 0);
    assert_int_equal(get_num(P "rl:key:b:h", 0) - now, 2 * 1800 * S);
    assert_true(res[4].asks[1].allowed);
    assert_int_equal(res[4].asks[1].limit, 10);
    assert_int_equal(res[4].asks[1].remaining, 9);
    /* the seeds (nothing spent yet) */
    for (int i = 0; i < 5; i++) assert_seeds(res[i], 0, 0, 0);
    assert_seeds(res[4], 1, -1, -1);
    /* holds: the admitted ones only, and their reservations */
    assert_true(held("bt-0"));
    assert_true(held("bt-1"));
    assert_false(held("bt-2"));
    assert_false(held("bt-3"));
    assert_true(held("bt-4"));
    assert_win("g", "r", 250);
    assert_win("k:free", "r", NONE);

    /* the same requests one by one on a fresh store: the same answers */
    redisReply *r = cmd("FLUSHALL");
    freeReplyObject(r);
    for (int i = 0; i < 5; i++) {
        struct cl_reserve_result one;
        char id[16];
        snprintf(id, sizeof id, "one-%d", i);
        assert_int_equal(reserve(&in[i], id, &one), res[i].code);
        assert_int_equal(one.asks[0].remaining, res[i].asks[0].remaining);
    }
    assert_win("g", "r", 250);
    r = cmd("FLUSHALL");
    freeReplyObject(r);
    reserve_n(5, in, ids, res);

    /* settlements in one call: bt-0, bt-4, bt-0 again (a retry in the same
     * batch), bt-2 (never held): applied, applied, not, not */
    struct cl_settle st[4] = {new_settle("bt-0", 80, 80), new_settle("bt-4", 40, 40),
                              new_settle("bt-0", 80, 80), new_settle("bt-2", 7, 7)};
    for (int i = 0; i < 4; i++) {
        st[i].n_scopes = 1;
        st[i].scopes[0] = "g";
    }
    st[1].n_scopes = 2;
    st[1].scopes[1] = "k:free";
    struct cl_settle_result sr[4];
    settle_n(4, st, sr);
    assert_true(sr[0].applied);
    assert_seeds(sr[0], 0, 80, 80);
    assert_true(sr[1].applied);
    assert_seeds(sr[1], 0, 120, 120);
    assert_seeds(sr[1], 1, 40, 40);
    assert_false(sr[2].applied);
    assert_seeds(sr[2], 0, -1, -1);
    assert_false(sr[3].applied);
    assert_seeds(sr[3], 0, -1, -1);
    assert_win("g", "s", 120);
    assert_win("g", "r", 100); /* bt-1's */
    assert_win("k:free", "s", 40);
    assert_int_equal(zcard("holds"), 1);
    assert_true(held("bt-1"));
}

/* The seeds (what the windows hold) are -1 where nothing was read or
 * written: a reservation does not read a scope without a limit, a
 * settlement writes nothing for a zero cost. */
static void test_seeds_unlimited(void **state)
{
    NEED_REDIS();
    spend("sd-rc1", "g", 'd', 5);
    spend("sd-rc2", "k:free", 'd', 7);
    spend("sd-rc3", "k:free", 'm', 9);
    spend("sd-rc4", "t:free", 'm', 11);
    struct cl_reserve in = new_reserve();
    in.amount = 10;
    in.n_scopes = 3;
    in.scopes[0].name = "g";
    in.scopes[0].daily = 1000;
    in.scopes[1].name = "k:free";
    in.scopes[2].name = "t:free";
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, "sd-1", &res), CL_ADMITTED);
    assert_seeds(res, 0, 5, 0);
    assert_seeds(res, 1, -1, -1);
    assert_seeds(res, 2, -1, -1);
    assert_string_equal(member_of("sd-1"), "sd-1 10 20261204 202612 1 g");
    assert_win("k:free", "r", NONE);
    /* a refusal reads the same */
    in.amount = 996;
    assert_int_equal(reserve(&in, "sd-2", &res), CL_BUDGET);
    assert_seeds(res, 0, 5, 0);
    assert_seeds(res, 1, -1, -1);
    assert_seeds(res, 2, -1, -1);
    /* no limit anywhere: nothing read, all -1; the hold has no scope */
    in.scopes[0].daily = 0;
    assert_int_equal(reserve(&in, "sd-3", &res), CL_ADMITTED);
    for (int i = 0; i < 3; i++) assert_seeds(res, i, -1, -1);
    assert_string_equal(member_of("sd-3"), "sd-3 996 20261204 202612 0");
    assert_win("g", "r", 10);

    /* a zero cost: applied, nothing written */
    struct cl_settle st = new_settle("sd-1", 0, 0);
    st.n_scopes = 3;
    st.scopes[0] = "g";
    st.scopes[1] = "k:free";
    st.scopes[2] = "t:free";
    struct cl_settle_result sr;
    assert_true(settle(&st, &sr));
    for (int i = 0; i < 3; i++) assert_seeds(sr, i, -1, -1);
    assert_win("g", "r", 0);
    assert_int_equal(win("g", 'd', "s"), 5);
    assert_int_equal(win("g", 'm', "s"), NONE);
    /* the gateway's own cost 0, the others' 3: written where it is spent */
    st = new_settle("sd-3", 3, 0);
    st.n_scopes = 3;
    st.scopes[0] = "g";
    st.scopes[1] = "k:free";
    st.scopes[2] = "t:free";
    assert_true(settle(&st, &sr));
    assert_seeds(sr, 0, -1, -1);
    assert_seeds(sr, 1, 10, 12);
    assert_seeds(sr, 2, 3, 14);
    assert_int_equal(win("g", 'd', "s"), 5);
}

/* Scope names with spaces, '%' and control bytes are encoded so that the
 * hold's space-separated member round-trips. */
static void test_scope_names(void **state)
{
    char out[CL_SCOPE_MAX];
    cl_scope_name('t', "acme corp 100%", out, sizeof out);
    assert_string_equal(out, "t:acme%20corp%20100%25");
    cl_scope_name('k', "a\tb\nc\x7f" "d\xc3\xa9", out, sizeof out);
    assert_string_equal(out, "k:a%09b%0Ac%7Fd\xc3\xa9");
    cl_scope_name('g', NULL, out, sizeof out);
    assert_string_equal(out, "g");
    cl_scope_name('k', "", out, sizeof out);
    assert_string_equal(out, "k:");
    /* too long: cut before a whole escape, never inside one */
    char longname[400];
    memset(longname, '%', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cl_scope_name('k', longname, out, sizeof out);
    size_t n = strlen(out);
    assert_true(n < CL_SCOPE_MAX);
    assert_int_equal((n - 2) % 3, 0);
    for (size_t i = 2; i < n; i += 3) assert_memory_equal(out + i, "%25", 3);
    char tiny[3] = "zz";
    cl_scope_name('k', "abc", tiny, sizeof tiny);
    assert_string_equal(tiny, "");

    NEED_REDIS();
    char t[CL_SCOPE_MAX], k[CL_SCOPE_MAX];
    cl_scope_name('t', "acme corp 100%", t, sizeof t);
    cl_scope_name('k', "my key\x01", k, sizeof k);
    struct cl_reserve in = new_reserve();
    in.amount = 50;
    in.n_scopes = 2;
    in.scopes[0].name = t;
    in.scopes[0].daily = 1000;
    in.scopes[1].name = k;
    in.scopes[1].monthly = 1000;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, "sp-1", &res), CL_ADMITTED);
    assert_string_equal(member_of("sp-1"),
                        "sp-1 50 20261204 202612 2 t:acme%20corp%20100%25 k:my%20key%01");
    assert_win(t, "r", 50);
    assert_win(k, "r", 50);
    struct cl_settle st = new_settle("sp-1", 20, 25);
    st.n_scopes = 2;
    st.scopes[0] = t;
    st.scopes[1] = k;
    struct cl_settle_result sr;
    assert_true(settle(&st, &sr));
    assert_win(t, "r", 0);
    assert_win(k, "r", 0);
    assert_win(t, "s", 25);
    assert_win(k, "s", 20);
    assert_seeds(sr, 0, 25, 25);
    assert_seeds(sr, 1, 20, 20);
    /* released by the release script and by the sweep, too */
    assert_int_equal(reserve(&in, "sp-2", &res), CL_ADMITTED);
    in.hold_ms = 1;
    assert_int_equal(reserve(&in, "sp-3", &res), CL_ADMITTED);
    assert_win(t, "r", 100);
    const char *ids[1] = {"sp-2"};
    assert_int_equal(release(1, ids), 1);
    assert_win(t, "r", 50);
    assert_win(k, "r", 50);
    sleep_ms(20);
    long long v[3];
    poll_now(v);
    assert_true(swept("sp-3"));
    assert_win(t, "r", 0);
    assert_win(k, "r", 0);
    assert_win(t, "s", 25);
    assert_win(k, "s", 20);
    /* the windows were the encoded names' (no key with a raw space) */
    redisReply *r = cmd("KEYS " P "b:*");
    for (size_t i = 0; i < r->elements; i++) assert_null(strchr(r->element[i]->str, ' '));
    assert_int_equal(r->elements, 4);
    freeReplyObject(r);
}

/* cl_hold_member: "request_id amount day month n scope..." with the scopes
 * that have a limit, the amount clamped as the script sees it; NULL when it
 * does not fit; CL_MEMBER_MAX holds the longest. */
static void test_hold_member(void **state)
{
    struct cl_reserve in = new_reserve();
    char m[CL_MEMBER_MAX];
    assert_ptr_equal(cl_hold_member(&in, "r1", m, sizeof m), m);
    assert_string_equal(m, "r1 0 20261204 202612 0");
    in.amount = -5;
    in.n_scopes = 3;
    in.scopes[0].name = "g";
    in.scopes[0].daily = 1;
    in.scopes[1].name = "k:none";
    in.scopes[1].daily = -1;
    in.scopes[2].name = "t:x";
    in.scopes[2].monthly = INT64_MAX;
    assert_non_null(cl_hold_member(&in, "r1", m, sizeof m));
    assert_string_equal(m, "r1 0 20261204 202612 2 g t:x");
    in.amount = INT64_MAX;
    assert_non_null(cl_hold_member(&in, "r1", m, sizeof m));
    assert_string_equal(m, "r1 9007199254740991 20261204 202612 2 g t:x");
    size_t len = strlen(m);
    char small[CL_MEMBER_MAX];
    assert_non_null(cl_hold_member(&in, "r1", small, len + 1));
    assert_null(cl_hold_member(&in, "r1", small, len)); /* a scope cut off */
    assert_null(cl_hold_member(&in, "r1", small, 8));   /* the head cut off */
    /* the longest: a 24-byte id, the widest numbers, three full scope names */
    char names[3][CL_SCOPE_MAX], longname[400];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    for (int i = 0; i < 3; i++) {
        cl_scope_name('k', longname, names[i], sizeof names[i]);
        assert_int_equal(strlen(names[i]), CL_SCOPE_MAX - 1);
        in.scopes[i].name = names[i];
        in.scopes[i].daily = 1;
    }
    in.day = in.month = INT64_MIN;
    assert_non_null(cl_hold_member(&in, "req_0123456789abcdef0123", m, sizeof m));
    assert_int_equal(strlen(m), 24 + 1 + 16 + 2 * (1 + 20) + 2 + 3 * (1 + strlen(names[0])));
}

/* Money stays exact to the nano-dollar up to 2^53 - 1; larger amounts are
 * clamped (to CL_NUM_MAX) by the C side before Lua sees them. */
static void test_money_exact(void **state)
{
    const int64_t max = NUM_MAX - 1; /* 9007199254740991 */
    /* the argument builders clamp to [0, CL_NUM_MAX] */
    struct cl_reserve c = new_reserve();
    c.amount = INT64_MAX;
    c.hold_ms = -5;
    c.n_scopes = 1;
    c.scopes[0].name = "g";
    c.scopes[0].daily = INT64_MAX;
    c.scopes[0].monthly = -1;
    struct cl_argv a;
    char cap[24], neg[24];
    snprintf(cap, sizeof cap, "%lld", (long long)CL_NUM_MAX);
    snprintf(neg, sizeof neg, "%lld", -(long long)CL_NUM_MAX);
    assert_true(CL_NUM_MAX == NUM_MAX || CL_NUM_MAX == NUM_MAX - 1);
    make_member(&c, "clamp");
    const char *member = member_of("clamp");
    assert_ptr_equal(c.member, member);
    assert_string_equal(member, "clamp 9007199254740991 20261204 202612 1 g");
    cl_reserve_argv(&c, &a);
    assert_int_equal(a.argc, 4 + 3 + 4 + 3);
    assert_string_equal(a.argv[1], member);
    assert_string_equal(a.argv[2], "0"); /* hold_ms */
    assert_string_equal(a.argv[7], cap); /* amount */
    assert_string_equal(a.argv[12], cap);
    assert_string_equal(a.argv[13], "0");
    for (int i = 0; i < a.argc; i++) assert_int_equal(a.lens[i], strlen(a.argv[i]));
    struct cl_settle s = new_settle("clamp", INT64_MAX, -3);
    s.tpm_who = "w";
    s.tpm_limit = 10;
    s.tpm_delta = INT64_MIN;
    cl_settle_argv(&s, &a);
    assert_string_equal(a.argv[1], member);
    assert_string_equal(a.argv[2], cap);
    assert_string_equal(a.argv[3], "0");
    assert_string_equal(a.argv[8], neg);
    s.tpm_who = NULL;
    cl_settle_argv(&s, &a);
    assert_string_equal(a.argv[6], "");
    assert_string_equal(a.argv[7], "0");

    NEED_REDIS();
    const char *g = "g";
    struct cl_reserve in = new_reserve();
    in.amount = max;
    in.n_scopes = 1;
    in.scopes[0].name = g;
    in.scopes[0].daily = max;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, "m-1", &res), CL_ADMITTED);
    assert_win(g, "r", max);
    assert_true(held("m-1"));
    assert_string_equal(member_of("m-1"), "m-1 9007199254740991 20261204 202612 1 g");
    /* one nano more does not fit */
    in.amount = 1;
    assert_int_equal(reserve(&in, "m-2", &res), CL_BUDGET);
    assert_win(g, "r", max);

    struct cl_settle st = new_settle("m-1", max - 1, max);
    st.n_scopes = 2;
    st.scopes[0] = g;
    st.scopes[1] = "k:big";
    struct cl_settle_result sr;
    assert_true(settle(&st, &sr));
    assert_seeds(sr, 0, max, max);
    assert_seeds(sr, 1, max - 1, max - 1);
    assert_win(g, "r", 0);
    assert_win(g, "s", max);
    assert_win("k:big", "s", max - 1);
    /* spent == limit: nothing more fits, not even 1; the seeds are exact */
    assert_int_equal(reserve(&in, "m-3", &res), CL_BUDGET);
    assert_seeds(res, 0, max, max);
    in.amount = 0;
    assert_int_equal(reserve(&in, "m-4", &res), CL_ADMITTED);
    long long v[3];
    poll_now(v);
    assert_int_equal(v[1], max);
    assert_int_equal(v[2], max);

    /* large round amounts travel as integers (no "1e+15" in HINCRBY) */
    spend("m-rc", "k:round", 'd', 1000000000000000LL);
    in.amount = 3000000000000000LL;
    in.scopes[0].name = "k:round";
    in.scopes[0].daily = 4000000000000000LL;
    assert_int_equal(reserve(&in, "m-5", &res), CL_ADMITTED);
    assert_win("k:round", "r", 3000000000000000LL);
    assert_int_equal(win("k:round", 'd', "s"), 1000000000000000LL);
    st = new_settle("m-5", 2000000000000000LL, 2000000000000000LL);
    st.n_scopes = 1;
    st.scopes[0] = "k:round";
    assert_true(settle(&st, &sr));
    assert_seeds(sr, 0, 3000000000000000LL, 2000000000000000LL);
    assert_win("k:round", "r", 0);
    /* and through the sweep and the release script */
    in.amount = 1000000000000000LL;
    in.scopes[0].daily = 6000000000000000LL;
    assert_int_equal(reserve(&in, "m-6", &res), CL_ADMITTED);
    in.hold_ms = 1;
    assert_int_equal(reserve(&in, "m-7", &res), CL_ADMITTED);
    assert_win("k:round", "r", 2000000000000000LL);
    const char *ids[1] = {"m-6"};
    assert_int_equal(release(1, ids), 1);
    sleep_ms(20);
    poll_now(v);
    assert_win("k:round", "r", 0);
}

/* A limit configured past 2^53 is clamped to CL_NUM_MAX. The check
 * spent + reserved + amount <= limit must still be exact there: with
 * 2^53 - 1 spent, 2 more make 2^53 + 1 > limit and must be refused (in
 * doubles 2^53 + 1 rounds to 2^53, which would pass a limit of 2^53). */
static void test_money_limit_at_clamp(void **state)
{
    NEED_REDIS();
    const int64_t max = NUM_MAX - 1;
    spend("clamp-rc", "g", 'd', max);
    assert_int_equal(win("g", 'd', "s"), max);
    struct cl_reserve in = new_reserve();
    in.amount = 2;
    in.n_scopes = 1;
    in.scopes[0].name = "g";
    in.scopes[0].daily = INT64_MAX; /* clamped to CL_NUM_MAX */
    struct cl_reserve_result res;
    enum cl_code code = reserve(&in, "clamp-1", &res);
    if (code != CL_BUDGET)
        fail_msg("spent 2^53-1 + 2 nanos against a limit clamped to %lld was admitted "
                 "(CL_NUM_MAX is 2^53, where doubles stop being exact: it should be 2^53 - 1)",
                 (long long)CL_NUM_MAX);
    assert_false(held("clamp-1"));
}

/* The decoders refuse what is not a reply of their script (a whole batch
 * is not one request's reply). */
static void test_decode_refusals(void **state)
{
    NEED_REDIS();
    struct cl_reserve in = new_reserve();
    in.n_asks = 1;
    in.asks[0].who = "key:dec";
    in.asks[0].per_hour = 5;
    in.n_scopes = 1;
    in.scopes[0].name = "g";
    make_member(&in, "dec-1");
    struct cl_argv a;
    cl_reserve_argv(&in, &a);
    redisReply *r = batch(SCRIPT_RESERVE, 1, &a);
    struct cl_reserve_result res;
    struct cl_settle_result sr;
    assert_int_equal(cl_reserve_decode(r->element[0], &in, &res), 0);
    assert_int_equal(cl_reserve_decode(r, &in, &res), -1); /* the batch's reply */
    assert_int_equal(cl_settle_decode(r, 0, &sr), -1);
    in.n_scopes = 2; /* another shape */
    assert_int_equal(cl_reserve_decode(r->element[0], &in, &res), -1);
    assert_int_equal(cl_settle_decode(r->element[0], 1, &sr), -1);
    assert_int_equal(cl_reconcile_decode(r->element[0]), -1);
    freeReplyObject(r);
    /* error replies: arguments that are not a batch, a request cut short */
    const char *bad[2][4] = {{P, "x"}, {"1", "2", P, "x"}};
    for (int w = SCRIPT_RESERVE; w <= SCRIPT_SETTLE; w++)
        for (int b = 0; b < 2; b++) {
            r = script_raw(w, b ? 4 : 2, bad[b], NULL);
            assert_int_equal(r->type, REDIS_REPLY_ERROR);
            assert_int_equal(cl_reserve_decode(r, &in, &res), -1);
            assert_int_equal(cl_settle_decode(r, 0, &sr), -1);
            assert_int_equal(cl_reconcile_decode(r), -1);
            freeReplyObject(r);
        }
    assert_int_equal(cl_reserve_decode(NULL, &in, &res), -1);
    assert_int_equal(cl_settle_decode(NULL, 0, &sr), -1);
    assert_int_equal(cl_reconcile_decode(NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_scripts_load_by_sha, flush),
        cmocka_unit_test_setup(test_requests_per_hour, flush),
        cmocka_unit_test_setup(test_requests_per_minute, flush),
        cmocka_unit_test_setup(test_requests_uneven_limits, flush),
        cmocka_unit_test_setup(test_requests_hour_and_minute, flush),
        cmocka_unit_test_setup(test_requests_both_refuse, flush),
        cmocka_unit_test_setup(test_two_asks, flush),
        cmocka_unit_test_setup(test_refused_charges_nothing, flush),
        cmocka_unit_test_setup(test_tokens_per_minute, flush),
        cmocka_unit_test_setup(test_budgets, flush),
        cmocka_unit_test_setup(test_holds_exactly_once, flush),
        cmocka_unit_test_setup(test_sweep, flush),
        cmocka_unit_test_setup(test_release, flush),
        cmocka_unit_test_setup(test_reconcile, flush),
        cmocka_unit_test_setup(test_poll, flush),
        cmocka_unit_test_setup(test_keys, flush),
        cmocka_unit_test_setup(test_batch, flush),
        cmocka_unit_test_setup(test_seeds_unlimited, flush),
        cmocka_unit_test_setup(test_scope_names, flush),
        cmocka_unit_test_setup(test_hold_member, flush),
        cmocka_unit_test_setup(test_money_exact, flush),
        cmocka_unit_test_setup(test_money_limit_at_clamp, flush),
        cmocka_unit_test_setup(test_decode_refusals, flush),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
