/* inbound_anthropic: the Anthropic Messages API as a client-facing format
 * (POST /v1/messages). A Messages request becomes an OpenAI chat request;
 * the OpenAI answer (whole, or chunk by chunk) becomes a Messages answer or
 * the six-event Messages stream (APIS.md sections 4 and 4b). */
#include <stdio.h>
#include <string.h>

#include "providers/inbound.h"
#include "providers/internal.h"

static int bad(struct inbound_error *err, const char *param, const char *fmt, const char *arg)
{
    snprintf(err->message, sizeof err->message, fmt, arg);
    snprintf(err->param, sizeof err->param, "%s", param);
    err->invalid_json = false;
    return -1;
}

/* ---- Messages request -> OpenAI chat request ---- */

/* Text of a system value: a string or an array of text blocks. */
static char *system_text(struct arena *a, const json_t *sys)
{
    return pj_content_text(a, sys, "\n", NULL);
}

static json_t *image_part(struct arena *a, const json_t *block)
{
    json_t *src = json_object_get(block, "source");
    const char *type = pj_str(src, "type");
    const char *url = NULL;
    if (type && strcmp(type, "url") == 0) {
        url = pj_str(src, "url");
    } else if (type && strcmp(type, "base64") == 0 && pj_str(src, "media_type") &&
               pj_str(src, "data")) {
        url = arena_printf(a, "data:%s;base64,%s", pj_str(src, "media_type"), pj_str(src, "data"));
    }
    if (!url) return NULL;
    json_t *iu = json_object();
    pj_set_str(iu, "url", url);
    json_t *part = json_object();
    pj_set_str(part, "type", "image_url");
    json_object_set_new(part, "image_url", iu);
    return part;
}

static json_t *text_part(const char *text)
{
    json_t *p = json_object();
    pj_set_str(p, "type", "text");
    pj_set_str(p, "text", text);
    return p;
}

/* Prompt caching (SPEC section 9): a block's cache_control stays on the
 * OpenAI part, message or tool made from it, so that it reaches an
 * Anthropic provider (the OpenAI adapter strips it for the others).
 * Returns `to`. */
static json_t *keep_cache_control(json_t *to, const json_t *block)
{
    json_t *cc = json_object_get(block, "cache_control");
    if (json_is_object(cc)) json_object_set(to, "cache_control", cc);
    return to;
}

/* A system value with a cache_control on one of its blocks, as OpenAI
 * text parts that keep them; NULL when none has one (a string does). */
static json_t *system_parts(const json_t *sys)
{
    if (!json_is_array(sys)) return NULL;
    bool cached = false;
    size_t i;
    json_t *b;
    json_array_foreach(sys, i, b) if (json_is_object(json_object_get(b, "cache_control"))) cached = true;
    if (!cached) return NULL;
    json_t *parts = json_array();
    json_array_foreach(sys, i, b) {
        const char *text = pj_str(b, "text");
        if (text && *text) json_array_append_new(parts, keep_cache_control(text_part(text), b));
    }
    return parts;
}

/* tool_result content: a string, or blocks whose text is joined. */
static char *tool_result_text(struct arena *a, const json_t *content)
{
    if (!content || json_is_null(content)) return "";
    if (json_is_string(content)) return arena_strdup(a, json_string_value(content));
    size_t i;
    json_t *b;
    char *out = "";
    json_array_foreach(content, i, b) {
        const char *t = pj_str(b, "type");
        if (t && strcmp(t, "text") == 0 && pj_str(b, "text"))
            out = *out ? arena_printf(a, "%s\n%s", out, pj_str(b, "text"))
                       : arena_strdup(a, pj_str(b, "text"));
    }
    return out;
}

