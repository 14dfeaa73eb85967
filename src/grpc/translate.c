/* translate: aiproxy.v1.Gateway and grpc.health.v1 messages <-> OpenAI JSON
 * (see translate.h). Requests are unpacked with protobuf-c and rebuilt as
 * the OpenAI body the REST endpoint takes; answers (which carry the
 * "x-aiproxy" object) are read with jansson and packed. */
#include "grpc/translate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "aiproxy/v1/gateway.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/wire.h"
#include "providers/inbound.h"
#include "providers/internal.h"

/* ---- helpers ---- */

static int bad(struct inbound_error *err, const char *param, const char *msg)
{
    snprintf(err->message, sizeof err->message, "%s", msg);
    snprintf(err->param, sizeof err->param, "%s", param);
    return -1;
}

static void begin(struct inbound_routing *routing, struct inbound_error *err)
{
    memset(err, 0, sizeof *err);
    if (routing) {
        routing->strategy[0] = '\0';
        routing->max_cost_nanos = -1;
        routing->timeout_ms = 0;
    }
}

/* Sets a string field; false when `s` is not valid UTF-8 (jansson refuses it). */
static bool put_str(json_t *o, const char *key, const char *s)
{
    json_t *v = json_string(s);
    if (!v) return false;
    json_object_set_new(o, key, v);
    return true;
}

static json_t *str_array(char **items, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_string(items[i]);
        if (!v) {
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, v);
    }
    return arr;
}

/* Packs `m` behind its 5-byte prefix into the arena. */
static char *pack(struct arena *a, const ProtobufCMessage *m, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = arena_alloc(a, n + GRPC_PREFIX_LEN);
    grpc_frame_prefix(buf, n);
    protobuf_c_message_pack(m, buf + GRPC_PREFIX_LEN);
    *len = n + GRPC_PREFIX_LEN;
    return (char *)buf;
}

/* A string of a JSON object for a message field: "" when absent (protobuf-c
 * packs what the pointer shows; the JSON tree must outlive the packing). */
static char *field(const json_t *o, const char *key)
{
    const char *s = pj_str(o, key);
    return (char *)(s ? s : "");
}

static double number(const json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : 0;
}

static void fill_usage(Aiproxy__V1__Usage *u, const json_t *usage, const json_t *x)
{
    int64_t in = 0, out = 0, total = -1;
    (void)pj_int(usage, "prompt_tokens", &in);
    (void)pj_int(usage, "completion_tokens", &out);
    if (!pj_int(usage, "total_tokens", &total)) total = in + out;
    u->prompt_tokens = in;
    u->completion_tokens = out;
    u->total_tokens = total;
    u->estimated = json_is_true(json_object_get(x, "usage_estimated"));
}

/* Meta from the x-aiproxy object; its strings point into `x`. */
static void fill_meta(struct arena *a, Aiproxy__V1__Meta *m, const json_t *x)
{
    m->request_id = field(x, "request_id");
    m->provider = field(x, "provider");
    m->node = field(x, "node");
    m->model = field(x, "model");
    m->cost_usd = number(json_object_get(x, "cost"));
    int64_t v = 0;
    if (pj_int(x, "latency_ms", &v)) m->latency_ms = v;
    if (pj_int(x, "failovers", &v)) m->failovers = (int32_t)v;
    const json_t *tried = json_object_get(x, "providers_tried");
    size_t n = json_array_size(tried);
    if (n) {
        m->providers_tried = arena_alloc(a, n * sizeof *m->providers_tried);
        for (size_t i = 0; i < n; i++) {
            const char *s = json_string_value(json_array_get(tried, i));
            m->providers_tried[m->n_providers_tried++] = (char *)(s ? s : "");
        }
    }
}

/* ---- Chat and ChatStream ---- */

