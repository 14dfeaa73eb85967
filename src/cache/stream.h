/* stream: between a whole cached answer and a stream of chunks (SPEC
 * section 7). Pure: no I/O.
 *
 * The accumulator rebuilds the whole answer from an OpenAI stream (chat
 * chunks: role, content, refusal, tool_calls by index with their argument
 * fragments, finish_reason, per choice; completion chunks: text), so a
 * streamed answer can be stored once it completed and served later to a
 * non-streaming request. Replay does the reverse: it splits a stored
 * answer into chunks as a provider would send them. */
#ifndef AIPROXY_CACHE_STREAM_H
#define AIPROXY_CACHE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

struct cache_stream_acc;

/* completions: text_completion chunks (else chat.completion.chunk). The
 * accumulator's memory is on the heap (a long answer does not grow the
 * request's arena chunk by chunk): free it with cache_acc_free. */
struct cache_stream_acc *cache_acc_new(bool completions);
void cache_acc_free(struct cache_stream_acc *acc); /* NULL is ignored */

/* Feeds one chunk (the JSON of one `data:` event, [DONE] excluded).
 * Returns 0, or -1 when the chunk is not one the accumulator understands
 * (then the answer is not stored: cache_acc_finish returns NULL). A chunk
 * with an empty `choices` (the usage chunk) is accepted and ignored. An
 * answer past max_bytes (cache_acc_new's caller checks it with
 * cache_acc_bytes) is the caller's to give up. */
int cache_acc_feed(struct cache_stream_acc *acc, const char *json, size_t len);
size_t cache_acc_bytes(const struct cache_stream_acc *acc);

/* The whole answer: a "chat.completion" (or "text_completion") object with
 * id, created and model of the chunks, choices in index order (message
 * with role, content (null when there was none and there were tool
 * calls), tool_calls as whole objects, refusal when sent; finish_reason),
 * and usage {prompt_tokens, completion_tokens, total_tokens}. Returns NULL
 * when any chunk was refused or no chunk was fed. */
char *cache_acc_finish(struct cache_stream_acc *acc, struct arena *a, int64_t prompt_tokens,
                       int64_t completion_tokens, size_t *out_len);

/* Splits a stored whole answer (chat.completion or text_completion JSON)
 * into the chunks of a stream, calling emit with each chunk's JSON (no
 * "data: " framing, no [DONE]): per choice a first chunk with the role,
 * the content in pieces of about `piece` bytes (never splitting a UTF-8
 * sequence), each tool call (id, type, name, then its arguments), then a
 * chunk with the finish_reason. Every chunk carries `id` (the given one),
 * `object`, `created` and `model` of the answer. The usage chunk is left to
 * the caller. Returns the number of chunks, or -1 when the body is not such
 * an answer. */
int cache_replay(struct arena *a, const char *body, size_t len, bool completions, const char *id,
                 size_t piece, void (*emit)(void *ctx, const char *json, size_t len), void *ctx);

#endif
