/* cache_semantic_test: the semantic index (cache/semantic.c): a vector
 * finds itself; a neighbour at cosine 0.97 is found at threshold 0.95 and
 * not at 0.99; partitions never mix, even when their first 8 bytes agree;
 * expired rows are skipped; replace and remove by key; a full index drops
 * the oldest row; refused shapes and values (dims, zero, NaN, infinity)
 * and accepted extremes (subnormal, huge, 8192 dims);
 * churn against a model of what the index should hold; and, on 2000
 * random rows, the search agrees with a brute-force float search whenever
 * the float best clears the threshold, its similarity within 0.01. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache/semantic.h"
#include "core/alloc.h"

#define NOW 1000000
#define LATER (NOW + 60000)

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = (rng_state += 0x9e3779b97f4a7c15ULL);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static double uniform(void)
{
    return ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
}

static double gauss(void)
{
    return sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform());
}

static void random_unit(float *v, size_t dims)
{
    double n = 0;
    for (size_t i = 0; i < dims; i++) {
        v[i] = (float)gauss();
        n += (double)v[i] * v[i];
    }
    for (size_t i = 0; i < dims; i++)
        v[i] = (float)(v[i] / sqrt(n));
}

static double cosine(const float *a, const float *b, size_t dims)
{
    double d = 0, na = 0, nb = 0;
    for (size_t i = 0; i < dims; i++) {
        d += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    return d / sqrt(na * nb);
}

/* out = c * v + sqrt(1 - c^2) * u, with u a random unit vector orthogonal
 * to the unit vector v: exactly cosine c to v. */
static void at_cosine(float *out, const float *v, size_t dims, double c)
{
    float *u = xmalloc(dims * sizeof *u);
    random_unit(u, dims);
    double proj = 0;
    for (size_t i = 0; i < dims; i++)
        proj += (double)u[i] * v[i];
    double n = 0;
    for (size_t i = 0; i < dims; i++) {
        u[i] = (float)(u[i] - proj * v[i]);
        n += (double)u[i] * u[i];
    }
    double s = sqrt(1 - c * c) / sqrt(n);
    for (size_t i = 0; i < dims; i++)
        out[i] = (float)(c * v[i] + s * u[i]);
    free(u);
}

static void make_id(uint8_t out[32], uint32_t n)
{
    memset(out, 0, 32);
    memcpy(out, &n, sizeof n);
}

static bool search(struct sem_index *s, const uint8_t part[32], const float *v, size_t dims,
                   float threshold, uint8_t key[32], float *sim)
{
    return sem_index_search(s, part, v, dims, threshold, NOW, key, sim);
}

#define D 64

static void test_self_and_neighbours(void **state)
{
    rng_state = 1;
    struct sem_index *s = sem_index_new(100);
    uint8_t part[32], k1[32], k2[32], key[32];
    make_id(part, 7);
    make_id(k1, 1);
    make_id(k2, 2);
    float v[D], near[D], far[D];
    random_unit(v, D);
    at_cosine(near, v, D, 0.97);
    at_cosine(far, v, D, 0.2);
    assert_int_equal(sem_index_add(s, part, k1, v, D, LATER), 0);

    float sim = 0;
    assert_true(search(s, part, v, D, 0.99f, key, &sim));
    assert_memory_equal(key, k1, 32);
    assert_true(sim > 0.999f && sim <= 1.0f);

    /* a scaled copy is the same direction */
    float scaled[D];
    for (size_t i = 0; i < D; i++)
        scaled[i] = v[i] * 1000;
    assert_true(search(s, part, scaled, D, 0.99f, key, &sim));

    assert_true(search(s, part, near, D, 0.95f, key, &sim));
    assert_memory_equal(key, k1, 32);
    assert_true(fabsf(sim - 0.97f) < 0.005f);
    assert_false(search(s, part, near, D, 0.99f, key, &sim));
    assert_false(search(s, part, far, D, 0.5f, key, &sim));

    /* the nearer of two rows wins */
    float mid[D];
    at_cosine(mid, v, D, 0.9);
    assert_int_equal(sem_index_add(s, part, k2, mid, D, LATER), 0);
    assert_true(search(s, part, v, D, 0.5f, key, &sim));
    assert_memory_equal(key, k1, 32);
    assert_true(search(s, part, mid, D, 0.5f, key, &sim));
    assert_memory_equal(key, k2, 32);

    struct sem_index_stats st;
    sem_index_stats_get(s, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.dims, D);
    assert_true(st.bytes > 2 * D);
    sem_index_free(s);
    sem_index_free(NULL);
}

