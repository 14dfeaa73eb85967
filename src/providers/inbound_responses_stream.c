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

/* A list of JSON texts (finished parts or items): their count and the
 * array's contents, comma-separated. */
struct jlist {
    size_t n;
    struct sbuf text;
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
    char *usage;        /* the Responses usage object's JSON text */
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

static void jl_add(struct arena *a, struct jlist *l, const char *json, size_t len)
{
    if (l->n++) sb_add(a, &l->text, ",", 1);
    sb_add(a, &l->text, json, len);
}

/* The list as a JSON array's text (arena). */
static char *jl_array(struct arena *a, const struct jlist *l, size_t *len)
{
    char *out = arena_alloc(a, l->text.len + 3);
    out[0] = '[';
    if (l->text.len) memcpy(out + 1, l->text.p, l->text.len);
    out[l->text.len + 1] = ']';
    out[l->text.len + 2] = '\0';
    if (len) *len = l->text.len + 2;
    return out;
}

/* ---- events ---- */

/* Starts an event: its "event:" line and {"type":"<type>" (more members
 * follow, then send_event). */
static void event(struct responses_stream *s, struct jsonw *w, const char *type)
{
    jsonw_init_arena(w, s->a, 512);
    jsonw_raw(w, "event: ");
    jsonw_raw(w, type);
    jsonw_raw(w, "\ndata: {\"type\":\"");
    jsonw_raw(w, type);
    jsonw_raw(w, "\"");
}

/* Ends the event with the next sequence number and emits it. */
static void send_event(struct responses_stream *s, struct jsonw *w, inbound_emit_cb emit, void *ctx)
{
    jsonw_raw(w, ",\"sequence_number\":");
    jsonw_int(w, s->seq++);
    jsonw_raw(w, "}\n\n");
    emit(ctx, w->buf, w->len);
}

/* "key": (after a member). */
static void key(struct jsonw *w, const char *k)
{
    jsonw_raw(w, ",\"");
    jsonw_raw(w, k);
    jsonw_raw(w, "\":");
}

/* An event about the open message's current part. */
static void part_event(struct responses_stream *s, struct jsonw *w, const char *type)
{
    event(s, w, type);
    key(w, "item_id");
    jsonw_str(w, s->msg_id);
    key(w, "output_index");
    jsonw_int(w, (int64_t)s->msg_output);
    key(w, "content_index");
    jsonw_int(w, (int64_t)s->parts.n);
}

/* An output_item event carrying `item` (JSON text). */
static void item_event(struct responses_stream *s, const char *type, size_t output_index,
                       const char *item, size_t item_len, inbound_emit_cb emit, void *ctx)
{
    struct jsonw w;
    event(s, &w, type);
    key(&w, "output_index");
    jsonw_int(&w, (int64_t)output_index);
    key(&w, "item");
    jsonw_rawn(&w, item, item_len);
    send_event(s, &w, emit, ctx);
}

/* An event carrying a Response object. */
static void response_event(struct responses_stream *s, const char *type,
                           const struct responses_parts *p, inbound_emit_cb emit, void *ctx)
{
    struct jsonw w;
    event(s, &w, type);
    key(&w, "response");
    responses_write(&w, s->c, p);
    send_event(s, &w, emit, ctx);
}

static void start(struct responses_stream *s, inbound_emit_cb emit, void *ctx)
{
    if (s->started) return;
    s->started = true;
    static const char *const types[] = {"response.created", "response.in_progress"};
    struct responses_parts p = {.status = "in_progress", .model = s->model};
    for (size_t i = 0; i < 2; i++) response_event(s, types[i], &p, emit, ctx);
}

/* ---- message items ---- */

/* A content part's JSON. */
static void part_json(struct jsonw *w, enum part_kind kind, const char *text)
{
    if (kind == PART_REFUSAL) {
        jsonw_raw(w, "{\"type\":\"refusal\",\"refusal\":");
    } else {
        jsonw_raw(w, "{\"type\":\"output_text\",\"annotations\":[],\"text\":");
    }
    jsonw_str(w, text);
    jsonw_raw(w, "}");
}

/* The open message item with `content` (an array's text). */
static void message_item(struct responses_stream *s, struct jsonw *w, const char *status,
                         const char *content)
{
    jsonw_raw(w, "{\"id\":");
    jsonw_str(w, s->msg_id);
    jsonw_raw(w, ",\"type\":\"message\",\"status\":");
    jsonw_str(w, status);
    jsonw_raw(w, ",\"role\":\"assistant\",\"content\":");
    jsonw_raw(w, content);
    jsonw_raw(w, "}");
}

static void close_part(struct responses_stream *s, inbound_emit_cb emit, void *ctx)
{
    if (s->part == PART_NONE) return;
    const char *text = sb_str(&s->part_text);
    struct jsonw w;
    if (s->part == PART_TEXT) {
        part_event(s, &w, "response.output_text.done");
        key(&w, "text");
        jsonw_str(&w, text);
        jsonw_raw(&w, ",\"logprobs\":[]");
    } else {
        part_event(s, &w, "response.refusal.done");
        key(&w, "refusal");
        jsonw_str(&w, text);
    }
    send_event(s, &w, emit, ctx);
    part_event(s, &w, "response.content_part.done");
    key(&w, "part");
    size_t at = w.len;
    part_json(&w, s->part, text);
    size_t plen = w.len - at;
    char *part = w.buf + at; /* stays in the arena */
    send_event(s, &w, emit, ctx);
    jl_add(s->a, &s->parts, part, plen);
    s->part = PART_NONE;
    memset(&s->part_text, 0, sizeof s->part_text);
}

static void close_message(struct responses_stream *s, const char *status, inbound_emit_cb emit,
                          void *ctx)
{
    close_part(s, emit, ctx);
    struct jsonw w;
    jsonw_init_arena(&w, s->a, 256 + s->parts.text.len);
    message_item(s, &w, status, jl_array(s->a, &s->parts, NULL));
    jl_add(s->a, &s->items, w.buf, w.len);
    item_event(s, "response.output_item.done", s->msg_output, w.buf, w.len, emit, ctx);
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
    struct jsonw w;
    if (s->open != OPEN_MESSAGE) {
        close_open(s, "completed", emit, ctx);
        s->open = OPEN_MESSAGE;
        s->msg_output = s->next_output++;
        s->msg_id = responses_item_id(s->c, "msg", s->msg_output);
        memset(&s->parts, 0, sizeof s->parts);
        s->part = PART_NONE;
        jsonw_init_arena(&w, s->a, 256);
        message_item(s, &w, "in_progress", "[]");
        item_event(s, "response.output_item.added", s->msg_output, w.buf, w.len, emit, ctx);
    }
    if (s->part != kind) {
        close_part(s, emit, ctx);
        s->part = kind;
        part_event(s, &w, "response.content_part.added");
        key(&w, "part");
        part_json(&w, kind, "");
        send_event(s, &w, emit, ctx);
    }
    size_t n = strlen(text);
    sb_add(s->a, &s->part_text, text, n);
    if (kind == PART_TEXT) sb_add(s->a, &s->output_text, text, n);
    part_event(s, &w, kind == PART_TEXT ? "response.output_text.delta" : "response.refusal.delta");
    key(&w, "delta");
    jsonw_str(&w, text);
    if (kind == PART_TEXT) jsonw_raw(&w, ",\"logprobs\":[]");
    send_event(s, &w, emit, ctx);
}

/* ---- function call items ---- */

static void call_item(struct jsonw *w, const struct call *k, const char *status, const char *args)
{
    jsonw_raw(w, "{\"id\":");
    jsonw_str(w, k->item_id);
    jsonw_raw(w, ",\"type\":\"function_call\",\"status\":");
    jsonw_str(w, status);
    jsonw_raw(w, ",\"arguments\":");
    jsonw_str(w, args);
    jsonw_raw(w, ",\"call_id\":");
    jsonw_str(w, k->call_id);
    jsonw_raw(w, ",\"name\":");
    jsonw_str(w, sb_str(&k->name));
    jsonw_raw(w, "}");
}

static void close_call(struct responses_stream *s, inbound_emit_cb emit, void *ctx)
{
    struct call *k = &s->calls[s->ncalls - 1];
    const char *args = sb_str(&k->args);
    struct jsonw w;
    event(s, &w, "response.function_call_arguments.done");
    key(&w, "item_id");
    jsonw_str(&w, k->item_id);
    key(&w, "output_index");
    jsonw_int(&w, (int64_t)k->output_index);
    key(&w, "name");
    jsonw_str(&w, sb_str(&k->name));
    key(&w, "arguments");
    jsonw_str(&w, args);
    send_event(s, &w, emit, ctx);
    jsonw_init_arena(&w, s->a, 256 + k->args.len);
    call_item(&w, k, "completed", args);
    jl_add(s->a, &s->items, w.buf, w.len);
    item_event(s, "response.output_item.done", k->output_index, w.buf, w.len, emit, ctx);
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
        struct jsonw w;
        jsonw_init_arena(&w, s->a, 256);
        call_item(&w, k, "in_progress", "");
        item_event(s, "response.output_item.added", k->output_index, w.buf, w.len, emit, ctx);
    } else if (s->open != OPEN_CALL || k != &s->calls[s->ncalls - 1]) {
        return; /* more of a call already closed: its item is done */
    } else if (name && !k->name.len) {
        sb_add(s->a, &k->name, name, strlen(name));
    }
    if (args && *args) {
        sb_add(s->a, &k->args, args, strlen(args));
        struct jsonw w;
        event(s, &w, "response.function_call_arguments.delta");
        key(&w, "item_id");
        jsonw_str(&w, k->item_id);
        key(&w, "output_index");
        jsonw_int(&w, (int64_t)k->output_index);
        key(&w, "delta");
        jsonw_str(&w, args);
        send_event(s, &w, emit, ctx);
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
    if (json_is_object(u)) {
        struct jsonw w;
        jsonw_init_arena(&w, s->a, 192);
        responses_write_usage(&w, u);
        s->usage = w.buf;
    }
    json_t *x = json_object_get(root, "x-aiproxy");
    if (json_is_object(x)) s->meta = pj_dump(s->a, x, NULL);
    json_decref(root);
}

static const char *usage_of(const struct responses_stream *s)
{
    if (s->usage) return s->usage;
    struct jsonw w;
    jsonw_init_arena(&w, s->a, 192);
    responses_write_usage(&w, NULL);
    return w.buf;
}

void responses_stream_end(void *state, inbound_emit_cb emit, void *ctx)
{
    struct responses_stream *s = state;
    if (s->finished) return;
    start(s, emit, ctx);
    const char *reason;
    const char *status = responses_status(s->finish, &reason);
    close_open(s, reason ? "incomplete" : "completed", emit, ctx);
    size_t olen;
    char *output = jl_array(s->a, &s->items, &olen);
    struct responses_parts p = {.status = status, .model = s->model, .output = output,
                                .output_text = sb_str(&s->output_text), .usage = usage_of(s),
                                .incomplete_reason = reason, .meta = s->meta,
                                .meta_len = s->meta ? strlen(s->meta) : 0};
    struct jsonw w;
    event(s, &w, reason ? "response.incomplete" : "response.completed");
    key(&w, "response");
    size_t at = w.len;
    responses_write(&w, s->c, &p);
    size_t rlen = w.len - at;
    char *response = arena_strndup(s->a, w.buf + at, rlen);
    send_event(s, &w, emit, ctx);
    responses_finish(s->c, response, rlen, output, olen);
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
    struct jsonw e;
    jsonw_init_arena(&e, s->a, 128);
    jsonw_raw(&e, "{\"code\":");
    jsonw_str(&e, code && *code ? code : "server_error");
    jsonw_raw(&e, ",\"message\":");
    jsonw_str(&e, msg && *msg ? msg : "The upstream stream failed.");
    jsonw_raw(&e, "}");
    json_decref(root);
    /* The items finished so far stay in the failed Response's output; the
     * open one is left out (it was never closed). */
    struct responses_parts p = {.status = "failed", .model = s->model,
                                .output = jl_array(s->a, &s->items, NULL), .usage = usage_of(s),
                                .error = e.buf, .meta = s->meta,
                                .meta_len = s->meta ? strlen(s->meta) : 0};
    response_event(s, "response.failed", &p, emit, ctx);
    s->finished = true;
}
