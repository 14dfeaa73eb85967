/* responses: OpenAI's Responses API (POST /v1/responses) as a client-facing
 * format. A Responses request (plus the stored conversation it continues)
 * becomes an OpenAI chat request served by the normal flow through any
 * provider; the chat answer, whole or chunk by chunk, becomes a Response
 * object or the typed Responses event stream (response.created ...
 * response.completed, every event with its sequence_number). Pure
 * functions, no I/O: the store of responses is the api layer's
 * (api/responses_api.c); everything comes from the given arena. */
#ifndef AIPROXY_PROVIDERS_RESPONSES_H
#define AIPROXY_PROVIDERS_RESPONSES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "providers/inbound.h"

/* What the api layer needs to know of a request before translating it. */
struct responses_request {
    const char *model;                /* as given ("" when absent: the scan answers) */
    const char *previous_response_id; /* NULL when none */
    bool stream;
    bool store; /* default true */
    const void *doc; /* the parsed body (responses_parse's, released with its
                        arena): responses_referenced_in and
                        responses_begin_parsed read it, not the text */
};

/* Reads the request's top-level fields (validating the body is a JSON
 * object and the types of these fields). Returns 0, or -1 with `err` (a 400). */
int responses_parse(struct arena *a, const char *body, size_t len, struct responses_request *info,
                    struct inbound_error *err);

struct responses_ctx;

/* Translates the request. `history` is the JSON text of an array of
 * Responses items (the earlier turns' input and output items, in order, as
 * responses_conversation returned them), NULL/0 when the request continues
 * nothing. `response_id` ("resp_...") and `created_at` (unix seconds) are
 * the new response's. Writes the chat completions body to chat_body and
 * returns the context the answer side needs (inbound_responses_ops' ctx),
 * or NULL with `err` (a 400 for the client). */
struct responses_ctx *responses_begin(struct arena *a, const char *body, size_t len,
                                      const char *history, size_t history_len,
                                      const char *response_id, int64_t created_at,
                                      char **chat_body, size_t *chat_len,
                                      struct inbound_error *err);

/* The ids of the stored responses whose items the request's input names
 * by item_reference (the Vercel AI SDK, with store on, refers to an
 * earlier assistant message by its id instead of resending it). Item ids
 * this translator makes are "msg_<s>_<n>" / "fc_<s>_<n>" for the response
 * "resp_<s>", so the response follows from the id. *ids (arena) gets *n
 * distinct ids, none for an unreadable body. Returns 0. */
int responses_referenced(struct arena *a, const char *body, size_t len, const char ***ids,
                         size_t *n);

/* responses_referenced for a body responses_parse read (0 ids without one). */
int responses_referenced_in(struct arena *a, const struct responses_request *info,
                            const char ***ids, size_t *n);

/* responses_begin, with `refs`: the JSON text of an array whose elements
 * are items or arrays of items (e.g. "[" conv1 "," conv2 "]", the stored
 * conversations of the responses responses_referenced named), where
 * item_reference items are looked up after the history. A reference
 * found in neither is a 400 naming input[i].id. NULL/0: none. */
struct responses_ctx *responses_begin_refs(struct arena *a, const char *body, size_t len,
                                           const char *history, size_t history_len,
                                           const char *refs, size_t refs_len,
                                           const char *response_id, int64_t created_at,
                                           char **chat_body, size_t *chat_len,
                                           struct inbound_error *err);

/* responses_begin_refs for a body responses_parse read (without parsing it
 * again); NULL with err when it has none. */
struct responses_ctx *responses_begin_parsed(struct arena *a, const struct responses_request *info,
                                             const char *history, size_t history_len,
                                             const char *refs, size_t refs_len,
                                             const char *response_id, int64_t created_at,
                                             char **chat_body, size_t *chat_len,
                                             struct inbound_error *err);

/* The ops for the proxy: response_from_openai and stream_* take the
 * context from responses_begin. request_to_openai is NULL (responses_begin
 * replaces it). */
extern const struct inbound_ops inbound_responses_ops;

/* Once the answer was translated (response_from_openai returned 0, or the
 * stream ended with response.completed or response.incomplete): the
 * Response object as sent (JSON text), NULL before that or after a failure. */
const char *responses_result(const struct responses_ctx *c, size_t *len);

/* Once the answer was translated: the conversation to store for a later
 * previous_response_id (JSON array text: history, this request's input
 * items, this response's output items), NULL before that. */
const char *responses_conversation(const struct responses_ctx *c, size_t *len);

/* Once the answer was translated: this turn alone (this request's input
 * items and this response's output items, a JSON array text): what the
 * store keeps per response, the conversation being the turns along the
 * chain of previous ids. NULL before that. */
const char *responses_turn(const struct responses_ctx *c, size_t *len);

#endif