static void test_partitions(void **state)
{
    rng_state = 2;
    struct sem_index *s = sem_index_new(100);
    uint8_t a[32], b[32], c[32], k[32], key[32];
    make_id(a, 1);
    make_id(b, 2);
    make_id(c, 1);
    c[31] = 9; /* same first 8 bytes as a, another partition */
    make_id(k, 1);
    float v[D];
    random_unit(v, D);
    assert_int_equal(sem_index_add(s, a, k, v, D, LATER), 0);
    float sim;
    assert_true(search(s, a, v, D, 0.9f, key, &sim));
    assert_false(search(s, b, v, D, -1.0f, key, &sim));
    assert_false(search(s, c, v, D, -1.0f, key, &sim));

    /* the same vector in c, under another key: each partition finds its own */
    uint8_t k2[32];
    make_id(k2, 2);
    assert_int_equal(sem_index_add(s, c, k2, v, D, LATER), 0);
    assert_true(search(s, c, v, D, 0.9f, key, &sim));
    assert_memory_equal(key, k2, 32);
    assert_true(search(s, a, v, D, 0.9f, key, &sim));
    assert_memory_equal(key, k, 32);
    sem_index_free(s);
}

static void test_expiry(void **state)
{
    rng_state = 3;
    struct sem_index *s = sem_index_new(100);
    uint8_t part[32], k1[32], k2[32], key[32];
    make_id(part, 1);
    make_id(k1, 1);
    make_id(k2, 2);
    float v[D], near[D];
    random_unit(v, D);
    at_cosine(near, v, D, 0.97);
    assert_int_equal(sem_index_add(s, part, k1, v, D, NOW), 0); /* expires now: dead */
    float sim;
    assert_false(search(s, part, v, D, 0.5f, key, &sim));
    assert_true(sem_index_search(s, part, v, D, 0.5f, NOW - 1, key, &sim));

    /* a live row further away is still found past the expired one */
    assert_int_equal(sem_index_add(s, part, k2, near, D, LATER), 0);
    assert_true(search(s, part, v, D, 0.9f, key, &sim));
    assert_memory_equal(key, k2, 32);
    sem_index_free(s);
}

static void test_replace_and_remove(void **state)
{
    rng_state = 4;
    struct sem_index *s = sem_index_new(100);
    uint8_t part[32], k[32], other[32], key[32];
    make_id(part, 1);
    make_id(k, 1);
    make_id(other, 2);
    float v1[D], v2[D];
    random_unit(v1, D);
    random_unit(v2, D);
    assert_int_equal(sem_index_add(s, part, k, v1, D, LATER), 0);
    assert_int_equal(sem_index_add(s, part, k, v2, D, LATER), 0);
    struct sem_index_stats st;
    sem_index_stats_get(s, &st);
    assert_int_equal(st.entries, 1);
    float sim;
    assert_false(search(s, part, v1, D, 0.9f, key, &sim));
    assert_true(search(s, part, v2, D, 0.9f, key, &sim));
    assert_memory_equal(key, k, 32);

    sem_index_remove(s, other); /* unknown: nothing happens */
    sem_index_stats_get(s, &st);
    assert_int_equal(st.entries, 1);
    sem_index_remove(s, k);
    sem_index_stats_get(s, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.dims, D); /* only clear resets the shape */
    assert_false(search(s, part, v2, D, -1.0f, key, &sim));
    sem_index_remove(s, k);
    sem_index_free(s);
}

