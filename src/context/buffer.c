/* buffer: the context delta buffer's store (context/buffer.h): caller
 * scopes -> projects -> files, in sorted arrays (bounded by the limits:
 * thousands of files, tens of projects per scope), under one lock.
 *
 * A file holds its current content and the content the model last saw;
 * it is pending when the two differ. Contents are immutable shared blobs:
 * when the two are equal they are one blob (so a project's `bytes`, the
 * memory it holds and what context.max_bytes caps, counts it once), and an
 * injection keeps a reference to each content it injected until its
 * request ends, so that ctx_store_mark_seen can record exactly what the
 * model saw even when the file changed again in between.
 *
 * Choices:
 * - reset empties the project, seen contents included: everything sent
 *   after it is new to the model ("start over"). The project's counters
 *   (injections, tokens) are kept; an injection made before the reset is
 *   not marked seen after it (each project has an epoch, renewed at reset).
 * - files counts the files that exist (a current content); a deleted file
 *   whose deletion the model has not seen yet still holds its seen content
 *   in bytes until it has.
 * - a delta is refused when it would leave the project over a limit and
 *   larger than it was (a project already over lowered limits can still
 *   shrink). mark_seen checks no limit (it may keep an older seen content
 *   next to a newer current one).
 * - updated_ms is the last delta or injection: a project in use does not
 *   expire.
 * - persistence: every operation is written through to SQLite in one
 *   transaction under the lock; a failed write is logged
 *   (context_persist_failed) and the memory keeps the change: the buffer
 *   serves on, and a restart would return to what was last saved. What
 *   a request changes is the exception: its injection's count and, once
 *   it succeeded, the seen marks are written later, by ctx_store_flush
 *   (context_api.c calls it every second, and it runs when the persister
 *   is taken away at shutdown) or with the project's next write, whichever
 *   comes first: a transaction on every injecting request cost more than
 *   the rest of the injection, and the delta that follows writes the same
 *   rows anyway. A crash loses at most the last second's seen marks: those
 *   changes are injected once more after the restart. A seen deletion (the
 *   file's row goes) is written at once.
 * - the diff a delta computes for its answer's line counts is kept on the
 *   file when it is the diff an injection would send (the model had seen
 *   the content the delta replaced): the next injection uses it instead of
 *   diffing again. It is dropped when either content changes. */
#include "context/buffer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context/diff.h"
#include "context/persist_internal.h"
#include "core/alloc.h"
#include "core/log.h"

/* Line counts of a delta's answer by diff up to this size (see apply). */
#define DIFF_COUNT_MAX ((size_t)256 * 1024)
/* A delta's diff is kept for the next injection up to this size. A diff
 * holds each line of the two contents at most once, with a one-byte
 * prefix, and both contents count in the project's bytes while the file
 * is pending (it is dropped once seen): what the kept diffs hold stays
 * within about twice what context.max_bytes bounds. */
#define DIFF_KEEP_MAX ((size_t)64 * 1024)

/* ---- contents ---- */

/* The count is atomic: a request's arena drops its references without the
 * store's lock. */
struct blob {
    atomic_size_t refs;
    size_t len;
    char data[]; /* len bytes and a NUL */
};

static struct blob *blob_new(const char *s, size_t len)
{
    struct blob *b = xmalloc(sizeof *b + len + 1);
    atomic_init(&b->refs, 1);
    b->len = len;
    memcpy(b->data, s, len);
    b->data[len] = '\0';
    return b;
}

static struct blob *blob_ref(struct blob *b)
{
    if (b) atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

static void blob_unref(struct blob *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) free(b);
}

static bool blob_is(const struct blob *b, const char *s, size_t len)
{
    return b && b->len == len && memcmp(b->data, s, len) == 0;
}

static size_t blob_len(const struct blob *b)
{
    return b ? b->len : 0;
}

/* ---- the store ---- */

struct file {
    char *path;
    struct blob *cur;     /* NULL: deleted, the model has not seen the deletion */
    struct blob *seen;    /* NULL: never seen (new); == cur when seen as it is */
    int64_t version;      /* the project's clock at the file's last change */
    int64_t seen_version; /* the version `seen` was injected at (0: before a load) */
    /* the unified diff seen -> cur, when a delta computed it (NULL: none;
     * dropped whenever cur or seen changes: file_set_cur, file_set_seen) */
    struct blob *diff;
    int64_t diff_added, diff_removed;
    bool seen_dirty; /* `seen` changed since the row was written (ctx_store_flush) */
};

struct project {
    char *name;
    void **files; /* struct file *, by path */
    size_t n_files, cap_files;
    int64_t live;  /* files with a current content */
    int64_t bytes; /* current contents, and seen ones that are not the current */
    int64_t clock; /* the last version given to a change */
    uint64_t epoch; /* renewed at creation and reset: older injections are not marked seen */
    int64_t injections, tokens_injected, tokens_saved, updated_ms;
    bool dirty; /* counters or a file's seen mark changed since written (ctx_store_flush) */
};

