/* ctl_ignore_test: the ignore rules of `aiproxyctl context watch`
 * (ctl/ignore.c) on real directories: outside a git work tree (an
 * in-memory repository reads the .gitignore files) and inside one (the
 * repository's rules, including .git/info/exclude and a .gitignore above
 * the watched directory); the common forms (comments, negation, a trailing
 * '/', a leading '/', "**", nested .gitignore files); an edited .gitignore
 * taking effect; anything under .git; and a watched directory that its
 * repository ignores, which falls back to its own .gitignore files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <git2.h>

#include "ctl/ignore.h"

static char root[256];

static void put(const char *rel, const char *content)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    /* mkdir -p of the parents */
    for (char *s = path + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        mkdir(path, 0755);
        *s = '/';
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static void rm_rf(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    snprintf(root, sizeof root, "/tmp/ctl-ignore-XXXXXX");
    assert_non_null(mkdtemp(root));
    char *real = realpath(root, NULL);
    snprintf(root, sizeof root, "%s", real);
    free(real);
    return 0;
}

static int teardown(void **state)
{
    rm_rf(root);
    return 0;
}

static void make_tree(void)
{
    put(".gitignore", "# a comment line\n"
                      "*.log\n"
                      "!keep.log\n"
                      "/build/\n"
                      "node_modules\n"
                      "docs/**/draft.md\n"
                      "\\#hash.txt\n");
    put("a.log", "x");
    put("keep.log", "x");
    put("src/main.c", "x");
    put("src/debug.log", "x");
    put("build/out.c", "x");
    put("src/build/gen.c", "x"); /* "/build/" is anchored to the root */
    put("node_modules/pkg/index.js", "x");
    put("web/node_modules/x.js", "x");
    put("docs/a/b/draft.md", "x");
    put("docs/draft.md", "x");
    put("docs/final.md", "x");
    put("#hash.txt", "x");
    put("sub/.gitignore", "*.tmp\n!important.tmp\n");
    put("sub/x.tmp", "x");
    put("sub/important.tmp", "x");
    put("sub/deeper/y.tmp", "x");
    put("z.tmp", "x"); /* sub/.gitignore does not reach up */
}

static void check_tree(struct ctl_ignore *ig)
{
    static const struct {
        const char *rel;
        bool ignored;
    } cases[] = {
        {"a.log", true},
        {"keep.log", false},
        {"src/main.c", false},
        {"src/debug.log", true},
        {"build", true},
        {"build/out.c", true},
        {"src/build/gen.c", false},
        {"node_modules", true},
        {"node_modules/pkg/index.js", true},
        {"web/node_modules/x.js", true},
        {"docs/a/b/draft.md", true},
        {"docs/draft.md", true}, /* "**" matches zero directories too */
        {"docs/final.md", false},
        {"#hash.txt", true},
        {"sub/x.tmp", true},
        {"sub/important.tmp", false},
        {"sub/deeper/y.tmp", true},
        {"z.tmp", false},
        {".gitignore", false},
        {"sub/.gitignore", false},
        {".git", true},
        {".git/config", true},
        {"sub/.git/HEAD", true},
        {"a.git/x", false},
        {"gone/never-existed.c", false},
        {"gone/never-existed.log", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (ctl_ignore_match(ig, cases[i].rel) != cases[i].ignored)
            fail_msg("%s: ignored is %d, want %d", cases[i].rel, !cases[i].ignored,
                     cases[i].ignored);
}

static void test_plain_directory(void **state)
{
    make_tree();
    char err[256];
    struct ctl_ignore *ig = ctl_ignore_new(root, err, sizeof err);
    assert_non_null(ig);
    assert_non_null(strstr(ctl_ignore_source(ig), "not a git work tree"));
    check_tree(ig);
    /* An edit is seen on the next question (a bigger file: a new stamp
     * even within the same second). */
    assert_false(ctl_ignore_match(ig, "src/main.c"));
    put(".gitignore", "# now src/main.c too, and nothing else\nsrc/main.c\n");
    assert_true(ctl_ignore_match(ig, "src/main.c"));
    assert_false(ctl_ignore_match(ig, "a.log"));
    ctl_ignore_free(ig);
    /* Nothing was written: no .git appeared. */
    char git[300];
    snprintf(git, sizeof git, "%s/.git", root);
    struct stat st;
    assert_int_not_equal(stat(git, &st), 0);
}

static void test_work_tree(void **state)
{
    make_tree();
    git_libgit2_init();
    git_repository *repo = NULL;
    assert_int_equal(git_repository_init(&repo, root, 0), 0);
    git_repository_free(repo);
    git_libgit2_shutdown();
    put(".git/info/exclude", "excluded.txt\n");
    put("excluded.txt", "x");
    char err[256];
    struct ctl_ignore *ig = ctl_ignore_new(root, err, sizeof err);
    assert_non_null(ig);
    assert_non_null(strstr(ctl_ignore_source(ig), "the git repository at"));
    check_tree(ig);
    assert_true(ctl_ignore_match(ig, "excluded.txt"));
    ctl_ignore_free(ig);

    /* A subdirectory: the root's .gitignore still applies inside it. */
    char sub[300];
    snprintf(sub, sizeof sub, "%s/sub", root);
    ig = ctl_ignore_new(sub, err, sizeof err);
    assert_non_null(ig);
    assert_true(ctl_ignore_match(ig, "x.tmp"));
    assert_false(ctl_ignore_match(ig, "important.tmp"));
    put("sub/y.log", "x");
    assert_true(ctl_ignore_match(ig, "y.log")); /* *.log from the root */
    ctl_ignore_free(ig);

    /* A directory the repository ignores: its own .gitignore files only. */
    put("build/.gitignore", "*.o\n");
    put("build/a.o", "x");
    put("build/a.c", "x");
    char build[300];
    snprintf(build, sizeof build, "%s/build", root);
    ig = ctl_ignore_new(build, err, sizeof err);
    assert_non_null(ig);
    assert_non_null(strstr(ctl_ignore_source(ig), "not a git work tree"));
    assert_false(ctl_ignore_match(ig, "a.c"));
    assert_true(ctl_ignore_match(ig, "a.o"));
    ctl_ignore_free(ig);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_work_tree, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
