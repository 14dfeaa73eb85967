/* sse: incremental server-sent-events / NDJSON reader (see sse.h).
 *
 * Lines are found with memchr, and a line that arrives whole inside one fed
 * buffer is parsed in place; only a line split across feeds is copied into
 * r->line. The line, data and event buffers are reused from event to event,
 * so a steady stream allocates nothing once they have grown. Every buffer is
 * bounded by max_event_bytes (STYLE rule 6). */
#include "core/sse.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* ---- buffers ---- */

/* Makes room for `need` bytes in *buf. Callers have already checked `need`
 * against max_event_bytes, so growth is bounded. */
static void reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) return;
    size_t n = *cap ? *cap : 256;
    while (n < need) n *= 2;
    *buf = xrealloc(*buf, n);
    *cap = n;
}

static void append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    reserve(buf, cap, *len + n);
    if (n) memcpy(*buf + *len, p, n);
    *len += n;
}

/* Bytes an event would occupy if a line of `line_len` were added to it. */
static size_t pending_bytes(const struct sse_reader *r, size_t line_len)
{
    return r->data_len + r->event_len + line_len;
}

/* ---- events ---- */

static void reset_event(struct sse_reader *r)
{
    r->data_len = 0;
    r->event_len = 0;
    r->has_data = false;
}

static int dispatch(struct sse_reader *r, const char *data, size_t data_len)
{
    struct sse_event ev = {
        .event = r->event_len ? r->event : NULL,
        .event_len = r->event_len,
        .data = data ? data : "",
        .data_len = data_len,
    };
    int rc = r->cb(r->ctx, &ev);
    return rc < 0 ? rc : SSE_OK;
}

static bool is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t') return false;
    return true;
}

/* Handles one complete line (without its terminator). */
static int on_line(struct sse_reader *r, const char *p, size_t n)
{
    if (r->mode == SSE_MODE_NDJSON) {
        /* Whitespace-only lines carry no JSON value; skipping them keeps a
         * stray "\r\n\r\n" from turning into an unparsable event. */
        if (is_blank(p, n)) return SSE_OK;
        return dispatch(r, p, n);
    }

    if (n == 0) {
        /* Blank line: dispatch. Per the SSE spec an event with no data
         * lines is dropped, and its event name is forgotten too. */
        int rc = SSE_OK;
        if (r->has_data) rc = dispatch(r, r->data, r->data_len);
        reset_event(r);
        return rc;
    }
    if (p[0] == ':') return SSE_OK; /* comment, e.g. ": keepalive" */

    const char *colon = memchr(p, ':', n);
    size_t name_len = colon ? (size_t)(colon - p) : n;
    const char *val = colon ? colon + 1 : p + n;
    size_t val_len = (size_t)(p + n - val);
    if (val_len && val[0] == ' ') {
        val++;
        val_len--;
    }

    if (name_len == 4 && memcmp(p, "data", 4) == 0) {
        if (r->has_data) append(&r->data, &r->data_len, &r->data_cap, "\n", 1);
        append(&r->data, &r->data_len, &r->data_cap, val, val_len);
        r->has_data = true;
    } else if (name_len == 5 && memcmp(p, "event", 5) == 0) {
        r->event_len = 0;
        append(&r->event, &r->event_len, &r->event_cap, val, val_len);
    }
    /* id, retry and unknown fields are ignored. */
    return SSE_OK;
}

/* ---- public API ---- */

void sse_reader_init(struct sse_reader *r, enum sse_mode mode, size_t max_event_bytes,
                     sse_event_cb cb, void *ctx)
{
    memset(r, 0, sizeof *r);
    r->mode = mode;
    r->max_event_bytes = max_event_bytes;
    r->cb = cb;
    r->ctx = ctx;
}

/* Finds the first '\r' or '\n' in [p, end). `*nl` and `*cr` cache the next
 * occurrence of each byte (or NULL when there is none before `end`), so that
 * a buffer using only one kind of terminator is not rescanned for the other
 * on every line, which would make CR-only or LF-only streams quadratic. */
static const char *find_eol(const char *p, const char *end, const char **nl, const char **cr)
{
    if (*nl && *nl < p) *nl = memchr(p, '\n', (size_t)(end - p));
    if (*cr && *cr < p) *cr = memchr(p, '\r', (size_t)(end - p));
    if (!*nl) return *cr;
    if (!*cr) return *nl;
    return *nl < *cr ? *nl : *cr;
}

int sse_reader_feed(struct sse_reader *r, const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;

    if (len == 0) return SSE_OK;
    if (r->after_cr) {
        /* The previous feed ended in '\r': a '\n' here belongs to it. */
        r->after_cr = false;
        if (*p == '\n') p++;
    }

    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *cr = memchr(p, '\r', (size_t)(end - p));
    while (p < end) {
        const char *eol = find_eol(p, end, &nl, &cr);
        if (!eol) {
            /* Incomplete line: keep it for the next feed. */
            size_t n = (size_t)(end - p);
            if (pending_bytes(r, r->line_len + n) > r->max_event_bytes) return SSE_ERR_TOO_LARGE;
            append(&r->line, &r->line_len, &r->line_cap, p, n);
            break;
        }

        size_t n = (size_t)(eol - p);
        if (pending_bytes(r, r->line_len + n) > r->max_event_bytes) return SSE_ERR_TOO_LARGE;
        int rc;
        if (r->line_len) {
            append(&r->line, &r->line_len, &r->line_cap, p, n);
            /* Clear before the callback so a stop leaves a tidy reader. */
            size_t line_len = r->line_len;
            r->line_len = 0;
            rc = on_line(r, r->line, line_len);
        } else {
            rc = on_line(r, p, n);
        }

        p = eol + 1;
        if (*eol == '\r') {
            if (p == end) r->after_cr = true;
            else if (*p == '\n') p++;
        }
        if (rc < 0) return rc;
    }
    return SSE_OK;
}

int sse_reader_finish(struct sse_reader *r)
{
    int rc = SSE_OK;

    r->after_cr = false;
    if (r->line_len) {
        size_t line_len = r->line_len;
        r->line_len = 0;
        rc = on_line(r, r->line, line_len);
        if (rc < 0) return rc;
    }
    if (r->mode == SSE_MODE_SSE) {
        /* Behaves as if the stream had ended with the blank line. */
        if (r->has_data) rc = dispatch(r, r->data, r->data_len);
        reset_event(r);
    }
    return rc;
}

void sse_reader_cleanup(struct sse_reader *r)
{
    free(r->line);
    free(r->data);
    free(r->event);
    r->line = r->data = r->event = NULL;
    r->line_len = r->line_cap = 0;
    r->data_len = r->data_cap = 0;
    r->event_len = r->event_cap = 0;
    r->has_data = false;
    r->after_cr = false;
}
