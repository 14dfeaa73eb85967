/* key: the exact key, the semantic partition and the conversation's text
 * of a request body (key.h). One parse per call; each canonical dump is
 * streamed into one heap buffer right behind its length-prefixed header
 * (scope, model, endpoint, kind) and hashed there, so a body of a few MB
 * costs one dump per hash and no arena space. */
#include "cache/key.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "security/digest.h"

/* Sorted keys at every depth, no whitespace, and doubles printed with 17
 * digits so they read back as the same double (the form is a fixed point). */
#define CANON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17) | JSON_ENCODE_ANY)

/* Top-level fields that change how or to whom an answer is delivered, not
 * the answer: never part of a key. */
static const char *const unkeyed[] = {"stream", "stream_options", "user"};
/* The conversation: compared by meaning, so left out of the partition. */
static const char *const conversation[] = {"messages", "prompt", "input", "system"};

/* ---- a growable heap buffer ---- */

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const void *data, size_t n)
{
    if (!n) return;
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) abort(); /* cannot happen for a bounded body */
            cap *= 2;
        }
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static int on_dump(const char *data, size_t n, void *b)
{
    buf_add(b, data, n);
    return 0;
}

static void put_u64le(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A hashed part: its length (8 bytes LE), then its bytes. The prefix is
 * what keeps "ab"+"c" and "a"+"bc" apart. */
static void buf_lp(struct buf *b, const char *s, size_t n)
{
    unsigned char len[8];
    put_u64le(len, n);
    buf_add(b, len, sizeof len);
    buf_add(b, s, n);
}

/* Appends the canonical dump of `root`; -1 if jansson refuses it. */
static int dump_canonical(struct buf *b, const json_t *root)
{
    return json_dump_callback(root, on_dump, b, CANON_FLAGS) == 0 ? 0 : -1;
}

/* ---- canonical form and hashes ---- */

/* The body parsed, when it is a JSON object, with the unkeyed fields gone. */
static json_t *load_keyed(const char *body, size_t len)
{
    json_error_t e;
    if (!body) return NULL;
    /* No NUL inside strings (\u0000 is refused), no trailing bytes, the
     * top level an object or an array. Duplicate keys are refused: which
     * one counts is up to the parser, and the upstream's might answer
     * another request than the one the key names (a poisoned entry). */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &e);
    if (!root) return NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    for (size_t i = 0; i < sizeof unkeyed / sizeof unkeyed[0]; i++) json_object_del(root, unkeyed[i]);
    return root;
}

/* sha256(lp(scope) lp(model) lp(endpoint) lp(kind) lp(canonical root)),
 * built in `b` (emptied first). */
static int hash_keyed(struct buf *b, const char *scope, const char *model, const char *endpoint,
                      const char *kind, const json_t *root, uint8_t out[CACHE_KEY_LEN])
{
    b->len = 0;
    buf_lp(b, scope, strlen(scope));
    buf_lp(b, model, strlen(model));
    buf_lp(b, endpoint, strlen(endpoint));
    buf_lp(b, kind, strlen(kind));
    unsigned char len[8] = {0};
    size_t at = b->len;
    buf_add(b, len, sizeof len); /* the canonical form's length, once known */
    if (dump_canonical(b, root) != 0) return -1;
    put_u64le((unsigned char *)b->p + at, b->len - at - sizeof len);
    digest_sha256(b->p, b->len, out);
    return 0;
}

char *cache_canonical(struct arena *a, const char *body, size_t len, size_t *out_len)
{
    if (out_len) *out_len = 0;
    json_t *root = load_keyed(body, len);
    if (!root) return NULL;
    struct buf b = {0};
    char *out = NULL;
    if (dump_canonical(&b, root) == 0) {
        out = arena_strndup(a, b.p ? b.p : "", b.len);
        if (out_len) *out_len = b.len;
    }
    free(b.p);
    json_decref(root);
    return out;
}

/* ---- the conversation's text ---- */

/* Appends the text of a content value: a string, null (an assistant turn
 * that only calls tools), or an array of parts whose texts are joined by
 * "\n". Tool uses and tool results count as text (two conversations that
 * differ only there must not look alike); reasoning is left out. Returns
 * false for anything else (an image, audio, a file, an unknown part):
 * such a conversation cannot be compared by its text. `chars` counts the
 * content bytes added. */
static bool add_content(struct buf *t, const json_t *content, size_t *chars)
{
    if (!content || json_is_null(content)) return true; /* absent or null: no text */
    if (json_is_string(content)) {
        size_t n = json_string_length(content);
        buf_add(t, json_string_value(content), n);
        *chars += n;
        return true;
    }
    if (!json_is_array(content)) return false;
    bool first = true;
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        if (!type) return false;
        if (!strcmp(type, "thinking") || !strcmp(type, "redacted_thinking")) continue;
        if (!first) buf_add(t, "\n", 1);
        first = false;
        if (!strcmp(type, "text") || !strcmp(type, "input_text") || !strcmp(type, "output_text")) {
            json_t *text = json_object_get(part, "text");
            if (!json_is_string(text)) return false;
            if (!add_content(t, text, chars)) return false;
        } else if (!strcmp(type, "tool_use")) { /* Anthropic: name and input */
            json_t *name = json_object_get(part, "name");
            if (!json_is_string(name)) return false;
            if (!add_content(t, name, chars)) return false;
            json_t *input = json_object_get(part, "input");
            if (input) {
                size_t at = t->len;
                buf_add(t, " ", 1);
                if (dump_canonical(t, input) != 0) return false;
                *chars += t->len - at;
            }
        } else if (!strcmp(type, "tool_result")) { /* Anthropic: the tool's answer */
            json_t *c = json_object_get(part, "content");
            if (c && !add_content(t, c, chars)) return false;
        } else {
            return false;
        }
    }
    return true;
}

