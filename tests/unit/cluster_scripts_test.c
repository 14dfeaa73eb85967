/* cluster_scripts_test: the shared store's Lua scripts (cluster/scripts.c)
 * run by a real redis-server, with their arguments built and their replies
 * read by cluster/limits.c, checked to the microsecond and the nano-dollar:
 * request limits against the node-local GCRA (security/ratelimit.c),
 * tokens per minute, budget holds (all or nothing), settlement exactly
 * once, the sweep of expired holds, release, reconciliation batches, the
 * read script, scope names, and money at the edge of a double's exactness.
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

static int flush(void **state)
{
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

/* The string value of key into out; false when there is none. */
static bool get_str(const char *key, char *out, size_t cap)
{
    redisReply *r = cmd("GET %s", key);
    bool found = r->type == REDIS_REPLY_STRING;
    if (found) snprintf(out, cap, "%s", r->str);
    freeReplyObject(r);
    return found;
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

static long long zscore_holds(const char *id)
{
    redisReply *r = cmd("ZSCORE " P "holds %s", id);
    long long v = NONE;
    if (r->type == REDIS_REPLY_STRING) v = strtoll(r->str, NULL, 10);
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
    const char *av[3 + CL_MAX_ARGS + 8];
    size_t al[3 + CL_MAX_ARGS + 8];
    assert_true(argc <= CL_MAX_ARGS + 8);
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
    if (!r) fail_msg("redis: %s", srv.c->errstr);
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        av[0] = "EVAL";
        al[0] = 4;
        av[1] = scripts_text(which);
        al[1] = strlen(av[1]);
        r = redisCommandArgv(srv.c, 3 + argc, av, al);
        if (!r) fail_msg("redis: %s", srv.c->errstr);
    }
    return r;
}

static redisReply *script(int which, const struct cl_argv *a)
{
    redisReply *r = script_raw(which, a->argc, a->argv, a->lens);
    if (r->type == REDIS_REPLY_ERROR) fail_msg("script %d: %s", which, r->str);
    return r;
}

/* ---- the scripts through limits.c ---- */

static struct cl_reserve new_reserve(const char *id)
{
    struct cl_reserve in = {.prefix = P, .request_id = id, .hold_ms = 60000, .day = DAY,
                            .month = MONTH};
    return in;
}

static enum cl_code reserve(const struct cl_reserve *in, struct cl_reserve_result *out)
{
    struct cl_argv a;
    cl_reserve_argv(in, &a);
    redisReply *r = script(SCRIPT_RESERVE, &a);
    int rc = cl_reserve_decode(r, in, out);
    freeReplyObject(r);
    assert_int_equal(rc, 0);
    return out->code;
}

static bool settle(const struct cl_settle *in, struct cl_settle_result *out)
{
    struct cl_argv a;
    cl_settle_argv(in, &a);
    redisReply *r = script(SCRIPT_SETTLE, &a);
    int rc = cl_settle_decode(r, in->n_scopes, out);
    freeReplyObject(r);
    assert_int_equal(rc, 0);
    return out->applied;
}

static struct cl_settle new_settle(const char *id, nanos_t cost, nanos_t first_cost)
{
    struct cl_settle in = {.prefix = P, .request_id = id, .cost = cost, .first_cost = first_cost,
                           .day = DAY, .month = MONTH};
    return in;
}

/* Runs the release script on ids; returns how many it released. */
static long long release(int n, const char *const *ids)
{
    const char *argv[16];
    argv[0] = P;
    for (int i = 0; i < n; i++) argv[1 + i] = ids[i];
    redisReply *r = script_raw(SCRIPT_RELEASE, 1 + n, argv, NULL);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_INTEGER);
    long long v = r->element[0]->integer;
    freeReplyObject(r);
    return v;
}