static int user_turn(struct arena *a, const json_t *content, json_t *msgs, size_t idx,
                     struct inbound_error *err)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", idx);
    if (json_is_string(content)) {
        json_t *m = json_object();
        pj_set_str(m, "role", "user");
        pj_set_str(m, "content", json_string_value(content));
        json_array_append_new(msgs, m);
        return 0;
    }
    if (!json_is_array(content)) return bad(err, param, "%s must be a string or an array of blocks", param);
    json_t *parts = json_array();
    size_t i;
    json_t *b;
    json_array_foreach(content, i, b) {
        const char *t = pj_str(b, "type");
        if (!t) {
            json_decref(parts);
            return bad(err, param, "%s has a block without a type", param);
        }
        if (strcmp(t, "text") == 0 && pj_str(b, "text")) {
            json_array_append_new(parts, keep_cache_control(text_part(pj_str(b, "text")), b));
        } else if (strcmp(t, "image") == 0) {
            json_t *p = image_part(a, b);
            if (!p) {
                json_decref(parts);
                return bad(err, param, "%s has an image without a usable source", param);
            }
            json_array_append_new(parts, keep_cache_control(p, b));
        } else if (strcmp(t, "tool_result") == 0) {
            /* Tool results are OpenAI tool messages, which must come first. */
            const char *id = pj_str(b, "tool_use_id");
            if (!id) {
                json_decref(parts);
                return bad(err, param, "%s has a tool_result without tool_use_id", param);
            }
            json_t *m = json_object();
            pj_set_str(m, "role", "tool");
            pj_set_str(m, "tool_call_id", id);
            char *text = tool_result_text(a, json_object_get(b, "content"));
            if (pj_true(b, "is_error")) text = arena_printf(a, "Error: %s", text);
            pj_set_str(m, "content", text);
            json_array_append_new(msgs, keep_cache_control(m, b));
        } else if (strcmp(t, "document") == 0 || strcmp(t, "search_result") == 0) {
            json_decref(parts);
            return bad(err, param, "block type '%s' is not supported by this gateway", t);
        }
        /* thinking and other assistant-only blocks are ignored here. */
    }
    if (json_array_size(parts) > 0) {
        json_t *m = json_object();
        pj_set_str(m, "role", "user");
        json_object_set_new(m, "content", parts);
        json_array_append_new(msgs, m);
    } else {
        json_decref(parts);
    }
    return 0;
}

static int assistant_turn(struct arena *a, const json_t *content, json_t *msgs, size_t idx,
                          struct inbound_error *err)
{
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", idx);
    json_t *m = json_object();
    pj_set_str(m, "role", "assistant");
    if (json_is_string(content)) {
        pj_set_str(m, "content", json_string_value(content));
        json_array_append_new(msgs, m);
        return 0;
    }
    if (!json_is_array(content)) {
        json_decref(m);
        return bad(err, param, "%s must be a string or an array of blocks", param);
    }
    char *text = "";
    json_t *calls = json_array();
    size_t i;
    json_t *b;
    json_array_foreach(content, i, b) {
        keep_cache_control(m, b); /* the blocks are joined: the message keeps it */
        const char *t = pj_str(b, "type");
        if (t && strcmp(t, "text") == 0 && pj_str(b, "text")) {
            text = arena_printf(a, "%s%s", text, pj_str(b, "text"));
        } else if (t && strcmp(t, "tool_use") == 0) {
            const char *id = pj_str(b, "id"), *name = pj_str(b, "name");
            if (!id || !name) {
                json_decref(calls);
                json_decref(m);
                return bad(err, param, "%s has a tool_use without id or name", param);
            }
            json_t *input = json_object_get(b, "input");
            json_t *c = json_object();
            pj_set_str(c, "id", id);
            pj_set_str(c, "type", "function");
            json_t *fn = json_object();
            pj_set_str(fn, "name", name);
            pj_set_str(fn, "arguments", input ? pj_dump(a, input, NULL) : "{}");
            json_object_set_new(c, "function", fn);
            json_array_append_new(calls, c);
        }
    }
    if (json_array_size(calls) > 0) {
        if (*text) pj_set_str(m, "content", text);
        else json_object_set_new(m, "content", json_null());
        json_object_set(m, "tool_calls", calls);
    } else {
        pj_set_str(m, "content", text);
    }
    json_decref(calls);
    json_array_append_new(msgs, m);
    return 0;
}

