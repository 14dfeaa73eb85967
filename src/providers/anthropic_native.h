/* anthropic_native: what the gateway sends an Anthropic provider on an
 * Anthropic client's behalf that the OpenAI translation has no place for
 * (Claude Code's gateway contract): the client's anthropic-version and
 * anthropic-beta headers, the Messages fields OpenAI chat cannot carry
 * (thinking, context_management, metadata, service_tier, top_k), and the
 * POST /v1/messages/count_tokens request. Pure functions, no I/O. */
#ifndef AIPROXY_PROVIDERS_ANTHROPIC_NATIVE_H
#define AIPROXY_PROVIDERS_ANTHROPIC_NATIVE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/arena.h"
#include "providers/provider.h"

/* The default anthropic-version, when the client gave none. */
#define ANTHROPIC_DEFAULT_VERSION "2023-06-01"

/* Carried beside the OpenAI translation of a /v1/messages request, in
 * provider_call.anthropic, to the Anthropic adapter; every other adapter
 * ignores it, so these fields and headers are dropped for them (rather than
 * being sent in a body they would refuse). All arena-owned. */
struct anthropic_passthrough {
    const char *version; /* the client's anthropic-version; NULL: the default */
    const char *beta;    /* the client's anthropic-beta; NULL: none */
    const char *fields;  /* a JSON object of Messages fields to set; NULL: none */
};

/* The pass-through part of a client's Messages body: a JSON object (text,
 * arena) of the top-level fields named above that it holds, or NULL when
 * it holds none (or is not a JSON object). */
const char *anthropic_passthrough_fields(struct arena *a, const char *body, size_t len);

/* The request headers for an Anthropic provider (arena): x-api-key,
 * anthropic-version (the client's when given and sane, else the default),
 * the client's anthropic-beta when given, content-type and accept. */
char *anthropic_headers(struct arena *a, const char *api_key,
                        const struct anthropic_passthrough *pt, bool stream);

/* Sets the pass-through fields on a translated Messages body `out`
 * (replacing what the translation put there, e.g. metadata). `thinking` is
 * left out when the conversation's last assistant turn holds a tool_use:
 * the translated history has no thinking blocks, and Anthropic refuses a
 * tool loop with thinking on whose last assistant turn does not start
 * with one. */
void anthropic_apply_passthrough(json_t *out, const struct anthropic_passthrough *pt);

/* Builds POST {endpoint}/messages/count_tokens from a client's count_tokens
 * body (a Messages request without max_tokens): the model replaced by the
 * upstream id, max_tokens and stream removed, everything else as the client
 * sent it; headers as anthropic_headers. Returns 0, or -1 with `err`. */
int anthropic_count_tokens_prepare(const struct provider_call *call, const char *body, size_t len,
                                   const struct anthropic_passthrough *pt,
                                   struct provider_request *out, char *err, size_t err_cap);

/* Reads a count_tokens answer: its input_tokens (>= 0). Returns 0, or -1
 * when the body is not such an answer. */
int anthropic_count_tokens_read(const char *body, size_t len, long long *input_tokens);

#endif