/* Runs the read script on scopes: out[2i], out[2i+1] = day, month spent. */
static void read_spent(int n, const char *const *scopes, long long *out)
{
    char day[16], month[16];
    snprintf(day, sizeof day, "%d", DAY);
    snprintf(month, sizeof month, "%d", MONTH);
    const char *argv[16] = {P, day, month};
    for (int i = 0; i < n; i++) argv[3 + i] = scopes[i];
    redisReply *r = script_raw(SCRIPT_READ, 3 + n, argv, NULL);
    if (r->type == REDIS_REPLY_ERROR) fail_msg("read: %s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, (size_t)(2 * n));
    for (size_t i = 0; i < r->elements; i++) {
        assert_int_equal(r->element[i]->type, REDIS_REPLY_INTEGER);
        out[i] = r->element[i]->integer;
    }
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
    /* EVAL with the text and EVALSHA agree (the read script: no writes). */
    redisReply *a = cmd("EVAL %s 0 " P " %d %d g", scripts_text(SCRIPT_READ), DAY, MONTH);
    redisReply *b = cmd("EVALSHA %s 0 " P " %d %d g", scripts_sha(SCRIPT_READ), DAY, MONTH);
    assert_int_equal(a->type, REDIS_REPLY_ARRAY);
    assert_int_equal(b->type, REDIS_REPLY_ARRAY);
    assert_int_equal(a->elements, 2);
    assert_int_equal(b->elements, 2);
    assert_int_equal(a->element[0]->integer, 0);
    assert_int_equal(b->element[1]->integer, 0);
    freeReplyObject(a);
    freeReplyObject(b);
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
        struct cl_reserve in = new_reserve(id);
        in.n_asks = 1;
        in.asks[0].who = "key:abc";
        in.asks[0].per_hour = 30;
        long long before = get_num(key, 0);
        struct cl_reserve_result res;
        enum cl_code code = reserve(&in, &res);
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
            assert_true(exists(P "hold:ph-0"));
            admitted++;
        } else {
            assert_int_equal(code, CL_RATE);
            assert_int_equal(res.index, 0);
            assert_false(d->allowed);
            assert_int_equal(d->remaining, 0);
            assert_true(d->retry_after_us > 0);
            assert_true(d->retry_after_us <= 120 * S);
            assert_int_equal(after, before); /* a refusal charges nothing */
            assert_false(exists(P "hold:" "ph-31"));
        }
        /* no minute limit asked: no minute key */
        assert_false(exists(P "rl:key:abc:m"));
    }
    assert_int_equal(admitted, 30);
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
        struct cl_reserve in = new_reserve(id);
        in.n_asks = 1;
        in.asks[0].who = "ip:10.0.0.1";
        in.asks[0].per_minute = 5;
        struct cl_reserve_result res;
        enum cl_code code = reserve(&in, &res);
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
    struct cl_reserve in = new_reserve("pm-none");
    in.n_asks = 1;
    in.asks[0].who = "ip:10.0.0.2";
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
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
            struct cl_reserve in = new_reserve(id);
            in.n_asks = 1;
            in.asks[0].who = cases[c].who;
            in.asks[0].per_hour = cases[c].per_hour;
            in.asks[0].per_minute = cases[c].per_minute;
            struct cl_reserve_result res;
            enum cl_code code = reserve(&in, &res);
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
        struct cl_reserve in = new_reserve(id);
        in.n_asks = 1;
        in.asks[0].who = "key:both";
        in.asks[0].per_hour = 100;
        in.asks[0].per_minute = 3;
        long long hour_before = get_num(hk, 0);
        struct cl_reserve_result res;
        enum cl_code code = reserve(&in, &res);
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
 * minute's (30 s). (The node-local rl_take_request shows the minute in
 * this case: see the report that came with this test.) */
static void test_requests_both_refuse(void **state)
{
    NEED_REDIS();
    struct cl_reserve in = new_reserve("both-0");
    in.n_asks = 1;
    in.asks[0].who = "key:both2";
    in.asks[0].per_hour = 2;
    in.asks[0].per_minute = 2;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    in.request_id = "both-1";
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    long long h = get_num(P "rl:key:both2:h", 0), m = get_num(P "rl:key:both2:m", 0);
    in.request_id = "both-2";
    assert_int_equal(reserve(&in, &res), CL_RATE);
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
        struct cl_reserve in = new_reserve(id);
        in.n_asks = 2;
        in.asks[0].who = "key:k1";
        in.asks[0].per_hour = 10;
        in.asks[1].who = "ip:1.2.3.4";
        in.asks[1].per_hour = 2;
        long long key_before = get_num(kk, 0), ip_before = get_num(ik, 0);
        struct cl_reserve_result res;
        enum cl_code code = reserve(&in, &res);
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
    struct cl_reserve in = new_reserve("two-first");
    in.n_asks = 2;
    in.asks[0].who = "key:k2";
    in.asks[0].per_hour = 1;
    in.asks[1].who = "ip:5.6.7.8";
    in.asks[1].per_hour = 100;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    long long ip_tat = get_num(P "rl:ip:5.6.7.8:h", 0);
    assert_true(ip_tat > 0);
    in.request_id = "two-first-2";
    assert_int_equal(reserve(&in, &res), CL_RATE);
    assert_int_equal(res.index, 0);
    assert_false(res.asks[0].allowed);
    assert_int_equal(get_num(P "rl:ip:5.6.7.8:h", 0), ip_tat);
    rl_table_free(t);
}

