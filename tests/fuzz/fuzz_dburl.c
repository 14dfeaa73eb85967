/* fuzz_dburl: libFuzzer driver for core/dburl (masking the password of
 * budget.cost_db URLs). For any input, with output buffers of every small
 * size: it terminates, the output is NUL-terminated inside its buffer and
 * is the input's prefix up to the password, then "***"; for a URL
 * dburl_unambiguous accepts, the password's bytes (as written) never follow
 * "user:" in the output.
 * fuzz-sources: src/core/dburl.c */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/dburl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    char *url = malloc(size + 1);
    memcpy(url, data, size);
    url[size] = '\0'; /* a NUL inside cuts the URL there, as a C string */
    size_t len = strlen(url);
    bool unambiguous = dburl_unambiguous(url);
    char raw[512];
    bool has_password = dburl_raw_password(url, raw, sizeof raw);
    size_t caps[] = {1, 2, 7, 16, 64, len + 1, 3 * len + 4};
    for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
        size_t cap = caps[k];
        char *out = malloc(cap);
        memset(out, 'X', cap);
        assert(dburl_masked(url, out, cap) == out);
        assert(memchr(out, '\0', cap) != NULL);
        if (has_password && cap == 3 * len + 4) { /* room for every mask */
            /* the prefix up to the password, then the mask */
            const char *from = strstr(url, "://");
            assert(from);
            from = strchr(from + 3, ':');
            assert(from);
            size_t at = (size_t)(from + 1 - url);
            assert(strncmp(out, url, at) == 0);
            assert(strncmp(out + at, "***", 3) == 0);
            if (unambiguous) assert(strncmp(out + at + 3, "@", 1) == 0);
        }
        free(out);
    }
    free(url);
    return 0;
}
