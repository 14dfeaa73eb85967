/* responses_internal: what the two halves of the Responses translator share
 * (inbound_responses.c: requests, whole answers, the Response object;
 * inbound_responses_stream.c: the typed event stream). Not an interface. */
#ifndef AIPROXY_PROVIDERS_RESPONSES_INTERNAL_H
#define AIPROXY_PROVIDERS_RESPONSES_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/jsonw.h"
#include "providers/responses.h"

struct responses_stream;

/* One request's translation state, all in the request's arena. JSON is kept
 * as text (jansson objects never outlive a call). */
struct responses_ctx {
    struct arena *a;
    const char *response_id;   /* "resp_..." */
    const char *id_suffix;     /* the response id without "resp_", for item ids */
    int64_t created_at;
    const char *model;         /* the request's model ("" when absent) */
    /* The request fields a Response echoes, as member lists ("k":v,...)
     * in the Response's order: before "model", after "output_text",
     * after "usage". */
    char *echo_head, *echo_mid, *echo_tail;
    char *history_items;       /* JSON array: the history's items */
    char *items;               /* JSON array: this request's input items */
    char *result;              /* the Response sent (completed or incomplete) */
    size_t result_len;
    char *conversation;        /* history_items + items + the output items */
    size_t conversation_len;
    char *turn;                /* items + the output items */
    size_t turn_len;
    struct responses_stream *stream;
};

/* A context for a stream or answer whose request went through no
 * responses_begin (defensive: the ops can be called with ctx NULL). */
struct responses_ctx *responses_ctx_default(struct arena *a, const char *request_id);

/* Writes the Responses usage object from an OpenAI chat usage object (may
 * be NULL: zeros). */
void responses_write_usage(struct jsonw *w, const json_t *chat_usage);

/* "completed", or "incomplete" with the reason, for an OpenAI finish_reason. */
const char *responses_status(const char *finish, const char **incomplete_reason);

/* Item ids derived from the response id and the item's output index. */
const char *responses_item_id(const struct responses_ctx *c, const char *prefix, size_t index);

/* What a Response object holds besides the request's echo: JSON texts. */
struct responses_parts {
    const char *status;
    const char *model;             /* NULL or "": the request's */
    const char *output;            /* the output array, NULL: [] */
    const char *output_text;       /* NULL: no output_text field */
    const char *usage;             /* the Responses usage object, NULL: null */
    const char *error;             /* the error object, NULL: null */
    const char *incomplete_reason; /* NULL: incomplete_details null */
    const char *meta;              /* the x-aiproxy object, NULL: none */
    size_t meta_len;
};

/* Writes the Response object. */
void responses_write(struct jsonw *w, const struct responses_ctx *c, const struct responses_parts *p);

/* Records a finished Response (completed or incomplete): its text for
 * responses_result and, with its `output` array's text, the conversation
 * to store. Keeps the pointers (arena texts). */
void responses_finish(struct responses_ctx *c, char *response, size_t len, const char *output,
                      size_t output_len);

/* The stream half of inbound_responses_ops (inbound_responses_stream.c). */
void *responses_stream_begin(struct arena *a, const char *request_id, void *ctx);
void responses_stream_chunk(void *state, const char *json, size_t len, inbound_emit_cb emit,
                            void *ctx);
void responses_stream_end(void *state, inbound_emit_cb emit, void *ctx);
void responses_stream_error(void *state, const char *error_json, size_t len, inbound_emit_cb emit,
                            void *ctx);

#endif
