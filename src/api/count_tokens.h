/* count_tokens: POST /v1/messages/count_tokens (Anthropic; SPEC section
 * 9). The body is validated as /v1/messages validates its own (without
 * max_tokens), the model is planned as a chat request would be, and when
 * the first candidate is an Anthropic provider the body goes to its
 * count_tokens (failing over to the next Anthropic candidates on a
 * connection error, 429 or 5xx); otherwise, or when they all fail, the
 * gateway answers its own estimate (providers/token_estimate.h), marked
 * with `x-aiproxy-estimated: true` and "x-aiproxy": {"estimated": true}.
 * It costs nothing: no budget reservation, no ledger record; the key's
 * request rate limits apply (the route authenticates like /v1/models). */
#ifndef AIPROXY_API_COUNT_TOKENS_H
#define AIPROXY_API_COUNT_TOKENS_H

struct http_request;

/* Answers asynchronously; errors are Anthropic-shaped (the dispatcher sets
 * the error format before authentication). */
void count_tokens_handle(struct http_request *req);

#endif
