/* semantic: the flat index of embedding vectors behind the semantic cache
 * (see semantic.h). Rows live in parallel arrays (structure of arrays) so
 * that a search streams only what it needs: the partition tags and the
 * sign sketches; the int8 vectors of a few candidates are read last.
 *
 * Why the sketch is short. A search reads every row's sketch, so its size
 * sets the cost: this machine streams about 7 GB/s from memory, and a
 * 1536-bit sketch per row (19 MB at 100k rows) alone takes ~2.5 ms. The
 * sketch is instead SEM_SKETCH_BITS (256) sign bits of orthogonal random
 * projections (SimHash): the vector is multiplied by fixed random signs,
 * folded to SEM_SKETCH_BITS coordinates and put through a Walsh-Hadamard
 * transform. Its Hamming distance estimates the angle (expected distance
 * = bits * angle / pi) well enough to pick SEM_CANDIDATES (64) rows, which
 * are then scored on their int8 vectors: that cosine is within 1e-3 of the
 * float one. bench/semantic_bench.c measures the trade (time, recall).
 *
 * Memory per row: dims (int8, rounded up to 64) + SEM_SKETCH_BITS/8 + 88
 * bytes, plus 8 to 16 bytes of key map: about 1.7 KB at 1536 dimensions.
 *
 * Rows are removed by moving the last row into the hole, so row numbers
 * change; the key map and the age list (a doubly linked list in insertion
 * order: the oldest row is its head, found in O(1)) are updated with it. */
#include "cache/semantic.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* Sign bits per sketch (a power of two, 64..512); at most the vector's
 * dimensions rounded up to a power of two. */
#ifndef SEM_SKETCH_BITS
#define SEM_SKETCH_BITS 256
#endif
/* Rows ranked by sketch that are then scored exactly. */
#ifndef SEM_CANDIDATES
#define SEM_CANDIDATES 64
#endif
#define MAX_DIMS 8192
#define MAX_ROWS ((size_t)1 << 31) /* row numbers are uint32_t; UINT32_MAX is "none" */
#define NO_ROW UINT32_MAX
#define MIN_CAP 64
#define SIGN_SEED 0x5eed5eed5eed5eedULL

#if SEM_SKETCH_BITS < 64 || SEM_SKETCH_BITS > 512 || (SEM_SKETCH_BITS & (SEM_SKETCH_BITS - 1))
#error "SEM_SKETCH_BITS must be a power of two in 64..512"
#endif

#if defined(__x86_64__)
#define CLONES_POPCNT __attribute__((target_clones("popcnt", "default")))
#define CLONES_AVX2 __attribute__((target_clones("avx2", "default")))
#else
#define CLONES_POPCNT
#define CLONES_AVX2
#endif

struct sem_index {
    pthread_rwlock_t lock;
    size_t max_entries;

    /* Fixed by the first add, reset by clear (dims 0: no shape yet). */
    size_t dims;
    size_t stride;       /* bytes per int8 vector: dims rounded up to 64 */
    size_t sketch_bits;  /* a power of two <= SEM_SKETCH_BITS */
    size_t sketch_words; /* sketch_bits / 64 */
    float *signs;        /* dims random +-1, the sketch's sign flips */

    /* Rows 0..n-1; arrays sized for cap rows. */
    size_t n, cap;
    uint32_t *tag;       /* the partition's first 4 bytes (a digest's) */
    uint8_t (*part)[32]; /* the whole partition, checked on candidates */
    uint8_t (*key)[32];
    int64_t *expires_ms;
    uint32_t *older, *newer; /* insertion order: a doubly linked list */
    float *inv_norm;         /* 1 / |int8 vector| */
    uint64_t *sketch;        /* sketch_words per row */
    int8_t *vec;             /* stride per row, zero padded */
    uint32_t oldest, newest; /* NO_ROW when empty */