static int chat_request(struct arena *a, const char *body, size_t len, char **out,
                        size_t *out_len, bool want_stream, struct inbound_routing *routing,
                        struct inbound_error *err)
{
    begin(routing, err);
    Aiproxy__V1__ChatRequest *r =
        aiproxy__v1__chat_request__unpack(NULL, len, (const uint8_t *)body);
    if (!r) return bad(err, "", "The request is not a valid aiproxy.v1.ChatRequest message.");
    json_t *o = NULL;
    int rc = -1;
    if (r->extra_json && *r->extra_json) {
        o = pj_load(r->extra_json, strlen(r->extra_json));
        if (!json_is_object(o)) {
            bad(err, "extra_json", "extra_json must be a JSON object (other OpenAI request fields).");
            goto done;
        }
    } else {
        o = json_object();
    }
    /* The message's own fields win over extra_json's. */
    if (*r->model && !put_str(o, "model", r->model)) {
        bad(err, "model", "model is not valid UTF-8.");
        goto done;
    }
    json_t *msgs = json_array();
    json_object_set_new(o, "messages", msgs);
    for (size_t i = 0; i < r->n_messages; i++) {
        const Aiproxy__V1__Message *m = r->messages[i];
        json_t *jm = json_object();
        json_array_append_new(msgs, jm);
        if (!put_str(jm, "role", m->role) || !put_str(jm, "content", m->content) ||
            (*m->name && !put_str(jm, "name", m->name))) {
            bad(err, "messages", "A message is not valid UTF-8.");
            goto done;
        }
    }
    if (r->_temperature_case == AIPROXY__V1__CHAT_REQUEST___TEMPERATURE_TEMPERATURE) {
        if (!isfinite(r->temperature)) {
            bad(err, "temperature", "temperature must be a finite number.");
            goto done;
        }
        json_object_set_new(o, "temperature", json_real(r->temperature));
    }
    if (r->_max_tokens_case == AIPROXY__V1__CHAT_REQUEST___MAX_TOKENS_MAX_TOKENS)
        json_object_set_new(o, "max_tokens", json_integer(r->max_tokens));
    if (r->_top_p_case == AIPROXY__V1__CHAT_REQUEST___TOP_P_TOP_P) {
        if (!isfinite(r->top_p)) {
            bad(err, "top_p", "top_p must be a finite number.");
            goto done;
        }
        json_object_set_new(o, "top_p", json_real(r->top_p));
    }
    if (r->n_stop) {
        json_t *stop = str_array(r->stop, r->n_stop);
        if (!stop) {
            bad(err, "stop", "stop is not valid UTF-8.");
            goto done;
        }
        json_object_set_new(o, "stop", stop);
    }
    /* The method decides: Chat answers whole, ChatStream streams. */
    if (want_stream) {
        json_object_set_new(o, "stream", json_true());
    } else {
        json_object_del(o, "stream");
        json_object_del(o, "stream_options");
    }
    *out = pj_dump(a, o, out_len);
    rc = 0;
done:
    json_decref(o);
    aiproxy__v1__chat_request__free_unpacked(r, NULL);
    return rc;
}

static int chat_unary_request(struct arena *a, const char *body, size_t len, char **out,
                              size_t *out_len, bool *stream, struct inbound_routing *routing,
                              struct inbound_error *err)
{
    *stream = false;
    return chat_request(a, body, len, out, out_len, false, routing, err);
}

static int chat_stream_request(struct arena *a, const char *body, size_t len, char **out,
                               size_t *out_len, bool *stream, struct inbound_routing *routing,
                               struct inbound_error *err)
{
    *stream = true;
    return chat_request(a, body, len, out, out_len, true, routing, err);
}

static int chat_response(struct arena *a, void *ctx, const char *body, size_t len, char **out,
                         size_t *out_len)
{
    json_t *root = pj_load(body, len);
    if (!json_is_object(root)) {
        json_decref(root);
        return -1;
    }
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *msg = json_object_get(choice, "message");
    json_t *x = json_object_get(root, "x-aiproxy");
    Aiproxy__V1__ChatResponse r = AIPROXY__V1__CHAT_RESPONSE__INIT;
    Aiproxy__V1__Usage u = AIPROXY__V1__USAGE__INIT;
    Aiproxy__V1__Meta m = AIPROXY__V1__META__INIT;
    r.id = field(root, "id");
    r.model = field(root, "model");
    r.content = field(msg, "content");
    r.finish_reason = field(choice, "finish_reason");
    fill_usage(&u, json_object_get(root, "usage"), x);
    r.usage = &u;
    fill_meta(a, &m, x);
    r.meta = &m;
    r.response_json = arena_strndup(a, body, len);
    *out = pack(a, &r.base, out_len);
    json_decref(root);
    return 0;
}

