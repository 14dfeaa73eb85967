/* money: parsing, printing and token arithmetic in integer nano-dollars. */
#include "core/money.h"

#include <string.h>

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
    /* Built by hand (it runs for every request): sign, whole dollars, and
     * the nine-digit fraction with its trailing zeros trimmed. */
    char tmp[40];
    char *end = tmp + sizeof tmp, *p = end;
    bool neg = amount < 0;
    uint64_t a = neg ? (uint64_t)0 - (uint64_t)amount : (uint64_t)amount;
    uint64_t whole = a / NANOS_PER_USD, frac = a % NANOS_PER_USD;
    if (frac) {
        char digits[9];
        for (int i = 8; i >= 0; i--, frac /= 10) digits[i] = (char)('0' + frac % 10);
        int last = 8;
        while (digits[last] == '0') last--;
        for (int i = last; i >= 0; i--) *--p = digits[i];
        *--p = '.';
    }
    do {
        *--p = (char)('0' + whole % 10);
        whole /= 10;
    } while (whole);
    if (neg) *--p = '-';
    size_t n = (size_t)(end - p);
    if (cap == 0) return 0;
    if (n >= cap) n = cap - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return n;
}

nanos_t money_cost_tokens(int64_t tokens, nanos_t price_per_1k)
{
    if (tokens <= 0 || price_per_1k <= 0) return 0;
    /* tokens * price can overflow int64 only for absurd inputs; saturate. */
    if (tokens > INT64_MAX / price_per_1k) return INT64_MAX;
    int64_t product = tokens * price_per_1k;
    return product / 1000 + (product % 1000 != 0);
}
