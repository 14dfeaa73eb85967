/* inbound_responses: OpenAI's Responses API (POST /v1/responses) as a
 * client-facing format, request side and whole answers. A Responses request
 * (after the stored conversation it continues) becomes an OpenAI chat
 * request; a whole chat completion becomes a Response object. The event
 * stream is inbound_responses_stream.c; the interface is responses.h. */
#include <stdio.h>
#include <string.h>

#include "providers/inbound.h"
#include "providers/internal.h"
#include "providers/responses.h"
#include "providers/responses_internal.h"

static int bad(struct inbound_error *err, const char *param, const char *fmt, const char *arg)
{
    snprintf(err->message, sizeof err->message, fmt, arg);
    /* Item paths can be long: the param is cut to its field's size. */
    snprintf(err->param, sizeof err->param, "%.*s", (int)sizeof err->param - 1, param);
    err->invalid_json = false;
    return -1;
}

static bool is(const char *s, const char *want)
{
    return s && strcmp(s, want) == 0;
}

/* ---- top-level fields ---- */

/* The body as a JSON object, or NULL with err (invalid_json). */
static json_t *load_body(const char *body, size_t len, struct inbound_error *err)
{
    memset(err, 0, sizeof *err);
    json_t *in = pj_load(body, len);
    if (!json_is_object(in)) {
        json_decref(in);
        snprintf(err->message, sizeof err->message, "The request body is not a JSON object.");
        err->invalid_json = true;
        return NULL;
    }
    return in;
}

/* Validates the fields responses_parse reports and the features this
 * gateway refuses outright. Strings point into `in`. */
static int read_top(const json_t *in, struct responses_request *info, struct inbound_error *err)
{
    memset(info, 0, sizeof *info);
    info->model = "";
    info->store = true;
    json_t *v = json_object_get(in, "model");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) return bad(err, "model", "%s must be a string", "model");
        info->model = json_string_value(v);
    }
    v = json_object_get(in, "stream");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) return bad(err, "stream", "%s must be a boolean", "stream");
        info->stream = json_is_true(v);
    }
    v = json_object_get(in, "store");
    if (v && !json_is_null(v)) {
        if (!json_is_boolean(v)) return bad(err, "store", "%s must be a boolean", "store");
        info->store = json_is_true(v);
    }
    v = json_object_get(in, "previous_response_id");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || !*json_string_value(v))
            return bad(err, "previous_response_id", "%s must be a non-empty string or null",
                       "previous_response_id");
        info->previous_response_id = json_string_value(v);
    }
    v = json_object_get(in, "background");
    if (v && !json_is_null(v) && !json_is_false(v)) {
        if (!json_is_boolean(v)) return bad(err, "background", "%s must be a boolean", "background");
        return bad(err, "background", "%s mode is not supported by this gateway", "background");
    }
    /* Server-side state this gateway does not keep. */
    static const char *const refused[] = {"conversation", "prompt", NULL};
    for (const char *const *k = refused; *k; k++) {
        v = json_object_get(in, *k);
        if (v && !json_is_null(v)) return bad(err, *k, "%s is not supported by this gateway", *k);
    }
    return 0;
}

static void release_doc(void *doc)
{
    json_decref(doc);
}

int responses_parse(struct arena *a, const char *body, size_t len, struct responses_request *info,
                    struct inbound_error *err)
{
    json_t *in = load_body(body, len, err);
    if (!in) {
        memset(info, 0, sizeof *info);
        info->model = "";
        info->store = true;
        return -1;
    }
    int rc = read_top(in, info, err);
    /* The strings live in `in`, which lives as long as the arena. */
    if (!info->model) info->model = "";
    arena_on_free(a, release_doc, in);
    info->doc = in;
    return rc;
}

/* ---- input items -> chat messages ---- */

static json_t *message(const char *role, json_t *content)
{
    json_t *m = json_object();
    pj_set_str(m, "role", role);
    json_object_set_new(m, "content", content);
    return m;
}

/* input_image -> a chat image_url part, or NULL with err. */
static json_t *image_part(const json_t *p, const char *param, struct inbound_error *err)
{
    const char *url = pj_str(p, "image_url");
    if (!url) {
        if (pj_str(p, "file_id"))
            bad(err, param, "%s: images by file_id are not supported by this gateway; send image_url", param);
        else
            bad(err, param, "%s: an input_image needs an image_url", param);
        return NULL;
    }
    json_t *iu = json_object();
    pj_set_str(iu, "url", url);
    const char *detail = pj_str(p, "detail");
    if (detail) pj_set_str(iu, "detail", detail);
    json_t *part = json_object();
    pj_set_str(part, "type", "image_url");
    json_object_set_new(part, "image_url", iu);
    return part;
}

/* Appends `text` to *acc (joined by sep). */
static void join(struct arena *a, char **acc, const char *sep, const char *text)
{
    *acc = *acc ? arena_concat(a, *acc, sep, text, NULL) : arena_strdup(a, text);
}

/* A message item's content -> the chat message's content (a new
 * reference), or NULL with err. User messages keep images (an array of
 * parts then); the other roles get their text joined into a string. */