struct chat_stream {
    struct arena *a;
    enum grpc_status status; /* GRPC_OK until stream_error */
    const char *message;
};

static void *chat_stream_begin(struct arena *a, const char *request_id, void *ctx)
{
    struct chat_stream *s = arena_alloc(a, sizeof *s);
    s->a = a;
    s->status = GRPC_OK;
    s->message = NULL;
    return s;
}

/* One OpenAI chunk -> a ChatChunk: the text delta and finish reason of
 * choice 0; the last chunk (choices [], usage, x-aiproxy) carries Usage and
 * Meta. Chunks with none of these (the role-only first one) send nothing. */
static void chat_stream_chunk(void *state, const char *json, size_t len, inbound_emit_cb emit,
                              void *ctx)
{
    struct chat_stream *s = state;
    json_t *root = pj_load(json, len);
    if (!json_is_object(root)) {
        json_decref(root);
        return;
    }
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *usage = json_object_get(root, "usage");
    json_t *x = json_object_get(root, "x-aiproxy");
    Aiproxy__V1__ChatChunk c = AIPROXY__V1__CHAT_CHUNK__INIT;
    Aiproxy__V1__Usage u = AIPROXY__V1__USAGE__INIT;
    Aiproxy__V1__Meta m = AIPROXY__V1__META__INIT;
    c.delta = field(json_object_get(choice, "delta"), "content");
    c.finish_reason = field(choice, "finish_reason");
    if (json_is_object(usage)) {
        fill_usage(&u, usage, x);
        c.usage = &u;
    }
    if (json_is_object(x)) {
        fill_meta(s->a, &m, x);
        c.meta = &m;
    }
    if (*c.delta || *c.finish_reason || c.usage || c.meta) {
        size_t n;
        char *bytes = pack(s->a, &c.base, &n);
        emit(ctx, bytes, n);
    }
    json_decref(root);
}

static void chat_stream_end(void *state, inbound_emit_cb emit, void *ctx)
{
}

/* The stream broke after it began: its trailers carry the error (the
 * proxy only ends a begun stream this way for an upstream failure). */
static void chat_stream_error(void *state, const char *error_json, size_t len,
                              inbound_emit_cb emit, void *ctx)
{
    struct chat_stream *s = state;
    json_t *root = pj_load(error_json, len);
    const char *msg = pj_str(json_object_get(root, "error"), "message");
    s->status = GRPC_UNAVAILABLE;
    s->message = arena_strdup(s->a, msg ? msg : "The provider failed mid-stream.");
    json_decref(root);
}

static const char *chat_stream_trailers(void *state)
{
    struct chat_stream *s = state;
    return grpc_trailers(s->a, s->status, s->message);
}

/* ---- Embed ---- */

static int embed_request(struct arena *a, const char *body, size_t len, char **out,
                         size_t *out_len, bool *stream, struct inbound_routing *routing,
                         struct inbound_error *err)
{
    *stream = false;
    begin(routing, err);
    Aiproxy__V1__EmbedRequest *r =
        aiproxy__v1__embed_request__unpack(NULL, len, (const uint8_t *)body);
    if (!r) return bad(err, "", "The request is not a valid aiproxy.v1.EmbedRequest message.");
    int rc = -1;
    json_t *o = json_object();
    json_t *input = str_array(r->input, r->n_input);
    if (*r->model && !put_str(o, "model", r->model)) {
        bad(err, "model", "model is not valid UTF-8.");
        goto done;
    }
    if (!input) {
        bad(err, "input", "input is not valid UTF-8.");
        goto done;
    }
    if (r->n_input == 0) {
        bad(err, "input", "input: at least one string is required.");
        goto done;
    }
    json_object_set(o, "input", input);
    *out = pj_dump(a, o, out_len);
    rc = 0;
done:
    json_decref(input);
    json_decref(o);
    aiproxy__v1__embed_request__free_unpacked(r, NULL);
    return rc;
}

