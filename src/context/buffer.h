/* buffer: the context delta buffer (SPEC section 8): per caller scope and
 * project, each file's current content and the content the model last
 * saw (what was injected into a request that succeeded). A file is pending
 * when the two differ (new, changed or deleted since). Thread-safe (one
 * lock: deltas and injections are rare next to requests). Kept in the
 * ledger's local SQLite database (context/persist.h) when a persister is
 * set, so a restart keeps the buffers. */
#ifndef AIPROXY_CONTEXT_BUFFER_H
#define AIPROXY_CONTEXT_BUFFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "context/delta.h"
#include "core/arena.h"

struct ctx_persist;

struct ctx_limits {
    int64_t max_files;    /* files per project */
    int64_t max_bytes;    /* bytes per project (current and seen contents) */
    int64_t max_projects; /* projects per scope */
    int64_t ttl_ms;       /* a project idle this long is dropped (0: never) */
};

struct ctx_store;

struct ctx_store *ctx_store_new(void);
void ctx_store_free(struct ctx_store *s); /* NULL is ignored */
/* Every later change is written through `p` (NULL: memory only); what
 * was left for later (ctx_store_flush) is written to the persister being
 * replaced first. */
void ctx_store_set_persist(struct ctx_store *s, struct ctx_persist *p);

/* Writes what requests changed and left for later (injection counts, seen
 * marks: see ctx_store_mark_seen), in one transaction. The gateway calls
 * it every second; a project's next write (a delta) includes its part. */
void ctx_store_flush(struct ctx_store *s);

enum ctx_err {
    CTX_OK = 0,
    CTX_ERR_TOO_MANY_FILES,    /* 413 */
    CTX_ERR_TOO_LARGE,         /* 413 */
    CTX_ERR_TOO_MANY_PROJECTS, /* 400 */
};

/* What a delta did (the answer to POST /v1/context/delta). */
struct ctx_applied {
    const char **changed; /* paths whose content changed, were added or deleted (arena) */
    size_t n_changed;
    int64_t added, removed; /* lines, against each file's previous content */
    int64_t files, bytes;   /* the project after the delta */
    int64_t pending;        /* files with changes the model has not seen */
};

/* Applies `d` to (scope, d->project), creating the project. All or
 * nothing: a delta that would pass a limit changes nothing and returns the
 * error with a message naming the limit and the figures. Unchanged files
 * (same content) are not counted as changed. */
enum ctx_err ctx_store_apply(struct ctx_store *s, const struct ctx_limits *lim, const char *scope,
                             const struct ctx_delta *d, int64_t now_ms, struct arena *a,
                             struct ctx_applied *out, char *err, size_t errcap);

/* A block to inject and what marking it seen needs. */
struct ctx_injection {
    const char *block; /* NULL: nothing pending (or no such project) */
    size_t block_len;
    int64_t files;           /* files in the block */
    int64_t diff_lines;      /* '+' and '-' lines in it (whole new files count their lines) */
    int64_t tokens_injected; /* ceil(block_len / 4), as prompts are estimated */
    int64_t tokens_saved;    /* the project's files whole, less tokens_injected (>= 0) */
    int64_t left_out;        /* pending files that did not fit max_tokens */
    void *seen;              /* opaque (arena): what ctx_store_mark_seen records */
};

/* The pending changes of (scope, project) as one block:
 *
 *   <context_delta project="P">
 *   (a unified diff per changed file; for a new file <file path="..."
 *   status="new"> its whole content </file>; <file path="..."
 *   status="deleted"/> for a deleted one)
 *   (when some did not fit: a note naming them)
 *   </context_delta>
 *
 * files in path order, at most max_tokens in all (a file that does not fit
 * is left out and named in the note). Counts the injection in the
 * project's stats. Returns 0 (block NULL when nothing is pending). */
int ctx_store_inject(struct ctx_store *s, const char *scope, const char *project,
                     int64_t max_tokens, int64_t now_ms, struct arena *a,
                     struct ctx_injection *out);

/* The request that carried `inj` succeeded: each file's content as
 * injected counts as seen (a file changed again since stays pending with
 * the newer change). Counts the tokens injected and saved. Written by the
 * next ctx_store_flush or write of the project (a seen deletion at once). */
void ctx_store_mark_seen(struct ctx_store *s, const char *scope, const char *project,
                         const struct ctx_injection *inj);

struct ctx_project_stats {
    const char *project;
    int64_t files, bytes, pending;
    int64_t injections, tokens_injected, tokens_saved;
    int64_t updated_ms;
};

/* The projects of `scope` (arena), in name order. */
size_t ctx_store_stats(struct ctx_store *s, const char *scope, struct arena *a,
                       struct ctx_project_stats **out);

/* Empties and forgets (scope, project). False when there was none. */
bool ctx_store_delete(struct ctx_store *s, const char *scope, const char *project);

/* Drops projects idle for ttl_ms (0: none). Returns how many. */
size_t ctx_store_expire(struct ctx_store *s, int64_t now_ms, int64_t ttl_ms);

/* Process-wide totals for metrics. */
struct ctx_totals {
    int64_t projects, files, bytes;
    int64_t injections, tokens_injected, tokens_saved;
};
void ctx_store_totals(struct ctx_store *s, struct ctx_totals *out);

#endif
