/* walk: configuration as a table (STYLE rule 10), the generic half. Each
 * section of the schema (config/parse.c) is an array of rows { key, type,
 * bounds, default, offset }; walk_map applies a map from the document tree
 * to a struct through its table, reporting "FILE:LINE: key.path: what was
 * wrong (expected ...)"; defaults come from the same rows (walk_defaults),
 * applied before the walk. Private to config/. */
#ifndef AIPROXY_CONFIG_WALK_H
#define AIPROXY_CONFIG_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/internal.h"

/* ---- the walk's context ---- */

struct parse_ctx {
    const char *file;
    struct diag_list *diags;
    struct config *cfg;
    /* The first credential of the object being parsed whose ${VAR} was
     * unset or empty, e.g. "credentials.api_key: environment variable X is
     * not set"; `reason_skip` is how much of the path to drop for it. */
    char *secret_reason;
    size_t reason_skip;
};

/* Appends one diagnostic "FILE:LINE: path: message". */
void walk_report(struct parse_ctx *cx, enum diag_severity s, int line, const char *path,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define ERR(cx, line, path, ...) walk_report(cx, DIAG_ERROR, line, path, __VA_ARGS__)
#define WARN(cx, line, path, ...) walk_report(cx, DIAG_WARNING, line, path, __VA_ARGS__)

/* "a.b" + "c" -> "a.b.c"; "a" + 2 -> "a[2]" (heap strings). */
char *walk_path_key(const char *path, const char *key);
char *walk_path_index(const char *path, size_t i);

/* ---- the table ---- */

enum key_type {
    KT_STR,
    KT_SECRET, /* a string whose unset ${VAR} makes its object unavailable */
    KT_BOOL,
    KT_INT,
    KT_DURATION, /* int64_t milliseconds */
    KT_SIZE,     /* int64_t bytes */
    KT_MONEY,    /* nanos_t */
    KT_RATIO,    /* double 0..1 */
    KT_STRATEGY,
    KT_LOG_LEVEL,
    KT_LOG_FORMAT,
    KT_ALERT_ACTION,
    KT_STRLIST, /* char ** at offset, size_t at count_offset */
    KT_SECTION, /* a nested map parsed with `sub`, same base */
    KT_CUSTOM,  /* `parse` handles the node */
    KT_IGNORE,  /* a known key, handled elsewhere or deliberately ignored */
};

struct key_spec;
typedef void key_parse_cb(struct parse_ctx *cx, const struct cnode *v, const char *path,
                          void *base);

struct key_spec {
    const char *name;
    enum key_type type;
    int64_t min, max;
    const char *def; /* default, written as in a config file; NULL: zero */
    size_t offset;
    size_t count_offset;
    const struct key_spec *sub;
    key_parse_cb *parse;
};

#define AT(T, m) offsetof(T, m)
#define CFG(m) offsetof(struct config, m)

/* Sizes in defaults and limits. */
#define KB 1024LL
#define MB (1024LL * 1024)

/* ---- the walk ---- */

/* Frees a KT_STRLIST value and zeroes it. */
void walk_free_strlist(char ***list, size_t *n);
/* Applies every row's default to `base`. */
void walk_defaults(const struct key_spec *tbl, void *base);
bool walk_is_null(const struct cnode *v);
/* "a map", "a list", "a scalar": for messages. */
const char *walk_kind_name(const struct cnode *v);
/* The text of scalar `v`, or NULL after an error saying `expected` was wanted. */
const char *walk_scalar_text(struct parse_ctx *cx, const struct cnode *v, const char *path,
                             const char *expected);
/* A list of strings into *(char ***)dst / *(size_t *)count. */
void walk_strlist(struct parse_ctx *cx, const struct cnode *v, const char *path, char ***dst,
                  size_t *count);
/* Applies map `map` to `base` through `tbl`; unknown keys are warnings.
 * Returns a bit per row that was present. */
uint64_t walk_map(struct parse_ctx *cx, const struct cnode *map, const char *path,
                  const struct key_spec *tbl, void *base);
/* Whether row `name` of `tbl` was present (from walk_map's result). */
bool walk_seen_key(const struct key_spec *tbl, uint64_t seen, const char *name);
/* Calls `item` for every element of list `v` that is a map. */
void walk_each_item(struct parse_ctx *cx, const struct cnode *v, const char *path,
                    void (*item)(struct parse_ctx *, const struct cnode *, const char *, void *),
                    void *base);

#endif
