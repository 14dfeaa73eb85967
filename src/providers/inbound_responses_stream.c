/* inbound_responses_stream: OpenAI chat chunks -> the typed Responses event
 * stream (response.created, response.in_progress, output items opened,
 * filled by deltas and closed, then response.completed / .incomplete /
 * .failed), every event numbered by sequence_number from 0. One output
 * item is open at a time: text and tool calls interleaving in the chat
 * stream become consecutive items. The request side and the Response
 * object are inbound_responses.c. */
#include <stdio.h>
#include <string.h>

#include "providers/inbound.h"
#include "providers/internal.h"
#include "providers/responses.h"
#include "providers/responses_internal.h"

/* Tool calls one answer may stream; more are dropped (an upstream's answer
 * is bounded anyway, this bounds the bookkeeping). */
#define RESPONSES_MAX_CALLS 256

/* A growing arena string. */
struct sbuf {
    char *p;
    size_t len, cap;
};

/* A growing list of JSON texts (finished parts or items). */
struct jlist {
    char **v;
    size_t n, cap;
};

enum part_kind { PART_NONE, PART_TEXT, PART_REFUSAL };
enum open_item { OPEN_NONE, OPEN_MESSAGE, OPEN_CALL };

struct call {
    int64_t index;        /* the chat tool_calls index */
    size_t output_index;
    const char *item_id;  /* "fc_..." */
    const char *call_id;  /* the chat tool call's id */
    struct sbuf name, args;
};

struct responses_stream {
    struct responses_ctx *c;
    struct arena *a;
    bool started, finished;
    int64_t seq;
    size_t next_output;
    enum open_item open;
    /* the open message item */
    size_t msg_output;
    const char *msg_id;
    enum part_kind part;
    struct sbuf part_text;
    struct jlist parts;
    /* tool calls, the open one last */
    struct call *calls;
    size_t ncalls, calls_cap;
    struct jlist items; /* finished output items */
    struct sbuf output_text;
    const char *model;  /* the answer's, from its chunks */
    const char *finish;
    char *usage;        /* the chat usage object's JSON text */
    char *meta;         /* the x-aiproxy object's JSON text */
};

static void sb_add(struct arena *a, struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = arena_alloc(a, cap);
        if (b->len) memcpy(p, b->p, b->len);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static const char *sb_str(const struct sbuf *b)
{
    return b->p ? b->p : "";
}

static void jl_add(struct arena *a, struct jlist *l, const json_t *v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **nv = arena_alloc(a, cap * sizeof *nv);
        if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = pj_dump(a, v, NULL);
}

/* The list as a JSON array (a new reference). */
static json_t *jl_array(const struct jlist *l)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < l->n; i++) {
        json_t *v = pj_load(l->v[i], strlen(l->v[i]));
        if (v) json_array_append_new(arr, v);
    }
    return arr;
}

/* ---- events ---- */

/* Emits `d` (stolen) as "event: <its type>" with the next sequence number. */
static void send_event(struct responses_stream *s, json_t *d, inbound_emit_cb emit, void *ctx)
{
    pj_set_int(d, "sequence_number", s->seq++);
    char *json = pj_dump(s->a, d, NULL);
    char *ev = arena_concat(s->a, "event: ", pj_str(d, "type"), "\ndata: ", json, "\n\n", NULL);
    json_decref(d);
    emit(ctx, ev, strlen(ev));
}

static json_t *event(const char *type)
{
    json_t *d = json_object();
    pj_set_str(d, "type", type);
    return d;
}

/* An event about the open message's current part. */
static json_t *part_event(struct responses_stream *s, const char *type)
{
    json_t *d = event(type);
    pj_set_str(d, "item_id", s->msg_id);
    pj_set_int(d, "output_index", (int64_t)s->msg_output);
    pj_set_int(d, "content_index", (int64_t)s->parts.n);
    return d;
}

static json_t *item_event(const char *type, size_t output_index, json_t *item)
{
    json_t *d = event(type);
    pj_set_int(d, "output_index", (int64_t)output_index);
    json_object_set_new(d, "item", item);
    return d;
}

