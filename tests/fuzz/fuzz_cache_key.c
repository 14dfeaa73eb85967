// fuzz-sources: src/cache/key.c
/* fuzz_cache_key: libFuzzer driver for cache/key (the response cache's
 * keys). For any body: cache_canonical gives NULL or a JSON object without
 * a top-level stream, stream_options or user, holding no NUL, that
 * canonicalises to itself; cache_key_build accepts exactly the bodies
 * that have a canonical form, and the body and its canonical form get the
 * same keys, text, temperature and n (the key is a function of the
 * canonical form alone). */
#include <assert.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/key.h"
#include "core/arena.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    struct arena a;
    arena_init(&a);
    /* an exact-size copy, so ASan sees a read past the body */
    char *body = malloc(size ? size : 1);
    if (size) memcpy(body, data, size);

    size_t n = 0;
    char *c = cache_canonical(&a, body, size, &n);
    struct cache_key k;
    int rc = cache_key_build(&a, "scope", "model", "chat", body, size, &k);
    assert((rc == 0) == (c != NULL));
    if (rc == 0 && k.text) {
        assert(k.text_len > 0);
        assert(strlen(k.text) == k.text_len);
    }
    assert(k.n >= 1);
    if (c) {
        assert(strlen(c) == n);
        json_error_t e;
        json_t *v = json_loadb(c, n, 0, &e);
        assert(json_is_object(v));
        assert(!json_object_get(v, "stream"));
        assert(!json_object_get(v, "stream_options"));
        assert(!json_object_get(v, "user"));
        json_decref(v);

        size_t n2 = 0;
        char *c2 = cache_canonical(&a, c, n, &n2);
        assert(c2 && n2 == n && memcmp(c, c2, n) == 0);

        struct cache_key k2;
        assert(cache_key_build(&a, "scope", "model", "chat", c, n, &k2) == 0);
        assert(memcmp(k.exact, k2.exact, CACHE_KEY_LEN) == 0);
        assert(memcmp(k.partition, k2.partition, CACHE_KEY_LEN) == 0);
        assert((k.text == NULL) == (k2.text == NULL));
        if (k.text) assert(k.text_len == k2.text_len && memcmp(k.text, k2.text, k.text_len) == 0);
        assert(k.has_temperature == k2.has_temperature);
        if (k.has_temperature) assert(memcmp(&k.temperature, &k2.temperature, sizeof k.temperature) == 0);
        assert(k.n == k2.n);
        assert(memcmp(k.exact, k.partition, CACHE_KEY_LEN) != 0);
    }
    free(body);
    arena_free(&a);
    return 0;
}
