// fuzz-sources: src/mesh/promtext.c
/* fuzz_promtext: libFuzzer driver for the cluster exposition merger
 * (src/mesh/promtext.c, GET /aiproxy/mesh/metrics). The input is 1-3
 * nodes' /metrics texts and their node ids:
 *
 *   byte 0        bits 0-1: number of nodes - 1 (3 reads as 1 node),
 *                 bits 2-3: the family prom_merge_sample adds to
 *   per node      one length byte (low 4 bits) and that many id bytes
 *                 (any byte: quotes, backslashes and newlines test the
 *                 label escaping; a NUL ends the id)
 *   the rest      the expositions, the first n-1 ended by a NUL byte
 *
 * Each text goes through prom_merge_add, then one prom_merge_sample (as
 * mesh_api.c adds aiproxy_mesh_node_up), then the render, which must be
 * a well-formed exposition: every line ends with \n; a comment line is a
 * HELP or TYPE line with a name, each name's HELP and TYPE at most once;
 * every sample line is a name and `{node="<id>"` with the id escaped
 * (\\, \", \n) and equal to one of the ids given, then `,`, `}` or the
 * line's end (the input's own `name{` with nothing after); a family's
 * lines are contiguous (a sample belongs to the family declared just
 * above when it has its name, or name_bucket/_sum/_count under a
 * histogram or summary; otherwise it is an undeclared family of its
 * own), and no family comes back once another began; a histogram's or
 * summary's _bucket/_sum/_count samples are in its section (unless the
 * input sent one before the family's first TYPE line); below the family
 * cap every sample line of the input is kept, exactly once. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/promtext.h"

/* An invariant: says which one failed, then aborts (libFuzzer keeps the input). */
#define check(ok) ((ok) ? (void)0 : failed(__LINE__, #ok))
static void failed(int line, const char *what)
{
    fprintf(stderr, "fuzz_promtext.c:%d: invariant failed: %s\n", line, what);
    abort();
}

static bool name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == ':';
}

/* ---- a set of names (small; linear) ---- */

struct name {
    const char *p;
    size_t n;
};

struct names {
    struct name *v;
    size_t n, cap;
};

static bool names_has(const struct names *s, const char *p, size_t n)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].n == n && memcmp(s->v[i].p, p, n) == 0) return true;
    return false;
}

static void names_add(struct names *s, const char *p, size_t n)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        check(s->v != NULL);
    }
    s->v[s->n++] = (struct name){p, n};
}

/* ---- the input ---- */

/* Whether prom_merge_add keeps `line` (without its \n and \r) as a sample;
 * `*name_len` gets the length of its name. */
static bool input_sample(const char *p, size_t n, size_t *name_len)
{
    if (!n || p[0] == '#') return false;
    size_t k = 0;
    while (k < n && name_char((unsigned char)p[k])) k++;
    *name_len = k;
    return k > 0 && k < n && (p[k] == '{' || p[k] == ' ');
}

/* The length of `name` without a _bucket/_sum/_count suffix; 0 without one. */
static size_t suffix_base(const char *name, size_t n)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t s = 0; s < 3; s++) {
        size_t sl = strlen(suffixes[s]);
        if (n > sl && memcmp(name + n - sl, suffixes[s], sl) == 0) return n - sl;
    }
    return 0;
}

/* What the texts hold, read in the order prom_merge_add reads them. */
struct input_info {
    size_t lines, samples;
    struct names typed; /* names with a TYPE line so far */
    /* names X with an X_bucket/_sum/_count sample before X's first TYPE
     * line: such a sample may stay a family of its own */
    struct names early;
};

