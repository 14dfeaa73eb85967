/* diff: unified diffs of two versions of a file by libgit2's buffer diff
 * (context/diff.h). libgit2 computes the hunks; the file header is written
 * here ("--- a/P" / "+++ b/P", /dev/null for a new or deleted file) rather
 * than taken from libgit2, whose header adds "diff --git" and "index"
 * lines a model has no use for and quotes non-ASCII paths in octal. */
#include "context/diff.h"

#include <stdbool.h>
#include <string.h>

#include "context/git_dl.h"
#include "core/log.h"

int ctx_diff_init(void)
{
    char err[200];
    if (git_load(err, sizeof err) == 0) return 0;
    static _Atomic int said;
    if (!said++) log_event(LOG_ERROR, "context_no_libgit2", "%s", err);
    return -1;
}

int64_t ctx_count_lines(const char *s, size_t len)
{
    if (!s || len == 0) return 0;
    int64_t n = 0;
    for (const char *p = s, *end = s + len; (p = memchr(p, '\n', (size_t)(end - p))); p++)
        n++;
    return n + (s[len - 1] != '\n');
}

/* ---- printing the hunks ---- */

/* The hunks are printed twice: once to measure, once into the arena. */
struct printer {
    char *out; /* NULL while measuring */
    size_t len;
};

static void put(struct printer *pr, const char *s, size_t n)
{
    if (pr->out) memcpy(pr->out + pr->len, s, n);
    pr->len += n;
}

static int on_line(const git_diff_delta *delta, const git_diff_hunk *hunk,
                   const git_diff_line *line, void *data)
{
    struct printer *pr = data;
    switch (line->origin) {
    case GIT_DIFF_LINE_CONTEXT:
    case GIT_DIFF_LINE_ADDITION:
    case GIT_DIFF_LINE_DELETION: {
        char c = line->origin;
        put(pr, &c, 1);
        put(pr, line->content, line->content_len);
        break;
    }
    case GIT_DIFF_LINE_HUNK_HDR:
    /* "\n\\ No newline at end of file\n", as git writes it */
    case GIT_DIFF_LINE_CONTEXT_EOFNL:
    case GIT_DIFF_LINE_ADD_EOFNL:
    case GIT_DIFF_LINE_DEL_EOFNL:
        put(pr, line->content, line->content_len);
        break;
    default: /* the file header (written by print_header) */
        break;
    }
    return 0;
}

static void print_header(struct printer *pr, const char *path, bool is_new, bool is_deleted)
{
    size_t plen = strlen(path);
    if (is_new) {
        put(pr, "--- /dev/null\n", 14);
    } else {
        put(pr, "--- a/", 6);
        put(pr, path, plen);
        put(pr, "\n", 1);
    }
    if (is_deleted) {
        put(pr, "+++ /dev/null\n", 14);
    } else {
        put(pr, "+++ b/", 6);
        put(pr, path, plen);
        put(pr, "\n", 1);
    }
}

int ctx_diff(struct arena *a, const char *path, const char *old, size_t old_len, const char *new_,
             size_t new_len, struct ctx_diff *out)
{
    *out = (struct ctx_diff){.text = "", .len = 0};
    if ((old == NULL) == (new_ == NULL) &&
        (old == NULL || (old_len == new_len && memcmp(old, new_, old_len) == 0)))
        return 0;
    if (ctx_diff_init() != 0) return -1;

    git_diff_options opts;
    if (git_diff_options_init(&opts, GIT_DIFF_OPTIONS_VERSION) != 0) return -1;
    opts.context_lines = 3;
    opts.interhunk_lines = 0;
    /* a content is text by contract; never "Binary files differ" */
    opts.flags |= GIT_DIFF_FORCE_TEXT;

    git_patch *patch = NULL;
    if (git_patch_from_buffers(&patch, old, old ? old_len : 0, path, new_, new_ ? new_len : 0, path,
                               &opts) != 0)
        return -1;
    /* an empty file created or emptied on both sides: no line changed */
    if (git_patch_num_hunks(patch) == 0) {
        git_patch_free(patch);
        return 0;
    }
    size_t ctx_lines = 0, added = 0, removed = 0;
    int rc = git_patch_line_stats(&ctx_lines, &added, &removed, patch);

    struct printer pr = {0};
    if (rc == 0) {
        print_header(&pr, path, old == NULL, new_ == NULL);
        rc = git_patch_print(patch, on_line, &pr);
    }
    if (rc == 0) {
        size_t total = pr.len;
        pr = (struct printer){.out = arena_alloc(a, total + 1)};
        print_header(&pr, path, old == NULL, new_ == NULL);
        rc = git_patch_print(patch, on_line, &pr);
        if (rc == 0 && pr.len != total) rc = -1;
    }
    git_patch_free(patch);
    if (rc != 0) return -1;
    pr.out[pr.len] = '\0';
    *out = (struct ctx_diff){
        .text = pr.out, .len = pr.len, .added = (int64_t)added, .removed = (int64_t)removed};
    return 0;
}
