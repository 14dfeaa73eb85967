/* mesh: the mesh peer adapter's one helper beyond its ops (see mesh.c):
 * taking a peer's own x-aiproxy object out of an answer the caller has
 * already scanned, so that a whole answer costs one scan. */
#ifndef AIPROXY_PROVIDERS_MESH_H
#define AIPROXY_PROVIDERS_MESH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/scan.h"
#include "core/arena.h"
#include "providers/provider.h"

/* When `rf` (scan_response of `text`) found a whole relay as the root's
 * last member, writes the text without it (arena) to *out / *out_len,
 * fills `r` and returns true; else returns false and leaves all as is. */
bool mesh_relay_take(struct arena *a, const char *text, size_t len, const struct resp_facts *rf,
                     char **out, size_t *out_len, struct provider_relay *r);

/* The relay object of a peer of this build ends its answer and carries the
 * peer's counts: found from the tail, the answer needs no scan here. */
#define MESH_RELAY_TAIL_MAX 2048

/* When `text` is a JSON object whose last member is a relay object with
 * its usage (found within MESH_RELAY_TAIL_MAX bytes of the end), writes the
 * text without it (arena) to *out / *out_len, fills `r`, and fills `rf` as
 * scan_response of *out would have (usage from the relay, close_off,
 * root_empty; no error) and returns true. Else returns false and changes
 * nothing: the caller scans. The rest of the answer is not validated: it
 * comes from an authenticated peer, which validated its provider's answer. */
bool mesh_relay_tail(struct arena *a, const char *text, size_t len, struct resp_facts *rf,
                     char **out, size_t *out_len, struct provider_relay *r);

#endif