static json_t *message_content(struct arena *a, const char *role, const json_t *content,
                               const char *param, struct inbound_error *err)
{
    if (json_is_string(content)) return json_string(json_string_value(content));
    if (!json_is_array(content)) {
        bad(err, param, "%s must be a string or an array of content parts", param);
        return NULL;
    }
    bool user = is(role, "user");
    bool assistant = is(role, "assistant");
    char *text = NULL;
    json_t *parts = json_array();
    bool images = false;
    size_t i;
    json_t *p;
    json_array_foreach(content, i, p) {
        char pparam[96];
        snprintf(pparam, sizeof pparam, "%s[%zu]", param, i);
        const char *type = pj_str(p, "type");
        const char *t = NULL;
        if (is(type, "input_text") || is(type, "output_text") || is(type, "text")) {
            t = pj_str(p, "text");
        } else if (is(type, "refusal") && assistant) {
            t = pj_str(p, "refusal");
        } else if (is(type, "input_image") && user) {
            json_t *img = image_part(p, pparam, err);
            if (!img) goto fail;
            json_array_append_new(parts, img);
            images = true;
            continue;
        } else if (is(type, "input_file")) {
            bad(err, pparam, "%s: input_file is not supported by this gateway", pparam);
            goto fail;
        } else {
            char tparam[128];
            snprintf(tparam, sizeof tparam, "%s.type", pparam);
            bad(err, tparam, "%s: this content part type is not supported here", tparam);
            goto fail;
        }
        if (!t) {
            bad(err, pparam, "%s: a text part needs its text", pparam);
            goto fail;
        }
        json_t *tp = json_object();
        pj_set_str(tp, "type", "text");
        pj_set_str(tp, "text", t);
        json_array_append_new(parts, tp);
        join(a, &text, assistant ? "" : "\n", t);
    }
    if (images) return parts;
    json_decref(parts);
    return json_string(text ? text : "");
fail:
    json_decref(parts);
    return NULL;
}

/* A function_call_output's output: a string, or parts whose text is joined. */
static char *call_output(struct arena *a, const json_t *out, const char *param,
                         struct inbound_error *err)
{
    if (json_is_string(out)) return arena_strdup(a, json_string_value(out));
    if (json_is_array(out)) {
        char *text = NULL;
        size_t i;
        json_t *p;
        json_array_foreach(out, i, p) {
            const char *type = pj_str(p, "type");
            const char *t = pj_str(p, "text");
            if (!(is(type, "input_text") || is(type, "output_text")) || !t) {
                bad(err, param, "%s: only text parts are supported in a function output", param);
                return NULL;
            }
            join(a, &text, "\n", t);
        }
        return text ? text : "";
    }
    if (!out || json_is_null(out)) {
        bad(err, param, "%s is required", param);
        return NULL;
    }
    return pj_dump(a, out, NULL); /* an object: its JSON text */
}

/* function_call -> a tool call on the last chat message when that is an
 * assistant turn (so consecutive calls make one message), else on a new one. */
static int function_call(const json_t *it, json_t *msgs, const char *param,
                         struct inbound_error *err)
{
    const char *call_id = pj_str(it, "call_id"), *name = pj_str(it, "name");
    if (!call_id || !name) return bad(err, param, "%s: a function_call needs call_id and name", param);
    json_t *argv = json_object_get(it, "arguments");
    if (argv && !json_is_string(argv) && !json_is_null(argv))
        return bad(err, param, "%s: arguments must be a string", param);
    const char *args = json_is_string(argv) ? json_string_value(argv) : "{}";
    json_t *fn = json_object();
    pj_set_str(fn, "name", name);
    pj_set_str(fn, "arguments", args);
    json_t *tc = json_object();
    pj_set_str(tc, "id", call_id);
    pj_set_str(tc, "type", "function");
    json_object_set_new(tc, "function", fn);
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    if (!is(pj_str(last, "role"), "assistant")) {
        last = message("assistant", json_null());
        json_array_append_new(msgs, last);
    }
    json_t *calls = json_object_get(last, "tool_calls");
    if (!json_is_array(calls)) {
        calls = json_array();
        json_object_set_new(last, "tool_calls", calls);
        json_t *content = json_object_get(last, "content");
        if (json_is_string(content) && !*json_string_value(content))
            json_object_set_new(last, "content", json_null());
    }
    json_array_append_new(calls, tc);
    return 0;
}

/* One Responses item (of the request's input or of the stored history,
 * named by `where`, "input" or "history") -> chat messages appended to
 * msgs. *keep tells whether the item belongs in the stored conversation
 * (reasoning items do not). */
static int translate_item(struct arena *a, const json_t *it, json_t *msgs, const char *where,
                          size_t idx, bool *keep, struct inbound_error *err)
{
    char param[64], tparam[64];
    snprintf(param, sizeof param, "%s[%zu]", where, idx);
    snprintf(tparam, sizeof tparam, "%s[%zu].type", where, idx);
    *keep = true;
    if (!json_is_object(it)) return bad(err, param, "%s must be an object", param);
    json_t *tv = json_object_get(it, "type");
    if (tv && !json_is_string(tv)) return bad(err, tparam, "%s must be a string", tparam);
    const char *type = json_string_value(tv);
    if (!type || is(type, "message")) {
        const char *role = pj_str(it, "role");
        char rparam[64], cparam[64];
        snprintf(rparam, sizeof rparam, "%s[%zu].role", where, idx);
        snprintf(cparam, sizeof cparam, "%s[%zu].content", where, idx);
        if (!role) {
            if (!type) return bad(err, tparam, "%s is required", tparam);
            return bad(err, rparam, "%s is required", rparam);
        }
        if (!is(role, "user") && !is(role, "assistant") && !is(role, "system") &&
            !is(role, "developer"))
            return bad(err, rparam, "%s must be user, assistant, system or developer", rparam);
        json_t *content = message_content(a, role, json_object_get(it, "content"), cparam, err);
        if (!content) return -1;
        /* developer is the newer name of system; system is what every
         * provider understands. */
        json_array_append_new(msgs, message(is(role, "developer") ? "system" : role, content));
        return 0;
    }
    if (is(type, "function_call")) return function_call(it, msgs, param, err);
    if (is(type, "function_call_output")) {
        const char *call_id = pj_str(it, "call_id");
        if (!call_id) return bad(err, param, "%s: a function_call_output needs call_id", param);
        char oparam[64];
        snprintf(oparam, sizeof oparam, "%s[%zu].output", where, idx);
        char *out = call_output(a, json_object_get(it, "output"), oparam, err);
        if (!out) return -1;
        json_t *m = message("tool", json_string(out));
        pj_set_str(m, "tool_call_id", call_id);
        json_array_append_new(msgs, m);
        return 0;
    }
    if (is(type, "reasoning")) {
        *keep = false; /* no provider could use another one's reasoning */
        return 0;
    }
    if (is(type, "item_reference")) /* one naming no stored item (translate_items resolves) */
        return bad(err, tparam, "%s: this item_reference names no stored item", tparam);
    return bad(err, tparam, "%s: this item type is not supported by this gateway", tparam);
}

