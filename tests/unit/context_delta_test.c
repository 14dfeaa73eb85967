/* context_delta_test: the body of POST /v1/context/delta (context/delta.c):
 * a full delta and its defaults, a reset alone, deleted files; every 400
 * with its message and param (not JSON, not UTF-8, not an object, unknown
 * keys, bad types, both content and deleted, duplicates, every path rule,
 * project names); a content holding a NUL refused alone while the rest
 * applies; and error messages that stay valid UTF-8 when cut short. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "context/delta.h"
#include "core/arena.h"

static struct arena arena;

static int setup(void **state)
{
    arena_init(&arena);
    return 0;
}

static int teardown(void **state)
{
    arena_free(&arena);
    return 0;
}

static void parse_ok_n(const char *body, size_t len, struct ctx_delta *d)
{
    char err[512] = "";
    const char *param = "unset";
    if (ctx_delta_parse(&arena, body, len, d, err, sizeof err, &param) != 0)
        fail_msg("%s refused: %s (param %s)", body, err, param ? param : "(null)");
}

static void parse_ok(const char *body, struct ctx_delta *d)
{
    parse_ok_n(body, strlen(body), d);
}

/* Refused, with `param` and a message containing `msg`. */
static void refuse_n(const char *body, size_t len, const char *param, const char *msg)
{
    struct ctx_delta d;
    char err[512] = "";
    const char *got = NULL;
    if (ctx_delta_parse(&arena, body, len, &d, err, sizeof err, &got) == 0)
        fail_msg("%s accepted", body);
    if (!got || strcmp(got, param) != 0)
        fail_msg("%s: param %s, want %s (%s)", body, got ? got : "(null)", param, err);
    if (!strstr(err, msg)) fail_msg("%s: message \"%s\" lacks \"%s\"", body, err, msg);
    assert_int_equal(d.n_files, 0);
    assert_int_equal(d.n_rejected, 0);
}

static void refuse(const char *body, const char *param, const char *msg)
{
    refuse_n(body, strlen(body), param, msg);
}

static void test_full(void **state)
{
    struct ctx_delta d;
    parse_ok("{\"project\": \"app-1.x_y\", \"reset\": true, \"files\": ["
             "{\"path\": \"src/a.c\", \"content\": \"int x;\\n\"},"
             "{\"path\": \"old.c\", \"deleted\": true},"
             "{\"path\": \"docs/\\u00e9t\\u00e9.md\", \"content\": \"\"},"
             "{\"path\": \"b.c\", \"content\": \"x\", \"deleted\": false}]}",
             &d);
    assert_string_equal(d.project, "app-1.x_y");
    assert_true(d.reset);
    assert_int_equal(d.n_files, 4);
    assert_int_equal(d.n_rejected, 0);
    assert_string_equal(d.files[0].path, "src/a.c");
    assert_string_equal(d.files[0].content, "int x;\n");
    assert_int_equal(d.files[0].content_len, 7);
    assert_false(d.files[0].deleted);
    assert_string_equal(d.files[1].path, "old.c");
    assert_null(d.files[1].content);
    assert_true(d.files[1].deleted);
    assert_string_equal(d.files[2].path, "docs/\xc3\xa9t\xc3\xa9.md");
    assert_non_null(d.files[2].content);
    assert_string_equal(d.files[2].content, "");
    assert_int_equal(d.files[2].content_len, 0);
    assert_string_equal(d.files[3].content, "x");
    assert_false(d.files[3].deleted);
}

static void test_defaults(void **state)
{
    struct ctx_delta d;
    parse_ok("{\"files\": [{\"path\": \"a\", \"content\": \"1\"}]}", &d);
    assert_string_equal(d.project, "default");
    assert_false(d.reset);
    assert_int_equal(d.n_files, 1);

    parse_ok("{}", &d);
    assert_string_equal(d.project, "default");
    assert_false(d.reset);
    assert_int_equal(d.n_files, 0);

    /* null is taken as absent */
    parse_ok("{\"project\": null, \"reset\": null, \"files\": null}", &d);
    assert_string_equal(d.project, "default");
    assert_false(d.reset);
    assert_int_equal(d.n_files, 0);
    parse_ok("{\"files\": [{\"path\": \"a\", \"content\": null, \"deleted\": true},"
             "{\"path\": \"b\", \"content\": \"\", \"deleted\": null}]}",
             &d);
    assert_int_equal(d.n_files, 2);
    assert_true(d.files[0].deleted);
    assert_false(d.files[1].deleted);

    /* an unknown key inside an entry is ignored (room to grow) */
    parse_ok("{\"files\": [{\"path\": \"a\", \"content\": \"x\", \"mode\": 420}]}", &d);
    assert_int_equal(d.n_files, 1);
}

