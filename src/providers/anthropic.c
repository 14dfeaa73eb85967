/* anthropic: the adapter for Anthropic's Messages API (APIS.md sections 4
 * and 4b). An OpenAI chat body becomes a Messages body (system lifted out,
 * consecutive roles merged, tools and images translated, max_tokens always
 * set); a message comes back as a chat.completion, and the Messages event
 * stream becomes OpenAI chunks one event at a time. Whole documents go
 * through jansson; everything returned lives in the call's arena. */
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "providers/anthropic_native.h"
#include "providers/internal.h"
#include "providers/provider.h"

/* ---- OpenAI request -> Messages request ---- */

struct turns {
    json_t *messages;   /* the Messages array being built */
    json_t *last;       /* content array of the last turn */
    const char *last_role;
};

/* Appends blocks to the conversation, merging into the previous turn when
 * it has the same role (the API wants alternating turns). Steals `blocks`. */
static void add_turn(struct turns *t, const char *role, json_t *blocks)
{
    if (json_array_size(blocks) == 0) {
        json_decref(blocks);
        return;
    }
    if (t->last && strcmp(t->last_role, role) == 0) {
        json_array_extend(t->last, blocks);
        json_decref(blocks);
        return;
    }
    json_t *m = json_object();
    pj_set_str(m, "role", role);
    json_object_set_new(m, "content", blocks);
    json_array_append_new(t->messages, m);
    t->last = blocks;
    t->last_role = role;
}

static json_t *text_block(const char *text)
{
    json_t *b = json_object();
    pj_set_str(b, "type", "text");
    pj_set_str(b, "text", text);
    return b;
}

/* Prompt caching (SPEC section 9): a `cache_control` on an OpenAI part,
 * message or tool is Anthropic's, passed on as it is. Returns `block`. */
static json_t *keep_cache_control(json_t *block, const json_t *from)
{
    json_t *cc = json_object_get(from, "cache_control");
    if (json_is_object(cc)) json_object_set(block, "cache_control", cc);
    return block;
}

/* A message's own cache_control marks its last block (a string content is
 * one block). */
static void message_cache_control(json_t *blocks, const json_t *msg)
{
    size_t n = json_array_size(blocks);
    if (n > 0 && !json_object_get(json_array_get(blocks, n - 1), "cache_control"))
        keep_cache_control(json_array_get(blocks, n - 1), msg);
}

/* image_url part -> image block: data URLs are split into base64 sources,
 * http(s) URLs become url sources. */
static json_t *image_block(const json_t *part, char *err, size_t cap)
{
    json_t *iu = json_object_get(part, "image_url");
    const char *url = json_is_string(iu) ? json_string_value(iu) : pj_str(iu, "url");
    if (!url) {
        perr(err, cap, "an image_url part has no url");
        return NULL;
    }
    json_t *src = json_object();
    if (strncmp(url, "data:", 5) == 0) {
        const char *semi = strstr(url, ";base64,");
        if (!semi || semi == url + 5) {
            json_decref(src);
            perr(err, cap, "an image data URL must be data:<media type>;base64,<data>");
            return NULL;
        }
        char mt[128];
        size_t n = (size_t)(semi - (url + 5));
        if (n >= sizeof mt) n = sizeof mt - 1;
        memcpy(mt, url + 5, n);
        mt[n] = '\0';
        pj_set_str(src, "type", "base64");
        pj_set_str(src, "media_type", mt);
        pj_set_str(src, "data", semi + 8);
    } else if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
        pj_set_str(src, "type", "url");
        pj_set_str(src, "url", url);
    } else {
        json_decref(src);
        perr(err, cap, "an image URL must be a data: or http(s) URL");
        return NULL;
    }
    json_t *b = json_object();
    pj_set_str(b, "type", "image");
    json_object_set_new(b, "source", src);
    return b;
}

/* A user (or assistant) content -> blocks. NULL with err on a part that
 * cannot be expressed. */