/* ---- tools, formats and options ---- */

static int tools_to_chat(const json_t *in, json_t *o, struct inbound_error *err)
{
    json_t *tools = json_object_get(in, "tools");
    if (tools && !json_is_null(tools) && !json_is_array(tools))
        return bad(err, "tools", "%s must be an array", "tools");
    size_t i;
    json_t *t;
    json_t *list = json_array();
    json_array_foreach(tools, i, t) {
        char param[64];
        snprintf(param, sizeof param, "tools[%zu].type", i);
        const char *type = pj_str(t, "type");
        if (!is(type, "function")) {
            json_decref(list);
            if (!type) return bad(err, param, "%s is required", param);
            return bad(err, param, "tool type '%s' is not supported by this gateway", type);
        }
        const char *name = pj_str(t, "name");
        if (!name || !*name) {
            json_decref(list);
            snprintf(param, sizeof param, "tools[%zu].name", i);
            return bad(err, param, "%s is required", param);
        }
        json_t *fn = json_object();
        pj_set_str(fn, "name", name);
        if (pj_str(t, "description")) pj_set_str(fn, "description", pj_str(t, "description"));
        json_t *params = json_object_get(t, "parameters");
        if (json_is_object(params)) json_object_set(fn, "parameters", params);
        json_t *strict = json_object_get(t, "strict");
        if (json_is_boolean(strict)) json_object_set(fn, "strict", strict);
        json_t *ct = json_object();
        pj_set_str(ct, "type", "function");
        json_object_set_new(ct, "function", fn);
        json_array_append_new(list, ct);
    }
    bool have_tools = json_array_size(list) > 0;
    if (have_tools) json_object_set_new(o, "tools", list);
    else json_decref(list);
    json_t *tc = json_object_get(in, "tool_choice");
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (!is(s, "auto") && !is(s, "none") && !is(s, "required"))
            return bad(err, "tool_choice", "%s must be auto, none, required or a function", "tool_choice");
        if (have_tools) json_object_set(o, "tool_choice", tc);
    } else if (json_is_object(tc)) {
        const char *type = pj_str(tc, "type"), *name = pj_str(tc, "name");
        if (!is(type, "function") || !name)
            return bad(err, "tool_choice", "%s: only {type: function, name} is supported by this gateway",
                       "tool_choice");
        json_t *fn = json_object();
        pj_set_str(fn, "name", name);
        json_t *c = json_object();
        pj_set_str(c, "type", "function");
        json_object_set_new(c, "function", fn);
        json_object_set_new(o, "tool_choice", c);
    } else if (tc && !json_is_null(tc)) {
        return bad(err, "tool_choice", "%s must be a string or an object", "tool_choice");
    }
    json_t *ptc = json_object_get(in, "parallel_tool_calls");
    if (ptc && !json_is_null(ptc)) {
        if (!json_is_boolean(ptc))
            return bad(err, "parallel_tool_calls", "%s must be a boolean", "parallel_tool_calls");
        /* Chat APIs refuse the flag without tools. */
        if (have_tools) json_object_set(o, "parallel_tool_calls", ptc);
    }
    return 0;
}

/* text.format -> response_format; reasoning.effort -> reasoning_effort. */
static int formats_to_chat(const json_t *in, json_t *o, struct inbound_error *err)
{
    json_t *text = json_object_get(in, "text");
    if (text && !json_is_null(text) && !json_is_object(text))
        return bad(err, "text", "%s must be an object", "text");
    json_t *fmt = json_object_get(text, "format");
    if (fmt && !json_is_null(fmt)) {
        const char *type = pj_str(fmt, "type");
        if (is(type, "json_schema")) {
            json_t *schema = json_object_get(fmt, "schema");
            if (!json_is_object(schema))
                return bad(err, "text.format.schema", "%s must be an object", "text.format.schema");
            json_t *js = json_object();
            const char *name = pj_str(fmt, "name");
            pj_set_str(js, "name", name ? name : "response");
            if (pj_str(fmt, "description")) pj_set_str(js, "description", pj_str(fmt, "description"));
            json_object_set(js, "schema", schema);
            json_t *strict = json_object_get(fmt, "strict");
            if (json_is_boolean(strict)) json_object_set(js, "strict", strict);
            json_t *rf = json_object();
            pj_set_str(rf, "type", "json_schema");
            json_object_set_new(rf, "json_schema", js);
            json_object_set_new(o, "response_format", rf);
        } else if (is(type, "json_object")) {
            json_t *rf = json_object();
            pj_set_str(rf, "type", "json_object");
            json_object_set_new(o, "response_format", rf);
        } else if (!is(type, "text")) {
            return bad(err, "text.format.type", "%s must be text, json_object or json_schema",
                       "text.format.type");
        }
    }
    json_t *reasoning = json_object_get(in, "reasoning");
    if (reasoning && !json_is_null(reasoning) && !json_is_object(reasoning))
        return bad(err, "reasoning", "%s must be an object", "reasoning");
    json_t *effort = json_object_get(reasoning, "effort");
    if (json_is_string(effort)) json_object_set(o, "reasoning_effort", effort);
    else if (effort && !json_is_null(effort))
        return bad(err, "reasoning.effort", "%s must be a string", "reasoning.effort");
    return 0;
}

