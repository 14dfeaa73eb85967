/* pricing: what a request costs, in nano-dollars, from a model's prices
 * (cost_per_1k_tokens, or split input/output prices, plus
 * cost_per_generation), and what it may cost before it is sent (the
 * estimate budgets reserve). Pure. */
#ifndef AIPROXY_BUDGET_PRICING_H
#define AIPROXY_BUDGET_PRICING_H

#include <stdbool.h>
#include <stdint.h>

#include "core/money.h"

struct config_model;
struct config_provider;

/* Cost of `tokens_in` prompt and `tokens_out` completion tokens, rounded
 * up per price so that accounting never under-charges. */
nanos_t pricing_cost(const struct config_model *m, int64_t tokens_in, int64_t tokens_out);

/* The largest completion a request may produce: `max_tokens` when the
 * client gave one (> 0), else the provider's max_tokens_default; times the
 * number of choices `n` (>= 1). Embeddings produce none. */
int64_t pricing_completion_bound(const struct config_provider *p, int64_t max_tokens, int64_t n,
                                 bool embeddings);

/* The estimate reserved before sending: pricing_cost of `prompt_tokens`
 * (estimated from the text) and the completion bound. */
nanos_t pricing_estimate(const struct config_model *m, const struct config_provider *p,
                         int64_t prompt_tokens, int64_t max_tokens, int64_t n, bool embeddings);

/* True when the model costs anything (a "paid provider" for alerts). */
bool pricing_is_paid(const struct config_model *m);

#endif
