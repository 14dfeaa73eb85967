/* context_buffer_test: the context delta buffer's store (context/buffer.c)
 * and its SQLite tables (context/persist.c): deltas applied and counted
 * (unchanged files not), the block injected (diffs of changed files, new
 * files whole, deletions), nothing pending once seen, a change made while
 * a request was in flight kept pending alone, a failed request leaving
 * everything pending, the max_tokens cap and its note, the limits refused
 * all or nothing, reset, scopes kept apart, expiry, escaping, seen marks
 * after a delete or reset ignored, and everything surviving a reload from
 * the ledger's database (and a failed write logged, the memory serving
 * on). */
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
#include "context/buffer.h"
#include "context/delta.h"
#include "context/diff.h"
#include "context/persist.h"
#include "core/arena.h"
#include "core/log.h"

#define BIG ((int64_t)1 << 40)

static const struct ctx_limits no_limits = {BIG, BIG, BIG, 0};

static struct ctx_store *store;
static struct arena arena; /* the answers of deltas and stats */
static char dir[64], dbpath[128], logpath[128];

static int setup(void **state)
{
    ctx_diff_init();
    store = ctx_store_new();
    arena_init(&arena);
    snprintf(dir, sizeof dir, "/tmp/context_buffer_test_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(dbpath, sizeof dbpath, "%s/costs.db", dir);
    snprintf(logpath, sizeof logpath, "%s/log", dir);
    log_configure(LOG_WARN, false, logpath);
    return 0;
}

static int teardown(void **state)
{
    ctx_store_free(store);
    store = NULL;
    arena_free(&arena);
    log_configure(LOG_ERROR, false, "stderr");
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers ---- */

/* A change: content NULL is a deletion. */
static struct ctx_change chg(const char *path, const char *content)
{
    return (struct ctx_change){.path = path,
                               .content = content,
                               .content_len = content ? strlen(content) : 0,
                               .deleted = !content};
}

static enum ctx_err apply_in(struct ctx_store *s, const struct ctx_limits *lim, const char *scope,
                             const char *project, bool reset, struct ctx_change *files, size_t n,
                             int64_t now_ms, struct ctx_applied *out, char *err, size_t errcap)
{
    struct ctx_delta d = {.project = project, .reset = reset, .files = files, .n_files = n};
    return ctx_store_apply(s, lim, scope, &d, now_ms, &arena, out, err, errcap);
}

/* Applies without limits at time 1000 and expects success. */
static struct ctx_applied apply(const char *scope, const char *project, bool reset,
                                struct ctx_change *files, size_t n)
{
    struct ctx_applied out;
    char err[256];
    enum ctx_err rc = apply_in(store, &no_limits, scope, project, reset, files, n, 1000, &out, err,
                               sizeof err);
    if (rc != CTX_OK) fail_msg("apply refused: %s", err);
    return out;
}

static void apply1(const char *project, const char *path, const char *content)
{
    struct ctx_change c = chg(path, content);
    apply("k:1", project, false, &c, 1);
}

/* A request: its own arena, as the proxy's request has. */
struct request {
    struct arena a;
    struct ctx_injection inj;
};

static void inject(struct ctx_store *s, const char *scope, const char *project,
                   int64_t max_tokens, struct request *r)
{
    arena_init(&r->a);
    assert_int_equal(ctx_store_inject(s, scope, project, max_tokens, 2000, &r->a, &r->inj), 0);
}

static void done(struct request *r, bool succeeded, struct ctx_store *s, const char *scope,
                 const char *project)
{
    if (succeeded) ctx_store_mark_seen(s, scope, project, &r->inj);
    arena_free(&r->a);
}

/* Injects into "k:1"/project and marks it seen; returns nothing. */
static void see_all(const char *project)
{
    struct request r;
    inject(store, "k:1", project, BIG / 8, &r);
    done(&r, true, store, "k:1", project);
}

static const struct ctx_project_stats *stats_of(struct ctx_store *s, const char *scope,
                                                const char *project)
{
    struct ctx_project_stats *ps;
    size_t n = ctx_store_stats(s, scope, &arena, &ps);
    for (size_t i = 0; i < n; i++)
        if (strcmp(ps[i].project, project) == 0) return &ps[i];
    return NULL;
}

static void assert_has(const char *hay, const char *needle)
{
    if (!hay || !strstr(hay, needle))
        fail_msg("\"%s\" not in:\n%s", needle, hay ? hay : "(null)");
}

static void assert_lacks(const char *hay, const char *needle)
{
    if (hay && strstr(hay, needle)) fail_msg("\"%s\" unexpectedly in:\n%s", needle, hay);
}

static int64_t ceil4(size_t n)
{
    return (int64_t)((n + 3) / 4);
}

/* ---- apply, stats ---- */

static void test_apply_and_stats(void **state)
{
    struct ctx_change c[] = {chg("src/b.c", "one\ntwo\n"), chg("src/a.c", "x\ny\nz")};
    struct ctx_applied out = apply("k:1", "proj", false, c, 2);
    assert_int_equal(out.n_changed, 2);
    assert_string_equal(out.changed[0], "src/b.c");
    assert_string_equal(out.changed[1], "src/a.c");
    assert_int_equal(out.added, 5);
    assert_int_equal(out.removed, 0);
    assert_int_equal(out.files, 2);
    assert_int_equal(out.bytes, 8 + 5);
    assert_int_equal(out.pending, 2);
    apply1("other", "x", "1");
    struct ctx_project_stats *ps;
    size_t n = ctx_store_stats(store, "k:1", &arena, &ps);
    assert_int_equal(n, 2);
    assert_string_equal(ps[0].project, "other"); /* name order */
    assert_string_equal(ps[1].project, "proj");
    assert_int_equal(ps[1].files, 2);
    assert_int_equal(ps[1].bytes, 13);
    assert_int_equal(ps[1].pending, 2);
    assert_int_equal(ps[1].injections, 0);
    assert_int_equal(ps[1].updated_ms, 1000);
    assert_int_equal(ctx_store_stats(store, "k:nobody", &arena, &ps), 0);
    struct ctx_totals t;
    ctx_store_totals(store, &t);
    assert_int_equal(t.projects, 2);
    assert_int_equal(t.files, 3);
    assert_int_equal(t.bytes, 14);
    /* an empty delta creates the project */
    apply("k:1", "empty", false, NULL, 0);
    assert_non_null(stats_of(store, "k:1", "empty"));
}

static void test_unchanged_not_counted(void **state)
{
    struct ctx_change c[] = {chg("a.c", "a\n"), chg("b.c", "b\n")};
    apply("k:1", "p", false, c, 2);
    struct ctx_applied out = apply("k:1", "p", false, c, 2);
    assert_int_equal(out.n_changed, 0);
    assert_int_equal(out.added + out.removed, 0);
    assert_int_equal(out.pending, 2);
    see_all("p");
    struct ctx_change c2[] = {chg("a.c", "a\n"), chg("b.c", "b\nmore\n")};
    out = apply("k:1", "p", false, c2, 2);
    assert_int_equal(out.n_changed, 1);
    assert_string_equal(out.changed[0], "b.c");
    assert_int_equal(out.added, 1);
    assert_int_equal(out.removed, 0);
    assert_int_equal(out.pending, 1);
    /* back to what the model saw: a change, but nothing pending */
    apply1("p", "b.c", "b\n");
    assert_int_equal(stats_of(store, "k:1", "p")->pending, 0);
    assert_int_equal(stats_of(store, "k:1", "p")->bytes, 4);
}

/* ---- inject, mark seen ---- */

static void test_diff_injected_then_nothing_pending(void **state)
{
    apply1("p", "src/a.c", "int a;\nint b;\nint c;\n");
    see_all("p");
    struct ctx_change c = chg("src/a.c", "int a;\nint B;\nint c;\n");
    struct ctx_applied out = apply("k:1", "p", false, &c, 1);
    assert_int_equal(out.added, 1);
    assert_int_equal(out.removed, 1);
    /* bytes: the current content and the one the model saw */
    assert_int_equal(out.bytes, 42);
    struct request r;
    inject(store, "k:1", "p", 8000, &r);
    const char *b = r.inj.block;
    assert_non_null(b);
    assert_int_equal(strncmp(b, "<context_delta project=\"p\">\n", 28), 0);
    assert_has(b, "--- a/src/a.c\n+++ b/src/a.c\n");
    assert_has(b, "\n-int b;\n+int B;\n");
    assert_lacks(b, "status=\"new\"");
    assert_int_equal(strlen(b), r.inj.block_len);
    assert_string_equal(b + r.inj.block_len - 16, "</context_delta>");
    assert_int_equal(r.inj.files, 1);
    assert_int_equal(r.inj.diff_lines, 2);
    assert_int_equal(r.inj.left_out, 0);
    assert_int_equal(r.inj.tokens_injected, ceil4(r.inj.block_len));
    int64_t saved = ceil4(21) - r.inj.tokens_injected;
    assert_int_equal(r.inj.tokens_saved, saved > 0 ? saved : 0);
    done(&r, true, store, "k:1", "p");
    const struct ctx_project_stats *ps = stats_of(store, "k:1", "p");
    assert_int_equal(ps->pending, 0);
    assert_int_equal(ps->bytes, 21);
    assert_int_equal(ps->injections, 2);
    inject(store, "k:1", "p", 8000, &r);
    assert_null(r.inj.block);
    assert_null(r.inj.seen);
    done(&r, true, store, "k:1", "p");
    inject(store, "k:1", "nope", 8000, &r);
    assert_null(r.inj.block);
    done(&r, true, store, "k:1", "nope");
    assert_int_equal(stats_of(store, "k:1", "p")->injections, 2);
}

/* The file changes while the request that carried its first version is in
 * flight: once that request succeeds, the model has seen the first
 * version, and only the second change is pending. */
static void test_change_during_request_stays_pending(void **state)
{
    apply1("p", "a.c", "v0\n");
    see_all("p");
    apply1("p", "a.c", "v1\n");
    struct request r1;
    inject(store, "k:1", "p", 8000, &r1);
    assert_has(r1.inj.block, "-v0\n+v1\n");
    apply1("p", "a.c", "v2\n");
    done(&r1, true, store, "k:1", "p");
    assert_int_equal(stats_of(store, "k:1", "p")->pending, 1);
    struct request r2;
    inject(store, "k:1", "p", 8000, &r2);
    assert_has(r2.inj.block, "-v1\n+v2\n");
    assert_lacks(r2.inj.block, "v0");
    done(&r2, true, store, "k:1", "p");
    assert_int_equal(stats_of(store, "k:1", "p")->pending, 0);

    /* a new file injected, then changed before the request ends */
    apply1("p", "n.c", "first\n");
    inject(store, "k:1", "p", 8000, &r1);
    assert_has(r1.inj.block, "<file path=\"n.c\" status=\"new\">\nfirst\n</file>\n");
    apply1("p", "n.c", "second\n");
    done(&r1, true, store, "k:1", "p");
    inject(store, "k:1", "p", 8000, &r2);
    assert_has(r2.inj.block, "-first\n+second\n");
    done(&r2, true, store, "k:1", "p");

    /* two requests in flight: the later injection wins, whatever order
     * they end in */
    apply1("p", "a.c", "v3\n");
    inject(store, "k:1", "p", 8000, &r1);
    apply1("p", "a.c", "v4\n");
    inject(store, "k:1", "p", 8000, &r2);
    assert_has(r2.inj.block, "-v2\n+v4\n");
    done(&r2, true, store, "k:1", "p");
    done(&r1, true, store, "k:1", "p");
    assert_int_equal(stats_of(store, "k:1", "p")->pending, 0);
}

static void test_failed_request_leaves_pending(void **state)
{
    struct ctx_change c[] = {chg("a.c", "a\n"), chg("b.c", "b\n")};
    apply("k:1", "p", false, c, 2);
    struct request r1, r2;
    inject(store, "k:1", "p", 8000, &r1);
    char *first = strdup(r1.inj.block);
    done(&r1, false, store, "k:1", "p");
    assert_int_equal(stats_of(store, "k:1", "p")->pending, 2);
    inject(store, "k:1", "p", 8000, &r2);
    assert_string_equal(r2.inj.block, first);
    done(&r2, false, store, "k:1", "p");
    free(first);
    const struct ctx_project_stats *ps = stats_of(store, "k:1", "p");
    assert_int_equal(ps->injections, 2); /* counted when made */
    assert_int_equal(ps->tokens_injected, 0); /* only once a request succeeded */
    assert_int_equal(ps->tokens_saved, 0);
}

static void test_new_and_deleted_files(void **state)
{
    struct ctx_change c[] = {chg("keep.c", "k\n"), chg("gone.c", "g1\ng2\n"),
                             chg("noeol.txt", "last line"), chg("empty", "")};
    apply("k:1", "p", false, c, 4);
    struct request r;
    inject(store, "k:1", "p", 8000, &r);
    assert_string_equal(r.inj.block,
                        "<context_delta project=\"p\">\n"
                        "<file path=\"empty\" status=\"new\">\n</file>\n"
                        "<file path=\"gone.c\" status=\"new\">\ng1\ng2\n</file>\n"
                        "<file path=\"keep.c\" status=\"new\">\nk\n</file>\n"
                        "<file path=\"noeol.txt\" status=\"new\">\nlast line\n</file>\n"
                        "</context_delta>");
    assert_int_equal(r.inj.files, 4);
    assert_int_equal(r.inj.diff_lines, 4);
    done(&r, true, store, "k:1", "p");
    assert_int_equal(stats_of(store, "k:1", "p")->pending, 0);

    struct ctx_change d[] = {chg("gone.c", NULL), chg("never.c", NULL)};
    struct ctx_applied out = apply("k:1", "p", false, d, 2);
    assert_int_equal(out.n_changed, 1); /* a file that is not there: ignored */
    assert_string_equal(out.changed[0], "gone.c");
    assert_int_equal(out.removed, 2);
    assert_int_equal(out.files, 3);
    assert_int_equal(out.bytes, 2 + 9 + 6); /* the seen content until the deletion is */
    assert_int_equal(out.pending, 1);
    out = apply("k:1", "p", false, d, 2); /* deleted already */
    assert_int_equal(out.n_changed, 0);
    inject(store, "k:1", "p", 8000, &r);
    assert_string_equal(r.inj.block, "<context_delta project=\"p\">\n"
                                     "<file path=\"gone.c\" status=\"deleted\"/>\n"
                                     "</context_delta>");
    assert_int_equal(r.inj.diff_lines, 0);
    done(&r, true, store, "k:1", "p");
    const struct ctx_project_stats *ps = stats_of(store, "k:1", "p");
    assert_int_equal(ps->pending, 0);
    assert_int_equal(ps->files, 3);
    assert_int_equal(ps->bytes, 11);

    /* a new file deleted before the model saw it: forgotten */
    apply1("p", "tmp.c", "t\n");
    apply1("p", "tmp.c", NULL);
    ps = stats_of(store, "k:1", "p");
    assert_int_equal(ps->pending, 0);
    assert_int_equal(ps->files, 3);
    assert_int_equal(ps->bytes, 11);
    inject(store, "k:1", "p", 8000, &r);
    assert_null(r.inj.block);
    done(&r, true, store, "k:1", "p");

    /* deleted, then back: a change against what the model saw */
    apply1("p", "keep.c", NULL);
    apply1("p", "keep.c", "k2\n");
    inject(store, "k:1", "p", 8000, &r);
    assert_has(r.inj.block, "-k\n+k2\n");
    assert_lacks(r.inj.block, "deleted");
    done(&r, true, store, "k:1", "p");
}

/* ---- the cap ---- */

static void test_max_tokens_note(void **state)
{
    char big[2001];
    memset(big, 'x', 2000);
    big[2000] = '\0';
    struct ctx_change c[] = {chg("a.c", "small a\n"), chg("b.c", big), chg("c.c", "small c\n"),
                             chg("d.c", big)};
    apply("k:1", "p", false, c, 4);
    struct request r;
    inject(store, "k:1", "p", 100, &r); /* 400 bytes */
    const char *b = r.inj.block;
    assert_non_null(b);
    assert_true(r.inj.block_len <= 400);
    assert_has(b, "status=\"new\">\nsmall a\n</file>\n");
    assert_has(b, "status=\"new\">\nsmall c\n</file>\n");
    assert_has(b, "(left out, over context.max_inject_tokens: b.c, d.c)\n</context_delta>");
    assert_lacks(b, "xxxx");
    assert_int_equal(r.inj.files, 2);
    assert_int_equal(r.inj.left_out, 2);
    assert_int_equal(r.inj.tokens_injected, ceil4(r.inj.block_len));
    assert_int_equal(r.inj.tokens_saved, ceil4(4016) - r.inj.tokens_injected);
    done(&r, true, store, "k:1", "p");
    const struct ctx_project_stats *ps = stats_of(store, "k:1", "p");
    assert_int_equal(ps->pending, 2); /* the two left out */
    assert_int_equal(ps->tokens_injected, ceil4(r.inj.block_len));

    /* nothing fits but the note */
    inject(store, "k:1", "p", 100, &r);
    assert_string_equal(r.inj.block, "<context_delta project=\"p\">\n"
                                     "(left out, over context.max_inject_tokens: b.c, d.c)\n"
                                     "</context_delta>");
    assert_int_equal(r.inj.files, 0);
    done(&r, true, store, "k:1", "p");
    assert_int_equal(stats_of(store, "k:1", "p")->pending, 2);
    /* with room, they come */
    inject(store, "k:1", "p", 8000, &r);
    assert_int_equal(r.inj.files, 2);
    assert_int_equal(r.inj.left_out, 0);
    assert_lacks(r.inj.block, "left out");
    done(&r, true, store, "k:1", "p");
    assert_int_equal(stats_of(store, "k:1", "p")->pending, 0);
}

/* Many files left out: the note names what fits and counts the rest; a
 * file that fits gives way to the note when both cannot. */
static void test_note_truncated(void **state)
{
    struct ctx_change c[60];
    char names[60][48], big[1200];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < 60; i++) {
        snprintf(names[i], sizeof names[i], "dir/some_rather_long_file_name_%02d.c", i);
        c[i] = chg(names[i], big);
    }
    apply("k:1", "p", false, c, 60);
    struct request r;
    inject(store, "k:1", "p", 500, &r); /* 2000 bytes: one file */
    assert_true(r.inj.block_len <= 2000);
    assert_int_equal(r.inj.files, 1);
    assert_int_equal(r.inj.left_out, 59);
    assert_has(r.inj.block, "(left out, over context.max_inject_tokens: "
                            "dir/some_rather_long_file_name_01.c, ");
    assert_has(r.inj.block, " more)\n</context_delta>");
    done(&r, false, store, "k:1", "p");
    inject(store, "k:1", "p", 330, &r); /* 1320 bytes: a file, but not with the note */
    assert_true(r.inj.block_len <= 1320);
    assert_int_equal(r.inj.files, 0);
    assert_int_equal(r.inj.left_out, 60);
    assert_has(r.inj.block, "_00.c, ");
    done(&r, false, store, "k:1", "p");
    inject(store, "k:1", "p", 15, &r); /* 60 bytes: not even the note */
    assert_null(r.inj.block);
    assert_int_equal(r.inj.left_out, 60);
    done(&r, true, store, "k:1", "p");
    assert_int_equal(stats_of(store, "k:1", "p")->injections, 2);
}

/* A changed file whose diff fits alone, but not with the note naming the
 * two after it: filled again with room for the note, the deletion after it
 * comes in and the diff is named instead. */
static void test_note_room_refilled(void **state)
{
    struct ctx_change c[] = {chg("a.c", "l1\nl2\nl3\nl4\nl5\nl6\nl7\nl8\n"), chg("c.c", "c\n")};
    apply("k:1", "p", false, c, 2);
    see_all("p");
    struct ctx_change c2[] = {chg("a.c", "l1\nl2\nl3\nL4\nl5\nl6\nl7\nl8\nl9\n"),
                              chg("c.c", NULL), chg("d.c", "new\n")};
    apply("k:1", "p", false, c2, 3);
    struct request r;
    inject(store, "k:1", "p", 8000, &r);
    assert_true(r.inj.block_len > 160); /* all three do not fit in 160 bytes */
    done(&r, false, store, "k:1", "p");
    inject(store, "k:1", "p", 40, &r);
    assert_string_equal(r.inj.block, "<context_delta project=\"p\">\n"
                                     "<file path=\"c.c\" status=\"deleted\"/>\n"
                                     "(left out, over context.max_inject_tokens: a.c, d.c)\n"
                                     "</context_delta>");
    assert_int_equal(r.inj.files, 1);
    assert_int_equal(r.inj.left_out, 2);
    assert_int_equal(r.inj.diff_lines, 0);
    done(&r, true, store, "k:1", "p");
    const struct ctx_project_stats *ps = stats_of(store, "k:1", "p");
    assert_int_equal(ps->pending, 2);
    assert_int_equal(ps->files, 2);
}

/* ---- limits ---- */

static void test_limits_all_or_nothing(void **state)
{
    struct ctx_limits lim = {.max_files = 3, .max_bytes = 100, .max_projects = 2, .ttl_ms = 0};
    struct ctx_applied out;
    char err[256];
    struct ctx_change c3[] = {chg("a", "1"), chg("b", "2"), chg("c", "3")};
    assert_int_equal(apply_in(store, &lim, "k:1", "p", false, c3, 3, 1000, &out, err, sizeof err),
                     CTX_OK);
    struct ctx_change c2[] = {chg("a", "changed"), chg("d", "4")};
    assert_int_equal(apply_in(store, &lim, "k:1", "p", false, c2, 2, 1000, &out, err, sizeof err),
                     CTX_ERR_TOO_MANY_FILES);
    assert_has(err, "4 files");
    assert_has(err, "context.max_files (3)");
    const struct ctx_project_stats *ps = stats_of(store, "k:1", "p");
    assert_int_equal(ps->files, 3);
    assert_int_equal(ps->bytes, 3);
    assert_int_equal(ps->pending, 3);
    /* a deletion makes room for the new one: fine in one delta */
    struct ctx_change swap[] = {chg("a", NULL), chg("d", "4")};
    assert_int_equal(
        apply_in(store, &lim, "k:1", "p", false, swap, 2, 1000, &out, err, sizeof err), CTX_OK);
    assert_int_equal(out.files, 3);

    char big[101];
    memset(big, 'b', 100);
    big[100] = '\0';
    struct ctx_change cb[] = {chg("b", "fine"), chg("e", big)};
    assert_int_equal(apply_in(store, &lim, "k:1", "q", false, cb, 2, 1000, &out, err, sizeof err),
                     CTX_ERR_TOO_LARGE);
    assert_has(err, "104 bytes");
    assert_has(err, "context.max_bytes (100");
    assert_null(stats_of(store, "k:1", "q")); /* not even created */
    /* the seen content counts until the model sees the change */
    see_all("p");
    char half[61];
    memset(half, 'h', 60);
    half[60] = '\0';
    struct ctx_change ch[] = {chg("b", half)};
    assert_int_equal(apply_in(store, &lim, "k:1", "p", false, ch, 1, 1000, &out, err, sizeof err),
                     CTX_OK);
    assert_int_equal(out.bytes, 62 + 1); /* b twice (seen "2", current 60), c, d */
    struct ctx_change ch2[] = {chg("c", half)};
    assert_int_equal(apply_in(store, &lim, "k:1", "p", false, ch2, 1, 1000, &out, err, sizeof err),
                     CTX_ERR_TOO_LARGE);
    assert_int_equal(stats_of(store, "k:1", "p")->bytes, 63);

    /* projects per scope */
    assert_int_equal(apply_in(store, &lim, "k:1", "q", false, NULL, 0, 1000, &out, err, sizeof err),
                     CTX_OK);
    assert_int_equal(apply_in(store, &lim, "k:1", "r", false, c3, 3, 1000, &out, err, sizeof err),
                     CTX_ERR_TOO_MANY_PROJECTS);
    assert_has(err, "already has 2");
    assert_has(err, "context.max_projects allows (2)");
    assert_null(stats_of(store, "k:1", "r"));
    /* another scope has its own count; an existing project still takes deltas */
    assert_int_equal(apply_in(store, &lim, "k:2", "r", false, c3, 3, 1000, &out, err, sizeof err),
                     CTX_OK);
    assert_int_equal(apply_in(store, &lim, "k:1", "q", false, c3, 3, 1000, &out, err, sizeof err),
                     CTX_OK);
    /* a project over lowered limits can still shrink */
    struct ctx_limits lower = lim;
    lower.max_files = 1;
    struct ctx_change del[] = {chg("a", NULL)};
    assert_int_equal(
        apply_in(store, &lower, "k:1", "q", false, del, 1, 1000, &out, err, sizeof err), CTX_OK);
    assert_int_equal(out.files, 2);
}

/* ---- reset, scopes, expiry ---- */

static void test_reset(void **state)
{
    struct ctx_change c[] = {chg("a.c", "a\n"), chg("b.c", "b\n")};
    apply("k:1", "p", false, c, 2);
    see_all("p");
    int64_t tokens = stats_of(store, "k:1", "p")->tokens_injected;
    struct request inflight;
    apply1("p", "b.c", "b2\n");
    inject(store, "k:1", "p", 8000, &inflight);
    /* start over: only a.c, and the model has seen nothing of it */
    struct ctx_change r1[] = {chg("a.c", "a\n")};
    struct ctx_applied out = apply("k:1", "p", true, r1, 1);
    assert_int_equal(out.n_changed, 1);
    assert_int_equal(out.files, 1);
    assert_int_equal(out.bytes, 2);
    assert_int_equal(out.pending, 1);
    const struct ctx_project_stats *ps = stats_of(store, "k:1", "p");
    assert_int_equal(ps->injections, 2); /* counters kept */
    assert_int_equal(ps->tokens_injected, tokens);
    apply1("p", "b.c", "b2\n");
    /* an injection made before the reset is not marked seen after it */
    done(&inflight, true, store, "k:1", "p");
    assert_int_equal(stats_of(store, "k:1", "p")->pending, 2);
    struct request r;
    inject(store, "k:1", "p", 8000, &r);
    assert_has(r.inj.block, "<file path=\"a.c\" status=\"new\">\na\n</file>\n");
    assert_has(r.inj.block, "<file path=\"b.c\" status=\"new\">\nb2\n</file>\n");
    done(&r, true, store, "k:1", "p");
    /* a reset alone empties it */
    out = apply("k:1", "p", true, NULL, 0);
    assert_int_equal(out.files, 0);
    assert_int_equal(out.bytes, 0);
    assert_int_equal(out.pending, 0);
}

static void test_scopes_isolated(void **state)
{
    struct ctx_change a = chg("x.c", "from one\n"), b = chg("x.c", "from two\n");
    apply("k:one", "same", false, &a, 1);
    apply("k:two", "same", false, &b, 1);
    struct request r;
    inject(store, "k:one", "same", 8000, &r);
    assert_has(r.inj.block, "from one");
    assert_lacks(r.inj.block, "from two");
    done(&r, true, store, "k:one", "same");
    assert_int_equal(stats_of(store, "k:one", "same")->pending, 0);
    assert_int_equal(stats_of(store, "k:two", "same")->pending, 1);
    assert_false(ctx_store_delete(store, "k:three", "same"));
    assert_true(ctx_store_delete(store, "k:one", "same"));
    assert_false(ctx_store_delete(store, "k:one", "same"));
    assert_null(stats_of(store, "k:one", "same"));
    assert_non_null(stats_of(store, "k:two", "same"));
}

static void test_expire(void **state)
{
    struct ctx_change c = chg("a", "1");
    struct ctx_applied out;
    char err[256];
    assert_int_equal(apply_in(store, &no_limits, "k:1", "old", false, &c, 1, 1000, &out, err,
                              sizeof err),
                     CTX_OK);
    assert_int_equal(apply_in(store, &no_limits, "k:1", "new", false, &c, 1, 5000, &out, err,
                              sizeof err),
                     CTX_OK);
    assert_int_equal(apply_in(store, &no_limits, "k:2", "old", false, &c, 1, 1000, &out, err,
                              sizeof err),
                     CTX_OK);
    assert_int_equal(ctx_store_expire(store, 100000, 0), 0); /* 0: never */
    assert_int_equal(ctx_store_expire(store, 5999, 5000), 0);
    assert_int_equal(ctx_store_expire(store, 6000, 5000), 2); /* both "old" */
    assert_null(stats_of(store, "k:1", "old"));
    assert_null(stats_of(store, "k:2", "old"));
    assert_non_null(stats_of(store, "k:1", "new"));
    /* an injection keeps a project alive */
    struct request r;
    arena_init(&r.a);
    assert_int_equal(ctx_store_inject(store, "k:1", "new", 8000, 9000, &r.a, &r.inj), 0);
    done(&r, true, store, "k:1", "new");
    assert_int_equal(ctx_store_expire(store, 13999, 5000), 0);
    /* a delta expires its scope's idle projects first, and only those */
    assert_int_equal(apply_in(store, &no_limits, "k:2", "b", false, &c, 1, 10000, &out, err,
                              sizeof err),
                     CTX_OK);
    struct ctx_limits lim = no_limits;
    lim.ttl_ms = 5000;
    lim.max_projects = 1;
    assert_int_equal(
        apply_in(store, &lim, "k:1", "other", false, &c, 1, 14000, &out, err, sizeof err),
        CTX_OK); /* "new" (idle since 9000) made room */
    assert_null(stats_of(store, "k:1", "new"));
    assert_non_null(stats_of(store, "k:2", "b"));
    struct ctx_totals t;
    ctx_store_totals(store, &t);
    assert_int_equal(t.projects, 2);
}

/* ---- escaping, stale seen marks ---- */

static void test_escaping(void **state)
{
    struct ctx_change c[] = {chg("we\"ird<&>.c", "x\n"), chg("q\"del", "d\n")};
    apply("k:1", "p", false, c, 2);
    see_all("p");
    apply1("p", "q\"del", NULL);
    apply1("p", "n<ew", "n\n");
    struct request r;
    inject(store, "k:1", "p", 8000, &r);
    assert_has(r.inj.block, "<file path=\"n&lt;ew\" status=\"new\">\n");
    assert_has(r.inj.block, "<file path=\"q&quot;del\" status=\"deleted\"/>\n");
    done(&r, false, store, "k:1", "p");
    inject(store, "k:1", "p", 30, &r); /* the note escapes too */
    assert_has(r.inj.block, "n&lt;ew");
    done(&r, false, store, "k:1", "p");
    apply1("p", "we\"ird<&>.c", "y\n");
    inject(store, "k:1", "p", 8000, &r);
    assert_has(r.inj.block, "-x\n+y\n");
    done(&r, true, store, "k:1", "p");
    assert_int_equal(stats_of(store, "k:1", "p")->pending, 0);
}

static void test_seen_after_delete_ignored(void **state)
{
    apply1("p", "a.c", "a\n");
    struct request r;
    inject(store, "k:1", "p", 8000, &r);
    assert_true(ctx_store_delete(store, "k:1", "p"));
    done(&r, true, store, "k:1", "p"); /* the project is gone: nothing to mark */
    assert_null(stats_of(store, "k:1", "p"));
    apply1("p", "a.c", "a\n");
    inject(store, "k:1", "p", 8000, &r);
    assert_true(ctx_store_delete(store, "k:1", "p"));
    apply1("p", "a.c", "a\n"); /* a new project of the same name */
    done(&r, true, store, "k:1", "p");
    assert_int_equal(stats_of(store, "k:1", "p")->pending, 1);
    struct ctx_totals t;
    ctx_store_totals(store, &t);
    assert_int_equal(t.injections, 2); /* metrics' counters survive deletions */
    assert_true(t.tokens_injected > 0);
}

/* The diff a delta computed for its counts is kept for the next injection
 * when the model had seen the content it replaced: whatever happens to the
 * file in between (another change before the injection, a change during
 * the request, a failed request, a deletion, a change back to what the
 * model saw), the block is the diff of what the model saw against the
 * current content, as computed afresh. */
static char *lines_with(int n, int changed, const char *mark)
{
    char *out = malloc((size_t)n * 32 + 1), *w = out;
    for (int i = 0; i < n; i++)
        w += sprintf(w, "line %d%s\n", i, i == changed ? mark : "");
    return out;
}

/* What the block must be for one changed file: the diff seen -> cur. */
static void assert_block_is_diff(const char *seen, const char *cur)
{
    struct request r;
    inject(store, "k:1", "p", 8000, &r);
    struct ctx_diff df;
    assert_int_equal(ctx_diff(&r.a, "f.c", seen, strlen(seen), cur, strlen(cur), &df), 0);
    char *want = malloc(df.len + 64);
    sprintf(want, "<context_delta project=\"p\">\n%s</context_delta>", df.text);
    assert_string_equal(r.inj.block, want);
    assert_int_equal(r.inj.diff_lines, df.added + df.removed);
    free(want);
    done(&r, false, store, "k:1", "p");
}

static void test_kept_diff_is_the_fresh_one(void **state)
{
    char *v1 = lines_with(40, -1, ""), *v2 = lines_with(40, 5, " two"),
         *v3 = lines_with(40, 20, " three"), *v4 = lines_with(40, 30, " four"),
         *v5 = lines_with(40, 31, " five");
    apply1("p", "f.c", v1);
    see_all("p");
    apply1("p", "f.c", v2); /* seen v1: the delta's diff v1 -> v2 is kept */
    assert_block_is_diff(v1, v2);
    assert_block_is_diff(v1, v2); /* a failed request: the same again */
    apply1("p", "f.c", v3);       /* pending already: diff v1 -> v3, not v2 -> v3 */
    assert_block_is_diff(v1, v3);

    /* a change while a request is out: the model saw v3, v4 is pending */
    see_all("p");
    apply1("p", "f.c", v4); /* kept: v3 -> v4 */
    struct request r;
    inject(store, "k:1", "p", 8000, &r);
    assert_has(r.inj.block, "+line 30 four\n");
    apply1("p", "f.c", v5);
    done(&r, true, store, "k:1", "p");
    assert_block_is_diff(v4, v5);

    /* back to what the model saw: nothing pending */
    see_all("p");
    apply1("p", "f.c", v1);
    apply1("p", "f.c", v5);
    assert_int_equal(stats_of(store, "k:1", "p")->pending, 0);

    /* kept, then deleted: the deletion is injected */
    apply1("p", "f.c", v2);
    apply1("p", "f.c", NULL);
    inject(store, "k:1", "p", 8000, &r);
    assert_string_equal(r.inj.block,
                        "<context_delta project=\"p\">\n<file path=\"f.c\" status=\"deleted\"/>\n"
                        "</context_delta>");
    done(&r, true, store, "k:1", "p");
    assert_int_equal(stats_of(store, "k:1", "p")->files, 0);
    free(v1);
    free(v2);
    free(v3);
    free(v4);
    free(v5);
}

/* ---- persistence ---- */

static struct ctx_persist *open_db(void)
{
    char err[256];
    struct ledger *l = ledger_open(dbpath, err, sizeof err); /* makes the tables */
    if (!l) fail_msg("ledger_open: %s", err);
    ledger_close(l);
    struct ctx_persist *p = ctx_persist_open(dbpath, err, sizeof err);
    if (!p) fail_msg("ctx_persist_open: %s", err);
    return p;
}

static int64_t scalar(const char *sql)
{
    sqlite3 *db;
    sqlite3_open(dbpath, &db);
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* The block either store would inject for (scope, project), heap copy. */
static char *block_of(struct ctx_store *s, const char *scope, const char *project)
{
    struct request r;
    inject(s, scope, project, 8000, &r);
    char *b = r.inj.block ? strdup(r.inj.block) : NULL;
    done(&r, false, s, scope, project);
    return b;
}

static void assert_same_stats(struct ctx_store *a, struct ctx_store *b, const char *scope)
{
    struct ctx_project_stats *pa, *pb;
    size_t na = ctx_store_stats(a, scope, &arena, &pa);
    size_t nb = ctx_store_stats(b, scope, &arena, &pb);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_string_equal(pa[i].project, pb[i].project);
        assert_int_equal(pa[i].files, pb[i].files);
        assert_int_equal(pa[i].bytes, pb[i].bytes);
        assert_int_equal(pa[i].pending, pb[i].pending);
        assert_int_equal(pa[i].injections, pb[i].injections);
        assert_int_equal(pa[i].tokens_injected, pb[i].tokens_injected);
        assert_int_equal(pa[i].tokens_saved, pb[i].tokens_saved);
        assert_int_equal(pa[i].updated_ms, pb[i].updated_ms);
        char *ba = block_of(a, scope, pa[i].project), *bb = block_of(b, scope, pb[i].project);
        if (ba || bb) {
            assert_non_null(ba);
            assert_non_null(bb);
            assert_string_equal(ba, bb);
        }
        free(ba);
        free(bb);
    }
}

static void test_persisted_and_loaded(void **state)
{
    struct ctx_persist *p = open_db();
    ctx_store_set_persist(store, p);
    struct ctx_change c[] = {chg("a.c", "one\ntwo\n"), chg("b.c", "bee\n"), chg("gone.c", "g\n"),
                             chg("empty", "")};
    apply("k:1", "p", false, c, 4);
    see_all("p");
    apply1("p", "a.c", "one\nTWO\n"); /* changed since seen */
    apply1("p", "gone.c", NULL);      /* deletion not seen yet */
    apply1("p", "new.c", "fresh\n");  /* never seen */
    apply1("q", "x", "x\n");
    struct ctx_change o = chg("x", "other scope\n");
    apply("k:2", "p", false, &o, 1);
    see_all("q");
    apply1("doomed", "d", "d\n");
    assert_true(ctx_store_delete(store, "k:1", "doomed"));
    /* a request in flight while it changes, then marked seen */
    apply1("q", "x", "x2\n");
    struct request r;
    inject(store, "k:1", "q", 8000, &r);
    apply1("q", "x", "x3\n");
    done(&r, true, store, "k:1", "q");
    /* a seen mark is written by the next flush (or write of its project):
     * the row still has "x\n" (seen before x2 was sent), x2 is seen in
     * memory only */
    assert_int_equal(scalar("SELECT length(seen) FROM context_files WHERE scope = 'k:1'"
                            " AND project = 'q'"),
                     2);
    ctx_store_flush(store);
    assert_int_equal(scalar("SELECT length(seen) FROM context_files WHERE scope = 'k:1'"
                            " AND project = 'q'"),
                     3);
    assert_int_equal(scalar("SELECT COUNT(*) FROM context_projects"), 3);
    assert_int_equal(scalar("SELECT COUNT(*) FROM context_files WHERE project = 'doomed'"), 0);
    assert_int_equal(scalar("SELECT seen_same FROM context_files WHERE path = 'b.c'"), 1);
    assert_int_equal(scalar("SELECT seen IS NULL FROM context_files WHERE path = 'b.c'"), 1);
    assert_int_equal(scalar("SELECT content IS NULL FROM context_files WHERE path = 'gone.c'"),
                     1);
    assert_int_equal(scalar("SELECT length(content) FROM context_files WHERE path = 'empty'"), 0);
    assert_int_equal(scalar("SELECT content IS NULL FROM context_files WHERE path = 'empty'"), 0);

    struct ctx_store *loaded = ctx_store_new();
    assert_int_equal(ctx_persist_load(p, loaded), 0);
    assert_same_stats(store, loaded, "k:1");
    assert_same_stats(store, loaded, "k:2");
    struct ctx_totals ta, tb;
    ctx_store_totals(store, &ta);
    ctx_store_totals(loaded, &tb);
    assert_memory_equal(&ta, &tb, sizeof ta);

    /* the loaded store goes on where the first left off, and a third
     * load sees its changes */
    ctx_store_set_persist(store, NULL);
    ctx_store_set_persist(loaded, p);
    char *blk = block_of(loaded, "k:1", "q");
    assert_has(blk, "-x2\n+x3\n");
    free(blk);
    struct request r2;
    inject(loaded, "k:1", "p", 8000, &r2);
    assert_has(r2.inj.block, "-two\n+TWO\n");
    assert_has(r2.inj.block, "<file path=\"gone.c\" status=\"deleted\"/>");
    assert_has(r2.inj.block, "<file path=\"new.c\" status=\"new\">");
    done(&r2, true, loaded, "k:1", "p");
    assert_int_equal(scalar("SELECT COUNT(*) FROM context_files WHERE path = 'gone.c'"), 0);
    apply_in(loaded, &no_limits, "k:1", "p", true, NULL, 0, 3000, &(struct ctx_applied){0}, NULL,
             0);
    assert_int_equal(scalar("SELECT COUNT(*) FROM context_files WHERE project = 'p'"
                            " AND scope = 'k:1'"),
                     0);
    /* an injection's count is written by the next flush (or the project's
     * next write, or when the persister goes): q's last injection
     * (block_of, not marked seen) is not in the file yet */
    int64_t q_injections = stats_of(loaded, "k:1", "q")->injections;
    assert_int_equal(scalar("SELECT injections FROM context_projects WHERE scope = 'k:1'"
                            " AND project = 'q'"),
                     q_injections - 1);
    ctx_store_flush(loaded);
    assert_int_equal(scalar("SELECT injections FROM context_projects WHERE scope = 'k:1'"
                            " AND project = 'q'"),
                     q_injections);
    struct ctx_store *third = ctx_store_new();
    assert_int_equal(ctx_persist_load(p, third), 0);
    assert_same_stats(loaded, third, "k:1");
    assert_int_equal(stats_of(third, "k:1", "p")->updated_ms, 3000);
    assert_int_equal(ctx_store_expire(loaded, 100000, 1000), 3);
    assert_int_equal(scalar("SELECT COUNT(*) FROM context_projects"), 0);
    assert_int_equal(scalar("SELECT COUNT(*) FROM context_files"), 0);
    ctx_store_free(third);
    ctx_store_free(loaded);
    ctx_persist_close(p);
}

/* Seen marks and injection counts are written later: by ctx_store_flush,
 * the project's next write (a delta, which writes its counters and its
 * other files' marks), or when the persister goes; a seen deletion at
 * once. */
static void test_seen_written_later(void **state)
{
    struct ctx_persist *p = open_db();
    ctx_store_set_persist(store, p);
    struct ctx_change c[] = {chg("a.c", "a\n"), chg("b.c", "b\n")};
    apply("k:1", "p", false, c, 2);
    see_all("p");
    const char *same = "SELECT COUNT(*) FROM context_files WHERE seen_same = 1";
    const char *inj = "SELECT injections FROM context_projects WHERE project = 'p'";
    assert_int_equal(scalar(same), 0);
    assert_int_equal(scalar(inj), 0);
    apply1("p", "c.c", "c\n"); /* the project's next write */
    assert_int_equal(scalar(same), 2);
    assert_int_equal(scalar(inj), 1);

    see_all("p");
    assert_int_equal(scalar(same), 2);
    ctx_store_flush(store);
    assert_int_equal(scalar(same), 3);
    assert_int_equal(scalar(inj), 2);

    apply1("p", "a.c", NULL);
    see_all("p"); /* the deletion seen: the row goes at once */
    assert_int_equal(scalar("SELECT COUNT(*) FROM context_files WHERE path = 'a.c'"), 0);
    assert_int_equal(scalar(inj), 3);

    apply1("p", "b.c", "B\n");
    see_all("p");
    ctx_store_set_persist(store, NULL); /* shutdown */
    assert_int_equal(scalar(same), 2);
    assert_int_equal(scalar(inj), 4);
    ctx_persist_close(p);
}

/* A write that fails is logged, and the store keeps the change in memory. */
static void test_persist_failure_logged(void **state)
{
    struct ctx_persist *p = open_db();
    ctx_store_set_persist(store, p);
    apply1("p", "a.c", "a\n");
    sqlite3 *db;
    sqlite3_open(dbpath, &db);
    sqlite3_exec(db, "CREATE TRIGGER no_files BEFORE INSERT ON context_files"
                     " BEGIN SELECT RAISE(ABORT, 'refused for the test'); END;",
                 NULL, NULL, NULL);
    sqlite3_close(db);
    struct ctx_change c[] = {chg("b.c", "b\n"), chg("c.c", "c\n")};
    struct ctx_applied out = apply("k:1", "p", false, c, 2);
    assert_int_equal(out.files, 3);
    assert_int_equal(stats_of(store, "k:1", "p")->files, 3);
    /* all or nothing in the database too: the project row was rolled back */
    assert_int_equal(scalar("SELECT COUNT(*) FROM context_files"), 1);
    FILE *f = fopen(logpath, "r");
    assert_non_null(f);
    char line[1024];
    bool found = false;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "context_persist_failed") && strstr(line, "refused for the test") &&
            strstr(line, "delta of project p"))
            found = true;
    fclose(f);
    assert_true(found);
    /* the next operation works again */
    see_all("p");
    ctx_store_flush(store);
    assert_int_equal(scalar("SELECT COUNT(*) FROM context_files WHERE seen_same = 1"), 1);
    ctx_store_set_persist(store, NULL);
    ctx_persist_close(p);
}

