/* token_estimate: the gateway's own count of a Messages request's input
 * tokens, for POST /v1/messages/count_tokens when no Anthropic provider
 * can count them. Pure functions, no I/O. The estimate is built to be
 * conservative: clients (Claude Code) compact their context from this
 * number, and an under-count makes the real request fail with "prompt is
 * too long", while an over-count only compacts a little early. */
#ifndef AIPROXY_PROVIDERS_TOKEN_ESTIMATE_H
#define AIPROXY_PROVIDERS_TOKEN_ESTIMATE_H

#include <stddef.h>
#include <stdint.h>

/* Fixed costs added to the texts' counts. */
#define TOKEN_EST_REQUEST 10          /* per request */
#define TOKEN_EST_MESSAGE 4           /* per message (role, turn markers) */
#define TOKEN_EST_BLOCK 10            /* per tool_use / tool_result / tool definition */
#define TOKEN_EST_IMAGE 1600          /* per image: the most an image costs after resizing */
#define TOKEN_EST_TOOLS_SYSTEM 500    /* the tool-use system prompt, once when tools are given */
#define TOKEN_EST_SERVER_TOOL 1000    /* a provider-defined tool (bash, web_search...) */
#define TOKEN_EST_DOCUMENT_URL 20000  /* a document we cannot see (url, file id) */
#define TOKEN_EST_MARGIN_PCT 10       /* headroom for newer tokenizers than the published one */

/* Tokens of one text, by character class: a letter run costs one token
 * per 4 letters when it looks like a word and more when it does not
 * (random identifiers, base64), each digit and each punctuation character
 * one, a whitespace run one (a single space before a word none: BPE merges
 * it into the word), each newline one, and every byte of a non-ASCII
 * character one (a byte-level tokenizer never needs more). No margin. */
int64_t token_estimate_text(const char *s, size_t len);

struct token_estimate {
    int64_t tokens;      /* the estimate: texts, fixed costs and the margin */
    int64_t text_tokens; /* the texts alone */
    int64_t messages;
    int64_t images;
    int64_t documents;
    int64_t tools;
};

/* Estimates the input tokens of a Messages request body (system, every
 * message block, tool definitions; max_tokens and other settings cost
 * nothing). Unknown block types are counted as their JSON text. Returns 0,
 * or -1 when the body is not a JSON object (then `out` is zeroed). */
int token_estimate_messages(const char *body, size_t len, struct token_estimate *out);

#endif
