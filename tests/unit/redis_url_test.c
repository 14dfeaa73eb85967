/* redis_url_test: the cluster.redis.url forms (cluster/redis_url.c):
 * redis://host:port/db and its defaults, user:password@ (ACL) and
 * :password@ (legacy AUTH), percent-escapes, rediss:// (TLS),
 * unix:///path?db=N, IPv6 [::1]:port; refusals whose reason never repeats
 * the password; and redis_url_masked, which hides the password in every
 * form and leaves a URL without one as it is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/redis_url.h"

#define SECRET "Sup3rS3cretPW"

struct want {
    bool tls;
    const char *host; /* NULL: none */
    int port;
    const char *path;
    int db;
    const char *user, *password;
};

static void assert_str_or_null(const char *what, const char *url, const char *got,
                               const char *want)
{
    if (!want && !got) return;
    if (!want || !got || strcmp(want, got) != 0)
        fail_msg("%s: %s is \"%s\", want \"%s\"", url, what, got ? got : "(null)",
                 want ? want : "(null)");
}

static void check(const char *url, struct want w)
{
    struct redis_url u;
    char err[128] = "";
    if (redis_url_parse(url, &u, err, sizeof err) != 0) fail_msg("%s refused: %s", url, err);
    if (u.tls != w.tls) fail_msg("%s: tls %d", url, u.tls);
    assert_str_or_null("host", url, u.host, w.host);
    assert_str_or_null("path", url, u.path, w.path);
    assert_str_or_null("user", url, u.user, w.user);
    assert_str_or_null("password", url, u.password, w.password);
    if (u.port != w.port) fail_msg("%s: port %d, want %d", url, u.port, w.port);
    if (u.db != w.db) fail_msg("%s: db %d, want %d", url, u.db, w.db);
    redis_url_free(&u);
    assert_null(u.host);
    assert_null(u.password);
}

static void test_tcp(void **state)
{
    check("redis://cache.internal:6380/2", (struct want){.host = "cache.internal", .port = 6380,
                                                          .db = 2});
    check("redis://127.0.0.1:6379/0", (struct want){.host = "127.0.0.1", .port = 6379});
    check("redis://h:1/15", (struct want){.host = "h", .port = 1, .db = 15});
    check("redis://h:65535", (struct want){.host = "h", .port = 65535});
    check("redis://h:06380/007", (struct want){.host = "h", .port = 6380, .db = 7});
    check("redis://h?db=4", (struct want){.host = "h", .port = 6379, .db = 4});
    check("redis://h:7000?timeout=1&db=5", (struct want){.host = "h", .port = 7000, .db = 5});
    check("redis://h/3?xdb=9", (struct want){.host = "h", .port = 6379, .db = 3});
}

static void test_defaults(void **state)
{
    check("redis://localhost", (struct want){.host = "localhost", .port = 6379});
    check("redis://localhost/", (struct want){.host = "localhost", .port = 6379});
    check("redis://redis.example.com:6390", (struct want){.host = "redis.example.com",
                                                          .port = 6390});
    check("redis://h/", (struct want){.host = "h", .port = 6379});
}

static void test_userinfo(void **state)
{
    /* ACL user and password */
    check("redis://alice:" SECRET "@h:6379/1",
          (struct want){.host = "h", .port = 6379, .db = 1, .user = "alice", .password = SECRET});
    /* a password alone: the legacy AUTH */
    check("redis://:" SECRET "@h", (struct want){.host = "h", .port = 6379, .password = SECRET});
    /* a user alone; an empty password is none */
    check("redis://alice@h", (struct want){.host = "h", .port = 6379, .user = "alice"});
    check("redis://alice:@h", (struct want){.host = "h", .port = 6379, .user = "alice"});
    check("redis://@h", (struct want){.host = "h", .port = 6379});
    /* the password may hold ':' and '/', and '@' (the last '@' ends it) */
    check("redis://u:a:b/c@h", (struct want){.host = "h", .port = 6379, .user = "u",
                                             .password = "a:b/c"});
    check("redis://u:p@ss@h:7/1", (struct want){.host = "h", .port = 7, .db = 1, .user = "u",
                                                .password = "p@ss"});
}

static void test_escapes(void **state)
{
    check("redis://al%40ice:p%3Aw%2Fd%25%20x%3f@h",
          (struct want){.host = "h", .port = 6379, .user = "al@ice", .password = "p:w/d% x?"});
    check("redis://%61%62:%C3%A9@h", (struct want){.host = "h", .port = 6379, .user = "ab",
                                                   .password = "\xc3\xa9"});
    /* escapes are decoded in the user info only */
    check("redis://:%2540@h", (struct want){.host = "h", .port = 6379, .password = "%40"});
}

