/* money: USD as integer nano-dollars (1e-9 USD) from config text to ledger.
 * Floating point never touches an amount; USD decimals are parsed and printed
 * as text. */
#ifndef AIPROXY_CORE_MONEY_H
#define AIPROXY_CORE_MONEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int64_t nanos_t; /* nano-dollars */

#define NANOS_PER_USD 1000000000LL

/* Parses a non-negative decimal USD amount ("0.0003", "100", "1e-3" is
 * refused) into nano-dollars, rounding half up past the 9th decimal.
 * Returns false on syntax error or overflow. */
bool money_parse_usd(const char *text, size_t len, nanos_t *out);

/* Writes `amount` as a JSON number in USD ("0.000021", "12.5", "0") into buf,
 * trailing zeros trimmed. Returns the length written (buf needs 32 bytes). */
size_t money_format_usd(nanos_t amount, char *buf, size_t cap);

/* Cost of `tokens` at `price_per_1k` nano-dollars per 1000 tokens, rounded
 * up to the next nano-dollar so that accounting never under-charges. */
nanos_t money_cost_tokens(int64_t tokens, nanos_t price_per_1k);

#endif
