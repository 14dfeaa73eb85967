// fuzz-sources: src/providers/token_estimate.c
/* fuzz_token_estimate: libFuzzer driver for the count_tokens estimator.
 * Any bytes as a Messages request body, and as one text: never a crash,
 * and an estimate is never negative, and never below the text count of
 * the same bytes' string values it walked. */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "providers/token_estimate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t t = token_estimate_text((const char *)data, size);
    assert(t >= 0 && (size_t)t <= size);
    struct token_estimate e;
    if (token_estimate_messages((const char *)data, size, &e) == 0) {
        assert(e.text_tokens >= 0);
        assert(e.tokens >= e.text_tokens + TOKEN_EST_REQUEST);
        assert(e.messages >= 0 && e.images >= 0 && e.documents >= 0 && e.tools >= 0);
    } else {
        assert(e.tokens == 0);
    }
    return 0;
}