static void test_reset_alone(void **state)
{
    struct ctx_delta d;
    parse_ok("{\"project\": \"p\", \"reset\": true, \"files\": []}", &d);
    assert_string_equal(d.project, "p");
    assert_true(d.reset);
    assert_int_equal(d.n_files, 0);
    assert_int_equal(d.n_rejected, 0);
    parse_ok("{\"reset\": true}", &d);
    assert_true(d.reset);
    assert_int_equal(d.n_files, 0);
    parse_ok("{\"reset\": false, \"files\": []}", &d);
    assert_false(d.reset);
}

static void test_deleted(void **state)
{
    struct ctx_delta d;
    parse_ok("{\"files\": [{\"path\": \"x/y.c\", \"deleted\": true},"
             "{\"path\": \"z.c\", \"deleted\": true}]}",
             &d);
    assert_int_equal(d.n_files, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_true(d.files[i].deleted);
        assert_null(d.files[i].content);
        assert_int_equal(d.files[i].content_len, 0);
    }
    assert_string_equal(d.files[1].path, "z.c");
}

static void test_not_json(void **state)
{
    refuse("", "", "could not parse the JSON body");
    refuse("{", "", "could not parse the JSON body");
    refuse("{\"files\": []} x", "", "could not parse the JSON body");
    refuse("{'files': []}", "", "could not parse the JSON body");
    refuse("\"files\"", "", "could not parse the JSON body");
    refuse("{\"files\": [], \"files\": []}", "", "could not parse the JSON body");
    refuse("{\"files\": [{\"path\": \"a\", \"path\": \"b\", \"content\": \"\"}]}", "",
           "could not parse the JSON body");
    /* a lone surrogate escape is not text either */
    refuse("{\"files\": [{\"path\": \"a\", \"content\": \"\\ud800\"}]}", "",
           "could not parse the JSON body");
    /* invalid UTF-8 anywhere, contents included, is the whole body's fault */
    refuse("{\"files\": [{\"path\": \"a\", \"content\": \"\xff\xfe\"}]}", "",
           "not valid UTF-8 JSON");
    refuse("{\"files\": [{\"path\": \"a\", \"content\": \"\xc3\"}]}", "", "not valid UTF-8 JSON");
    refuse("{\"files\": [{\"path\": \"a\", \"content\": \"\xed\xa0\x80\"}]}", "",
           "not valid UTF-8 JSON");
    refuse("{\"project\": \"\xc0\xaf\"}", "", "not valid UTF-8 JSON");
    /* a NUL byte in the body itself (not an escape) */
    refuse_n("{\"files\": [{\"path\": \"a\", \"content\": \"a\0b\"}]}", 41, "",
             "could not parse the JSON body");

    /* a NULL body of length 0 */
    struct ctx_delta d;
    char err[256];
    const char *param = NULL;
    assert_int_equal(ctx_delta_parse(&arena, NULL, 0, &d, err, sizeof err, &param), -1);
    assert_string_equal(param, "");
}

