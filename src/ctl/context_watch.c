/* ctl/context_watch: `aiproxyctl context watch DIR`, the client side of the
 * context delta buffer (SPEC section 8).
 *
 * State: one table entry per path the watcher has seen an event for or
 * knows the gateway holds. An entry is `known` when the gateway acknowledged
 * its content (whose hash is kept, so an unchanged file is not sent again),
 * `refused` when the gateway turned its current content down, and `pending`
 * when an event came since the last delta. A delta is built when events
 * settle: each pending path is read again, and what differs from the known
 * state is sent (content, or a deletion when the file is gone, ignored,
 * binary or too big now). Nothing is marked sent before the gateway says
 * 200, so an outage keeps every change pending, and the retry reads the
 * files as they are then.
 *
 * The gateway may lose a project (a restart without persistence, its TTL,
 * `aiproxyctl context clear`): when a delta's answer counts fewer files than
 * the watcher has sent, or GET /v1/context/stats no longer lists the
 * project, the watcher walks DIR again and sends a snapshot (reset: true). */
#include "ctl/context_watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "ctl/http.h"
#include "ctl/ignore.h"

#define PATH_MAX_BYTES 1024 /* the gateway's cap on a path (context/delta.h) */
#define BACKOFF_FIRST_MS 200
#define BACKOFF_MAX_MS 5000
#define DELTA_TIMEOUT_MS 30000
#define CHECK_TIMEOUT_MS 5000
/* A steady stream of events (a log written in the tree) never holds a
 * change back longer than this many debounce periods, nor less than the
 * floor. */
#define SETTLE_CAP_FACTOR 10
#define SETTLE_CAP_MIN_MS 5000
#define REFUSALS_SHOWN 10 /* per flush; a full project refuses every new file */
#define LEFT_OUT_SHOWN 5  /* names in a delta's line */

#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF |      \
     IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)

/* ---- signals: the handler only writes a byte to a pipe ---- */

static volatile sig_atomic_t got_signal;
static int signal_pipe_w = -1;

static void on_signal(int sig)
{
    int saved = errno;
    got_signal = sig;
    if (signal_pipe_w >= 0) {
        char c = 1;
        (void)!write(signal_pipe_w, &c, 1);
    }
    errno = saved;
}

/* ---- a growing buffer, for request bodies ---- */

struct sbuf {
    char *p;
    size_t len, cap;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* Appends s[n] (valid UTF-8, checked by the caller) as a JSON string. */
static void sb_json(struct sbuf *b, const char *s, size_t n)
{
    sb_add(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        sb_add(b, s + run, i - run);
        run = i + 1;
        char esc[8];
        switch (c) {
        case '"': sb_add(b, "\\\"", 2); break;
        case '\\': sb_add(b, "\\\\", 2); break;
        case '\n': sb_add(b, "\\n", 2); break;
        case '\r': sb_add(b, "\\r", 2); break;
        case '\t': sb_add(b, "\\t", 2); break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_add(b, esc, 6);
        }
    }
    sb_add(b, s + run, n - run);
    sb_add(b, "\"", 1);
}

/* ---- text checks ---- */

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Strict UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF),
 * as the gateway checks it. */
static bool utf8_valid(const char *str, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)str[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        /* The sequence's length, its lead byte's payload, and the least
         * code point it may encode (anything less is an overlong form). */
        size_t len;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            unsigned char cc = (unsigned char)str[i + k];
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

/* Whether `name`, under a directory path of dir_len bytes, makes a path
 * the gateway takes: no control byte or backslash, UTF-8, at most
 * PATH_MAX_BYTES in all. */
static bool name_ok(const char *name, size_t dir_len)
{
    size_t n = strlen(name);
    if (n == 0 || dir_len + (dir_len ? 1 : 0) + n > PATH_MAX_BYTES) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f || c == '\\') return false;
    }
    return utf8_valid(name, n);
}

/* ---- the path table ---- */

struct entry {
    struct entry *next; /* hash chain */
    uint64_t sent_hash;    /* the content the gateway holds, when known */
    uint64_t refused_hash; /* the content the gateway refused, when refused */
    bool known, refused, pending;
    char path[]; /* relative to the root */
};

struct table {
    struct entry **slot;
    size_t nslot, n;
};

static struct entry **table_link(struct table *t, const char *path)
{
    struct entry **pp = &t->slot[fnv1a(path, strlen(path)) & (t->nslot - 1)];
    while (*pp && strcmp((*pp)->path, path) != 0) pp = &(*pp)->next;
    return pp;
}

static struct entry *table_find(struct table *t, const char *path)
{
    return t->nslot ? *table_link(t, path) : NULL;
}

