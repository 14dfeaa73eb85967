/* json_sax: a strict, allocation-light JSON event parser over a whole buffer.
 *
 * It reports each value to callbacks as it meets it (no tree), like yajl's,
 * but in one tight pass over bytes already in memory: strings that hold no
 * escape are handed over as pointers into the buffer, numbers as their raw
 * text, and during a callback the parser tells where the reported token
 * lies (json_sax_token_start / json_sax_consumed), so a caller can cut or
 * splice the body around it.
 *
 * Strict RFC 8259, and stricter on text: UTF-8 is checked in full (no
 * overlong forms, no UTF-16 surrogates, nothing past U+10FFFF), control
 * characters must be escaped, and only whitespace may follow the value.
 * A \u escape of a lone surrogate decodes to U+FFFD (the raw token still
 * shows it, for callers that refuse it). */
#ifndef AIPROXY_CORE_JSON_SAX_H
#define AIPROXY_CORE_JSON_SAX_H

#include <stddef.h>

/* Deepest nesting accepted; deeper input is an error, never a crash. */
#define JSON_SAX_MAX_DEPTH 4096

/* Each returns nonzero to go on, 0 to stop the parse (JSON_SAX_CANCELED).
 * Strings and keys are unescaped UTF-8 (may contain NUL when the text
 * escapes one); numbers are their raw text. start_map and start_array may
 * return JSON_SAX_SKIP_CONTENTS: the container's contents are then checked
 * as strictly but reported to no callback, and its end_map / end_array
 * comes as usual. */
#define JSON_SAX_SKIP_CONTENTS 2

struct json_sax_callbacks {
    int (*null_value)(void *ctx);
    int (*boolean)(void *ctx, int value);
    int (*number)(void *ctx, const char *text, size_t len);
    int (*string)(void *ctx, const char *s, size_t len);
    int (*start_map)(void *ctx);
    int (*map_key)(void *ctx, const char *s, size_t len);
    int (*end_map)(void *ctx);
    int (*start_array)(void *ctx);
    int (*end_array)(void *ctx);
};

enum json_sax_status { JSON_SAX_OK, JSON_SAX_CANCELED, JSON_SAX_ERROR };

struct json_sax {
    const char *buf;
    size_t len;
    size_t pos;         /* bytes consumed; in a callback, just past the token */
    size_t tok;         /* in a callback, the reported token's first byte */
    const char *error;  /* JSON_SAX_ERROR: what was wrong (static text) */
    size_t error_at;    /* ... and at which byte */
    char *scratch;      /* unescaped strings (grown on demand) */
    size_t scratch_cap;
    unsigned char kinds[JSON_SAX_MAX_DEPTH / 8]; /* bit per open container: 1 = object */
};

/* Parses buf[0, len) as one JSON value, calling `cb` with `ctx`. `p` is the
 * parser's state (the caller's, so callbacks can read its offsets); nothing
 * is left allocated when it returns. */
enum json_sax_status json_sax_parse(struct json_sax *p, const struct json_sax_callbacks *cb,
                                    void *ctx, const char *buf, size_t len);
/* The same with a lower nesting limit (1..JSON_SAX_MAX_DEPTH): opening a
 * container past `max_depth` open ones is the "nesting too deep" error,
 * skipped contents included. */
enum json_sax_status json_sax_parse_depth(struct json_sax *p, const struct json_sax_callbacks *cb,
                                          void *ctx, const char *buf, size_t len, size_t max_depth);
/* The error text of a parse stopped by the nesting limit (compare pointers). */
extern const char json_sax_too_deep[];

/* In a callback: the offset of the reported token's first byte ('{', '[',
 * '"', a digit...) and the offset just past its last byte. */
static inline size_t json_sax_token_start(const struct json_sax *p)
{
    return p->tok;
}

static inline size_t json_sax_consumed(const struct json_sax *p)
{
    return p->pos;
}

#endif
