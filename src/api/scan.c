/* scan: one json_sax pass over a request or response body, no tree (see scan.h).
 *
 * The parser keeps a small stack of frames, one per open object/array. Each
 * frame knows what its container means (the messages array, one message, a
 * content part, usage, ...) and, for objects, which key it is inside, so a
 * value can be classified by its parent alone: only top-level keys are read
 * as model/stream/..., and a "model" nested in a message is just text. */
#include "api/scan.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/alloc.h"
#include "core/json_sax.h"

/* ---- keys ---- */

enum key {
    K_OTHER,
    /* request, top level */
    K_MODEL,
    K_MESSAGES,
    K_STREAM,
    K_STREAM_OPTIONS,
    K_MAX_TOKENS,
    K_MAX_COMPLETION_TOKENS,
    K_N,
    K_TEMPERATURE,
    K_TOP_P,
    K_TOOLS,
    K_FUNCTIONS,
    K_PROMPT,
    K_INPUT,
    /* request, nested */
    K_INCLUDE_USAGE,
    K_ROLE,
    K_CONTENT,
    K_TYPE,
    K_TEXT,
    K_IMAGE_URL,
    /* response */
    K_USAGE,
    K_ERROR,
    K_MESSAGE,
    K_CHOICES,
    K_PROMPT_TOKENS,
    K_COMPLETION_TOKENS,
    K_TOTAL_TOKENS,
    K_PROMPT_TOKENS_DETAILS,
    K_CACHED_TOKENS,
    /* an aiproxy node's own x-aiproxy object (mesh peers) */
    K_XAIPROXY,
    K_NODE,
    K_PROVIDER,
    K_COST_NANOS,
    K_ROUTE,
    /* prompt caching (SPEC section 9) */
    K_CACHE_CONTROL,
    K_CACHE_WRITE_TOKENS,
    K_CACHE_READ_INPUT,
    K_CACHE_CREATION_INPUT,
    K_COUNT
};

#define KEY(s, k) [k] = { s, sizeof(s) - 1 }
static const struct {
    const char *name;
    size_t len;
} key_names[K_COUNT] = {
    KEY("", K_OTHER),
    KEY("model", K_MODEL),
    KEY("messages", K_MESSAGES),
    KEY("stream", K_STREAM),
    KEY("stream_options", K_STREAM_OPTIONS),
    KEY("max_tokens", K_MAX_TOKENS),
    KEY("max_completion_tokens", K_MAX_COMPLETION_TOKENS),
    KEY("n", K_N),
    KEY("temperature", K_TEMPERATURE),
    KEY("top_p", K_TOP_P),
    KEY("tools", K_TOOLS),
    KEY("functions", K_FUNCTIONS),
    KEY("prompt", K_PROMPT),
    KEY("input", K_INPUT),
    KEY("include_usage", K_INCLUDE_USAGE),
    KEY("role", K_ROLE),
    KEY("content", K_CONTENT),
    KEY("type", K_TYPE),
    KEY("text", K_TEXT),
    KEY("image_url", K_IMAGE_URL),
    KEY("usage", K_USAGE),
    KEY("error", K_ERROR),
    KEY("message", K_MESSAGE),
    KEY("choices", K_CHOICES),
    KEY("prompt_tokens", K_PROMPT_TOKENS),
    KEY("completion_tokens", K_COMPLETION_TOKENS),
    KEY("total_tokens", K_TOTAL_TOKENS),
    KEY("prompt_tokens_details", K_PROMPT_TOKENS_DETAILS),
    KEY("cached_tokens", K_CACHED_TOKENS),
    KEY("x-aiproxy", K_XAIPROXY),
    KEY("node", K_NODE),
    KEY("provider", K_PROVIDER),
    KEY("cost_nanos", K_COST_NANOS),
    KEY("route", K_ROUTE),
    KEY("cache_control", K_CACHE_CONTROL),
    KEY("cache_write_tokens", K_CACHE_WRITE_TOKENS),
    KEY("cache_read_input_tokens", K_CACHE_READ_INPUT),
    KEY("cache_creation_input_tokens", K_CACHE_CREATION_INPUT),
};
#undef KEY

/* Keys by a hash of their length and first and last bytes: a lookup is
 * one probe or two and one memcmp, not a walk over every name. Built once
 * at start-up (the table is read-only afterwards). */
#define KEY_SLOTS 128

static unsigned char key_slots[KEY_SLOTS]; /* enum key, K_OTHER = empty */

static unsigned key_hash(const char *s, size_t n)
{
    return ((unsigned)n * 31u + (unsigned char)s[0] * 7u + (unsigned char)s[n - 1]) % KEY_SLOTS;
}

__attribute__((constructor)) static void key_slots_build(void)
{
    _Static_assert(K_COUNT < KEY_SLOTS && K_COUNT <= 255, "the key table has room");
    for (int k = 1; k < K_COUNT; k++) {
        unsigned h = key_hash(key_names[k].name, key_names[k].len);
        while (key_slots[h] != K_OTHER) h = (h + 1) % KEY_SLOTS;
        key_slots[h] = (unsigned char)k;
    }
}

/* The parser hands keys over unescaped, so "mod\u0065l" is found as "model"
 * here, just as the upstream's parser will see it. */