/* One OpenAI function call ({name, arguments}) as "name arguments". */
static bool add_function(struct buf *t, const json_t *fn, size_t *chars)
{
    json_t *name = json_object_get(fn, "name");
    json_t *args = json_object_get(fn, "arguments");
    if (!json_is_string(name)) return false;
    add_content(t, name, chars);
    if (json_is_string(args)) {
        buf_add(t, " ", 1);
        add_content(t, args, chars);
    }
    return true;
}

/* One message as "role: text\n"; its tool calls follow its content, one a
 * line. */
static bool add_message(struct buf *t, const json_t *m, size_t *chars)
{
    if (!json_is_object(m)) return false;
    const char *role = json_string_value(json_object_get(m, "role"));
    buf_str(t, role ? role : "");
    buf_add(t, ": ", 2);
    size_t start = t->len;
    if (!add_content(t, json_object_get(m, "content"), chars)) return false;
    json_t *calls = json_object_get(m, "tool_calls");
    json_t *legacy = json_object_get(m, "function_call");
    if (calls && !json_is_null(calls)) {
        if (!json_is_array(calls)) return false;
        size_t i;
        json_t *call;
        json_array_foreach(calls, i, call) {
            if (t->len != start) buf_add(t, "\n", 1);
            if (!add_function(t, json_object_get(call, "function"), chars)) return false;
        }
    } else if (json_is_object(legacy)) {
        if (t->len != start) buf_add(t, "\n", 1);
        if (!add_function(t, legacy, chars)) return false;
    }
    buf_add(t, "\n", 1);
    return true;
}

/* The conversation as text (see key.h), in `t`; false when there is none
 * or it is not all text. */
static bool conversation_text(struct buf *t, const json_t *root)
{
    size_t chars = 0;
    json_t *messages = json_object_get(root, "messages");
    if (messages) {
        if (!json_is_array(messages)) return false;
        json_t *system = json_object_get(root, "system"); /* Anthropic style */
        if (system) {
            size_t at = t->len, before = chars;
            buf_str(t, "system: ");
            if (!add_content(t, system, &chars)) return false;
            if (chars == before)
                t->len = at; /* an empty system prompt says nothing */
            else
                buf_add(t, "\n", 1);
        }
        size_t i;
        json_t *m;
        json_array_foreach(messages, i, m) {
            if (!add_message(t, m, &chars)) return false;
        }
        return chars > 0;
    }
    json_t *prompt = json_object_get(root, "prompt");
    if (json_is_string(prompt)) {
        add_content(t, prompt, &chars);
    } else if (json_is_array(prompt)) {
        size_t i;
        json_t *p;
        json_array_foreach(prompt, i, p) {
            if (!json_is_string(p)) return false; /* token ids are not text */
            if (i) buf_add(t, "\n", 1);
            add_content(t, p, &chars);
        }
    }
    return chars > 0; /* embeddings ("input") and anything else: no text */
}

/* ---- the keys ---- */

int cache_key_build(struct arena *a, const char *scope, const char *model, const char *endpoint,
                    const char *body, size_t len, struct cache_key *out)
{
    memset(out, 0, sizeof *out);
    out->n = 1;
    json_t *root = load_keyed(body, len);
    if (!root) return -1;
    if (!scope) scope = "";
    if (!model) model = "";
    if (!endpoint) endpoint = "";

    json_t *temperature = json_object_get(root, "temperature");
    if (json_is_number(temperature)) {
        out->has_temperature = true;
        out->temperature = json_number_value(temperature);
    }
    json_t *n = json_object_get(root, "n");
    if (json_is_integer(n) && json_integer_value(n) >= 1) out->n = (int64_t)json_integer_value(n);

    struct buf b = {0};
    if (conversation_text(&b, root)) {
        out->text = arena_strndup(a, b.p, b.len);
        out->text_len = b.len;
    }

    int rc = hash_keyed(&b, scope, model, endpoint, "exact", root, out->exact);
    if (rc == 0) {
        for (size_t i = 0; i < sizeof conversation / sizeof conversation[0]; i++)
            json_object_del(root, conversation[i]);
        rc = hash_keyed(&b, scope, model, endpoint, "semantic", root, out->partition);
    }
    free(b.p);
    json_decref(root);
    if (rc != 0) {
        memset(out, 0, sizeof *out);
        out->n = 1;
    }
    return rc;
}

void cache_key_raw(const char *scope, const char *model, const char *endpoint, const char *body,
                   size_t len, uint8_t out[CACHE_KEY_LEN])
{
    /* Small bodies (the usual) on the stack: no allocation on a hit. */
    char stack[8192];
    struct buf b = {.p = stack, .len = 0, .cap = sizeof stack};
    size_t need = 5 * 8 + strlen(scope) + strlen(model) + strlen(endpoint) + 3 + len;
    if (need > sizeof stack) b = (struct buf){0};
    buf_lp(&b, scope, strlen(scope));
    buf_lp(&b, model, strlen(model));
    buf_lp(&b, endpoint, strlen(endpoint));
    buf_lp(&b, "raw", 3);
    buf_lp(&b, body ? body : "", body ? len : 0);
    digest_sha256(b.p, b.len, out);
    if (b.p != stack) free(b.p);
}
