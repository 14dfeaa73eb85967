// fuzz-sources: src/grpc/wire.c src/grpc/translate.c src/providers/inbound_predict.c src/providers/pjson.c
// fuzz-libs: libprotobuf-c
// fuzz-proto: proto/aiproxy/v1/gateway.proto proto/grpc/health/v1/health.proto
/* fuzz_grpc: libFuzzer driver for the gRPC service's decoders: arbitrary
 * bytes as a framed request body for each method. The first byte picks the
 * method (0 Chat, 1 ChatStream, 2 Embed, 3 Predict, 4 ListModels, 5 Health
 * Check/Watch) and, with its bit 3, whether grpc-encoding is "identity"; the
 * rest is the body: the 5-byte prefix is read (grpc_frame_read), then the
 * message unpacked and translated. A translated request must be a JSON
 * object; an error must say why. With first byte 6 or 7 the rest is an
 * OpenAI answer (6: whole, for each method's response_from_openai; 7: one
 * chunk per line for the ChatStream translator): whatever comes out must be
 * framed messages that unpack. Then grpc-timeout and grpc-message. */
#include <assert.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aiproxy/v1/gateway.pb-c.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "grpc/translate.h"
#include "grpc/wire.h"
#include "providers/inbound.h"

#define MAX_MESSAGE (1 << 20)

static const struct inbound_ops *const methods[] = {
    &grpc_chat_ops, &grpc_chat_stream_ops, &grpc_embed_ops, &grpc_predict_ops,
};

static void check_json(const char *json, size_t len)
{
    json_error_t e;
    json_t *v = json_loadb(json, len, 0, &e);
    assert(json_is_object(v));
    json_decref(v);
}

static const uint8_t *check_frame(const char *framed, size_t len, size_t *n)
{
    const uint8_t *msg;
    assert(grpc_frame_read((const uint8_t *)framed, len, NULL, len, &msg, n) == GRPC_FRAME_OK);
    return msg;
}

static void on_chunk(void *ctx, const char *bytes, size_t len)
{
    size_t n;
    const uint8_t *msg = check_frame(bytes, len, &n);
    Aiproxy__V1__ChatChunk *c = aiproxy__v1__chat_chunk__unpack(NULL, n, msg);
    assert(c);
    aiproxy__v1__chat_chunk__free_unpacked(c, NULL);
}

static void decode(struct arena *a, int method, const uint8_t *body, size_t len, bool identity)
{
    const uint8_t *msg;
    size_t n;
    if (grpc_frame_read(body, len, identity ? "identity" : NULL, MAX_MESSAGE, &msg, &n) !=
        GRPC_FRAME_OK)
        return;
    assert(n <= MAX_MESSAGE && msg + n == body + len);
    if (method < 4) {
        char *out;
        size_t out_len;
        bool stream;
        struct inbound_routing r;
        struct inbound_error e;
        /* The flow hands the translator a NUL-terminated body. */
        char *copy = xmalloc(n + 1);
        memcpy(copy, msg, n);
        copy[n] = '\0';
        if (methods[method]->request_to_openai(a, copy, n, &out, &out_len, &stream, &r, &e) == 0)
            check_json(out, out_len);
        else
            assert(e.message[0] != '\0');
        free(copy);
    } else if (method == 4) {
        (void)grpc_list_models_request_ok(msg, n);
    } else {
        char *service;
        if (grpc_health_request(a, msg, n, &service) == 0) assert(service != NULL);
    }
}

static void answers(struct arena *a, const char *json, size_t len)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        char *out;
        size_t out_len, n;
        if (methods[i]->response_from_openai(a, NULL, json, len, &out, &out_len) == 0)
            check_frame(out, out_len, &n);
    }
    char *out;
    size_t out_len, n;
    if (grpc_models_from_json(a, json, len, &out, &out_len) == 0) check_frame(out, out_len, &n);
}

static void chunks(struct arena *a, const char *text, size_t len)
{
    const struct inbound_ops *ops = &grpc_chat_stream_ops;
    void *st = ops->stream_begin(a, "req_fuzz", NULL);
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (l > 0 && p[0] == '!') ops->stream_error(st, p + 1, l - 1, on_chunk, NULL);
        else ops->stream_chunk(st, p, l, on_chunk, NULL);
        p += l + 1;
    }
    ops->stream_end(st, on_chunk, NULL);
    const char *t = ops->stream_trailers(st);
    assert(t && strncmp(t, "grpc-status: ", 13) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int method = data[0] & 7;
    bool identity = (data[0] & 8) != 0;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    struct arena a;
    arena_init(&a);
    if (method < 6) {
        decode(&a, method, body, len, identity);
    } else {
        char *copy = xmalloc(len + 1);
        memcpy(copy, body, len);
        copy[len] = '\0';
        if (method == 6) answers(&a, copy, len);
        else chunks(&a, copy, len);
        /* the same bytes as grpc-timeout and grpc-message */
        int64_t ms;
        if (len < 16 && memchr(copy, '\0', len) == NULL && grpc_timeout_parse(copy, &ms) == 0)
            assert(ms >= 1);
        char enc[256], dec[256];
        grpc_percent_encode(copy, enc, sizeof enc);
        for (const char *p = enc; *p; p++) assert(*p >= 0x20 && *p <= 0x7e);
        grpc_percent_decode(enc, dec, sizeof dec);
        free(copy);
    }
    arena_free(&a);
    return 0;
}