/* The entry of `path`, created (nothing known, not pending) when missing. */
static struct entry *table_get(struct table *t, const char *path)
{
    if (t->n + 1 > t->nslot) {
        size_t nslot = t->nslot ? t->nslot * 2 : 256;
        struct entry **slot = xcalloc(nslot, sizeof *slot);
        for (size_t i = 0; i < t->nslot; i++)
            for (struct entry *e = t->slot[i], *next; e; e = next) {
                next = e->next;
                size_t k = fnv1a(e->path, strlen(e->path)) & (nslot - 1);
                e->next = slot[k];
                slot[k] = e;
            }
        free(t->slot);
        t->slot = slot;
        t->nslot = nslot;
    }
    struct entry **pp = table_link(t, path);
    if (*pp) return *pp;
    size_t len = strlen(path);
    struct entry *e = xcalloc(1, sizeof *e + len + 1);
    memcpy(e->path, path, len + 1);
    *pp = e;
    t->n++;
    return e;
}

static void table_remove(struct table *t, struct entry *e)
{
    struct entry **pp = table_link(t, e->path);
    if (*pp != e) return;
    *pp = e->next;
    free(e);
    t->n--;
}

static void table_cleanup(struct table *t)
{
    for (size_t i = 0; i < t->nslot; i++)
        for (struct entry *e = t->slot[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(t->slot);
    t->slot = NULL;
    t->nslot = t->n = 0;
}

/* ---- the watcher ---- */

struct watch {
    int wd;
    char *dir; /* "" for the root, else "a/b" */
};

struct watcher {
    const struct context_watch_opts *o;
    char *root; /* realpath of DIR */
    struct ctl_ignore *ignore;
    int ifd, sig_r;
    struct table files;
    size_t n_pending, n_known;
    struct watch *watches; /* sorted by wd */
    size_t n_watches, cap_watches;
    int64_t first_event_ms, last_event_ms; /* of the unsent events (0: none) */
    bool need_reset; /* the next delta empties the project first (a snapshot) */
    bool rescan;     /* walk DIR again before the next delta */
    bool snapshot;   /* the flush under way began as a snapshot */
    bool root_gone;
    bool watch_limit_told;
    bool count_unreliable; /* the gateway's file count is not compared any more */
    int backoff_ms; /* 0: the gateway answered last time */
    int64_t retry_at_ms, next_check_ms;
    char last_error[512];
    int refusals_shown;
    /* what the flush under way left out, for its first line */
    char left_out[512];
    size_t n_left_out;
};

static bool stopping(void)
{
    return got_signal != 0;
}

static char *join(const char *dir, const char *name)
{
    return *dir ? xasprintf("%s/%s", dir, name) : xstrdup(name);
}

static char *full_path(const struct watcher *w, const char *rel)
{
    return *rel ? xasprintf("%s/%s", w->root, rel) : xstrdup(w->root);
}

static void mark_pending(struct watcher *w, struct entry *e)
{
    if (e->pending) return;
    e->pending = true;
    w->n_pending++;
}

static void set_known(struct watcher *w, struct entry *e, bool known)
{
    if (e->known == known) return;
    e->known = known;
    if (known) w->n_known++;
    else w->n_known--;
}

static void note_event(struct watcher *w)
{
    int64_t now = clock_mono_ms();
    w->last_event_ms = now;
    if (!w->first_event_ms) w->first_event_ms = now;
}

/* ---- inotify watches ---- */

static size_t watch_index(const struct watcher *w, int wd)
{
    size_t lo = 0, hi = w->n_watches;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (w->watches[mid].wd < wd) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static struct watch *watch_find(struct watcher *w, int wd)
{
    size_t i = watch_index(w, wd);
    return i < w->n_watches && w->watches[i].wd == wd ? &w->watches[i] : NULL;
}

/* Records that wd watches `dir` (inotify gives an inode's existing wd back
 * when it is added again, e.g. after a move inside the tree). */
static void watch_set(struct watcher *w, int wd, const char *dir)
{
    size_t i = watch_index(w, wd);
    if (i < w->n_watches && w->watches[i].wd == wd) {
        free(w->watches[i].dir);
        w->watches[i].dir = xstrdup(dir);
        return;
    }
    if (w->n_watches == w->cap_watches) {
        w->cap_watches = w->cap_watches ? w->cap_watches * 2 : 64;
        w->watches = xrealloc(w->watches, w->cap_watches * sizeof *w->watches);
    }
    memmove(&w->watches[i + 1], &w->watches[i], (w->n_watches - i) * sizeof *w->watches);
    w->watches[i] = (struct watch){.wd = wd, .dir = xstrdup(dir)};
    w->n_watches++;
}

static void watch_drop(struct watcher *w, size_t i)
{
    free(w->watches[i].dir);
    memmove(&w->watches[i], &w->watches[i + 1], (w->n_watches - i - 1) * sizeof *w->watches);
    w->n_watches--;
}

static bool under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && path[n] == '/';
}

/* Stops watching `dir` and everything below it (it moved away: its watches
 * would report events under the old name). */
static void unwatch_subtree(struct watcher *w, const char *dir)
{
    for (size_t i = w->n_watches; i-- > 0;) {
        const char *d = w->watches[i].dir;
        if (strcmp(d, dir) != 0 && !under(d, dir)) continue;
        inotify_rm_watch(w->ifd, w->watches[i].wd);
        watch_drop(w, i);
    }
}

/* ---- walking the tree ---- */

/* Watches directory `rel` and everything below it that is not ignored, and
 * marks every regular file found pending. */
static void walk(struct watcher *w, const char *rel)
{
    if (stopping() || (*rel && ctl_ignore_match(w->ignore, rel))) return;
    char *full = full_path(w, rel);
    int wd = inotify_add_watch(w->ifd, full, WATCH_MASK);
    if (wd >= 0) {
        watch_set(w, wd, rel);
    } else if (errno == ENOSPC && !w->watch_limit_told) {
        fprintf(stderr, "aiproxyctl: context: the inotify watch limit is reached "
                        "(sysctl fs.inotify.max_user_watches); changes under %s and other new "
                        "directories are not seen\n", *rel ? rel : ".");
        w->watch_limit_told = true;
    }
    int fd = open(full, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    free(full);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) close(fd);
        return;
    }
    size_t rel_len = strlen(rel);
    struct dirent *de;
    while ((de = readdir(d)) && !stopping()) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strcmp(name, ".git") == 0)
            continue;
        if (!name_ok(name, rel_len)) {
            fprintf(stderr, "aiproxyctl: context: left out %s%s%s: the name has a control byte, "
                            "a backslash or invalid UTF-8, or the path is over %d bytes\n",
                    rel, rel_len ? "/" : "", name, PATH_MAX_BYTES);
            continue;
        }
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
            type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
        }
        if (type != DT_DIR && type != DT_REG) continue; /* symlinks, devices, sockets */
        char *child = join(rel, name);
        if (type == DT_DIR) walk(w, child);
        else mark_pending(w, table_get(&w->files, child));
        free(child);
    }
    closedir(d);
}

