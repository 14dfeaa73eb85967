/* pricing: integer arithmetic over config prices (core/money.h). */
#include "budget/pricing.h"

#include "config/config.h"

nanos_t pricing_cached_in_price(const struct config_model *m)
{
    return m->has_cached_in_price ? m->price_cached_in_per_1k : m->price_in_per_1k;
}

nanos_t pricing_cache_write_price(const struct config_model *m)
{
    return m->has_cache_write_price ? m->price_cache_write_per_1k : m->price_in_per_1k;
}

/* a + b, saturating: money_cost_tokens saturates at INT64_MAX already. */
static nanos_t add_sat(nanos_t a, nanos_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

nanos_t pricing_tokens_cost(const struct config_model *m, int64_t prompt, int64_t cached,
                            int64_t cache_write, int64_t completion)
{
    if (prompt < 0) prompt = 0;
    if (completion < 0) completion = 0;
    nanos_t cost = money_cost_tokens(completion, m->price_out_per_1k);
    if (cached <= 0 && cache_write <= 0) /* the common case: no prompt cache */
        return add_sat(cost, money_cost_tokens(prompt, m->price_in_per_1k));
    if (cached < 0) cached = 0;
    if (cached > prompt) cached = prompt;
    if (cache_write < 0) cache_write = 0;
    if (cache_write > prompt - cached) cache_write = prompt - cached;
    cost = add_sat(cost, money_cost_tokens(prompt - cached - cache_write, m->price_in_per_1k));
    cost = add_sat(cost, money_cost_tokens(cached, pricing_cached_in_price(m)));
    return add_sat(cost, money_cost_tokens(cache_write, pricing_cache_write_price(m)));
}

nanos_t pricing_cost(const struct config_model *m, int64_t tokens_in, int64_t tokens_out)
{
    return add_sat(pricing_tokens_cost(m, tokens_in, 0, 0, tokens_out), m->price_per_generation);
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
    int64_t completion = pricing_completion_bound(p, max_tokens, n, embeddings);
    /* Priced as written to the cache when that costs more than plain input. */
    if (pricing_cache_write_price(m) > m->price_in_per_1k)
        return add_sat(pricing_tokens_cost(m, prompt_tokens, 0, prompt_tokens, completion),
                       m->price_per_generation);
    return pricing_cost(m, prompt_tokens, completion);
}

bool pricing_is_paid(const struct config_model *m)
{
    return m->price_in_per_1k > 0 || m->price_out_per_1k > 0 || m->price_per_generation > 0 ||
           (m->has_cached_in_price && m->price_cached_in_per_1k > 0) ||
           (m->has_cache_write_price && m->price_cache_write_per_1k > 0);
}
