/* persist_internal: the seam between the context store (buffer.c) and its
 * SQLite tables (persist.c), internal to context/. buffer.c writes every
 * change through the ctx_persist_* calls below, one transaction per
 * operation, under the store's lock (which also serialises the use of the
 * connection); persist.c fills a store at start through the
 * ctx_store_load_* calls.
 *
 * Rows: context_projects (scope, project) holds a project's counters;
 * context_files (scope, project, path) a file's current content (NULL:
 * deleted, the deletion not seen yet), the content the model last saw
 * (NULL: never, or see seen_same), seen_same (1: the model saw the current
 * content, which is then not stored twice) and the file's version. */
#ifndef AIPROXY_CONTEXT_PERSIST_INTERNAL_H
#define AIPROXY_CONTEXT_PERSIST_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ctx_persist;
struct ctx_store;

/* ---- writes (used by buffer.c) ----
 *
 * Every call takes p NULL as "memory only" and does nothing. Between begin
 * and end, the first failing write makes the others no-ops; end commits,
 * or rolls back and logs context_persist_failed naming `op` and `project`
 * (the in-memory store keeps the change and serves on). end returns 0, or
 * -1 when the operation was not saved. The strings and contents are
 * borrowed for the call. */
void ctx_persist_begin(struct ctx_persist *p);
int ctx_persist_end(struct ctx_persist *p, const char *op, const char *project);

void ctx_persist_put_project(struct ctx_persist *p, const char *scope, const char *project,
                             int64_t injections, int64_t tokens_injected, int64_t tokens_saved,
                             int64_t updated_ms);
/* Writes the whole row (content NULL: deleted; seen NULL and !seen_same:
 * never seen). */
void ctx_persist_put_file(struct ctx_persist *p, const char *scope, const char *project,
                          const char *path, const char *content, size_t content_len,
                          const char *seen, size_t seen_len, bool seen_same, int64_t version);
/* Updates the seen content only (mark_seen). */
void ctx_persist_set_seen(struct ctx_persist *p, const char *scope, const char *project,
                          const char *path, const char *seen, size_t seen_len, bool seen_same);
void ctx_persist_delete_file(struct ctx_persist *p, const char *scope, const char *project,
                             const char *path);
/* Every file of the project (a reset); the project's row stays. */
void ctx_persist_delete_files(struct ctx_persist *p, const char *scope, const char *project);
/* The project's row and files. */
void ctx_persist_delete_project(struct ctx_persist *p, const char *scope, const char *project);

/* ---- loading (implemented by buffer.c, used by ctx_persist_load) ----
 *
 * They create the scope and project when missing, copy what they are
 * given, write nothing back and check no limit (a restart keeps what was
 * accepted, even under smaller limits since). */
void ctx_store_load_project(struct ctx_store *s, const char *scope, const char *project,
                            int64_t injections, int64_t tokens_injected, int64_t tokens_saved,
                            int64_t updated_ms);
void ctx_store_load_file(struct ctx_store *s, const char *scope, const char *project,
                         const char *path, const char *content, size_t content_len,
                         const char *seen, size_t seen_len, bool seen_same, int64_t version);

#endif
