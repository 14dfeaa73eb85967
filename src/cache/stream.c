/* stream: rebuilds a whole answer from the chunks of an OpenAI stream so it
 * can be cached, and replays a cached answer as such chunks (SPEC section
 * 7; chunk shapes in APIS.md "Streaming (SSE)"). Pure: no I/O.
 *
 * The appended strings (content, refusal, text, arguments) live in growable
 * heap buffers rather than jansson strings: appending to a jansson string
 * copies it, which would make a long answer of tiny chunks quadratic. */
#include "cache/stream.h"

#include <jansson.h>
#include <string.h>

#include "core/alloc.h"

/* Bounds on what one stream may address; a chunk past them is refused. */
#define MAX_CHOICES 128
#define MAX_TOOL_CALLS 128
/* cache_acc_bytes' rough count of a choice's or tool call's JSON besides
 * its strings. */
#define ENTRY_OVERHEAD 64
#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(17))

/* ---- accumulator ---- */

struct buf {
    char *p;
    size_t len, cap;
};

struct tool_acc {
    json_t *id, *type, *name; /* strings, the first sent; NULL: not yet */
    struct buf args;
};

struct choice_acc {
    json_t *role, *finish_reason, *fc_name;
    struct buf content; /* chat content, or a completion's text */
    struct buf refusal, fc_args;
    bool has_refusal, has_fc;
    struct tool_acc *tools[MAX_TOOL_CALLS];
};

struct cache_stream_acc {
    bool completions;
    bool failed; /* sticky: a refused chunk spoils the whole answer */
    json_t *id, *created, *model, *fingerprint; /* first seen; NULL: none */
    struct choice_acc *choices[MAX_CHOICES];
    size_t bytes;
};

static void buf_append(struct buf *b, const char *s, size_t n, size_t *bytes)
{
    if (!n) return;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len < n)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    *bytes += n;
}

static json_t *buf_json(const struct buf *b)
{
    /* concatenated pieces of valid UTF-8 (jansson checked each) are valid */
    return json_stringn_nocheck(b->p ? b->p : "", b->len);
}

/* 1 for a string, 0 for absent or null, -1 for anything else. */
static int str_kind(const json_t *v)
{
    if (!v || json_is_null(v)) return 0;
    return json_is_string(v) ? 1 : -1;
}

/* Keeps v in *slot unless a value is already there. -1 when v is neither a
 * string nor absent/null. */
static int keep_first(json_t **slot, json_t *v, size_t *bytes)
{
    int k = str_kind(v);
    if (k <= 0) return k;
    if (!*slot) {
        *slot = json_incref(v);
        *bytes += json_string_length(v);
    }
    return 0;
}

/* Appends v's string; -1 when v is neither a string nor absent/null.
 * *seen (when given) records that a string came, even an empty one. */
static int append_str(struct buf *b, json_t *v, bool *seen, size_t *bytes)
{
    int k = str_kind(v);
    if (k <= 0) return k;
    buf_append(b, json_string_value(v), json_string_length(v), bytes);
    if (seen) *seen = true;
    return 0;
}

/* An index in [0, max): an integer, or `dflt` when absent and dflt >= 0. */
static int get_index(const json_t *v, long dflt, long max)
{
    long i = dflt;
    if (v) {
        if (!json_is_integer(v)) return -1;
        json_int_t n = json_integer_value(v);
        if (n < 0 || n >= max) return -1;
        i = (long)n;
    }
    return i >= 0 && i < max ? (int)i : -1;
}

struct cache_stream_acc *cache_acc_new(bool completions)
{
    struct cache_stream_acc *acc = xcalloc(1, sizeof *acc);
    acc->completions = completions;
    return acc;
}