static void test_shape(void **state)
{
    refuse("[]", "", "must be a JSON object");
    refuse("[{\"path\": \"a\", \"content\": \"\"}]", "", "must be a JSON object");
    refuse("{\"file\": []}", "file", "Unrecognized request argument supplied: 'file'");
    refuse("{\"\": 1}", "\"\"", "Unrecognized request argument supplied: ''");
    refuse("{\"files\": [], \"model\": \"x\"}", "model", "Unrecognized request argument");
    refuse("{\"project\": 3}", "project", "'project' must be a string");
    refuse("{\"reset\": \"true\"}", "reset", "'reset' must be a boolean");
    refuse("{\"reset\": 1}", "reset", "'reset' must be a boolean");
    refuse("{\"files\": {}}", "files", "'files' must be an array");
    refuse("{\"files\": \"a.c\"}", "files", "'files' must be an array");
    refuse("{\"files\": [{\"path\": \"a\", \"content\": \"\"}, 3]}", "files[1]",
           "files[1] must be an object");
    refuse("{\"files\": [null]}", "files[0]", "files[0] must be an object");
    refuse("{\"files\": [[]]}", "files[0]", "files[0] must be an object");
    refuse("{\"files\": [{\"content\": \"x\"}]}", "files[0].path", "files[0].path is required");
    refuse("{\"files\": [{\"path\": null, \"content\": \"x\"}]}", "files[0].path",
           "files[0].path is required");
    refuse("{\"files\": [{\"path\": 7, \"content\": \"x\"}]}", "files[0].path",
           "files[0].path must be a string");
    refuse("{\"files\": [{\"path\": \"a\"}]}", "files[0].content", "files[0].content is required");
    refuse("{\"files\": [{\"path\": \"a\", \"deleted\": false}]}", "files[0].content",
           "files[0].content is required");
    refuse("{\"files\": [{\"path\": \"a\", \"content\": 5}]}", "files[0].content",
           "files[0].content must be a string");
    refuse("{\"files\": [{\"path\": \"a\", \"content\": [\"x\"]}]}", "files[0].content",
           "files[0].content must be a string");
    refuse("{\"files\": [{\"path\": \"a\", \"content\": \"x\", \"deleted\": true}]}",
           "files[0].content", "not both");
    refuse("{\"files\": [{\"path\": \"a\", \"content\": \"\", \"deleted\": true}]}",
           "files[0].content", "not both");
    refuse("{\"files\": [{\"path\": \"a\", \"deleted\": \"yes\"}]}", "files[0].deleted",
           "files[0].deleted must be a boolean");
    refuse("{\"files\": [{\"path\": \"a\", \"deleted\": 1}]}", "files[0].deleted",
           "files[0].deleted must be a boolean");
    /* the first error in body order, at its index */
    refuse(
        "{\"files\": [{\"path\": \"a\", \"content\": \"\"}, {\"path\": \"b\", \"content\": \"\"},"
        "{\"path\": \"c\"}, {\"path\": 1}]}",
        "files[2].content", "files[2].content is required");
}

static void test_duplicates(void **state)
{
    refuse("{\"files\": [{\"path\": \"a.c\", \"content\": \"1\"},"
           "{\"path\": \"b.c\", \"content\": \"2\"},"
           "{\"path\": \"a.c\", \"deleted\": true}]}",
           "files[2].path", "files[2].path: 'a.c' is given more than once (first at files[0])");
    /* the first repeat in body order, whatever the sort order of paths */
    refuse(
        "{\"files\": [{\"path\": \"z\", \"content\": \"\"}, {\"path\": \"a\", \"content\": \"\"},"
        "{\"path\": \"z\", \"content\": \"\"}, {\"path\": \"a\", \"content\": \"\"},"
        "{\"path\": \"z\", \"content\": \"\"}]}",
        "files[2].path", "(first at files[0])");
    refuse(
        "{\"files\": [{\"path\": \"q\", \"content\": \"\"}, {\"path\": \"a\", \"content\": \"\"},"
        "{\"path\": \"b\", \"content\": \"\"}, {\"path\": \"b\", \"content\": \"\"},"
        "{\"path\": \"a\", \"content\": \"\"}]}",
        "files[3].path", "files[3].path: 'b' is given more than once (first at files[2])");
    /* a refused (binary) file still counts */
    refuse("{\"files\": [{\"path\": \"a\", \"content\": \"\\u0000\"},"
           "{\"path\": \"a\", \"content\": \"x\"}]}",
           "files[1].path", "more than once");
    /* a prefix is another path; the same path escaped otherwise is not */
    struct ctx_delta d;
    parse_ok(
        "{\"files\": [{\"path\": \"a\", \"content\": \"\"}, {\"path\": \"ab\", \"content\": \"\"},"
        "{\"path\": \"a/b\", \"content\": \"\"}]}",
        &d);
    assert_int_equal(d.n_files, 3);
    refuse("{\"files\": [{\"path\": \"\\u00e9\", \"content\": \"\"},"
           "{\"path\": \"\xc3\xa9\", \"content\": \"\"}]}",
           "files[1].path", "more than once");

    /* many paths: sorted, not compared pairwise */
    size_t n = 20000, cap = n * 48 + 64, len = 0;
    char *body = malloc(cap);
    len += (size_t)snprintf(body + len, cap - len, "{\"files\": [");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"path\": \"d/%zu.c\", \"content\": \"\"}", i ? "," : "", i);
    len += (size_t)snprintf(body + len, cap - len, "]}");
    parse_ok_n(body, len, &d);
    assert_int_equal(d.n_files, n);
    assert_string_equal(d.files[n - 1].path, "d/19999.c");
    /* and many copies of one path */
    len = (size_t)snprintf(body, cap, "{\"files\": [");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(body + len, cap - len, "%s{\"path\": \"p\", \"deleted\": true}",
                                i ? "," : "");
    len += (size_t)snprintf(body + len, cap - len, "]}");
    refuse_n(body, len, "files[1].path", "(first at files[0])");
    free(body);
}

