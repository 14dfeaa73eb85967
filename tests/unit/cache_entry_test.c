/* cache_entry_test: the byte form of a cached answer (cache/entry.c).
 * Round trips (extreme integers, empty and NULL strings, a binary body
 * with NUL bytes inside) that give back the same bytes when encoded again;
 * the layout pinned byte for byte; and refusals, each decoded from a heap
 * copy of exactly its length so ASan sees any read past it: every
 * truncation, every length field changed, trailing bytes, wrong magic or
 * version, an unknown flag bit, a NUL inside a string other than the body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache/entry.h"
#include "core/arena.h"

static const char body_bytes[] = "{\"id\":\"x\"}\0\x01\xff tail"; /* NULs inside */
#define BODY_LEN (sizeof body_bytes - 1)

static struct cache_entry sample(void)
{
    return (struct cache_entry){
        .created_ms = 1718000000123,
        .expires_ms = INT64_MAX,
        .prompt_tokens = 12,
        .completion_tokens = 0,
        .cached_tokens = -1,
        .cost_nanos = INT64_MIN,
        .usage_estimated = true,
        .scope = "tenant:acme",
        .model = "gpt-4o",
        .endpoint = "chat",
        .provider = "openai-eu",
        .upstream_model = "gpt-4o-2024-08-06",
        .body = body_bytes,
        .body_len = BODY_LEN,
    };
}

/* Decodes from a heap copy of exactly `len` bytes (freed by the caller
 * through *copy). */
static int decode_copy(const char *blob, size_t len, struct cache_entry *out, char **copy)
{
    *copy = malloc(len ? len : 1);
    if (len) memcpy(*copy, blob, len);
    return cache_entry_decode(*copy, len, out);
}

static int decode_exact(const char *blob, size_t len)
{
    struct cache_entry e;
    char *copy;
    int rc = decode_copy(blob, len, &e, &copy);
    free(copy);
    return rc;
}

static void assert_same(const struct cache_entry *x, const struct cache_entry *y)
{
    assert_true(x->created_ms == y->created_ms);
    assert_true(x->expires_ms == y->expires_ms);
    assert_true(x->prompt_tokens == y->prompt_tokens);
    assert_true(x->completion_tokens == y->completion_tokens);
    assert_true(x->cached_tokens == y->cached_tokens);
    assert_true(x->cost_nanos == y->cost_nanos);
    assert_int_equal(x->usage_estimated, y->usage_estimated);
    assert_string_equal(x->scope, y->scope ? y->scope : "");
    assert_string_equal(x->model, y->model ? y->model : "");
    assert_string_equal(x->endpoint, y->endpoint ? y->endpoint : "");
    assert_string_equal(x->provider, y->provider ? y->provider : "");
    assert_string_equal(x->upstream_model, y->upstream_model ? y->upstream_model : "");
    size_t want_len = y->body ? y->body_len : 0;
    assert_int_equal(x->body_len, want_len);
    if (want_len) assert_memory_equal(x->body, y->body, want_len);
    assert_int_equal(x->body[x->body_len], '\0');
}

