/* token_estimate: a conservative input-token count of a Messages request
 * (see token_estimate.h). The per-character rules were calibrated against
 * Anthropic's published tokenizer (tests/integration/count-tokens.test.mjs
 * asserts the estimate is never below it on prose, code, JSON, CJK, emoji,
 * numbers, whitespace and random bytes, and prints the ratios). */
#include "providers/token_estimate.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- one text ---- */

static bool is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static bool is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }
static bool is_letter(unsigned char c) { return is_upper(c) || is_lower(c); }
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static bool is_vowel(unsigned char c)
{
    switch (c | 0x20) {
    case 'a': case 'e': case 'i': case 'o': case 'u': case 'y': return true;
    default: return false;
    }
}

/* Longest letter segment still treated as a word, and the share of vowels
 * (percent) a word has: English words have ~40%, random letters ~23%. */
#define WORD_MAX 20
#define WORD_VOWELS_PCT 25

/* One case segment of a letter run ("parse", "Request", "HTTP"). Words
 * cost a token per 4 letters (real BPE averages more), all-caps words one
 * per 2, and anything that does not look like a word one per 1.5. */
static int64_t segment_tokens(const unsigned char *s, size_t n)
{
    if (n <= 1) return (int64_t)n;
    size_t upper = 0, vowels = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_upper(s[i])) upper++;
        if (is_vowel(s[i])) vowels++;
    }
    bool word = n <= WORD_MAX && vowels * 100 >= n * WORD_VOWELS_PCT;
    int64_t len = (int64_t)n;
    int64_t dense = (2 * len + 2) / 3; /* ceil(n / 1.5) */
    if (upper == n) return word ? (len + 1) / 2 : dense;
    if (word && upper <= 1) return (len + 3) / 4;
    return dense;
}

/* A letter run, split where the case changes: "camelCase" is "camel" +
 * "Case", "HTTPServer" is "HTTP" + "Server". */
static int64_t letters_tokens(const unsigned char *s, size_t n)
{
    int64_t t = 0;
    size_t start = 0;
    for (size_t i = 1; i < n; i++) {
        if (is_lower(s[i - 1]) && is_upper(s[i])) {
            t += segment_tokens(s + start, i - start);
            start = i;
        } else if (is_upper(s[i - 1]) && is_lower(s[i]) && i - 1 > start) {
            t += segment_tokens(s + start, i - 1 - start);
            start = i - 1;
        }
    }
    return t + segment_tokens(s + start, n - start);
}

/* A run of letters and digits. Digits cost one each. A long run that keeps
 * switching between digits, lower and upper case is an id, a hash or
 * base64, which tokenizers cut into pieces of 1-2 characters. */
static int64_t alnum_tokens(const unsigned char *s, size_t n)
{
    int64_t t = 0;
    size_t i = 0, switches = 0;
    while (i < n) {
        if (is_digit(s[i])) {
            t++;
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && is_letter(s[j])) j++;
        t += letters_tokens(s + i, j - i);
        i = j;
    }
    for (i = 1; i < n; i++)
        if (is_digit(s[i]) != is_digit(s[i - 1]) || (is_upper(s[i]) && is_lower(s[i - 1])))
            switches++;
    if (n >= 12 && switches * 10 >= n) {
        int64_t floor_t = ((int64_t)n * 10 + 12) / 13; /* ceil(n / 1.3) */
        if (floor_t > t) t = floor_t;
    }
    return t;
}

int64_t token_estimate_text(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    int64_t t = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (is_letter(c) || is_digit(c)) {
            size_t j = i;
            while (j < len && (is_letter(s[j]) || is_digit(s[j]))) j++;
            t += alnum_tokens(s + i, j - i);
            i = j;
        } else if (c == ' ' && i + 1 < len && is_letter(s[i + 1]) && (i == 0 || s[i - 1] != ' ')) {
            i++; /* " word" is one token with its word */
        } else if (c == ' ' || c == '\t' || c == '\r') {
            while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r')) i++;
            t++;
        } else {
            /* a newline, punctuation, a control character, or one byte of
             * a non-ASCII character (invalid UTF-8 included) */
            t++;
            i++;
        }
    }
    return t;
}

/* ---- a Messages request ---- */

struct walk {
    struct token_estimate *e;
    int depth;
};

#define MAX_DEPTH 64 /* nested tool_result / document content */

static void count_str(struct walk *w, const char *s, size_t n)
{
    w->e->text_tokens += token_estimate_text(s, n);
}

static void count_string_value(struct walk *w, const json_t *v)
{
    if (json_is_string(v)) count_str(w, json_string_value(v), json_string_length(v));
}

/* Any value as its compact JSON text (tool inputs and schemas, unknown
 * blocks): keys, quotes and braces are tokens too. */
