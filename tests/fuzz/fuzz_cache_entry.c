// fuzz-sources: src/cache/entry.c
/* fuzz_cache_entry: libFuzzer driver for cache/entry (the byte form of a
 * cached answer, as read back from memory or Redis). For any bytes:
 * decoding never reads past them, and when it succeeds, encoding the
 * entry again gives the same bytes, its strings end inside the blob and
 * only the body holds NULs. The same bytes, read as an entry's fields
 * (six int64, a flags byte, four NUL-separated strings, then the body),
 * are encoded and must decode back to themselves. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/entry.h"
#include "core/arena.h"

static void check_decode(struct arena *a, const uint8_t *data, size_t size)
{
    /* an exact-size copy, so ASan sees a read past the blob */
    char *blob = malloc(size ? size : 1);
    if (size) memcpy(blob, data, size);
    struct cache_entry e;
    if (cache_entry_decode(blob, size, &e) == 0) {
        const char *s[] = {e.scope, e.model, e.endpoint, e.provider, e.upstream_model};
        for (size_t i = 0; i < 5; i++) {
            assert(s[i] >= blob && s[i] < blob + size);
            assert(strlen(s[i]) < (size_t)(blob + size - s[i]));
        }
        assert(e.body >= blob && e.body + e.body_len < blob + size && e.body[e.body_len] == '\0');
        size_t len = 0;
        char *again = cache_entry_encode(a, &e, &len);
        assert(again && len == size && memcmp(again, blob, size) == 0);
    }
    free(blob);
}

static int64_t take_i64(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    for (int i = 0; i < 8 && *p < end; i++, (*p)++) v |= (uint64_t)**p << (8 * i);
    int64_t out;
    memcpy(&out, &v, sizeof out);
    return out;
}

static void check_encode(struct arena *a, const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    struct cache_entry e = {0};
    e.created_ms = take_i64(&p, end);
    e.expires_ms = take_i64(&p, end);
    e.prompt_tokens = take_i64(&p, end);
    e.completion_tokens = take_i64(&p, end);
    e.cached_tokens = take_i64(&p, end);
    e.cost_nanos = take_i64(&p, end);
    e.usage_estimated = p < end && (*p++ & 1);
    /* five C strings (a NULL when the input has ended), then the body */
    char *copy = malloc(size + 1);
    size_t rest = (size_t)(end - p);
    if (rest) memcpy(copy, p, rest);
    copy[rest] = '\0';
    const char **s[] = {&e.scope, &e.model, &e.endpoint, &e.provider, &e.upstream_model};
    char *q = copy, *qend = copy + rest;
    for (size_t i = 0; i < 5; i++) {
        if (q >= qend) break;
        *s[i] = q;
        q += strlen(q) + 1;
    }
    if (q <= qend) {
        e.body = q;
        e.body_len = (size_t)(qend - q);
    }
    size_t len = 0;
    char *blob = cache_entry_encode(a, &e, &len);
    assert(blob);
    struct cache_entry d;
    assert(cache_entry_decode(blob, len, &d) == 0);
    assert(d.created_ms == e.created_ms && d.expires_ms == e.expires_ms);
    assert(d.prompt_tokens == e.prompt_tokens && d.completion_tokens == e.completion_tokens);
    assert(d.cached_tokens == e.cached_tokens && d.cost_nanos == e.cost_nanos);
    assert(d.usage_estimated == e.usage_estimated);
    const char *got[] = {d.scope, d.model, d.endpoint, d.provider, d.upstream_model};
    for (size_t i = 0; i < 5; i++) assert(strcmp(got[i], *s[i] ? *s[i] : "") == 0);
    assert(d.body_len == (e.body ? e.body_len : 0));
    assert(d.body_len == 0 || memcmp(d.body, e.body, d.body_len) == 0);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    struct arena a;
    arena_init(&a);
    check_decode(&a, data, size);
    check_encode(&a, data, size);
    arena_free(&a);
    return 0;
}