static int tools_to_openai(const json_t *in, json_t *out, struct inbound_error *err)
{
    json_t *tools = json_object_get(in, "tools");
    if (tools && !json_is_array(tools)) return bad(err, "tools", "%s must be an array", "tools");
    if (json_array_size(tools) > 0) {
        json_t *list = json_array();
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t) {
            const char *type = pj_str(t, "type");
            const char *name = pj_str(t, "name");
            if ((type && strcmp(type, "custom") != 0) || !name) {
                json_decref(list);
                return bad(err, "tools", "only client tools with a name and input_schema are supported%s", "");
            }
            json_t *fn = json_object();
            pj_set_str(fn, "name", name);
            if (pj_str(t, "description")) pj_set_str(fn, "description", pj_str(t, "description"));
            json_t *schema = json_object_get(t, "input_schema");
            if (json_is_object(schema)) json_object_set(fn, "parameters", schema);
            json_t *o = json_object();
            pj_set_str(o, "type", "function");
            json_object_set_new(o, "function", fn);
            json_array_append_new(list, keep_cache_control(o, t));
        }
        json_object_set_new(out, "tools", list);
    }
    json_t *tc = json_object_get(in, "tool_choice");
    if (tc && !json_is_null(tc)) {
        const char *type = pj_str(tc, "type");
        if (!type) return bad(err, "tool_choice", "%s must be an object with a type", "tool_choice");
        if (strcmp(type, "auto") == 0) pj_set_str(out, "tool_choice", "auto");
        else if (strcmp(type, "any") == 0) pj_set_str(out, "tool_choice", "required");
        else if (strcmp(type, "none") == 0) pj_set_str(out, "tool_choice", "none");
        else if (strcmp(type, "tool") == 0 && pj_str(tc, "name")) {
            json_t *fn = json_object();
            pj_set_str(fn, "name", pj_str(tc, "name"));
            json_t *o = json_object();
            pj_set_str(o, "type", "function");
            json_object_set_new(o, "function", fn);
            json_object_set_new(out, "tool_choice", o);
        } else {
            return bad(err, "tool_choice", "unknown tool_choice type '%s'", type);
        }
        if (pj_true(tc, "disable_parallel_tool_use") && json_object_get(out, "tools"))
            json_object_set_new(out, "parallel_tool_calls", json_false());
    }
    return 0;
}

