/* fuzz_scan: libFuzzer driver for api/scan. Runs scan_request for every
 * kind and scan_response over the input and checks what a success promises:
 * the model token range points at a quoted token inside the body, and the
 * response's close_off points at its final '}' with only whitespace after.
 * Each is run again with SCAN_WALK_ALL (no container skipped): the same
 * outcome, error and facts, byte for byte.
 * Build: clang -g -fsanitize=fuzzer,address,undefined -Isrc tests/fuzz/fuzz_scan.c
 *        src/api/scan.c src/core/alloc.c $(pkg-config --cflags --libs yajl) -lm */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "api/scan.h"

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static bool utf8_strict(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t c = p[i], min;
        size_t extra;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) extra = 1, min = 0x80, c &= 0x1F;
        else if ((c & 0xF0) == 0xE0) extra = 2, min = 0x800, c &= 0x0F;
        else if ((c & 0xF8) == 0xF0) extra = 3, min = 0x10000, c &= 0x07;
        else return false;
        if (n - i <= extra) return false;
        for (size_t j = 1; j <= extra; j++) {
            if ((p[i + j] & 0xC0) != 0x80) return false;
            c = (c << 6) | (p[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
        i += extra + 1;
    }
    return true;
}

/* Set when the input is an object yajl accepts and is strict UTF-8 as a
 * whole: then no request may be refused as invalid JSON. */
static bool must_parse;

static void check_request(enum scan_kind kind, const char *body, size_t len)
{
    struct req_facts f, f2;
    struct scan_error e, e2;

    int rc = scan_request(kind, body, len, &f, &e);
    /* skipping changes nothing */
    assert(scan_request_flags(kind, body, len, &f2, &e2, SCAN_WALK_ALL) == rc);
    if (rc != 0)
        assert(strcmp(e.message, e2.message) == 0 && strcmp(e.param, e2.param) == 0 &&
               e.invalid_json == e2.invalid_json);
    else
        assert(memcmp(&f, &f2, sizeof f) == 0);
    if (rc != 0) {
        assert(strlen(e.message) > 0 && strlen(e.message) < sizeof e.message);
        assert(strlen(e.param) < sizeof e.param);
        assert(!e.invalid_json || e.param[0] == '\0');
        assert(!(must_parse && e.invalid_json));
        return;
    }
    size_t mlen = strlen(f.model);
    assert(mlen > 0 && mlen <= SCAN_MODEL_MAX);
    for (size_t i = 0; i < mlen; i++) assert((unsigned char)f.model[i] >= 0x20 && f.model[i] != 0x7f);
    assert(f.model_len >= 2 && f.model_off < len && f.model_len <= len - f.model_off);
    assert(body[f.model_off] == '"' && body[f.model_off + f.model_len - 1] == '"');
    /* Without escapes the token is the model itself. */
    if (!memchr(body + f.model_off, '\\', f.model_len)) {
        assert(f.model_len - 2 == mlen);
        assert(memcmp(body + f.model_off + 1, f.model, mlen) == 0);
    }
    assert(f.root_open_off < f.model_off && body[f.root_open_off] == '{');
    assert(f.n >= 1 && f.n <= 128);
    assert(f.max_tokens == -1 || (f.max_tokens >= 1 && f.max_tokens <= 10000000));
    assert(scan_estimate_tokens(f.text_bytes) >= 0);
    if (kind == SCAN_EMBEDDINGS) assert(f.n_inputs >= 1);
}

static void check_response(const char *body, size_t len)
{
    struct resp_facts r, r2;

    int rc = scan_response(body, len, &r);
    assert(scan_response_flags(body, len, &r2, SCAN_WALK_ALL) == rc);
    if (rc == 0) assert(memcmp(&r, &r2, sizeof r) == 0);
    if (rc != 0) return;
    assert(r.close_off < len && body[r.close_off] == '}');
    for (size_t i = r.close_off + 1; i < len; i++)
        assert(body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n');
    assert(strlen(r.error_message) < sizeof r.error_message);
    assert(!r.choices_empty || r.has_choices);
    if (r.usage.present)
        assert(r.usage.prompt_tokens >= 0 && r.usage.completion_tokens >= 0 &&
               r.usage.total_tokens >= 0 && r.usage.cached_tokens >= 0 &&
               r.usage.cache_write_tokens >= 0);
    /* The object up to and including close_off is itself a valid body. */
    struct resp_facts again;
    assert(scan_response(body, r.close_off + 1, &again) == 0);
    assert(again.close_off == r.close_off);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    struct resp_facts r;

    must_parse = scan_response(body, size, &r) == 0 && utf8_strict(data, size);
    check_request(SCAN_CHAT, body, size);
    check_request(SCAN_COMPLETIONS, body, size);
    check_request(SCAN_EMBEDDINGS, body, size);
    check_response(body, size);
    return 0;
}