static void count_json(struct walk *w, const json_t *v)
{
    if (!v) return;
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) return;
    count_str(w, s, strlen(s));
    free(s);
}

static const char *str_field(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void count_blocks(struct walk *w, const json_t *content);

static void count_document(struct walk *w, const json_t *b)
{
    w->e->documents++;
    const json_t *src = json_object_get(b, "source");
    const char *type = str_field(src, "type");
    const json_t *data = json_object_get(src, "data");
    if (type && strcmp(type, "text") == 0) {
        count_string_value(w, data);
    } else if (type && strcmp(type, "base64") == 0 && json_is_string(data)) {
        /* a PDF: its text and a picture of every page; a page of ~50 KB
         * holds far less than 1,600 + 1,600 tokens, so bytes / 16 is ample */
        int64_t bytes = (int64_t)json_string_length(data) * 3 / 4;
        w->e->text_tokens += TOKEN_EST_IMAGE + bytes / 16;
    } else if (type && strcmp(type, "content") == 0) {
        count_blocks(w, json_object_get(src, "content"));
    } else {
        w->e->text_tokens += TOKEN_EST_DOCUMENT_URL;
    }
    count_string_value(w, json_object_get(b, "title"));
    count_string_value(w, json_object_get(b, "context"));
}

static void count_block(struct walk *w, const json_t *b)
{
    if (json_is_string(b)) {
        count_string_value(w, b);
        return;
    }
    const char *type = str_field(b, "type");
    if (!type) {
        count_json(w, b);
        return;
    }
    if (strcmp(type, "text") == 0) {
        count_string_value(w, json_object_get(b, "text"));
    } else if (strcmp(type, "image") == 0) {
        w->e->images++;
    } else if (strcmp(type, "document") == 0) {
        count_document(w, b);
    } else if (strcmp(type, "tool_use") == 0 || strcmp(type, "server_tool_use") == 0) {
        w->e->text_tokens += TOKEN_EST_BLOCK;
        count_string_value(w, json_object_get(b, "id"));
        count_string_value(w, json_object_get(b, "name"));
        count_json(w, json_object_get(b, "input"));
    } else if (strcmp(type, "tool_result") == 0) {
        w->e->text_tokens += TOKEN_EST_BLOCK;
        count_string_value(w, json_object_get(b, "tool_use_id"));
        count_blocks(w, json_object_get(b, "content"));
    } else if (strcmp(type, "thinking") == 0) {
        count_string_value(w, json_object_get(b, "thinking"));
    } else if (strcmp(type, "redacted_thinking") == 0) {
        count_string_value(w, json_object_get(b, "data"));
    } else {
        count_json(w, b); /* search results, server tool results, new types */
    }
}

/* A content value: a string, or an array of blocks. */
static void count_blocks(struct walk *w, const json_t *content)
{
    if (!content || json_is_null(content)) return;
    if (w->depth >= MAX_DEPTH) {
        count_json(w, content);
        return;
    }
    w->depth++;
    if (json_is_array(content)) {
        size_t i;
        const json_t *b;
        json_array_foreach(content, i, b) count_block(w, b);
    } else {
        count_block(w, content);
    }
    w->depth--;
}

static void count_tools(struct walk *w, const json_t *tools)
{
    if (!json_is_array(tools) || json_array_size(tools) == 0) return;
    w->e->text_tokens += TOKEN_EST_TOOLS_SYSTEM;
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        w->e->tools++;
        const char *type = str_field(t, "type");
        w->e->text_tokens += TOKEN_EST_BLOCK;
        if (type && strcmp(type, "custom") != 0) w->e->text_tokens += TOKEN_EST_SERVER_TOOL;
        count_string_value(w, json_object_get(t, "name"));
        count_string_value(w, json_object_get(t, "description"));
        count_json(w, json_object_get(t, "input_schema"));
    }
}

int token_estimate_messages(const char *body, size_t len, struct token_estimate *out)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *in = json_loadb(body, len, 0, &jerr);
    if (!json_is_object(in)) {
        json_decref(in);
        return -1;
    }
    struct walk w = {.e = out};
    count_blocks(&w, json_object_get(in, "system"));
    const json_t *msgs = json_object_get(in, "messages");
    if (json_is_array(msgs)) {
        size_t i;
        const json_t *m;
        json_array_foreach(msgs, i, m) {
            out->messages++;
            count_blocks(&w, json_object_get(m, "content"));
        }
    }
    count_tools(&w, json_object_get(in, "tools"));
    count_json(&w, json_object_get(in, "tool_choice"));
    json_decref(in);

    int64_t t = TOKEN_EST_REQUEST + out->text_tokens + out->messages * TOKEN_EST_MESSAGE +
                out->images * TOKEN_EST_IMAGE;
    out->tokens = t + (t * TOKEN_EST_MARGIN_PCT + 99) / 100;
    return 0;
}
