/* mesh: the mesh peer adapter's one helper beyond its ops (see mesh.c):
 * taking a peer's own x-aiproxy object out of an answer the caller has
 * already scanned, so that a whole answer costs one scan. */
#ifndef AIPROXY_PROVIDERS_MESH_H
#define AIPROXY_PROVIDERS_MESH_H

#include <stdbool.h>
#include <stddef.h>

#include "api/scan.h"
#include "core/arena.h"
#include "providers/provider.h"

/* When `rf` (scan_response of `text`) found a whole relay as the root's
 * last member, writes the text without it (arena) to *out / *out_len,
 * fills `r` and returns true; else returns false and leaves all as is. */
bool mesh_relay_take(struct arena *a, const char *text, size_t len, const struct resp_facts *rf,
                     char **out, size_t *out_len, struct provider_relay *r);

#endif
