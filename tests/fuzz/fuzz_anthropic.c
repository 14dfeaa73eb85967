// fuzz-sources: src/providers/anthropic.c src/providers/anthropic_native.c src/providers/pjson.c
/* fuzz_anthropic: libFuzzer driver for the anthropic adapter. The first
 * byte picks what the rest is: 0 a 200 answer for finish, 1 an error body
 * for error_body, 2 an event stream fed through the SSE reader (in chunks
 * seeded by the second byte) into stream_event, 3 a client request for
 * prepare (after the scan accepts it). Outputs must be JSON objects. */
#include <assert.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/scan.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "core/sse.h"
#include "providers/provider.h"

extern const struct provider_ops provider_anthropic_ops;
#define OPS (&provider_anthropic_ops)

struct ctx {
    struct provider_call *call;
    struct provider_stream st;
    int rc;
};

static void check_json(const char *json, size_t len)
{
    json_error_t e;
    json_t *v = json_loadb(json, len, 0, &e);
    assert(json_is_object(v));
    json_decref(v);
}

static void on_chunk(void *c, const char *json, size_t len)
{
    (void)c;
    check_json(json, len);
}

static int on_event(void *p, const struct sse_event *ev)
{
    struct ctx *c = p;
    if (c->rc == 0 && !c->st.done) c->rc = OPS->stream_event(c->call, &c->st, ev, on_chunk, c);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    int mode = data[0] % 4;
    uint32_t seed = data[1] | 1u;
    const char *body = (const char *)data + 2;
    size_t len = size - 2;
    char *copy = xmalloc(len + 1);
    memcpy(copy, body, len);
    copy[len] = '\0';

    struct config_provider p = {.name = "p", .type = PROVIDER_ANTHROPIC,
                                .endpoint = "https://api.anthropic.com/v1", .api_key = "k",
                                .max_tokens_default = 100};
    struct config_model m = {.name = "m", .upstream_id = "claude"};
    struct req_facts f;
    memset(&f, 0, sizeof f);
    struct arena a;
    arena_init(&a);
    struct provider_call call = {.kind = API_CHAT, .body = copy, .body_len = len, .facts = &f,
                                 .provider = &p, .model = &m, .arena = &a, .request_id = "r"};
    char *out = NULL;
    size_t out_len = 0;
    char err[256];
    if (mode == 0) {
        struct provider_response resp = {.status = 200, .body = copy, .len = len};
        struct provider_usage u = {0};
        if (OPS->finish(&call, &resp, &out, &out_len, &u, err, sizeof err) == 0) {
            check_json(out, out_len);
            /* cache writes reported are in the OpenAI answer too (SPEC section 9) */
            if (u.present && u.cache_write_tokens > 0)
                assert(memmem(out, out_len, "\"cache_write_tokens\"", 20) != NULL);
        }
    } else if (mode == 1) {
        struct provider_response resp = {.status = 400, .body = copy, .len = len};
        if (OPS->error_body(&call, &resp, &out, &out_len) == 0) check_json(out, out_len);
    } else if (mode == 2) {
        struct ctx c = {.call = &call};
        struct sse_reader r;
        sse_reader_init(&r, SSE_MODE_SSE, 1 << 16, on_event, &c);
        for (size_t off = 0; off < len;) {
            seed = seed * 1103515245u + 12345u;
            size_t n = 1 + (seed >> 16) % 64;
            if (n > len - off) n = len - off;
            if (sse_reader_feed(&r, copy + off, n) != SSE_OK) break;
            off += n;
        }
        (void)sse_reader_finish(&r);
        sse_reader_cleanup(&r);
        if (c.rc != 0) assert(c.st.error[0] != '\0');
    } else {
        struct scan_error se;
        if (scan_request(SCAN_CHAT, copy, len, &f, &se) == 0) {
            struct provider_request pr;
            if (OPS->prepare(&call, &pr, err, sizeof err) == 0) check_json(pr.body, pr.body_len);
        }
    }
    arena_free(&a);
    free(copy);
    return 0;
}