static int request_to_openai(struct arena *a, const char *body, size_t len, char **out,
                             size_t *out_len, bool *stream, struct inbound_routing *routing,
                             struct inbound_error *err)
{
    json_t *in = pj_inbound_begin(body, len, routing, err);
    if (!in) return -1;
    json_t *o = json_object();
    int rc = -1;
    const char *model = pj_str(in, "model");
    if (!model || !*model) {
        bad(err, "model", "%s: a non-empty string is required", "model");
        goto done;
    }
    pj_set_str(o, "model", model);
    json_t *mt = json_object_get(in, "max_tokens");
    if (!json_is_integer(mt) || json_integer_value(mt) < 1 || json_integer_value(mt) > 10000000) {
        bad(err, "max_tokens", "%s: an integer from 1 is required", "max_tokens");
        goto done;
    }
    json_object_set(o, "max_tokens", mt);
    json_t *in_msgs = json_object_get(in, "messages");
    if (!json_is_array(in_msgs) || json_array_size(in_msgs) == 0) {
        bad(err, "messages", "%s: a non-empty array is required", "messages");
        goto done;
    }
    json_t *msgs = json_array();
    json_object_set_new(o, "messages", msgs);
    json_t *sys = json_object_get(in, "system");
    if (sys && !json_is_null(sys)) {
        char *text = system_text(a, sys);
        if (!text) {
            bad(err, "system", "%s must be a string or an array of text blocks", "system");
            goto done;
        }
        json_t *m = json_object();
        pj_set_str(m, "role", "system");
        json_t *parts = system_parts(sys);
        if (parts) json_object_set_new(m, "content", parts);
        else pj_set_str(m, "content", text);
        json_array_append_new(msgs, m);
    }
    size_t i;
    json_t *m;
    json_array_foreach(in_msgs, i, m) {
        const char *role = pj_str(m, "role");
        json_t *content = json_object_get(m, "content");
        int r;
        if (role && strcmp(role, "user") == 0) {
            r = user_turn(a, content, msgs, i, err);
        } else if (role && strcmp(role, "assistant") == 0) {
            r = assistant_turn(a, content, msgs, i, err);
        } else {
            char param[64];
            snprintf(param, sizeof param, "messages[%zu].role", i);
            r = bad(err, param, "%s must be \"user\" or \"assistant\"", param);
        }
        if (r != 0) goto done;
    }
    if (json_array_size(msgs) == 0) {
        bad(err, "messages", "%s hold no content", "messages");
        goto done;
    }
    json_t *stop = json_object_get(in, "stop_sequences");
    if (json_is_array(stop) && json_array_size(stop) > 0) json_object_set(o, "stop", stop);
    static const char *const numbers[] = {"temperature", "top_p", NULL};
    for (const char *const *k = numbers; *k; k++) {
        json_t *v = json_object_get(in, *k);
        if (v && !json_is_null(v)) {
            if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1) {
                bad(err, *k, "%s must be a number from 0 to 1", *k);
                goto done;
            }
            json_object_set(o, *k, v);
        }
    }
    const char *user = pj_str(json_object_get(in, "metadata"), "user_id");
    if (user) pj_set_str(o, "user", user);
    if (tools_to_openai(in, o, err) != 0) goto done;
    json_t *st = json_object_get(in, "stream");
    if (st && !json_is_boolean(st) && !json_is_null(st)) {
        bad(err, "stream", "%s must be a boolean", "stream");
        goto done;
    }
    *stream = json_is_true(st);
    if (*stream) {
        json_object_set_new(o, "stream", json_true());
        json_t *so = json_object();
        json_object_set_new(so, "include_usage", json_true());
        json_object_set_new(o, "stream_options", so);
    }
    *out = pj_dump(a, o, out_len);
    rc = 0;
done:
    json_decref(in);
    json_decref(o);
    return rc;
}

/* ---- OpenAI completion -> Messages answer ---- */

static const char *stop_reason(const char *finish)
{
    if (!finish) return "end_turn";
    if (strcmp(finish, "length") == 0) return "max_tokens";
    if (strcmp(finish, "tool_calls") == 0 || strcmp(finish, "function_call") == 0) return "tool_use";
    if (strcmp(finish, "content_filter") == 0) return "refusal";
    return "end_turn";
}

static const char *message_id(struct arena *a, const json_t *root)
{
    const char *rid = pj_str(json_object_get(root, "x-aiproxy"), "request_id");
    const char *id = rid ? rid : pj_str(root, "id");
    return arena_printf(a, "msg_%s", id ? id : "aiproxy");
}

/* Anthropic usage from OpenAI's: input_tokens excludes cached reads and
 * cache writes, which prompt_tokens includes (SPEC section 9). */
static json_t *anthropic_usage(int64_t prompt, int64_t completion, int64_t cached, int64_t written)
{
    if (cached < 0) cached = 0;
    if (cached > prompt) cached = prompt;
    if (written < 0) written = 0;
    if (written > prompt - cached) written = prompt - cached;
    json_t *u = json_object();
    pj_set_int(u, "input_tokens", prompt - cached - written);
    pj_set_int(u, "output_tokens", completion);
    pj_set_int(u, "cache_creation_input_tokens", written);
    pj_set_int(u, "cache_read_input_tokens", cached);
    return u;
}

/* The counts of an OpenAI usage object (scan.h's names: the gateway's
 * cache_write_tokens, else the Anthropic names some servers use). */