static void start(struct responses_stream *s, inbound_emit_cb emit, void *ctx)
{
    if (s->started) return;
    s->started = true;
    static const char *const types[] = {"response.created", "response.in_progress"};
    for (size_t i = 0; i < 2; i++) {
        json_t *d = event(types[i]);
        json_object_set_new(d, "response",
                            responses_object(s->c, "in_progress", s->model, NULL, NULL, NULL, NULL,
                                             NULL, NULL));
        send_event(s, d, emit, ctx);
    }
}

/* ---- message items ---- */

static json_t *part_json(enum part_kind kind, const char *text)
{
    json_t *p = json_object();
    if (kind == PART_REFUSAL) {
        pj_set_str(p, "type", "refusal");
        pj_set_str(p, "refusal", text);
    } else {
        pj_set_str(p, "type", "output_text");
        json_object_set_new(p, "annotations", json_array());
        pj_set_str(p, "text", text);
    }
    return p;
}

static json_t *message_item(struct responses_stream *s, const char *status, json_t *content)
{
    json_t *m = json_object();
    pj_set_str(m, "id", s->msg_id);
    pj_set_str(m, "type", "message");
    pj_set_str(m, "status", status);
    pj_set_str(m, "role", "assistant");
    json_object_set_new(m, "content", content);
    return m;
}

static void close_part(struct responses_stream *s, inbound_emit_cb emit, void *ctx)
{
    if (s->part == PART_NONE) return;
    const char *text = sb_str(&s->part_text);
    json_t *d;
    if (s->part == PART_TEXT) {
        d = part_event(s, "response.output_text.done");
        pj_set_str(d, "text", text);
        json_object_set_new(d, "logprobs", json_array());
    } else {
        d = part_event(s, "response.refusal.done");
        pj_set_str(d, "refusal", text);
    }
    send_event(s, d, emit, ctx);
    json_t *part = part_json(s->part, text);
    d = part_event(s, "response.content_part.done");
    json_object_set(d, "part", part);
    send_event(s, d, emit, ctx);
    jl_add(s->a, &s->parts, part);
    json_decref(part);
    s->part = PART_NONE;
    memset(&s->part_text, 0, sizeof s->part_text);
}

static void close_message(struct responses_stream *s, const char *status, inbound_emit_cb emit,
                          void *ctx)
{
    close_part(s, emit, ctx);
    json_t *item = message_item(s, status, jl_array(&s->parts));
    jl_add(s->a, &s->items, item);
    send_event(s, item_event("response.output_item.done", s->msg_output, item), emit, ctx);
    s->open = OPEN_NONE;
}

static void close_call(struct responses_stream *s, inbound_emit_cb emit, void *ctx);

static void close_open(struct responses_stream *s, const char *status, inbound_emit_cb emit,
                       void *ctx)
{
    if (s->open == OPEN_MESSAGE) close_message(s, status, emit, ctx);
    else if (s->open == OPEN_CALL) close_call(s, emit, ctx);
}

static void on_text(struct responses_stream *s, enum part_kind kind, const char *text,
                    inbound_emit_cb emit, void *ctx)
{
    if (s->open != OPEN_MESSAGE) {
        close_open(s, "completed", emit, ctx);
        s->open = OPEN_MESSAGE;
        s->msg_output = s->next_output++;
        s->msg_id = responses_item_id(s->c, "msg", s->msg_output);
        memset(&s->parts, 0, sizeof s->parts);
        s->part = PART_NONE;
        send_event(s, item_event("response.output_item.added", s->msg_output,
                           message_item(s, "in_progress", json_array())), emit, ctx);
    }
    if (s->part != kind) {
        close_part(s, emit, ctx);
        s->part = kind;
        json_t *d = part_event(s, "response.content_part.added");
        json_object_set_new(d, "part", part_json(kind, ""));
        send_event(s, d, emit, ctx);
    }
    size_t n = strlen(text);
    sb_add(s->a, &s->part_text, text, n);
    if (kind == PART_TEXT) sb_add(s->a, &s->output_text, text, n);
    json_t *d = part_event(s, kind == PART_TEXT ? "response.output_text.delta" : "response.refusal.delta");
    pj_set_str(d, "delta", text);
    if (kind == PART_TEXT) json_object_set_new(d, "logprobs", json_array());
    send_event(s, d, emit, ctx);
}

