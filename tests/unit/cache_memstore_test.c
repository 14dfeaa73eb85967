/* cache_memstore_test: the in-memory response cache (cache/memstore.c):
 * put/get round trip (the copy lands in the caller's arena), replacing an
 * entry, expiry (a get at or after expires_ms is a miss counted as
 * expired; a put needing room takes expired entries first), LRU order in
 * a one-shard store (a touched entry survives the evictions that take its
 * older neighbours), the byte bound over 10,000 random puts (stats.bytes
 * never above max_bytes, evictions counted), an entry larger than a
 * shard's budget refused, remove, clear with and without a match
 * function, and four threads doing random get/put/remove on a small and a
 * sharded store with every hit's content checked and the stats consistent
 * at the end. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cache/memstore.h"
#include "core/alloc.h"
#include "core/arena.h"

#define KB ((size_t)1 << 10)
#define MB ((size_t)1 << 20)
#define FOREVER INT64_MAX

/* xorshift64*: a reproducible stream per test or thread. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

/* A SHA-256-like key for number n: spread over every byte. */
static void make_key(uint8_t key[32], uint64_t n)
{
    uint64_t s = n * UINT64_C(0x9E3779B97F4A7C15) + 1;
    for (int i = 0; i < 4; i++) {
        uint64_t w = rnd(&s);
        memcpy(key + 8 * i, &w, 8);
    }
}

/* A blob whose bytes are derived from (n, len), so a torn or wrong copy is
 * seen. */
static char *make_blob(uint64_t n, size_t len)
{
    char *b = xmalloc(len ? len : 1);
    for (size_t i = 0; i < len; i++) b[i] = (char)('a' + (n * 7 + i) % 26);
    return b;
}

static bool blob_ok(uint64_t n, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (b[i] != (char)('a' + (n * 7 + i) % 26)) return false;
    return true;
}

static void put_n(struct cache_mem *m, uint64_t n, size_t len, int64_t expires)
{
    uint8_t key[32];
    make_key(key, n);
    char *b = make_blob(n, len);
    assert_true(cache_mem_put(m, key, b, len, expires));
    free(b);
}

/* Whether entry n is there (touching it), its content checked. */
static bool has_n(struct cache_mem *m, uint64_t n, int64_t now)
{
    uint8_t key[32];
    make_key(key, n);
    struct arena a;
    arena_init(&a);
    char *b = NULL;
    size_t len = 0;
    bool hit = cache_mem_get(m, key, now, &a, &b, &len);
    if (hit) {
        assert_non_null(b);
        assert_true(blob_ok(n, b, len));
        assert_int_equal(b[len], '\0');
    }
    arena_free(&a);
    return hit;
}

static struct cache_mem_stats stats(struct cache_mem *m)
{
    struct cache_mem_stats st;
    cache_mem_stats_get(m, &st);
    return st;
}

static void test_round_trip(void **state)
{
    struct cache_mem *m = cache_mem_new(MB);
    uint8_t key[32], other[32];
    make_key(key, 1);
    make_key(other, 2);
    const char body[] = "{\"id\":\"chatcmpl-1\",\"choices\":[]}";
    assert_true(cache_mem_put(m, key, body, sizeof body - 1, FOREVER));

    struct arena a;
    arena_init(&a);
    char *b;
    size_t len;
    assert_true(cache_mem_get(m, key, 0, &a, &b, &len));
    assert_int_equal(len, sizeof body - 1);
    assert_memory_equal(b, body, len);
    assert_false(cache_mem_get(m, other, 0, &a, &b, &len));
    assert_null(b);
    assert_int_equal(len, 0);

    /* An empty blob is a value like any other. */
    assert_true(cache_mem_put(m, other, "", 0, FOREVER));
    assert_true(cache_mem_get(m, other, 0, &a, &b, &len));
    assert_int_equal(len, 0);
    arena_free(&a);

    struct cache_mem_stats st = stats(m);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.max_bytes, MB);
    assert_true(st.bytes > sizeof body && st.bytes <= MB);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.expired, 0);
    cache_mem_free(m);
    cache_mem_free(NULL);
}

