/* tree: the generic document tree both loaders produce (maps, sequences,
 * scalars, each with its line) and that config.c walks with its key tables.
 * Private to src/config. */
#ifndef AIPROXY_CONFIG_TREE_H
#define AIPROXY_CONFIG_TREE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* Caps on untrusted input (STYLE rule 6). */
#define CONFIG_MAX_FILE_SIZE (4u * 1024 * 1024)
#define CONFIG_MAX_DEPTH 64
#define CONFIG_MAX_MAP_ENTRIES 4096 /* per map or list */
#define CONFIG_MAX_SCALAR (1u * 1024 * 1024) /* after ${VAR} expansion */

enum cnode_kind { CNODE_SCALAR, CNODE_MAP, CNODE_SEQ };

struct cnode;

struct cnode_pair {
    char *key;
    int line; /* the key's line */
    struct cnode *value;
};

struct cnode {
    enum cnode_kind kind;
    int line;
    /* scalar */
    char *text; /* NUL-terminated; `len` excludes the NUL */
    size_t len;
    bool quoted;  /* written with quotes (YAML '..' / "..", any JSON string) */
    bool is_null; /* YAML null, ~ or nothing; JSON null */
    /* Set by env expansion: a ${VAR} without default was unset or empty.
     * `env_var` names the first such variable; `env_empty` says it was set
     * but empty. */
    char *env_var;
    bool env_empty;
    /* map */
    struct cnode_pair *pairs;
    /* sequence */
    struct cnode **items;
    size_t n, cap; /* entries in pairs or items */
};

void cnode_free(struct cnode *n);
/* Value of `key` in map `n`, or NULL (also NULL when n is not a map). */
const struct cnode *cnode_get(const struct cnode *n, const char *key);

/* Incremental builder fed by the loaders' events. Reports structural errors
 * (duplicate keys, depth, sizes) to `diags` as "FILE:LINE: ...". */
struct tree_builder {
    const char *file;
    struct diag_list *diags;
    struct cnode *root;
    struct cnode *stack[CONFIG_MAX_DEPTH + 1];
    int depth;
    char *pending_key; /* a map's key waiting for its value */
    int pending_line;
    bool failed;
};

void tree_builder_init(struct tree_builder *b, const char *file, struct diag_list *diags);
/* Frees whatever was built (call after taking `root` if you keep it). */
void tree_builder_cleanup(struct tree_builder *b);
/* A scalar: a key when the open container is a map awaiting a key. `text`
 * is copied. Returns false once the builder has failed. */
bool tree_builder_scalar(struct tree_builder *b, const char *text, size_t len, int line,
                         bool quoted, bool is_null);
bool tree_builder_start(struct tree_builder *b, enum cnode_kind kind, int line);
bool tree_builder_end(struct tree_builder *b);

/* The loaders: return the root, or NULL after reporting errors. */
struct cnode *tree_load_yaml(const char *text, size_t len, const char *file,
                             struct diag_list *diags);
struct cnode *tree_load_json(const char *text, size_t len, const char *file,
                             struct diag_list *diags);

/* Expands ${VAR} and ${VAR:-default} in every scalar value (not keys), in
 * place. `$${` yields a literal `${`. A malformed reference is an error. */
void env_expand_tree(struct cnode *root, const char *file, struct diag_list *diags);

#endif