static void read_usage(const json_t *u, int64_t *prompt, int64_t *completion, int64_t *cached,
                       int64_t *written)
{
    (void)pj_int(u, "prompt_tokens", prompt);
    (void)pj_int(u, "completion_tokens", completion);
    json_t *d = json_object_get(u, "prompt_tokens_details");
    if (!pj_int(d, "cached_tokens", cached)) (void)pj_int(u, "cache_read_input_tokens", cached);
    if (!pj_int(d, "cache_write_tokens", written))
        (void)pj_int(u, "cache_creation_input_tokens", written);
}

static json_t *parse_arguments(const char *args)
{
    json_t *v = args ? pj_load(args, strlen(args)) : NULL;
    if (json_is_object(v)) return v;
    json_decref(v);
    return json_object(); /* invalid or non-object arguments: nothing to give */
}

static int response_from_openai(struct arena *a, void *ctx, const char *body, size_t len, char **out,
                                size_t *out_len)
{
    json_t *root = pj_load(body, len);
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *msg = json_object_get(choice, "message");
    if (!json_is_object(msg)) {
        json_decref(root);
        return -1;
    }
    json_t *content = json_array();
    const char *text = pj_str(msg, "content");
    if (text && *text) {
        json_t *b = json_object();
        pj_set_str(b, "type", "text");
        pj_set_str(b, "text", text);
        json_array_append_new(content, b);
    }
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(msg, "tool_calls"), i, c) {
        json_t *fn = json_object_get(c, "function");
        json_t *b = json_object();
        pj_set_str(b, "type", "tool_use");
        const char *id = pj_str(c, "id");
        pj_set_str(b, "id", id ? id : arena_printf(a, "toolu_%zu", i));
        pj_set_str(b, "name", pj_str(fn, "name"));
        json_object_set_new(b, "input", parse_arguments(pj_str(fn, "arguments")));
        json_array_append_new(content, b);
    }
    json_t *r = json_object();
    pj_set_str(r, "id", message_id(a, root));
    pj_set_str(r, "type", "message");
    pj_set_str(r, "role", "assistant");
    const char *model = pj_str(root, "model");
    pj_set_str(r, "model", model ? model : "");
    json_object_set_new(r, "content", content);
    pj_set_str(r, "stop_reason", stop_reason(pj_str(choice, "finish_reason")));
    json_object_set_new(r, "stop_sequence", json_null());
    int64_t prompt = 0, completion = 0, cached = 0, written = 0;
    read_usage(json_object_get(root, "usage"), &prompt, &completion, &cached, &written);
    json_object_set_new(r, "usage", anthropic_usage(prompt, completion, cached, written));
    json_t *x = json_object_get(root, "x-aiproxy");
    if (x) json_object_set(r, "x-aiproxy", x);
    *out = pj_dump(a, r, out_len);
    json_decref(r);
    json_decref(root);
    return 0;
}

/* ---- OpenAI chunks -> Messages events ---- */

enum open_block { OPEN_NONE, OPEN_TEXT, OPEN_TOOL };

struct stream {
    struct arena *a;
    const char *request_id;
    bool started, finished;
    enum open_block open;
    int next_index;      /* the next content block index */
    int64_t open_tool;   /* OpenAI tool index of the open tool_use block */
    const char *stop_reason;
    int64_t prompt, completion, cached, written;
    bool usage_seen;
    char *meta;          /* the x-aiproxy object (JSON text), when it came */
};

static void send_event(struct stream *s, const char *name, json_t *data, inbound_emit_cb emit,
                       void *ctx)
{
    size_t n;
    char *json = pj_dump(s->a, data, &n);
    json_decref(data);
    char *ev = arena_printf(s->a, "event: %s\ndata: %s\n\n", name, json);
    emit(ctx, ev, strlen(ev));
}

static void *stream_begin(struct arena *a, const char *request_id, void *ctx)
{
    struct stream *s = arena_alloc(a, sizeof *s);
    memset(s, 0, sizeof *s);
    s->a = a;
    s->request_id = arena_strdup(a, request_id ? request_id : "aiproxy");
    s->open_tool = -1;
    return s;
}

