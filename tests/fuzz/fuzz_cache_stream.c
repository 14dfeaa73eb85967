// fuzz-sources: src/cache/stream.c
/* fuzz_cache_stream: libFuzzer driver for cache/stream. The input, split
 * at newlines (blank lines skipped), is a stream of chunks fed to an
 * accumulator in both modes (chat and completions). When it yields an
 * answer, replaying that answer (piece 7, and piece 1) and accumulating the
 * replay must give the same answer (json_equal), and every replayed chunk
 * must be valid JSON. The raw input is also replayed as a stored answer: it
 * must never crash, and what it emits must be valid JSON too. */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cache/stream.h"
#include "core/arena.h"

struct sink {
    struct cache_stream_acc *acc; /* NULL: only check the chunks */
    int seen;
};

static void on_chunk(void *ctx, const char *json, size_t len)
{
    struct sink *s = ctx;
    assert(json[len] == '\0');
    json_error_t e;
    json_t *v = json_loadb(json, len, 0, &e);
    assert(json_is_object(v));
    json_decref(v);
    if (s->acc) assert(cache_acc_feed(s->acc, json, len) == 0);
    s->seen++;
}

static void round_trip(struct arena *a, const char *answer, size_t len, bool completions,
                       size_t piece)
{
    json_error_t e;
    json_t *first = json_loadb(answer, len, 0, &e);
    assert(json_is_object(first));
    json_t *usage = json_object_get(first, "usage");
    int64_t pt = json_integer_value(json_object_get(usage, "prompt_tokens"));
    int64_t ct = json_integer_value(json_object_get(usage, "completion_tokens"));
    const char *id = json_string_value(json_object_get(first, "id"));
    assert(id);
    struct sink s = {.acc = cache_acc_new(completions)};
    int n = cache_replay(a, answer, len, completions, id, piece, on_chunk, &s);
    assert(n >= 0 && n == s.seen);
    size_t len2 = 0;
    char *again = cache_acc_finish(s.acc, a, pt, ct, &len2);
    assert(again);
    json_t *second = json_loadb(again, len2, 0, &e);
    assert(json_equal(first, second));
    json_decref(first);
    json_decref(second);
    cache_acc_free(s.acc);
}

static void accumulate(struct arena *a, const char *data, size_t size, bool completions)
{
    struct cache_stream_acc *acc = cache_acc_new(completions);
    size_t from = 0;
    while (from <= size) {
        const char *nl = memchr(data + from, '\n', size - from);
        size_t end = nl ? (size_t)(nl - data) : size;
        if (end > from)
            (void)cache_acc_feed(acc, data + from, end - from); /* blank lines skipped */
        from = end + 1;
    }
    size_t len = 0;
    char *answer = cache_acc_finish(acc, a, 11, 22, &len);
    if (answer) {
        round_trip(a, answer, len, completions, 7);
        round_trip(a, answer, len, completions, 1);
    }
    cache_acc_free(acc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    struct arena a;
    arena_init(&a);
    accumulate(&a, (const char *)data, size, false);
    accumulate(&a, (const char *)data, size, true);
    for (int completions = 0; completions < 2; completions++) {
        struct sink s = {0};
        int n = cache_replay(&a, (const char *)data, size, completions, "fz", 3, on_chunk, &s);
        assert(n == -1 ? s.seen == 0 : n == s.seen);
    }
    arena_free(&a);
    return 0;
}