static int options_to_chat(const json_t *in, json_t *o, struct inbound_error *err)
{
    static const struct {
        const char *key;
        double max;
    } numbers[] = {{"temperature", 2}, {"top_p", 1}};
    for (size_t i = 0; i < sizeof numbers / sizeof *numbers; i++) {
        json_t *v = json_object_get(in, numbers[i].key);
        if (!v || json_is_null(v)) continue;
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > numbers[i].max) {
            char msg[64];
            snprintf(msg, sizeof msg, "%%s must be a number from 0 to %g", numbers[i].max);
            snprintf(err->message, sizeof err->message, msg, numbers[i].key);
            snprintf(err->param, sizeof err->param, "%s", numbers[i].key);
            return -1;
        }
        json_object_set(o, numbers[i].key, v);
    }
    json_t *mot = json_object_get(in, "max_output_tokens");
    if (mot && !json_is_null(mot)) {
        if (!json_is_integer(mot) || json_integer_value(mot) < 1)
            return bad(err, "max_output_tokens", "%s must be an integer from 1", "max_output_tokens");
        /* max_tokens: what the gateway's scan and every adapter read. */
        json_object_set(o, "max_tokens", mot);
    }
    json_t *user = json_object_get(in, "user");
    if (json_is_string(user)) json_object_set(o, "user", user);
    else if (user && !json_is_null(user)) return bad(err, "user", "%s must be a string", "user");
    json_t *md = json_object_get(in, "metadata");
    if (md && !json_is_null(md) && !json_is_object(md))
        return bad(err, "metadata", "%s must be an object", "metadata");
    return 0;
}

/* ---- the echo: request fields a Response repeats ---- */

/* Appends "key":value to a member list; NULL or JSON null is null. */
static void put(struct jsonw *w, const char *key, const json_t *v)
{
    if (w->len) jsonw_rawn(w, ",", 1);
    jsonw_rawn(w, "\"", 1);
    jsonw_raw(w, key);
    jsonw_rawn(w, "\":", 2);
    if (!v || json_is_null(v)) jsonw_raw(w, "null");
    else pj_write(w, v);
}

/* Appends "key": and the raw JSON text `def` when `v` is NULL. */
static void put_or(struct jsonw *w, const char *key, const json_t *v, const char *def)
{
    if (v) {
        put(w, key, v);
        return;
    }
    if (w->len) jsonw_rawn(w, ",", 1);
    jsonw_rawn(w, "\"", 1);
    jsonw_raw(w, key);
    jsonw_rawn(w, "\":", 2);
    jsonw_raw(w, def);
}

static const json_t *if_type(const json_t *v, json_type type)
{
    return v && json_typeof(v) == type ? v : NULL;
}

/* The request fields a Response echoes, written once into c's three
 * member lists (responses_write places them). */
static void make_echo(struct arena *a, const json_t *in, const struct responses_request *info,
                      struct responses_ctx *c)
{
    struct jsonw w;
    jsonw_init_arena(&w, a, 64);
    put(&w, "instructions", json_object_get(in, "instructions"));
    put(&w, "max_output_tokens", json_object_get(in, "max_output_tokens"));
    c->echo_head = w.buf;
    jsonw_init_arena(&w, a, 256);
    put_or(&w, "parallel_tool_calls", NULL,
           json_is_false(json_object_get(in, "parallel_tool_calls")) ? "false" : "true");
    put_or(&w, "previous_response_id", NULL, "null");
    if (info->previous_response_id) {
        w.len -= 4; /* null */
        jsonw_str(&w, info->previous_response_id);
    }
    json_t *rin = json_object_get(in, "reasoning");
    put_or(&w, "reasoning", NULL, "{\"effort\":");
    const json_t *v = json_object_get(rin, "effort");
    if (v && !json_is_null(v)) pj_write(&w, v);
    else jsonw_raw(&w, "null");
    jsonw_raw(&w, ",\"summary\":");
    v = json_object_get(rin, "summary");
    if (v && !json_is_null(v)) pj_write(&w, v);
    else jsonw_raw(&w, "null");
    jsonw_raw(&w, "}");
    put_or(&w, "store", NULL, info->store ? "true" : "false");
    put(&w, "temperature", json_object_get(in, "temperature"));
    put_or(&w, "text", NULL, "{\"format\":");
    v = if_type(json_object_get(json_object_get(in, "text"), "format"), JSON_OBJECT);
    if (v) pj_write(&w, v);
    else jsonw_raw(&w, "{\"type\":\"text\"}");
    jsonw_raw(&w, "}");
    v = json_object_get(in, "tool_choice");
    put_or(&w, "tool_choice", v && !json_is_null(v) ? v : NULL, "\"auto\"");
    put_or(&w, "tools", if_type(json_object_get(in, "tools"), JSON_ARRAY), "[]");
    put(&w, "top_p", json_object_get(in, "top_p"));
    put_or(&w, "truncation", if_type(json_object_get(in, "truncation"), JSON_STRING), "\"disabled\"");
    c->echo_mid = w.buf;
    jsonw_init_arena(&w, a, 64);
    put(&w, "user", json_object_get(in, "user"));
    put_or(&w, "metadata", if_type(json_object_get(in, "metadata"), JSON_OBJECT), "{}");
    c->echo_tail = w.buf;
}

