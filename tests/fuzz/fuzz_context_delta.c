// fuzz-sources: src/context/delta.c src/context/diff.c src/context/git_dl.c
// fuzz-libs: libgit2
/* fuzz_context_delta: libFuzzer driver for context/delta (the body of POST
 * /v1/context/delta) and context/diff. For any body: a refusal has a
 * message and a param that are valid UTF-8 (they go into a JSON reply); an
 * accepted delta has a valid project name, every path follows the rules,
 * no path twice, contents without NUL of the length given, and as many
 * files plus refusals as the body has entries. Each accepted content is
 * then diffed against a mutated copy (and as a new and a deleted file): the
 * counts are the text's '+' and '-' lines, they add up to the difference
 * in line counts, and applying the diff to the old content gives the new
 * one exactly. */
#include <assert.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "context/delta.h"
#include "context/diff.h"
#include "core/arena.h"

/* ---- checks of a parsed delta ---- */

static void check_path(const char *p)
{
    size_t n = strlen(p);
    assert(n >= 1 && n <= CTX_PATH_MAX);
    assert(p[0] != '/');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        assert(c >= 0x20 && c != 0x7f && c != '\\');
    }
    assert(p[n - 1] != '/');
    assert(!strstr(p, "//"));
    /* no "." or ".." segment */
    const char *s = p;
    for (;;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        assert(!(len == 1 && s[0] == '.'));
        assert(!(len == 2 && s[0] == '.' && s[1] == '.'));
        if (!e) break;
        s = e + 1;
    }
}

static bool utf8_ok(const char *s)
{
    json_t *j = json_string(s);
    if (!j) return false;
    json_decref(j);
    return true;
}

/* ---- applying a diff back ---- */

struct lines {
    const char **at; /* start of each line */
    size_t *len;     /* with its '\n', if any */
    size_t n;
};

static void split(const char *s, size_t len, struct lines *l)
{
    l->at = malloc((len + 1) * sizeof *l->at);
    l->len = malloc((len + 1) * sizeof *l->len);
    l->n = 0;
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\n') continue;
        l->at[l->n] = s + start;
        l->len[l->n++] = i + 1 - start;
        start = i + 1;
    }
    if (start < len) {
        l->at[l->n] = s + start;
        l->len[l->n++] = len - start;
    }
}

static void lines_free(struct lines *l)
{
    free(l->at);
    free(l->len);
}

static size_t read_num(const char **p)
{
    size_t v = 0;
    assert(**p >= '0' && **p <= '9');
    while (**p >= '0' && **p <= '9')
        v = v * 10 + (size_t)(*(*p)++ - '0');
    return v;
}

/* "-S[,L] +S[,L] @@" */
static void hunk_range(const char **p, size_t *start, size_t *count)
{
    *start = read_num(p);
    *count = 1;
    if (**p == ',') {
        (*p)++;
        *count = read_num(p);
    }
}

/* Applies the hunks of `text` to `old` and checks the result is `new_`;
 * checks the counts too. */