static enum key lookup_key(const char *s, size_t n)
{
    if (n == 0) return K_OTHER;
    for (unsigned h = key_hash(s, n);; h = (h + 1) % KEY_SLOTS) {
        unsigned k = key_slots[h];
        if (k == K_OTHER) return K_OTHER;
        if (key_names[k].len == n && memcmp(key_names[k].name, s, n) == 0) return (enum key)k;
    }
}

/* Top-level request keys that may appear only once: with duplicates,
 * parsers disagree on which one wins, so the model the gateway routes on
 * could differ from the one the upstream reads. */
static bool is_request_top_key(enum key k)
{
    return k >= K_MODEL && k <= K_INPUT;
}

/* ---- parse state ---- */

/* What a container means. */
enum ctx {
    X_OTHER,
    X_ROOT,
    X_MESSAGES,       /* chat messages[] */
    X_MSG,            /* one message */
    X_CONTENT,        /* a message's content parts[] */
    X_PART,           /* one content part */
    X_STREAM_OPTIONS,
    X_PROMPT,         /* completions prompt[] */
    X_PROMPT_INNER,   /* prompt[][] (token arrays) */
    X_INPUT,          /* embeddings input[] */
    X_INPUT_INNER,    /* input[][] (token arrays) */
    X_TOOLS,          /* tools[] or functions[] */
    X_USAGE,
    X_USAGE_DETAILS,  /* usage.prompt_tokens_details */
    X_ERROR,          /* response error object */
    X_CHOICES,
    X_RELAY,          /* the root's x-aiproxy object */
    X_RELAY_ROUTE,    /* its route[] */
    X_RELAY_USAGE,    /* its usage{} (what the serving node counted) */
};

/* What a value means, from its parent frame and key. */
enum slot {
    S_IGNORE,
    S_ROOT,
    S_MODEL,
    S_MESSAGES,
    S_MSG,
    S_ROLE,
    S_CONTENT,
    S_PART,
    S_PART_TEXT,
    S_TYPE_IN_MESSAGES,
    S_STREAM,
    S_STREAM_OPTIONS,
    S_INCLUDE_USAGE,
    S_MAX_TOKENS,
    S_MAX_COMPLETION_TOKENS,
    S_N,
    S_TEMPERATURE,
    S_TOP_P,
    S_TOOLS,
    S_PROMPT,
    S_PROMPT_ELEM,
    S_PROMPT_TOKEN,
    S_INPUT,
    S_INPUT_ELEM,
    S_INPUT_TOKEN,
    /* response */
    S_USAGE,
    S_USAGE_PROMPT,
    S_USAGE_COMPLETION,
    S_USAGE_TOTAL,
    S_USAGE_DETAILS,
    S_USAGE_CACHED,
    S_USAGE_CACHE_WRITE,
    S_USAGE_CACHE_READ_INPUT,
    S_USAGE_CACHE_CREATION_INPUT,
    S_ERROR,
    S_ERROR_MESSAGE,
    S_CHOICES,
    S_RELAY,
    S_RELAY_NODE,
    S_RELAY_PROVIDER,
    S_RELAY_COST,
    S_RELAY_ROUTE,
    S_RELAY_USAGE,
    S_RELAY_USAGE_FIELD,
};

enum vtype { T_NULL, T_BOOL, T_NUMBER, T_STRING, T_MAP, T_ARRAY };

struct frame {
    enum ctx ctx;
    enum key key;       /* objects: the key whose value comes next */
    bool is_map;
    bool in_messages;   /* inside the chat messages array */
    bool has_role;      /* X_MSG: a role key was seen */
    bool saw_number;    /* X_INPUT: holds token ids */
    bool saw_other;     /* X_INPUT: holds strings or token arrays */
    size_t count;       /* keys or elements so far */
    size_t index;       /* this container's index in its parent array */
};

struct scan {
    struct json_sax *p;
    const char *body;
    size_t len;
    bool is_response;
    enum scan_kind kind;
    bool failed;
    bool walk_all;                      /* SCAN_WALK_ALL: skip nothing */

    size_t depth;                       /* open containers */
    struct frame stack[SCAN_MAX_DEPTH]; /* stack[depth - 1] is the innermost */
    struct frame deep;                  /* stands in for frames past the stack */

    /* request */
    struct req_facts *req;
    struct scan_error *err;
    uint32_t seen;                      /* bit per top-level key */
    int64_t max_tokens, max_completion_tokens;

    /* response */
    struct resp_facts *resp;
    bool total_seen;
    /* prompt_tokens_details' counts win over usage's Anthropic-named ones */
    bool details_cached_seen, details_write_seen;
};

static struct frame *top(struct scan *s)
{
    if (s->depth == 0) return NULL;
    if (s->depth > SCAN_MAX_DEPTH) return &s->deep;
    return &s->stack[s->depth - 1];
}

/* Records the first failure; returns 0 so callbacks can `return fail(...)`,
 * which makes the parser stop with JSON_SAX_CANCELED. */
__attribute__((format(printf, 3, 4)))
static int fail(struct scan *s, const char *param, const char *fmt, ...)
{
    if (s->failed) return 0;
    s->failed = true;
    if (s->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->err->message, sizeof s->err->message, fmt, ap);
        va_end(ap);
        snprintf(s->err->param, sizeof s->err->param, "%s", param);
        s->err->invalid_json = false;
    }
    return 0;
}

/* ---- helpers ---- */

/* Length of the longest prefix of `p` (at most `max` bytes) that does not
 * end inside a UTF-8 sequence, for truncating without breaking characters. */