static void scan_input(const char *text, size_t len, struct input_info *in)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p), k;
        if (n && p[n - 1] == '\r') n--;
        in->lines++;
        if (n > 7 && memcmp(p, "# TYPE ", 7) == 0) {
            k = 7;
            while (k < n && name_char((unsigned char)p[k])) k++;
            if (k > 7 && !names_has(&in->typed, p + 7, k - 7)) names_add(&in->typed, p + 7, k - 7);
        } else if (input_sample(p, n, &k)) {
            in->samples++;
            size_t b = suffix_base(p, k);
            if (b && !names_has(&in->typed, p, b) && !names_has(&in->early, p, b))
                names_add(&in->early, p, b);
        }
        p = nl ? nl + 1 : end;
    }
}

static size_t escape_id(const char *id, char *out)
{
    size_t o = 0;
    for (const char *p = id; *p; p++) {
        if (*p == '\\' || *p == '"') out[o++] = '\\';
        if (*p == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
    return o;
}

/* ---- the output ---- */

/* Reads the label value at `p` (after `node="`) up to its closing quote,
 * unescaping; returns the position after the quote. */
static const char *read_value(const char *p, const char *e, char *val, size_t cap, size_t *vlen)
{
    size_t n = 0;
    for (;;) {
        check(p < e);
        char c = *p++;
        if (c == '"') break;
        if (c == '\\') {
            check(p < e);
            char x = *p++;
            check(x == '\\' || x == '"' || x == 'n');
            c = x == 'n' ? '\n' : x;
        }
        check(n + 1 < cap);
        val[n++] = c;
    }
    val[n] = '\0';
    *vlen = n;
    return p;
}

#define MAX_NODES 3

static bool compound_type(const char *q, const char *e)
{
    while (q < e && *q == ' ') q++;
    return (e - q >= 9 && memcmp(q, "histogram", 9) == 0) ||
           (e - q >= 7 && memcmp(q, "summary", 7) == 0);
}

/* `in`: the input's facts, or NULL when the family cap may have been hit. */
static void check_render(const char *out, size_t len, const char *const *ids, size_t n_ids,
                         const struct input_info *in, size_t *n_samples)
{
    check(out != NULL && out[len] == '\0');
    check(len == 0 || out[len - 1] == '\n');
    struct names helps = {0}, types = {0}, closed = {0}, compounds = {0};
    /* The histograms and summaries: their _bucket/_sum/_count samples
     * belong in their section (unless the input sent one before the TYPE). */
    for (const char *p = out, *end = out + len; p < end;) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        check(e != NULL);
        if (e - p > 7 && memcmp(p, "# TYPE ", 7) == 0) {
            const char *q = p + 7;
            while (q < e && name_char((unsigned char)*q)) q++;
            if (compound_type(q, e)) names_add(&compounds, p + 7, (size_t)(q - p - 7));
        }
        p = e + 1;
    }
    /* the family whose lines are being read; `declared`: it had a HELP or
     * TYPE line; `compound`: TYPE histogram or summary */
    const char *cur = NULL;
    size_t cur_n = 0;
    bool declared = false, compound = false;
    char val[64];
    for (const char *p = out, *end = out + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        check(nl != NULL);
        const char *e = nl;
        const char *name, *q;
        size_t nn;
        if (*p == '#') {
            check(e - p > 7);
            bool is_type = memcmp(p, "# TYPE ", 7) == 0;
            check(is_type || memcmp(p, "# HELP ", 7) == 0);
            name = q = p + 7;
            while (q < e && name_char((unsigned char)*q)) q++;
            nn = (size_t)(q - name);
            check(nn > 0);
            struct names *seen = is_type ? &types : &helps;
            check(!names_has(seen, name, nn));
            names_add(seen, name, nn);
            if (!(cur && cur_n == nn && memcmp(cur, name, nn) == 0)) {
                if (cur) names_add(&closed, cur, cur_n);
                check(!names_has(&closed, name, nn));
                cur = name;
                cur_n = nn;
                compound = false;
            } else {
                /* HELP then TYPE of one family, never the other way */
                check(is_type && declared);
            }
            declared = true;
            if (is_type) compound = compound_type(q, e);
        } else {
            name = q = p;
            while (q < e && name_char((unsigned char)*q)) q++;
            nn = (size_t)(q - name);
            check(nn > 0);
            check(e - q >= 7 && memcmp(q, "{node=\"", 7) == 0);
            size_t vlen;
            q = read_value(q + 7, e, val, sizeof val, &vlen);
            bool known = false;
            for (size_t i = 0; i < n_ids; i++)
                if (strlen(ids[i]) == vlen && memcmp(ids[i], val, vlen) == 0) known = true;
            check(known);
            check(q == e || *q == ',' || *q == '}');
            (*n_samples)++;
            bool same = cur && ((cur_n == nn && memcmp(cur, name, nn) == 0) ||
                                (declared && compound && suffix_base(name, nn) == cur_n &&
                                 memcmp(name, cur, cur_n) == 0));
            if (!same) {
                if (cur) names_add(&closed, cur, cur_n);
                check(!names_has(&closed, name, nn));
                cur = name;
                cur_n = nn;
                declared = compound = false;
            }
            size_t b = suffix_base(name, nn);
            if (in && b && names_has(&compounds, name, b) && !names_has(&in->early, name, b))
                check(declared && compound && cur_n == b && memcmp(cur, name, b) == 0);
        }
        p = nl + 1;
    }
    free(helps.v);
    free(types.v);
    free(closed.v);
    free(compounds.v);
}

static const char *const sample_families[] = {
    "aiproxy_mesh_node_up",             /* what mesh_api.c adds */
    "aiproxy_requests_total",           /* a counter every node exposes */
    "aiproxy_request_duration_seconds", /* a histogram every node exposes */
    "aiproxy_mesh_peers",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t n_nodes = 1 + (data[0] & 3);
    if (n_nodes > MAX_NODES) n_nodes = 1;
    const char *family = sample_families[(data[0] >> 2) & 3];
    size_t off = 1;
    char ids[MAX_NODES][16];
    const char *idp[MAX_NODES];
    for (size_t i = 0; i < n_nodes; i++) {
        size_t l = off < size ? data[off++] & 15 : 0;
        if (l > size - off) l = size - off;
        memcpy(ids[i], data + off, l);
        ids[i][l] = '\0';
        off += l;
        idp[i] = ids[i];
    }
    /* The texts, each in a buffer of its own size (ASan sees overreads). */
    const char *rest = (const char *)data + off;
    size_t rest_len = size - off;
    struct input_info in = {0};
    struct prom_merge *m = prom_merge_new();
    for (size_t i = 0; i < n_nodes; i++) {
        size_t l = rest_len;
        if (i + 1 < n_nodes) {
            const char *z = memchr(rest, '\0', rest_len);
            if (z) l = (size_t)(z - rest);
        }
        char *text = malloc(l ? l : 1);
        check(text != NULL);
        memcpy(text, rest, l);
        scan_input(rest, l, &in);
        prom_merge_add(m, ids[i], text, l);
        free(text);
        if (l < rest_len) l++; /* the NUL */
        rest += l;
        rest_len -= l;
    }
    char esc[2 * sizeof ids[0]];
    escape_id(ids[0], esc);
    char line[128];
    snprintf(line, sizeof line, "%s{node=\"%s\"} 1", family, esc);
    prom_merge_sample(m, family, "Whether the node answered this scrape (1) or not (0).", "gauge",
                      line);
    in.samples++;
    in.lines++;

    size_t len = 0;
    char *out = prom_merge_render(m, &len);
    size_t got = 0;
    /* Each line creates at most one family: below the cap nothing is lost. */
    bool below_cap = in.lines < PROM_MAX_FAMILIES;
    check_render(out, len, idp, n_nodes, below_cap ? &in : NULL, &got);
    if (below_cap) check(got == in.samples);
    else check(got <= in.samples);
    free(out);
    free(in.typed.v);
    free(in.early.v);
    prom_merge_free(m);
    return 0;
}
