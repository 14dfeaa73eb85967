/* pricing: what a request costs, in nano-dollars, from a model's prices
 * (cost_per_1k_tokens, or split input/output prices, the prompt cache's
 * read and write prices, plus cost_per_generation), and what it may cost
 * before it is sent (the estimate budgets reserve). Pure. */
#ifndef AIPROXY_BUDGET_PRICING_H
#define AIPROXY_BUDGET_PRICING_H

#include <stdbool.h>
#include <stdint.h>

#include "core/money.h"

struct config_model;
struct config_provider;

/* Cost of `tokens_in` prompt and `tokens_out` completion tokens, rounded
 * up per price so that accounting never under-charges, plus the model's
 * per-generation price once. */
nanos_t pricing_cost(const struct config_model *m, int64_t tokens_in, int64_t tokens_out);

/* The tokens' part of a cost with prompt caching (SPEC section 9), no
 * per-generation price: `prompt` counts every prompt token, the
 * `cached` ones read from the provider's prompt cache and the
 * `cache_write` ones written to it included (OpenAI's prompt_tokens
 * semantics). Each kind is priced and rounded up on its own:
 *   ceil((prompt - cached - cache_write) * in) + ceil(cached * cached_in)
 *   + ceil(cache_write * cache_write_price) + ceil(completion * out)
 * Counts that do not fit (cached + cache_write > prompt, negatives) are
 * clamped: cached first, then cache_write, to what the prompt holds. */
nanos_t pricing_tokens_cost(const struct config_model *m, int64_t prompt, int64_t cached,
                            int64_t cache_write, int64_t completion);

/* The model's price per 1k prompt tokens read from / written to the
 * provider's prompt cache: the configured one, else the input price. */
nanos_t pricing_cached_in_price(const struct config_model *m);
nanos_t pricing_cache_write_price(const struct config_model *m);

/* The largest completion a request may produce: `max_tokens` when the
 * client gave one (> 0), else the provider's max_tokens_default; times the
 * number of choices `n` (>= 1). Embeddings produce none. */
int64_t pricing_completion_bound(const struct config_provider *p, int64_t max_tokens, int64_t n,
                                 bool embeddings);

/* The estimate reserved before sending: `prompt_tokens` (estimated from
 * the text) at the higher of the input and cache-write prices (a prompt
 * may be written to the provider's cache, never billed above that), the
 * completion bound at the output price, and the per-generation price. */
nanos_t pricing_estimate(const struct config_model *m, const struct config_provider *p,
                         int64_t prompt_tokens, int64_t max_tokens, int64_t n, bool embeddings);

/* True when the model costs anything (a "paid provider" for alerts). */
bool pricing_is_paid(const struct config_model *m);

#endif