static struct responses_ctx *ctx_new(struct arena *a, const char *response_id, int64_t created_at)
{
    struct responses_ctx *c = arena_alloc(a, sizeof *c);
    memset(c, 0, sizeof *c);
    c->a = a;
    c->response_id = arena_strdup(a, response_id && *response_id ? response_id : "resp_aiproxy");
    const char *us = strchr(c->response_id, '_');
    c->id_suffix = us && us[1] ? us + 1 : c->response_id;
    c->created_at = created_at;
    c->model = "";
    return c;
}

struct responses_ctx *responses_ctx_default(struct arena *a, const char *request_id)
{
    struct responses_ctx *c =
        ctx_new(a, arena_concat(a, "resp_", request_id ? request_id : "aiproxy", NULL), pj_now());
    struct responses_request none = {.model = "", .store = true};
    json_t *empty = json_object();
    make_echo(a, empty, &none, c);
    json_decref(empty);
    c->items = "[]";
    return c;
}

/* ---- the request ---- */

/* Appends the items of `list` (history or input) to msgs and, when kept,
 * to items. */
/* Where item_reference items are looked up: the history, then the items
 * of other stored conversations the api layer loaded (an array of items
 * or of arrays of items). */
struct ref_pool {
    const json_t *history;
    const json_t *refs;
};

static json_t *find_in(const json_t *list, const char *id, int depth)
{
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it) {
        if (json_is_array(it) && depth == 0) {
            json_t *f = find_in(it, id, 1);
            if (f) return f;
        } else if (is(pj_str(it, "id"), id) && !is(pj_str(it, "type"), "item_reference")) {
            return it;
        }
    }
    return NULL;
}

static json_t *find_ref(const struct ref_pool *pool, const char *id)
{
    json_t *f = find_in(pool->history, id, 1);
    return f ? f : find_in(pool->refs, id, 0);
}

/* Appends the items of `list` (history or input) to msgs and, when kept,
 * to items. An item_reference becomes the item it names. */
static int translate_items(struct arena *a, const json_t *list, const struct ref_pool *pool,
                           json_t *msgs, json_t *items, const char *where,
                           struct inbound_error *err)
{
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it) {
        if (is(pj_str(it, "type"), "item_reference")) {
            const char *id = pj_str(it, "id");
            json_t *found = id ? find_ref(pool, id) : NULL;
            if (!found) {
                char param[64];
                snprintf(param, sizeof param, "%s[%zu].id", where, i);
                return bad(err, param, "%s: no stored item has this id (send the item itself)", param);
            }
            it = found;
        }
        bool keep;
        if (translate_item(a, it, msgs, where, i, &keep, err) != 0) return -1;
        if (!keep) continue;
        if (!json_object_get(it, "type")) {
            json_t *copy = json_deep_copy(it);
            pj_set_str(copy, "type", "message");
            json_array_append_new(items, copy);
        } else {
            json_array_append(items, it);
        }
    }
    return 0;
}

/* responses_referenced's work on the parsed body. */
static void referenced(struct arena *a, const json_t *in, const char ***ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    json_t *input = json_object_get(in, "input");
    size_t count = json_array_size(input), i;
    if (count == 0) return;
    const char **out = arena_alloc(a, count * sizeof *out);
    json_t *it;
    json_array_foreach(input, i, it) {
        const char *id = pj_str(it, "id");
        if (!is(pj_str(it, "type"), "item_reference") || !id) continue;
        /* msg_<suffix>_<n> or fc_<suffix>_<n>, from resp_<suffix>. */
        const char *us = strchr(id, '_'), *last = strrchr(id, '_');
        if (!us || last == us) continue;
        char *rid = arena_printf(a, "resp_%.*s", (int)(last - us - 1), us + 1);
        bool seen = false;
        for (size_t k = 0; k < *n; k++) seen = seen || strcmp(out[k], rid) == 0;
        if (!seen) out[(*n)++] = rid;
    }
    *ids = out;
}

int responses_referenced(struct arena *a, const char *body, size_t len, const char ***ids, size_t *n)
{
    json_t *in = pj_load(body, len);
    referenced(a, in, ids, n);
    json_decref(in);
    return 0;
}

int responses_referenced_in(struct arena *a, const struct responses_request *info,
                            const char ***ids, size_t *n)
{
    referenced(a, info->doc, ids, n);
    return 0;
}

struct responses_ctx *responses_begin(struct arena *a, const char *body, size_t len,
                                      const char *history, size_t history_len,
                                      const char *response_id, int64_t created_at,
                                      char **chat_body, size_t *chat_len,
                                      struct inbound_error *err)
{
    return responses_begin_refs(a, body, len, history, history_len, NULL, 0, response_id,
                                created_at, chat_body, chat_len, err);
}