struct scope {
    char *name;
    void **projects; /* struct project *, by name */
    size_t n_projects, cap_projects;
};

struct ctx_store {
    pthread_mutex_t lock;
    void **scopes; /* struct scope *, by name */
    size_t n_scopes, cap_scopes;
    uint64_t epoch;
    struct ctx_persist *persist;
    /* since start (and what the loaded projects had counted): counters for
     * metrics, which deleting a project does not take back */
    int64_t injections, tokens_injected, tokens_saved;
};

/* Sorted arrays of pointers, searched by each item's name. */
typedef const char *(*key_fn)(const void *item);

static const char *file_key(const void *item)
{
    const struct file *f = item;
    return f->path;
}

static const char *project_key(const void *item)
{
    const struct project *p = item;
    return p->name;
}

static const char *scope_key(const void *item)
{
    const struct scope *s = item;
    return s->name;
}

/* Where `key` is or would go; *found says which. */
static size_t lower_bound(void *const *items, size_t n, const char *key, key_fn k, bool *found)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(k(items[mid]), key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < n && strcmp(k(items[lo]), key) == 0;
    return lo;
}

static void insert_at(void ***items, size_t *n, size_t *cap, size_t at, void *item)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *items = xrealloc(*items, *cap * sizeof **items);
    }
    memmove(*items + at + 1, *items + at, (*n - at) * sizeof **items);
    (*items)[at] = item;
    (*n)++;
}

static void remove_at(void **items, size_t *n, size_t at)
{
    memmove(items + at, items + at + 1, (*n - at - 1) * sizeof *items);
    (*n)--;
}

static struct scope *find_scope(struct ctx_store *s, const char *name, size_t *at)
{
    bool found;
    size_t i = lower_bound(s->scopes, s->n_scopes, name, scope_key, &found);
    if (at) *at = i;
    return found ? s->scopes[i] : NULL;
}

static struct project *find_project(struct scope *sc, const char *name, size_t *at)
{
    if (!sc) return NULL;
    bool found;
    size_t i = lower_bound(sc->projects, sc->n_projects, name, project_key, &found);
    if (at) *at = i;
    return found ? sc->projects[i] : NULL;
}

static struct file *find_file(const struct project *p, const char *path, size_t *at)
{
    bool found;
    size_t i = lower_bound(p->files, p->n_files, path, file_key, &found);
    if (at) *at = i;
    return found ? p->files[i] : NULL;
}

static struct scope *scope_get(struct ctx_store *s, const char *name)
{
    size_t at;
    struct scope *sc = find_scope(s, name, &at);
    if (sc) return sc;
    sc = xcalloc(1, sizeof *sc);
    sc->name = xstrdup(name);
    insert_at(&s->scopes, &s->n_scopes, &s->cap_scopes, at, sc);
    return sc;
}

static struct project *project_get(struct ctx_store *s, struct scope *sc, const char *name)
{
    size_t at;
    struct project *p = find_project(sc, name, &at);
    if (p) return p;
    p = xcalloc(1, sizeof *p);
    p->name = xstrdup(name);
    p->epoch = ++s->epoch;
    insert_at(&sc->projects, &sc->n_projects, &sc->cap_projects, at, p);
    return p;
}

/* What a file adds to its project's bytes. */
static int64_t file_bytes(const struct file *f)
{
    return (int64_t)(blob_len(f->cur) + (f->seen != f->cur ? blob_len(f->seen) : 0));
}

/* The cached diff no longer describes seen -> cur. */
static void file_drop_diff(struct file *f)
{
    blob_unref(f->diff);
    f->diff = NULL;
}

static void file_free(struct file *f)
{
    file_drop_diff(f);
    blob_unref(f->cur);
    blob_unref(f->seen);
    free(f->path);
    free(f);
}

static void project_clear(struct project *p)
{
    for (size_t i = 0; i < p->n_files; i++) file_free(p->files[i]);
    free(p->files);
    p->files = NULL;
    p->n_files = p->cap_files = 0;
    p->live = p->bytes = 0;
}

static void project_free(struct project *p)
{
    project_clear(p);
    free(p->name);
    free(p);
}

static void scope_free(struct scope *sc)
{
    for (size_t i = 0; i < sc->n_projects; i++) project_free(sc->projects[i]);
    free(sc->projects);
    free(sc->name);
    free(sc);
}

/* Forgets project `i` of the scope at `si` (the scope too when it was its
 * last), writing the deletion through. */
static void drop_project(struct ctx_store *s, size_t si, size_t i)
{
    struct scope *sc = s->scopes[si];
    struct project *p = sc->projects[i];
    ctx_persist_delete_project(s->persist, sc->name, p->name);
    project_free(p);
    remove_at(sc->projects, &sc->n_projects, i);
    if (sc->n_projects == 0) {
        scope_free(sc);
        remove_at(s->scopes, &s->n_scopes, si);
    }
}

static int64_t count_pending(const struct project *p)
{
    int64_t n = 0;
    for (size_t i = 0; i < p->n_files; i++) {
        const struct file *f = p->files[i];
        n += f->cur != f->seen;
    }
    return n;
}