/* Refused requests charge nothing, however many. */
static void test_refused_charges_nothing(void **state)
{
    NEED_REDIS();
    struct cl_reserve in = new_reserve("rc-0");
    in.n_asks = 1;
    in.asks[0].who = "key:once";
    in.asks[0].per_hour = 1;
    in.asks[0].per_minute = 10;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    long long h = get_num(P "rl:key:once:h", 0), m = get_num(P "rl:key:once:m", 0);
    assert_true(h > 0 && m > 0);
    for (int i = 1; i < 6; i++) {
        char id[32];
        snprintf(id, sizeof id, "rc-%d", i);
        in.request_id = id;
        assert_int_equal(reserve(&in, &res), CL_RATE);
        assert_false(exists(P "hold:rc-1"));
    }
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
    struct cl_reserve in = new_reserve("tok-a");
    in.tpm_who = "key:tok";
    in.tpm_limit = 1000;
    in.est_tokens = 600;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    struct rl_decision want;
    int64_t now = get_num(key, 0) - res.tokens.reset_us;
    rl_gcra(&ltat, 1000, RL_MINUTE_US, now, 600, &want);
    assert_decision(&res.tokens, &want);
    assert_int_equal(get_num(key, 0), ltat);
    assert_true(res.tokens.allowed);
    assert_int_equal(res.tokens.limit, 1000);
    assert_int_equal(res.tokens.remaining, 400);

    /* 500 more do not fit: refused, nothing charged, no hold */
    in.request_id = "tok-b";
    in.est_tokens = 500;
    assert_int_equal(reserve(&in, &res), CL_TOKENS);
    now = get_num(key, 0) - res.tokens.reset_us;
    rl_gcra(&ltat, 1000, RL_MINUTE_US, now, 500, &want);
    assert_decision(&res.tokens, &want);
    assert_false(res.tokens.allowed);
    assert_true(res.tokens.retry_after_us > 0 && res.tokens.retry_after_us <= 6 * S);
    assert_int_equal(get_num(key, 0), ltat);
    assert_false(exists(P "hold:tok-b"));
    assert_true(exists(P "hold:tok-a"));

    /* tokens that fit, refused by a budget: the tokens are not charged */
    in.request_id = "tok-budget";
    in.est_tokens = 100;
    in.amount = 20;
    in.n_scopes = 1;
    in.scopes[0].name = "g";
    in.scopes[0].daily = 10;
    assert_int_equal(reserve(&in, &res), CL_BUDGET);
    assert_true(res.tokens.allowed);
    assert_int_equal(get_num(key, 0), ltat);
    assert_false(exists(P "hold:tok-budget"));
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
    in.request_id = "tok-c";
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
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
    in.request_id = "tok-d";
    in.est_tokens = 0;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    st = new_settle("tok-d", 0, 0);
    st.tpm_who = "key:tok";
    st.tpm_limit = 1000;
    st.tpm_delta = -100000;
    assert_true(settle(&st, &sr));
    assert_false(exists(key));
    in.request_id = "tok-e";
    in.est_tokens = 1000;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
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

    struct cl_reserve in = new_reserve("b-a");
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
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res.day_spent[i], 0);
        assert_int_equal(res.month_spent[i], 0);
    }
    assert_win(g, "r", 200);
    assert_win(k, "r", 200);
    assert_win(t, "r", 200);
    assert_win(g, "s", NONE);

    /* k: 0 + 200 + 300 = 500 <= 500 */
    in.request_id = "b-b";
    in.amount = 300;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    assert_win(k, "r", 500);

    /* k: 0 + 500 + 1 > 500: refused by scope 1, daily; nothing reserved */
    in.request_id = "b-c";
    in.amount = 1;
    assert_int_equal(reserve(&in, &res), CL_BUDGET);
    assert_int_equal(res.index, 1);
    assert_false(res.monthly);
    assert_win(g, "r", 500);
    assert_win(k, "r", 500);
    assert_win(t, "r", 500);
    assert_false(exists(P "hold:b-c"));

    /* a's real cost: 150 (170 for the gateway's own scope) */
    struct cl_settle st = new_settle("b-a", 150, 170);
    st.n_scopes = 3;
    st.scopes[0] = g;
    st.scopes[1] = k;
    st.scopes[2] = t;
    struct cl_settle_result sr;
    assert_true(settle(&st, &sr));
    assert_int_equal(sr.day_spent[0], 170);
    assert_int_equal(sr.month_spent[0], 170);
    assert_int_equal(sr.day_spent[1], 150);
    assert_int_equal(sr.month_spent[2], 150);
    assert_win(g, "r", 300);
    assert_win(k, "r", 300);
    assert_win(t, "r", 300);
    assert_win(g, "s", 170);
    assert_win(k, "s", 150);
    assert_win(t, "s", 150);

    /* k: 150 + 300 + 50 = 500: admitted; the seeds say what was spent */
    in.request_id = "b-d";
    in.amount = 50;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    assert_int_equal(res.day_spent[0], 170);
    assert_int_equal(res.month_spent[0], 170);
    assert_int_equal(res.day_spent[1], 150);
    assert_int_equal(res.month_spent[1], 150);
    assert_int_equal(res.day_spent[2], 150);
    assert_int_equal(res.month_spent[2], 150);
    assert_win(t, "r", 350);

    /* another key, no limits of its own: t's month 150 + 350 + 201 > 700,
     * refused by scope 2, monthly; neither g nor k2 reserved */
    struct cl_reserve in2 = new_reserve("b-e");
    in2.amount = 201;
    in2.n_scopes = 3;
    in2.scopes[0].name = g;
    in2.scopes[0].daily = 1000;
    in2.scopes[0].monthly = 5000;
    in2.scopes[1].name = k2;
    in2.scopes[2].name = t;
    in2.scopes[2].monthly = 700;
    assert_int_equal(reserve(&in2, &res), CL_BUDGET);
    assert_int_equal(res.index, 2);
    assert_true(res.monthly);
    assert_int_equal(res.day_spent[2], 150);
    assert_win(g, "r", 350);
    assert_win(t, "r", 350);
    assert_win(k2, "r", NONE);
    /* exactly at the limit: 150 + 350 + 200 = 700 */
    in2.request_id = "b-f";
    in2.amount = 200;
    assert_int_equal(reserve(&in2, &res), CL_ADMITTED);
    assert_win(g, "r", 550);
    assert_win(t, "r", 550);
    assert_win(k2, "r", NONE); /* no limit: nothing to hold */

    /* the gateway's daily limit: 170 + 550 + 281 > 1000 (monthly 5000 fine) */
    in2.request_id = "b-g";
    in2.amount = 281;
    in2.scopes[2].monthly = 0;
    assert_int_equal(reserve(&in2, &res), CL_BUDGET);
    assert_int_equal(res.index, 0);
    assert_false(res.monthly);
    /* the gateway's monthly limit alone */
    in2.request_id = "b-h";
    in2.amount = 280;
    in2.scopes[0].daily = 0;
    in2.scopes[0].monthly = 999;
    assert_int_equal(reserve(&in2, &res), CL_BUDGET);
    assert_int_equal(res.index, 0);
    assert_true(res.monthly);
    assert_win(g, "r", 550);

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
    struct cl_reserve in = new_reserve("h-1");
    in.hold_ms = 30000;
    in.amount = 100;
    in.n_scopes = 2;
    in.scopes[0].name = scopes[0];
    in.scopes[0].daily = 1000;
    in.scopes[1].name = scopes[1];
    struct cl_reserve_result res;
    long long t0 = server_ms();
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    long long t1 = server_ms();
    assert_true(exists(P "hold:h-1"));
    long long score = zscore_holds("h-1");
    assert_true(score >= t0 + 30000 && score <= t1 + 30000);
    redisReply *r = cmd("TTL " P "hold:h-1");
    assert_true(r->integer > 86000 && r->integer <= 86400);
    freeReplyObject(r);
    assert_win("g", "r", 100);
    assert_win("k:x", "r", NONE);

    struct cl_settle st = new_settle("h-1", 70, 90);
    st.n_scopes = 2;
    st.scopes[0] = scopes[0];
    st.scopes[1] = scopes[1];
    struct cl_settle_result sr;
    assert_true(settle(&st, &sr));
    assert_int_equal(sr.day_spent[0], 90);
    assert_int_equal(sr.month_spent[0], 90);
    assert_int_equal(sr.day_spent[1], 70);
    assert_int_equal(sr.month_spent[1], 70);
    assert_win("g", "r", 0);
    assert_win("g", "s", 90);
    assert_win("k:x", "s", 70);
    assert_false(exists(P "hold:h-1"));
    assert_int_equal(zscore_holds("h-1"), NONE);

    /* the same settlement again (its answer was lost): nothing applied */
    assert_false(settle(&st, &sr));
    assert_int_equal(sr.day_spent[0], 90);
    assert_int_equal(sr.day_spent[1], 70);
    assert_win("g", "r", 0);
    assert_win("g", "s", 90);
    assert_win("k:x", "s", 70);

    /* a request that cost nothing: released, nothing added */
    in.request_id = "h-2";
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    assert_win("g", "r", 100);
    st.request_id = "h-2";
    st.cost = st.first_cost = 0;
    assert_true(settle(&st, &sr));
    assert_win("g", "r", 0);
    assert_win("g", "s", 90);
    /* a settle of a request never reserved: nothing */
    st.request_id = "h-never";
    st.cost = st.first_cost = 5;
    assert_false(settle(&st, &sr));
    assert_win("g", "s", 90);
}