static void start_message(struct stream *s, const char *model, inbound_emit_cb emit, void *ctx)
{
    if (s->started) return;
    s->started = true;
    json_t *m = json_object();
    pj_set_str(m, "id", arena_printf(s->a, "msg_%s", s->request_id));
    pj_set_str(m, "type", "message");
    pj_set_str(m, "role", "assistant");
    pj_set_str(m, "model", model ? model : "");
    json_object_set_new(m, "content", json_array());
    json_object_set_new(m, "stop_reason", json_null());
    json_object_set_new(m, "stop_sequence", json_null());
    json_object_set_new(m, "usage", anthropic_usage(0, 0, 0, 0));
    json_t *d = json_object();
    pj_set_str(d, "type", "message_start");
    json_object_set_new(d, "message", m);
    send_event(s, "message_start", d, emit, ctx);
}

static void close_block(struct stream *s, inbound_emit_cb emit, void *ctx)
{
    if (s->open == OPEN_NONE) return;
    json_t *d = json_object();
    pj_set_str(d, "type", "content_block_stop");
    pj_set_int(d, "index", s->next_index - 1);
    send_event(s, "content_block_stop", d, emit, ctx);
    s->open = OPEN_NONE;
    s->open_tool = -1;
}

static void open_block(struct stream *s, json_t *block, enum open_block kind, inbound_emit_cb emit,
                       void *ctx)
{
    close_block(s, emit, ctx);
    json_t *d = json_object();
    pj_set_str(d, "type", "content_block_start");
    pj_set_int(d, "index", s->next_index++);
    json_object_set_new(d, "content_block", block);
    send_event(s, "content_block_start", d, emit, ctx);
    s->open = kind;
}

static void block_delta(struct stream *s, const char *type, const char *key, const char *value,
                        inbound_emit_cb emit, void *ctx)
{
    json_t *delta = json_object();
    pj_set_str(delta, "type", type);
    pj_set_str(delta, key, value);
    json_t *d = json_object();
    pj_set_str(d, "type", "content_block_delta");
    pj_set_int(d, "index", s->next_index - 1);
    json_object_set_new(d, "delta", delta);
    send_event(s, "content_block_delta", d, emit, ctx);
}

static void on_tool_delta(struct stream *s, const json_t *tc, inbound_emit_cb emit, void *ctx)
{
    int64_t idx = 0;
    (void)pj_int(tc, "index", &idx);
    json_t *fn = json_object_get(tc, "function");
    const char *id = pj_str(tc, "id");
    const char *name = pj_str(fn, "name");
    if (s->open != OPEN_TOOL || s->open_tool != idx || id) {
        if (s->open == OPEN_TOOL && s->open_tool == idx && !id && !name) {
            /* a continuation of the open call */
        } else {
            json_t *b = json_object();
            pj_set_str(b, "type", "tool_use");
            pj_set_str(b, "id", id ? id : arena_printf(s->a, "toolu_%lld", (long long)idx));
            pj_set_str(b, "name", name ? name : "");
            json_object_set_new(b, "input", json_object());
            open_block(s, b, OPEN_TOOL, emit, ctx);
            s->open_tool = idx;
        }
    }
    const char *args = pj_str(fn, "arguments");
    if (args && *args) block_delta(s, "input_json_delta", "partial_json", args, emit, ctx);
}

static void stream_error(void *state, const char *error_json, size_t len, inbound_emit_cb emit,
                         void *ctx);