static json_t *content_blocks(const json_t *content, bool images_ok, char *err, size_t cap)
{
    json_t *blocks = json_array();
    if (json_is_string(content)) {
        if (json_string_length(content) > 0)
            json_array_append_new(blocks, text_block(json_string_value(content)));
        return blocks;
    }
    if (content == NULL || json_is_null(content)) return blocks;
    if (!json_is_array(content)) {
        json_decref(blocks);
        perr(err, cap, "message content must be a string or an array of parts");
        return NULL;
    }
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        const char *type = pj_str(part, "type");
        if (type && strcmp(type, "text") == 0 && pj_str(part, "text")) {
            if (*pj_str(part, "text"))
                json_array_append_new(blocks, keep_cache_control(text_block(pj_str(part, "text")), part));
        } else if (images_ok && type && strcmp(type, "image_url") == 0) {
            json_t *b = image_block(part, err, cap);
            if (!b) {
                json_decref(blocks);
                return NULL;
            }
            json_array_append_new(blocks, keep_cache_control(b, part));
        } else {
            json_decref(blocks);
            perr(err, cap, "content part type '%s' is not supported by Anthropic providers",
                 type ? type : "(none)");
            return NULL;
        }
    }
    return blocks;
}

static json_t *assistant_blocks(const json_t *msg, char *err, size_t cap)
{
    json_t *blocks = content_blocks(json_object_get(msg, "content"), false, err, cap);
    if (!blocks) return NULL;
    json_t *calls = json_object_get(msg, "tool_calls");
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call) {
        json_t *fn = json_object_get(call, "function");
        const char *name = pj_str(fn, "name");
        const char *args = pj_str(fn, "arguments");
        if (!name) {
            json_decref(blocks);
            perr(err, cap, "a tool call has no function name");
            return NULL;
        }
        json_t *input;
        if (!args || !*args) {
            input = json_object();
        } else {
            input = pj_load(args, strlen(args));
            if (!json_is_object(input)) {
                json_decref(input);
                json_decref(blocks);
                perr(err, cap, "the arguments of tool call '%s' are not a JSON object", name);
                return NULL;
            }
        }
        json_t *b = json_object();
        pj_set_str(b, "type", "tool_use");
        const char *id = pj_str(call, "id");
        pj_set_str(b, "id", id ? id : "");
        pj_set_str(b, "name", name);
        json_object_set_new(b, "input", input);
        json_array_append_new(blocks, b);
    }
    return blocks;
}

static json_t *tool_result_blocks(struct arena *a, const json_t *msg, char *err, size_t cap)
{
    const char *id = pj_str(msg, "tool_call_id");
    if (!id) {
        perr(err, cap, "a tool message has no tool_call_id");
        return NULL;
    }
    const char *bad = NULL;
    char *text = pj_content_text(a, json_object_get(msg, "content"), "", &bad);
    if (!text) {
        if (json_is_null(json_object_get(msg, "content"))) {
            text = "";
        } else {
            perr(err, cap, "a tool message's content must be text");
            return NULL;
        }
    }
    json_t *b = json_object();
    pj_set_str(b, "type", "tool_result");
    pj_set_str(b, "tool_use_id", id);
    pj_set_str(b, "content", text);
    json_t *blocks = json_array();
    json_array_append_new(blocks, b);
    return blocks;
}

static int translate_messages(struct arena *a, const json_t *in, json_t *out, char *err,
                              size_t cap)
{
    struct turns t = {.messages = json_array()};
    char *system = NULL;
    /* The system prompt as blocks too: sent so when one of them carries a
     * cache_control (a string loses it). */
    json_t *system_blocks = json_array();
    bool system_cached = false;
    size_t i;
    json_t *msg;
    json_array_foreach(json_object_get(in, "messages"), i, msg) {
        const char *role = pj_str(msg, "role");
        if (!role) continue;
        json_t *blocks = NULL;
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            const char *bad = NULL;
            char *text = pj_content_text(a, json_object_get(msg, "content"), "\n", &bad);
            if (!text) {
                perr(err, cap, "a %s message's content must be text", role);
                goto fail;
            }
            system = system ? arena_printf(a, "%s\n\n%s", system, text) : text;
            json_t *sb = content_blocks(json_object_get(msg, "content"), false, err, cap);
            if (!sb) goto fail;
            message_cache_control(sb, msg);
            size_t k;
            json_t *b;
            json_array_foreach(sb, k, b) if (json_object_get(b, "cache_control")) system_cached = true;
            json_array_extend(system_blocks, sb);
            json_decref(sb);
            continue;
        } else if (strcmp(role, "user") == 0) {
            blocks = content_blocks(json_object_get(msg, "content"), true, err, cap);
        } else if (strcmp(role, "assistant") == 0) {
            blocks = assistant_blocks(msg, err, cap);
        } else if (strcmp(role, "tool") == 0) {
            blocks = tool_result_blocks(a, msg, err, cap);
            role = "user";
        } else {
            perr(err, cap, "messages with role '%s' are not supported by Anthropic providers", role);
            goto fail;
        }
        if (!blocks) goto fail;
        message_cache_control(blocks, msg);
        add_turn(&t, role, blocks);
    }
    if (json_array_size(t.messages) == 0) {
        perr(err, cap, "Anthropic needs at least one user or assistant message");
        goto fail;
    }
    if (system_cached) json_object_set(out, "system", system_blocks);
    else if (system && *system) pj_set_str(out, "system", system);
    json_decref(system_blocks);
    json_object_set_new(out, "messages", t.messages);
    return 0;