/* A hold past its expiry (its node died) is released by the next script
 * call; a late settlement still adds its cost, once, without releasing
 * twice. */
static void test_sweep(void **state)
{
    NEED_REDIS();
    const char *scopes[1] = {"g"};
    struct cl_reserve in = new_reserve("sw-1");
    in.hold_ms = 1;
    in.amount = 100;
    in.n_scopes = 1;
    in.scopes[0].name = "g";
    in.scopes[0].daily = 1000;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    assert_win("g", "r", 100);
    char h[256];
    assert_true(get_str(P "hold:sw-1", h, sizeof h));
    assert_true(h[0] != 'x');
    sleep_ms(20);

    in.request_id = "sw-2";
    in.hold_ms = 60000;
    in.amount = 10;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    assert_win("g", "r", 10); /* sw-1's 100 released, sw-2's 10 held */
    char h2[256];
    assert_true(get_str(P "hold:sw-1", h2, sizeof h2));
    assert_int_equal(h2[0], 'x');
    assert_string_equal(h2 + 1, h);
    assert_int_equal(zscore_holds("sw-1"), NONE);
    assert_true(zscore_holds("sw-2") != NONE);

    /* sw-1 was served after all: its cost counts, once */
    struct cl_settle st = new_settle("sw-1", 80, 80);
    st.n_scopes = 1;
    st.scopes[0] = scopes[0];
    struct cl_settle_result sr;
    assert_true(settle(&st, &sr));
    assert_int_equal(sr.day_spent[0], 80);
    assert_win("g", "r", 10);
    assert_win("g", "s", 80);
    assert_false(exists(P "hold:sw-1"));
    assert_false(settle(&st, &sr));
    assert_win("g", "r", 10);
    assert_win("g", "s", 80);

    /* the read script sweeps too; a swept hold is released once only */
    in.request_id = "sw-3";
    in.hold_ms = 1;
    in.amount = 40;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    assert_win("g", "r", 50);
    sleep_ms(20);
    long long spent[2];
    read_spent(1, scopes, spent);
    assert_int_equal(spent[0], 80);
    assert_win("g", "r", 10);
    read_spent(1, scopes, spent);
    assert_win("g", "r", 10);
    const char *ids[1] = {"sw-3"};
    assert_int_equal(release(1, ids), 1); /* dropped, not released again */
    assert_win("g", "r", 10);
    assert_false(exists(P "hold:sw-3"));

    /* more than one sweep's worth (8 per call) expire together: all released in time */
    in.hold_ms = 300;
    for (int i = 0; i < 12; i++) {
        char id[32];
        snprintf(id, sizeof id, "sw-many-%d", i);
        in.request_id = id;
        in.amount = 1;
        assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    }
    assert_win("g", "r", 22);
    sleep_ms(320);
    read_spent(1, scopes, spent);
    read_spent(1, scopes, spent);
    assert_win("g", "r", 10);
    redisReply *r = cmd("ZCARD " P "holds");
    assert_int_equal(r->integer, 1); /* sw-2 */
    freeReplyObject(r);
}