static void test_full_drops_oldest(void **state)
{
    rng_state = 5;
    struct sem_index *s = sem_index_new(3);
    uint8_t part[32], k[6][32], key[32];
    make_id(part, 1);
    float v[6][D];
    for (uint32_t i = 0; i < 6; i++) {
        make_id(k[i], i + 1);
        random_unit(v[i], D);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(sem_index_add(s, part, k[i], v[i], D, LATER), 0);
    float sim;
    assert_false(search(s, part, v[0], D, 0.9f, key, &sim)); /* k0 went */
    for (int i = 1; i < 4; i++) {
        assert_true(search(s, part, v[i], D, 0.9f, key, &sim));
        assert_memory_equal(key, k[i], 32);
    }
    /* replacing k1 makes it the newest: k2 is now the oldest */
    assert_int_equal(sem_index_add(s, part, k[1], v[1], D, LATER), 0);
    assert_int_equal(sem_index_add(s, part, k[4], v[4], D, LATER), 0);
    assert_false(search(s, part, v[2], D, 0.9f, key, &sim));
    assert_true(search(s, part, v[1], D, 0.9f, key, &sim));
    assert_true(search(s, part, v[3], D, 0.9f, key, &sim));
    assert_true(search(s, part, v[4], D, 0.9f, key, &sim));
    /* a removed row leaves room: nothing is dropped */
    sem_index_remove(s, k[3]);
    assert_int_equal(sem_index_add(s, part, k[5], v[5], D, LATER), 0);
    assert_true(search(s, part, v[1], D, 0.9f, key, &sim));
    assert_true(search(s, part, v[4], D, 0.9f, key, &sim));
    assert_true(search(s, part, v[5], D, 0.9f, key, &sim));
    struct sem_index_stats st;
    sem_index_stats_get(s, &st);
    assert_int_equal(st.entries, 3);
    sem_index_free(s);
}

static void test_refusals(void **state)
{
    rng_state = 6;
    struct sem_index *s = sem_index_new(10);
    uint8_t part[32], k[32], key[32];
    make_id(part, 1);
    make_id(k, 1);
    float v[D], zero[D] = {0}, bad[D];
    random_unit(v, D);
    float sim;

    /* refused values fix no shape */
    assert_int_equal(sem_index_add(s, part, k, zero, D, LATER), -1);
    assert_int_equal(sem_index_add(s, part, k, v, 0, LATER), -1);
    float *huge = xcalloc(8193, sizeof *huge);
    huge[0] = 1;
    assert_int_equal(sem_index_add(s, part, k, huge, 8193, LATER), -1);
    struct sem_index_stats st;
    sem_index_stats_get(s, &st);
    assert_int_equal(st.dims, 0);
    assert_false(search(s, part, v, D, -1.0f, key, &sim));

    assert_int_equal(sem_index_add(s, part, k, v, D, LATER), 0);
    assert_int_equal(sem_index_add(s, part, k, v, D / 2, LATER), -1);
    assert_false(search(s, part, v, D / 2, -1.0f, key, &sim));
    memcpy(bad, v, sizeof bad);
    bad[5] = NAN;
    assert_int_equal(sem_index_add(s, part, k, bad, D, LATER), -1);
    assert_false(search(s, part, bad, D, -1.0f, key, &sim));
    bad[5] = INFINITY;
    assert_int_equal(sem_index_add(s, part, k, bad, D, LATER), -1);
    assert_false(search(s, part, bad, D, -1.0f, key, &sim));
    assert_false(search(s, part, zero, D, -1.0f, key, &sim));
    /* the refused replacements left the row as it was */
    assert_true(search(s, part, v, D, 0.99f, key, &sim));

    /* clear resets the shape too */
    sem_index_clear(s);
    sem_index_stats_get(s, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.dims, 0);
    assert_false(search(s, part, v, D, -1.0f, key, &sim));
    assert_int_equal(sem_index_add(s, part, k, v, D / 2, LATER), 0);
    assert_true(search(s, part, v, D / 2, 0.99f, key, &sim));

    /* subnormal and huge components are fine: only directions count */
    sem_index_clear(s);
    float tiny[D], big[D];
    for (size_t i = 0; i < D; i++) {
        tiny[i] = v[i] * 1e-40f; /* subnormal: 1 / max overflows a float */
        big[i] = v[i] * 3e38f;
    }
    assert_int_equal(sem_index_add(s, part, k, tiny, D, LATER), 0);
    assert_true(search(s, part, v, D, 0.99f, key, &sim));
    assert_true(search(s, part, big, D, 0.99f, key, &sim));
    assert_true(search(s, part, tiny, D, 0.99f, key, &sim));

    /* the largest shape, and one component only */
    sem_index_clear(s);
    assert_int_equal(sem_index_add(s, part, k, huge, 8192, LATER), 0);
    assert_true(search(s, part, huge, 8192, 0.99f, key, &sim));
    free(huge);
    sem_index_free(s);
}

/* Random adds, replaces and removes on a small full index, checked
 * against a model: exercises the swap-remove, the key map's deletions and
 * the age list. Every row has its own random direction, so searching
 * a row's vector at 0.99 finds exactly that row. */
static void test_churn(void **state)
{
    rng_state = 7;
    enum { KEYS = 300, CAP = 100, DIMS = 32 };
    struct sem_index *s = sem_index_new(CAP);
    static float vec[KEYS][DIMS];
    int64_t age[KEYS]; /* insertion stamp, 0: absent */
    memset(age, 0, sizeof age);
    uint8_t part[32], k[32], key[32];
    make_id(part, 1);
    int64_t stamp = 0;
    for (int step = 0; step < 20000; step++) {
        uint32_t i = (uint32_t)(rnd() % KEYS);
        make_id(k, i * 2654435761u); /* low-entropy keys on purpose */
        if (rnd() % 4 == 0) {
            sem_index_remove(s, k);
            age[i] = 0;
            continue;
        }
        random_unit(vec[i], DIMS);
        assert_int_equal(sem_index_add(s, part, k, vec[i], DIMS, LATER), 0);
        size_t live = 0;
        for (int j = 0; j < KEYS; j++)
            live += age[j] != 0 && j != (int)i;
        if (live == CAP) { /* the model drops its oldest too */
            int oldest = -1;
            for (int j = 0; j < KEYS; j++)
                if (age[j] && j != (int)i && (oldest < 0 || age[j] < age[oldest])) oldest = j;
            age[oldest] = 0;
        }
        age[i] = ++stamp;
        if (step % 500 != 499) continue;
        size_t want = 0;
        for (uint32_t j = 0; j < KEYS; j++) {
            float sim;
            bool hit = search(s, part, vec[j], DIMS, 0.99f, key, &sim);
            uint8_t kj[32];
            make_id(kj, j * 2654435761u);
            if (age[j]) {
                want++;
                if (!hit) fail_msg("step %d: key %u lost", step, j);
                assert_memory_equal(key, kj, 32);
            } else if (hit && memcmp(key, kj, 32) == 0) {
                fail_msg("step %d: key %u should be gone", step, j);
            }
        }
        struct sem_index_stats st;
        sem_index_stats_get(s, &st);
        assert_int_equal(st.entries, want);
    }
    sem_index_free(s);
}

/* 2000 random rows of 256 dimensions; 200 queries, each a noisy copy of a
 * row at a cosine spread over 0.80..0.995. */
static void test_random_vs_brute_force(void **state)
{
    rng_state = 8;
    enum { ROWS = 2000, DIMS = 256, QUERIES = 200 };
    const float threshold = 0.9f;
    struct sem_index *s = sem_index_new(ROWS);
    float *rows = xmalloc((size_t)ROWS * DIMS * sizeof *rows);
    uint8_t part[32], k[32], key[32];
    make_id(part, 3);
    for (uint32_t r = 0; r < ROWS; r++) {
        random_unit(rows + (size_t)r * DIMS, DIMS);
        make_id(k, r);
        assert_int_equal(sem_index_add(s, part, k, rows + (size_t)r * DIMS, DIMS, LATER), 0);
    }
    float q[DIMS];
    int checked = 0, hits = 0;
    double max_err = 0, sum_err = 0;
    for (int t = 0; t < QUERIES; t++) {
        uint32_t src = (uint32_t)(rnd() % ROWS);
        at_cosine(q, rows + (size_t)src * DIMS, DIMS, 0.80 + 0.195 * uniform());
        double fbest = -2;
        uint32_t fbest_row = 0;
        for (uint32_t r = 0; r < ROWS; r++) {
            double c = cosine(q, rows + (size_t)r * DIMS, DIMS);
            if (c > fbest) fbest = c, fbest_row = r;
        }
        float sim = 0;
        bool hit = search(s, part, q, DIMS, threshold, key, &sim);
        if (hit) {
            uint32_t got;
            memcpy(&got, key, sizeof got);
            double err = fabs(sim - cosine(q, rows + (size_t)got * DIMS, DIMS));
            if (err > max_err) max_err = err;
            sum_err += err;
            hits++;
            if (err >= 0.01) fail_msg("query %d: similarity %f off by %f", t, sim, err);
        }
        if (fbest >= threshold + 0.01) {
            checked++;
            if (!hit) fail_msg("query %d: float best %f (row %u) missed", t, fbest, fbest_row);
            uint32_t got;
            memcpy(&got, key, sizeof got);
            if (got != fbest_row)
                fail_msg("query %d: row %u, float best is row %u (%f)", t, got, fbest_row, fbest);
        } else if (fbest < threshold - 0.01 && hit) {
            fail_msg("query %d: hit at %f though the float best is %f", t, sim, fbest);
        }
    }
    assert_true(checked > QUERIES / 3);
    print_message("%d recall checks, %d hits; |int8 - float cosine|: mean %.5f, max %.5f\n",
                  checked, hits, sum_err / (hits ? hits : 1), max_err);
    free(rows);
    sem_index_free(s);
}

/* Searches under the read lock while a writer adds, replaces and clears:
 * for ASan/TSan builds, and a check that nothing deadlocks. */
struct racer {
    struct sem_index *s;
    const float *v;
};

static void *race_search(void *arg)
{
    struct racer *r = arg;
    uint8_t part[32], key[32];
    make_id(part, 1);
    float sim;
    for (int i = 0; i < 2000; i++)
        sem_index_search(r->s, part, r->v, D, 0.5f, NOW, key, &sim);
    return NULL;
}

static void test_threads(void **state)
{
    rng_state = 9;
    struct sem_index *s = sem_index_new(50);
    float v[D];
    random_unit(v, D);
    struct racer r = {s, v};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, race_search, &r);
    uint8_t part[32], k[32];
    make_id(part, 1);
    for (uint32_t i = 0; i < 2000; i++) {
        make_id(k, i % 80);
        float w[D];
        at_cosine(w, v, D, 0.9);
        assert_int_equal(sem_index_add(s, part, k, w, D, LATER), 0);
        if (i % 700 == 699) sem_index_clear(s);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    sem_index_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_self_and_neighbours),
        cmocka_unit_test(test_partitions),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_replace_and_remove),
        cmocka_unit_test(test_full_drops_oldest),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_random_vs_brute_force),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