static void test_replace(void **state)
{
    struct cache_mem *m = cache_mem_new(MB);
    uint8_t key[32];
    make_key(key, 7);
    assert_true(cache_mem_put(m, key, "first answer", 12, FOREVER));
    uint64_t small = stats(m).bytes;
    char *big = make_blob(3, 5000);
    assert_true(cache_mem_put(m, key, big, 5000, 100));

    struct arena a;
    arena_init(&a);
    char *b;
    size_t len;
    assert_true(cache_mem_get(m, key, 99, &a, &b, &len));
    assert_int_equal(len, 5000);
    assert_memory_equal(b, big, 5000);
    struct cache_mem_stats st = stats(m);
    assert_int_equal(st.entries, 1);
    assert_true(st.bytes > small + 4900);
    assert_int_equal(st.evictions, 0);

    /* The replacement's expiry is the one that counts. */
    assert_false(cache_mem_get(m, key, 100, &a, &b, &len));
    assert_true(cache_mem_put(m, key, "x", 1, FOREVER));
    assert_int_equal(stats(m).bytes, small);
    arena_free(&a);
    free(big);
    cache_mem_free(m);
}

static void test_expiry(void **state)
{
    struct cache_mem *m = cache_mem_new(MB);
    put_n(m, 1, 100, 1000);
    put_n(m, 2, 100, 2000);
    assert_true(has_n(m, 1, 999));
    assert_int_equal(stats(m).expired, 0);
    assert_false(has_n(m, 1, 1000)); /* expires_ms <= now: gone */
    struct cache_mem_stats st = stats(m);
    assert_int_equal(st.expired, 1);
    assert_int_equal(st.entries, 1);
    assert_false(has_n(m, 1, 1000)); /* absent now, not expired twice */
    assert_int_equal(stats(m).expired, 1);
    assert_true(has_n(m, 2, 1500));
    assert_false(has_n(m, 2, 5000));
    st = stats(m);
    assert_int_equal(st.expired, 2);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.evictions, 0);
    cache_mem_free(m);
}

/* A put that needs room takes expired entries (as expiries) before live
 * ones (as evictions). */
static void test_expired_go_first(void **state)
{
    struct cache_mem *m = cache_mem_new(64 * KB);
    uint64_t n = 0;
    while (stats(m).evictions == 0) {
        put_n(m, n, 1000, n % 2 ? 500 : FOREVER);
        n++;
    }
    uint64_t cap = stats(m).entries;
    assert_false(has_n(m, 1000000, 600)); /* tells the store the time */
    put_n(m, n++, 1000, FOREVER);
    struct cache_mem_stats st = stats(m);
    assert_true(st.expired >= 1);
    assert_int_equal(st.evictions, 1);
    assert_true(st.entries <= cap);
    cache_mem_free(m);
}

/* One shard below 4 MB: exact LRU. */
static void test_lru_order(void **state)
{
    struct cache_mem *m = cache_mem_new(64 * KB);
    uint64_t n = 0;
    while (stats(m).evictions == 0) put_n(m, n++, 1000, FOREVER);
    /* The first put that needed room took entry 0, the oldest. */
    assert_int_equal(stats(m).evictions, 1);
    uint64_t cap = stats(m).entries;
    assert_int_equal(cap, n - 1);
    assert_true(cap > 30);

    /* Most recent first: n-1 ... 2 1; touching 1 makes it the newest. */
    assert_true(has_n(m, 1, 0));
    for (uint64_t i = 0; i < cap - 1; i++) put_n(m, n + i, 1000, FOREVER);
    /* Those cap-1 puts took 2 .. n-1, the least recently used, not 1. */
    struct cache_mem_stats st = stats(m);
    assert_int_equal(st.evictions, cap);
    assert_int_equal(st.entries, cap);
    for (uint64_t i = 0; i < n; i++) assert_int_equal(has_n(m, i, 0), i == 1);
    for (uint64_t i = 0; i < cap - 1; i++) assert_true(has_n(m, n + i, 0));

    /* A bigger entry takes as many of the oldest as it needs. */
    uint64_t before = stats(m).evictions;
    put_n(m, 999999, 5500, FOREVER);
    st = stats(m);
    assert_true(st.evictions - before >= 5);
    assert_true(has_n(m, 999999, 0));
    cache_mem_free(m);
}