fail:
    json_decref(system_blocks);
    json_decref(t.messages);
    return -1;
}

static int translate_tools(const json_t *in, json_t *out, char *err, size_t cap)
{
    json_t *tools = json_object_get(in, "tools");
    if (json_is_array(tools) && json_array_size(tools) > 0) {
        json_t *list = json_array();
        size_t i;
        json_t *tool;
        json_array_foreach(tools, i, tool) {
            json_t *fn = json_object_get(tool, "function");
            const char *type = pj_str(tool, "type");
            if ((type && strcmp(type, "function") != 0) || !pj_str(fn, "name")) {
                json_decref(list);
                perr(err, cap, "only function tools are supported by Anthropic providers");
                return -1;
            }
            json_t *t = json_object();
            pj_set_str(t, "name", pj_str(fn, "name"));
            if (pj_str(fn, "description")) pj_set_str(t, "description", pj_str(fn, "description"));
            json_t *params = json_object_get(fn, "parameters");
            if (json_is_object(params)) {
                json_object_set(t, "input_schema", params);
            } else {
                json_t *schema = json_object();
                pj_set_str(schema, "type", "object");
                json_object_set_new(schema, "properties", json_object());
                json_object_set_new(t, "input_schema", schema);
            }
            keep_cache_control(t, fn);
            keep_cache_control(t, tool); /* on the tool itself, as clients write it */
            json_array_append_new(list, t);
        }
        json_object_set_new(out, "tools", list);
    }

    json_t *tc = json_object_get(in, "tool_choice");
    json_t *choice = NULL;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        const char *type = strcmp(s, "required") == 0 ? "any"
                           : strcmp(s, "none") == 0   ? "none"
                                                      : "auto";
        choice = json_object();
        pj_set_str(choice, "type", type);
    } else if (json_is_object(tc)) {
        const char *name = pj_str(json_object_get(tc, "function"), "name");
        if (!name) {
            perr(err, cap, "tool_choice names no function");
            return -1;
        }
        choice = json_object();
        pj_set_str(choice, "type", "tool");
        pj_set_str(choice, "name", name);
    }
    json_t *ptc = json_object_get(in, "parallel_tool_calls");
    if (json_is_false(ptc) && json_object_get(out, "tools")) {
        if (!choice) {
            choice = json_object();
            pj_set_str(choice, "type", "auto");
        }
        if (strcmp(pj_str(choice, "type"), "none") != 0)
            json_object_set_new(choice, "disable_parallel_tool_use", json_true());
    }
    if (choice) json_object_set_new(out, "tool_choice", choice);
    return 0;
}

