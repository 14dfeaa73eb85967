/* grpc_test: the gRPC service's pure parts: grpc/wire.c (message framing,
 * grpc-timeout, status mapping, grpc-message percent-encoding) and
 * grpc/translate.c (protobuf requests -> OpenAI JSON, OpenAI answers and
 * chunks -> protobuf messages, health and model list), bad messages
 * included. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "aiproxy/v1/gateway.pb-c.h"
#include "api/scan.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/translate.h"
#include "grpc/wire.h"
#include "providers/inbound.h"

/* ---- helpers ---- */

/* Packs a message (no prefix) into the arena. */
static uint8_t *pack(struct arena *a, const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = arena_alloc(a, *len + 1);
    protobuf_c_message_pack(m, buf);
    return buf;
}

/* Checks a framed answer's prefix and returns the message inside. */
static const uint8_t *unframe(const char *framed, size_t len, size_t *msg_len)
{
    const uint8_t *msg;
    assert_int_equal(grpc_frame_read((const uint8_t *)framed, len, NULL, len, &msg, msg_len),
                     GRPC_FRAME_OK);
    return msg;
}

static json_t *load(const char *s, size_t len)
{
    json_error_t e;
    json_t *v = json_loadb(s, len, 0, &e);
    assert_non_null(v);
    return v;
}

/* ---- framing ---- */

