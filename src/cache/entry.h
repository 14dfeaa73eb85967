/* entry: a cached answer and its serialised form (the bytes kept in
 * memory and in Redis). Pure: no I/O.
 *
 * The blob is: magic "AIPC", a version byte, fixed little-endian int64
 * fields, then length-prefixed strings (each also NUL-terminated inside the
 * blob, so a decoded entry points into the blob without copying). Decoding
 * checks every length against the blob's size: a truncated or corrupted
 * blob (a Redis value written by another program, say) is refused, never
 * read past. */
#ifndef AIPROXY_CACHE_ENTRY_H
#define AIPROXY_CACHE_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

struct cache_entry {
    int64_t created_ms; /* unix ms when the answer was stored */
    int64_t expires_ms; /* unix ms */
    int64_t prompt_tokens, completion_tokens, cached_tokens;
    int64_t cost_nanos; /* what the answer cost when it was made: what a hit saves */
    bool usage_estimated;
    const char *scope;    /* the caller scope it belongs to */
    const char *model;    /* the resolved model (as routed) */
    const char *endpoint; /* see cache_key_build */
    const char *provider; /* the provider that answered */
    const char *upstream_model; /* the model id the provider answered with */
    const char *body;     /* the OpenAI-shaped answer, usage included, no x-aiproxy */
    size_t body_len;
};

/* Serialises `e` into the arena. */
char *cache_entry_encode(struct arena *a, const struct cache_entry *e, size_t *out_len);

/* Reads a blob; the strings of `out` point into `blob`, which must stay
 * alive. Returns 0, or -1 for anything malformed. */
int cache_entry_decode(const char *blob, size_t len, struct cache_entry *out);

#endif
