/* context_diff_test: unified diffs by libgit2 (context/diff.c): a one-line
 * change with its 3 lines of context, the "--- a/P" / "+++ b/P" headers
 * (/dev/null for a new or deleted file), equal contents giving "", a last
 * line without a newline on either side, CRLF lines, a 10,000-line file
 * with one change (a small diff, quickly), the added/removed counts, and
 * ctx_count_lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "context/diff.h"
#include "core/arena.h"

static struct arena arena;

static int setup(void **state)
{
    ctx_diff_init();
    arena_init(&arena);
    return 0;
}

static int teardown(void **state)
{
    arena_free(&arena);
    return 0;
}

static struct ctx_diff diff(const char *path, const char *old, const char *new_)
{
    struct ctx_diff d;
    if (ctx_diff(&arena, path, old, old ? strlen(old) : 0, new_, new_ ? strlen(new_) : 0, &d) != 0)
        fail_msg("ctx_diff failed");
    assert_non_null(d.text);
    assert_int_equal(strlen(d.text), d.len);
    return d;
}

static void expect(const struct ctx_diff *d, const char *want, int64_t added, int64_t removed)
{
    if (strcmp(d->text, want) != 0) fail_msg("diff:\n%s\nwant:\n%s", d->text, want);
    assert_int_equal(d->added, added);
    assert_int_equal(d->removed, removed);
}

static void test_one_line(void **state)
{
    struct ctx_diff d =
        diff("src/a.c", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n");
    expect(&d,
           "--- a/src/a.c\n"
           "+++ b/src/a.c\n"
           "@@ -2,7 +2,7 @@\n"
           " 2\n 3\n 4\n"
           "-5\n"
           "+five\n"
           " 6\n 7\n 8\n",
           1, 1);

    /* two changes far apart: two hunks; as git does, a hunk header names
     * the last line above it that starts with a letter, '_' or '$' (the
     * function it is in, in most languages) */
    d = diff("x", "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\n",
             "A\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nM\n");
    expect(&d,
           "--- a/x\n+++ b/x\n"
           "@@ -1,4 +1,4 @@\n-a\n+A\n b\n c\n d\n"
           "@@ -10,4 +10,4 @@ i\n j\n k\n l\n-m\n+M\n",
           2, 2);

    /* lines added and removed unevenly */
    d = diff("x", "a\nb\nc\n", "a\nb1\nb2\nb3\nc\n");
    expect(&d, "--- a/x\n+++ b/x\n@@ -1,3 +1,5 @@\n a\n-b\n+b1\n+b2\n+b3\n c\n", 3, 1);
    d = diff("x", "a\nb\nc\nd\n", "a\nd\n");
    expect(&d, "--- a/x\n+++ b/x\n@@ -1,4 +1,2 @@\n a\n-b\n-c\n d\n", 0, 2);

    /* a path with spaces and non-ASCII is written as it is */
    d = diff("my dir/caf\xc3\xa9.md", "a\n", "b\n");
    expect(&d, "--- a/my dir/caf\xc3\xa9.md\n+++ b/my dir/caf\xc3\xa9.md\n@@ -1 +1 @@\n-a\n+b\n", 1,
           1);
}

static void test_new_and_deleted(void **state)
{
    struct ctx_diff d = diff("n.c", NULL, "one\ntwo\n");
    expect(&d, "--- /dev/null\n+++ b/n.c\n@@ -0,0 +1,2 @@\n+one\n+two\n", 2, 0);
    d = diff("n.c", "one\ntwo\nthree\n", NULL);
    expect(&d, "--- a/n.c\n+++ /dev/null\n@@ -1,3 +0,0 @@\n-one\n-two\n-three\n", 0, 3);

    /* empty <-> content: a change, not a creation */
    d = diff("e", "", "x\n");
    expect(&d, "--- a/e\n+++ b/e\n@@ -0,0 +1 @@\n+x\n", 1, 0);
    d = diff("e", "x\n", "");
    expect(&d, "--- a/e\n+++ b/e\n@@ -1 +0,0 @@\n-x\n", 0, 1);

    /* an empty file created or deleted: no line changed */
    d = diff("e", NULL, "");
    expect(&d, "", 0, 0);
    d = diff("e", "", NULL);
    expect(&d, "", 0, 0);
    d = diff("e", NULL, NULL);
    expect(&d, "", 0, 0);
}

static void test_equal(void **state)
{
    struct ctx_diff d = diff("a", "same\ntext\n", "same\ntext\n");
    expect(&d, "", 0, 0);
    d = diff("a", "", "");
    expect(&d, "", 0, 0);
    d = diff("a", "no newline", "no newline");
    expect(&d, "", 0, 0);
}