static void test_frame(void **state)
{
    uint8_t body[16] = {0, 0, 0, 0, 3, 'a', 'b', 'c'};
    const uint8_t *msg;
    size_t n;
    assert_int_equal(grpc_frame_read(body, 8, NULL, 100, &msg, &n), GRPC_FRAME_OK);
    assert_int_equal(n, 3);
    assert_memory_equal(msg, "abc", 3);
    /* an empty message is a message */
    uint8_t empty[5] = {0};
    assert_int_equal(grpc_frame_read(empty, 5, NULL, 100, &msg, &n), GRPC_FRAME_OK);
    assert_int_equal(n, 0);
    /* short prefix, short body, trailing bytes */
    assert_int_equal(grpc_frame_read(body, 4, NULL, 100, &msg, &n), GRPC_FRAME_MALFORMED);
    assert_int_equal(grpc_frame_read(body, 0, NULL, 100, &msg, &n), GRPC_FRAME_MALFORMED);
    assert_int_equal(grpc_frame_read(body, 7, NULL, 100, &msg, &n), GRPC_FRAME_MALFORMED);
    assert_int_equal(grpc_frame_read(body, 9, NULL, 100, &msg, &n), GRPC_FRAME_MALFORMED);
    /* a flag other than 0/1 */
    body[0] = 2;
    assert_int_equal(grpc_frame_read(body, 8, NULL, 100, &msg, &n), GRPC_FRAME_MALFORMED);
    /* compressed: refused unless grpc-encoding is identity */
    body[0] = 1;
    assert_int_equal(grpc_frame_read(body, 8, NULL, 100, &msg, &n), GRPC_FRAME_COMPRESSED);
    assert_int_equal(grpc_frame_read(body, 8, "gzip", 100, &msg, &n), GRPC_FRAME_COMPRESSED);
    assert_int_equal(grpc_frame_read(body, 8, "identity", 100, &msg, &n), GRPC_FRAME_OK);
    /* over the limit, announced (whatever arrived) */
    body[0] = 0;
    assert_int_equal(grpc_frame_read(body, 8, NULL, 2, &msg, &n), GRPC_FRAME_TOO_LARGE);
    uint8_t huge[5] = {0, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(grpc_frame_read(huge, 5, NULL, 1 << 20, &msg, &n), GRPC_FRAME_TOO_LARGE);
    /* the prefix written */
    uint8_t p[5];
    grpc_frame_prefix(p, 0x01020304);
    assert_memory_equal(p, "\x00\x01\x02\x03\x04", 5);
}

/* ---- grpc-timeout ---- */

static void test_timeout(void **state)
{
    int64_t ms = 0;
    assert_int_equal(grpc_timeout_parse("100m", &ms), 0);
    assert_int_equal(ms, 100);
    assert_int_equal(grpc_timeout_parse("5S", &ms), 0);
    assert_int_equal(ms, 5000);
    assert_int_equal(grpc_timeout_parse("2M", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(grpc_timeout_parse("1H", &ms), 0);
    assert_int_equal(ms, 3600000);
    assert_int_equal(grpc_timeout_parse("1500u", &ms), 0);
    assert_int_equal(ms, 2); /* rounded up */
    assert_int_equal(grpc_timeout_parse("1n", &ms), 0);
    assert_int_equal(ms, 1);
    assert_int_equal(grpc_timeout_parse("0m", &ms), 0);
    assert_int_equal(ms, 1); /* expired: the shortest deadline there is */
    assert_int_equal(grpc_timeout_parse("99999999H", &ms), 0);
    assert_true(ms > 0);
    const char *bad[] = {"", "m", "100", "123456789S", "10x", "10mm", "-5S", " 5S", "5 S", "5s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(grpc_timeout_parse(bad[i], &ms), -1);
    assert_int_equal(grpc_timeout_parse(NULL, &ms), -1);
}

/* ---- status codes ---- */

static void test_status(void **state)
{
    assert_int_equal(grpc_status_from_http(400), GRPC_INVALID_ARGUMENT);
    assert_int_equal(grpc_status_from_http(401), GRPC_UNAUTHENTICATED);
    assert_int_equal(grpc_status_from_http(403), GRPC_PERMISSION_DENIED);
    assert_int_equal(grpc_status_from_http(404), GRPC_NOT_FOUND);
    assert_int_equal(grpc_status_from_http(429), GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(grpc_status_from_http(502), GRPC_UNAVAILABLE);
    assert_int_equal(grpc_status_from_http(503), GRPC_UNAVAILABLE);
    assert_int_equal(grpc_status_from_http(504), GRPC_DEADLINE_EXCEEDED);
    assert_int_equal(grpc_status_from_http(500), GRPC_INTERNAL);
    assert_int_equal(grpc_status_from_http(501), GRPC_UNIMPLEMENTED);
    assert_int_equal(grpc_status_from_http(413), GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(grpc_status_from_error(GW_ERR_INVALID_API_KEY), GRPC_UNAUTHENTICATED);
    assert_int_equal(grpc_status_from_error(GW_ERR_MODEL_NOT_FOUND), GRPC_NOT_FOUND);
    assert_int_equal(grpc_status_from_error(GW_ERR_BUDGET_EXCEEDED), GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(grpc_status_from_error(GW_ERR_RATE_LIMITED), GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(grpc_status_from_error(GW_ERR_UPSTREAM), GRPC_UNAVAILABLE);
    assert_int_equal(grpc_status_from_error(GW_ERR_TIMEOUT), GRPC_DEADLINE_EXCEEDED);
    assert_int_equal(grpc_status_from_error(GW_ERR_INVALID_JSON), GRPC_INVALID_ARGUMENT);
    assert_int_equal(grpc_status_from_error(GW_ERR_REQUEST_TOO_LARGE), GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(grpc_status_from_error(GW_ERR_NOT_IMPLEMENTED), GRPC_UNIMPLEMENTED);
    assert_string_equal(grpc_status_name(5), "NOT_FOUND");
    assert_string_equal(grpc_status_name(16), "UNAUTHENTICATED");
    assert_string_equal(grpc_status_name(99), "UNKNOWN");
}

/* ---- grpc-message ---- */

static void test_percent(void **state)
{
    char out[64], back[64];
    grpc_percent_encode("plain text: ok!", out, sizeof out);
    assert_string_equal(out, "plain text: ok!");
    grpc_percent_encode("100% sure\nnext \xc3\xa9", out, sizeof out);
    assert_string_equal(out, "100%25 sure%0Anext %C3%A9");
    grpc_percent_decode(out, back, sizeof back);
    assert_string_equal(back, "100% sure\nnext \xc3\xa9");
    /* truncated on a whole escape */
    char small[6];
    assert_int_equal(grpc_percent_encode("ab\ncd", small, sizeof small), 5);
    assert_string_equal(small, "ab%0A");
    assert_int_equal(grpc_percent_encode("ab\ncd", small, 5), 2);
    assert_string_equal(small, "ab");
    /* malformed escapes decode as they are */
    grpc_percent_decode("50%zz%4", back, sizeof back);
    assert_string_equal(back, "50%zz%4");
    struct arena a;
    arena_init(&a);
    assert_string_equal(grpc_trailers(&a, GRPC_OK, NULL), "grpc-status: 0\r\n");
    assert_string_equal(grpc_trailers(&a, GRPC_NOT_FOUND, "The model 'x' \xe2\x80\x94 gone"),
                        "grpc-status: 5\r\ngrpc-message: The model 'x' %E2%80%94 gone\r\n");
    arena_free(&a);
}

/* ---- Chat: protobuf -> OpenAI JSON ---- */

static void test_chat_request(void **state)
{
    struct arena a;
    arena_init(&a);
    Aiproxy__V1__Message m1 = AIPROXY__V1__MESSAGE__INIT, m2 = AIPROXY__V1__MESSAGE__INIT;
    m1.role = "system";
    m1.content = "be brief";
    m2.role = "user";
    m2.content = "hello";
    m2.name = "ann";
    Aiproxy__V1__Message *msgs[] = {&m1, &m2};
    char *stop[] = {"END"};
    Aiproxy__V1__ChatRequest r = AIPROXY__V1__CHAT_REQUEST__INIT;
    r.model = "gpt-test";
    r.n_messages = 2;
    r.messages = msgs;
    r._temperature_case = AIPROXY__V1__CHAT_REQUEST___TEMPERATURE_TEMPERATURE;
    r.temperature = 0; /* present, even at zero */
    r._max_tokens_case = AIPROXY__V1__CHAT_REQUEST___MAX_TOKENS_MAX_TOKENS;
    r.max_tokens = 50;
    r.n_stop = 1;
    r.stop = stop;
    r.extra_json = "{\"user\":\"u1\",\"model\":\"ignored\",\"stream\":true,\"seed\":3}";
    size_t len;
    uint8_t *body = pack(&a, &r.base, &len);
    char *out;
    size_t out_len;
    bool stream = true;
    struct inbound_routing rt;
    struct inbound_error err;
    assert_int_equal(grpc_chat_ops.request_to_openai(&a, (char *)body, len, &out, &out_len, &stream,
                                                     &rt, &err), 0);
    assert_false(stream);
    assert_int_equal(rt.timeout_ms, 0);
    assert_int_equal(rt.max_cost_nanos, -1);
    json_t *o = load(out, out_len);
    assert_string_equal(json_string_value(json_object_get(o, "model")), "gpt-test");
    assert_int_equal(json_array_size(json_object_get(o, "messages")), 2);
    json_t *jm = json_array_get(json_object_get(o, "messages"), 1);
    assert_string_equal(json_string_value(json_object_get(jm, "name")), "ann");
    assert_null(json_object_get(json_array_get(json_object_get(o, "messages"), 0), "name"));
    assert_true(json_is_number(json_object_get(o, "temperature")));
    assert_int_equal(json_integer_value(json_object_get(o, "max_tokens")), 50);
    assert_null(json_object_get(o, "top_p"));
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "stop"), 0)), "END");
    assert_string_equal(json_string_value(json_object_get(o, "user")), "u1");
    assert_int_equal(json_integer_value(json_object_get(o, "seed")), 3);
    assert_null(json_object_get(o, "stream")); /* Chat answers whole */
    json_decref(o);
    /* the same message is valid for the REST flow's scanner */
    struct req_facts f;
    struct scan_error se;
    assert_int_equal(scan_request(SCAN_CHAT, out, out_len, &f, &se), 0);

    /* ChatStream: stream on */
    assert_int_equal(grpc_chat_stream_ops.request_to_openai(&a, (char *)body, len, &out, &out_len,
                                                            &stream, &rt, &err), 0);
    assert_true(stream);
    o = load(out, out_len);
    assert_true(json_is_true(json_object_get(o, "stream")));
    json_decref(o);
    assert_int_equal(scan_request(SCAN_CHAT, out, out_len, &f, &se), 0);
    assert_true(f.stream);
    arena_free(&a);
}

static void test_chat_request_refusals(void **state)
{
    struct arena a;
    arena_init(&a);
    char *out;
    size_t out_len, len;
    bool stream;
    struct inbound_routing rt;
    struct inbound_error err;
    Aiproxy__V1__ChatRequest r = AIPROXY__V1__CHAT_REQUEST__INIT;
    r.model = "m";
    /* extra_json must be an object */
    const char *bad_extra[] = {"[1]", "\"s\"", "{", "null", "12"};
    for (size_t i = 0; i < sizeof bad_extra / sizeof bad_extra[0]; i++) {
        r.extra_json = (char *)bad_extra[i];
        uint8_t *body = pack(&a, &r.base, &len);
        assert_int_equal(grpc_chat_ops.request_to_openai(&a, (char *)body, len, &out, &out_len,
                                                         &stream, &rt, &err), -1);
        assert_string_equal(err.param, "extra_json");
    }
    r.extra_json = "";
    /* not UTF-8 */
    r.model = "\xff\xfe";
    uint8_t *body = pack(&a, &r.base, &len);
    assert_int_equal(grpc_chat_ops.request_to_openai(&a, (char *)body, len, &out, &out_len,
                                                     &stream, &rt, &err), -1);
    assert_string_equal(err.param, "model");
    /* not a protobuf message */
    static const char junk[] = "\xff\xff\xff\xff\x0f";
    assert_int_equal(grpc_chat_ops.request_to_openai(&a, junk, sizeof junk - 1, &out, &out_len,
                                                     &stream, &rt, &err), -1);
    assert_non_null(strstr(err.message, "ChatRequest"));
    /* a truncated field */
    static const char cut[] = "\x0a\x10gpt";
    assert_int_equal(grpc_chat_ops.request_to_openai(&a, cut, sizeof cut - 1, &out, &out_len,
                                                     &stream, &rt, &err), -1);
    /* the empty message is a message (the flow then asks for messages) */
    assert_int_equal(grpc_chat_ops.request_to_openai(&a, "", 0, &out, &out_len, &stream, &rt,
                                                     &err), 0);
    struct req_facts f;
    struct scan_error se;
    assert_int_not_equal(scan_request(SCAN_CHAT, out, out_len, &f, &se), 0);
    arena_free(&a);
}

/* ---- Chat: OpenAI answer -> ChatResponse ---- */

static const char answer[] =
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"up-gpt\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi there\"},"
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,"
    "\"total_tokens\":7},\"x-aiproxy\":{\"request_id\":\"req_1\",\"provider\":\"p1\","
    "\"node\":\"n1\",\"model\":\"up-gpt\",\"requested_model\":\"gpt\",\"cost\":0.000125,"
    "\"latency_ms\":42,\"usage_estimated\":true,\"providers_tried\":[\"p0\",\"p1\"],"
    "\"failovers\":1}}";

static void check_meta(const Aiproxy__V1__Meta *m)
{
    assert_non_null(m);
    assert_string_equal(m->request_id, "req_1");
    assert_string_equal(m->provider, "p1");
    assert_string_equal(m->node, "n1");
    assert_string_equal(m->model, "up-gpt");
    assert_true(m->cost_usd > 0.000124 && m->cost_usd < 0.000126);
    assert_int_equal(m->latency_ms, 42);
    assert_int_equal(m->n_providers_tried, 2);
    assert_string_equal(m->providers_tried[0], "p0");
    assert_int_equal(m->failovers, 1);
}

static void test_chat_response(void **state)
{
    struct arena a;
    arena_init(&a);
    char *out;
    size_t out_len, n;
    assert_int_equal(grpc_chat_ops.response_from_openai(&a, NULL, answer, sizeof answer - 1, &out,
                                                        &out_len), 0);
    const uint8_t *msg = unframe(out, out_len, &n);
    Aiproxy__V1__ChatResponse *r = aiproxy__v1__chat_response__unpack(NULL, n, msg);
    assert_non_null(r);
    assert_string_equal(r->id, "chatcmpl-1");
    assert_string_equal(r->model, "up-gpt");
    assert_string_equal(r->content, "hi there");
    assert_string_equal(r->finish_reason, "stop");
    assert_int_equal(r->usage->prompt_tokens, 5);
    assert_int_equal(r->usage->completion_tokens, 2);
    assert_int_equal(r->usage->total_tokens, 7);
    assert_true(r->usage->estimated);
    check_meta(r->meta);
    assert_string_equal(r->response_json, answer);
    aiproxy__v1__chat_response__free_unpacked(r, NULL);
    /* not an answer */
    assert_int_equal(grpc_chat_ops.response_from_openai(&a, NULL, "[1]", 3, &out, &out_len), -1);
    assert_int_equal(grpc_chat_ops.response_from_openai(&a, NULL, "{", 1, &out, &out_len), -1);
    /* an object without choices still packs (empty fields) */
    assert_int_equal(grpc_chat_ops.response_from_openai(&a, NULL, "{}", 2, &out, &out_len), 0);
    arena_free(&a);
}

/* ---- ChatStream: chunks -> ChatChunk ---- */

struct sink {
    Aiproxy__V1__ChatChunk *chunks[16];
    size_t n;
};

static void collect(void *ctx, const char *bytes, size_t len)
{
    struct sink *s = ctx;
    size_t n;
    const uint8_t *msg = unframe(bytes, len, &n);
    assert_true(s->n < 16);
    s->chunks[s->n] = aiproxy__v1__chat_chunk__unpack(NULL, n, msg);
    assert_non_null(s->chunks[s->n]);
    s->n++;
}

static void test_chat_stream(void **state)
{
    struct arena a;
    arena_init(&a);
    const struct inbound_ops *ops = &grpc_chat_stream_ops;
    void *st = ops->stream_begin(&a, "req_1", NULL);
    struct sink s = {0};
    static const char *const chunks[] = {
        "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}",
        "not json",
        "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}",
    };
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++)
        ops->stream_chunk(st, chunks[i], strlen(chunks[i]), collect, &s);
    /* the last chunk: usage and meta, as the proxy builds it */
    char last[1024];
    snprintf(last, sizeof last, "{\"choices\":[],\"usage\":{\"prompt_tokens\":5,"
                                "\"completion_tokens\":2,\"total_tokens\":7},\"x-aiproxy\":%s",
             strstr(answer, "\"x-aiproxy\":") + 12);
    ops->stream_chunk(st, last, strlen(last), collect, &s);
    ops->stream_end(st, collect, &s);
    assert_int_equal(s.n, 4); /* the role-only chunk and the garbage send nothing */
    assert_string_equal(s.chunks[0]->delta, "Hel");
    assert_null(s.chunks[0]->usage);
    assert_string_equal(s.chunks[1]->delta, "lo");
    assert_string_equal(s.chunks[2]->finish_reason, "stop");
    assert_int_equal(s.chunks[3]->usage->total_tokens, 7);
    check_meta(s.chunks[3]->meta);
    assert_string_equal(ops->stream_trailers(st), "grpc-status: 0\r\n");
    for (size_t i = 0; i < s.n; i++) aiproxy__v1__chat_chunk__free_unpacked(s.chunks[i], NULL);

    /* a stream that breaks: its trailers carry the error */
    st = ops->stream_begin(&a, "req_2", NULL);
    static const char err[] = "{\"error\":{\"message\":\"The provider p1 failed mid-stream: "
                              "reset.\",\"type\":\"server_error\"}}";
    ops->stream_error(st, err, sizeof err - 1, collect, &s);
    assert_string_equal(ops->stream_trailers(st),
                        "grpc-status: 14\r\ngrpc-message: The provider p1 failed mid-stream: "
                        "reset.\r\n");
    arena_free(&a);
}

/* ---- Embed ---- */

static void test_embed(void **state)
{
    struct arena a;
    arena_init(&a);
    char *in[] = {"alpha", "beta"};
    Aiproxy__V1__EmbedRequest r = AIPROXY__V1__EMBED_REQUEST__INIT;
    r.model = "emb";
    r.n_input = 2;
    r.input = in;
    size_t len, out_len, n;
    uint8_t *body = pack(&a, &r.base, &len);
    char *out;
    bool stream = true;
    struct inbound_routing rt;
    struct inbound_error err;
    assert_int_equal(grpc_embed_ops.request_to_openai(&a, (char *)body, len, &out, &out_len,
                                                      &stream, &rt, &err), 0);
    assert_false(stream);
    struct req_facts f;
    struct scan_error se;
    assert_int_equal(scan_request(SCAN_EMBEDDINGS, out, out_len, &f, &se), 0);
    json_t *o = load(out, out_len);
    assert_int_equal(json_array_size(json_object_get(o, "input")), 2);
    json_decref(o);
    /* no input */
    r.n_input = 0;
    body = pack(&a, &r.base, &len);
    assert_int_equal(grpc_embed_ops.request_to_openai(&a, (char *)body, len, &out, &out_len,
                                                      &stream, &rt, &err), -1);
    assert_string_equal(err.param, "input");

    static const char ans[] =
        "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":[0.5,-1,2]},"
        "{\"object\":\"embedding\",\"index\":1,\"embedding\":[]}],\"model\":\"e\",\"usage\":"
        "{\"prompt_tokens\":3,\"total_tokens\":3},\"x-aiproxy\":{\"provider\":\"p1\"}}";
    assert_int_equal(grpc_embed_ops.response_from_openai(&a, NULL, ans, sizeof ans - 1, &out,
                                                         &out_len), 0);
    const uint8_t *msg = unframe(out, out_len, &n);
    Aiproxy__V1__EmbedResponse *er = aiproxy__v1__embed_response__unpack(NULL, n, msg);
    assert_non_null(er);
    assert_int_equal(er->n_data, 2);
    assert_int_equal(er->data[0]->n_values, 3);
    assert_true(er->data[0]->values[1] == -1.0f);
    assert_int_equal(er->data[1]->n_values, 0);
    assert_int_equal(er->usage->prompt_tokens, 3);
    assert_string_equal(er->meta->provider, "p1");
    aiproxy__v1__embed_response__free_unpacked(er, NULL);
    /* base64 vectors have no place in the message */
    static const char b64[] = "{\"data\":[{\"embedding\":\"AAAA\"}]}";
    assert_int_equal(grpc_embed_ops.response_from_openai(&a, NULL, b64, sizeof b64 - 1, &out,
                                                         &out_len), -1);
    arena_free(&a);
}

/* ---- Predict ---- */

static void test_predict(void **state)
{
    struct arena a;
    arena_init(&a);
    Aiproxy__V1__PredictRequest r = AIPROXY__V1__PREDICT_REQUEST__INIT;
    r.model = "gpt";
    r.input = "say hi";
    r.strategy = "latency_optimized";
    r._max_cost_case = AIPROXY__V1__PREDICT_REQUEST___MAX_COST_MAX_COST;
    r.max_cost = 0.5;
    r._timeout_ms_case = AIPROXY__V1__PREDICT_REQUEST___TIMEOUT_MS_TIMEOUT_MS;
    r.timeout_ms = 2500;
    size_t len, out_len, n;
    uint8_t *body = pack(&a, &r.base, &len);
    char *out;
    bool stream;
    struct inbound_routing rt;
    struct inbound_error err;
    assert_int_equal(grpc_predict_ops.request_to_openai(&a, (char *)body, len, &out, &out_len,
                                                        &stream, &rt, &err), 0);
    assert_string_equal(rt.strategy, "latency_optimized");
    assert_int_equal(rt.max_cost_nanos, 500000000);
    assert_int_equal(rt.timeout_ms, 2500);
    json_t *o = load(out, out_len);
    json_t *m0 = json_array_get(json_object_get(o, "messages"), 0);
    assert_string_equal(json_string_value(json_object_get(m0, "content")), "say hi");
    json_decref(o);
    /* the native endpoint's checks, with the message's field names */
    r.strategy = "fastest";
    body = pack(&a, &r.base, &len);
    assert_int_equal(grpc_predict_ops.request_to_openai(&a, (char *)body, len, &out, &out_len,
                                                        &stream, &rt, &err), -1);
    assert_string_equal(err.param, "strategy");
    r.strategy = "";
    r.timeout_ms = 0;
    body = pack(&a, &r.base, &len);
    assert_int_equal(grpc_predict_ops.request_to_openai(&a, (char *)body, len, &out, &out_len,
                                                        &stream, &rt, &err), -1);
    assert_string_equal(err.param, "timeout_ms");
    r._timeout_ms_case = AIPROXY__V1__PREDICT_REQUEST___TIMEOUT_MS__NOT_SET;
    r.max_cost = -1;
    body = pack(&a, &r.base, &len);
    assert_int_equal(grpc_predict_ops.request_to_openai(&a, (char *)body, len, &out, &out_len,
                                                        &stream, &rt, &err), -1);
    assert_string_equal(err.param, "max_cost");
    r._max_cost_case = AIPROXY__V1__PREDICT_REQUEST___MAX_COST__NOT_SET;
    r.input = "";
    body = pack(&a, &r.base, &len);
    assert_int_equal(grpc_predict_ops.request_to_openai(&a, (char *)body, len, &out, &out_len,
                                                        &stream, &rt, &err), -1);
    assert_string_equal(err.param, "input");

    assert_int_equal(grpc_predict_ops.response_from_openai(&a, NULL, answer, sizeof answer - 1,
                                                           &out, &out_len), 0);
    const uint8_t *msg = unframe(out, out_len, &n);
    Aiproxy__V1__PredictResponse *pr = aiproxy__v1__predict_response__unpack(NULL, n, msg);
    assert_non_null(pr);
    assert_string_equal(pr->request_id, "req_1");
    assert_string_equal(pr->model, "gpt"); /* the model asked for, as /aiproxy/predict */
    assert_string_equal(pr->output, "hi there");
    assert_int_equal(pr->usage->total_tokens, 7);
    check_meta(pr->meta);
    aiproxy__v1__predict_response__free_unpacked(pr, NULL);
    arena_free(&a);
}

/* ---- ListModels and health ---- */

static void test_models_and_health(void **state)
{
    struct arena a;
    arena_init(&a);
    static const char list[] =
        "{\"object\":\"list\",\"data\":[{\"id\":\"gpt\",\"providers\":[{\"name\":\"p1\","
        "\"available\":false},{\"name\":\"p2\",\"available\":true}]},{\"id\":\"emb\","
        "\"providers\":[{\"name\":\"p1\",\"available\":false}]}]}";
    char *out;
    size_t out_len, n;
    assert_int_equal(grpc_models_from_json(&a, list, sizeof list - 1, &out, &out_len), 0);
    const uint8_t *msg = unframe(out, out_len, &n);
    Aiproxy__V1__ListModelsResponse *lr = aiproxy__v1__list_models_response__unpack(NULL, n, msg);
    assert_non_null(lr);
    assert_int_equal(lr->n_models, 2);
    assert_string_equal(lr->models[0]->id, "gpt");
    assert_int_equal(lr->models[0]->n_providers, 2);
    assert_string_equal(lr->models[0]->providers[1], "p2");
    assert_true(lr->models[0]->available);
    assert_false(lr->models[1]->available);
    aiproxy__v1__list_models_response__free_unpacked(lr, NULL);
    assert_int_equal(grpc_models_from_json(&a, "{}", 2, &out, &out_len), -1);
    assert_true(grpc_list_models_request_ok((const uint8_t *)"", 0));
    assert_false(grpc_list_models_request_ok((const uint8_t *)"\xff", 1));

    Grpc__Health__V1__HealthCheckRequest hr = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    hr.service = "aiproxy.v1.Gateway";
    size_t len;
    uint8_t *body = pack(&a, &hr.base, &len);
    char *service;
    assert_int_equal(grpc_health_request(&a, body, len, &service), 0);
    assert_string_equal(service, "aiproxy.v1.Gateway");
    assert_int_equal(grpc_health_request(&a, (const uint8_t *)"", 0, &service), 0);
    assert_string_equal(service, "");
    assert_int_equal(grpc_health_request(&a, (const uint8_t *)"\x0a\x05" "ab", 4, &service), -1);
    out = grpc_health_response(&a, GRPC_HEALTH_NOT_SERVING, &out_len);
    msg = unframe(out, out_len, &n);
    Grpc__Health__V1__HealthCheckResponse *hres =
        grpc__health__v1__health_check_response__unpack(NULL, n, msg);
    assert_non_null(hres);
    assert_int_equal(hres->status, GRPC_HEALTH_NOT_SERVING);
    grpc__health__v1__health_check_response__free_unpacked(hres, NULL);
    arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_percent),
        cmocka_unit_test(test_chat_request),
        cmocka_unit_test(test_chat_request_refusals),
        cmocka_unit_test(test_chat_response),
        cmocka_unit_test(test_chat_stream),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_predict),
        cmocka_unit_test(test_models_and_health),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