    /* key -> row: open addressing, linear probing, slot = row + 1 (0 empty). */
    uint32_t *map;
    size_t map_mask; /* slots - 1; slots a power of two, or map NULL */
};

/* ---- the key map ---- */

/* Keys are SHA-256 digests; folding all 32 bytes and multiplying keeps the
 * table sane for keys that are not. */
static size_t key_hash(const uint8_t key[32])
{
    uint64_t w[4];
    memcpy(w, key, sizeof w);
    uint64_t h = (w[0] ^ (w[1] * 0x9e3779b97f4a7c15ULL) ^ (w[2] * 0xc2b2ae3d27d4eb4fULL) ^
                  (w[3] * 0x165667b19e3779f9ULL));
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return (size_t)h;
}

/* The slot holding `key`, or the empty slot where it would go. */
static size_t map_slot(const struct sem_index *s, const uint8_t key[32])
{
    size_t i = key_hash(key) & s->map_mask;
    while (s->map[i] && memcmp(s->key[s->map[i] - 1], key, 32) != 0)
        i = (i + 1) & s->map_mask;
    return i;
}

static uint32_t map_find(const struct sem_index *s, const uint8_t key[32])
{
    if (!s->map) return NO_ROW;
    uint32_t v = s->map[map_slot(s, key)];
    return v ? v - 1 : NO_ROW;
}

/* Makes room for `rows` keys at a load of at most one half. */
static void map_reserve(struct sem_index *s, size_t rows)
{
    size_t slots = s->map ? s->map_mask + 1 : 0;
    if (rows * 2 <= slots) return;
    size_t want = 64;
    while (want < rows * 2)
        want *= 2;
    uint32_t *old = s->map;
    s->map = xcalloc(want, sizeof *s->map);
    s->map_mask = want - 1;
    for (size_t i = 0; i < slots; i++)
        if (old[i]) s->map[map_slot(s, s->key[old[i] - 1])] = old[i];
    free(old);
}

/* Deletes the slot of row r's key, shifting later entries of the run back
 * (linear probing without tombstones). */
static void map_delete(struct sem_index *s, uint32_t r)
{
    size_t i = map_slot(s, s->key[r]);
    s->map[i] = 0;
    for (size_t j = (i + 1) & s->map_mask; s->map[j]; j = (j + 1) & s->map_mask) {
        size_t home = key_hash(s->key[s->map[j] - 1]) & s->map_mask;
        /* the entry at j may move to the hole at i unless its home lies
         * cyclically in (i, j] */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays) continue;
        s->map[i] = s->map[j];
        s->map[j] = 0;
        i = j;
    }
}

/* ---- vectors: validation, int8 form, sketch ---- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A vector as stored or searched: int8 form, its inverse length, sketch. */
struct prepared {
    int8_t *q; /* stride bytes */
    float inv_norm;
    uint64_t sketch[SEM_SKETCH_BITS / 64];
};

static void fwht(float *z, size_t n)
{
    for (size_t h = 1; h < n; h *= 2)
        for (size_t i = 0; i < n; i += 2 * h)
            for (size_t j = i; j < i + h; j++) {
                float a = z[j], b = z[j + h];
                z[j] = a + b;
                z[j + h] = a - b;
            }
}

/* The largest |component| of vec, or 0 for a vector that cannot be
 * compared: all zero, or with a NaN or infinity. */
static float max_abs(const float *vec, size_t dims)
{
    float m = 0;
    for (size_t i = 0; i < dims; i++) {
        if (!isfinite(vec[i])) return 0;
        float a = fabsf(vec[i]);
        if (a > m) m = a;
    }
    return m;
}

/* Fills p (p->q has s->stride bytes) from vec, whose largest |component|
 * is maxabs > 0. Cosine is scale invariant, so the vector is never
 * normalised: it is quantised against its largest component. */