static struct responses_ctx *begin(struct arena *a, const json_t *in, const char *history,
                                   size_t history_len, const char *refs, size_t refs_len,
                                   const char *response_id, int64_t created_at, char **chat_body,
                                   size_t *chat_len, struct inbound_error *err);

struct responses_ctx *responses_begin_refs(struct arena *a, const char *body, size_t len,
                                           const char *history, size_t history_len,
                                           const char *refs, size_t refs_len,
                                           const char *response_id, int64_t created_at,
                                           char **chat_body, size_t *chat_len,
                                           struct inbound_error *err)
{
    json_t *in = load_body(body, len, err);
    if (!in) return NULL;
    struct responses_ctx *c = begin(a, in, history, history_len, refs, refs_len, response_id,
                                    created_at, chat_body, chat_len, err);
    json_decref(in);
    return c;
}

struct responses_ctx *responses_begin_parsed(struct arena *a, const struct responses_request *info,
                                             const char *history, size_t history_len,
                                             const char *refs, size_t refs_len,
                                             const char *response_id, int64_t created_at,
                                             char **chat_body, size_t *chat_len,
                                             struct inbound_error *err)
{
    memset(err, 0, sizeof *err);
    if (!info->doc) {
        snprintf(err->message, sizeof err->message, "The request body is not a JSON object.");
        err->invalid_json = true;
        return NULL;
    }
    return begin(a, info->doc, history, history_len, refs, refs_len, response_id, created_at,
                 chat_body, chat_len, err);
}

/* The translation of a parsed request (see responses_begin_refs). */
static struct responses_ctx *begin(struct arena *a, const json_t *in, const char *history,
                                   size_t history_len, const char *refs, size_t refs_len,
                                   const char *response_id, int64_t created_at, char **chat_body,
                                   size_t *chat_len, struct inbound_error *err)
{
    struct responses_ctx *ret = NULL;
    json_t *o = json_object(), *items = json_array(), *hist_items = json_array(), *hist = NULL;
    json_t *ref_items = refs && refs_len ? pj_load(refs, refs_len) : NULL;
    struct ref_pool pool = {NULL, json_is_array(ref_items) ? ref_items : NULL};
    struct responses_request info;
    if (read_top(in, &info, err) != 0) goto done;
    if (*info.model) pj_set_str(o, "model", info.model);
    json_t *msgs = json_array();
    json_object_set_new(o, "messages", msgs);
    /* instructions are this request's only: the history holds none. */
    json_t *ins = json_object_get(in, "instructions");
    if (json_is_string(ins)) {
        if (*json_string_value(ins)) json_array_append_new(msgs, message("system", json_incref(ins)));
    } else if (ins && !json_is_null(ins)) {
        bad(err, "instructions", "%s must be a string", "instructions");
        goto done;
    }
    if (history && history_len) {
        hist = pj_load(history, history_len);
        if (!json_is_array(hist)) {
            bad(err, "previous_response_id", "%s: the stored conversation cannot be read",
                "previous_response_id");
            goto done;
        }
        pool.history = hist;
        if (translate_items(a, hist, &pool, msgs, hist_items, "history", err) != 0) goto done;
    }
    json_t *input = json_object_get(in, "input");
    if (json_is_string(input)) {
        json_array_append_new(msgs, message("user", json_incref(input)));
        json_t *part = json_object();
        pj_set_str(part, "type", "input_text");
        json_object_set(part, "text", input);
        json_t *parts = json_array();
        json_array_append_new(parts, part);
        json_t *item = json_object();
        pj_set_str(item, "type", "message");
        pj_set_str(item, "role", "user");
        json_object_set_new(item, "content", parts);
        json_array_append_new(items, item);
    } else if (json_is_array(input)) {
        if (translate_items(a, input, &pool, msgs, items, "input", err) != 0) goto done;
    } else if (input && !json_is_null(input)) {
        bad(err, "input", "%s must be a string or an array of items", "input");
        goto done;
    }
    bool spoken = false;
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) if (!is(pj_str(m, "role"), "system")) spoken = true;
    if (!spoken) {
        bad(err, "input", "%s: at least one input item is required", "input");
        goto done;
    }
    if (tools_to_chat(in, o, err) != 0 || formats_to_chat(in, o, err) != 0 ||
        options_to_chat(in, o, err) != 0)
        goto done;
    if (info.stream) {
        json_object_set_new(o, "stream", json_true());
        json_t *so = json_object();
        json_object_set_new(so, "include_usage", json_true());
        json_object_set_new(o, "stream_options", so);
    }
    struct responses_ctx *c = ctx_new(a, response_id, created_at);
    c->model = arena_strdup(a, info.model);
    make_echo(a, in, &info, c);
    c->history_items = pj_dump(a, hist_items, NULL);
    c->items = pj_dump(a, items, NULL);
    *chat_body = pj_dump(a, o, chat_len);
    ret = c;
done:
    json_decref(ref_items);
    json_decref(hist);
    json_decref(hist_items);
    json_decref(items);
    json_decref(o);
    return ret;
}

/* ---- the Response object (shared with the stream) ---- */