static int anthropic_prepare(const struct provider_call *call, struct provider_request *out,
                             char *err, size_t cap)
{
    const struct config_provider *p = call->provider;
    if (call->kind != API_CHAT) {
        perr(err, cap, "provider %s (type anthropic) serves chat completions only", p->name);
        return -1;
    }
    if (!header_value_ok(p->api_key)) {
        perr(err, cap, "provider %s has no usable api_key", p->name);
        return -1;
    }
    json_t *in = pj_load(call->body, call->body_len);
    json_t *out_body = json_object();
    int rc = -1;
    if (!json_is_object(in)) {
        perr(err, cap, "the request body is not a JSON object");
        goto done;
    }
    int64_t n = 1;
    if (pj_int(in, "n", &n) && n > 1) {
        perr(err, cap, "n > 1 is not supported by Anthropic providers");
        goto done;
    }
    const char *rf = pj_str(json_object_get(in, "response_format"), "type");
    if (rf && strcmp(rf, "text") != 0) {
        perr(err, cap, "response_format %s is not supported by Anthropic providers", rf);
        goto done;
    }
    pj_set_str(out_body, "model", call->model->upstream_id);
    int64_t max_tokens = 0;
    if (!pj_int(in, "max_completion_tokens", &max_tokens) && !pj_int(in, "max_tokens", &max_tokens))
        max_tokens = p->max_tokens_default > 0 ? p->max_tokens_default : 4096;
    pj_set_int(out_body, "max_tokens", max_tokens);
    if (translate_messages(call->arena, in, out_body, err, cap) != 0) goto done;

    json_t *stop = json_object_get(in, "stop");
    if (json_is_string(stop)) {
        json_t *seq = json_array();
        json_array_append(seq, stop);
        json_object_set_new(out_body, "stop_sequences", seq);
    } else if (json_is_array(stop) && json_array_size(stop) > 0) {
        json_object_set(out_body, "stop_sequences", stop);
    }
    json_t *temp = json_object_get(in, "temperature");
    if (json_is_number(temp)) {
        double v = json_number_value(temp);
        if (v > 1.0) json_object_set_new(out_body, "temperature", json_integer(1));
        else if (v < 0.0) json_object_set_new(out_body, "temperature", json_integer(0));
        else json_object_set(out_body, "temperature", temp);
    }
    json_t *top_p = json_object_get(in, "top_p");
    if (json_is_number(top_p)) json_object_set(out_body, "top_p", top_p);
    const char *user = pj_str(in, "user");
    if (user) {
        json_t *meta = json_object();
        pj_set_str(meta, "user_id", user);
        json_object_set_new(out_body, "metadata", meta);
    }
    if (translate_tools(in, out_body, err, cap) != 0) goto done;
    anthropic_apply_passthrough(out_body, call->anthropic); /* thinking, context_management... */
    out->stream = pj_true(in, "stream");
    if (out->stream) json_object_set_new(out_body, "stream", json_true());

    out->body = pj_dump(call->arena, out_body, &out->body_len);
    out->url = arena_printf(call->arena, "%s/messages", provider_call_endpoint(call));
    out->headers = anthropic_headers(call->arena, p->api_key, call->anthropic, out->stream);
    rc = 0;
done:
    json_decref(in);
    json_decref(out_body);
    return rc;
}

/* ---- Messages answer -> chat.completion ---- */

static const char *finish_reason(const char *stop_reason)
{
    if (!stop_reason) return "stop";
    if (strcmp(stop_reason, "max_tokens") == 0) return "length";
    if (strcmp(stop_reason, "model_context_window_exceeded") == 0) return "length";
    if (strcmp(stop_reason, "compaction") == 0) return "length";
    if (strcmp(stop_reason, "tool_use") == 0) return "tool_calls";
    if (strcmp(stop_reason, "refusal") == 0) return "content_filter";
    return "stop"; /* end_turn, stop_sequence, pause_turn, unknown */
}

struct counts {
    int64_t input, output, cache_read, cache_creation;
};

static void read_counts(const json_t *usage, struct counts *c)
{
    (void)pj_int(usage, "input_tokens", &c->input);
    (void)pj_int(usage, "output_tokens", &c->output);
    (void)pj_int(usage, "cache_read_input_tokens", &c->cache_read);
    (void)pj_int(usage, "cache_creation_input_tokens", &c->cache_creation);
}

/* OpenAI usage from Anthropic counts: input_tokens excludes cache reads and
 * writes, OpenAI's prompt_tokens includes them. */
static json_t *openai_usage(const struct counts *c, struct provider_usage *pu)
{
    int64_t prompt = c->input + c->cache_read + c->cache_creation;
    json_t *u = json_object();
    pj_set_int(u, "prompt_tokens", prompt);
    pj_set_int(u, "completion_tokens", c->output);
    pj_set_int(u, "total_tokens", prompt + c->output);
    json_t *d = json_object();
    pj_set_int(d, "cached_tokens", c->cache_read);
    /* OpenAI has no name for cache writes: the gateway's (and OpenRouter's),
     * when there were any */
    if (c->cache_creation > 0) pj_set_int(d, "cache_write_tokens", c->cache_creation);
    json_object_set_new(u, "prompt_tokens_details", d);
    if (pu) {
        pu->present = true;
        pu->prompt_tokens = prompt;
        pu->completion_tokens = c->output;
        pu->cached_tokens = c->cache_read;
        pu->cache_write_tokens = c->cache_creation;
    }
    return u;
}

