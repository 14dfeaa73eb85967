/* sse: an incremental server-sent-events reader (and NDJSON reader) for
 * upstream streams. Bytes are fed as they arrive, split at any boundary; each
 * complete event is handed to a callback. Every buffer has a cap. */
#ifndef AIPROXY_CORE_SSE_H
#define AIPROXY_CORE_SSE_H

#include <stdbool.h>
#include <stddef.h>

/* One event. `event` is the `event:` field (NULL/0 when absent); `data` is
 * the joined `data:` lines (joined with '\n', one leading space after the
 * colon stripped). Pointers are valid only during the callback. For NDJSON,
 * each non-empty line is one event with `data` = the line. */
struct sse_event {
    const char *event;
    size_t event_len;
    const char *data;
    size_t data_len;
};

/* Return 0 to continue, or a negative value to stop: sse_reader_feed then
 * returns that value. */
typedef int (*sse_event_cb)(void *ctx, const struct sse_event *ev);

enum sse_mode { SSE_MODE_SSE, SSE_MODE_NDJSON };

enum {
    SSE_OK = 0,
    SSE_ERR_TOO_LARGE = -1000, /* one event exceeded max_event_bytes */
};

struct sse_reader {
    enum sse_mode mode;
    size_t max_event_bytes;
    sse_event_cb cb;
    void *ctx;
    /* private */
    char *line;      /* the current, incomplete line */
    size_t line_len, line_cap;
    char *data;      /* data of the event being assembled */
    size_t data_len, data_cap;
    bool has_data;
    char *event;     /* event name of the event being assembled */
    size_t event_len, event_cap;
    bool after_cr;   /* last byte fed was '\r' (a following '\n' is part of it) */
};

/* Prepares `r`. Events (line + data) above `max_event_bytes` fail with
 * SSE_ERR_TOO_LARGE. */
void sse_reader_init(struct sse_reader *r, enum sse_mode mode, size_t max_event_bytes,
                     sse_event_cb cb, void *ctx);
/* Feeds `len` bytes. Lines end with \n, \r\n or \r; events end with a blank
 * line; lines starting with ':' are comments; `id:` and `retry:` are
 * ignored. Returns SSE_OK, SSE_ERR_TOO_LARGE or a callback's negative value;
 * after an error the reader must not be fed again. */
int sse_reader_feed(struct sse_reader *r, const char *buf, size_t len);
/* Delivers a final event still pending at end of stream (a stream that ends
 * without the blank line). Returns as sse_reader_feed. */
int sse_reader_finish(struct sse_reader *r);
void sse_reader_cleanup(struct sse_reader *r);

#endif