static void check_diff(const char *path, const char *old, size_t old_len, const char *new_,
                       size_t new_len, const struct ctx_diff *d)
{
    assert(strlen(d->text) == d->len);
    int64_t dl = ctx_count_lines(new_, new_len) - ctx_count_lines(old, old_len);
    assert(d->added - d->removed == dl);
    if (d->len == 0) {
        assert(d->added == 0 && d->removed == 0);
        assert(old_len == new_len && (old_len == 0 || memcmp(old, new_, old_len) == 0));
        return;
    }
    assert(d->text[d->len - 1] == '\n');

    struct lines ol, dt;
    split(old ? old : "", old ? old_len : 0, &ol);
    split(d->text, d->len, &dt);
    assert(dt.n >= 3);
    /* the headers */
    size_t pl = strlen(path);
    if (old) {
        assert(dt.len[0] == 7 + pl && memcmp(dt.at[0], "--- a/", 6) == 0 &&
               memcmp(dt.at[0] + 6, path, pl) == 0);
    } else {
        assert(dt.len[0] == 14 && memcmp(dt.at[0], "--- /dev/null\n", 14) == 0);
    }
    if (new_) {
        assert(dt.len[1] == 7 + pl && memcmp(dt.at[1], "+++ b/", 6) == 0 &&
               memcmp(dt.at[1] + 6, path, pl) == 0);
    } else {
        assert(dt.len[1] == 14 && memcmp(dt.at[1], "+++ /dev/null\n", 14) == 0);
    }

    char *out = malloc(old_len + d->len + 1);
    size_t on = 0, cur = 0; /* old lines copied or skipped so far */
    int64_t plus = 0, minus = 0;
    size_t i = 2;
    while (i < dt.n) {
        const char *h = dt.at[i];
        assert(dt.len[i] > 4 && memcmp(h, "@@ -", 4) == 0);
        const char *p = h + 4;
        size_t os, oc, ns, nc;
        hunk_range(&p, &os, &oc);
        assert(*p++ == ' ' && *p++ == '+');
        hunk_range(&p, &ns, &nc);
        assert(memcmp(p, " @@", 3) == 0);
        size_t first = oc == 0 ? os : os - 1; /* 0-based old line the hunk starts at */
        assert(first >= cur && first <= ol.n);
        for (; cur < first; cur++) {
            memcpy(out + on, ol.at[cur], ol.len[cur]);
            on += ol.len[cur];
        }
        i++;
        size_t seen_old = 0, seen_new = 0;
        char last = 0;
        for (; i < dt.n && dt.at[i][0] != '@'; i++) {
            const char *l = dt.at[i];
            size_t n = dt.len[i];
            switch (l[0]) {
            case ' ':
            case '-': {
                assert(cur < ol.n);
                /* the old line; without its '\n' (the last), a '\' line follows */
                bool nl = ol.at[cur][ol.len[cur] - 1] == '\n';
                assert(ol.len[cur] == (nl ? n - 1 : n - 2));
                assert(memcmp(l + 1, ol.at[cur], ol.len[cur]) == 0);
                if (!nl) assert(i + 1 < dt.n && dt.at[i + 1][0] == '\\');
                if (l[0] == ' ') {
                    memcpy(out + on, ol.at[cur], ol.len[cur]);
                    on += ol.len[cur];
                    seen_new++;
                } else {
                    minus++;
                }
                cur++;
                seen_old++;
                break;
            }
            case '+':
                memcpy(out + on, l + 1, n - 1);
                on += n - 1;
                plus++;
                seen_new++;
                break;
            case '\\':
                assert(n == 28 && memcmp(l, "\\ No newline at end of file\n", 28) == 0);
                assert(last == ' ' || last == '-' || last == '+');
                if (last == '+') {
                    assert(out[on - 1] == '\n');
                    on--;
                }
                break;
            default:
                assert(!"a diff line starts with ' ', '-', '+' or '\\'");
            }
            last = l[0];
        }
        assert(seen_old == oc && seen_new == nc);
    }
    for (; cur < ol.n; cur++) {
        memcpy(out + on, ol.at[cur], ol.len[cur]);
        on += ol.len[cur];
    }
    assert(plus == d->added && minus == d->removed);
    assert(on == new_len && (new_len == 0 || memcmp(out, new_, new_len) == 0));
    free(out);
    lines_free(&ol);
    lines_free(&dt);
}

/* ---- mutations ---- */

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A copy of `s` with a few line and byte edits, in the arena. */
static char *mutate(struct arena *a, const char *s, size_t len, uint64_t *seed, size_t *out_len)
{
    size_t cap = len * 2 + 64;
    char *m = arena_alloc(a, cap + 1);
    memcpy(m, s, len);
    size_t n = len;
    int edits = 1 + (int)(rnd(seed) % 4);
    for (int e = 0; e < edits; e++) {
        size_t at = n ? (size_t)(rnd(seed) % (n + 1)) : 0;
        switch (rnd(seed) % 6) {
        case 0: /* drop a span */
            if (at < n) {
                size_t k = (size_t)(rnd(seed) % (n - at + 1));
                memmove(m + at, m + at + k, n - at - k);
                n -= k;
            }
            break;
        case 1: /* insert a short line */
            if (n + 6 <= cap) {
                memmove(m + at + 6, m + at, n - at);
                memcpy(m + at, "added\n", 6);
                n += 6;
            }
            break;
        case 2: /* change a byte */
            if (at < n) m[at] = "x\n\r a+-\\@"[rnd(seed) % 9];
            break;
        case 3: /* drop or add the final newline */
            if (n && m[n - 1] == '\n')
                n--;
            else if (n < cap)
                m[n++] = '\n';
            break;
        case 4: /* duplicate a span */
            if (at < n) {
                size_t k = (size_t)(rnd(seed) % (n - at + 1));
                if (n + k <= cap) {
                    memmove(m + at + k, m + at, n - at);
                    n += k;
                }
            }
            break;
        default: /* leave it */
            break;
        }
    }
    m[n] = '\0';
    *out_len = n;
    return m;
}