void cache_acc_free(struct cache_stream_acc *acc)
{
    if (!acc) return;
    json_decref(acc->id);
    json_decref(acc->created);
    json_decref(acc->model);
    json_decref(acc->fingerprint);
    for (int i = 0; i < MAX_CHOICES; i++) {
        struct choice_acc *ch = acc->choices[i];
        if (!ch) continue;
        json_decref(ch->role);
        json_decref(ch->finish_reason);
        json_decref(ch->fc_name);
        free(ch->content.p);
        free(ch->refusal.p);
        free(ch->fc_args.p);
        for (int k = 0; k < MAX_TOOL_CALLS; k++) {
            struct tool_acc *t = ch->tools[k];
            if (!t) continue;
            json_decref(t->id);
            json_decref(t->type);
            json_decref(t->name);
            free(t->args.p);
            free(t);
        }
        free(ch);
    }
    free(acc);
}

size_t cache_acc_bytes(const struct cache_stream_acc *acc)
{
    return acc->bytes;
}

static int feed_tool_call(struct cache_stream_acc *acc, struct choice_acc *ch, json_t *tc)
{
    if (!json_is_object(tc)) return -1;
    /* the index is required: guessing it could glue two calls together */
    int k = get_index(json_object_get(tc, "index"), -1, MAX_TOOL_CALLS);
    if (k < 0) return -1;
    struct tool_acc *t = ch->tools[k];
    if (!t) {
        t = ch->tools[k] = xcalloc(1, sizeof *t);
        acc->bytes += ENTRY_OVERHEAD;
    }
    if (keep_first(&t->id, json_object_get(tc, "id"), &acc->bytes) < 0) return -1;
    if (keep_first(&t->type, json_object_get(tc, "type"), &acc->bytes) < 0) return -1;
    json_t *fn = json_object_get(tc, "function");
    if (!fn || json_is_null(fn)) return 0;
    if (!json_is_object(fn)) return -1;
    if (keep_first(&t->name, json_object_get(fn, "name"), &acc->bytes) < 0) return -1;
    return append_str(&t->args, json_object_get(fn, "arguments"), NULL, &acc->bytes);
}

static int feed_delta(struct cache_stream_acc *acc, struct choice_acc *ch, json_t *delta)
{
    if (!delta || json_is_null(delta)) return 0;
    if (!json_is_object(delta)) return -1;
    if (keep_first(&ch->role, json_object_get(delta, "role"), &acc->bytes) < 0) return -1;
    if (append_str(&ch->content, json_object_get(delta, "content"), NULL, &acc->bytes) < 0)
        return -1;
    if (append_str(&ch->refusal, json_object_get(delta, "refusal"), &ch->has_refusal, &acc->bytes) <
        0)
        return -1;
    json_t *tcs = json_object_get(delta, "tool_calls");
    if (tcs && !json_is_null(tcs)) {
        if (!json_is_array(tcs)) return -1;
        size_t i;
        json_t *tc;
        json_array_foreach(tcs, i, tc) {
            if (feed_tool_call(acc, ch, tc) < 0) return -1;
        }
    }
    json_t *fc = json_object_get(delta, "function_call");
    if (fc && !json_is_null(fc)) {
        if (!json_is_object(fc)) return -1;
        ch->has_fc = true;
        if (keep_first(&ch->fc_name, json_object_get(fc, "name"), &acc->bytes) < 0) return -1;
        if (append_str(&ch->fc_args, json_object_get(fc, "arguments"), NULL, &acc->bytes) < 0)
            return -1;
    }
    return 0;
}

static int feed_choice(struct cache_stream_acc *acc, json_t *c, size_t pos)
{
    if (!json_is_object(c)) return -1;
    /* a missing choice index is its position (n=1 servers that omit it) */
    int idx =
        get_index(json_object_get(c, "index"), pos < MAX_CHOICES ? (long)pos : -1, MAX_CHOICES);
    if (idx < 0) return -1;
    struct choice_acc *ch = acc->choices[idx];
    if (!ch) {
        ch = acc->choices[idx] = xcalloc(1, sizeof *ch);
        acc->bytes += ENTRY_OVERHEAD;
    }
    json_t *fr = json_object_get(c, "finish_reason");
    int k = str_kind(fr);
    if (k < 0) return -1;
    if (k > 0) { /* the last non-null one */
        json_decref(ch->finish_reason);
        ch->finish_reason = json_incref(fr);
        acc->bytes += json_string_length(fr);
    }
    if (acc->completions)
        return append_str(&ch->content, json_object_get(c, "text"), NULL, &acc->bytes);
    return feed_delta(acc, ch, json_object_get(c, "delta"));
}