static size_t utf8_cut(const char *p, size_t n, size_t max)
{
    if (n <= max) return n;
    while (max > 0 && ((unsigned char)p[max] & 0xC0) == 0x80) max--;
    return max;
}

static bool utf8_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t extra;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            extra = 1, min = 0x80;
            c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2, min = 0x800;
            c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3, min = 0x10000;
            c &= 0x07;
        } else {
            return false;
        }
        if (n - i <= extra) return false;
        for (size_t j = 1; j <= extra; j++) {
            if ((p[i + j] & 0xC0) != 0x80) return false;
            c = (c << 6) | (p[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
        i += extra + 1;
    }
    return true;
}

enum num_result { NUM_OK, NUM_NOT_INTEGER, NUM_RANGE };

static bool has_fraction_or_exponent(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == '.' || p[i] == 'e' || p[i] == 'E') return true;
    return false;
}

/* Parses the raw number text as an integer: a fraction or exponent is
 * NUM_NOT_INTEGER (so 1e3 and 3.0 are refused, not rounded), a value that
 * does not fit int64 is NUM_RANGE. */
static enum num_result parse_int(const char *p, size_t n, int64_t *out)
{
    bool neg = n > 0 && p[0] == '-';
    size_t i = neg;
    uint64_t v = 0;

    if (i == n) return NUM_NOT_INTEGER;
    /* One pass: a fraction or an exponent anywhere makes the number not an
     * integer, even one past the range. */
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)p[i] - '0';
        if (d > 9) return NUM_NOT_INTEGER;
        if (v > (UINT64_MAX - d) / 10)
            return has_fraction_or_exponent(p + i, n - i) ? NUM_NOT_INTEGER : NUM_RANGE;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1) return NUM_RANGE;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX) return NUM_RANGE;
        *out = (int64_t)v;
    }
    return NUM_OK;
}

static double parse_double(const char *p, size_t n)
{
    char small[64];
    char *buf = n < sizeof small ? small : xmalloc(n + 1);
    memcpy(buf, p, n);
    buf[n] = '\0';
    double d = strtod(buf, NULL);
    if (buf != small) free(buf);
    return d;
}

static int64_t add_sat(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* ---- request values ---- */

static enum slot classify_request(const struct scan *s, const struct frame *pf)
{
    if (!pf) return S_ROOT;
    switch (pf->ctx) {
    case X_ROOT:
        switch (pf->key) {
        case K_MODEL: return S_MODEL;
        case K_MESSAGES: return s->kind == SCAN_CHAT ? S_MESSAGES : S_IGNORE;
        case K_PROMPT:
            return s->kind == SCAN_COMPLETIONS || s->kind == SCAN_IMAGES ? S_PROMPT : S_IGNORE;
        case K_INPUT: return s->kind == SCAN_EMBEDDINGS ? S_INPUT : S_IGNORE;
        case K_STREAM: return S_STREAM;
        case K_STREAM_OPTIONS: return S_STREAM_OPTIONS;
        case K_MAX_TOKENS: return S_MAX_TOKENS;
        case K_MAX_COMPLETION_TOKENS: return S_MAX_COMPLETION_TOKENS;
        case K_N: return S_N;
        case K_TEMPERATURE: return S_TEMPERATURE;
        case K_TOP_P: return S_TOP_P;
        case K_TOOLS:
        case K_FUNCTIONS: return S_TOOLS;
        default: return S_IGNORE;
        }
    case X_MESSAGES: return S_MSG;
    case X_MSG:
        if (pf->key == K_ROLE) return S_ROLE;
        if (pf->key == K_CONTENT) return S_CONTENT;
        break;
    case X_CONTENT: return S_PART;
    case X_PART:
        if (pf->key == K_TEXT) return S_PART_TEXT;
        break;
    case X_STREAM_OPTIONS: return pf->key == K_INCLUDE_USAGE ? S_INCLUDE_USAGE : S_IGNORE;
    case X_PROMPT: return S_PROMPT_ELEM;
    case X_PROMPT_INNER: return S_PROMPT_TOKEN;
    case X_INPUT: return S_INPUT_ELEM;
    case X_INPUT_INNER: return S_INPUT_TOKEN;
    default: break;
    }
    if (pf->is_map && pf->in_messages && pf->key == K_TYPE) return S_TYPE_IN_MESSAGES;
    return S_IGNORE;
}

static const char *const roles[] = { "system", "developer", "user", "assistant", "tool", "function" };

static int check_role(struct scan *s, const struct frame *msg, const char *p, size_t n)
{
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (strlen(roles[i]) == n && memcmp(roles[i], p, n) == 0) return 1;

    /* Echo at most 32 bytes of the role, printable ASCII only, so the
     * message stays short and valid UTF-8 whatever the client sent. */
    char shown[33];
    size_t k = 0;
    for (size_t i = 0; i < n && k < 32; i++)
        shown[k++] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
    shown[k] = '\0';
    return fail(s, "messages", "messages[%zu].role: unknown role '%s'%s", msg->index, shown,
                n > 32 ? "..." : "");
}

/* The byte range of the string token just reported, quotes included. */
static bool token_range(const struct scan *s, size_t *off, size_t *len)
{
    size_t start = json_sax_token_start(s->p), end = json_sax_consumed(s->p);
    if (end < start + 2 || end > s->len || s->body[start] != '"') return false;
    *off = start;
    *len = end - start;
    return true;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* True when every \u escape in the raw token [p, p+n) that is a UTF-16
 * surrogate is a proper high+low pair. The parser turns a lone surrogate
 * into "?", which would make "\ud800" route as a model called "?". */
static bool surrogates_paired(const char *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] != '\\') continue;
        if (p[i + 1] != 'u') {
            i++; /* skip the escaped character, which may be a backslash */
            continue;
        }
        unsigned u, lo;
        if (i + 6 > n || !hex4(p + i + 2, &u)) return false;
        i += 5;
        if (u >= 0xDC00 && u <= 0xDFFF) return false;
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (i + 7 > n || p[i + 1] != '\\' || p[i + 2] != 'u' || !hex4(p + i + 3, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF)
                return false;
            i += 6;
        }
    }
    return true;
}