static void test_binary_rejected(void **state)
{
    struct ctx_delta d;
    parse_ok("{\"files\": [{\"path\": \"a.txt\", \"content\": \"text\\n\"},"
             "{\"path\": \"img.png\", \"content\": \"\\u0089PNG\\u0000\\u0001\"},"
             "{\"path\": \"gone.c\", \"deleted\": true},"
             "{\"path\": \"z\", \"content\": \"\\u0000\"},"
             "{\"path\": \"b.txt\", \"content\": \"more\"}]}",
             &d);
    assert_int_equal(d.n_files, 3);
    assert_string_equal(d.files[0].path, "a.txt");
    assert_string_equal(d.files[1].path, "gone.c");
    assert_string_equal(d.files[2].path, "b.txt");
    assert_int_equal(d.n_rejected, 2);
    assert_string_equal(d.rejected[0].path, "img.png");
    assert_string_equal(d.rejected[0].reason, "binary content (a NUL byte)");
    assert_string_equal(d.rejected[1].path, "z");

    /* a rejected file alone: nothing to apply, not an error */
    parse_ok("{\"reset\": true, \"files\": [{\"path\": \"a\", \"content\": \"x\\u0000\"}]}", &d);
    assert_true(d.reset);
    assert_int_equal(d.n_files, 0);
    assert_int_equal(d.n_rejected, 1);

    /* other control characters are text */
    parse_ok("{\"files\": [{\"path\": \"a\", \"content\": \"\\u0001\\t\\r\\n\\u007f\"}]}", &d);
    assert_int_equal(d.n_files, 1);
    assert_int_equal(d.files[0].content_len, 5);
}

static void bad_path(const char *json_path, const char *msg)
{
    char body[4096];
    snprintf(body, sizeof body,
             "{\"files\": [{\"path\": \"ok\", \"content\": \"\"},"
             "{\"path\": \"%s\", \"content\": \"x\"}]}",
             json_path);
    refuse(body, "files[1].path", msg);
}

static void test_paths(void **state)
{
    bad_path("", "must not be empty");
    bad_path("/etc/passwd", "must be relative");
    bad_path("/", "must be relative");
    bad_path("../x", "'.' or '..' segment");
    bad_path("a/../b", "'.' or '..' segment");
    bad_path("a/..", "'.' or '..' segment");
    bad_path("..", "'.' or '..' segment");
    bad_path(".", "'.' or '..' segment");
    bad_path("./a", "'.' or '..' segment");
    bad_path("a/./b", "'.' or '..' segment");
    bad_path("a/.", "'.' or '..' segment");
    bad_path("a//b", "empty segment");
    bad_path("a/", "empty segment");
    bad_path("a\\\\b", "backslash");
    bad_path("..\\\\x", "backslash");
    bad_path("a\\tb", "control character");
    bad_path("a\\nb", "control character");
    bad_path("a\\u0000b", "control character");
    bad_path("a\\u001fb", "control character");
    bad_path("a\\u007fb", "control character");

    /* names that look odd but are fine */
    struct ctx_delta d;
    parse_ok("{\"files\": [{\"path\": \".gitignore\", \"content\": \"\"},"
             "{\"path\": \"a/...\", \"content\": \"\"}, {\"path\": \"..a/b..\", \"content\": \"\"},"
             "{\"path\": \"a b/c d.txt\", \"content\": \"\"}, {\"path\": \"-\", \"content\": \"\"},"
             "{\"path\": \"\\u00a0\\u0085x\", \"content\": \"\"}, {\"path\": \"C:x\", \"content\": "
             "\"\"}]}",
             &d);
    assert_int_equal(d.n_files, 7);
    assert_string_equal(d.files[5].path, "\xc2\xa0\xc2\x85x");

    /* 1024 bytes at most (bytes, not characters) */
    char p[1100], body[1300];
    memset(p, 'a', 1024);
    p[1024] = '\0';
    snprintf(body, sizeof body, "{\"files\": [{\"path\": \"%s\", \"content\": \"\"}]}", p);
    parse_ok(body, &d);
    assert_int_equal(strlen(d.files[0].path), 1024);
    p[1024] = 'a';
    p[1025] = '\0';
    bad_path(p, "at most 1024 bytes");
    memset(p, 'a', 1022);
    memcpy(p + 1022, "\xc3\xa9", 3); /* 1024 bytes */
    snprintf(body, sizeof body, "{\"files\": [{\"path\": \"%s\", \"content\": \"\"}]}", p);
    parse_ok(body, &d);
    p[1022] = 'a';
    memcpy(p + 1023, "\xc3\xa9", 3); /* 1025 bytes, 1024 characters */
    bad_path(p, "at most 1024 bytes");
}