static int embed_response(struct arena *a, void *ctx, const char *body, size_t len, char **out,
                          size_t *out_len)
{
    json_t *root = pj_load(body, len);
    json_t *data = json_object_get(root, "data");
    if (!json_is_array(data)) {
        json_decref(root);
        return -1;
    }
    json_t *x = json_object_get(root, "x-aiproxy");
    Aiproxy__V1__EmbedResponse r = AIPROXY__V1__EMBED_RESPONSE__INIT;
    Aiproxy__V1__Usage u = AIPROXY__V1__USAGE__INIT;
    Aiproxy__V1__Meta m = AIPROXY__V1__META__INIT;
    size_t n = json_array_size(data);
    r.data = arena_alloc(a, (n ? n : 1) * sizeof *r.data);
    for (size_t i = 0; i < n; i++) {
        json_t *vec = json_object_get(json_array_get(data, i), "embedding");
        if (!json_is_array(vec)) {
            json_decref(root);
            return -1; /* base64 (encoding_format) has no place in the message */
        }
        Aiproxy__V1__Embedding *e = arena_alloc(a, sizeof *e);
        aiproxy__v1__embedding__init(e);
        size_t k = json_array_size(vec);
        e->values = arena_alloc(a, (k ? k : 1) * sizeof *e->values);
        for (size_t j = 0; j < k; j++) e->values[j] = (float)number(json_array_get(vec, j));
        e->n_values = k;
        r.data[r.n_data++] = e;
    }
    fill_usage(&u, json_object_get(root, "usage"), x);
    r.usage = &u;
    fill_meta(a, &m, x);
    r.meta = &m;
    *out = pack(a, &r.base, out_len);
    json_decref(root);
    return 0;
}

/* ---- Predict: the native endpoint's own translation, from the message ---- */

static int predict_request(struct arena *a, const char *body, size_t len, char **out,
                           size_t *out_len, bool *stream, struct inbound_routing *routing,
                           struct inbound_error *err)
{
    *stream = false;
    begin(routing, err);
    Aiproxy__V1__PredictRequest *r =
        aiproxy__v1__predict_request__unpack(NULL, len, (const uint8_t *)body);
    if (!r) return bad(err, "", "The request is not a valid aiproxy.v1.PredictRequest message.");
    int rc = -1;
    json_t *o = json_object();
    json_t *rt = json_object();
    if ((*r->model && !put_str(o, "model", r->model)) ||
        (*r->input && !put_str(o, "input", r->input)) ||
        (*r->strategy && !put_str(rt, "strategy", r->strategy))) {
        bad(err, "", "A field is not valid UTF-8.");
        goto done;
    }
    if (r->_max_cost_case == AIPROXY__V1__PREDICT_REQUEST___MAX_COST_MAX_COST)
        json_object_set_new(rt, "max_cost", isfinite(r->max_cost) ? json_real(r->max_cost)
                                                                  : json_integer(-1));
    if (r->_timeout_ms_case == AIPROXY__V1__PREDICT_REQUEST___TIMEOUT_MS_TIMEOUT_MS)
        json_object_set_new(rt, "timeout", json_integer(r->timeout_ms));
    json_object_set(o, "routing", rt);
    size_t jlen;
    char *json = pj_dump(a, o, &jlen);
    rc = inbound_predict_ops.request_to_openai(a, json, jlen, out, out_len, stream, routing, err);
    /* predict's parameter names are its JSON's; the message's are flat */
    if (rc != 0 && strncmp(err->param, "routing.", 8) == 0) {
        char p[64];
        snprintf(p, sizeof p, "%s", err->param + 8);
        snprintf(err->param, sizeof err->param, "%s", strcmp(p, "timeout") == 0 ? "timeout_ms" : p);
    }
done:
    json_decref(rt);
    json_decref(o);
    aiproxy__v1__predict_request__free_unpacked(r, NULL);
    return rc;
}