/* ---- the driver ---- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    ctx_diff_init();
    struct arena a;
    arena_init(&a);
    /* an exact-size copy, so ASan sees a read past the body */
    char *body = malloc(size ? size : 1);
    if (size) memcpy(body, data, size);

    struct ctx_delta d;
    char err[512];
    const char *param = NULL;
    int rc = ctx_delta_parse(&a, body, size, &d, err, sizeof err, &param);
    if (rc != 0) {
        assert(rc == -1);
        assert(param != NULL);
        assert(err[0] != '\0');
        assert(utf8_ok(err));
        assert(utf8_ok(param));
        assert(d.n_files == 0 && d.n_rejected == 0);
    } else {
        assert(d.project && ctx_project_name_ok(d.project, strlen(d.project)));
        json_error_t je;
        json_t *root = json_loadb(body, size, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
        assert(json_is_object(root));
        json_t *files = json_object_get(root, "files");
        assert(d.n_files + d.n_rejected == (json_is_array(files) ? json_array_size(files) : 0));
        json_decref(root);

        size_t total = d.n_files + d.n_rejected;
        const char **all = malloc((total ? total : 1) * sizeof *all);
        for (size_t i = 0; i < d.n_files; i++) {
            const struct ctx_change *c = &d.files[i];
            check_path(c->path);
            all[i] = c->path;
            if (c->deleted) {
                assert(c->content == NULL);
            } else {
                assert(c->content && strlen(c->content) == c->content_len);
            }
        }
        for (size_t i = 0; i < d.n_rejected; i++) {
            check_path(d.rejected[i].path);
            assert(d.rejected[i].reason && *d.rejected[i].reason);
            all[d.n_files + i] = d.rejected[i].path;
        }
        for (size_t i = 0; i < total; i++)
            for (size_t j = i + 1; j < total; j++)
                assert(strcmp(all[i], all[j]) != 0);
        free(all);

        uint64_t seed = 0x9E3779B97F4A7C15ull ^ size;
        for (size_t i = 0; i < size; i++)
            seed = (seed ^ data[i]) * 0x100000001B3ull;
        if (!seed) seed = 1;
        for (size_t i = 0; i < d.n_files && i < 8; i++) {
            const struct ctx_change *c = &d.files[i];
            if (c->deleted) continue;
            size_t ml;
            char *m = mutate(&a, c->content, c->content_len, &seed, &ml);
            struct ctx_diff df;
            assert(ctx_diff(&a, c->path, c->content, c->content_len, m, ml, &df) == 0);
            check_diff(c->path, c->content, c->content_len, m, ml, &df);
            assert(ctx_diff(&a, c->path, m, ml, c->content, c->content_len, &df) == 0);
            check_diff(c->path, m, ml, c->content, c->content_len, &df);
            assert(ctx_diff(&a, c->path, NULL, 0, c->content, c->content_len, &df) == 0);
            check_diff(c->path, NULL, 0, c->content, c->content_len, &df);
            assert(df.added == ctx_count_lines(c->content, c->content_len));
            assert(ctx_diff(&a, c->path, c->content, c->content_len, NULL, 0, &df) == 0);
            check_diff(c->path, c->content, c->content_len, NULL, 0, &df);
            assert(df.removed == ctx_count_lines(c->content, c->content_len));
            assert(ctx_diff(&a, c->path, c->content, c->content_len, c->content, c->content_len,
                            &df) == 0);
            assert(df.len == 0);
        }
    }
    free(body);
    arena_free(&a);
    return 0;
}
