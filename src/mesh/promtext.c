/* promtext: the cluster exposition (see promtext.h). */
#include "mesh/promtext.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

struct family {
    char *name;
    char *help;    /* the whole "# HELP ..." line, or NULL */
    char *type;    /* the whole "# TYPE ..." line, or NULL */
    bool compound; /* histogram or summary: _bucket/_sum/_count belong here */
    struct buf samples;
};

struct prom_merge {
    struct family *fams;
    size_t n, cap;
};

struct prom_merge *prom_merge_new(void)
{
    return xcalloc(1, sizeof(struct prom_merge));
}

void prom_merge_free(struct prom_merge *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->fams[i].name);
        free(m->fams[i].help);
        free(m->fams[i].type);
        free(m->fams[i].samples.p);
    }
    free(m->fams);
    free(m);
}

static struct family *find(struct prom_merge *m, const char *name, size_t n)
{
    for (size_t i = 0; i < m->n; i++)
        if (strlen(m->fams[i].name) == n && memcmp(m->fams[i].name, name, n) == 0)
            return &m->fams[i];
    return NULL;
}

static struct family *get(struct prom_merge *m, const char *name, size_t n)
{
    struct family *f = find(m, name, n);
    if (f || m->n >= PROM_MAX_FAMILIES) return f;
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->fams = xrealloc(m->fams, m->cap * sizeof *m->fams);
    }
    f = &m->fams[m->n++];
    memset(f, 0, sizeof *f);
    f->name = xstrndup(name, n);
    return f;
}

/* The family a sample named `name` belongs to. */
static struct family *family_of(struct prom_merge *m, const char *name, size_t n)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t s = 0; s < 3; s++) {
        size_t sl = strlen(suffixes[s]);
        if (n > sl && memcmp(name + n - sl, suffixes[s], sl) == 0) {
            struct family *f = find(m, name, n - sl);
            if (f && f->compound) return f;
        }
    }
    return get(m, name, n);
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == ':';
}

/* node="..." with the id escaped as the text format wants. */
static void node_label(const char *node, struct buf *out)
{
    buf_add(out, "node=\"", 6);
    for (const char *p = node; *p; p++) {
        if (*p == '\\' || *p == '"') buf_add(out, "\\", 1);
        if (*p == '\n')
            buf_add(out, "\\n", 2);
        else
            buf_add(out, p, 1);
    }
    buf_add(out, "\"", 1);
}

static void add_meta(struct prom_merge *m, const char *line, size_t n, bool is_type)
{
    /* "# HELP name text" / "# TYPE name kind" */
    const char *p = line + 7;
    const char *e = line + n;
    const char *name = p;
    while (p < e && name_char(*p))
        p++;
    if (p == name) return;
    struct family *f = get(m, name, (size_t)(p - name));
    if (!f) return;
    char **slot = is_type ? &f->type : &f->help;
    if (*slot) return;
    *slot = xstrndup(line, n);
    if (is_type) {
        while (p < e && *p == ' ')
            p++;
        f->compound = (e - p >= 9 && memcmp(p, "histogram", 9) == 0) ||
                      (e - p >= 7 && memcmp(p, "summary", 7) == 0);
    }
}

static void add_sample(struct prom_merge *m, const char *node, const char *line, size_t n)
{
    const char *e = line + n;
    const char *p = line;
    while (p < e && name_char(*p))
        p++;
    if (p == line || p == e || (*p != '{' && *p != ' ')) return;
    struct family *f = family_of(m, line, (size_t)(p - line));
    if (!f) return;
    struct buf *b = &f->samples;
    buf_add(b, line, (size_t)(p - line));
    buf_add(b, "{", 1);
    node_label(node, b);
    if (*p == '{') {
        p++;
        if (p < e && *p != '}') buf_add(b, ",", 1);
    } else {
        buf_add(b, "}", 1);
    }
    buf_add(b, p, (size_t)(e - p));
    buf_add(b, "\n", 1);
}

void prom_merge_add(struct prom_merge *m, const char *node, const char *text, size_t len)
{
    if (len > PROM_MAX_INPUT) len = PROM_MAX_INPUT;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        if (n && p[n - 1] == '\r') n--;
        if (n > 7 && memcmp(p, "# HELP ", 7) == 0)
            add_meta(m, p, n, false);
        else if (n > 7 && memcmp(p, "# TYPE ", 7) == 0)
            add_meta(m, p, n, true);
        else if (n && p[0] != '#')
            add_sample(m, node, p, n);
        p = nl ? nl + 1 : end;
    }
}

void prom_merge_sample(struct prom_merge *m, const char *family, const char *help, const char *type,
                       const char *line)
{
    struct family *f = get(m, family, strlen(family));
    if (!f) return;
    if (!f->help) f->help = xasprintf("# HELP %s %s", family, help);
    if (!f->type) f->type = xasprintf("# TYPE %s %s", family, type);
    buf_add(&f->samples, line, strlen(line));
    buf_add(&f->samples, "\n", 1);
}

char *prom_merge_render(struct prom_merge *m, size_t *len)
{
    struct buf out = {0};
    buf_add(&out, "", 0);
    for (size_t i = 0; i < m->n; i++) {
        struct family *f = &m->fams[i];
        if (!f->samples.len) continue;
        if (f->help) {
            buf_add(&out, f->help, strlen(f->help));
            buf_add(&out, "\n", 1);
        }
        if (f->type) {
            buf_add(&out, f->type, strlen(f->type));
            buf_add(&out, "\n", 1);
        }
        buf_add(&out, f->samples.p, f->samples.len);
    }
    if (len) *len = out.len;
    return out.p;
}
