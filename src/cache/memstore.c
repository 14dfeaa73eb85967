/* memstore: the in-memory response cache (see memstore.h). Each shard is a
 * chained hash table plus an intrusive LRU list under one mutex, with a
 * byte budget that counts every entry as the heap block it occupies and
 * the bucket array itself, so the figures in the stats are what the store
 * really holds (to within malloc's bookkeeping estimate below). */
#include "cache/memstore.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define MAX_SHARDS 64
#define SHARD_MIN_BYTES ((size_t)1 << 20) /* each shard gets at least ~1 MB */
#define SHARDED_FROM ((size_t)4 << 20)    /* below: one shard, exact LRU */
#define TABLE_MIN 16                      /* buckets; a power of two */
#define EXPIRED_SWEEP 8                   /* expired tail entries a put drops in passing */

struct entry {
    struct entry *hnext;       /* hash chain */
    struct entry *prev, *next; /* LRU list: prev is more recently used */
    int64_t expires_ms;
    size_t len;
    uint8_t key[32];
    char blob[]; /* len bytes, in the same heap block */
};

/* Aligned to a cache line so two workers on neighbouring shards do not
 * fight over one line. */
struct shard {
    alignas(64) pthread_mutex_t lock;
    struct entry **table;      /* NULL until the first put */
    size_t nbuckets;           /* 0 or a power of two >= TABLE_MIN */
    unsigned shift;            /* 64 - log2(nbuckets) */
    struct entry *head, *tail; /* most / least recently used */
    size_t count;
    size_t bytes; /* entries' and table's heap cost, never above budget */
    size_t budget;
    int64_t now_ms; /* the latest now_ms a get passed in: lets put drop expired entries */
    uint64_t evictions, expired;
};

struct cache_mem {
    struct shard *shards;
    void *shards_mem; /* the block shards was carved from */
    size_t nshards;   /* a power of two */
    size_t max_bytes;
};

/* ---- accounting ---- */

/* What glibc's malloc really takes for an n-byte request: an 8-byte header,
 * 16-byte granules, a 32-byte minimum; large blocks are mmapped whole
 * pages. Counting this rather than n keeps max_bytes honest for small
 * blobs, where the header and rounding are a visible share. */
static size_t heap_cost(size_t n)
{
    if (n >= (size_t)128 << 10) return (n + 16 + 4095) & ~(size_t)4095;
    size_t c = (n + 8 + 15) & ~(size_t)15;
    return c < 32 ? 32 : c;
}

static size_t entry_cost(size_t len)
{
    return heap_cost(sizeof(struct entry) + len);
}

static size_t table_cost(size_t nbuckets)
{
    return nbuckets ? heap_cost(nbuckets * sizeof(struct entry *)) : 0;
}

/* ---- hashing ---- */

/* Keys are SHA-256 digests, so any of their bits would do; folding all of
 * them and multiplying keeps the table sane for keys that are not. The
 * shard comes from the first byte, the bucket from the product's high
 * bits, so the two choices are independent. */
static uint64_t key_hash(const uint8_t key[32])
{
    uint64_t w[4];
    memcpy(w, key, sizeof w);
    return (w[0] ^ w[1] ^ w[2] ^ w[3]) * UINT64_C(0x9E3779B97F4A7C15);
}

static struct shard *shard_of(struct cache_mem *m, const uint8_t key[32])
{
    return &m->shards[key[0] & (m->nshards - 1)];
}

static struct entry **bucket(struct shard *s, uint64_t h)
{
    return &s->table[h >> s->shift];
}

/* The link that points at the entry for `key`, or at the NULL ending its
 * chain; NULL when the shard has no table yet. */
static struct entry **find(struct shard *s, const uint8_t key[32], uint64_t h)
{
    if (!s->nbuckets) return NULL;
    struct entry **link = bucket(s, h);
    while (*link && memcmp((*link)->key, key, 32) != 0) link = &(*link)->hnext;
    return link;
}

/* Rehashes into `nbuckets` buckets (0: frees the table). */
static void resize(struct shard *s, size_t nbuckets)
{
    struct entry **old = s->table;
    size_t old_n = s->nbuckets;
    s->bytes -= table_cost(old_n);
    s->table = nbuckets ? xcalloc(nbuckets, sizeof *s->table) : NULL;
    s->nbuckets = nbuckets;
    s->shift = 64;
    for (size_t n = nbuckets; n > 1; n >>= 1) s->shift--;
    s->bytes += table_cost(nbuckets);
    for (size_t i = 0; i < old_n; i++) {
        struct entry *e = old[i];
        while (e) {
            struct entry *next = e->hnext;
            struct entry **b = bucket(s, key_hash(e->key));
            e->hnext = *b;
            *b = e;
            e = next;
        }
    }
    free(old);
}