static void test_persist_open_errors(void **state)
{
    char err[256] = "";
    assert_null(ctx_persist_open("/nonexistent/dir/x.db", err, sizeof err));
    assert_has(err, "cannot open");
    sqlite3 *db;
    sqlite3_open(dbpath, &db); /* a database without the tables */
    sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL);
    sqlite3_close(db);
    assert_null(ctx_persist_open(dbpath, err, sizeof err));
    assert_has(err, "context_");
    ctx_persist_close(NULL);
    ctx_store_free(NULL);
}

/* ---- threads ---- */

static void *worker(void *arg)
{
    long id = (long)(intptr_t)arg;
    char path[32], content[64];
    for (int i = 0; i < 200; i++) {
        struct arena a;
        arena_init(&a);
        snprintf(path, sizeof path, "f%ld_%d.c", id, i % 7);
        snprintf(content, sizeof content, "line %d\nfrom %ld\n", i, id);
        struct ctx_change c = chg(path, content);
        struct ctx_delta d = {.project = "shared", .files = &c, .n_files = 1};
        struct ctx_applied out;
        char err[128];
        ctx_store_apply(store, &no_limits, "k:t", &d, 1000, &a, &out, err, sizeof err);
        struct ctx_injection inj;
        ctx_store_inject(store, "k:t", "shared", 200, 1000, &a, &inj);
        if (i % 3) ctx_store_mark_seen(store, "k:t", "shared", &inj);
        if (i % 50 == 49) ctx_store_delete(store, "k:t", "shared");
        arena_free(&a);
    }
    return NULL;
}

static void test_threads(void **state)
{
    pthread_t t[4];
    for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    struct ctx_totals tot;
    ctx_store_totals(store, &tot);
    assert_true(tot.injections > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_apply_and_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unchanged_not_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_diff_injected_then_nothing_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_during_request_stays_pending, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_failed_request_leaves_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_and_deleted_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_tokens_note, setup, teardown),
        cmocka_unit_test_setup_teardown(test_note_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_note_room_refilled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scopes_isolated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seen_after_delete_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kept_diff_is_the_fresh_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persisted_and_loaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seen_written_later, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persist_failure_logged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persist_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
