/* delta: parses and validates the body of POST /v1/context/delta
 * (context/delta.h, SPEC section 8) with jansson. Everything the caller
 * keeps is copied into the arena; the jansson tree is freed before return.
 *
 * jansson refuses invalid UTF-8 anywhere in the text (and lone surrogate
 * escapes), so an invalid UTF-8 content is a 400 for the whole body (not
 * valid UTF-8 JSON); the per-file refusal is for a content that decodes to
 * a NUL byte (\u0000, let through by JSON_ALLOW_NUL so it can be told
 * apart). */
#include "context/delta.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define REASON_NUL "binary content (a NUL byte)"

/* ---- names and paths ---- */

bool ctx_project_name_ok(const char *name, size_t len)
{
    if (!name || len == 0 || len > CTX_PROJECT_MAX) return false;
    /* "." and ".." are path segments clients normalise away */
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.')) return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

/* Why `p` is not a valid path, or NULL when it is. */
static const char *path_problem(const char *p, size_t len)
{
    if (len == 0) return "must not be empty";
    if (len > CTX_PATH_MAX) return "must be at most 1024 bytes";
    if (p[0] == '/') return "must be relative (no leading '/')";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f) return "must not contain a control character";
        if (c == '\\') return "must not contain a backslash (use '/')";
    }
    /* segments: between slashes, none empty, none "." or ".." */
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && p[i] != '/') continue;
        size_t n = i - start;
        if (n == 0) return "must not have an empty segment ('//' or a trailing '/')";
        if ((n == 1 && p[start] == '.') || (n == 2 && p[start] == '.' && p[start + 1] == '.'))
            return "must not have a '.' or '..' segment";
        start = i + 1;
    }
    return NULL;
}

/* ---- errors ---- */

/* At most `max` bytes of the UTF-8 string `s`, cut at a character
 * boundary and marked "..." when cut, in the arena. */
static const char *shown(struct arena *a, const char *s, size_t len, size_t max)
{
    if (len <= max) return arena_strndup(a, s, len);
    size_t n = max;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    char *d = arena_alloc(a, n + 4);
    memcpy(d, s, n);
    memcpy(d + n, "...", 4);
    return d;
}

/* Cuts `s` before its first incomplete UTF-8 sequence: vsnprintf (and
 * jansson's own error text) truncate by bytes, and a message that is not
 * valid UTF-8 could not be put in a JSON error reply. */
static void utf8_trim(char *s)
{
    for (size_t i = 0; s[i];) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80             ? 1
                   : (c & 0xE0) == 0xC0 ? 2
                   : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4
                                        : 0;
        for (size_t k = 1; k < n; k++)
            if (((unsigned char)s[i + k] & 0xC0) != 0x80) n = 0;
        if (n == 0) {
            s[i] = '\0';
            return;
        }
        i += n;
    }
}

struct parse {
    struct arena *a;
    char *err;
    size_t errcap;
    const char **param;
};

static int fail(struct parse *ps, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parse *ps, const char *param, const char *fmt, ...)
{
    if (ps->err && ps->errcap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ps->err, ps->errcap, fmt, ap);
        va_end(ap);
        utf8_trim(ps->err);
    }
    if (ps->param) *ps->param = param;
    return -1;
}

/* "files[3]" or "files[3].path", in the arena. */
static const char *entry_param(struct parse *ps, size_t i, const char *field)
{
    return field ? arena_printf(ps->a, "files[%zu].%s", i, field)
                 : arena_printf(ps->a, "files[%zu]", i);
}

/* ---- the files ---- */

struct seen_path {
    const char *path;
    size_t len, index;
};

static int cmp_seen(const void *x, const void *y)
{
    const struct seen_path *a = x, *b = y;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->path, b->path, n);
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

/* Refuses a path given twice, naming the first repeat in body order.
 * Sorted rather than compared pairwise: a snapshot can hold thousands.
 * Sorts `s` in place. */
static int check_duplicates(struct parse *ps, struct seen_path *s, size_t n)
{
    if (n < 2) return 0;
    qsort(s, n, sizeof *s, cmp_seen);
    /* sorted by path, then by index: a run's first element is the path's
     * first occurrence, and the one after it its first repeat */
    const struct seen_path *dup = NULL, *first = NULL;
    size_t run = 0;
    for (size_t i = 1; i < n; i++) {
        if (s[i].len != s[run].len || memcmp(s[i].path, s[run].path, s[i].len) != 0) {
            run = i;
            continue;
        }
        if (i == run + 1 && (!dup || s[i].index < dup->index)) {
            dup = &s[i];
            first = &s[run];
        }
    }
    if (!dup) return 0;
    return fail(ps, entry_param(ps, dup->index, "path"),
                "files[%zu].path: '%s' is given more than once (first at files[%zu]).", dup->index,
                shown(ps->a, dup->path, dup->len, 200), first->index);
}

/* Validates entry `i`; fills `c` (or `r` for a refused content) and sets
 * *kind to 0 (a change) or 1 (refused). */
static int parse_entry(struct parse *ps, json_t *e, size_t i, struct seen_path *sp,
                       struct ctx_change *c, struct ctx_rejected *r, int *kind)
{
    if (!json_is_object(e))
        return fail(ps, entry_param(ps, i, NULL), "files[%zu] must be an object.", i);