static void prepare(const struct sem_index *s, const float *vec, float maxabs, struct prepared *p)
{
    /* in double: 1 / maxabs overflows a float when maxabs is subnormal */
    double to_unit = 1.0 / maxabs;
    int64_t sq = 0;
    float z[SEM_SKETCH_BITS] = {0};
    size_t mask = s->sketch_bits - 1;
    for (size_t i = 0; i < s->dims; i++) {
        float u = (float)(vec[i] * to_unit); /* in [-1, 1] */
        float t = u * 127.0f;
        int v = (int)(t + (t < 0 ? -0.5f : 0.5f));
        if (v > 127) v = 127;
        if (v < -127) v = -127;
        p->q[i] = (int8_t)v;
        sq += v * v;
        z[i & mask] += s->signs[i] * u;
    }
    memset(p->q + s->dims, 0, s->stride - s->dims);
    p->inv_norm = (float)(1.0 / sqrt((double)sq)); /* sq >= 127^2 */

    fwht(z, s->sketch_bits);
    memset(p->sketch, 0, sizeof p->sketch);
    for (size_t j = 0; j < s->sketch_bits; j++)
        if (z[j] > 0) p->sketch[j / 64] |= (uint64_t)1 << (j % 64);
}

/* Dot product of two int8 vectors of `stride` bytes (a multiple of 64):
 * the fixed inner trip count lets the compiler vectorise it. */
CLONES_AVX2 static int32_t dot_i8(const int8_t *a, const int8_t *b, size_t stride)
{
    int32_t sum = 0;
    for (size_t i = 0; i < stride; i += 64) {
        int32_t part = 0;
        for (size_t j = 0; j < 64; j++)
            part += (int32_t)a[i + j] * (int32_t)b[i + j];
        sum += part;
    }
    return sum;
}

/* ---- rows ---- */

/* Sets the shape from the first vector's dimensions. */
static void set_shape(struct sem_index *s, size_t dims)
{
    s->dims = dims;
    s->stride = (dims + 63) & ~(size_t)63;
    size_t bits = 64;
    while (bits < dims && bits < SEM_SKETCH_BITS)
        bits *= 2;
    s->sketch_bits = bits;
    s->sketch_words = bits / 64;
    s->signs = xmalloc(dims * sizeof *s->signs);
    for (size_t i = 0; i < dims; i++)
        s->signs[i] = (splitmix64(SIGN_SEED + i) >> 63) ? -1.0f : 1.0f;
}

static void grow(struct sem_index *s)
{
    size_t cap = s->cap ? s->cap * 2 : MIN_CAP;
    if (cap > s->max_entries) cap = s->max_entries;
    s->tag = xrealloc(s->tag, cap * sizeof *s->tag);
    s->part = xrealloc(s->part, cap * sizeof *s->part);
    s->key = xrealloc(s->key, cap * sizeof *s->key);
    s->expires_ms = xrealloc(s->expires_ms, cap * sizeof *s->expires_ms);
    s->older = xrealloc(s->older, cap * sizeof *s->older);
    s->newer = xrealloc(s->newer, cap * sizeof *s->newer);
    s->inv_norm = xrealloc(s->inv_norm, cap * sizeof *s->inv_norm);
    s->sketch = xrealloc(s->sketch, cap * s->sketch_words * sizeof *s->sketch);
    s->vec = xrealloc(s->vec, cap * s->stride);
    s->cap = cap;
}

/* Points whatever referred to a row (its list neighbours, the list's ends,
 * its map slot) at row `to`, after the row was copied there. */
static void relink(struct sem_index *s, uint32_t to)
{
    uint32_t o = s->older[to], w = s->newer[to];
    if (o != NO_ROW)
        s->newer[o] = to;
    else
        s->oldest = to;
    if (w != NO_ROW)
        s->older[w] = to;
    else
        s->newest = to;
    s->map[map_slot(s, s->key[to])] = to + 1;
}

