/* env: `${VAR}` and `${VAR:-default}` expansion inside scalar values. A
 * reference without a default whose variable is unset or empty expands to
 * nothing and is remembered on the node (env_var), so that config.c can
 * mark a provider or an API key unavailable and say which variable. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "config/tree.h"
#include "core/alloc.h"

struct strbuf {
    char *p;
    size_t len, cap;
};

static void sb_add(struct strbuf *s, const char *p, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n + 1) cap *= 2;
        s->p = xrealloc(s->p, cap);
        s->cap = cap;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
}

/* Returns false (after reporting) on a malformed reference. */
static bool expand_scalar(struct cnode *n, const char *file, struct diag_list *diags)
{
    if (!strchr(n->text, '$')) return true;
    struct strbuf out = {0};
    const char *s = n->text, *end = n->text + n->len;
    while (s < end) {
        const char *d = memchr(s, '$', (size_t)(end - s));
        if (!d) {
            sb_add(&out, s, (size_t)(end - s));
            break;
        }
        sb_add(&out, s, (size_t)(d - s));
        if (d + 2 < end && d[1] == '$' && d[2] == '{') { /* $${ -> literal ${ */
            sb_add(&out, "${", 2);
            s = d + 3;
            continue;
        }
        if (d + 1 >= end || d[1] != '{') { /* a lone '$' is literal */
            sb_add(&out, "$", 1);
            s = d + 1;
            continue;
        }
        const char *name = d + 2, *p = name;
        while (p < end && (isalnum((unsigned char)*p) || *p == '_')) p++;
        size_t name_len = (size_t)(p - name);
        const char *close = memchr(p, '}', (size_t)(end - p));
        bool has_default = p + 1 < end && p[0] == ':' && p[1] == '-';
        if (name_len == 0 || isdigit((unsigned char)name[0]) || !close ||
            (!has_default && p != close)) {
            diag_list_addf(diags, DIAG_ERROR,
                           "%s:%d: malformed variable reference in '%s' (expected ${NAME} or "
                           "${NAME:-default})",
                           file, n->line, n->text);
            free(out.p);
            return false;
        }
        char *var = xstrndup(name, name_len);
        const char *val = getenv(var);
        if (val && *val) {
            sb_add(&out, val, strlen(val));
            free(var);
        } else if (has_default) {
            sb_add(&out, p + 2, (size_t)(close - (p + 2)));
            free(var);
        } else if (!n->env_var) {
            n->env_var = var;
            n->env_empty = val != NULL;
        } else {
            free(var);
        }
        s = close + 1;
        if (out.len > CONFIG_MAX_SCALAR) {
            diag_list_addf(diags, DIAG_ERROR, "%s:%d: value too long after expansion", file,
                           n->line);
            free(out.p);
            return false;
        }
    }
    free(n->text);
    n->text = out.p ? out.p : xstrdup("");
    n->len = out.len;
    return true;
}

void env_expand_tree(struct cnode *n, const char *file, struct diag_list *diags)
{
    if (!n) return;
    switch (n->kind) {
    case CNODE_SCALAR:
        if (!n->is_null) expand_scalar(n, file, diags);
        break;
    case CNODE_MAP:
        for (size_t i = 0; i < n->n; i++) env_expand_tree(n->pairs[i].value, file, diags);
        break;
    case CNODE_SEQ:
        for (size_t i = 0; i < n->n; i++) env_expand_tree(n->items[i], file, diags);
        break;
    }
}