static void check_bound(size_t max_bytes, uint64_t seed)
{
    struct cache_mem *m = cache_mem_new(max_bytes);
    uint64_t s = seed;
    size_t refused = 0;
    char *b = make_blob(0, max_bytes);
    for (uint64_t i = 0; i < 10000; i++) {
        /* mostly small answers, some large, a few over a shard's budget */
        size_t len = rnd(&s) % 8 == 0 ? rnd(&s) % (max_bytes + 1) : rnd(&s) % 4000;
        uint8_t key[32];
        make_key(key, rnd(&s) % 3000); /* some puts replace */
        if (!cache_mem_put(m, key, b, len, FOREVER)) refused++;
        struct cache_mem_stats st = stats(m);
        if (st.bytes > max_bytes) fail_msg("put %llu: %llu bytes > %zu", (unsigned long long)i,
                                           (unsigned long long)st.bytes, max_bytes);
    }
    free(b);
    struct cache_mem_stats st = stats(m);
    assert_true(st.evictions > 100);
    assert_true(st.entries > 0);
    assert_true(refused > 0);
    /* Counted bytes are at least the blobs they hold. */
    assert_true(st.bytes >= st.entries * 64);
    assert_int_equal(cache_mem_clear(m, NULL, NULL), st.entries);
    st = stats(m);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    cache_mem_free(m);
}

static void test_byte_bound(void **state)
{
    check_bound(256 * KB, 1);   /* one shard */
    check_bound(3 * MB, 2);     /* one shard */
    check_bound(8 * MB, 3);     /* eight shards of 1 MB */
    check_bound(8 * MB + 5, 4); /* budgets that do not divide evenly */
}

static void test_too_big(void **state)
{
    struct cache_mem *m = cache_mem_new(64 * KB);
    uint8_t key[32];
    make_key(key, 1);
    char *b = make_blob(1, 64 * KB);
    assert_false(cache_mem_put(m, key, b, 64 * KB, FOREVER));
    assert_false(cache_mem_put(m, key, b, SIZE_MAX / 2, FOREVER)); /* no overflow */
    assert_int_equal(stats(m).entries, 0);
    assert_int_equal(stats(m).bytes, 0);
    assert_true(cache_mem_put(m, key, b, 60 * KB, FOREVER));
    /* A refused put leaves the older entry as it was. */
    assert_false(cache_mem_put(m, key, b, 64 * KB, FOREVER));
    assert_true(has_n(m, 1, 0));
    free(b);
    cache_mem_free(m);

    /* Sharded: the bound is the shard's budget, not the store's. */
    m = cache_mem_new(8 * MB);
    b = make_blob(1, 2 * MB);
    assert_false(cache_mem_put(m, key, b, 2 * MB, FOREVER));
    assert_true(cache_mem_put(m, key, b, MB / 2, FOREVER));
    free(b);
    cache_mem_free(m);

    /* A store too small for anything refuses everything. */
    m = cache_mem_new(100);
    assert_false(cache_mem_put(m, key, "x", 1, FOREVER));
    assert_int_equal(stats(m).bytes, 0);
    cache_mem_free(m);
    m = cache_mem_new(0);
    assert_false(cache_mem_put(m, key, "", 0, FOREVER));
    cache_mem_free(m);
}

static void test_remove(void **state)
{
    struct cache_mem *m = cache_mem_new(MB);
    for (uint64_t i = 0; i < 100; i++) put_n(m, i, 50, FOREVER);
    uint8_t key[32];
    make_key(key, 42);
    assert_true(cache_mem_remove(m, key));
    assert_false(has_n(m, 42, 0));
    assert_false(cache_mem_remove(m, key));
    assert_true(has_n(m, 41, 0));
    assert_true(has_n(m, 43, 0));
    assert_int_equal(stats(m).entries, 99);
    for (uint64_t i = 0; i < 100; i++) {
        make_key(key, i);
        assert_int_equal(cache_mem_remove(m, key), i != 42);
    }
    struct cache_mem_stats st = stats(m);
    assert_int_equal(st.entries, 0);
    assert_true(st.bytes < 1024); /* only the shrunk table is left */
    make_key(key, 5);
    struct cache_mem *empty = cache_mem_new(MB);
    assert_false(cache_mem_remove(empty, key)); /* no table yet */
    assert_false(has_n(empty, 5, 0));
    cache_mem_free(empty);
    cache_mem_free(m);
}

static bool starts_with(const char *blob, size_t len, void *arg)
{
    const char *prefix = arg;
    size_t n = strlen(prefix);
    return len >= n && memcmp(blob, prefix, n) == 0;
}