/* ---- function call items ---- */

static json_t *call_item(const struct call *k, const char *status, const char *args)
{
    json_t *it = json_object();
    pj_set_str(it, "id", k->item_id);
    pj_set_str(it, "type", "function_call");
    pj_set_str(it, "status", status);
    pj_set_str(it, "arguments", args);
    pj_set_str(it, "call_id", k->call_id);
    pj_set_str(it, "name", sb_str(&k->name));
    return it;
}

static void close_call(struct responses_stream *s, inbound_emit_cb emit, void *ctx)
{
    struct call *k = &s->calls[s->ncalls - 1];
    const char *args = sb_str(&k->args);
    json_t *d = event("response.function_call_arguments.done");
    pj_set_str(d, "item_id", k->item_id);
    pj_set_int(d, "output_index", (int64_t)k->output_index);
    pj_set_str(d, "name", sb_str(&k->name));
    pj_set_str(d, "arguments", args);
    send_event(s, d, emit, ctx);
    json_t *item = call_item(k, "completed", args);
    jl_add(s->a, &s->items, item);
    send_event(s, item_event("response.output_item.done", k->output_index, item), emit, ctx);
    s->open = OPEN_NONE;
}

static struct call *find_call(struct responses_stream *s, int64_t index)
{
    for (size_t i = s->ncalls; i > 0; i--)
        if (s->calls[i - 1].index == index) return &s->calls[i - 1];
    return NULL;
}

static struct call *open_call(struct responses_stream *s, int64_t index, const char *id,
                              inbound_emit_cb emit, void *ctx)
{
    if (s->ncalls >= RESPONSES_MAX_CALLS) return NULL;
    close_open(s, "completed", emit, ctx);
    if (s->ncalls == s->calls_cap) {
        size_t cap = s->calls_cap ? s->calls_cap * 2 : 4;
        struct call *nc = arena_alloc(s->a, cap * sizeof *nc);
        if (s->ncalls) memcpy(nc, s->calls, s->ncalls * sizeof *nc);
        s->calls = nc;
        s->calls_cap = cap;
    }
    struct call *k = &s->calls[s->ncalls++];
    memset(k, 0, sizeof *k);
    k->index = index;
    k->output_index = s->next_output++;
    k->item_id = responses_item_id(s->c, "fc", k->output_index);
    k->call_id = id && *id ? arena_strdup(s->a, id) : responses_item_id(s->c, "call", s->ncalls - 1);
    s->open = OPEN_CALL;
    return k;
}

static void on_call_delta(struct responses_stream *s, const json_t *tc, inbound_emit_cb emit,
                          void *ctx)
{
    int64_t index = 0;
    (void)pj_int(tc, "index", &index);
    const char *id = pj_str(tc, "id");
    json_t *fn = json_object_get(tc, "function");
    const char *name = pj_str(fn, "name"), *args = pj_str(fn, "arguments");
    struct call *k = find_call(s, index);
    /* A new call: an index not seen, or a new id at a known index (some
     * providers number every call 0). */
    bool fresh = !k || (id && *id && strcmp(id, k->call_id) != 0);
    if (fresh) {
        k = open_call(s, index, id, emit, ctx);
        if (!k) return;
        if (name) sb_add(s->a, &k->name, name, strlen(name));
        send_event(s, item_event("response.output_item.added", k->output_index, call_item(k, "in_progress", "")),
             emit, ctx);
    } else if (s->open != OPEN_CALL || k != &s->calls[s->ncalls - 1]) {
        return; /* more of a call already closed: its item is done */
    } else if (name && !k->name.len) {
        sb_add(s->a, &k->name, name, strlen(name));
    }
    if (args && *args) {
        sb_add(s->a, &k->args, args, strlen(args));
        json_t *d = event("response.function_call_arguments.delta");
        pj_set_str(d, "item_id", k->item_id);
        pj_set_int(d, "output_index", (int64_t)k->output_index);
        pj_set_str(d, "delta", args);
        send_event(s, d, emit, ctx);
    }
}

/* ---- the ops ---- */

