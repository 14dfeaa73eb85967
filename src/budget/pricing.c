/* pricing: integer arithmetic over config prices (core/money.h). */
#include "budget/pricing.h"

#include "config/config.h"

nanos_t pricing_cost(const struct config_model *m, int64_t tokens_in, int64_t tokens_out)
{
    if (tokens_in < 0) tokens_in = 0;
    if (tokens_out < 0) tokens_out = 0;
    return money_cost_tokens(tokens_in, m->price_in_per_1k) +
           money_cost_tokens(tokens_out, m->price_out_per_1k) + m->price_per_generation;
}

int64_t pricing_completion_bound(const struct config_provider *p, int64_t max_tokens, int64_t n,
                                 bool embeddings)
{
    if (embeddings) return 0;
    int64_t per = max_tokens > 0 ? max_tokens : (p ? p->max_tokens_default : 0);
    if (per < 0) per = 0;
    if (n < 1) n = 1;
    return per * n;
}

nanos_t pricing_estimate(const struct config_model *m, const struct config_provider *p,
                         int64_t prompt_tokens, int64_t max_tokens, int64_t n, bool embeddings)
{
    return pricing_cost(m, prompt_tokens, pricing_completion_bound(p, max_tokens, n, embeddings));
}

bool pricing_is_paid(const struct config_model *m)
{
    return m->price_in_per_1k > 0 || m->price_out_per_1k > 0 || m->price_per_generation > 0;
}