static int set_model(struct scan *s, const char *p, size_t n)
{
    if (n == 0) return fail(s, "model", "'model' must be a non-empty string");
    if (n > SCAN_MODEL_MAX)
        return fail(s, "model", "'model' is too long (at most %d bytes)", SCAN_MODEL_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f) return fail(s, "model", "'model' contains control characters");
    }
    /* The parser validates raw UTF-8 but decodes a lone \ud800-style escape into
     * an invalid sequence; a model name must be clean text. */
    if (!token_range(s, &s->req->model_off, &s->req->model_len))
        return fail(s, "model", "internal error locating 'model'");
    if (!utf8_valid((const unsigned char *)p, n) ||
        !surrogates_paired(s->body + s->req->model_off, s->req->model_len))
        return fail(s, "model", "'model' is not valid UTF-8");
    memcpy(s->req->model, p, n);
    s->req->model[n] = '\0';
    return 1;
}

/* Integer fields with their bounds. */
static int set_int(struct scan *s, const char *name, const char *p, size_t n, int64_t lo,
                   int64_t hi, int64_t *out)
{
    int64_t v = 0;
    enum num_result r = parse_int(p, n, &v);
    if (r == NUM_NOT_INTEGER) return fail(s, name, "'%s' must be an integer", name);
    if (r == NUM_RANGE || v < lo || v > hi)
        return fail(s, name, "'%s' must be between %lld and %lld", name, (long long)lo,
                    (long long)hi);
    *out = v;
    return 1;
}

static int check_number(struct scan *s, const char *name, const char *p, size_t n, double lo,
                        double hi)
{
    double d = parse_double(p, n);
    if (!isfinite(d) || d < lo || d > hi)
        return fail(s, name, "'%s' must be a number between %g and %g", name, lo, hi);
    return 1;
}

/* Handles one request value. For a container, sets *child to what it means. */
static int request_value(struct scan *s, struct frame *pf, enum vtype t, const char *p, size_t n,
                         bool b, enum ctx *child)
{
    struct req_facts *f = s->req;
    enum slot slot = classify_request(s, pf);

    switch (slot) {
    case S_IGNORE: break;
    case S_ROOT:
        if (t != T_MAP) return fail(s, "", "The request body must be a JSON object.");
        *child = X_ROOT;
        break;
    case S_MODEL:
        if (t == T_NULL) return fail(s, "model", "you must provide a model parameter");
        if (t != T_STRING) return fail(s, "model", "'model' must be a string");
        return set_model(s, p, n);
    case S_MESSAGES:
        if (t != T_ARRAY) return fail(s, "messages", "'messages' must be a non-empty array");
        *child = X_MESSAGES;
        break;
    case S_MSG:
        if (t != T_MAP) return fail(s, "messages", "messages[%zu] must be an object", pf->count - 1);
        *child = X_MSG;
        break;
    case S_ROLE:
        pf->has_role = true;
        if (t != T_STRING) return fail(s, "messages", "messages[%zu].role must be a string", pf->index);
        return check_role(s, pf, p, n);
    case S_CONTENT:
        if (t == T_STRING) f->text_bytes += n;
        else if (t == T_ARRAY) *child = X_CONTENT;
        break;
    case S_PART:
        if (t == T_MAP) *child = X_PART;
        break;
    case S_PART_TEXT:
        if (t == T_STRING) f->text_bytes += n;
        break;
    case S_TYPE_IN_MESSAGES:
        if (t == T_STRING && n == 9 && memcmp(p, "image_url", 9) == 0) f->has_images = true;
        break;
    case S_STREAM:
        if (t == T_BOOL) f->stream = b;
        else if (t != T_NULL) return fail(s, "stream", "'stream' must be a boolean");
        break;
    case S_STREAM_OPTIONS:
        f->has_stream_options = true;
        if (t == T_MAP) *child = X_STREAM_OPTIONS;
        else if (t != T_NULL) return fail(s, "stream_options", "'stream_options' must be an object");
        break;
    case S_INCLUDE_USAGE:
        if (t == T_BOOL) f->include_usage = b;
        else if (t != T_NULL)
            return fail(s, "stream_options.include_usage",
                        "'stream_options.include_usage' must be a boolean");
        break;
    case S_MAX_TOKENS:
    case S_MAX_COMPLETION_TOKENS: {
        const char *name = slot == S_MAX_TOKENS ? "max_tokens" : "max_completion_tokens";
        int64_t *dst = slot == S_MAX_TOKENS ? &s->max_tokens : &s->max_completion_tokens;
        if (t == T_NULL) break;
        if (t != T_NUMBER) return fail(s, name, "'%s' must be an integer", name);
        return set_int(s, name, p, n, 1, 10000000, dst);
    }
    case S_N:
        if (t == T_NULL) break;
        if (t != T_NUMBER) return fail(s, "n", "'n' must be an integer");
        return set_int(s, "n", p, n, 1, 128, &f->n);
    case S_TEMPERATURE:
    case S_TOP_P: {
        const char *name = slot == S_TEMPERATURE ? "temperature" : "top_p";
        double hi = slot == S_TEMPERATURE ? 2 : 1;
        if (t == T_NULL) break;
        if (t != T_NUMBER) return fail(s, name, "'%s' must be a number", name);
        if (slot == S_TEMPERATURE) f->temperature = parse_double(p, n);
        return check_number(s, name, p, n, 0, hi);
    }
    case S_TOOLS: {
        const char *name = pf->key == K_TOOLS ? "tools" : "functions";
        if (t == T_ARRAY) *child = X_TOOLS;
        else if (t != T_NULL) return fail(s, name, "'%s' must be an array", name);
        break;
    }
    case S_PROMPT:
        if (s->kind == SCAN_IMAGES && t != T_STRING)
            return fail(s, "prompt", "'prompt' must be a string");
        if (t == T_STRING) f->text_bytes += n;
        else if (t == T_ARRAY) *child = X_PROMPT;
        else return fail(s, "prompt", "'prompt' must be a string or an array");
        break;
    case S_PROMPT_ELEM:
        if (t == T_STRING) f->text_bytes += n;
        else if (t == T_NUMBER) f->text_bytes += 4;
        else if (t == T_ARRAY) *child = X_PROMPT_INNER;
        else return fail(s, "prompt", "'prompt' must hold strings, token ids or token arrays");
        break;
    case S_PROMPT_TOKEN:
        if (t != T_NUMBER) return fail(s, "prompt", "'prompt' token arrays must hold integers");
        f->text_bytes += 4;
        break;
    case S_INPUT:
        if (t == T_STRING) {
            if (n == 0) return fail(s, "input", "'input' must be a non-empty string or array");
            f->text_bytes += n;
            f->n_inputs = 1;
        } else if (t == T_ARRAY) {
            *child = X_INPUT;
        } else {
            return fail(s, "input", "'input' must be a non-empty string or array");
        }
        break;
    case S_INPUT_ELEM:
        if (t == T_STRING) f->text_bytes += n, pf->saw_other = true;
        else if (t == T_NUMBER) f->text_bytes += 4, pf->saw_number = true;
        else if (t == T_ARRAY) *child = X_INPUT_INNER, pf->saw_other = true;
        else return fail(s, "input", "'input' must hold strings, token ids or token arrays");
        if (pf->saw_number && pf->saw_other)
            return fail(s, "input", "'input' mixes token ids with strings or arrays");
        break;
    case S_INPUT_TOKEN:
        if (t != T_NUMBER) return fail(s, "input", "'input' token arrays must hold integers");
        f->text_bytes += 4;
        break;
    default: break;
    }
    return 1;
}