    json_t *jp = json_object_get(e, "path");
    if (!jp || json_is_null(jp))
        return fail(ps, entry_param(ps, i, "path"), "files[%zu].path is required.", i);
    if (!json_is_string(jp))
        return fail(ps, entry_param(ps, i, "path"), "files[%zu].path must be a string.", i);
    const char *path = json_string_value(jp);
    size_t plen = json_string_length(jp);
    const char *why = path_problem(path, plen);
    if (why) return fail(ps, entry_param(ps, i, "path"), "files[%zu].path %s.", i, why);

    json_t *jd = json_object_get(e, "deleted");
    bool deleted = false;
    if (jd && !json_is_null(jd)) {
        if (!json_is_boolean(jd))
            return fail(ps, entry_param(ps, i, "deleted"), "files[%zu].deleted must be a boolean.",
                        i);
        deleted = json_is_true(jd);
    }

    json_t *jc = json_object_get(e, "content");
    bool has_content = jc && !json_is_null(jc);
    if (deleted && has_content)
        return fail(ps, entry_param(ps, i, "content"),
                    "files[%zu]: give either 'content' or 'deleted': true, not both.", i);
    if (!deleted && !has_content)
        return fail(ps, entry_param(ps, i, "content"),
                    "files[%zu].content is required (or 'deleted': true).", i);
    if (has_content && !json_is_string(jc))
        return fail(ps, entry_param(ps, i, "content"), "files[%zu].content must be a string.", i);

    const char *apath = arena_strndup(ps->a, path, plen);
    *sp = (struct seen_path){apath, plen, i};
    if (deleted) {
        *c = (struct ctx_change){.path = apath, .content = NULL, .content_len = 0, .deleted = true};
        *kind = 0;
        return 0;
    }
    const char *content = json_string_value(jc);
    size_t clen = json_string_length(jc);
    if (clen && memchr(content, '\0', clen)) {
        *r = (struct ctx_rejected){.path = apath, .reason = REASON_NUL};
        *kind = 1;
        return 0;
    }
    *c = (struct ctx_change){.path = apath,
                             .content = arena_strndup(ps->a, content, clen),
                             .content_len = clen,
                             .deleted = false};
    *kind = 0;
    return 0;
}

static int parse_files(struct parse *ps, json_t *files, struct ctx_delta *out)
{
    size_t n = json_array_size(files);
    if (n == 0) return 0;
    out->files = arena_alloc(ps->a, n * sizeof *out->files);
    out->rejected = arena_alloc(ps->a, n * sizeof *out->rejected);
    struct seen_path *paths = xmalloc(n * sizeof *paths);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        int kind = 0;
        rc = parse_entry(ps, json_array_get(files, i), i, &paths[i], &out->files[out->n_files],
                         &out->rejected[out->n_rejected], &kind);
        if (rc == 0) {
            if (kind == 0)
                out->n_files++;
            else
                out->n_rejected++;
        }
    }
    if (rc == 0) rc = check_duplicates(ps, paths, n);
    free(paths);
    return rc;
}

/* ---- the body ---- */

static int parse_root(struct parse *ps, json_t *root, struct ctx_delta *out)
{
    if (!json_is_object(root)) return fail(ps, "", "The request body must be a JSON object.");

    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "project") != 0 && strcmp(key, "reset") != 0 && strcmp(key, "files") != 0) {
            const char *k = shown(ps->a, key, strlen(key), 200);
            /* "" is the param of a body that is not JSON */
            return fail(ps, *k ? k : "\"\"",
                        "Unrecognized request argument supplied: '%s' (expected project, reset, "
                        "files).",
                        k);
        }
    }

    json_t *jp = json_object_get(root, "project");
    if (jp && !json_is_null(jp)) {
        if (!json_is_string(jp)) return fail(ps, "project", "'project' must be a string.");
        const char *name = json_string_value(jp);
        size_t len = json_string_length(jp);
        if (!ctx_project_name_ok(name, len))
            return fail(ps, "project",
                        "'project' must be 1 to 128 characters of letters, digits, '.', '_' and "
                        "'-'.");
        out->project = arena_strndup(ps->a, name, len);
    }

    json_t *jr = json_object_get(root, "reset");
    if (jr && !json_is_null(jr)) {
        if (!json_is_boolean(jr)) return fail(ps, "reset", "'reset' must be a boolean.");
        out->reset = json_is_true(jr);
    }

    json_t *jf = json_object_get(root, "files");
    if (jf && !json_is_null(jf)) {
        if (!json_is_array(jf)) return fail(ps, "files", "'files' must be an array.");
        return parse_files(ps, jf, out);
    }
    return 0;
}

int ctx_delta_parse(struct arena *a, const char *body, size_t len, struct ctx_delta *out, char *err,
                    size_t errcap, const char **param)
{
    struct parse ps = {a, err, errcap, param};
    *out = (struct ctx_delta){.project = "default"};
    if (err && errcap) err[0] = '\0';
    if (param) *param = NULL;

    json_error_t je;
    /* JSON_ALLOW_NUL: a content holding \u0000 is refused per file, below */
    json_t *root =
        json_loadb(body ? body : "", body ? len : 0, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root) {
        if (json_error_code(&je) == json_error_invalid_utf8)
            return fail(&ps, "",
                        "We could not parse the JSON body of your request: it is not valid UTF-8 "
                        "JSON (near byte %d).",
                        je.position);
        return fail(&ps, "", "We could not parse the JSON body of your request. (%s, at byte %d)",
                    je.text, je.position);
    }
    int rc = parse_root(&ps, root, out);
    json_decref(root);
    if (rc != 0) *out = (struct ctx_delta){.project = "default"};
    return rc;
}