static void test_projects(void **state)
{
    assert_true(ctx_project_name_ok("default", 7));
    assert_true(ctx_project_name_ok("A-z_0.9", 7));
    assert_true(ctx_project_name_ok("x", 1));
    assert_true(ctx_project_name_ok("...", 3));
    assert_false(ctx_project_name_ok("", 0));
    assert_false(ctx_project_name_ok(NULL, 0));
    assert_false(ctx_project_name_ok("a b", 3));
    assert_false(ctx_project_name_ok("a/b", 3));
    assert_false(ctx_project_name_ok("a%2f", 4));
    assert_false(ctx_project_name_ok("caf\xc3\xa9", 5));
    assert_false(ctx_project_name_ok("a\0b", 3));
    char name[200];
    memset(name, 'p', sizeof name);
    assert_true(ctx_project_name_ok(name, 128));
    assert_false(ctx_project_name_ok(name, 129));

    struct ctx_delta d;
    char body[400];
    name[128] = '\0';
    snprintf(body, sizeof body, "{\"project\": \"%s\"}", name);
    parse_ok(body, &d);
    assert_int_equal(strlen(d.project), 128);
    name[128] = 'p';
    name[129] = '\0';
    snprintf(body, sizeof body, "{\"project\": \"%s\"}", name);
    refuse(body, "project", "'project' must be 1 to 128 characters");
    refuse("{\"project\": \"\"}", "project", "'project' must be 1 to 128");
    refuse("{\"project\": \"my project\"}", "project", "'project' must be 1 to 128");
    refuse("{\"project\": \"a/b\"}", "project", "'project' must be 1 to 128");
    refuse("{\"project\": \"a\\u0000\"}", "project", "'project' must be 1 to 128");
    refuse("{\"project\": \"\\u00e9\"}", "project", "'project' must be 1 to 128");
}

/* Messages quoting the body are cut at a character boundary, so they can
 * go into a JSON reply. */
static void test_messages_utf8(void **state)
{
    char key[700], body[800];
    size_t n = 0;
    while (n + 2 <= 600) {
        memcpy(key + n, "\xc3\xa9", 2);
        n += 2;
    }
    key[n] = '\0';
    /* an odd offset, so that a byte cut would split a character */
    snprintf(body, sizeof body, "{\"x%s\": 1}", key);
    struct ctx_delta d;
    char err[512];
    const char *param = NULL;
    assert_int_equal(ctx_delta_parse(&arena, body, strlen(body), &d, err, sizeof err, &param), -1);
    assert_non_null(strstr(err, "Unrecognized request argument"));
    assert_true(strlen(param) <= 203);
    assert_non_null(strstr(param, "..."));
    /* a short buffer cutting "...supplied: 'x\xc3\xa9\xc3|\xa9": whole characters */
    char small[45];
    assert_int_equal(ctx_delta_parse(&arena, body, strlen(body), &d, small, sizeof small, &param),
                     -1);
    for (const unsigned char *p = (const unsigned char *)small; *p; p++) {
        if (*p == 0xc3) assert_int_equal(p[1], 0xa9);
        if (*p == 0xa9) assert_int_equal(p[-1], 0xc3);
    }
    assert_int_equal(small[strlen(small) - 1], '\xa9');

    /* no err buffer or param at all */
    assert_int_equal(ctx_delta_parse(&arena, "[]", 2, &d, NULL, 0, NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_projects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages_utf8, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