/* Checks made when a request container closes. */
static int request_close(struct scan *s, struct frame *f)
{
    switch (f->ctx) {
    case X_MESSAGES:
        if (f->count == 0) return fail(s, "messages", "'messages' must be a non-empty array");
        break;
    case X_MSG:
        if (!f->has_role)
            return fail(s, "messages", "messages[%zu]: missing required 'role'", f->index);
        break;
    case X_INPUT:
        if (f->count == 0) return fail(s, "input", "'input' must be a non-empty string or array");
        s->req->n_inputs = f->saw_number ? 1 : (int64_t)f->count;
        break;
    case X_TOOLS:
        if (f->count > 0) s->req->has_tools = true;
        break;
    default: break;
    }
    return 1;
}

static int request_key(struct scan *s, struct frame *f)
{
    if (f->ctx == X_ROOT && is_request_top_key(f->key)) {
        uint32_t bit = 1u << f->key;
        const char *name = key_names[f->key].name;
        if (s->seen & bit) return fail(s, name, "duplicate key '%s'", name);
        s->seen |= bit;
    }
    if (f->in_messages && f->key == K_IMAGE_URL) s->req->has_images = true;
    if (f->key == K_CACHE_CONTROL) s->req->has_cache_control = true;
    return 1;
}

/* ---- response values ---- */

static enum slot classify_response(const struct frame *pf)
{
    if (!pf) return S_ROOT;
    switch (pf->ctx) {
    case X_ROOT:
        switch (pf->key) {
        case K_USAGE: return S_USAGE;
        case K_ERROR: return S_ERROR;
        case K_CHOICES: return S_CHOICES;
        case K_XAIPROXY: return S_RELAY;
        default: return S_IGNORE;
        }
    case X_RELAY:
        switch (pf->key) {
        case K_NODE: return S_RELAY_NODE;
        case K_PROVIDER: return S_RELAY_PROVIDER;
        case K_COST_NANOS: return S_RELAY_COST;
        case K_ROUTE: return S_RELAY_ROUTE;
        case K_USAGE: return S_RELAY_USAGE;
        default: return S_IGNORE;
        }
    case X_RELAY_USAGE: return S_RELAY_USAGE_FIELD;
    case X_USAGE:
        switch (pf->key) {
        case K_PROMPT_TOKENS: return S_USAGE_PROMPT;
        case K_COMPLETION_TOKENS: return S_USAGE_COMPLETION;
        case K_TOTAL_TOKENS: return S_USAGE_TOTAL;
        case K_PROMPT_TOKENS_DETAILS: return S_USAGE_DETAILS;
        case K_CACHE_READ_INPUT: return S_USAGE_CACHE_READ_INPUT;
        case K_CACHE_CREATION_INPUT: return S_USAGE_CACHE_CREATION_INPUT;
        default: return S_IGNORE;
        }
    case X_USAGE_DETAILS:
        switch (pf->key) {
        case K_CACHED_TOKENS: return S_USAGE_CACHED;
        case K_CACHE_WRITE_TOKENS: return S_USAGE_CACHE_WRITE;
        default: return S_IGNORE;
        }
    case X_ERROR: return pf->key == K_MESSAGE ? S_ERROR_MESSAGE : S_IGNORE;
    default: return S_IGNORE;
    }
}

