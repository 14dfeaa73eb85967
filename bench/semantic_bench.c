/* semantic_bench: search time, memory and recall of the semantic index
 * (src/cache/semantic.c) at N entries of D dimensions, all in one
 * partition. For each N: fills the index with N random unit vectors
 * (RSS before and after, from /proc/self/status), then times 200 searches
 * for noisy copies of stored rows (cosine 0.93..0.99 to their row,
 * threshold 0.9) and 200 for random vectors (misses), each twice: "warm"
 * back to back, and "cold" after sweeping 64 MB through the caches, as a
 * busy server would; wall-clock and thread CPU times (see struct timing).
 * Recall: the hits that return the brute-force float best; error:
 * |reported similarity - float cosine| on those hits.
 * `--clustered[=C]` groups the rows around N/100 centres, rows of a group
 * at cosine C to each other (default 0.9), so that the sketch stage has
 * competition: near rows that are not the best.
 *
 * Build and run (bench/semantic.sh does both):
 *   cc -O2 -std=c17 -D_GNU_SOURCE -Isrc bench/semantic_bench.c src/cache/semantic.c \
 *      src/core/alloc.c -lm -pthread -o build/semantic_bench
 *   build/semantic_bench [--clustered[=C]] [--no-check] [-d DIMS] [N ...]
 * (default: 10000 100000 entries of 1536 dimensions; --no-check: timings
 * only, without the brute-force search that recall is measured against) */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/semantic.h"
#include "core/alloc.h"

#define QUERIES 200
#define THRESHOLD 0.9f
#define SWEEP_BYTES ((size_t)64 << 20)

static uint64_t rng_state = 42;

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

/* n standard normal floats (Box-Muller, both outputs). */
static void gauss_fill(float *v, size_t n)
{
    for (size_t i = 0; i < n; i += 2) {
        double r = sqrt(-2 * log(uniform())), t = 6.283185307179586 * uniform();
        v[i] = (float)(r * cos(t));
        if (i + 1 < n) v[i + 1] = (float)(r * sin(t));
    }
}

static void normalise(float *v, size_t d)
{
    double n = 0;
    for (size_t i = 0; i < d; i++)
        n += (double)v[i] * v[i];
    float inv = (float)(1 / sqrt(n));
    for (size_t i = 0; i < d; i++)
        v[i] *= inv;
}

/* Dot product with eight partial sums, so the compiler can vectorise. */
static float dot(const float *a, const float *b, size_t d)
{
    float s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= d; i += 8)
        for (size_t j = 0; j < 8; j++)
            s[j] += a[i + j] * b[i + j];
    float t = 0;
    for (; i < d; i++)
        t += a[i] * b[i];
    return t + ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* out: a unit vector at cosine c to the unit vector v. */