/* The message of an Anthropic error object, into err. */
static void error_message(const json_t *root, char *err, size_t cap)
{
    json_t *e = json_object_get(root, "error");
    const char *type = pj_str(e, "type");
    const char *msg = pj_str(e, "message");
    perr(err, cap, "anthropic error: %s%s%s", type ? type : "error", msg ? ": " : "",
         msg ? msg : "");
}

static int anthropic_finish(const struct provider_call *call, const struct provider_response *resp,
                            char **out, size_t *out_len, struct provider_usage *usage, char *err,
                            size_t cap)
{
    json_t *root = pj_load(resp->body, resp->len);
    json_t *res = NULL;
    int rc = -1;
    if (!json_is_object(root)) {
        perr(err, cap, "anthropic answer is not a JSON object");
        goto done;
    }
    const char *type = pj_str(root, "type");
    if ((type && strcmp(type, "error") == 0) || json_object_get(root, "error")) {
        error_message(root, err, cap);
        goto done;
    }
    json_t *content = json_object_get(root, "content");
    if (!json_is_array(content)) {
        perr(err, cap, "anthropic answer has no content array");
        goto done;
    }
    struct arena *a = call->arena;
    size_t text_len = 0, i;
    json_t *block;
    json_array_foreach(content, i, block) {
        const char *bt = pj_str(block, "type");
        if (bt && strcmp(bt, "text") == 0 && pj_str(block, "text"))
            text_len += strlen(pj_str(block, "text"));
    }
    char *text = arena_alloc(a, text_len + 1);
    size_t off = 0;
    json_t *calls = json_array();
    json_array_foreach(content, i, block) {
        const char *bt = pj_str(block, "type");
        if (!bt) continue;
        if (strcmp(bt, "text") == 0 && pj_str(block, "text")) {
            size_t n = strlen(pj_str(block, "text"));
            memcpy(text + off, pj_str(block, "text"), n);
            off += n;
        } else if (strcmp(bt, "tool_use") == 0) {
            json_t *input = json_object_get(block, "input");
            json_t *c = json_object();
            const char *id = pj_str(block, "id");
            const char *name = pj_str(block, "name");
            pj_set_str(c, "id", id ? id : "");
            pj_set_str(c, "type", "function");
            json_t *fn = json_object();
            pj_set_str(fn, "name", name ? name : "");
            pj_set_str(fn, "arguments", input ? pj_dump(a, input, NULL) : "{}");
            json_object_set_new(c, "function", fn);
            json_array_append_new(calls, c);
        }
    }
    text[off] = '\0';

    json_t *msg = json_object();
    pj_set_str(msg, "role", "assistant");
    bool has_calls = json_array_size(calls) > 0;
    if (off == 0 && has_calls) json_object_set_new(msg, "content", json_null());
    else pj_set_str(msg, "content", text);
    if (has_calls) json_object_set(msg, "tool_calls", calls);
    json_decref(calls);

    json_t *choice = json_object();
    pj_set_int(choice, "index", 0);
    json_object_set_new(choice, "message", msg);
    json_object_set_new(choice, "logprobs", json_null());
    pj_set_str(choice, "finish_reason", finish_reason(pj_str(root, "stop_reason")));
    json_t *choices = json_array();
    json_array_append_new(choices, choice);

    res = json_object();
    const char *id = pj_str(root, "id");
    pj_set_str(res, "id", id ? id : arena_printf(a, "chatcmpl-%s", call->request_id));
    pj_set_str(res, "object", "chat.completion");
    pj_set_int(res, "created", pj_now());
    const char *model = pj_str(root, "model");
    pj_set_str(res, "model", model ? model : call->model->upstream_id);
    json_object_set_new(res, "choices", choices);
    json_t *u = json_object_get(root, "usage");
    if (json_is_object(u)) {
        struct counts c = {0};
        read_counts(u, &c);
        json_object_set_new(res, "usage", openai_usage(&c, usage));
    }
    *out = pj_dump(a, res, out_len);
    rc = 0;
done:
    json_decref(root);
    json_decref(res);
    return rc;
}