int cache_acc_feed(struct cache_stream_acc *acc, const char *json, size_t len)
{
    if (acc->failed) return -1;
    int rc = -1;
    json_error_t err;
    json_t *root = json_loadb(json, len, 0, &err);
    json_t *choices = json_object_get(root, "choices"); /* NULL for a non-object */
    if (!json_is_object(root) || !json_is_array(choices)) goto out;
    /* the first string id, model and fingerprint and integer created */
    if (keep_first(&acc->id, json_object_get(root, "id"), &acc->bytes) < 0) goto out;
    if (keep_first(&acc->model, json_object_get(root, "model"), &acc->bytes) < 0) goto out;
    if (keep_first(&acc->fingerprint, json_object_get(root, "system_fingerprint"), &acc->bytes) < 0)
        goto out;
    json_t *created = json_object_get(root, "created");
    if (!acc->created && json_is_integer(created)) acc->created = json_incref(created);
    size_t i;
    json_t *c;
    json_array_foreach(choices, i, c) {
        if (feed_choice(acc, c, i) < 0) goto out;
    }
    rc = 0;
out:
    json_decref(root);
    if (rc) acc->failed = true;
    return rc;
}

static json_t *str_or(json_t *v, const char *dflt)
{
    return v ? json_incref(v) : json_string(dflt);
}

static json_t *finish_message(struct choice_acc *ch)
{
    json_t *msg = json_object();
    json_object_set_new(msg, "role", str_or(ch->role, "assistant"));
    json_t *calls = NULL;
    for (int k = 0; k < MAX_TOOL_CALLS; k++) {
        struct tool_acc *t = ch->tools[k];
        if (!t) continue;
        json_t *fn = json_object();
        json_object_set_new(fn, "name", str_or(t->name, ""));
        json_object_set_new(fn, "arguments", buf_json(&t->args));
        json_t *call = json_object();
        json_object_set_new(call, "id", str_or(t->id, ""));
        json_object_set_new(call, "type", str_or(t->type, "function"));
        json_object_set_new(call, "function", fn);
        if (!calls) calls = json_array();
        json_array_append_new(calls, call);
    }
    /* APIS.md: content may be null when tool_calls or function_call is
     * present; an empty content counts as none, since streams often open
     * with content "" */
    if (ch->content.len == 0 && (calls || ch->has_fc))
        json_object_set_new(msg, "content", json_null());
    else
        json_object_set_new(msg, "content", buf_json(&ch->content));
    if (ch->has_refusal) json_object_set_new(msg, "refusal", buf_json(&ch->refusal));
    if (calls) json_object_set_new(msg, "tool_calls", calls);
    if (ch->has_fc) {
        json_t *fc = json_object();
        json_object_set_new(fc, "name", str_or(ch->fc_name, ""));
        json_object_set_new(fc, "arguments", buf_json(&ch->fc_args));
        json_object_set_new(msg, "function_call", fc);
    }
    return msg;
}

static char *dump_arena(struct arena *a, const json_t *v, size_t *out_len)
{
    size_t n = json_dumpb(v, NULL, 0, DUMP_FLAGS);
    char *out = arena_alloc(a, n + 1);
    if (n) (void)json_dumpb(v, out, n, DUMP_FLAGS);
    out[n] = '\0';
    if (out_len) *out_len = n;
    return out;
}

