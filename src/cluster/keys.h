/* keys: managed API keys in the shared store (SPEC section 6: "managed
 * keys created on one node are valid on all"). A key's record is kept in
 * the hash P keys under the hex HMAC-SHA256 of the key with the cluster's
 * salt (P keys:salt): never the key itself. Pure: the record's JSON form
 * (hashes are written in hex with core/str.h's str_hex); the watcher (cluster/store.c) and the admin API
 * do the I/O. */
#ifndef AIPROXY_CLUSTER_KEYS_H
#define AIPROXY_CLUSTER_KEYS_H

#include <stddef.h>

#include "security/keystore.h"

struct arena;

#define SHARED_SALT_HEX 64 /* 32 bytes */

/* The record of `v` (no secret: the key's hash is the field name). */
char *shared_key_encode(const struct key_view *v); /* heap; free() */
/* Reads a record into `out` (strings in `a`). Returns 0, or -1 when it is
 * not a valid record (then the entry is skipped). */
int shared_key_decode(const char *json, size_t len, struct key_view *out, struct arena *a);

#endif