/* ---- Messages stream -> OpenAI chunks ---- */

#define MAX_BLOCKS 256 /* content blocks tracked per message; later ones are dropped */

enum block_kind { BLOCK_OTHER, BLOCK_TEXT, BLOCK_TOOL };

struct stream_state {
    char *id, *model;
    int64_t created;
    struct counts counts;
    bool usage_seen;
    int tools; /* tool_use blocks so far: the OpenAI tool index */
    unsigned char kind[MAX_BLOCKS];
    int tool_index[MAX_BLOCKS];
};

/* Emits one chunk: `delta` (stolen) for choice 0 with `finish` (NULL: null),
 * or, when delta is NULL, a usage chunk with choices []. */
static void emit_chunk(const struct provider_call *call, struct stream_state *s, json_t *delta,
                       const char *finish, json_t *usage, provider_emit_cb emit, void *ctx)
{
    pj_emit_chunk(call->arena, s->id, s->created, s->model, delta, finish, usage, emit, ctx);
}

static json_t *tool_delta(int index, const char *id, const char *name, const char *args)
{
    json_t *tc = json_object();
    pj_set_int(tc, "index", index);
    if (id) {
        pj_set_str(tc, "id", id);
        pj_set_str(tc, "type", "function");
    }
    json_t *fn = json_object();
    if (name) pj_set_str(fn, "name", name);
    pj_set_str(fn, "arguments", args);
    json_object_set_new(tc, "function", fn);
    json_t *list = json_array();
    json_array_append_new(list, tc);
    json_t *d = json_object();
    json_object_set_new(d, "tool_calls", list);
    return d;
}

static json_t *content_delta(const char *text)
{
    json_t *d = json_object();
    pj_set_str(d, "content", text);
    return d;
}

static void set_usage(struct provider_stream *st, struct stream_state *s)
{
    const struct counts *c = &s->counts;
    st->usage.present = true;
    st->usage.prompt_tokens = c->input + c->cache_read + c->cache_creation;
    st->usage.completion_tokens = c->output;
    st->usage.cached_tokens = c->cache_read;
    st->usage.cache_write_tokens = c->cache_creation;
    s->usage_seen = true;
}

static int block_index(const json_t *ev)
{
    int64_t i = -1;
    if (!pj_int(ev, "index", &i) || i < 0 || i >= MAX_BLOCKS) return -1;
    return (int)i;
}