static void test_tls(void **state)
{
    check("rediss://h", (struct want){.tls = true, .host = "h", .port = 6379});
    check("rediss://bob:" SECRET "@redis.example.com:6380/3",
          (struct want){.tls = true, .host = "redis.example.com", .port = 6380, .db = 3,
                        .user = "bob", .password = SECRET});
    check("rediss://:pw@[::1]:6390", (struct want){.tls = true, .host = "::1", .port = 6390,
                                                   .password = "pw"});
}

static void test_unix(void **state)
{
    check("unix:///path", (struct want){.path = "/path", .port = 6379});
    check("unix:///var/run/redis/redis.sock?db=3",
          (struct want){.path = "/var/run/redis/redis.sock", .port = 6379, .db = 3});
    check("unix:///tmp/r.sock?x=1&db=12", (struct want){.path = "/tmp/r.sock", .port = 6379,
                                                        .db = 12});
    check("unix://:" SECRET "@/tmp/r.sock", (struct want){.path = "/tmp/r.sock", .port = 6379,
                                                          .password = SECRET});
    check("unix://app:p%40w@/tmp/r.sock?db=1",
          (struct want){.path = "/tmp/r.sock", .port = 6379, .db = 1, .user = "app",
                        .password = "p@w"});
    check("unix:///tmp/r:1.sock", (struct want){.path = "/tmp/r:1.sock", .port = 6379});
}

static void test_ipv6(void **state)
{
    check("redis://[::1]:6380", (struct want){.host = "::1", .port = 6380});
    check("redis://[::1]", (struct want){.host = "::1", .port = 6379});
    check("redis://[::1]/4", (struct want){.host = "::1", .port = 6379, .db = 4});
    check("redis://u:p@[fe80::1:2]:7000/5", (struct want){.host = "fe80::1:2", .port = 7000,
                                                          .db = 5, .user = "u",
                                                          .password = "p"});
}

/* Each refused; the reason is said and never holds the password. */
static void test_refusals(void **state)
{
    static const char *const bad[] = {
        /* schemes */
        "http://:" SECRET "@h",
        "",
        "redis:/:" SECRET "@h",
        "tcp://h:6379",
        /* ports */
        "redis://:" SECRET "@h:0",
        "redis://:" SECRET "@h:65536",
        "redis://:" SECRET "@h:99999999999",
        "redis://:" SECRET "@h:",
        "redis://:" SECRET "@h:6379x/0",
        "redis://:" SECRET "@h:-1",
        "redis://u:" SECRET "@h:abc/1",
        "rediss://u:" SECRET "@[::1]:0",
        /* hosts */
        "redis://:" SECRET "@",
        "redis://:" SECRET "@/0",
        "redis://:" SECRET "@:6379",
        "redis://",
        "redis://u:" SECRET "@[]:6379",
        "redis://u:" SECRET "@[::1:6379",
        "redis://u:" SECRET "@[::1]6379",
        /* escapes */
        "redis://u:" SECRET "%zz@h",
        "redis://u:" SECRET "%4@h",
        "redis://u:" SECRET "%@h",
        "redis://u:" SECRET "%00x@h",
        "redis://u%g1:" SECRET "@h",
        "unix://u:" SECRET "%2@/tmp/r.sock",
        /* spaces and control characters */
        "redis://u:" SECRET " x@h",
        "redis://u:" SECRET "@h /0",
        "redis://u:" SECRET "@h\t",
        "redis://u:" SECRET "\n@h",
        "redis:// :" SECRET "@h",
        "redis://u:" SECRET "\x7f@h",
        "unix:///tmp/my redis.sock",
        /* databases */
        "redis://:" SECRET "@h/abc",
        "redis://:" SECRET "@h/-1",
        "redis://:" SECRET "@h/100001",
        "redis://:" SECRET "@h/1/2",
        "redis://:" SECRET "@h?db=x",
        "redis://:" SECRET "@h?db=",
        "unix://:" SECRET "@/tmp/r.sock?db=1a",
        /* unix paths */
        "unix://",
        "unix://:" SECRET "@",
        "unix://:" SECRET "@relative.sock",
        "unix://:" SECRET "@/",
        "unix://h/tmp/r.sock",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct redis_url u;
        char err[256];
        memset(err, 0, sizeof err);
        if (redis_url_parse(bad[i], &u, err, sizeof err) == 0) {
            redis_url_free(&u);
            fail_msg("accepted: \"%s\"", bad[i]);
        }
        if (!err[0]) fail_msg("no reason for \"%s\"", bad[i]);
        if (strstr(err, SECRET) || strstr(err, "Sup3r"))
            fail_msg("the reason for \"%s\" holds the password: %s", bad[i], err);
        /* nothing left allocated or half-filled */
        assert_null(u.host);
        assert_null(u.path);
        assert_null(u.user);
        assert_null(u.password);
    }
    /* a short error buffer is cut, never overrun */
    struct redis_url u;
    char small[8];
    memset(small, 'z', sizeof small);
    assert_int_equal(redis_url_parse("redis://h:0", &u, small, 6), -1);
    assert_int_equal(strlen(small), 5);
    assert_int_equal(small[6], 'z');
}

