/* diff: unified diffs of a file's two versions, by libgit2's buffer diff
 * (git_patch_from_buffers), for the context delta buffer (SPEC section 8).
 * No I/O; thread-safe (libgit2 is loaded and initialised once, on the
 * first diff: ctx_diff_init). */
#ifndef AIPROXY_CONTEXT_DIFF_H
#define AIPROXY_CONTEXT_DIFF_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

/* Loads and initialises libgit2 (context/git_dl.h) on the first call;
 * idempotent, thread-safe. Returns 0, or -1 (logged once) when libgit2 is
 * not installed: then every diff fails. */
int ctx_diff_init(void);

struct ctx_diff {
    char *text; /* the unified diff ("--- a/P\n+++ b/P\n@@ ..."), arena; "" when equal */
    size_t len;
    int64_t added, removed; /* '+' and '-' lines, headers excluded */
};

/* The diff from `old` to `new_` of file `path`, 3 lines of context. old
 * NULL: a new file (every line added); new_ NULL: a deleted file (every
 * line removed). Returns 0, or -1 when libgit2 fails (out of memory). */
int ctx_diff(struct arena *a, const char *path, const char *old, size_t old_len, const char *new_,
             size_t new_len, struct ctx_diff *out);

/* Lines of `s` (a last line without '\n' counts). */
int64_t ctx_count_lines(const char *s, size_t len);

#endif