static void set_error_message(struct resp_facts *r, const char *p, size_t n)
{
    n = utf8_cut(p, n, sizeof r->error_message - 1);
    memcpy(r->error_message, p, n);
    r->error_message[n] = '\0';
}

/* Token counts come from the upstream: a count that is not a non-negative
 * integer is ignored (left at 0) rather than trusted. */
static bool set_count(enum vtype t, const char *p, size_t n, int64_t *out)
{
    int64_t v;
    if (t != T_NUMBER || parse_int(p, n, &v) != NUM_OK || v < 0) return false;
    *out = v;
    return true;
}

/* Copies a relay string field; one that does not fit is left empty (the
 * relay is then incomplete, and not used). */
static void set_relay_str(char *dst, size_t cap, enum vtype t, const char *p, size_t n)
{
    dst[0] = '\0';
    if (t != T_STRING || n >= cap || memchr(p, '\0', n)) return;
    memcpy(dst, p, n);
    dst[n] = '\0';
}

/* The x-aiproxy object opens: where its member starts, to cut it out. Its
 * key must be written plainly ("x-aiproxy", no escapes) and follow a comma;
 * otherwise the object is read but not marked cuttable. */
static void relay_open(struct scan *s)
{
    struct resp_relay *rl = &s->resp->relay;
    memset(rl, 0, sizeof *rl);
    size_t brace = json_sax_consumed(s->p) - 1; /* its '{' */
    static const char key[] = "\"x-aiproxy\"";
    size_t i = brace;
    while (i > 0 && strchr(" \t\r\n", s->body[i - 1])) i--;
    if (i == 0 || s->body[i - 1] != ':') return;
    i--;
    while (i > 0 && strchr(" \t\r\n", s->body[i - 1])) i--;
    if (i < sizeof key - 1 || memcmp(s->body + i - (sizeof key - 1), key, sizeof key - 1) != 0) return;
    i -= sizeof key - 1;
    while (i > 0 && strchr(" \t\r\n", s->body[i - 1])) i--;
    if (i == 0 || s->body[i - 1] != ',') return;
    rl->start_off = i - 1;
    rl->cuttable = true;
}

/* One count of the relay's usage object: flat, every field required (the
 * relay is used without its usage otherwise, see mesh_relay_tail). */
static void relay_usage_field(struct resp_relay *rl, enum key k, enum vtype t, const char *p, size_t n)
{
    int64_t *dst;
    unsigned bit;
    switch (k) {
    case K_PROMPT_TOKENS: dst = &rl->usage.prompt_tokens, bit = 1; break;
    case K_COMPLETION_TOKENS: dst = &rl->usage.completion_tokens, bit = 2; break;
    case K_TOTAL_TOKENS: dst = &rl->usage.total_tokens, bit = 4; break;
    case K_CACHED_TOKENS: dst = &rl->usage.cached_tokens, bit = 8; break;
    case K_CACHE_WRITE_TOKENS: dst = &rl->usage.cache_write_tokens, bit = 16; break;
    default: return;
    }
    if (set_count(t, p, n, dst)) rl->usage_fields |= bit;
}

static int response_value(struct scan *s, struct frame *pf, enum vtype t, const char *p, size_t n,
                          enum ctx *child)
{
    struct resp_facts *r = s->resp;