static void masked(const char *url, const char *want)
{
    char out[256];
    memset(out, 0, sizeof out);
    assert_ptr_equal(redis_url_masked(url, out, sizeof out), out);
    if (strcmp(out, want) != 0) fail_msg("masked(%s) = %s, want %s", url, out, want);
}

static void test_masked(void **state)
{
    masked("redis://alice:" SECRET "@h:6379/0", "redis://alice:***@h:6379/0");
    masked("redis://:" SECRET "@h", "redis://:***@h");
    masked("rediss://bob:p%40ss@redis.example.com:6380/1",
           "rediss://bob:***@redis.example.com:6380/1");
    masked("rediss://:" SECRET "@h", "rediss://:***@h");
    masked("unix://:" SECRET "@/var/run/redis.sock?db=2", "unix://:***@/var/run/redis.sock?db=2");
    masked("unix://app:" SECRET "@/tmp/r.sock", "unix://app:***@/tmp/r.sock");
    masked("redis://:" SECRET "@[::1]:6380/0", "redis://:***@[::1]:6380/0");
    masked("redis://u:" SECRET "@[fe80::1]", "redis://u:***@[fe80::1]");
    masked("redis://u:a:b/c@h", "redis://u:***@h");
    masked("redis://u:p@ss@h:7/1", "redis://u:***@h:7/1");
    masked("redis://u:@h", "redis://u:@h"); /* an empty password: nothing to hide */
    masked("redis://:" SECRET "@h/0?db=3", "redis://:***@h/0?db=3");
    /* no password: as it is */
    masked("redis://h:6379/0", "redis://h:6379/0");
    masked("redis://localhost", "redis://localhost");
    masked("redis://alice@h:6379", "redis://alice@h:6379");
    masked("rediss://h:6380/2", "rediss://h:6380/2");
    masked("unix:///tmp/r.sock?db=3", "unix:///tmp/r.sock?db=3");
    masked("redis://[::1]:6380", "redis://[::1]:6380");
    masked("redis://h/0?x=a:b@c", "redis://h/0?x=a:***@c"); /* masks more, never less */
    masked("", "");

    /* Every accepted URL with a password: masked, it holds no trace of it. */
    static const char *const with_pw[] = {
        "redis://alice:" SECRET "@h:6379/1",
        "redis://:" SECRET "@h",
        "rediss://bob:" SECRET "@h:6380/3",
        "unix://:" SECRET "@/tmp/r.sock?db=1",
        "redis://u:" SECRET "@[::1]:6380",
        "redis://u:x" SECRET "@y@h",
    };
    for (size_t i = 0; i < sizeof with_pw / sizeof with_pw[0]; i++) {
        struct redis_url u;
        char err[128], out[256];
        assert_int_equal(redis_url_parse(with_pw[i], &u, err, sizeof err), 0);
        assert_non_null(u.password);
        redis_url_masked(with_pw[i], out, sizeof out);
        if (strstr(out, u.password) || strstr(out, SECRET))
            fail_msg("masked(%s) = %s", with_pw[i], out);
        assert_non_null(strstr(out, ":***@"));
        redis_url_free(&u);
    }

    /* a short buffer: cut, NUL-terminated, still no password */
    char small[20];
    memset(small, 'z', sizeof small);
    redis_url_masked("redis://alice:" SECRET "@h:6379/0", small, 16);
    assert_int_equal(strlen(small), 15);
    assert_null(strstr(small, "Sup"));
    assert_int_equal(small[16], 'z');
    char none[4] = "abc";
    redis_url_masked("redis://:" SECRET "@h", none, 0);
    assert_string_equal(none, "abc");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp),       cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_userinfo),  cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_tls),       cmocka_unit_test(test_unix),
        cmocka_unit_test(test_ipv6),      cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_masked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