static void round_trip(const struct cache_entry *e)
{
    struct arena a;
    arena_init(&a);
    size_t len = 0;
    char *blob = cache_entry_encode(&a, e, &len);
    assert_non_null(blob);
    struct cache_entry d;
    char *copy;
    assert_int_equal(decode_copy(blob, len, &d, &copy), 0);
    assert_same(&d, e);
    /* the strings point into the blob */
    assert_true(d.body >= copy && d.body + d.body_len < copy + len);
    size_t len2 = 0;
    char *again = cache_entry_encode(&a, &d, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(again, blob, len);
    free(copy);
    arena_free(&a);
}

static void test_round_trip(void **state)
{
    struct cache_entry e = sample();
    round_trip(&e);
    e.usage_estimated = false;
    e.body_len = 0; /* a body pointer with no bytes */
    round_trip(&e);
    struct cache_entry empty = {.scope = "", .model = "", .endpoint = "", .provider = "",
                                .upstream_model = "", .body = ""};
    round_trip(&empty);
    struct cache_entry nulls = {0}; /* NULL strings encode as empty ones */
    nulls.body_len = 99;             /* ignored without a body */
    round_trip(&nulls);
}

/* The layout of entry.h, byte for byte. */
static void test_layout(void **state)
{
    struct arena a;
    arena_init(&a);
    struct cache_entry e = {.created_ms = 0x0102030405060708, .expires_ms = -2, .prompt_tokens = 3,
                            .usage_estimated = true, .scope = "s", .model = "mo",
                            .provider = "p", .upstream_model = "u", .body = "b\0c", .body_len = 3};
    size_t len = 0;
    char *blob = cache_entry_encode(&a, &e, &len);
    static const unsigned char want[] = {
        'A', 'I', 'P', 'C', 2,
        8, 7, 6, 5, 4, 3, 2, 1,                         /* created_ms */
        0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* expires_ms */
        3, 0, 0, 0, 0, 0, 0, 0,                         /* prompt_tokens */
        0, 0, 0, 0, 0, 0, 0, 0,                         /* completion_tokens */
        0, 0, 0, 0, 0, 0, 0, 0,                         /* cached_tokens */
        0, 0, 0, 0, 0, 0, 0, 0,                         /* cost_nanos */
        1,                                              /* flags */
        1, 0, 0, 0, 's', 0,                             /* scope */
        2, 0, 0, 0, 'm', 'o', 0,                        /* model */
        0, 0, 0, 0, 0,                                  /* endpoint (NULL) */
        1, 0, 0, 0, 'p', 0,                             /* provider */
        1, 0, 0, 0, 'u', 0,                             /* upstream_model */
        3, 0, 0, 0, 'b', 0, 'c', 0,                     /* body */
    };
    assert_int_equal(len, sizeof want);
    assert_memory_equal(blob, want, sizeof want);
    arena_free(&a);
}

static void test_truncations(void **state)
{
    struct arena a;
    arena_init(&a);
    struct cache_entry e = sample();
    size_t len = 0;
    char *blob = cache_entry_encode(&a, &e, &len);
    assert_int_equal(decode_exact(blob, len), 0);
    for (size_t k = 0; k < len; k++)
        if (decode_exact(blob, k) != -1) fail_msg("a blob cut to %zu of %zu bytes was accepted", k, len);
    struct cache_entry d;
    memset(&d, 0x5a, sizeof d);
    assert_int_equal(cache_entry_decode(NULL, 0, &d), -1);
    assert_null(d.body);
    arena_free(&a);
}

/* Offsets of the six length fields of an encoded entry (the body last). */
static void length_offsets(const char *blob, size_t off[6])
{
    size_t at = 4 + 1 + 6 * 8 + 1;
    for (int i = 0; i < 6; i++) {
        const unsigned char *p = (const unsigned char *)blob + at;
        off[i] = at;
        at += 4 + ((size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24) + 1;
    }
}

static void test_bad_lengths(void **state)
{
    struct arena a;
    arena_init(&a);
    struct cache_entry e = sample();
    size_t len = 0;
    char *blob = cache_entry_encode(&a, &e, &len);
    size_t off[6];
    length_offsets(blob, off);
    char *bad = malloc(len);
    for (int f = 0; f < 6; f++) {
        uint32_t was;
        memcpy(&was, blob + off[f], 4); /* the tests run little-endian */
        const uint32_t values[] = {was + 1, was - 1, was + 2, 0, 1, (uint32_t)len,
                                   (uint32_t)len - 1, UINT32_MAX, UINT32_MAX - 3, 0x80000000u};
        for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
            if (values[v] == was) continue;
            memcpy(bad, blob, len);
            memcpy(bad + off[f], &values[v], 4);
            if (decode_exact(bad, len) != -1)
                fail_msg("length %d set to %u (was %u) was accepted", f, values[v], was);
        }
        /* every single bit of the field flipped */
        for (int bit = 0; bit < 32; bit++) {
            memcpy(bad, blob, len);
            bad[off[f] + bit / 8] ^= (char)(1 << (bit % 8));
            if (decode_exact(bad, len) != -1) fail_msg("length %d bit %d flipped was accepted", f, bit);
        }
    }
    free(bad);
    arena_free(&a);
}

static void test_refusals(void **state)
{
    struct arena a;
    arena_init(&a);
    struct cache_entry e = sample();
    size_t len = 0;
    char *blob = cache_entry_encode(&a, &e, &len);
    char *bad = malloc(len + 8);

    /* trailing bytes */
    for (size_t extra = 1; extra <= 8; extra++) {
        memcpy(bad, blob, len);
        memset(bad + len, 0, extra);
        assert_int_equal(decode_exact(bad, len + extra), -1);
    }
    /* magic */
    for (int i = 0; i < 4; i++) {
        memcpy(bad, blob, len);
        bad[i] ^= 0x20;
        assert_int_equal(decode_exact(bad, len), -1);
    }
    /* version */
    const unsigned char versions[] = {0, 1, 3, 0xff};
    for (size_t i = 0; i < sizeof versions; i++) {
        memcpy(bad, blob, len);
        bad[4] = (char)versions[i];
        assert_int_equal(decode_exact(bad, len), -1);
    }
    /* flags: only bit 0 is known */
    size_t flags_at = 4 + 1 + 6 * 8;
    for (int bit = 1; bit < 8; bit++) {
        memcpy(bad, blob, len);
        bad[flags_at] = (char)(1 << bit);
        assert_int_equal(decode_exact(bad, len), -1);
    }
    /* a string's closing NUL, and a NUL inside a string other than the body */
    size_t off[6];
    length_offsets(blob, off);
    for (int f = 0; f < 6; f++) {
        size_t n = (size_t)(unsigned char)blob[off[f]]; /* all short here */
        memcpy(bad, blob, len);
        bad[off[f] + 4 + n] = 'x';
        assert_int_equal(decode_exact(bad, len), -1);
        if (f < 5) {
            memcpy(bad, blob, len);
            bad[off[f] + 4 + n / 2] = '\0';
            assert_int_equal(decode_exact(bad, len), -1);
        }
    }
    /* the body may hold NULs anywhere */
    memcpy(bad, blob, len);
    bad[off[5] + 4] = '\0';
    assert_int_equal(decode_exact(bad, len), 0);
    free(bad);
    arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),  cmocka_unit_test(test_layout),
        cmocka_unit_test(test_truncations), cmocka_unit_test(test_bad_lengths),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