static int on_event(const struct provider_call *call, struct provider_stream *st,
                    struct stream_state *s, const json_t *ev, provider_emit_cb emit, void *ctx)
{
    const char *type = pj_str(ev, "type");
    if (!type) return 0;
    struct arena *a = call->arena;
    if (strcmp(type, "message_start") == 0) {
        json_t *m = json_object_get(ev, "message");
        if (pj_str(m, "id")) s->id = arena_strdup(a, pj_str(m, "id"));
        if (pj_str(m, "model")) s->model = arena_strdup(a, pj_str(m, "model"));
        json_t *u = json_object_get(m, "usage");
        if (json_is_object(u)) {
            read_counts(u, &s->counts);
            set_usage(st, s);
        }
        json_t *d = json_object();
        pj_set_str(d, "role", "assistant");
        pj_set_str(d, "content", "");
        emit_chunk(call, s, d, NULL, NULL, emit, ctx);
    } else if (strcmp(type, "content_block_start") == 0) {
        int i = block_index(ev);
        json_t *b = json_object_get(ev, "content_block");
        const char *bt = pj_str(b, "type");
        if (i < 0 || !bt) return 0;
        if (strcmp(bt, "text") == 0) {
            s->kind[i] = BLOCK_TEXT;
            const char *text = pj_str(b, "text");
            if (text && *text) emit_chunk(call, s, content_delta(text), NULL, NULL, emit, ctx);
        } else if (strcmp(bt, "tool_use") == 0) {
            s->kind[i] = BLOCK_TOOL;
            s->tool_index[i] = s->tools++;
            const char *id = pj_str(b, "id");
            const char *name = pj_str(b, "name");
            emit_chunk(call, s, tool_delta(s->tool_index[i], id ? id : "", name ? name : "", ""),
                       NULL, NULL, emit, ctx);
        } else {
            s->kind[i] = BLOCK_OTHER; /* thinking, server tools: not in OpenAI's shape */
        }
    } else if (strcmp(type, "content_block_delta") == 0) {
        int i = block_index(ev);
        json_t *d = json_object_get(ev, "delta");
        const char *dt = pj_str(d, "type");
        if (i < 0 || !dt) return 0;
        if (strcmp(dt, "text_delta") == 0 && s->kind[i] == BLOCK_TEXT) {
            const char *text = pj_str(d, "text");
            if (text && *text) emit_chunk(call, s, content_delta(text), NULL, NULL, emit, ctx);
        } else if (strcmp(dt, "input_json_delta") == 0 && s->kind[i] == BLOCK_TOOL) {
            const char *part = pj_str(d, "partial_json");
            if (part && *part)
                emit_chunk(call, s, tool_delta(s->tool_index[i], NULL, NULL, part), NULL, NULL,
                           emit, ctx);
        }
    } else if (strcmp(type, "message_delta") == 0) {
        json_t *u = json_object_get(ev, "usage");
        if (json_is_object(u)) {
            read_counts(u, &s->counts); /* cumulative: later values replace */
            set_usage(st, s);
        }
        const char *sr = pj_str(json_object_get(ev, "delta"), "stop_reason");
        if (sr) emit_chunk(call, s, json_object(), finish_reason(sr), NULL, emit, ctx);
    } else if (strcmp(type, "message_stop") == 0) {
        if (s->usage_seen) emit_chunk(call, s, NULL, NULL, openai_usage(&s->counts, NULL), emit, ctx);
        st->done = true;
    } else if (strcmp(type, "error") == 0) {
        error_message(ev, st->error, sizeof st->error);
        return -1;
    }
    /* ping, content_block_stop and unknown events need nothing. */
    return 0;
}

static int anthropic_stream_event(const struct provider_call *call, struct provider_stream *st,
                                  const struct sse_event *ev, provider_emit_cb emit, void *ctx)
{
    struct stream_state *s = st->state;
    if (!s) {
        s = arena_alloc(call->arena, sizeof *s);
        memset(s, 0, sizeof *s);
        s->id = arena_printf(call->arena, "chatcmpl-%s", call->request_id ? call->request_id : "");
        s->model = call->model->upstream_id;
        s->created = pj_now();
        st->state = s;
    }
    if (ev->event_len == 4 && memcmp(ev->event, "ping", 4) == 0) return 0;
    json_t *data = pj_load(ev->data, ev->data_len);
    if (!json_is_object(data)) {
        json_decref(data);
        perr(st->error, sizeof st->error, "anthropic stream event is not a JSON object");
        return -1;
    }
    int rc = on_event(call, st, s, data, emit, ctx);
    json_decref(data);
    return rc;
}

/* ---- errors ---- */

static bool anthropic_retryable(int status)
{
    /* The client's fault: the same request fails everywhere. Everything
     * else (401/403/404 included: a misconfigured provider) tries others. */
    return !(status == 400 || status == 413 || status == 422);
}

static int anthropic_error_body(const struct provider_call *call,
                                const struct provider_response *resp, char **out, size_t *out_len)
{
    json_t *root = pj_load(resp->body, resp->len);
    json_t *e = json_object_get(root, "error");
    const char *type = pj_str(e, "type");
    const char *msg = pj_str(e, "message");
    if (!json_is_object(e) || !msg) {
        json_decref(root);
        return -1;
    }
    json_t *oe = json_object();
    pj_set_str(oe, "message", msg);
    pj_set_str(oe, "type", type ? type : "api_error");
    json_object_set_new(oe, "param", json_null());
    json_object_set_new(oe, "code", type ? json_string(type) : json_null());
    json_t *body = json_object();
    json_object_set_new(body, "error", oe);
    *out = pj_dump(call->arena, body, out_len);
    json_decref(body);
    json_decref(root);
    return 0;
}

const struct provider_ops provider_anthropic_ops = {
    .type = "anthropic",
    .stream_mode = SSE_MODE_SSE,
    .prepare = anthropic_prepare,
    .finish = anthropic_finish,
    .stream_event = anthropic_stream_event,
    .retryable_status = anthropic_retryable,
    .error_body = anthropic_error_body,
};
