/* semantic: the node's index of embedding vectors for the semantic cache
 * (SPEC section 7): for a request's embedding, the most similar stored
 * answer of the same partition (cache/key.h: same scope, model, endpoint
 * and parameters), by cosine similarity.
 *
 * A flat index, scanned in full: each vector is kept quantised to int8
 * (scaled by its largest component, with 1/norm beside it) and a 256-bit
 * SimHash sketch; a search ranks the partition's rows by the sketches'
 * Hamming distance (popcount), then scores the best 64 exactly on the int8
 * vectors. Cost grows linearly with entries (bench/RESULTS.md: 10k and 100k
 * of 1536 dimensions). Dimensions: 1 to 8192, fixed by the first vector
 * until sem_index_clear. Expired rows stay until removed, replaced or
 * dropped as the oldest; only the single best match is returned (a caller
 * whose entry for it is gone removes it and counts a miss). Thread-safe:
 * searches share a read lock, adds and removes take it exclusively. */
#ifndef AIPROXY_CACHE_SEMANTIC_H
#define AIPROXY_CACHE_SEMANTIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sem_index;

/* At most max_entries vectors: adding one more drops the oldest. */
struct sem_index *sem_index_new(size_t max_entries);
void sem_index_free(struct sem_index *s); /* NULL is ignored */

/* Adds the vector of the answer stored under `key` (replacing an earlier
 * vector for that key). The first vector fixes the index's dimensions; a
 * vector of other dimensions, of zero length, or with a NaN/inf is refused
 * (-1). Returns 0. */
int sem_index_add(struct sem_index *s, const uint8_t partition[32], const uint8_t key[32],
                  const float *vec, size_t dims, int64_t expires_ms);

/* The most similar live vector (expires_ms > now_ms) of `partition` whose
 * cosine similarity to `vec` is at least `threshold`: its key and
 * similarity. Returns false when there is none (or dims differ). */
bool sem_index_search(struct sem_index *s, const uint8_t partition[32], const float *vec,
                      size_t dims, float threshold, int64_t now_ms, uint8_t key_out[32],
                      float *similarity_out);

void sem_index_remove(struct sem_index *s, const uint8_t key[32]);
void sem_index_clear(struct sem_index *s);

struct sem_index_stats {
    uint64_t entries, bytes, dims;
};
void sem_index_stats_get(struct sem_index *s, struct sem_index_stats *out);

#endif