char *cache_acc_finish(struct cache_stream_acc *acc, struct arena *a, int64_t prompt_tokens,
                       int64_t completion_tokens, size_t *out_len)
{
    if (acc->failed) return NULL;
    json_t *choices = json_array();
    for (int i = 0; i < MAX_CHOICES; i++) {
        struct choice_acc *ch = acc->choices[i];
        if (!ch) continue;
        json_t *c = json_object();
        json_t *fr = ch->finish_reason ? json_incref(ch->finish_reason) : json_null();
        if (acc->completions) {
            json_object_set_new(c, "text", buf_json(&ch->content));
            json_object_set_new(c, "index", json_integer(i));
            json_object_set_new(c, "logprobs", json_null());
            json_object_set_new(c, "finish_reason", fr);
        } else {
            json_object_set_new(c, "index", json_integer(i));
            json_object_set_new(c, "message", finish_message(ch));
            json_object_set_new(c, "logprobs", json_null());
            json_object_set_new(c, "finish_reason", fr);
        }
        json_array_append_new(choices, c);
    }
    if (json_array_size(choices) == 0) { /* nothing fed, or only usage chunks */
        json_decref(choices);
        return NULL;
    }
    json_t *root = json_object();
    json_object_set_new(root, "id", str_or(acc->id, ""));
    json_object_set_new(root, "object",
                        json_string(acc->completions ? "text_completion" : "chat.completion"));
    json_object_set_new(root, "created",
                        acc->created ? json_incref(acc->created) : json_integer(0));
    json_object_set_new(root, "model", str_or(acc->model, ""));
    if (acc->fingerprint) json_object_set(root, "system_fingerprint", acc->fingerprint);
    json_object_set_new(root, "choices", choices);
    json_t *usage = json_object();
    json_object_set_new(usage, "prompt_tokens", json_integer(prompt_tokens));
    json_object_set_new(usage, "completion_tokens", json_integer(completion_tokens));
    json_object_set_new(usage, "total_tokens", json_integer(prompt_tokens + completion_tokens));
    json_object_set_new(root, "usage", usage);
    char *out = dump_arena(a, root, out_len);
    json_decref(root);
    return out;
}

/* ---- replay ---- */

struct replay {
    bool completions;
    json_t *id, *created, *model, *fingerprint; /* fingerprint may be NULL */
    void (*emit)(void *ctx, const char *json, size_t len);
    void *ctx;
    char *scratch; /* each chunk's JSON, valid during its emit call */
    size_t cap;
    int count;
};

/* A chunk around one choice object (owned by the chunk). */
static void emit_chunk(struct replay *r, json_t *choice)
{
    json_t *root = json_object();
    json_object_set(root, "id", r->id);
    json_object_set_new(root, "object",
                        json_string(r->completions ? "text_completion" : "chat.completion.chunk"));
    json_object_set(root, "created", r->created);
    json_object_set(root, "model", r->model);
    if (r->fingerprint) json_object_set(root, "system_fingerprint", r->fingerprint);
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    json_object_set_new(root, "choices", choices);
    size_t n = json_dumpb(root, NULL, 0, DUMP_FLAGS);
    if (n + 1 > r->cap) {
        r->cap = n + 1 > 2 * r->cap ? n + 1 : 2 * r->cap;
        r->scratch = xrealloc(r->scratch, r->cap);
    }
    if (n) (void)json_dumpb(root, r->scratch, n, DUMP_FLAGS);
    r->scratch[n] = '\0';
    json_decref(root);
    r->emit(r->ctx, r->scratch, n);
    r->count++;
}

static json_t *chat_choice(int index, json_t *delta, json_t *finish_reason)
{
    json_t *c = json_object();
    json_object_set_new(c, "index", json_integer(index));
    json_object_set_new(c, "delta", delta);
    json_object_set_new(c, "logprobs", json_null());
    json_object_set_new(c, "finish_reason", finish_reason ? finish_reason : json_null());
    return c;
}

