/* git_dl: the few libgit2 functions the gateway's diffs use, loaded on the
 * first diff and not before. Linking libgit2 into aiproxyd would map it and
 * its dependencies (Kerberos, mbedTLS, libssh2...) into every process,
 * about 3 MB of resident memory a node that never uses the context buffer
 * would pay (the same reason as budget/pq_dl.h). diff.c includes this
 * header after <git2.h> (types and constants only): each call goes through
 * the table git_load filled. aiproxyctl links libgit2 as usual. */
#ifndef AIPROXY_CONTEXT_GIT_DL_H
#define AIPROXY_CONTEXT_GIT_DL_H

#include <git2.h>
#include <stddef.h>

#define GIT_FUNCTIONS(X)                                                                       \
    X(git_libgit2_init) X(git_diff_options_init) X(git_patch_from_buffers)                    \
    X(git_patch_num_hunks) X(git_patch_free) X(git_patch_line_stats) X(git_patch_print)

struct git_api {
#define X(name) __typeof__(name) *name##_fn;
    GIT_FUNCTIONS(X)
#undef X
};

/* Loads libgit2.so.1.5 (and initialises it) once; thread-safe. Returns 0,
 * or -1 with `err` when it is not installed (Debian: libgit2-1.5). */
int git_load(char *err, size_t errcap);

extern struct git_api git_api;

#ifndef GIT_DL_IMPLEMENTATION
#define git_libgit2_init (git_api.git_libgit2_init_fn)
#define git_diff_options_init (git_api.git_diff_options_init_fn)
#define git_patch_from_buffers (git_api.git_patch_from_buffers_fn)
#define git_patch_num_hunks (git_api.git_patch_num_hunks_fn)
#define git_patch_free (git_api.git_patch_free_fn)
#define git_patch_line_stats (git_api.git_patch_line_stats_fn)
#define git_patch_print (git_api.git_patch_print_fn)
#endif

#endif