static void persist_file(struct ctx_store *s, const char *scope, const struct project *p,
                         struct file *f)
{
    bool same = f->seen && f->seen == f->cur;
    f->seen_dirty = false; /* the whole row is written */
    ctx_persist_put_file(s->persist, scope, p->name, f->path, f->cur ? f->cur->data : NULL,
                         blob_len(f->cur), f->seen ? f->seen->data : NULL, blob_len(f->seen),
                         same, f->version);
}

static void persist_seen(struct ctx_store *s, const char *scope, const struct project *p,
                         struct file *f)
{
    ctx_persist_set_seen(s->persist, scope, p->name, f->path, f->seen ? f->seen->data : NULL,
                         blob_len(f->seen), f->seen && f->seen == f->cur);
    f->seen_dirty = false;
}

/* The project's counters, and the seen marks left for later: everything
 * ctx_store_flush would write of it (the caller has begun a transaction). */
static void persist_counters(struct ctx_store *s, const char *scope, struct project *p)
{
    if (p->dirty)
        for (size_t i = 0; i < p->n_files; i++) {
            struct file *f = p->files[i];
            if (f->seen_dirty) persist_seen(s, scope, p, f);
        }
    ctx_persist_put_project(s->persist, scope, p->name, p->injections, p->tokens_injected,
                            p->tokens_saved, p->updated_ms);
    p->dirty = false;
}

/* Writes what was left for later, in one transaction (the caller holds
 * the lock). */
static void flush_locked(struct ctx_store *s)
{
    if (!s->persist) return;
    bool any = false;
    for (size_t i = 0; i < s->n_scopes; i++) {
        struct scope *sc = s->scopes[i];
        for (size_t j = 0; j < sc->n_projects; j++) {
            struct project *p = sc->projects[j];
            if (!p->dirty) continue;
            if (!any) ctx_persist_begin(s->persist);
            any = true;
            persist_counters(s, sc->name, p);
        }
    }
    if (any) ctx_persist_end(s->persist, "seen marks and injection counts", "(all)");
}

void ctx_store_flush(struct ctx_store *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    flush_locked(s);
    pthread_mutex_unlock(&s->lock);
}

