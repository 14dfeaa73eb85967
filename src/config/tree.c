/* tree: the document tree shared by the YAML and JSON loaders, and the
 * builder that assembles it from parser events while enforcing the caps. */
#include "config/tree.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

void cnode_free(struct cnode *n)
{
    if (!n) return;
    free(n->text);
    free(n->env_var);
    if (n->kind == CNODE_MAP) {
        for (size_t i = 0; i < n->n; i++) {
            free(n->pairs[i].key);
            cnode_free(n->pairs[i].value);
        }
    } else if (n->kind == CNODE_SEQ) {
        for (size_t i = 0; i < n->n; i++) cnode_free(n->items[i]);
    }
    free(n->pairs);
    free(n->items);
    free(n);
}

const struct cnode *cnode_get(const struct cnode *n, const char *key)
{
    if (!n || n->kind != CNODE_MAP) return NULL;
    for (size_t i = 0; i < n->n; i++)
        if (strcmp(n->pairs[i].key, key) == 0) return n->pairs[i].value;
    return NULL;
}

void tree_builder_init(struct tree_builder *b, const char *file, struct diag_list *diags)
{
    memset(b, 0, sizeof *b);
    b->file = file;
    b->diags = diags;
}

void tree_builder_cleanup(struct tree_builder *b)
{
    cnode_free(b->root);
    b->root = NULL;
    free(b->pending_key);
    b->pending_key = NULL;
    b->depth = 0;
}

static bool fail(struct tree_builder *b, int line, const char *msg)
{
    if (!b->failed) diag_list_addf(b->diags, DIAG_ERROR, "%s:%d: %s", b->file, line, msg);
    b->failed = true;
    return false;
}

/* Attaches `n` to the open container (or makes it the root); takes it. */
static bool attach(struct tree_builder *b, struct cnode *n)
{
    if (b->depth == 0) {
        if (b->root) {
            int line = n->line;
            cnode_free(n);
            return fail(b, line, "more than one document");
        }
        b->root = n;
        return true;
    }
    struct cnode *top = b->stack[b->depth - 1];
    if (top->kind == CNODE_SEQ) {
        if (top->n >= CONFIG_MAX_MAP_ENTRIES) {
            int line = n->line;
            cnode_free(n);
            return fail(b, line, "too many items in one list");
        }
        if (top->n == top->cap) {
            top->cap = top->cap ? top->cap * 2 : 4;
            top->items = xrealloc(top->items, top->cap * sizeof *top->items);
        }
        top->items[top->n++] = n;
        return true;
    }
    /* a map's value */
    for (size_t i = 0; i < top->n; i++) {
        if (strcmp(top->pairs[i].key, b->pending_key) == 0) {
            char *msg = xasprintf("duplicate key '%s' (first on line %d)", b->pending_key,
                                  top->pairs[i].line);
            fail(b, b->pending_line, msg);
            free(msg);
            cnode_free(n);
            return false;
        }
    }
    if (top->n >= CONFIG_MAX_MAP_ENTRIES) {
        cnode_free(n);
        return fail(b, b->pending_line, "too many keys in one map");
    }
    if (top->n == top->cap) {
        top->cap = top->cap ? top->cap * 2 : 4;
        top->pairs = xrealloc(top->pairs, top->cap * sizeof *top->pairs);
    }
    top->pairs[top->n].key = b->pending_key;
    top->pairs[top->n].line = b->pending_line;
    top->pairs[top->n].value = n;
    top->n++;
    b->pending_key = NULL;
    return true;
}

static bool awaiting_key(const struct tree_builder *b)
{
    return b->depth > 0 && b->stack[b->depth - 1]->kind == CNODE_MAP && !b->pending_key;
}

bool tree_builder_scalar(struct tree_builder *b, const char *text, size_t len, int line,
                         bool quoted, bool is_null)
{
    if (b->failed) return false;
    if (len > CONFIG_MAX_SCALAR) return fail(b, line, "value too long");
    if (memchr(text, '\0', len)) return fail(b, line, "value contains a NUL character");
    if (awaiting_key(b)) {
        if (is_null) return fail(b, line, "a map key must not be empty");
        b->pending_key = xstrndup(text, len);
        b->pending_line = line;
        return true;
    }
    struct cnode *n = xcalloc(1, sizeof *n);
    n->kind = CNODE_SCALAR;
    n->line = line;
    n->text = xstrndup(text, len);
    n->len = len;
    n->quoted = quoted;
    n->is_null = is_null;
    return attach(b, n);
}

bool tree_builder_start(struct tree_builder *b, enum cnode_kind kind, int line)
{
    if (b->failed) return false;
    if (awaiting_key(b)) return fail(b, line, "a map key must be a plain value");
    if (b->depth >= CONFIG_MAX_DEPTH) return fail(b, line, "nesting too deep");
    struct cnode *n = xcalloc(1, sizeof *n);
    n->kind = kind;
    n->line = line;
    if (!attach(b, n)) return false;
    b->stack[b->depth++] = n;
    return true;
}

bool tree_builder_end(struct tree_builder *b)
{
    if (b->failed) return false;
    if (b->depth == 0) return fail(b, 0, "unbalanced end of container");
    if (b->pending_key) return fail(b, b->pending_line, "key without a value");
    b->depth--;
    return true;
}