/* Removes row r: unlinks it, then moves the last row into its place. */
static void remove_row(struct sem_index *s, uint32_t r)
{
    uint32_t o = s->older[r], w = s->newer[r];
    if (o != NO_ROW)
        s->newer[o] = w;
    else
        s->oldest = w;
    if (w != NO_ROW)
        s->older[w] = o;
    else
        s->newest = o;
    map_delete(s, r);

    uint32_t last = (uint32_t)(s->n - 1);
    if (r != last) {
        s->tag[r] = s->tag[last];
        memcpy(s->part[r], s->part[last], 32);
        memcpy(s->key[r], s->key[last], 32);
        s->expires_ms[r] = s->expires_ms[last];
        s->older[r] = s->older[last];
        s->newer[r] = s->newer[last];
        s->inv_norm[r] = s->inv_norm[last];
        memcpy(s->sketch + (size_t)r * s->sketch_words, s->sketch + (size_t)last * s->sketch_words,
               s->sketch_words * sizeof *s->sketch);
        memcpy(s->vec + (size_t)r * s->stride, s->vec + (size_t)last * s->stride, s->stride);
        relink(s, r);
    }
    s->n--;
}

static void drop_all(struct sem_index *s)
{
    free(s->signs);
    free(s->tag);
    free(s->part);
    free(s->key);
    free(s->expires_ms);
    free(s->older);
    free(s->newer);
    free(s->inv_norm);
    free(s->sketch);
    free(s->vec);
    free(s->map);
    s->signs = NULL;
    s->tag = NULL;
    s->part = NULL;
    s->key = NULL;
    s->expires_ms = NULL;
    s->older = s->newer = NULL;
    s->inv_norm = NULL;
    s->sketch = NULL;
    s->vec = NULL;
    s->map = NULL;
    s->map_mask = 0;
    s->n = s->cap = 0;
    s->dims = s->stride = s->sketch_bits = s->sketch_words = 0;
    s->oldest = s->newest = NO_ROW;
}

/* ---- the index ---- */

/* max_entries 0 is taken as 1. */
struct sem_index *sem_index_new(size_t max_entries)
{
    struct sem_index *s = xcalloc(1, sizeof *s);
    if (max_entries < 1) max_entries = 1;
    if (max_entries > MAX_ROWS) max_entries = MAX_ROWS;
    s->max_entries = max_entries;
    s->oldest = s->newest = NO_ROW;
    /* Searches come from every worker and each holds the lock for a scan;
     * glibc's default rwlock lets overlapping readers starve an add. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
#if defined(__GLIBC__)
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    pthread_rwlock_init(&s->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return s;
}

void sem_index_free(struct sem_index *s)
{
    if (!s) return;
    drop_all(s);
    pthread_rwlock_destroy(&s->lock);
    free(s);
}

int sem_index_add(struct sem_index *s, const uint8_t partition[32], const uint8_t key[32],
                  const float *vec, size_t dims, int64_t expires_ms)
{
    if (dims == 0 || dims > MAX_DIMS) return -1;
    float maxabs = max_abs(vec, dims);
    if (maxabs == 0) return -1; /* checked first: a refused vector fixes no shape */
    int rc = -1;
    pthread_rwlock_wrlock(&s->lock);
    if (s->dims == 0) set_shape(s, dims);
    if (dims != s->dims) goto out;

    struct prepared p;
    p.q = xmalloc(s->stride);
    prepare(s, vec, maxabs, &p);

    uint32_t old = map_find(s, key);
    if (old != NO_ROW)
        remove_row(s, old);
    else if (s->n == s->max_entries)
        remove_row(s, s->oldest);
    if (s->n == s->cap) grow(s);
    map_reserve(s, s->n + 1);

    uint32_t r = (uint32_t)s->n++;
    memcpy(&s->tag[r], partition, sizeof s->tag[r]);
    memcpy(s->part[r], partition, 32);
    memcpy(s->key[r], key, 32);
    s->expires_ms[r] = expires_ms;
    s->inv_norm[r] = p.inv_norm;
    memcpy(s->sketch + (size_t)r * s->sketch_words, p.sketch, s->sketch_words * sizeof *s->sketch);
    memcpy(s->vec + (size_t)r * s->stride, p.q, s->stride);
    free(p.q);