static void stream_chunk(void *state, const char *json, size_t len, inbound_emit_cb emit, void *ctx)
{
    struct stream *s = state;
    if (s->finished) return;
    json_t *root = pj_load(json, len);
    if (!json_is_object(root)) {
        json_decref(root);
        return;
    }
    if (json_object_get(root, "error") && !json_is_null(json_object_get(root, "error"))) {
        json_decref(root);
        stream_error(state, json, len, emit, ctx);
        return;
    }
    start_message(s, pj_str(root, "model"), emit, ctx);
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *delta = json_object_get(choice, "delta");
    const char *text = pj_str(delta, "content");
    if (text && *text) {
        if (s->open != OPEN_TEXT) {
            json_t *b = json_object();
            pj_set_str(b, "type", "text");
            pj_set_str(b, "text", "");
            open_block(s, b, OPEN_TEXT, emit, ctx);
        }
        block_delta(s, "text_delta", "text", text, emit, ctx);
    }
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(delta, "tool_calls"), i, tc) on_tool_delta(s, tc, emit, ctx);
    const char *finish = pj_str(choice, "finish_reason");
    if (finish) s->stop_reason = stop_reason(finish);
    json_t *u = json_object_get(root, "usage");
    if (json_is_object(u)) {
        read_usage(u, &s->prompt, &s->completion, &s->cached, &s->written);
        s->usage_seen = true;
    }
    json_t *x = json_object_get(root, "x-aiproxy");
    if (json_is_object(x)) s->meta = pj_dump(s->a, x, NULL);
    json_decref(root);
}

static void stream_end(void *state, inbound_emit_cb emit, void *ctx)
{
    struct stream *s = state;
    if (s->finished) return;
    start_message(s, NULL, emit, ctx);
    close_block(s, emit, ctx);
    json_t *delta = json_object();
    pj_set_str(delta, "stop_reason", s->stop_reason ? s->stop_reason : "end_turn");
    json_object_set_new(delta, "stop_sequence", json_null());
    json_t *d = json_object();
    pj_set_str(d, "type", "message_delta");
    json_object_set_new(d, "delta", delta);
    json_object_set_new(d, "usage",
                        anthropic_usage(s->prompt, s->completion, s->cached, s->written));
    json_t *meta = s->meta ? pj_load(s->meta, strlen(s->meta)) : NULL;
    if (meta) json_object_set_new(d, "x-aiproxy", meta);
    send_event(s, "message_delta", d, emit, ctx);
    json_t *stop = json_object();
    pj_set_str(stop, "type", "message_stop");
    send_event(s, "message_stop", stop, emit, ctx);
    s->finished = true;
}

static void stream_error(void *state, const char *error_json, size_t len, inbound_emit_cb emit,
                         void *ctx)
{
    struct stream *s = state;
    if (s->finished) return;
    json_t *root = pj_load(error_json, len);
    const char *msg = pj_str(json_object_get(root, "error"), "message");
    json_t *e = json_object();
    pj_set_str(e, "type", "api_error");
    pj_set_str(e, "message", msg ? msg : "The upstream stream failed.");
    json_decref(root);
    json_t *d = json_object();
    pj_set_str(d, "type", "error");
    json_object_set_new(d, "error", e);
    send_event(s, "error", d, emit, ctx);
    s->finished = true;
}

/* ---- errors ---- */

static const char *error_type(int status)
{
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503:
    case 529: return "overloaded_error";
    default: return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static int error_from_openai(struct arena *a, int status, const char *body, size_t len, char **out,
                             size_t *out_len)
{
    json_t *root = pj_load(body, len);
    json_t *oe = json_object_get(root, "error");
    const char *msg = json_is_string(oe) ? json_string_value(oe) : pj_str(oe, "message");
    json_t *e = json_object();
    pj_set_str(e, "type", error_type(status));
    pj_set_str(e, "message", msg ? msg : arena_printf(a, "HTTP %d", status));
    json_decref(root);
    json_t *r = json_object();
    pj_set_str(r, "type", "error");
    json_object_set_new(r, "error", e);
    *out = pj_dump(a, r, out_len);
    json_decref(r);
    return 0;
}

const struct inbound_ops inbound_anthropic_ops = {
    .name = "anthropic",
    .request_to_openai = request_to_openai,
    .response_from_openai = response_from_openai,
    .stream_begin = stream_begin,
    .stream_chunk = stream_chunk,
    .stream_end = stream_end,
    .stream_error = stream_error,
    .error_from_openai = error_from_openai,
};