static void test_release(void **state)
{
    NEED_REDIS();
    struct cl_reserve in = new_reserve("rel-1");
    in.amount = 30;
    in.n_scopes = 2;
    in.scopes[0].name = "g";
    in.scopes[0].daily = 1000;
    in.scopes[1].name = "t:acme";
    in.scopes[1].monthly = 1000;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    in.request_id = "rel-2";
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    in.request_id = "rel-3";
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    assert_win("g", "r", 90);
    assert_win("t:acme", "r", 90);

    const char *ids[3] = {"rel-1", "rel-2", "rel-unknown"};
    assert_int_equal(release(3, ids), 2);
    assert_win("g", "r", 30);
    assert_win("t:acme", "r", 30);
    assert_false(exists(P "hold:rel-1"));
    assert_false(exists(P "hold:rel-2"));
    assert_int_equal(zscore_holds("rel-1"), NONE);
    assert_true(exists(P "hold:rel-3"));
    /* again: nothing left to release */
    assert_int_equal(release(3, ids), 0);
    assert_win("g", "r", 30);
    /* a released request's settlement applies nothing (it went on locally) */
    struct cl_settle st = new_settle("rel-1", 10, 10);
    const char *g = "g";
    st.n_scopes = 1;
    st.scopes[0] = g;
    struct cl_settle_result sr;
    assert_false(settle(&st, &sr));
    assert_win("g", "s", NONE);
    /* no ids at all */
    assert_int_equal(release(0, ids), 0);
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

static void test_read(void **state)
{
    NEED_REDIS();
    struct cl_delta d[3] = {
        {.scope = "g", .kind = 'd', .period = DAY, .amount = 11},
        {.scope = "g", .kind = 'm', .period = MONTH, .amount = 22},
        {.scope = "t:acme", .kind = 'm', .period = MONTH, .amount = 33},
    };
    struct cl_argv a;
    cl_reconcile_argv(P, "rd-1", d, 3, &a);
    redisReply *r = script(SCRIPT_RECONCILE, &a);
    assert_int_equal(cl_reconcile_decode(r), 1);
    freeReplyObject(r);
    /* another day's spend is not today's */
    r = cmd("HINCRBY " P "b:g:d:%d s 1000", DAY - 1);
    freeReplyObject(r);
    const char *scopes[3] = {"g", "t:acme", "k:none"};
    long long out[6];
    read_spent(3, scopes, out);
    assert_int_equal(out[0], 11);
    assert_int_equal(out[1], 22);
    assert_int_equal(out[2], 0);
    assert_int_equal(out[3], 33);
    assert_int_equal(out[4], 0);
    assert_int_equal(out[5], 0);
    read_spent(0, scopes, out); /* no scopes: an empty array */
}

/* Scope names with spaces, '%' and control bytes are encoded so that the
 * hold's space-separated list round-trips. */
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
    struct cl_reserve in = new_reserve("req with spaces %20");
    in.amount = 50;
    in.n_scopes = 2;
    in.scopes[0].name = t;
    in.scopes[0].daily = 1000;
    in.scopes[1].name = k;
    in.scopes[1].monthly = 1000;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    assert_win(t, "r", 50);
    assert_win(k, "r", 50);
    struct cl_settle st = new_settle("req with spaces %20", 20, 25);
    st.n_scopes = 2;
    st.scopes[0] = t;
    st.scopes[1] = k;
    struct cl_settle_result sr;
    assert_true(settle(&st, &sr));
    assert_win(t, "r", 0);
    assert_win(k, "r", 0);
    assert_win(t, "s", 25);
    assert_win(k, "s", 20);
    assert_int_equal(sr.day_spent[0], 25);
    assert_int_equal(sr.month_spent[1], 20);
    /* released by the release script and by the sweep, too */
    in.request_id = "odd 1";
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    in.request_id = "odd 2";
    in.hold_ms = 1;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    assert_win(t, "r", 100);
    const char *ids[1] = {"odd 1"};
    assert_int_equal(release(1, ids), 1);
    assert_win(t, "r", 50);
    sleep_ms(20);
    const char *scopes[2] = {t, k};
    long long spent[4];
    read_spent(2, scopes, spent);
    assert_int_equal(spent[0], 25);
    assert_int_equal(spent[3], 20);
    assert_win(t, "r", 0);
    assert_win(k, "r", 0);
    /* the windows were the encoded names' (no key with a raw space) */
    redisReply *r = cmd("KEYS " P "b:*");
    for (size_t i = 0; i < r->elements; i++) assert_null(strchr(r->element[i]->str, ' '));
    assert_int_equal(r->elements, 4);
    freeReplyObject(r);
}