    switch (classify_response(pf)) {
    case S_ROOT:
        if (t != T_MAP) return fail(s, "", "not a JSON object");
        *child = X_ROOT;
        break;
    case S_USAGE:
        if (t == T_MAP) {
            /* A repeated usage key replaces the earlier one. */
            memset(&r->usage, 0, sizeof r->usage);
            r->usage.present = true;
            s->total_seen = false;
            s->details_cached_seen = s->details_write_seen = false;
            *child = X_USAGE;
        }
        break;
    case S_USAGE_PROMPT: set_count(t, p, n, &r->usage.prompt_tokens); break;
    case S_USAGE_COMPLETION: set_count(t, p, n, &r->usage.completion_tokens); break;
    case S_USAGE_TOTAL:
        s->total_seen = set_count(t, p, n, &r->usage.total_tokens);
        break;
    case S_USAGE_DETAILS:
        if (t == T_MAP) *child = X_USAGE_DETAILS;
        break;
    case S_USAGE_CACHED:
        if (set_count(t, p, n, &r->usage.cached_tokens)) s->details_cached_seen = true;
        break;
    case S_USAGE_CACHE_WRITE:
        if (set_count(t, p, n, &r->usage.cache_write_tokens)) s->details_write_seen = true;
        break;
    case S_USAGE_CACHE_READ_INPUT:
        if (!s->details_cached_seen) set_count(t, p, n, &r->usage.cached_tokens);
        break;
    case S_USAGE_CACHE_CREATION_INPUT:
        if (!s->details_write_seen) set_count(t, p, n, &r->usage.cache_write_tokens);
        break;
    case S_ERROR:
        if (t == T_NULL) break;
        r->has_error = true;
        if (t == T_STRING) set_error_message(r, p, n);
        else if (t == T_MAP) *child = X_ERROR;
        break;
    case S_ERROR_MESSAGE:
        if (t == T_STRING) set_error_message(r, p, n);
        break;
    case S_CHOICES:
        r->has_choices = true;
        r->choices_empty = false;
        if (t == T_ARRAY) *child = X_CHOICES;
        break;
    case S_RELAY:
        if (t == T_MAP) {
            relay_open(s);
            *child = X_RELAY;
        } else {
            memset(&r->relay, 0, sizeof r->relay); /* a later x-aiproxy replaces */
        }
        break;
    case S_RELAY_NODE: set_relay_str(r->relay.node, sizeof r->relay.node, t, p, n); break;
    case S_RELAY_PROVIDER:
        set_relay_str(r->relay.provider, sizeof r->relay.provider, t, p, n);
        break;
    case S_RELAY_COST:
        r->relay.cost_present = set_count(t, p, n, &r->relay.cost_nanos);
        break;
    case S_RELAY_ROUTE:
        r->relay.route_off = r->relay.route_len = 0;
        if (t == T_ARRAY) {
            r->relay.route_off = json_sax_consumed(s->p) - 1;
            *child = X_RELAY_ROUTE;
        }
        break;
    case S_RELAY_USAGE:
        memset(&r->relay.usage, 0, sizeof r->relay.usage);
        r->relay.usage_fields = 0;
        if (t == T_MAP) *child = X_RELAY_USAGE;
        break;
    case S_RELAY_USAGE_FIELD: relay_usage_field(&r->relay, pf->key, t, p, n); break;
    default: break;
    }
    return 1;
}

static int response_close(struct scan *s, struct frame *f)
{
    struct resp_relay *rl = &s->resp->relay;
    if (f->ctx == X_CHOICES && f->count == 0) s->resp->choices_empty = true;
    if (f->ctx == X_RELAY_ROUTE) rl->route_len = json_sax_consumed(s->p) - rl->route_off;
    if (f->ctx == X_RELAY) {
        rl->end_off = json_sax_consumed(s->p);
        rl->present = rl->node[0] && rl->provider[0] && rl->cost_present;
        rl->usage.present = rl->usage_fields == 31;
    }
    return 1;
}

/* ---- parser callbacks ---- */

/* Every value passes through here: the parent counts it, the request or
 * response handler classifies it, and a container gets its frame. */
static int on_value(struct scan *s, enum vtype t, const char *p, size_t n, bool b)
{
    struct frame *pf = top(s);
    enum ctx child = X_OTHER;
    int ok;

    if (pf && !pf->is_map) pf->count++;
    if (s->is_response) ok = response_value(s, pf, t, p, n, &child);
    else ok = request_value(s, pf, t, p, n, b, &child);
    if (!ok) return 0;
    if (t != T_MAP && t != T_ARRAY) return 1;

    if (s->depth == 0) {
        /* The root object's '{' is the byte just consumed. */
        size_t off = json_sax_consumed(s->p);
        if (!s->is_response && off > 0) s->req->root_open_off = off - 1;
    }
    if (s->depth >= SCAN_MAX_DEPTH) {
        /* Only a response gets here (a request's parse stops at this depth,
         * see run): upstreams we chose may nest deeper; tolerate it, just
         * stop tracking meaning past the stack. */
        s->depth++;
        memset(&s->deep, 0, sizeof s->deep);
        s->deep.is_map = t == T_MAP;
        return 1;
    }
    struct frame *f = &s->stack[s->depth++];
    memset(f, 0, sizeof *f);
    f->ctx = child;
    f->is_map = t == T_MAP;
    f->in_messages = pf ? (pf->in_messages || child == X_MESSAGES) : false;
    f->index = pf && !pf->is_map ? pf->count - 1 : 0;
    /* Nothing inside a container of no meaning is read: in a response a
     * choice or a logprobs object, in a request a tool's schema or an
     * unknown parameter's object (not inside messages, whose text and
     * parts count). The parser checks it without events. */
    if (child == X_OTHER && (s->is_response || !f->in_messages) && !s->walk_all)
        return JSON_SAX_SKIP_CONTENTS;
    return 1;
}

static int on_close(struct scan *s)
{
    struct frame *f = top(s);
    int ok = 1;

    if (s->depth <= SCAN_MAX_DEPTH) {
        if (s->is_response) ok = response_close(s, f);
        else ok = request_close(s, f);
        if (s->depth == 1) {
            size_t off = json_sax_consumed(s->p);
            if (s->is_response) {
                s->resp->close_off = off > 0 ? off - 1 : 0;
                s->resp->root_empty = f->count == 0;
            }
        }
    }
    s->depth--;
    return ok;
}

static int on_null(void *ctx)
{
    return on_value(ctx, T_NULL, NULL, 0, false);
}

static int on_boolean(void *ctx, int v)
{
    return on_value(ctx, T_BOOL, NULL, 0, v != 0);
}

static int on_number(void *ctx, const char *p, size_t n)
{
    return on_value(ctx, T_NUMBER, p, n, false);
}

