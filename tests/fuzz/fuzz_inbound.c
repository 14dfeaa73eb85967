// fuzz-sources: src/providers/inbound_anthropic.c src/providers/inbound_predict.c src/providers/pjson.c
/* fuzz_inbound: libFuzzer driver for the client-facing translators. The
 * first byte picks: 0/1 an Anthropic / predict request for
 * request_to_openai, 2/3 an OpenAI completion for response_from_openai,
 * 4 an OpenAI chunk stream (one chunk per line; "[DONE]" ends it, a line
 * starting with '!' is a stream error) for the Anthropic stream
 * translator, 5 an error body for error_from_openai. Whatever comes out
 * must be JSON (or SSE events whose data is JSON). */
#include <assert.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "providers/inbound.h"

static void check_json(const char *json, size_t len)
{
    json_error_t e;
    json_t *v = json_loadb(json, len, 0, &e);
    assert(json_is_object(v));
    json_decref(v);
}

/* Each emit is complete events: "event: X\ndata: {...}\n\n". */
static void on_events(void *ctx, const char *bytes, size_t len)
{
    (void)ctx;
    assert(len > 8 && memcmp(bytes, "event: ", 7) == 0);
    assert(bytes[len - 1] == '\n' && bytes[len - 2] == '\n');
    const char *d = strstr(bytes, "\ndata: ");
    assert(d && d < bytes + len);
    d += 7;
    check_json(d, (size_t)(bytes + len - 2 - d));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mode = data[0] % 6;
    size_t len = size - 1;
    char *copy = xmalloc(len + 1);
    memcpy(copy, data + 1, len);
    copy[len] = '\0';
    struct arena a;
    arena_init(&a);
    char *out = NULL;
    size_t out_len = 0;
    const struct inbound_ops *ops = mode % 2 ? &inbound_predict_ops : &inbound_anthropic_ops;
    if (mode < 2) {
        bool stream;
        struct inbound_routing r;
        struct inbound_error e;
        if (ops->request_to_openai(&a, copy, len, &out, &out_len, &stream, &r, &e) == 0) {
            check_json(out, out_len);
        } else {
            assert(e.message[0] != '\0');
        }
    } else if (mode < 4) {
        if (ops->response_from_openai(&a, NULL, copy, len, &out, &out_len) == 0) check_json(out, out_len);
    } else if (mode == 4) {
        void *st = inbound_anthropic_ops.stream_begin(&a, "r", NULL);
        char *save = NULL;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            if (strcmp(line, "[DONE]") == 0)
                inbound_anthropic_ops.stream_end(st, on_events, NULL);
            else if (line[0] == '!')
                inbound_anthropic_ops.stream_error(st, line + 1, strlen(line + 1), on_events, NULL);
            else
                inbound_anthropic_ops.stream_chunk(st, line, strlen(line), on_events, NULL);
        }
        inbound_anthropic_ops.stream_end(st, on_events, NULL);
    } else {
        for (int i = 0; i < 2; i++) {
            const struct inbound_ops *o = i ? &inbound_predict_ops : &inbound_anthropic_ops;
            int status = 400 + (int)(len % 200);
            if (o->error_from_openai(&a, status, copy, len, &out, &out_len) == 0 && i == 0)
                check_json(out, out_len);
        }
    }
    arena_free(&a);
    free(copy);
    return 0;
}