struct ctx_store *ctx_store_new(void)
{
    struct ctx_store *s = xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

void ctx_store_free(struct ctx_store *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_scopes; i++) scope_free(s->scopes[i]);
    free(s->scopes);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

void ctx_store_set_persist(struct ctx_store *s, struct ctx_persist *p)
{
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    flush_locked(s); /* to the persister going away */
    s->persist = p;
    pthread_mutex_unlock(&s->lock);
}

/* ---- expiry ---- */

/* Drops the idle projects of the scope at `si`; the caller holds the lock
 * and has begun a transaction. */
static size_t expire_scope(struct ctx_store *s, size_t si, int64_t now_ms, int64_t ttl_ms)
{
    struct scope *sc = s->scopes[si];
    size_t dropped = 0;
    for (size_t i = sc->n_projects; i-- > 0;) {
        const struct project *p = sc->projects[i];
        if (now_ms - p->updated_ms < ttl_ms) continue;
        bool last = sc->n_projects == 1;
        drop_project(s, si, i);
        dropped++;
        if (last) break; /* the scope is gone with it */
    }
    return dropped;
}

size_t ctx_store_expire(struct ctx_store *s, int64_t now_ms, int64_t ttl_ms)
{
    if (ttl_ms <= 0) return 0;
    size_t dropped = 0;
    pthread_mutex_lock(&s->lock);
    ctx_persist_begin(s->persist);
    for (size_t si = s->n_scopes; si-- > 0;) dropped += expire_scope(s, si, now_ms, ttl_ms);
    ctx_persist_end(s->persist, "expiry", "(idle ones)");
    pthread_mutex_unlock(&s->lock);
    if (dropped)
        log_event(LOG_INFO, "context_expired", "context buffer: %zu idle project(s) dropped",
                  dropped);
    return dropped;
}

/* ---- apply ---- */

/* The project's files and bytes after `d` (reset included), unchanged
 * (and no limit checked) where the delta changes nothing. */
static void dry_run(const struct project *p, const struct ctx_delta *d, int64_t *files,
                    int64_t *bytes)
{
    bool keep = p && !d->reset;
    *files = keep ? p->live : 0;
    *bytes = keep ? p->bytes : 0;
    for (size_t i = 0; i < d->n_files; i++) {
        const struct ctx_change *c = &d->files[i];
        struct file *f = keep ? find_file(p, c->path, NULL) : NULL;
        int64_t live0 = f && f->cur, bytes0 = f ? file_bytes(f) : 0;
        int64_t live1, bytes1;
        if (c->deleted || !c->content) {
            if (!f || !f->cur) continue; /* not there: ignored */
            live1 = 0;
            bytes1 = (int64_t)blob_len(f->seen);
        } else {
            if (f && blob_is(f->cur, c->content, c->content_len)) continue;
            live1 = 1;
            bytes1 = (int64_t)c->content_len;
            if (f && f->seen && !blob_is(f->seen, c->content, c->content_len))
                bytes1 += (int64_t)f->seen->len;
        }
        *files += live1 - live0;
        *bytes += bytes1 - bytes0;
    }
}

/* Applies one change; returns whether it changed anything. */
static bool apply_change(struct ctx_store *s, const char *scope, struct project *p,
                         const struct ctx_change *c, struct arena *a, struct ctx_applied *out)
{
    size_t at;
    struct file *f = find_file(p, c->path, &at);
    if (c->deleted || !c->content) {
        if (!f || !f->cur) return false;
        out->removed += ctx_count_lines(f->cur->data, f->cur->len);
        p->bytes -= file_bytes(f);
        p->live--;
        file_drop_diff(f);
        blob_unref(f->cur);
        f->cur = NULL;
        f->version = ++p->clock;
        if (!f->seen) {
            /* new and never seen: the model need not hear of it */
            ctx_persist_delete_file(s->persist, scope, p->name, f->path);
            remove_at(p->files, &p->n_files, at);
            file_free(f);
            return true;
        }
        p->bytes += file_bytes(f);
        persist_file(s, scope, p, f);
        return true;
    }
    if (f && blob_is(f->cur, c->content, c->content_len)) return false;
    struct blob *keep = NULL; /* the diff seen -> the new content, for the next injection */
    int64_t keep_added = 0, keep_removed = 0;
    if (f && f->cur) {
        struct ctx_diff df;
        /* The answer's line counts come from a diff, under the store's
         * lock: past DIFF_COUNT_MAX bytes (a pathological file can take
         * seconds) they are the two versions' line counts instead. */
        if (f->cur->len + c->content_len <= DIFF_COUNT_MAX &&
            ctx_diff(a, c->path, f->cur->data, f->cur->len, c->content, c->content_len, &df) ==
                0) {
            out->added += df.added;
            out->removed += df.removed;
            /* the model saw the content replaced: this is what the next
             * injection would compute */
            if (f->seen == f->cur && df.len > 0 && df.len <= DIFF_KEEP_MAX) {
                keep = blob_new(df.text, df.len);
                keep_added = df.added;
                keep_removed = df.removed;
            }
        } else {
            out->added += ctx_count_lines(c->content, c->content_len);
            out->removed += ctx_count_lines(f->cur->data, f->cur->len);
        }
    } else {
        out->added += ctx_count_lines(c->content, c->content_len);
    }
    if (!f) {
        f = xcalloc(1, sizeof *f);
        f->path = xstrdup(c->path);
        insert_at(&p->files, &p->n_files, &p->cap_files, at, f);
    } else {
        p->bytes -= file_bytes(f);
        p->live -= f->cur != NULL;
    }
    /* back to what the model saw: one blob again, and nothing pending */
    struct blob *b = blob_is(f->seen, c->content, c->content_len)
                         ? blob_ref(f->seen)
                         : blob_new(c->content, c->content_len);
    blob_unref(f->cur);
    f->cur = b;
    file_drop_diff(f);
    if (keep && f->seen && f->seen != f->cur) {
        f->diff = keep;
        f->diff_added = keep_added;
        f->diff_removed = keep_removed;
    } else {
        blob_unref(keep);
    }
    f->version = ++p->clock;
    p->bytes += file_bytes(f);
    p->live++;
    persist_file(s, scope, p, f);
    return true;
}

enum ctx_err ctx_store_apply(struct ctx_store *s, const struct ctx_limits *lim, const char *scope,
                             const struct ctx_delta *d, int64_t now_ms, struct arena *a,
                             struct ctx_applied *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    if (errcap) err[0] = '\0';
    enum ctx_err rc = CTX_OK;
    pthread_mutex_lock(&s->lock);
    size_t si;
    if (lim->ttl_ms > 0 && find_scope(s, scope, &si)) {
        ctx_persist_begin(s->persist);
        expire_scope(s, si, now_ms, lim->ttl_ms);
        ctx_persist_end(s->persist, "expiry", "(idle ones)");
    }
    struct scope *sc = find_scope(s, scope, NULL);
    struct project *p = find_project(sc, d->project, NULL);
    if (!p && sc && lim->max_projects > 0 && (int64_t)sc->n_projects >= lim->max_projects) {
        snprintf(err, errcap,
                 "Too many context projects: this caller already has %zu, the most "
                 "context.max_projects allows (%lld); delete one (DELETE /v1/context/{project}) "
                 "or send to an existing one.",
                 sc->n_projects, (long long)lim->max_projects);
        rc = CTX_ERR_TOO_MANY_PROJECTS;
        goto out;
    }
    int64_t files, bytes;
    dry_run(p, d, &files, &bytes);
    int64_t files0 = p ? p->live : 0, bytes0 = p ? p->bytes : 0;
    if (lim->max_files > 0 && files > lim->max_files && files > files0) {
        snprintf(err, errcap,
                 "The delta would leave project '%s' with %lld files, over context.max_files "
                 "(%lld); nothing was applied.",
                 d->project, (long long)files, (long long)lim->max_files);
        rc = CTX_ERR_TOO_MANY_FILES;
        goto out;
    }
    if (lim->max_bytes > 0 && bytes > lim->max_bytes && bytes > bytes0) {
        snprintf(err, errcap,
                 "The delta would leave project '%s' holding %lld bytes, over context.max_bytes "
                 "(%lld, current and last injected contents); nothing was applied.",
                 d->project, (long long)bytes, (long long)lim->max_bytes);
        rc = CTX_ERR_TOO_LARGE;
        goto out;
    }

    ctx_persist_begin(s->persist);
    if (!sc) sc = scope_get(s, scope);
    if (!p) {
        p = project_get(s, sc, d->project);
    } else if (d->reset) {
        project_clear(p);
        p->epoch = ++s->epoch;
        ctx_persist_delete_files(s->persist, scope, p->name);
    }
    out->changed = arena_alloc(a, (d->n_files ? d->n_files : 1) * sizeof *out->changed);
    for (size_t i = 0; i < d->n_files; i++)
        if (apply_change(s, scope, p, &d->files[i], a, out))
            out->changed[out->n_changed++] = arena_strdup(a, d->files[i].path);
    p->updated_ms = now_ms;
    persist_counters(s, scope, p);
    ctx_persist_end(s->persist, "delta", p->name);
    out->files = p->live;
    out->bytes = p->bytes;
    out->pending = count_pending(p);
out:
    pthread_mutex_unlock(&s->lock);
    return rc;
}

/* ---- inject ---- */

/* One pending file as the injection took it: references to its contents
 * (so that it can work without the lock, and mark exactly what it
 * injected as seen later). */
struct pend {
    const char *path; /* arena */
    struct blob *cur, *seen;
    struct blob *diff; /* the file's cached diff seen -> cur (NULL: none) */
    int64_t diff_added, diff_removed;
    int64_t version;
};

/* What ctx_store_mark_seen records: the files in the block (opaque
 * `seen` of struct ctx_injection). The arena drops the references. */
struct inj_record {
    uint64_t epoch;
    size_t n;
    struct pend *files; /* cur: the content injected (NULL: the deletion) */
};

static void release_record(void *data)
{
    struct inj_record *r = data;
    for (size_t i = 0; i < r->n; i++) blob_unref(r->files[i].cur);
    r->n = 0;
}

/* A file's part of the block: pre + body + suf. */
struct piece {
    const char *pre, *body, *suf;
    size_t pre_len, body_len, suf_len;
    int64_t lines;
    bool made; /* built (a diff is not computed while it could not fit anyway) */
    bool in;   /* in the block */
};

static size_t piece_len(const struct piece *pc)
{
    return pc->pre_len + pc->body_len + pc->suf_len;
}

/* `s` with '"', '<' and '&' escaped (attribute values, and the note). */
static char *escape(struct arena *a, const char *s, size_t *len)
{
    size_t n = 0;
    for (const char *c = s; *c; c++)
        n += *c == '"' ? 6 : *c == '<' ? 4 : *c == '&' ? 5 : 1;
    char *out = arena_alloc(a, n + 1), *w = out;
    for (const char *c = s; *c; c++) {
        const char *rep = *c == '"' ? "&quot;" : *c == '<' ? "&lt;" : *c == '&' ? "&amp;" : NULL;
        if (rep) {
            size_t rl = strlen(rep);
            memcpy(w, rep, rl);
            w += rl;
        } else {
            *w++ = *c;
        }
    }
    *w = '\0';
    *len = n;
    return out;
}

static void whole_file(struct arena *a, struct piece *pc, const char *path, const char *status,
                       const struct blob *b)
{
    size_t el;
    const char *ep = escape(a, path, &el);
    pc->pre = arena_concat(a, "<file path=\"", ep, "\" status=\"", status, "\">\n", NULL);
    pc->pre_len = strlen(pc->pre);
    pc->body = b->data;
    pc->body_len = b->len;
    pc->suf = b->len == 0 || b->data[b->len - 1] == '\n' ? "</file>\n" : "\n</file>\n";
    pc->suf_len = strlen(pc->suf);
    pc->lines = ctx_count_lines(b->data, b->len);
}

/* Builds `pc` for `f`, unless it is a changed file whose diff could not
 * fit in `room` bytes anyway (its headers alone would not). */
static void make_piece(struct arena *a, const struct pend *f, size_t room, struct piece *pc)
{
    *pc = (struct piece){.pre = "", .body = "", .suf = "", .made = true};
    if (!f->cur) {
        size_t el;
        const char *ep = escape(a, f->path, &el);
        pc->pre = arena_concat(a, "<file path=\"", ep, "\" status=\"deleted\"/>\n", NULL);
        pc->pre_len = strlen(pc->pre);
    } else if (!f->seen) {
        whole_file(a, pc, f->path, "new", f->cur);
    } else {
        /* "--- a/P\n+++ b/P\n" at the least */
        if (room < 2 * strlen(f->path) + 16) {
            pc->made = false;
            return;
        }
        struct ctx_diff df;
        int rc = 0;
        if (f->diff) /* the one the delta computed (seen -> cur) */
            df = (struct ctx_diff){.text = f->diff->data, .len = f->diff->len,
                                   .added = f->diff_added, .removed = f->diff_removed};
        else
            rc = ctx_diff(a, f->path, f->seen->data, f->seen->len, f->cur->data, f->cur->len,
                          &df);
        if (rc != 0) {
            log_event(LOG_WARN, "context_diff_failed",
                      "context buffer: no diff of a changed file; sending it whole");
            whole_file(a, pc, f->path, "modified", f->cur);
        } else {
            pc->body = df.text;
            pc->body_len = df.len;
            pc->suf = df.len && df.text[df.len - 1] != '\n' ? "\n" : "";
            pc->suf_len = strlen(pc->suf);
            pc->lines = df.added + df.removed;
        }
    }
}

/* Takes the pieces in path order while they fit in `budget`; returns the
 * bytes taken. */
static size_t fill(struct arena *a, const struct pend *pd, struct piece *pcs, size_t n,
                   size_t budget)
{
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (!pcs[i].made) make_piece(a, &pd[i], budget - used, &pcs[i]);
        pcs[i].in = pcs[i].made && piece_len(&pcs[i]) <= budget - used;
        if (pcs[i].in) used += piece_len(&pcs[i]);
    }
    return used;
}