static json_t *text_choice(int index, json_t *text, json_t *finish_reason)
{
    json_t *c = json_object();
    json_object_set_new(c, "text", text);
    json_object_set_new(c, "index", json_integer(index));
    json_object_set_new(c, "logprobs", json_null());
    json_object_set_new(c, "finish_reason", finish_reason ? finish_reason : json_null());
    return c;
}

static bool utf8_cont(char c)
{
    return ((unsigned char)c & 0xC0) == 0x80;
}

/* The length of the next piece of s[0, n): about `piece` bytes, never
 * inside a UTF-8 sequence (longer than `piece` when one sequence is), cut
 * after the last space of the piece's last quarter when there is one so
 * that words stay whole. piece 0: the whole rest. */
static size_t piece_len(const char *s, size_t n, size_t piece)
{
    if (piece == 0 || n <= piece) return n;
    size_t end = piece;
    while (end > 0 && utf8_cont(s[end]))
        end--;
    if (end == 0) { /* one sequence longer than the piece */
        end = 1;
        while (end < n && utf8_cont(s[end]))
            end++;
        return end;
    }
    size_t from = piece - piece / 4;
    for (size_t q = end; q > from; q--)
        if (s[q - 1] == ' ') return q;
    return end;
}

enum piece_field { PF_CONTENT, PF_REFUSAL, PF_TOOL_ARGS, PF_FC_ARGS, PF_TEXT };

/* Emits the string v in pieces, each in the delta (or completion choice) of
 * its own chunk. */
static void emit_pieces(struct replay *r, int index, enum piece_field f, int tool, const json_t *v,
                        size_t piece)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v), off = 0;
    while (off < n) {
        size_t k = piece_len(s + off, n - off, piece);
        json_t *str = json_stringn_nocheck(s + off, k); /* cut at sequence boundaries */
        off += k;
        if (f == PF_TEXT) {
            emit_chunk(r, text_choice(index, str, NULL));
            continue;
        }
        json_t *delta = json_object();
        if (f == PF_CONTENT) {
            json_object_set_new(delta, "content", str);
        } else if (f == PF_REFUSAL) {
            json_object_set_new(delta, "refusal", str);
        } else {
            json_t *fn = json_object();
            json_object_set_new(fn, "arguments", str);
            if (f == PF_FC_ARGS) {
                json_object_set_new(delta, "function_call", fn);
            } else {
                json_t *tc = json_object();
                json_object_set_new(tc, "index", json_integer(tool));
                json_object_set_new(tc, "function", fn);
                json_t *tcs = json_array();
                json_array_append_new(tcs, tc);
                json_object_set_new(delta, "tool_calls", tcs);
            }
        }
        emit_chunk(r, chat_choice(index, delta, NULL));
    }
}

static json_t *str_field(json_t *obj, const char *key, const char *dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_incref(v) : json_string(dflt);
}