/* Looks at everything again: every path the gateway holds and whatever is
 * on disk (after an overflow of the event queue, a .gitignore edit, or
 * before a snapshot). Unchanged files are not sent again. */
static void rescan_all(struct watcher *w)
{
    for (size_t i = 0; i < w->files.nslot; i++)
        for (struct entry *e = w->files.slot[i]; e; e = e->next) mark_pending(w, e);
    walk(w, "");
}

/* ---- inotify events ---- */

static void on_event(struct watcher *w, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW) {
        w->rescan = true;
        note_event(w);
        return;
    }
    struct watch *wt = watch_find(w, ev->wd);
    if (!wt) return; /* a watch already dropped (moved away) */
    bool is_root = wt->dir[0] == '\0';
    if (ev->mask & IN_IGNORED) {
        if (is_root) w->root_gone = true;
        watch_drop(w, (size_t)(wt - w->watches));
        return;
    }
    if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
        /* A subdirectory's own removal is seen in its parent's events. */
        if (is_root) w->root_gone = true;
        return;
    }
    if (ev->len == 0 || ev->name[0] == '\0' || strcmp(ev->name, ".git") == 0) return;
    if (!name_ok(ev->name, strlen(wt->dir))) return;
    char *rel = join(wt->dir, ev->name);
    if (strcmp(ev->name, ".gitignore") == 0) w->rescan = true; /* and it is a file to send */
    if (ev->mask & IN_ISDIR) {
        if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
            for (size_t i = 0; i < w->files.nslot; i++)
                for (struct entry *e = w->files.slot[i]; e; e = e->next)
                    if (under(e->path, rel)) mark_pending(w, e);
            if (ev->mask & IN_MOVED_FROM) unwatch_subtree(w, rel);
        }
        /* Files may be written in a new directory before its watch exists:
         * the walk finds them. */
        if (ev->mask & (IN_CREATE | IN_MOVED_TO)) walk(w, rel);
    } else {
        mark_pending(w, table_get(&w->files, rel));
    }
    free(rel);
    note_event(w);
}