static size_t count_out(const struct piece *pcs, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += !pcs[i].in;
    return k;
}

#define NOTE_HEAD "(left out, over context.max_inject_tokens: "

/* The note naming the left-out files, within `avail` bytes: every name,
 * or as many as fit and "and N more", or only how many; NULL when even
 * that does not fit. */
static char *make_note(struct arena *a, const struct pend *pd, const struct piece *pcs, size_t n,
                       size_t n_out, size_t avail, size_t *len)
{
    const char **names = arena_alloc(a, n_out * sizeof *names);
    size_t *lens = arena_alloc(a, n_out * sizeof *lens);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!pcs[i].in) {
            names[k] = escape(a, pd[i].path, &lens[k]);
            k++;
        }
    size_t head = strlen(NOTE_HEAD);
    /* the longest run of names (k of them) that fits with its tail */
    size_t use = 0, sum = head;
    char tail[64];
    for (;;) {
        if (use == n_out)
            snprintf(tail, sizeof tail, ")\n");
        else if (use > 0)
            snprintf(tail, sizeof tail, " and %zu more)\n", n_out - use);
        else
            snprintf(tail, sizeof tail, "%zu file%s)\n", n_out, n_out == 1 ? "" : "s");
        if (use == n_out) break;
        size_t next = sum + (use ? 2 : 0) + lens[use];
        char next_tail[64];
        if (use + 1 == n_out)
            snprintf(next_tail, sizeof next_tail, ")\n");
        else
            snprintf(next_tail, sizeof next_tail, " and %zu more)\n", n_out - use - 1);
        if (next + strlen(next_tail) > avail) break;
        sum = next;
        use++;
    }
    if (sum + strlen(tail) > avail) return NULL;
    size_t total = sum + strlen(tail);
    char *note = arena_alloc(a, total + 1), *w = note;
    memcpy(w, NOTE_HEAD, head);
    w += head;
    for (size_t i = 0; i < use; i++) {
        if (i) {
            memcpy(w, ", ", 2);
            w += 2;
        }
        memcpy(w, names[i], lens[i]);
        w += lens[i];
    }
    memcpy(w, tail, strlen(tail) + 1);
    *len = total;
    return note;
}