    s->older[r] = s->newest;
    s->newer[r] = NO_ROW;
    if (s->newest != NO_ROW)
        s->newer[s->newest] = r;
    else
        s->oldest = r;
    s->newest = r;
    s->map[map_slot(s, key)] = r + 1;
    rc = 0;
out:
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

/* ---- search ---- */

static uint32_t hamming(const uint64_t *a, const uint64_t *b, size_t words)
{
    uint32_t d = 0;
    for (size_t w = 0; w < words; w++)
        d += (uint32_t)__builtin_popcountll(a[w] ^ b[w]);
    return d;
}

struct cand {
    uint32_t dist, row;
};

/* The CANDIDATES live rows of the partition nearest by sketch, as a
 * max-heap on distance: heap[0] is the one a nearer row displaces. */
struct cands {
    struct cand heap[SEM_CANDIDATES];
    size_t n;
    uint32_t worst; /* a row must be nearer than this to get in */
};

struct query {
    uint32_t tag;
    const uint8_t *partition;
    int64_t now_ms;
    struct prepared p;
};

/* A row whose sketch is near enough: checked in full (partition, expiry)
 * only here, as few rows get this far. Returns the distance a row must
 * now beat. */
static uint32_t consider(const struct sem_index *s, const struct query *q, struct cands *c,
                         uint32_t row, uint32_t dist)
{
    if (s->expires_ms[row] <= q->now_ms) return c->worst;
    if (memcmp(s->part[row], q->partition, 32) != 0) return c->worst;
    struct cand *h = c->heap;
    size_t i;
    if (c->n < SEM_CANDIDATES) {
        /* sift up */
        i = c->n++;
        while (i > 0 && h[(i - 1) / 2].dist < dist) {
            h[i] = h[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h[i] = (struct cand){dist, row};
        if (c->n == SEM_CANDIDATES) c->worst = h[0].dist;
        return c->worst;
    }
    /* replace the root, sift down */
    i = 0;
    for (;;) {
        size_t l = 2 * i + 1, big = i;
        uint32_t bd = dist;
        if (l < SEM_CANDIDATES && h[l].dist > bd) big = l, bd = h[l].dist;
        if (l + 1 < SEM_CANDIDATES && h[l + 1].dist > bd) big = l + 1;
        if (big == i) break;
        h[i] = h[big];
        i = big;
    }
    h[i] = (struct cand){dist, row};
    c->worst = h[0].dist;
    return c->worst;
}

/* The scan: every row's tag and sketch, sequentially. A row enters the
 * candidates only when its distance beats the current worst, which after
 * the first rows is rare, so the loop is the loads and the popcounts: the
 * query's words and the worst distance are kept in locals (registers),
 * and the common widths are spelled out, unrolled. At 100k rows the
 * sketches are out of cache on a busy server, and prefetching them
 * PREFETCH_BYTES ahead took a cold scan from ~620 to ~500 us here (the
 * hardware prefetcher alone did not keep up). */
#define PREFETCH_BYTES 2048
#define POP(x) ((uint32_t)__builtin_popcountll(x))
#define SCAN(DIST)                                                                                 \
    for (size_t r = 0; r < n; r++) {                                                               \
        __builtin_prefetch(sk + (r + ahead < n ? r + ahead : r) * words);                          \
        if (tag[r] != qtag) continue;                                                              \
        const uint64_t *x = sk + r * words;                                                        \
        uint32_t d = DIST;                                                                         \
        if (d < worst) worst = consider(s, q, c, (uint32_t)r, d);                                  \
    }

CLONES_POPCNT static void scan(const struct sem_index *s, const struct query *q, struct cands *c)
{
    const uint32_t *tag = s->tag;
    const uint64_t *sk = s->sketch, *qs = q->p.sketch;
    uint32_t qtag = q->tag;
    size_t n = s->n, words = s->sketch_words, ahead = PREFETCH_BYTES / (words * 8);
    uint32_t worst = c->worst;
    uint64_t q0 = qs[0], q1 = qs[1 % words], q2 = qs[2 % words], q3 = qs[3 % words];
    if (words == 4) {
        SCAN(POP(x[0] ^ q0) + POP(x[1] ^ q1) + POP(x[2] ^ q2) + POP(x[3] ^ q3))
    } else if (words == 8) {
        uint64_t q4 = qs[4], q5 = qs[5], q6 = qs[6], q7 = qs[7];
        SCAN(POP(x[0] ^ q0) + POP(x[1] ^ q1) + POP(x[2] ^ q2) + POP(x[3] ^ q3) + POP(x[4] ^ q4) +
             POP(x[5] ^ q5) + POP(x[6] ^ q6) + POP(x[7] ^ q7))
    } else {
        SCAN(hamming(x, qs, words))
    }
}

bool sem_index_search(struct sem_index *s, const uint8_t partition[32], const float *vec,
                      size_t dims, float threshold, int64_t now_ms, uint8_t key_out[32],
                      float *similarity_out)
{
    bool found = false;
    struct query q = {.partition = partition, .now_ms = now_ms};
    memcpy(&q.tag, partition, sizeof q.tag);
    float maxabs = max_abs(vec, dims);
    if (maxabs == 0) return false;
    pthread_rwlock_rdlock(&s->lock);
    if (s->n == 0 || dims != s->dims) goto out;
    q.p.q = xmalloc(s->stride);
    prepare(s, vec, maxabs, &q.p);

    struct cands c = {.n = 0, .worst = UINT32_MAX};
    scan(s, &q, &c);

    float best = -2;
    uint32_t best_row = NO_ROW;
    for (size_t i = 0; i < c.n; i++) {
        uint32_t r = c.heap[i].row;
        int32_t dot = dot_i8(q.p.q, s->vec + (size_t)r * s->stride, s->stride);
        float sim = (float)dot * q.p.inv_norm * s->inv_norm[r];
        if (sim > best || (sim == best && r < best_row)) best = sim, best_row = r;
    }
    if (best_row != NO_ROW && best >= threshold) {
        memcpy(key_out, s->key[best_row], 32);
        *similarity_out = best > 1 ? 1 : best;
        found = true;
    }
    free(q.p.q);
out:
    pthread_rwlock_unlock(&s->lock);
    return found;
}

void sem_index_remove(struct sem_index *s, const uint8_t key[32])
{
    pthread_rwlock_wrlock(&s->lock);
    uint32_t r = map_find(s, key);
    if (r != NO_ROW) remove_row(s, r);
    pthread_rwlock_unlock(&s->lock);
}

void sem_index_clear(struct sem_index *s)
{
    pthread_rwlock_wrlock(&s->lock);
    drop_all(s);
    pthread_rwlock_unlock(&s->lock);
}

/* bytes: what the rows in use, the key map and the sign table occupy (the
 * arrays' spare capacity is address space the rows have not touched). */
void sem_index_stats_get(struct sem_index *s, struct sem_index_stats *out)
{
    pthread_rwlock_rdlock(&s->lock);
    size_t row = sizeof *s->tag + sizeof *s->part + sizeof *s->key + sizeof *s->expires_ms +
                 sizeof *s->older + sizeof *s->newer + sizeof *s->inv_norm +
                 s->sketch_words * sizeof *s->sketch + s->stride;
    out->entries = s->n;
    out->dims = s->dims;
    out->bytes = sizeof *s + s->n * row + (s->map ? (s->map_mask + 1) * sizeof *s->map : 0) +
                 s->dims * sizeof *s->signs;
    pthread_rwlock_unlock(&s->lock);
}