/* Money stays exact to the nano-dollar up to 2^53 - 1; larger amounts are
 * clamped (to CL_NUM_MAX) by the C side before Lua sees them. */
static void test_money_exact(void **state)
{
    const int64_t max = NUM_MAX - 1; /* 9007199254740991 */
    /* the argument builders clamp to [0, 2^53] */
    struct cl_reserve c = new_reserve("clamp");
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
    cl_reserve_argv(&c, &a);
    assert_int_equal(a.argc, 4 + 3 + 4 + 3);
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
    assert_string_equal(a.argv[2], cap);
    assert_string_equal(a.argv[3], "0");
    assert_string_equal(a.argv[8], neg);
    s.tpm_who = NULL;
    cl_settle_argv(&s, &a);
    assert_string_equal(a.argv[6], "");
    assert_string_equal(a.argv[7], "0");

    NEED_REDIS();
    const char *g = "g";
    struct cl_reserve in = new_reserve("m-1");
    in.amount = max;
    in.n_scopes = 1;
    in.scopes[0].name = g;
    in.scopes[0].daily = max;
    struct cl_reserve_result res;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    assert_win(g, "r", max);
    char hold[128];
    assert_true(get_str(P "hold:m-1", hold, sizeof hold));
    assert_int_equal(strncmp(hold, "9007199254740991 ", 17), 0);
    /* one nano more does not fit */
    in.request_id = "m-2";
    in.amount = 1;
    assert_int_equal(reserve(&in, &res), CL_BUDGET);
    assert_win(g, "r", max);

    struct cl_settle st = new_settle("m-1", max - 1, max);
    st.n_scopes = 2;
    st.scopes[0] = g;
    st.scopes[1] = "k:big";
    struct cl_settle_result sr;
    assert_true(settle(&st, &sr));
    assert_int_equal(sr.day_spent[0], max);
    assert_int_equal(sr.month_spent[0], max);
    assert_int_equal(sr.day_spent[1], max - 1);
    assert_win(g, "r", 0);
    assert_win(g, "s", max);
    assert_win("k:big", "s", max - 1);
    /* spent == limit: nothing more fits, not even 1; the seeds are exact */
    in.request_id = "m-3";
    assert_int_equal(reserve(&in, &res), CL_BUDGET);
    assert_int_equal(res.day_spent[0], max);
    assert_int_equal(res.month_spent[0], max);
    in.request_id = "m-4";
    in.amount = 0;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    const char *scopes[2] = {g, "k:big"};
    long long out[4];
    read_spent(2, scopes, out);
    assert_int_equal(out[0], max);
    assert_int_equal(out[2], max - 1);

    /* large round amounts travel as integers (no "1e+15" in HINCRBY) */
    struct cl_delta d = {.scope = "k:round", .kind = 'd', .period = DAY,
                         .amount = 1000000000000000LL};
    cl_reconcile_argv(P, "m-rc", &d, 1, &a);
    redisReply *r = script(SCRIPT_RECONCILE, &a);
    assert_int_equal(cl_reconcile_decode(r), 1);
    freeReplyObject(r);
    in.request_id = "m-5";
    in.amount = 3000000000000000LL;
    in.scopes[0].name = "k:round";
    in.scopes[0].daily = 4000000000000000LL;
    assert_int_equal(reserve(&in, &res), CL_ADMITTED);
    assert_win("k:round", "r", 3000000000000000LL);
    assert_int_equal(win("k:round", 'd', "s"), 1000000000000000LL);
    st = new_settle("m-5", 2000000000000000LL, 2000000000000000LL);
    st.n_scopes = 1;
    st.scopes[0] = "k:round";
    assert_true(settle(&st, &sr));
    assert_int_equal(sr.day_spent[0], 3000000000000000LL);
    assert_win("k:round", "r", 0);
}

