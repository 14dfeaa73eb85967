/* fuzz_sse: libFuzzer driver for core/sse. The first two bytes pick the
 * event cap and seed the chunk sizes; the rest is fed whole and then in
 * those chunks, in both modes. Both feedings must give the same result and
 * the same events, and no event may exceed the cap.
 * Build: clang -g -fsanitize=fuzzer,address,undefined -Isrc tests/fuzz/fuzz_sse.c
 *        src/core/sse.c src/core/alloc.c */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/sse.h"

struct log {
    char *buf;
    size_t len, cap;
    size_t max;
};

static void log_add(struct log *l, const void *p, size_t n)
{
    if (l->len + n > l->cap) {
        l->cap = (l->len + n) * 2 + 64;
        l->buf = xrealloc(l->buf, l->cap);
    }
    if (n) memcpy(l->buf + l->len, p, n);
    l->len += n;
}

static int on_event(void *ctx, const struct sse_event *ev)
{
    struct log *l = ctx;

    assert(ev->data != NULL);
    assert(ev->data_len + ev->event_len <= l->max);
    assert(ev->event != NULL || ev->event_len == 0);
    /* Length-prefixed so different event lists never serialise alike. */
    log_add(l, &ev->event_len, sizeof ev->event_len);
    log_add(l, ev->event, ev->event_len);
    log_add(l, &ev->data_len, sizeof ev->data_len);
    log_add(l, ev->data, ev->data_len);
    return 0;
}

static int run(enum sse_mode mode, size_t max, const uint8_t *in, size_t len, uint32_t seed,
               struct log *l)
{
    struct sse_reader r;
    int rc = SSE_OK;
    size_t off = 0;

    memset(l, 0, sizeof *l);
    l->max = max;
    sse_reader_init(&r, mode, max, on_event, l);
    while (off < len && rc == SSE_OK) {
        size_t n = len - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            size_t c = 1 + (seed >> 16) % 32;
            if (c < n) n = c;
        }
        /* A private copy makes ASan catch reads past the chunk. */
        char *chunk = xmalloc(n);
        memcpy(chunk, in + off, n);
        rc = sse_reader_feed(&r, chunk, n);
        free(chunk);
        off += n;
    }
    if (rc == SSE_OK) rc = sse_reader_finish(&r);
    sse_reader_cleanup(&r);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    size_t max = 1 + (size_t)data[0] * 4;
    uint32_t seed = data[1] | 1u;
    data += 2;
    size -= 2;

    for (int m = 0; m < 2; m++) {
        enum sse_mode mode = m ? SSE_MODE_NDJSON : SSE_MODE_SSE;
        struct log whole, split;
        int rc1 = run(mode, max, data, size, 0, &whole);
        int rc2 = run(mode, max, data, size, seed, &split);
        assert(rc1 == SSE_OK || rc1 == SSE_ERR_TOO_LARGE);
        assert(rc1 == rc2);
        assert(whole.len == split.len);
        assert(whole.len == 0 || memcmp(whole.buf, split.buf, whole.len) == 0);
        free(whole.buf);
        free(split.buf);
    }
    return 0;
}
