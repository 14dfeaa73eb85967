/* promtext: merges several nodes' Prometheus text expositions into one,
 * each sample labelled node="<id>" (GET /aiproxy/mesh/metrics). Families
 * keep one HELP and TYPE line and all their samples together, whatever
 * node they came from, so the result is a valid exposition; a histogram's
 * _bucket/_sum/_count samples stay in their family. Pure, bounded (input
 * per node, families). */
#ifndef AIPROXY_MESH_PROMTEXT_H
#define AIPROXY_MESH_PROMTEXT_H

#include <stdbool.h>
#include <stddef.h>

#define PROM_MAX_INPUT (8 * 1024 * 1024) /* one node's exposition; the rest is ignored */
#define PROM_MAX_FAMILIES 2048

struct prom_merge;

struct prom_merge *prom_merge_new(void);
void prom_merge_free(struct prom_merge *m);

/* Adds one node's exposition, its samples labelled node="`node`" (the id
 * is escaped). Lines that are not samples, HELP or TYPE are dropped. */
void prom_merge_add(struct prom_merge *m, const char *node, const char *text, size_t len);

/* Adds one sample line as it is (already labelled), to family `family`
 * declared with `help` and `type` when new. */
void prom_merge_sample(struct prom_merge *m, const char *family, const char *help, const char *type,
                       const char *line);

/* The merged text (malloc'ed; the caller frees it). */
char *prom_merge_render(struct prom_merge *m, size_t *len);

#endif
