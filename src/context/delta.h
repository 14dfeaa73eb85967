/* delta: the body of POST /v1/context/delta (SPEC section 8). Pure: no I/O.
 *
 *   {"project": "NAME", "reset": false,
 *    "files": [{"path": "src/a.c", "content": "..."},
 *              {"path": "old.c", "deleted": true}]}
 *
 * `project` defaults to "default"; `reset` (default false) empties the
 * project before the files apply; `files` may be empty (a reset alone).
 * A project name is 1..128 bytes of [A-Za-z0-9._-], not "." or ".." (it
 * is also a URL path segment: DELETE /v1/context/{project}). A path is 1..1024 bytes,
 * relative ("a/b.c", no leading '/', no "." or ".." segment, no empty
 * segment, no backslash, no control byte). One path at most once per body.
 *
 * A file whose content is not text (a NUL byte, sent as \u0000) is not an
 * error of the body: it is listed in `rejected` with the reason and left
 * out, and the rest applies (invalid UTF-8 cannot reach a file: the whole
 * body must be valid UTF-8 JSON, else it is a 400). Anything else wrong (not JSON, not an object,
 * files not an array, an entry not an object, a missing or bad path, a
 * content that is not a string, both content and deleted, duplicates, an
 * unknown top-level key) is a 400 with a message and the offending param. */
#ifndef AIPROXY_CONTEXT_DELTA_H
#define AIPROXY_CONTEXT_DELTA_H

#include <stdbool.h>
#include <stddef.h>

#include "core/arena.h"

#define CTX_PROJECT_MAX 128
#define CTX_PATH_MAX 1024

struct ctx_change {
    const char *path;    /* arena, NUL-terminated */
    const char *content; /* arena, NUL-terminated (text: no NUL inside); NULL when deleted */
    size_t content_len;
    bool deleted;
};

struct ctx_rejected {
    const char *path;
    const char *reason; /* "binary content (a NUL byte)" */
};

struct ctx_delta {
    const char *project;
    bool reset;
    struct ctx_change *files;
    size_t n_files;
    struct ctx_rejected *rejected;
    size_t n_rejected;
};

/* Returns 0 and fills `out` (all in `a`), or -1 with a message for the
 * client in `err` and the offending field in *param ("files[3].path"...,
 * arena; "" when the body is not JSON at all). */
int ctx_delta_parse(struct arena *a, const char *body, size_t len, struct ctx_delta *out,
                    char *err, size_t errcap, const char **param);

/* Whether `name` is a valid project name (see above). */
bool ctx_project_name_ok(const char *name, size_t len);

#endif