/* Gives room back after removals: the table shrinks when under 1/8 full
 * (it grows when over 1/1, so the two never chase each other). */
static void maybe_shrink(struct shard *s)
{
    if (s->nbuckets <= TABLE_MIN || s->count * 8 >= s->nbuckets) return;
    size_t n = TABLE_MIN;
    while (n < s->count * 2) n *= 2;
    resize(s, n);
}

/* ---- LRU list ---- */

static void lru_unlink(struct shard *s, struct entry *e)
{
    if (e->prev) e->prev->next = e->next;
    else s->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else s->tail = e->prev;
}

static void lru_push_head(struct shard *s, struct entry *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head) s->head->prev = e;
    else s->tail = e;
    s->head = e;
}

/* Takes `e` (found through `link`, or NULL: look it up) out of the shard
 * and onto `*dead`, to be freed once the lock is released. */
static void detach(struct shard *s, struct entry **link, struct entry *e, struct entry **dead)
{
    if (!link) {
        link = bucket(s, key_hash(e->key));
        while (*link != e) link = &(*link)->hnext;
    }
    *link = e->hnext;
    lru_unlink(s, e);
    s->count--;
    s->bytes -= entry_cost(e->len);
    e->hnext = *dead;
    *dead = e;
}

static void free_list(struct entry *e)
{
    while (e) {
        struct entry *next = e->hnext;
        free(e);
        e = next;
    }
}

/* ---- the store ---- */

static size_t shard_count(size_t max_bytes)
{
    if (max_bytes < SHARDED_FROM) return 1;
    size_t n = 1;
    while (n < MAX_SHARDS && max_bytes / (n * 2) >= SHARD_MIN_BYTES) n *= 2;
    return n;
}

struct cache_mem *cache_mem_new(size_t max_bytes)
{
    struct cache_mem *m = xcalloc(1, sizeof *m);
    m->max_bytes = max_bytes;
    m->nshards = shard_count(max_bytes);
    /* malloc only promises 16-byte alignment: carve the cache-line aligned
     * array out of a slightly larger block. */
    size_t align = alignof(struct shard);
    m->shards_mem = xcalloc(1, m->nshards * sizeof(struct shard) + align);
    size_t pad = (align - (uintptr_t)m->shards_mem % align) % align;
    m->shards = (void *)((char *)m->shards_mem + pad);
    for (size_t i = 0; i < m->nshards; i++) {
        struct shard *s = &m->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->budget = max_bytes / m->nshards;
        s->now_ms = INT64_MIN;
    }
    return m;
}

void cache_mem_free(struct cache_mem *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->nshards; i++) {
        struct shard *s = &m->shards[i];
        struct entry *e = s->head;
        while (e) {
            struct entry *next = e->next;
            free(e);
            e = next;
        }
        free(s->table);
        pthread_mutex_destroy(&s->lock);
    }
    free(m->shards_mem);
    free(m);
}

bool cache_mem_get(struct cache_mem *m, const uint8_t key[32], int64_t now_ms, struct arena *a,
                   char **blob, size_t *len)
{
    struct shard *s = shard_of(m, key);
    uint64_t h = key_hash(key);
    *blob = NULL;
    *len = 0;
    pthread_mutex_lock(&s->lock);
    if (now_ms > s->now_ms) s->now_ms = now_ms;
    struct entry **link = find(s, key, h);
    struct entry *e = link ? *link : NULL;
    if (!e) {
        pthread_mutex_unlock(&s->lock);
        return false;
    }
    if (e->expires_ms <= now_ms) {
        struct entry *dead = NULL;
        detach(s, link, e, &dead);
        s->expired++;
        pthread_mutex_unlock(&s->lock);
        free_list(dead);
        return false;
    }
    if (s->head != e) {
        lru_unlink(s, e);
        lru_push_head(s, e);
    }
    /* Copied under the lock: a concurrent put may replace and free `e` the
     * moment it is released. NUL-terminated for callers that want text. */
    char *copy = arena_alloc(a, e->len + 1);
    memcpy(copy, e->blob, e->len);
    copy[e->len] = '\0';
    *blob = copy;
    *len = e->len;
    pthread_mutex_unlock(&s->lock);
    return true;
}