static void replay_chat_choice(struct replay *r, int index, json_t *c, size_t piece)
{
    json_t *msg = json_object_get(c, "message"); /* NULL: an empty message */
    json_t *delta = json_object();
    json_object_set_new(delta, "role", str_field(msg, "role", "assistant"));
    json_object_set_new(delta, "content", json_string(""));
    emit_chunk(r, chat_choice(index, delta, NULL));
    json_t *content = json_object_get(msg, "content");
    if (json_is_string(content)) emit_pieces(r, index, PF_CONTENT, 0, content, piece);
    json_t *refusal = json_object_get(msg, "refusal");
    if (json_is_string(refusal)) {
        if (json_string_length(refusal) == 0) { /* keep "refusal":"" an answer had */
            delta = json_object();
            json_object_set_new(delta, "refusal", json_string(""));
            emit_chunk(r, chat_choice(index, delta, NULL));
        }
        emit_pieces(r, index, PF_REFUSAL, 0, refusal, piece);
    }
    json_t *calls = json_object_get(msg, "tool_calls");
    size_t i;
    json_t *call;
    int k = 0;
    json_array_foreach(calls, i, call) { /* no-op unless an array */
        if (!json_is_object(call)) continue;
        json_t *fn = json_object_get(call, "function");
        json_t *f = json_object();
        json_object_set_new(f, "name", str_field(fn, "name", ""));
        json_object_set_new(f, "arguments", json_string(""));
        json_t *tc = json_object();
        json_object_set_new(tc, "index", json_integer(k));
        json_object_set_new(tc, "id", str_field(call, "id", ""));
        json_object_set_new(tc, "type", str_field(call, "type", "function"));
        json_object_set_new(tc, "function", f);
        json_t *tcs = json_array();
        json_array_append_new(tcs, tc);
        delta = json_object();
        json_object_set_new(delta, "tool_calls", tcs);
        emit_chunk(r, chat_choice(index, delta, NULL));
        json_t *args = json_object_get(fn, "arguments");
        if (json_is_string(args)) emit_pieces(r, index, PF_TOOL_ARGS, k, args, piece);
        k++;
    }
    json_t *fc = json_object_get(msg, "function_call"); /* the legacy form */
    if (json_is_object(fc)) {
        json_t *f = json_object();
        json_object_set_new(f, "name", str_field(fc, "name", ""));
        json_object_set_new(f, "arguments", json_string(""));
        delta = json_object();
        json_object_set_new(delta, "function_call", f);
        emit_chunk(r, chat_choice(index, delta, NULL));
        json_t *args = json_object_get(fc, "arguments");
        if (json_is_string(args)) emit_pieces(r, index, PF_FC_ARGS, 0, args, piece);
    }
}

/* An object with a choices array of objects: the answers replay takes. */
static bool is_answer(json_t *root)
{
    json_t *choices = json_object_get(root, "choices");
    if (!json_is_object(root) || !json_is_array(choices)) return false;
    size_t i;
    json_t *c;
    json_array_foreach(choices, i, c) {
        if (!json_is_object(c)) return false;
    }
    return true;
}

int cache_replay(struct arena *a, const char *body, size_t len, bool completions, const char *id,
                 size_t piece, void (*emit)(void *ctx, const char *json, size_t len), void *ctx)
{
    json_error_t err;
    json_t *root = json_loadb(body, len, 0, &err);
    if (!is_answer(root)) {
        json_decref(root);
        return -1;
    }
    json_t *created = json_object_get(root, "created");
    json_t *fingerprint = json_object_get(root, "system_fingerprint");
    struct replay r = {
        .completions = completions,
        .id = id ? json_string(id) : str_field(root, "id", ""),
        .created = json_is_integer(created) ? json_incref(created) : json_integer(0),
        .model = str_field(root, "model", ""),
        .fingerprint = json_is_string(fingerprint) ? json_incref(fingerprint) : NULL,
        .emit = emit,
        .ctx = ctx,
    };
    if (!r.id) r.id = json_string(""); /* an id that is not UTF-8 */
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(root, "choices"), i, c) {
        /* the answer's index, else its position */
        json_t *ix = json_object_get(c, "index");
        json_int_t index = json_is_integer(ix) ? json_integer_value(ix) : (json_int_t)i;
        if (index < 0 || index > INT32_MAX) index = (json_int_t)(i > INT32_MAX ? INT32_MAX : i);
        json_t *fr = json_object_get(c, "finish_reason");
        fr = json_is_string(fr) ? json_incref(fr) : NULL;
        if (completions) {
            json_t *text = json_object_get(c, "text");
            if (json_is_string(text)) emit_pieces(&r, (int)index, PF_TEXT, 0, text, piece);
            emit_chunk(&r, text_choice((int)index, json_string(""), fr));
        } else {
            replay_chat_choice(&r, (int)index, c, piece);
            emit_chunk(&r, chat_choice((int)index, json_object(), fr));
        }
    }
    json_decref(r.id);
    json_decref(r.created);
    json_decref(r.model);
    json_decref(r.fingerprint);
    free(r.scratch);
    json_decref(root);
    return r.count;
}
