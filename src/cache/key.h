/* key: what identifies a cached answer (SPEC section 7). Pure: no I/O.
 *
 * The exact key is SHA-256 over the scope, the resolved model, the
 * endpoint and the request body canonicalised: parsed, object keys sorted
 * at every depth, no whitespace, and the top-level fields that do not
 * change the answer (`stream`, `stream_options`, `user`) left out. Two
 * bodies that differ only in key order, whitespace or those fields have
 * the same key; any other difference (a message, a parameter, a tool)
 * gives another.
 *
 * The semantic partition is the same hash over the body without the
 * conversation (`messages`, `prompt`, `input`, `system`): answers are only
 * compared by meaning with answers to requests that agree on everything
 * else (model, scope, endpoint, tools, parameters). The conversation's
 * text is returned separately, for the embedding. */
#ifndef AIPROXY_CACHE_KEY_H
#define AIPROXY_CACHE_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

#define CACHE_KEY_LEN 32

struct cache_key {
    uint8_t exact[CACHE_KEY_LEN];
    uint8_t partition[CACHE_KEY_LEN];
    /* The conversation as text, for the semantic step (arena): each
     * message as "role: text\n" (text parts of array contents joined, the
     * Anthropic-style top-level `system` first), or the completion
     * prompt(s); NULL when the body has none (embeddings, or no text). */
    char *text;
    size_t text_len;
    bool has_temperature;
    double temperature; /* valid when has_temperature */
    int64_t n;          /* `n` (choices asked), 1 when absent */
};

/* Builds the keys of `body` (a JSON object) under `scope`, `model` (the
 * resolved model) and `endpoint` (a short name: "chat", "completions",
 * "embeddings", "messages", "predict"). Returns 0, or -1 when the body is
 * not a JSON object that can be canonicalised (then nothing is cached).
 * Strings are hashed length-prefixed, so no choice of scope, model or
 * endpoint can collide with another. */
int cache_key_build(struct arena *a, const char *scope, const char *model, const char *endpoint,
                    const char *body, size_t len, struct cache_key *out);

/* The raw key: SHA-256 over scope, model, endpoint and the body's bytes
 * as they are, without parsing. A byte-identical repeat of a request finds
 * the canonical key through an alias stored under its raw key (the usual
 * case: one client sending the same bytes), so a hit costs no parse. */
void cache_key_raw(const char *scope, const char *model, const char *endpoint, const char *body,
                   size_t len, uint8_t out[CACHE_KEY_LEN]);

/* The canonical form of `body` (arena, NUL-terminated), as hashed into the
 * exact key; NULL when the body is not a JSON object. For tests and the
 * fuzz target. */
char *cache_canonical(struct arena *a, const char *body, size_t len, size_t *out_len);

#endif