void responses_write_usage(struct jsonw *w, const json_t *u)
{
    int64_t in = 0, out = 0, total = -1, cached = 0, reasoning = 0;
    (void)pj_int(u, "prompt_tokens", &in);
    (void)pj_int(u, "completion_tokens", &out);
    (void)pj_int(u, "total_tokens", &total);
    (void)pj_int(json_object_get(u, "prompt_tokens_details"), "cached_tokens", &cached);
    (void)pj_int(json_object_get(u, "completion_tokens_details"), "reasoning_tokens", &reasoning);
    jsonw_raw(w, "{\"input_tokens\":");
    jsonw_int(w, in);
    jsonw_raw(w, ",\"input_tokens_details\":{\"cached_tokens\":");
    jsonw_int(w, cached);
    jsonw_raw(w, "},\"output_tokens\":");
    jsonw_int(w, out);
    jsonw_raw(w, ",\"output_tokens_details\":{\"reasoning_tokens\":");
    jsonw_int(w, reasoning);
    jsonw_raw(w, "},\"total_tokens\":");
    jsonw_int(w, total >= 0 ? total : in + out);
    jsonw_raw(w, "}");
}

const char *responses_status(const char *finish, const char **incomplete_reason)
{
    *incomplete_reason = NULL;
    if (is(finish, "length")) *incomplete_reason = "max_output_tokens";
    else if (is(finish, "content_filter")) *incomplete_reason = "content_filter";
    return *incomplete_reason ? "incomplete" : "completed";
}

const char *responses_item_id(const struct responses_ctx *c, const char *prefix, size_t index)
{
    return arena_printf(c->a, "%s_%s_%zu", prefix, c->id_suffix, index);
}

void responses_write(struct jsonw *w, const struct responses_ctx *c, const struct responses_parts *p)
{
    jsonw_raw(w, "{\"id\":");
    jsonw_str(w, c->response_id);
    jsonw_raw(w, ",\"object\":\"response\",\"created_at\":");
    jsonw_int(w, c->created_at);
    jsonw_raw(w, ",\"status\":");
    jsonw_str(w, p->status);
    jsonw_raw(w, ",\"background\":false,\"error\":");
    jsonw_raw(w, p->error ? p->error : "null");
    jsonw_raw(w, ",\"incomplete_details\":");
    if (p->incomplete_reason) {
        jsonw_raw(w, "{\"reason\":");
        jsonw_str(w, p->incomplete_reason);
        jsonw_raw(w, "}");
    } else {
        jsonw_raw(w, "null");
    }
    jsonw_raw(w, ",");
    jsonw_raw(w, c->echo_head);
    jsonw_raw(w, ",\"model\":");
    jsonw_str(w, p->model && *p->model ? p->model : c->model);
    jsonw_raw(w, ",\"output\":");
    jsonw_raw(w, p->output ? p->output : "[]");
    if (p->output_text) {
        jsonw_raw(w, ",\"output_text\":");
        jsonw_str(w, p->output_text);
    }
    jsonw_raw(w, ",");
    jsonw_raw(w, c->echo_mid);
    jsonw_raw(w, ",\"usage\":");
    jsonw_raw(w, p->usage ? p->usage : "null");
    jsonw_raw(w, ",");
    jsonw_raw(w, c->echo_tail);
    if (p->meta) {
        jsonw_raw(w, ",\"x-aiproxy\":");
        jsonw_rawn(w, p->meta, p->meta_len);
    }
    jsonw_raw(w, "}");
}

/* Two compact JSON arrays joined as one, as text (arena). */
static char *join_arrays(struct arena *a, const char *x, size_t xlen, const char *y, size_t ylen,
                         size_t *len)
{
    if (ylen <= 2) {
        *len = xlen;
        return arena_strndup(a, x, xlen);
    }
    if (xlen <= 2) {
        *len = ylen;
        return arena_strndup(a, y, ylen);
    }
    size_t n = xlen + ylen - 1;
    char *out = arena_alloc(a, n + 1);
    memcpy(out, x, xlen - 1);
    out[xlen - 1] = ',';
    memcpy(out + xlen, y + 1, ylen - 1);
    out[n] = '\0';
    *len = n;
    return out;
}

void responses_finish(struct responses_ctx *c, char *response, size_t len, const char *output,
                      size_t output_len)
{
    c->result = response;
    c->result_len = len;
    c->turn = join_arrays(c->a, c->items, strlen(c->items), output, output_len, &c->turn_len);
    const char *h = c->history_items ? c->history_items : "[]";
    c->conversation =
        join_arrays(c->a, h, strlen(h), c->turn, c->turn_len, &c->conversation_len);
}

const char *responses_result(const struct responses_ctx *c, size_t *len)
{
    if (!c || !c->result) return NULL;
    if (len) *len = c->result_len;
    return c->result;
}

const char *responses_conversation(const struct responses_ctx *c, size_t *len)
{
    if (!c || !c->conversation) return NULL;
    if (len) *len = c->conversation_len;
    return c->conversation;
}

const char *responses_turn(const struct responses_ctx *c, size_t *len)
{
    if (!c || !c->turn) return NULL;
    if (len) *len = c->turn_len;
    return c->turn;
}

/* ---- a whole chat completion -> a Response ---- */

/* The chat answer as a tree without its x-aiproxy object, whose text goes
 * to *meta (NULL: none): the gateway's own object is copied as bytes, not
 * loaded and dumped again. NULL when the answer is no JSON object. */