int ctx_store_inject(struct ctx_store *s, const char *scope, const char *project,
                     int64_t max_tokens, int64_t now_ms, struct arena *a,
                     struct ctx_injection *out)
{
    memset(out, 0, sizeof *out);
    /* 1. under the lock: references to the pending files' contents */
    pthread_mutex_lock(&s->lock);
    struct project *p = find_project(find_scope(s, scope, NULL), project, NULL);
    int64_t n_pending = p ? count_pending(p) : 0;
    if (n_pending == 0) {
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    struct pend *pd = arena_alloc(a, (size_t)n_pending * sizeof *pd);
    size_t n = 0;
    int64_t whole = 0;
    for (size_t i = 0; i < p->n_files; i++) {
        const struct file *f = p->files[i];
        whole += (int64_t)blob_len(f->cur);
        if (f->cur == f->seen) continue;
        pd[n].path = arena_strdup(a, f->path);
        pd[n].cur = blob_ref(f->cur);
        pd[n].seen = blob_ref(f->seen);
        pd[n].diff = blob_ref(f->diff);
        pd[n].diff_added = f->diff_added;
        pd[n].diff_removed = f->diff_removed;
        pd[n].version = f->version;
        n++;
    }
    uint64_t epoch = p->epoch;
    pthread_mutex_unlock(&s->lock);

    /* 2. without it: the block, files in path order while they fit */
    size_t cap = max_tokens > 0 ? (size_t)max_tokens * 4 : 0;
    size_t pl;
    const char *ep = escape(a, project, &pl);
    const char *head = arena_concat(a, "<context_delta project=\"", ep, "\">\n", NULL);
    static const char foot[] = "</context_delta>";
    size_t head_len = strlen(head), foot_len = sizeof foot - 1;
    size_t budget = cap > head_len + foot_len ? cap - head_len - foot_len : 0;
    struct piece *pcs = arena_alloc(a, n * sizeof *pcs);
    memset(pcs, 0, n * sizeof *pcs);
    size_t used = fill(a, pd, pcs, n, budget);
    size_t n_out = count_out(pcs, n), note_len = 0;
    char *note = n_out ? make_note(a, pd, pcs, n, n_out, budget - used, &note_len) : NULL;
    if (n_out && !note) {
        /* the note must fit too: fill again leaving room for its shortest
         * form ("N files", N at most n), then name what fits in the rest */
        char tail[48];
        int tl = snprintf(tail, sizeof tail, "%zu files)\n", n);
        size_t reserve = strlen(NOTE_HEAD) + (size_t)tl;
        used = fill(a, pd, pcs, n, budget > reserve ? budget - reserve : 0);
        n_out = count_out(pcs, n);
        note = make_note(a, pd, pcs, n, n_out, budget - used, &note_len); /* NULL: too small */
    }
    size_t n_in = n - n_out;
    out->left_out = (int64_t)n_out;
    struct inj_record *rec = NULL;
    if (n_in > 0 || note) {
        size_t len = head_len + used + note_len + foot_len;
        char *block = arena_alloc(a, len + 1), *w = block;
        memcpy(w, head, head_len);
        w += head_len;
        rec = arena_alloc(a, sizeof *rec);
        rec->epoch = epoch;
        rec->n = 0;
        rec->files = arena_alloc(a, (n_in ? n_in : 1) * sizeof *rec->files);
        for (size_t i = 0; i < n; i++) {
            const struct piece *pc = &pcs[i];
            if (!pc->in) continue;
            memcpy(w, pc->pre, pc->pre_len);
            w += pc->pre_len;
            memcpy(w, pc->body, pc->body_len);
            w += pc->body_len;
            memcpy(w, pc->suf, pc->suf_len);
            w += pc->suf_len;
            out->diff_lines += pc->lines;
            rec->files[rec->n] = pd[i];
            rec->files[rec->n].seen = NULL;
            rec->files[rec->n].diff = NULL;
            pd[i].cur = NULL; /* the record holds that reference now */
            rec->n++;
        }
        if (note) {
            memcpy(w, note, note_len);
            w += note_len;
        }
        memcpy(w, foot, foot_len + 1);
        out->block = block;
        out->block_len = len;
        out->files = (int64_t)n_in;
        out->tokens_injected = (int64_t)((len + 3) / 4);
        int64_t saved = (whole + 3) / 4 - out->tokens_injected;
        out->tokens_saved = saved > 0 ? saved : 0;
        out->seen = rec;
        arena_on_free(a, release_record, rec);
    }
    /* the block holds copies: the diffs' references can go (the cur
     * references of the files in the block are the record's now) */
    for (size_t i = 0; i < n; i++) {
        blob_unref(pd[i].cur);
        blob_unref(pd[i].seen);
        blob_unref(pd[i].diff);
    }
    if (!rec) return 0;

    /* 3. under the lock again: count it */
    pthread_mutex_lock(&s->lock);
    s->injections++;
    p = find_project(find_scope(s, scope, NULL), project, NULL);
    if (p) {
        p->injections++;
        p->updated_ms = now_ms;
        p->dirty = true; /* written by ctx_store_flush or the project's next write */
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void ctx_store_mark_seen(struct ctx_store *s, const char *scope, const char *project,
                         const struct ctx_injection *inj)
{
    if (!inj || !inj->seen) return;
    const struct inj_record *rec = inj->seen;
    pthread_mutex_lock(&s->lock);
    s->tokens_injected += inj->tokens_injected;
    s->tokens_saved += inj->tokens_saved;
    struct project *p = find_project(find_scope(s, scope, NULL), project, NULL);
    if (!p) goto out; /* deleted or expired since */
    p->tokens_injected += inj->tokens_injected;
    p->tokens_saved += inj->tokens_saved;
    p->dirty = true;
    bool gone = false; /* a seen deletion: its row goes now */
    for (size_t i = 0; p->epoch == rec->epoch && i < rec->n; i++) {
        const struct pend *r = &rec->files[i];
        size_t at;
        struct file *f = find_file(p, r->path, &at);
        /* gone, or a later injection of it was marked seen first */
        if (!f || f->seen_version >= r->version) continue;
        p->bytes -= file_bytes(f);
        file_drop_diff(f);
        struct blob *ns = r->cur;
        if (ns && f->cur && (ns == f->cur || blob_is(f->cur, ns->data, ns->len))) ns = f->cur;
        blob_ref(ns);
        blob_unref(f->seen);
        f->seen = ns;
        f->seen_version = r->version;
        if (!f->cur && !f->seen) {
            /* the model saw the deletion: nothing left to keep */
            if (!gone) ctx_persist_begin(s->persist);
            gone = true;
            ctx_persist_delete_file(s->persist, scope, p->name, f->path);
            remove_at(p->files, &p->n_files, at);
            file_free(f);
            continue;
        }
        p->bytes += file_bytes(f);
        f->seen_dirty = true; /* written later (see the top of the file) */
    }
    if (gone) {
        persist_counters(s, scope, p);
        ctx_persist_end(s->persist, "injection seen", p->name);
    }
out:
    pthread_mutex_unlock(&s->lock);
}

/* ---- stats, delete, totals ---- */

size_t ctx_store_stats(struct ctx_store *s, const char *scope, struct arena *a,
                       struct ctx_project_stats **out)
{
    *out = NULL;
    pthread_mutex_lock(&s->lock);
    struct scope *sc = find_scope(s, scope, NULL);
    size_t n = sc ? sc->n_projects : 0;
    if (n) {
        *out = arena_alloc(a, n * sizeof **out);
        for (size_t i = 0; i < n; i++) {
            const struct project *p = sc->projects[i];
            (*out)[i] = (struct ctx_project_stats){
                .project = arena_strdup(a, p->name),
                .files = p->live,
                .bytes = p->bytes,
                .pending = count_pending(p),
                .injections = p->injections,
                .tokens_injected = p->tokens_injected,
                .tokens_saved = p->tokens_saved,
                .updated_ms = p->updated_ms,
            };
        }
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

bool ctx_store_delete(struct ctx_store *s, const char *scope, const char *project)
{
    pthread_mutex_lock(&s->lock);
    size_t si, pi;
    struct scope *sc = find_scope(s, scope, &si);
    struct project *p = find_project(sc, project, &pi);
    if (p) {
        ctx_persist_begin(s->persist);
        drop_project(s, si, pi);
        ctx_persist_end(s->persist, "delete", project);
    }
    pthread_mutex_unlock(&s->lock);
    return p != NULL;
}

void ctx_store_totals(struct ctx_store *s, struct ctx_totals *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_scopes; i++) {
        const struct scope *sc = s->scopes[i];
        out->projects += (int64_t)sc->n_projects;
        for (size_t j = 0; j < sc->n_projects; j++) {
            const struct project *p = sc->projects[j];
            out->files += p->live;
            out->bytes += p->bytes;
        }
    }
    out->injections = s->injections;
    out->tokens_injected = s->tokens_injected;
    out->tokens_saved = s->tokens_saved;
    pthread_mutex_unlock(&s->lock);
}

/* ---- loading (context/persist_internal.h) ---- */

void ctx_store_load_project(struct ctx_store *s, const char *scope, const char *project,
                            int64_t injections, int64_t tokens_injected, int64_t tokens_saved,
                            int64_t updated_ms)
{
    pthread_mutex_lock(&s->lock);
    struct project *p = project_get(s, scope_get(s, scope), project);
    p->injections = injections;
    p->tokens_injected = tokens_injected;
    p->tokens_saved = tokens_saved;
    p->updated_ms = updated_ms;
    s->injections += injections;
    s->tokens_injected += tokens_injected;
    s->tokens_saved += tokens_saved;
    pthread_mutex_unlock(&s->lock);
}

void ctx_store_load_file(struct ctx_store *s, const char *scope, const char *project,
                         const char *path, const char *content, size_t content_len,
                         const char *seen, size_t seen_len, bool seen_same, int64_t version)
{
    if (!content && (seen_same || !seen)) return; /* nothing to keep: not written so */
    pthread_mutex_lock(&s->lock);
    struct project *p = project_get(s, scope_get(s, scope), project);
    size_t at;
    struct file *f = find_file(p, path, &at);
    if (f) {
        p->bytes -= file_bytes(f);
        p->live -= f->cur != NULL;
        file_drop_diff(f);
        blob_unref(f->cur);
        blob_unref(f->seen);
    } else {
        f = xcalloc(1, sizeof *f);
        f->path = xstrdup(path);
        insert_at(&p->files, &p->n_files, &p->cap_files, at, f);
    }
    f->cur = content ? blob_new(content, content_len) : NULL;
    if (seen_same)
        f->seen = blob_ref(f->cur);
    else if (seen && f->cur && blob_is(f->cur, seen, seen_len))
        f->seen = blob_ref(f->cur);
    else
        f->seen = seen ? blob_new(seen, seen_len) : NULL;
    f->version = version;
    f->seen_version = 0; /* no injection survives a restart */
    if (version > p->clock) p->clock = version;
    p->bytes += file_bytes(f);
    p->live += f->cur != NULL;
    pthread_mutex_unlock(&s->lock);
}
