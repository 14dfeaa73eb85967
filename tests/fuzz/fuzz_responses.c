// fuzz-sources: src/providers/inbound_responses.c src/providers/inbound_responses_stream.c src/providers/pjson.c src/providers/pj_span.c
/* fuzz_responses: libFuzzer driver for the Responses API translator
 * (providers/responses.h). The first byte picks: 0 responses_parse; 1 a
 * request for responses_begin; 2 a stored history (the first line) and a
 * request (the rest) for responses_begin; 3 a chat completion for
 * response_from_openai; 4 a chunk stream (one chunk per line; "[DONE]"
 * ends it, a line starting with '!' is a stream error) for the event
 * stream. Whatever comes out must be JSON (SSE events whose data is JSON,
 * numbered from 0), and a stored result and conversation must be JSON. */
#include <assert.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "providers/inbound.h"
#include "providers/responses.h"

#define OPS (&inbound_responses_ops)

static json_t *check_json(const char *json, size_t len)
{
    json_error_t e;
    json_t *v = json_loadb(json, len, 0, &e);
    assert(v);
    return v;
}

struct seq {
    long long next;
};

/* Each emit is complete events: "event: X\ndata: {...}\n\n", X its type. */
static void on_events(void *ctx, const char *bytes, size_t len)
{
    struct seq *s = ctx;
    assert(len > 8 && memcmp(bytes, "event: ", 7) == 0);
    assert(bytes[len - 1] == '\n' && bytes[len - 2] == '\n');
    const char *d = strstr(bytes, "\ndata: ");
    assert(d && d < bytes + len);
    size_t nlen = (size_t)(d - bytes - 7);
    d += 7;
    json_t *v = check_json(d, (size_t)(bytes + len - 2 - d));
    assert(json_is_object(v));
    const char *type = json_string_value(json_object_get(v, "type"));
    assert(type && strlen(type) == nlen && memcmp(type, bytes + 7, nlen) == 0);
    assert(json_integer_value(json_object_get(v, "sequence_number")) == s->next);
    s->next++;
    json_decref(v);
}

static void check_stored(const struct responses_ctx *c)
{
    size_t len;
    const char *r = responses_result(c, &len);
    if (r) json_decref(check_json(r, len));
    const char *conv = responses_conversation(c, &len);
    if (conv) {
        json_t *v = check_json(conv, len);
        assert(json_is_array(v));
        json_decref(v);
    }
}

static struct responses_ctx *begin(struct arena *a, const char *body, size_t len, const char *hist,
                                   size_t hist_len)
{
    char *chat = NULL;
    size_t chat_len = 0;
    struct inbound_error e;
    struct responses_ctx *c =
        responses_begin(a, body, len, hist, hist_len, "resp_fuzz", 1, &chat, &chat_len, &e);
    if (c) {
        json_t *v = check_json(chat, chat_len);
        assert(json_is_object(v));
        json_decref(v);
    } else {
        assert(e.message[0] != '\0');
    }
    return c;
}

static const char base_request[] =
    "{\"model\":\"m\",\"instructions\":\"i\",\"input\":\"x\",\"stream\":true,"
    "\"tools\":[{\"type\":\"function\",\"name\":\"f\"}],\"max_output_tokens\":9}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int mode = data[0] % 5;
    size_t len = size - 1;
    char *copy = xmalloc(len + 1);
    memcpy(copy, data + 1, len);
    copy[len] = '\0';
    struct arena a;
    arena_init(&a);
    if (mode == 0) {
        struct responses_request r;
        struct inbound_error e;
        if (responses_parse(&a, copy, len, &r, &e) == 0) {
            assert(r.model);
        } else {
            assert(e.message[0] != '\0');
        }
    } else if (mode == 1) {
        (void)begin(&a, copy, len, NULL, 0);
    } else if (mode == 2) {
        char *nl = memchr(copy, '\n', len);
        size_t hlen = nl ? (size_t)(nl - copy) : len;
        const char *body = nl ? nl + 1 : base_request;
        size_t blen = nl ? len - hlen - 1 : strlen(base_request);
        struct responses_ctx *c = begin(&a, body, blen, copy, hlen);
        if (c) {
            static const char answer[] = "{\"model\":\"m\",\"choices\":[{\"message\":{\"content\":\"ok\"}}]}";
            char *out;
            size_t out_len;
            assert(OPS->response_from_openai(&a, c, answer, strlen(answer), &out, &out_len) == 0);
            json_decref(check_json(out, out_len));
            check_stored(c);
        }
    } else if (mode == 3) {
        struct responses_ctx *c = begin(&a, base_request, strlen(base_request), NULL, 0);
        assert(c);
        char *out;
        size_t out_len;
        if (OPS->response_from_openai(&a, c, copy, len, &out, &out_len) == 0) {
            json_decref(check_json(out, out_len));
            check_stored(c);
        }
        if (OPS->response_from_openai(&a, NULL, copy, len, &out, &out_len) == 0)
            json_decref(check_json(out, out_len));
    } else {
        struct responses_ctx *c = begin(&a, base_request, strlen(base_request), NULL, 0);
        assert(c);
        struct seq s = {0};
        void *st = OPS->stream_begin(&a, "r", c);
        char *save = NULL;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            if (strcmp(line, "[DONE]") == 0)
                OPS->stream_end(st, on_events, &s);
            else if (line[0] == '!')
                OPS->stream_error(st, line + 1, strlen(line + 1), on_events, &s);
            else
                OPS->stream_chunk(st, line, strlen(line), on_events, &s);
        }
        OPS->stream_end(st, on_events, &s);
        assert(s.next >= 3); /* created, in_progress, and an end */
        check_stored(c);
    }
    arena_free(&a);
    free(copy);
    return 0;
}