/* A limit configured past 2^53 is clamped to 2^53 (CL_NUM_MAX). The check
 * spent + reserved + amount <= limit must still be exact there: with
 * 2^53 - 1 spent, 2 more make 2^53 + 1 > 2^53 and must be refused. In
 * doubles 2^53 + 1 rounds to 2^53, which passes the check. */
static void test_money_limit_at_clamp(void **state)
{
    NEED_REDIS();
    const int64_t max = NUM_MAX - 1;
    struct cl_delta d = {.scope = "g", .kind = 'd', .period = DAY, .amount = max};
    struct cl_argv a;
    cl_reconcile_argv(P, "clamp-rc", &d, 1, &a);
    redisReply *r = script(SCRIPT_RECONCILE, &a);
    assert_int_equal(cl_reconcile_decode(r), 1);
    freeReplyObject(r);
    assert_int_equal(win("g", 'd', "s"), max);
    struct cl_reserve in = new_reserve("clamp-1");
    in.amount = 2;
    in.n_scopes = 1;
    in.scopes[0].name = "g";
    in.scopes[0].daily = INT64_MAX; /* clamped to CL_NUM_MAX */
    struct cl_reserve_result res;
    enum cl_code code = reserve(&in, &res);
    if (code != CL_BUDGET)
        fail_msg("spent 2^53-1 + 2 nanos against a limit clamped to %lld was admitted "
                 "(CL_NUM_MAX is 2^53, where doubles stop being exact: it should be 2^53 - 1)",
                 (long long)CL_NUM_MAX);
}

