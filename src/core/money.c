/* money: parsing, printing and token arithmetic in integer nano-dollars. */
#include "core/money.h"

#include <stdio.h>

bool money_parse_usd(const char *s, size_t len, nanos_t *out)
{
    size_t i = 0;
    int64_t whole = 0, frac = 0;
    int frac_digits = 0;
    bool any = false, round_up = false;

    if (i < len && s[i] == '+') i++;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (whole > (INT64_MAX / NANOS_PER_USD - 9) / 10) return false;
        whole = whole * 10 + (s[i] - '0');
        any = true;
    }
    if (i < len && s[i] == '.') {
        i++;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
            if (frac_digits < 9) {
                frac = frac * 10 + (s[i] - '0');
                frac_digits++;
            } else if (frac_digits == 9) {
                round_up = s[i] >= '5';
                frac_digits++;
            }
            any = true;
        }
    }
    if (!any || i != len) return false;
    for (int d = frac_digits; d < 9; d++) frac *= 10;
    *out = whole * NANOS_PER_USD + frac + (round_up ? 1 : 0);
    return true;
}

size_t money_format_usd(nanos_t amount, char *buf, size_t cap)
{
    bool neg = amount < 0;
    uint64_t a = neg ? (uint64_t)(-(amount + 1)) + 1 : (uint64_t)amount;
    uint64_t whole = a / NANOS_PER_USD, frac = a % NANOS_PER_USD;
    int n;
    if (frac == 0) {
        n = snprintf(buf, cap, "%s%llu", neg ? "-" : "", (unsigned long long)whole);
    } else {
        char digits[16];
        snprintf(digits, sizeof digits, "%09llu", (unsigned long long)frac);
        int last = 8;
        while (last > 0 && digits[last] == '0') last--;
        digits[last + 1] = '\0';
        n = snprintf(buf, cap, "%s%llu.%s", neg ? "-" : "", (unsigned long long)whole, digits);
    }
    return n < 0 ? 0 : ((size_t)n < cap ? (size_t)n : cap - 1);
}

nanos_t money_cost_tokens(int64_t tokens, nanos_t price_per_1k)
{
    if (tokens <= 0 || price_per_1k <= 0) return 0;
    /* tokens * price can overflow int64 only for absurd inputs; saturate. */
    if (tokens > INT64_MAX / price_per_1k) return INT64_MAX;
    int64_t product = tokens * price_per_1k;
    return product / 1000 + (product % 1000 != 0);
}