static json_t *load_answer(struct arena *a, const char *body, size_t len, const char **meta,
                           size_t *meta_len)
{
    *meta = NULL;
    *meta_len = 0;
    struct pj_span sp;
    int found = pj_member_span(body, len, "x-aiproxy", &sp);
    if (found >= 0) {
        json_t *root;
        if (found) {
            /* the text without the member */
            size_t n = len - (sp.cut_end - sp.cut_off);
            char *cut = arena_alloc(a, n + 1);
            memcpy(cut, body, sp.cut_off);
            memcpy(cut + sp.cut_off, body + sp.cut_end, len - sp.cut_end);
            cut[n] = '\0';
            root = pj_load(cut, n);
        } else {
            root = pj_load(body, len);
        }
        /* the key spelled with escapes: the whole text's way below */
        if (!json_is_object(root) || !json_object_get(root, "x-aiproxy")) {
            if (found && root) {
                *meta = body + sp.value_off;
                *meta_len = sp.value_len;
            }
            return root;
        }
        json_decref(root);
    }
    json_t *root = pj_load(body, len);
    json_t *x = json_object_get(root, "x-aiproxy");
    if (json_is_object(x)) {
        *meta = pj_dump(a, x, meta_len);
        json_object_del(root, "x-aiproxy");
    }
    return root;
}

/* The message item: text and/or refusal parts. */
static void write_message_item(struct jsonw *o, const struct responses_ctx *c, const char *status,
                               const char *text, const char *refusal)
{
    jsonw_raw(o, "{\"id\":");
    jsonw_str(o, responses_item_id(c, "msg", 0));
    jsonw_raw(o, ",\"type\":\"message\",\"status\":");
    jsonw_str(o, status);
    jsonw_raw(o, ",\"role\":\"assistant\",\"content\":[");
    if (text && (*text || !refusal)) {
        jsonw_raw(o, "{\"type\":\"output_text\",\"text\":");
        jsonw_str(o, text);
        jsonw_raw(o, ",\"annotations\":[]}");
        if (refusal) jsonw_raw(o, ",");
    }
    if (refusal) {
        jsonw_raw(o, "{\"type\":\"refusal\",\"refusal\":");
        jsonw_str(o, refusal);
        jsonw_raw(o, "}");
    }
    jsonw_raw(o, "]}");
}

/* A chat tool call -> a function_call item. */
static void write_call_item(struct jsonw *o, const struct responses_ctx *c, size_t output_index,
                            size_t i, const json_t *tc)
{
    json_t *fn = json_object_get(tc, "function");
    const char *id = pj_str(tc, "id"), *name = pj_str(fn, "name"), *args = pj_str(fn, "arguments");
    jsonw_raw(o, "{\"id\":");
    jsonw_str(o, responses_item_id(c, "fc", output_index));
    jsonw_raw(o, ",\"type\":\"function_call\",\"status\":\"completed\",\"call_id\":");
    jsonw_str(o, id ? id : responses_item_id(c, "call", i));
    jsonw_raw(o, ",\"name\":");
    jsonw_str(o, name ? name : "");
    jsonw_raw(o, ",\"arguments\":");
    jsonw_str(o, args ? args : "{}");
    jsonw_raw(o, "}");
}

static int response_from_openai(struct arena *a, void *vctx, const char *body, size_t len,
                                char **out, size_t *out_len)
{
    const char *meta;
    size_t meta_len;
    json_t *root = load_answer(a, body, len, &meta, &meta_len);
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *msg = json_object_get(choice, "message");
    if (!json_is_object(msg)) {
        json_decref(root);
        return -1;
    }
    struct responses_ctx *c = vctx ? vctx : responses_ctx_default(a, pj_str(root, "id"));
    const char *reason;
    const char *status = responses_status(pj_str(choice, "finish_reason"), &reason);
    json_t *content = json_object_get(msg, "content");
    char *text = json_is_null(content) || !content ? NULL : pj_content_text(a, content, "", NULL);
    const char *refusal = pj_str(msg, "refusal");
    json_t *calls = json_object_get(msg, "tool_calls");
    struct jsonw o, u, w;
    jsonw_init_arena(&o, a, 256 + len);
    jsonw_raw(&o, "[");
    size_t items = 0;
    if ((text && (*text || json_array_size(calls) == 0)) || refusal) {
        write_message_item(&o, c, reason ? "incomplete" : "completed", text, refusal);
        items++;
    }
    size_t i;
    json_t *tc;
    json_array_foreach(calls, i, tc) {
        if (items) jsonw_raw(&o, ",");
        write_call_item(&o, c, items++, i, tc);
    }
    jsonw_raw(&o, "]");
    jsonw_init_arena(&u, a, 192);
    responses_write_usage(&u, json_object_get(root, "usage"));
    struct responses_parts p = {.status = status, .model = pj_str(root, "model"), .output = o.buf,
                                .output_text = text ? text : "", .usage = u.buf,
                                .incomplete_reason = reason, .meta = meta, .meta_len = meta_len};
    jsonw_init_arena(&w, a, 1024 + o.len + meta_len);
    responses_write(&w, c, &p);
    responses_finish(c, w.buf, w.len, o.buf, o.len);
    *out = c->result;
    *out_len = c->result_len;
    json_decref(root);
    return 0;
}

/* The Responses API's errors are OpenAI's: the body goes out as it is. */
static int error_from_openai(struct arena *a, int status, const char *body, size_t len, char **out,
                             size_t *out_len)
{
    (void)a;
    (void)status;
    (void)body;
    (void)len;
    (void)out;
    (void)out_len;
    return -1;
}

const struct inbound_ops inbound_responses_ops = {
    .name = "responses",
    .request_to_openai = NULL,
    .response_from_openai = response_from_openai,
    .stream_begin = responses_stream_begin,
    .stream_chunk = responses_stream_chunk,
    .stream_end = responses_stream_end,
    .stream_error = responses_stream_error,
    .error_from_openai = error_from_openai,
};