static void at_cosine(float *out, const float *v, size_t d, double c, float *scratch)
{
    gauss_fill(scratch, d);
    normalise(scratch, d);
    float p = dot(scratch, v, d);
    for (size_t i = 0; i < d; i++)
        scratch[i] -= p * v[i];
    normalise(scratch, d);
    float a = (float)c, b = (float)sqrt(1 - c * c);
    for (size_t i = 0; i < d; i++)
        out[i] = a * v[i] + b * scratch[i];
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

static double clock_us(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static double now_us(void)
{
    return clock_us(CLOCK_MONOTONIC);
}

/* Each search is timed twice: wall clock, what a caller waits on a shared
 * machine, and this thread's CPU time, which leaves out the time other
 * processes had the core (not their pressure on the caches). */
struct timing {
    double wall, cpu;
};

static struct timing timing_start(void)
{
    return (struct timing){now_us(), clock_us(CLOCK_THREAD_CPUTIME_ID)};
}

static void timing_stop(struct timing t0, double *wall, double *cpu)
{
    double c = clock_us(CLOCK_THREAD_CPUTIME_ID);
    *wall = now_us() - t0.wall;
    *cpu = c - t0.cpu;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts t and returns its q-quantile (nearest rank). */
static double quantile(double *t, size_t n, double q)
{
    qsort(t, n, sizeof *t, cmp_double);
    size_t i = (size_t)ceil(q * (double)n);
    return t[i ? i - 1 : 0];
}

static unsigned char *sweep_buf;
static volatile unsigned sweep_sink;

/* Pushes the index out of the caches: what a server does between two
 * searches with everything else it touches. */
static void sweep(void)
{
    unsigned s = 0;
    for (size_t i = 0; i < SWEEP_BYTES; i += 64)
        s += ++sweep_buf[i];
    sweep_sink = s;
}

static void row_key(uint8_t key[32], uint32_t r)
{
    memset(key, 0, 32);
    memcpy(key, &r, sizeof r);
    key[8] = 0x5a; /* not all zero besides the number */
}

static void run(size_t n, size_t d, double clustered, int check)
{
    float *rows = xmalloc(n * d * sizeof *rows);
    float *scratch = xmalloc(d * sizeof *scratch);
    if (clustered) {
        /* rows at cosine sqrt(C) to their centre are at C to each other */
        size_t nc = n / 100 ? n / 100 : 1;
        float *c = xmalloc(nc * d * sizeof *c);
        gauss_fill(c, nc * d);
        for (size_t i = 0; i < nc; i++)
            normalise(c + i * d, d);
        for (size_t r = 0; r < n; r++)
            at_cosine(rows + r * d, c + (r % nc) * d, d, sqrt(clustered), scratch);
        free(c);
    } else {
        gauss_fill(rows, n * d);
        for (size_t r = 0; r < n; r++)
            normalise(rows + r * d, d);
    }
    /* the queries, made before measuring */
    float *hitq = xmalloc(QUERIES * d * sizeof *hitq),
          *missq = xmalloc(QUERIES * d * sizeof *missq);
    uint32_t src[QUERIES];
    for (int i = 0; i < QUERIES; i++) {
        src[i] = (uint32_t)(rnd() % n);
        at_cosine(hitq + i * d, rows + (size_t)src[i] * d, d, 0.93 + 0.06 * uniform(), scratch);
    }
    gauss_fill(missq, QUERIES * d);
    for (int i = 0; i < QUERIES; i++)
        normalise(missq + i * d, d);

    uint8_t part[32], key[32];
    memset(part, 0x11, sizeof part);
    long rss0 = rss_kb();
    double t0 = now_us();
    struct sem_index *s = sem_index_new(n);
    for (size_t r = 0; r < n; r++) {
        row_key(key, (uint32_t)r);
        if (sem_index_add(s, part, key, rows + r * d, d, INT64_MAX) != 0) {
            fprintf(stderr, "add refused\n");
            exit(1);
        }
    }
    double fill_s = (now_us() - t0) / 1e6;
    long rss1 = rss_kb();
    struct sem_index_stats st;
    sem_index_stats_get(s, &st);

    /* brute-force float best of each hit query */
    t0 = now_us();
    uint32_t fbest[QUERIES];
    float fbest_sim[QUERIES];
    for (int i = 0; i < QUERIES && check; i++) {
        float best = -2;
        for (size_t r = 0; r < n; r++) {
            float c = dot(hitq + i * d, rows + r * d, d);
            if (c > best) best = c, fbest[i] = (uint32_t)r;
        }
        fbest_sim[i] = best;
    }
    double brute_s = (now_us() - t0) / 1e6;

    double th[2][QUERIES], tm[2][QUERIES], ch[2][QUERIES], cm[2][QUERIES];
    int found = 0, right = 0, wanted = 0, false_hits = 0, src_best = 0, other = 0;
    double err_sum = 0, err_max = 0, gap_max = 0;
    for (int pass = 0; pass < 2; pass++) { /* 0: warm, 1: cold */
        for (int i = 0; i < QUERIES; i++) {
            float sim = 0;
            if (pass) sweep();
            struct timing a = timing_start();
            bool hit = sem_index_search(s, part, hitq + i * d, d, THRESHOLD, 1, key, &sim);
            timing_stop(a, &th[pass][i], &ch[pass][i]);
            if (pass || !check) continue;
            src_best += fbest[i] == src[i];
            if (fbest_sim[i] >= THRESHOLD) wanted++;
            if (!hit) continue;
            found++;
            uint32_t got;
            memcpy(&got, key, sizeof got);
            float fsim = dot(hitq + i * d, rows + (size_t)got * d, d);
            if (fbest_sim[i] >= THRESHOLD && got == fbest[i])
                right++;
            else if (got != fbest[i]) {
                other++;
                if (fbest_sim[i] - fsim > gap_max) gap_max = fbest_sim[i] - fsim;
            }
            double err = fabs((double)sim - fsim);
            err_sum += err;
            if (err > err_max) err_max = err;
        }
        for (int i = 0; i < QUERIES; i++) {
            float sim = 0;
            if (pass) sweep();
            struct timing a = timing_start();
            bool hit = sem_index_search(s, part, missq + i * d, d, THRESHOLD, 1, key, &sim);
            timing_stop(a, &tm[pass][i], &cm[pass][i]);
            if (!pass && hit) false_hits++;
        }
    }

    char what[48] = "";
    if (clustered) snprintf(what, sizeof what, " clustered at %.3f", clustered);
    printf("N=%zu D=%zu%s: fill %.2f s (%.0f adds/s); RSS +%.1f MB (%.0f B/entry), "
           "stats.bytes %.1f MB\n",
           n, d, what, fill_s, (double)n / fill_s, (double)(rss1 - rss0) / 1024,
           (double)(rss1 - rss0) * 1024 / (double)n, (double)st.bytes / (1 << 20));
    const char *names[2] = {"warm", "cold"};
    for (int pass = 0; pass < 2; pass++) {
        printf("  %s wall: hits median %.0f us p99 %.0f us | misses median %.0f us p99 %.0f us\n",
               names[pass], quantile(th[pass], QUERIES, 0.5), quantile(th[pass], QUERIES, 0.99),
               quantile(tm[pass], QUERIES, 0.5), quantile(tm[pass], QUERIES, 0.99));
        printf("  %s cpu:  hits median %.0f us p99 %.0f us | misses median %.0f us p99 %.0f us\n",
               names[pass], quantile(ch[pass], QUERIES, 0.5), quantile(ch[pass], QUERIES, 0.99),
               quantile(cm[pass], QUERIES, 0.5), quantile(cm[pass], QUERIES, 0.99));
    }
    if (check) {
        printf("  recall %d/%d (float best >= %.2f found as best; %d/%d float bests are the "
               "source row); %d hits returned another row, at most %.4f below the best; "
               "misses that hit: %d/%d\n",
               right, wanted, (double)THRESHOLD, src_best, QUERIES, other, gap_max, false_hits,
               QUERIES);
        printf("  |int8 - float cosine| on %d hits: mean %.5f max %.5f (brute force took %.1f s)\n",
               found, found ? err_sum / found : 0.0, err_max, brute_s);
    }
    fflush(stdout);
    sem_index_free(s);
    free(rows);
    free(scratch);
    free(hitq);
    free(missq);
}

static size_t parse_size(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0) {
        fprintf(stderr, "semantic_bench: bad number '%s'\n", s);
        exit(2);
    }
    return (size_t)v;
}

static double parse_ratio(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || !(v > 0 && v < 1)) {
        fprintf(stderr, "semantic_bench: bad cosine '%s'\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    size_t d = 1536, ns[16], nn = 0;
    double clustered = 0;
    int check = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--clustered") == 0)
            clustered = 0.9;
        else if (strcmp(argv[i], "--no-check") == 0)
            check = 0;
        else if (strncmp(argv[i], "--clustered=", 12) == 0)
            clustered = parse_ratio(argv[i] + 12);
        else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
            d = parse_size(argv[++i]);
        else if (nn < 16)
            ns[nn++] = parse_size(argv[i]);
    }
    if (!nn) {
        ns[0] = 10000;
        ns[1] = 100000;
        nn = 2;
    }
    sweep_buf = xcalloc(1, SWEEP_BYTES);
    for (size_t i = 0; i < nn; i++)
        run(ns[i], d, clustered, check);
    free(sweep_buf);
    return 0;
}