static void test_clear(void **state)
{
    struct cache_mem *m = cache_mem_new(16 * MB); /* sixteen shards */
    uint8_t key[32];
    for (uint64_t i = 0; i < 300; i++) {
        make_key(key, i);
        const char *blob = i % 3 == 0 ? "tenant-a:answer" : "tenant-b:answer";
        assert_true(cache_mem_put(m, key, blob, strlen(blob), FOREVER));
    }
    assert_int_equal(cache_mem_clear(m, starts_with, "tenant-a:"), 100);
    struct arena a;
    arena_init(&a);
    for (uint64_t i = 0; i < 300; i++) {
        make_key(key, i);
        char *b;
        size_t len;
        assert_int_equal(cache_mem_get(m, key, 0, &a, &b, &len), i % 3 != 0);
    }
    arena_free(&a);
    assert_int_equal(cache_mem_clear(m, starts_with, "tenant-a:"), 0);
    assert_int_equal(stats(m).entries, 200);
    assert_int_equal(stats(m).evictions, 0);
    assert_int_equal(cache_mem_clear(m, NULL, NULL), 200);
    struct cache_mem_stats st = stats(m);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    /* Usable after a clear. */
    put_n(m, 1, 10, FOREVER);
    assert_true(has_n(m, 1, 0));
    cache_mem_free(m);
}

/* ---- threads ---- */

struct worker {
    struct cache_mem *m;
    uint64_t keyspace;
    size_t max_len;
    uint64_t seed;
    int64_t start_us;
    uint64_t gets, hits, puts, refused, torn;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    struct arena a;
    arena_init(&a);
    uint64_t s = w->seed;
    char *buf = xmalloc(16 * KB);
    int64_t t;
    while ((t = now_us() - w->start_us) < 500000) {
        int64_t now_ms = t / 1000;
        for (int burst = 0; burst < 64; burst++) {
            uint64_t r = rnd(&s);
            uint64_t n = r % w->keyspace;
            uint8_t key[32];
            make_key(key, n);
            unsigned op = (unsigned)(r >> 32) % 10;
            if (op < 6) {
                char *b;
                size_t len;
                w->gets++;
                if (cache_mem_get(w->m, key, now_ms, &a, &b, &len)) {
                    w->hits++;
                    if (!blob_ok(n, b, len)) w->torn++; /* asserted in the main thread */
                }
            } else if (op < 9) {
                size_t len = (size_t)(rnd(&s) % w->max_len);
                for (size_t i = 0; i < len; i++) buf[i] = (char)('a' + (n * 7 + i) % 26);
                w->puts++;
                if (!cache_mem_put(w->m, key, buf, len, now_ms + (int64_t)(rnd(&s) % 300)))
                    w->refused++;
            } else {
                cache_mem_remove(w->m, key);
            }
        }
        arena_free(&a);
    }
    free(buf);
    return NULL;
}

static void run_threads(size_t max_bytes, uint64_t keyspace, size_t max_len)
{
    struct cache_mem *m = cache_mem_new(max_bytes);
    struct worker w[4];
    pthread_t th[4];
    int64_t start = now_us();
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.m = m,
                               .keyspace = keyspace,
                               .max_len = max_len,
                               .seed = 0x1234567ULL * (uint64_t)(i + 1) + max_bytes,
                               .start_us = start};
        assert_int_equal(pthread_create(&th[i], NULL, run_worker, &w[i]), 0);
    }
    /* The stats are read while the workers run. */
    for (int i = 0; i < 20; i++) {
        struct cache_mem_stats st = stats(m);
        assert_true(st.bytes <= max_bytes);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    uint64_t gets = 0, hits = 0, puts = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        gets += w[i].gets;
        hits += w[i].hits;
        puts += w[i].puts;
        assert_int_equal(w[i].torn, 0);
    }
    struct cache_mem_stats st = stats(m);
    print_message("%zu KB store: %llu gets (%llu hits), %llu puts; %llu entries, %llu bytes, "
                  "%llu evictions, %llu expired\n",
                  max_bytes / KB, (unsigned long long)gets, (unsigned long long)hits,
                  (unsigned long long)puts, (unsigned long long)st.entries,
                  (unsigned long long)st.bytes, (unsigned long long)st.evictions,
                  (unsigned long long)st.expired);
    assert_true(gets > 0 && hits > 0 && puts > 0);
    assert_true(st.bytes <= max_bytes);
    assert_true(st.entries <= keyspace);
    if (max_bytes < MB) assert_true(st.evictions > 0);
    /* Every counted entry is there to be cleared, and nothing else is. */
    assert_int_equal(cache_mem_clear(m, NULL, NULL), st.entries);
    st = stats(m);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    cache_mem_free(m);
}

static void test_threads_small(void **state)
{
    run_threads(256 * KB, 300, 4 * KB);
}

static void test_threads_sharded(void **state)
{
    run_threads(16 * MB, 4000, 16 * KB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_replace),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_expired_go_first),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_byte_bound),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_threads_small),
        cmocka_unit_test(test_threads_sharded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