void *responses_stream_begin(struct arena *a, const char *request_id, void *ctx)
{
    struct responses_ctx *c = ctx ? ctx : responses_ctx_default(a, request_id);
    struct responses_stream *s = arena_alloc(a, sizeof *s);
    memset(s, 0, sizeof *s);
    s->c = c;
    s->a = a;
    c->stream = s;
    return s;
}

void responses_stream_chunk(void *state, const char *json, size_t len, inbound_emit_cb emit,
                            void *ctx)
{
    struct responses_stream *s = state;
    if (s->finished) return;
    json_t *root = pj_load(json, len);
    if (!json_is_object(root)) {
        json_decref(root);
        return;
    }
    json_t *e = json_object_get(root, "error");
    if (e && !json_is_null(e)) {
        json_decref(root);
        responses_stream_error(state, json, len, emit, ctx);
        return;
    }
    const char *model = pj_str(root, "model");
    if (model && *model && !s->model) s->model = arena_strdup(s->a, model);
    start(s, emit, ctx);
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *delta = json_object_get(choice, "delta");
    const char *text = pj_str(delta, "content");
    if (text && *text) on_text(s, PART_TEXT, text, emit, ctx);
    const char *refusal = pj_str(delta, "refusal");
    if (refusal && *refusal) on_text(s, PART_REFUSAL, refusal, emit, ctx);
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(delta, "tool_calls"), i, tc) {
        if (json_is_object(tc)) on_call_delta(s, tc, emit, ctx);
    }
    const char *finish = pj_str(choice, "finish_reason");
    if (finish) s->finish = arena_strdup(s->a, finish);
    json_t *u = json_object_get(root, "usage");
    if (json_is_object(u)) s->usage = pj_dump(s->a, u, NULL);
    json_t *x = json_object_get(root, "x-aiproxy");
    if (json_is_object(x)) s->meta = pj_dump(s->a, x, NULL);
    json_decref(root);
}

static json_t *usage_of(const struct responses_stream *s)
{
    json_t *u = s->usage ? pj_load(s->usage, strlen(s->usage)) : NULL;
    json_t *r = responses_usage(u);
    json_decref(u);
    return r;
}

void responses_stream_end(void *state, inbound_emit_cb emit, void *ctx)
{
    struct responses_stream *s = state;
    if (s->finished) return;
    start(s, emit, ctx);
    const char *reason;
    const char *status = responses_status(s->finish, &reason);
    close_open(s, reason ? "incomplete" : "completed", emit, ctx);
    json_t *r = responses_object(s->c, status, s->model, jl_array(&s->items), sb_str(&s->output_text),
                                 usage_of(s), NULL, reason, s->meta);
    responses_finish(s->c, r);
    json_t *d = event(reason ? "response.incomplete" : "response.completed");
    json_object_set_new(d, "response", r);
    send_event(s, d, emit, ctx);
    s->finished = true;
}

void responses_stream_error(void *state, const char *error_json, size_t len, inbound_emit_cb emit,
                            void *ctx)
{
    struct responses_stream *s = state;
    if (s->finished) return;
    start(s, emit, ctx);
    json_t *root = pj_load(error_json, len);
    json_t *oe = json_object_get(root, "error");
    if (!json_is_object(oe)) oe = root; /* a bare error object */
    const char *msg = pj_str(oe, "message");
    if (!msg) msg = json_is_string(json_object_get(root, "error")) ? pj_str(root, "error") : NULL;
    const char *code = pj_str(oe, "code");
    if (!code) code = pj_str(oe, "type");
    json_t *err = json_object();
    pj_set_str(err, "code", code && *code ? code : "server_error");
    pj_set_str(err, "message", msg && *msg ? msg : "The upstream stream failed.");
    json_decref(root);
    /* The items finished so far stay in the failed Response's output; the
     * open one is left out (it was never closed). */
    json_t *r = responses_object(s->c, "failed", s->model, jl_array(&s->items), NULL, usage_of(s),
                                 err, NULL, s->meta);
    json_t *d = event("response.failed");
    json_object_set_new(d, "response", r);
    send_event(s, d, emit, ctx);
    s->finished = true;
}