static int on_string(void *ctx, const char *p, size_t n)
{
    return on_value(ctx, T_STRING, p, n, false);
}

static int on_start_map(void *ctx)
{
    return on_value(ctx, T_MAP, NULL, 0, false);
}

static int on_start_array(void *ctx)
{
    return on_value(ctx, T_ARRAY, NULL, 0, false);
}

static int on_end(void *ctx)
{
    return on_close(ctx);
}

static int on_map_key(void *ctx, const char *p, size_t n)
{
    struct scan *s = ctx;
    struct frame *f = top(s);

    f->count++;
    /* Keys only matter where a container means something; skipping the
     * lookup elsewhere keeps big tool schemas cheap. */
    f->key = (f->ctx != X_OTHER || f->in_messages) ? lookup_key(p, n) : K_OTHER;
    if (!s->is_response) return request_key(s, f);
    return 1;
}

static const struct json_sax_callbacks callbacks = {
    .null_value = on_null,
    .boolean = on_boolean,
    .number = on_number,
    .string = on_string,
    .start_map = on_start_map,
    .map_key = on_map_key,
    .end_map = on_end,
    .start_array = on_start_array,
    .end_array = on_end,
};

/* Parses the whole body. Returns 0 on success; on a JSON error fills
 * s->err (when set) as invalid_json and returns -1; on a failure recorded
 * by a callback returns -1. The parser checks UTF-8 strictly (overlong
 * forms, surrogates, past U+10FFFF) on every string's raw bytes, so the
 * callbacks see only clean text from the body. */
static int run(struct scan *s)
{
    struct json_sax p;
    s->p = &p;
    /* A request's nesting limit holds in what is skipped too (the parser
     * enforces it, at the same container as on_value would). */
    enum json_sax_status st =
        json_sax_parse_depth(&p, &callbacks, s, s->body, s->len,
                             s->is_response ? JSON_SAX_MAX_DEPTH : SCAN_MAX_DEPTH);
    s->p = NULL;
    if (st == JSON_SAX_OK) return s->failed ? -1 : 0;
    if (st == JSON_SAX_ERROR && !s->failed && p.error == json_sax_too_deep && !s->is_response) {
        fail(s, "", "nesting too deep (more than %d levels)", SCAN_MAX_DEPTH);
        return -1;
    }
    if (st == JSON_SAX_ERROR && !s->failed) {
        s->failed = true;
        if (s->err) {
            snprintf(s->err->message, sizeof s->err->message,
                     "We could not parse the JSON body of your request. (%s near byte %zu)",
                     p.error, p.error_at);
            s->err->param[0] = '\0';
            s->err->invalid_json = true;
        }
    }
    return -1;
}

/* ---- public API ---- */

int scan_request(enum scan_kind kind, const char *body, size_t len, struct req_facts *out,
                 struct scan_error *err)
{
    return scan_request_flags(kind, body, len, out, err, 0);
}

int scan_request_flags(enum scan_kind kind, const char *body, size_t len, struct req_facts *out,
                       struct scan_error *err, unsigned flags)
{
    struct scan s;
    struct scan_error scratch;

    memset(&s, 0, sizeof s);
    memset(out, 0, sizeof *out);
    if (!err) err = &scratch;
    memset(err, 0, sizeof *err);
    out->max_tokens = -1;
    out->n = 1;
    out->temperature = -1;
    s.body = body;
    s.len = len;
    s.kind = kind;
    s.req = out;
    s.err = err;
    s.max_tokens = -1;
    s.max_completion_tokens = -1;
    s.walk_all = (flags & SCAN_WALK_ALL) != 0;

    if (run(&s) < 0) return -1;

    if (!(s.seen & (1u << K_MODEL)) && !(flags & SCAN_MODEL_OPTIONAL)) {
        fail(&s, "model", "you must provide a model parameter");
        return -1;
    }
    static const struct {
        enum key key;
        const char *name;
    } required[] = {
        [SCAN_CHAT] = { K_MESSAGES, "messages" },
        [SCAN_COMPLETIONS] = { K_PROMPT, "prompt" },
        [SCAN_EMBEDDINGS] = { K_INPUT, "input" },
        [SCAN_IMAGES] = { K_PROMPT, "prompt" },
    };
    if (!(s.seen & (1u << required[kind].key))) {
        fail(&s, required[kind].name, "Missing required parameter: '%s'.", required[kind].name);
        return -1;
    }
    out->max_tokens = s.max_completion_tokens >= 0 ? s.max_completion_tokens : s.max_tokens;
    return 0;
}

int scan_response(const char *body, size_t len, struct resp_facts *out)
{
    return scan_response_flags(body, len, out, 0);
}

int scan_response_flags(const char *body, size_t len, struct resp_facts *out, unsigned flags)
{
    struct scan s;

    memset(&s, 0, sizeof s);
    memset(out, 0, sizeof *out);
    s.body = body;
    s.len = len;
    s.is_response = true;
    s.resp = out;
    s.walk_all = (flags & SCAN_WALK_ALL) != 0;

    if (run(&s) < 0) return -1;
    if (out->usage.present && !s.total_seen)
        out->usage.total_tokens = add_sat(out->usage.prompt_tokens, out->usage.completion_tokens);
    return 0;
}

int64_t scan_estimate_tokens(size_t text_bytes)
{
    if (text_bytes == 0) return 0;
    uint64_t t = (uint64_t)text_bytes / 4 + (text_bytes % 4 != 0);
    return t > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)t;
}