bool cache_mem_put(struct cache_mem *m, const uint8_t key[32], const char *blob, size_t len,
                   int64_t expires_ms)
{
    struct shard *s = shard_of(m, key);
    /* The first test keeps entry_cost from overflowing; an entry must fit
     * next to the smallest table. */
    if (len > s->budget) return false;
    size_t cost = entry_cost(len);
    if (cost > s->budget || s->budget - cost < table_cost(TABLE_MIN)) return false;

    /* Built outside the lock: only the linking needs it. */
    struct entry *e = xmalloc(sizeof *e + len);
    memcpy(e->key, key, sizeof e->key);
    e->expires_ms = expires_ms;
    e->len = len;
    if (len) memcpy(e->blob, blob, len);
    uint64_t h = key_hash(key);
    struct entry *dead = NULL;

    pthread_mutex_lock(&s->lock);
    struct entry **link = find(s, key, h);
    if (link && *link) detach(s, link, *link, &dead);

    /* Expired entries at the cold end go first, counted as expiries; a
     * few per put keeps the time under the lock bounded. */
    for (int i = 0; i < EXPIRED_SWEEP && s->tail && s->tail->expires_ms <= s->now_ms; i++) {
        detach(s, NULL, s->tail, &dead);
        s->expired++;
    }
    /* Then the least recently used, until the entry fits, and so does the
     * bigger table when this entry would make it grow. */
    for (;;) {
        size_t grow = 0;
        if (s->count + 1 > s->nbuckets)
            grow = table_cost(s->nbuckets ? s->nbuckets * 2 : TABLE_MIN) - table_cost(s->nbuckets);
        if (s->bytes + cost + grow <= s->budget || !s->tail) break;
        struct entry *victim = s->tail;
        if (victim->expires_ms <= s->now_ms) s->expired++;
        else s->evictions++;
        detach(s, NULL, victim, &dead);
    }
    /* With the shard empty, only an oversized table can still be in the
     * way, and shrinking it to TABLE_MIN makes room (checked above). */
    maybe_shrink(s);
    if (s->count + 1 > s->nbuckets) resize(s, s->nbuckets ? s->nbuckets * 2 : TABLE_MIN);

    struct entry **b = bucket(s, h);
    e->hnext = *b;
    *b = e;
    lru_push_head(s, e);
    s->count++;
    s->bytes += cost;
    pthread_mutex_unlock(&s->lock);
    free_list(dead);
    return true;
}

bool cache_mem_remove(struct cache_mem *m, const uint8_t key[32])
{
    struct shard *s = shard_of(m, key);
    uint64_t h = key_hash(key);
    struct entry *dead = NULL;
    pthread_mutex_lock(&s->lock);
    struct entry **link = find(s, key, h);
    if (link && *link) {
        detach(s, link, *link, &dead);
        maybe_shrink(s);
    }
    pthread_mutex_unlock(&s->lock);
    free_list(dead);
    return dead != NULL;
}

size_t cache_mem_clear(struct cache_mem *m, bool (*match)(const char *blob, size_t len, void *arg),
                       void *arg)
{
    size_t removed = 0;
    for (size_t i = 0; i < m->nshards; i++) {
        struct shard *s = &m->shards[i];
        struct entry *dead = NULL;
        pthread_mutex_lock(&s->lock);
        /* `match` runs under the shard's lock: it must not call the store. */
        struct entry *e = s->head;
        while (e) {
            struct entry *next = e->next;
            if (!match || match(e->blob, e->len, arg)) {
                detach(s, NULL, e, &dead);
                removed++;
            }
            e = next;
        }
        if (!s->count) resize(s, 0);
        else maybe_shrink(s);
        pthread_mutex_unlock(&s->lock);
        free_list(dead);
    }
    return removed;
}

void cache_mem_stats_get(struct cache_mem *m, struct cache_mem_stats *out)
{
    memset(out, 0, sizeof *out);
    out->max_bytes = m->max_bytes;
    for (size_t i = 0; i < m->nshards; i++) {
        struct shard *s = &m->shards[i];
        pthread_mutex_lock(&s->lock);
        out->entries += s->count;
        out->bytes += s->bytes;
        out->evictions += s->evictions;
        out->expired += s->expired;
        pthread_mutex_unlock(&s->lock);
    }
}