/* The decoders refuse what is not a reply of their script. */
static void test_decode_refusals(void **state)
{
    NEED_REDIS();
    struct cl_reserve in = new_reserve("dec-1");
    in.n_asks = 1;
    in.asks[0].who = "key:dec";
    in.asks[0].per_hour = 5;
    in.n_scopes = 1;
    in.scopes[0].name = "g";
    struct cl_argv a;
    cl_reserve_argv(&in, &a);
    redisReply *r = script(SCRIPT_RESERVE, &a);
    struct cl_reserve_result res;
    assert_int_equal(cl_reserve_decode(r, &in, &res), 0);
    in.n_scopes = 2; /* another shape */
    assert_int_equal(cl_reserve_decode(r, &in, &res), -1);
    struct cl_settle_result sr;
    assert_int_equal(cl_settle_decode(r, 1, &sr), -1);
    assert_int_equal(cl_reconcile_decode(r), -1);
    freeReplyObject(r);
    /* an error reply (wrong arguments) */
    const char *bad[2] = {P, "x"};
    r = script_raw(SCRIPT_RESERVE, 2, bad, NULL);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_int_equal(cl_reserve_decode(r, &in, &res), -1);
    assert_int_equal(cl_settle_decode(r, 0, &sr), -1);
    assert_int_equal(cl_reconcile_decode(r), -1);
    freeReplyObject(r);
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
        cmocka_unit_test_setup(test_read, flush),
        cmocka_unit_test_setup(test_scope_names, flush),
        cmocka_unit_test_setup(test_money_exact, flush),
        cmocka_unit_test_setup(test_money_limit_at_clamp, flush),
        cmocka_unit_test_setup(test_decode_refusals, flush),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