static int predict_response(struct arena *a, void *ctx, const char *body, size_t len, char **out,
                            size_t *out_len)
{
    json_t *root = pj_load(body, len);
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *msg = json_object_get(choice, "message");
    if (!json_is_object(msg)) {
        json_decref(root);
        return -1;
    }
    json_t *x = json_object_get(root, "x-aiproxy");
    Aiproxy__V1__PredictResponse r = AIPROXY__V1__PREDICT_RESPONSE__INIT;
    Aiproxy__V1__Usage u = AIPROXY__V1__USAGE__INIT;
    Aiproxy__V1__Meta m = AIPROXY__V1__META__INIT;
    r.request_id = field(x, "request_id");
    /* As POST /aiproxy/predict: the model the client asked for. */
    r.model = pj_str(x, "requested_model") ? field(x, "requested_model") : field(root, "model");
    r.output = field(msg, "content");
    fill_usage(&u, json_object_get(root, "usage"), x);
    r.usage = &u;
    fill_meta(a, &m, x);
    r.meta = &m;
    *out = pack(a, &r.base, out_len);
    json_decref(root);
    return 0;
}

/* ---- the method tables ---- */

#define GRPC_WIRE .content_type = "application/grpc", .ok_trailers = "grpc-status: 0\r\n"

const struct inbound_ops grpc_chat_ops = {
    .name = "grpc",
    .request_to_openai = chat_unary_request,
    .response_from_openai = chat_response,
    GRPC_WIRE,
};

const struct inbound_ops grpc_chat_stream_ops = {
    .name = "grpc",
    .request_to_openai = chat_stream_request,
    .response_from_openai = chat_response,
    .stream_begin = chat_stream_begin,
    .stream_chunk = chat_stream_chunk,
    .stream_end = chat_stream_end,
    .stream_error = chat_stream_error,
    .stream_trailers = chat_stream_trailers,
    GRPC_WIRE,
};

const struct inbound_ops grpc_embed_ops = {
    .name = "grpc",
    .request_to_openai = embed_request,
    .response_from_openai = embed_response,
    GRPC_WIRE,
};

const struct inbound_ops grpc_predict_ops = {
    .name = "grpc",
    .request_to_openai = predict_request,
    .response_from_openai = predict_response,
    GRPC_WIRE,
};

/* ---- ListModels ---- */

bool grpc_list_models_request_ok(const uint8_t *msg, size_t len)
{
    Aiproxy__V1__ListModelsRequest *r = aiproxy__v1__list_models_request__unpack(NULL, len, msg);
    if (!r) return false;
    aiproxy__v1__list_models_request__free_unpacked(r, NULL);
    return true;
}

int grpc_models_from_json(struct arena *a, const char *json, size_t len, char **out,
                          size_t *out_len)
{
    json_t *root = pj_load(json, len);
    json_t *data = json_object_get(root, "data");
    if (!json_is_array(data)) {
        json_decref(root);
        return -1;
    }
    Aiproxy__V1__ListModelsResponse r = AIPROXY__V1__LIST_MODELS_RESPONSE__INIT;
    size_t n = json_array_size(data);
    r.models = arena_alloc(a, (n ? n : 1) * sizeof *r.models);
    for (size_t i = 0; i < n; i++) {
        json_t *jm = json_array_get(data, i);
        json_t *ps = json_object_get(jm, "providers");
        Aiproxy__V1__ModelInfo *mi = arena_alloc(a, sizeof *mi);
        aiproxy__v1__model_info__init(mi);
        mi->id = field(jm, "id");
        size_t k = json_array_size(ps);
        mi->providers = arena_alloc(a, (k ? k : 1) * sizeof *mi->providers);
        for (size_t j = 0; j < k; j++) {
            json_t *p = json_array_get(ps, j);
            mi->providers[mi->n_providers++] = field(p, "name");
            if (json_is_true(json_object_get(p, "available"))) mi->available = 1;
        }
        r.models[r.n_models++] = mi;
    }
    *out = pack(a, &r.base, out_len);
    json_decref(root);
    return 0;
}

/* ---- grpc.health.v1 ---- */

int grpc_health_request(struct arena *a, const uint8_t *msg, size_t len, char **service)
{
    Grpc__Health__V1__HealthCheckRequest *r =
        grpc__health__v1__health_check_request__unpack(NULL, len, msg);
    if (!r) return -1;
    *service = arena_strdup(a, r->service ? r->service : "");
    grpc__health__v1__health_check_request__free_unpacked(r, NULL);
    return 0;
}

char *grpc_health_response(struct arena *a, enum grpc_health_status status, size_t *len)
{
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
    return pack(a, &r.base, len);
}