static void read_events(struct watcher *w)
{
    /* Aligned for struct inotify_event, as inotify(7) shows. */
    char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (!stopping()) {
        ssize_t n = read(w->ifd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const void *)p;
            p += sizeof *ev + ev->len;
            on_event(w, ev);
        }
    }
}

/* ---- reading a file ---- */

/* Reads `rel` when it is a regular, not ignored, text file within the size
 * cap: returns true with the content (heap; caller frees). Otherwise false,
 * with *why set when the file exists but is left out for what it holds. */
static bool read_text(struct watcher *w, const char *rel, char **out, size_t *len,
                      const char **why)
{
    *why = NULL;
    *out = NULL;
    if (ctl_ignore_match(w->ignore, rel)) return false;
    char *full = full_path(w, rel);
    struct stat st;
    int fd = -1;
    if (lstat(full, &st) == 0 && S_ISREG(st.st_mode))
        fd = open(full, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    free(full);
    if (fd < 0) return false;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return false;
    }
    int64_t max = w->o->max_file_size;
    if (st.st_size > max) {
        close(fd);
        *why = "over --max-file-size";
        return false;
    }
    /* The file may grow while it is read: read to EOF, up to the cap. */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        if (n == cap) {
            if ((int64_t)n > max) break;
            cap *= 2;
            buf = xrealloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r < 0) n = SIZE_MAX; /* unreadable: left out like a vanished file */
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    if (n == SIZE_MAX) {
        free(buf);
        return false;
    }
    if ((int64_t)n > max) {
        free(buf);
        *why = "over --max-file-size";
        return false;
    }
    if (memchr(buf, '\0', n) || !utf8_valid(buf, n)) {
        *why = memchr(buf, '\0', n) ? "binary" : "not UTF-8";
        free(buf);
        return false;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return true;
}

/* ---- sending ---- */

struct change {
    struct entry *e;
    bool deleted, done;
    uint64_t hash;
    struct sbuf frag; /* {"path": ..., "content"|"deleted": ...} */
};

enum send_rc {
    SEND_OK,    /* sent (or refused for good, file by file) */
    SEND_AGAIN, /* the gateway lost the project: a snapshot goes out now */
    SEND_RETRY, /* the gateway is away or failing: back off, changes kept */
    SEND_FATAL, /* the key was refused */
};

static void note_failure(struct watcher *w, const char *msg)
{
    if (stopping()) return;
    if (strcmp(msg, w->last_error) != 0) {
        fprintf(stderr, "aiproxyctl: context: %s; retrying, changes are kept\n", msg);
        snprintf(w->last_error, sizeof w->last_error, "%s", msg);
    }
    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : BACKOFF_FIRST_MS;
    if (w->backoff_ms > BACKOFF_MAX_MS) w->backoff_ms = BACKOFF_MAX_MS;
    w->retry_at_ms = clock_mono_ms() + w->backoff_ms;
}

static void note_success(struct watcher *w)
{
    if (w->last_error[0]) fprintf(stderr, "aiproxyctl: context: %s answers again\n", w->o->url);
    w->last_error[0] = '\0';
    w->backoff_ms = 0;
}

/* Why a call failed, in a sentence for note_failure. */
static void describe_failure(const struct watcher *w, const char *path, int status, json_t *doc,
                             char *msg, size_t cap)
{
    if (status < 0)
        snprintf(msg, cap, "cannot reach %s (is aiproxyd running there?)", w->o->url);
    else if (!doc)
        snprintf(msg, cap, "%s answered HTTP %d with a body that is not JSON", path, status);
    else
        snprintf(msg, cap, "%s: HTTP %d: %s", path, status,
                 ctl_http_error_message(doc, "no message"));
}

static bool fatal_status(const struct watcher *w, const char *path, int status, json_t *doc)
{
    if (status != 401 && status != 403) return false;
    ctl_http_explain(w->o->url, w->o->key != NULL, path, status, doc);
    return true;
}

static void fmt_size(double b, char *buf, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    if (u == 0) snprintf(buf, cap, "%.0f B", b);
    else snprintf(buf, cap, "%.1f %s", b, units[u]);
}

static long long int_field(json_t *doc, const char *name)
{
    return (long long)json_integer_value(json_object_get(doc, name));
}

/* One line per delta the gateway took. */
static void print_delta(struct watcher *w, size_t n, bool reset, json_t *doc)
{
    if (w->o->json) {
        char *text = json_dumps(doc, JSON_COMPACT);
        puts(text ? text : "{}");
        free(text);
    } else {
        char clock[16] = "";
        time_t t = time(NULL);
        struct tm tm;
        if (localtime_r(&t, &tm)) strftime(clock, sizeof clock, "%H:%M:%S", &tm);
        char size[32];
        fmt_size((double)int_field(doc, "bytes"), size, sizeof size);
        long long files = int_field(doc, "files");
        printf("%s %s: %zu %s (+%lld -%lld lines) -> project %s: %lld %s, %s, %lld pending",
               clock, reset ? "snapshot" : w->snapshot ? "snapshot, continued" : "delta", n,
               n == 1 ? "path" : "paths", int_field(doc, "added"), int_field(doc, "removed"),
               w->o->project, files, files == 1 ? "file" : "files", size,
               int_field(doc, "pending"));
        if (w->n_left_out)
            printf("; left out %s%s", w->left_out,
                   w->n_left_out > LEFT_OUT_SHOWN ? ", ..." : "");
        putchar('\n');
    }
    w->left_out[0] = '\0';
    w->n_left_out = 0;
    fflush(stdout);
}

/* Records what a 200 answer says about the changes in cs[n]. */
static void apply_answer(struct watcher *w, struct change *cs, size_t n, bool reset, json_t *doc)
{
    if (reset) w->need_reset = false;
    for (size_t i = 0; i < n; i++) {
        struct entry *e = cs[i].e;
        cs[i].done = true;
        e->refused = false;
        if (cs[i].deleted) {
            set_known(w, e, false);
            if (!e->pending) table_remove(&w->files, e);
            cs[i].e = NULL;
        } else {
            set_known(w, e, true);
            e->sent_hash = cs[i].hash;
        }
    }
    json_t *rejected = json_object_get(doc, "rejected");
    for (size_t i = 0; i < json_array_size(rejected); i++) {
        json_t *r = json_array_get(rejected, i);
        const char *path = json_string_value(json_object_get(r, "path"));
        struct entry *e = path ? table_find(&w->files, path) : NULL;
        if (e && e->known) {
            set_known(w, e, false);
            e->refused = true;
            e->refused_hash = e->sent_hash;
        }
        const char *reason = json_string_value(json_object_get(r, "reason"));
        fprintf(stderr, "aiproxyctl: context: the gateway left out %s: %s\n", path ? path : "?",
                reason ? reason : "no reason given");
    }
    print_delta(w, n, reset, doc);
    json_t *files = json_object_get(doc, "files");
    if (!json_is_integer(files) || json_integer_value(files) >= (json_int_t)w->n_known ||
        w->count_unreliable)
        return;
    if (w->snapshot) {
        /* Short right after a snapshot: the gateway counts differently
         * (another watcher on the project deleting files?). Sending
         * snapshots in a loop would not help. */
        fprintf(stderr, "aiproxyctl: context: the gateway holds %lld of the %zu files just sent "
                        "for project %s; lost state is now detected by the project's absence "
                        "only\n", (long long)json_integer_value(files), w->n_known,
                w->o->project);
        w->count_unreliable = true;
        return;
    }
    fprintf(stderr, "aiproxyctl: context: the gateway holds %lld of the %zu files sent for "
                    "project %s (restarted, expired or cleared?); sending a snapshot\n",
            (long long)json_integer_value(files), w->n_known, w->o->project);
    w->need_reset = true;
    w->rescan = true;
}

/* A change the gateway refused on its own (400 or 413 for a body holding
 * just it): left out until the file changes again. */
static void refuse(struct watcher *w, struct change *c, int status, json_t *doc)
{
    c->done = true;
    if (!c->deleted) {
        c->e->refused = true;
        c->e->refused_hash = c->hash;
    }
    if (w->refusals_shown < REFUSALS_SHOWN)
        fprintf(stderr, "aiproxyctl: context: the gateway refused %s (HTTP %d: %s); it is left "
                        "out until it changes\n", c->e->path, status,
                ctl_http_error_message(doc, "no message"));
    else if (w->refusals_shown == REFUSALS_SHOWN)
        fprintf(stderr, "aiproxyctl: context: (further refusals of this delta not shown)\n");
    w->refusals_shown++;
}

/* POSTs the changes cs[n] as one delta (reset when a snapshot is due). */
static enum send_rc send_changes(struct watcher *w, struct change *cs, size_t n)
{
    bool reset = w->need_reset;
    struct sbuf body = {0};
    sb_str(&body, "{\"project\":");
    sb_json(&body, w->o->project, strlen(w->o->project));
    sb_str(&body, reset ? ",\"reset\":true,\"files\":[" : ",\"reset\":false,\"files\":[");
    for (size_t i = 0; i < n; i++) {
        if (i) sb_add(&body, ",", 1);
        sb_add(&body, cs[i].frag.p, cs[i].frag.len);
    }
    sb_str(&body, "]}");
    json_t *doc = NULL;
    int status = ctl_http_call(w->o->url, w->o->key, "POST", "/v1/context/delta", body.p, body.len,
                               DELTA_TIMEOUT_MS, &doc);
    free(body.p);
    enum send_rc rc = SEND_RETRY;
    if (stopping()) goto out; /* the signal cut the request short */
    if (status == 200 && json_is_object(doc)) {
        note_success(w);
        apply_answer(w, cs, n, reset, doc);
        rc = w->need_reset ? SEND_AGAIN : SEND_OK;
        goto out;
    }
    if (fatal_status(w, "/v1/context/delta", status, doc)) {
        rc = SEND_FATAL;
        goto out;
    }
    /* 413: a limit (the body, the project's files or bytes); 400: a file
     * the gateway will not take. Too many projects is a 400 on "project":
     * nothing to halve there, it waits like an outage. */
    const char *param = json_string_value(json_object_get(json_object_get(doc, "error"), "param"));
    bool refused = status == 413 || (status == 400 && !(param && strcmp(param, "project") == 0));
    if (refused && n > 1) {
        /* Which file is to blame is not said: halve until it is alone. */
        size_t half = n / 2;
        rc = send_changes(w, cs, half);
        if (rc == SEND_OK) rc = send_changes(w, cs + half, n - half);
        goto out;
    }
    if (refused) {
        note_success(w);
        refuse(w, &cs[0], status, doc);
        rc = SEND_OK;
        goto out;
    }
    char msg[512];
    describe_failure(w, "/v1/context/delta", status, doc, msg, sizeof msg);
    note_failure(w, msg);
    if (status == 404) {
        /* No context buffer there (context.enabled off, another gateway):
         * whatever it held before is not to be trusted when it comes back. */
        w->need_reset = true;
        w->rescan = true;
    }
out:
    json_decref(doc);
    return rc;
}

static void note_left_out(struct watcher *w, const char *path, const char *why)
{
    if (w->n_left_out++ >= LEFT_OUT_SHOWN) return;
    size_t n = strlen(w->left_out);
    snprintf(w->left_out + n, sizeof w->left_out - n, "%s%s (%s)", n ? ", " : "", path, why);
}

/* What to send for the pending entry e: returns true with *c filled, or
 * false when there is nothing to send (unchanged, or left out and not held
 * by the gateway: then *drop says the entry can go). */
static bool evaluate(struct watcher *w, struct entry *e, struct change *c, bool *drop)
{
    *drop = false;
    *c = (struct change){.e = e};
    char *content = NULL;
    size_t len = 0;
    const char *why = NULL;
    bool present = read_text(w, e->path, &content, &len, &why);
    if (why) note_left_out(w, e->path, why);
    if (present) {
        c->hash = fnv1a(content, len) ^ ((uint64_t)len * 0x9E3779B97F4A7C15ULL);
        if ((e->known && e->sent_hash == c->hash) || (e->refused && e->refused_hash == c->hash)) {
            free(content);
            return false;
        }
        sb_str(&c->frag, "{\"path\":");
        sb_json(&c->frag, e->path, strlen(e->path));
        sb_str(&c->frag, ",\"content\":");
        sb_json(&c->frag, content, len);
        sb_str(&c->frag, "}");
        free(content);
        return true;
    }
    if (!e->known) {
        *drop = true;
        return false;
    }
    c->deleted = true;
    sb_str(&c->frag, "{\"path\":");
    sb_json(&c->frag, e->path, strlen(e->path));
    sb_str(&c->frag, ",\"deleted\":true}");
    return true;
}

/* Frees a change's body; a change not taken is pending again. */
static void change_release(struct watcher *w, struct change *c)
{
    if (!c->done && c->e) mark_pending(w, c->e);
    free(c->frag.p);
    c->frag = (struct sbuf){0};
}

static int cmp_entry(const void *a, const void *b)
{
    const struct entry *const *x = a, *const *y = b;
    return strcmp((*x)->path, (*y)->path);
}

/* Sends every pending change, in path order, in bodies under
 * CONTEXT_WATCH_BATCH_BYTES. On a failure the changes not taken stay
 * pending. */
static enum send_rc flush(struct watcher *w)
{
    if (w->rescan) {
        w->rescan = false;
        rescan_all(w);
    }
    w->snapshot = w->need_reset;
    w->refusals_shown = 0;
    w->left_out[0] = '\0';
    w->n_left_out = 0;
    if (w->need_reset) {
        /* The project is emptied first: nothing the gateway held counts. */
        for (size_t i = 0; i < w->files.nslot; i++)
            for (struct entry *e = w->files.slot[i]; e; e = e->next) {
                set_known(w, e, false);
                e->refused = false;
                mark_pending(w, e);
            }
    }
    size_t n_items = 0;
    struct entry **items = xmalloc((w->n_pending + 1) * sizeof *items);
    for (size_t i = 0; i < w->files.nslot; i++)
        for (struct entry *e = w->files.slot[i]; e; e = e->next)
            if (e->pending) items[n_items++] = e;
    qsort(items, n_items, sizeof *items, cmp_entry);

    struct change *batch = xmalloc(16 * sizeof *batch);
    size_t n_batch = 0, cap_batch = 16, batch_bytes = 0;
    enum send_rc rc = SEND_OK;
    for (size_t i = 0; i < n_items && rc == SEND_OK && !stopping(); i++) {
        struct entry *e = items[i];
        e->pending = false;
        w->n_pending--;
        struct change c;
        bool drop;
        if (!evaluate(w, e, &c, &drop)) {
            if (drop) table_remove(&w->files, e);
            continue;
        }
        if (n_batch && batch_bytes + c.frag.len > CONTEXT_WATCH_BATCH_BYTES) {
            rc = send_changes(w, batch, n_batch);
            for (size_t k = 0; k < n_batch; k++) change_release(w, &batch[k]);
            n_batch = batch_bytes = 0;
        }
        if (n_batch == cap_batch) {
            cap_batch *= 2;
            batch = xrealloc(batch, cap_batch * sizeof *batch);
        }
        batch[n_batch++] = c;
        batch_bytes += c.frag.len + 1;
    }
    /* A snapshot of nothing still empties the project. */
    if (rc == SEND_OK && !stopping() && (n_batch || w->need_reset))
        rc = send_changes(w, batch, n_batch);
    for (size_t k = 0; k < n_batch; k++) change_release(w, &batch[k]);
    free(batch);
    free(items);
    if (rc == SEND_OK && !w->n_pending) w->first_event_ms = w->last_event_ms = 0;
    return rc;
}

/* Asks the gateway whether it still holds the project (an idle watcher's
 * heartbeat). */
static enum send_rc check_project(struct watcher *w)
{
    json_t *doc = NULL;
    int status = ctl_http_call(w->o->url, w->o->key, "GET", "/v1/context/stats", NULL, 0,
                               CHECK_TIMEOUT_MS, &doc);
    enum send_rc rc = SEND_RETRY;
    if (stopping()) goto out;
    if (fatal_status(w, "/v1/context/stats", status, doc)) {
        rc = SEND_FATAL;
        goto out;
    }
    json_t *projects = json_object_get(doc, "projects");
    if (status != 200 || !json_is_array(projects)) {
        char msg[512];
        describe_failure(w, "/v1/context/stats", status, doc, msg, sizeof msg);
        note_failure(w, msg);
        if (status == 404) {
            w->need_reset = true;
            w->rescan = true;
        }
        goto out;
    }
    note_success(w);
    rc = SEND_OK;
    json_t *mine = NULL;
    for (size_t i = 0; i < json_array_size(projects); i++) {
        json_t *p = json_array_get(projects, i);
        const char *name = json_string_value(json_object_get(p, "project"));
        if (name && strcmp(name, w->o->project) == 0) mine = p;
    }
    long long files = mine ? int_field(mine, "files") : 0;
    if ((!mine && w->n_known) || (!w->count_unreliable && files < (long long)w->n_known)) {
        if (mine)
            fprintf(stderr, "aiproxyctl: context: the gateway holds %lld of the %zu files sent "
                            "for project %s; sending a snapshot\n", files, w->n_known,
                    w->o->project);
        else
            fprintf(stderr, "aiproxyctl: context: the gateway no longer has project %s "
                            "(restarted, expired or cleared?); sending a snapshot\n",
                    w->o->project);
        w->need_reset = true;
        w->rescan = true;
        rc = SEND_AGAIN;
    }
out:
    json_decref(doc);
    return rc;
}

/* ---- the loop ---- */

/* When the next send or check is due (monotonic ms), or -1 for never. */
static int64_t next_due(const struct watcher *w, int64_t now)
{
    int64_t at = -1;
    if (w->need_reset) {
        at = now;
    } else if (w->n_pending || w->rescan) {
        at = w->last_event_ms + w->o->debounce_ms;
        int64_t cap = (int64_t)w->o->debounce_ms * SETTLE_CAP_FACTOR;
        if (cap < SETTLE_CAP_MIN_MS) cap = SETTLE_CAP_MIN_MS;
        if (w->first_event_ms && at > w->first_event_ms + cap) at = w->first_event_ms + cap;
    } else if (w->backoff_ms) {
        at = w->retry_at_ms;
    } else if (w->o->check_interval_ms > 0) {
        at = w->next_check_ms;
    }
    if (at >= 0 && w->backoff_ms && at < w->retry_at_ms) at = w->retry_at_ms;
    return at;
}

static void watcher_cleanup(struct watcher *w)
{
    table_cleanup(&w->files);
    for (size_t i = 0; i < w->n_watches; i++) free(w->watches[i].dir);
    free(w->watches);
    if (w->ifd >= 0) close(w->ifd);
    ctl_ignore_free(w->ignore);
    free(w->root);
}

int context_watch_run(const struct context_watch_opts *o)
{
    struct watcher w = {.o = o, .ifd = -1, .sig_r = -1};
    int pipefd[2] = {-1, -1};
    int rc = 1;
    struct stat st;
    char err[512];
    w.root = realpath(o->dir, NULL);
    if (!w.root || stat(w.root, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "aiproxyctl: context watch: %s: %s\n", o->dir,
                w.root ? "not a directory" : strerror(errno));
        goto out;
    }
    w.ignore = ctl_ignore_new(w.root, err, sizeof err);
    if (!w.ignore) {
        fprintf(stderr, "aiproxyctl: context watch: %s\n", err);
        goto out;
    }
    w.ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w.ifd < 0 || pipe2(pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
        fprintf(stderr, "aiproxyctl: context watch: %s: %s\n",
                w.ifd < 0 ? "inotify is unavailable" : "pipe", strerror(errno));
        goto out;
    }
    w.sig_r = pipefd[0];
    signal_pipe_w = pipefd[1];
    /* No SA_RESTART: a blocking call (a request to the gateway) returns
     * EINTR, and the loop sees the signal at once. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A gateway that goes away mid-request is an error to retry, not a
     * reason to die. */
    struct sigaction ign = {.sa_handler = SIG_IGN};
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, NULL);

    w.need_reset = true;
    walk(&w, "");
    if (!w.n_watches && !stopping()) {
        fprintf(stderr, "aiproxyctl: context watch: cannot watch %s: %s\n", w.root,
                strerror(errno));
        goto out;
    }
    if (!o->json)
        printf("watching %s as project %s on %s (%zu %s; ignore rules from %s)\n", w.root,
               o->project, o->url, w.n_watches, w.n_watches == 1 ? "directory" : "directories",
               ctl_ignore_source(w.ignore));
    fflush(stdout);

    for (;;) {
        if (stopping()) {
            rc = 0;
            break;
        }
        if (w.root_gone) {
            fprintf(stderr, "aiproxyctl: context watch: %s was removed or moved away; "
                            "stopping\n", w.root);
            for (size_t i = 0; i < w.files.nslot; i++)
                for (struct entry *e = w.files.slot[i]; e; e = e->next) mark_pending(&w, e);
            w.rescan = false;
            if (!w.need_reset) (void)flush(&w); /* one attempt to send the deletions */
            rc = 1;
            break;
        }
        int64_t now = clock_mono_ms();
        int64_t due = next_due(&w, now);
        if (due >= 0 && due <= now) {
            enum send_rc r = w.need_reset || w.n_pending || w.rescan ? flush(&w)
                                                                     : check_project(&w);
            if (r == SEND_FATAL) break;
            if (r == SEND_OK) w.next_check_ms = clock_mono_ms() + o->check_interval_ms;
            continue;
        }
        struct pollfd pfd[2] = {{.fd = w.sig_r, .events = POLLIN}, {.fd = w.ifd, .events = POLLIN}};
        int64_t wait = due < 0 ? -1 : due - now;
        int n = poll(pfd, 2, wait > 60000 ? 60000 : (int)wait);
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "aiproxyctl: context watch: poll: %s\n", strerror(errno));
            break;
        }
        if (n > 0 && (pfd[1].revents & POLLIN)) read_events(&w);
    }
    if (rc == 0 && w.n_pending)
        fprintf(stderr, "aiproxyctl: context watch: stopped with %zu %s not sent\n", w.n_pending,
                w.n_pending == 1 ? "change" : "changes");
out:
    signal_pipe_w = -1;
    if (pipefd[0] >= 0) close(pipefd[0]);
    if (pipefd[1] >= 0) close(pipefd[1]);
    watcher_cleanup(&w);
    return rc;
}