static void test_no_trailing_newline(void **state)
{
    /* the last line changes and has no newline on either side */
    struct ctx_diff d = diff("f", "a\nb", "a\nc");
    expect(&d,
           "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n"
           "\\ No newline at end of file\n",
           1, 1);
    /* a newline added at the end */
    d = diff("f", "a\nb", "a\nb\n");
    expect(&d, "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n", 1,
           1);
    /* the newline at the end removed */
    d = diff("f", "a\nb\n", "a\nb");
    expect(&d, "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n\\ No newline at end of file\n", 1,
           1);
    /* unchanged last line without a newline, in the context */
    d = diff("f", "a\nb\nc", "A\nb\nc");
    expect(&d, "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n-a\n+A\n b\n c\n\\ No newline at end of file\n",
           1, 1);
    /* a new file without a final newline */
    d = diff("f", NULL, "only");
    expect(&d, "--- /dev/null\n+++ b/f\n@@ -0,0 +1 @@\n+only\n\\ No newline at end of file\n", 1,
           0);
    /* the text always ends with a newline */
    assert_int_equal(d.text[d.len - 1], '\n');
}

static void test_crlf(void **state)
{
    struct ctx_diff d = diff("w.txt", "a\r\nb\r\nc\r\n", "a\r\nB\r\nc\r\n");
    expect(&d, "--- a/w.txt\n+++ b/w.txt\n@@ -1,3 +1,3 @@\n a\r\n-b\r\n+B\r\n c\r\n", 1, 1);
    /* line endings changed, nothing else: every line differs */
    d = diff("w.txt", "a\nb\n", "a\r\nb\r\n");
    expect(&d, "--- a/w.txt\n+++ b/w.txt\n@@ -1,2 +1,2 @@\n-a\n-b\n+a\r\n+b\r\n", 2, 2);
}

static void test_large(void **state)
{
    size_t n = 10000, cap = n * 16;
    char *old = malloc(cap), *new_ = malloc(cap);
    size_t ol = 0, nl = 0;
    for (size_t i = 0; i < n; i++) {
        ol += (size_t)snprintf(old + ol, cap - ol, "line %zu\n", i);
        nl += (size_t)snprintf(new_ + nl, cap - nl, i == 5000 ? "changed %zu\n" : "line %zu\n", i);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct ctx_diff d;
    assert_int_equal(ctx_diff(&arena, "big.txt", old, ol, new_, nl, &d), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    if (ms > 1000) fail_msg("a 10,000-line diff took %.0f ms", ms);
    assert_true(d.len < 300);
    expect(&d,
           "--- a/big.txt\n+++ b/big.txt\n"
           "@@ -4998,7 +4998,7 @@ line 4996\n"
           " line 4997\n line 4998\n line 4999\n"
           "-line 5000\n+changed 5000\n"
           " line 5001\n line 5002\n line 5003\n",
           1, 1);
    assert_int_equal(ctx_count_lines(old, ol), 10000);

    /* the whole file as new */
    assert_int_equal(ctx_diff(&arena, "big.txt", NULL, 0, new_, nl, &d), 0);
    assert_int_equal(d.added, 10000);
    assert_int_equal(d.removed, 0);
    free(old);
    free(new_);
}

/* The counts are the '+' and '-' lines of the text, headers excluded. */
static void test_counts(void **state)
{
    const char *pairs[][2] = {
        {"---\n+++\n", "+++\n---\n"},
        {"-- x\n", "++ y\n"},
        {"a\nb\nc\nd\ne\nf\ng\nh\n", "h\ng\nf\ne\nd\nc\nb\na\n"},
        {"x", "y\nz"},
        {"\n\n\n", "\n"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        struct ctx_diff d = diff("p", pairs[i][0], pairs[i][1]);
        int64_t plus = 0, minus = 0;
        const char *p = strchr(strchr(d.text, '\n') + 1, '\n') + 1; /* past the headers */
        for (; *p; p = strchr(p, '\n') + 1) {
            plus += *p == '+';
            minus += *p == '-';
        }
        if (plus != d.added || minus != d.removed)
            fail_msg("pair %zu: %lld/%lld counted, %lld/%lld in\n%s", i, (long long)d.added,
                     (long long)d.removed, (long long)plus, (long long)minus, d.text);
    }
}

static void test_count_lines(void **state)
{
    assert_int_equal(ctx_count_lines("", 0), 0);
    assert_int_equal(ctx_count_lines(NULL, 0), 0);
    assert_int_equal(ctx_count_lines("a", 1), 1);
    assert_int_equal(ctx_count_lines("a\n", 2), 1);
    assert_int_equal(ctx_count_lines("a\nb", 3), 2);
    assert_int_equal(ctx_count_lines("\n", 1), 1);
    assert_int_equal(ctx_count_lines("\n\n", 2), 2);
    assert_int_equal(ctx_count_lines("a\r\nb\r\n", 6), 2);
    assert_int_equal(ctx_count_lines("a\rb", 3), 1);
    /* only `len` bytes count */
    assert_int_equal(ctx_count_lines("a\nb\nc\n", 3), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_and_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_equal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_trailing_newline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crlf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_count_lines, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
