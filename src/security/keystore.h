/* keystore: managed API keys, created and revoked at run time through the
 * admin API, kept in the ledger's SQLite database (table api_keys; the
 * schema is migrated by budget/ledger.c). Only an HMAC-SHA256 of each key
 * under a random per-database salt is stored; the plain key exists once,
 * in the answer to its creation. Every key is loaded into memory at open;
 * lookups compare the presented key's HMAC with every stored one in
 * constant time (CRYPTO_memcmp) and never touch the disk. Creation and
 * revocation write through to the database before they return, and take
 * effect at once for every worker. Thread-safe (one mutex). */
#ifndef AIPROXY_SECURITY_KEYSTORE_H
#define AIPROXY_SECURITY_KEYSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/money.h"

struct arena;

#define KEYSTORE_HASH_LEN 32
#define KEYSTORE_SALT_LEN 32
#define KEYSTORE_KEY_PREFIX "sk-aip-"
#define KEYSTORE_KEY_LEN (7 + 48) /* prefix + 24 random bytes in hex */
#define KEYSTORE_ID_LEN (4 + 16)  /* "key_" + 8 random bytes in hex */
#define KEYSTORE_MAX_KEYS 100000
#define KEYSTORE_MAX_MODELS 64

/* What a key may do (never its secret). Strings are owned by whoever
 * filled it: the arena for keystore_find, the store for callbacks. */
struct key_view {
    char id[KEYSTORE_ID_LEN + 1];
    const char *name;
    const char *tenant; /* NULL when none */
    bool admin;
    const char *const *models; /* allowed models or aliases; n_models == 0: all */
    size_t n_models;
    nanos_t daily_limit, monthly_limit; /* 0 = none */
    int rate_limit_per_hour, requests_per_minute, tokens_per_minute; /* 0 = none */
    int64_t expires_at; /* unix seconds, 0 = never */
    int64_t created_at;
    int64_t revoked_at; /* 0 = active */
};

/* What to create: the same fields (id, created_at, revoked_at ignored). */
struct keystore;

/* Opens the store on the (already migrated) database at `path`, creating
 * the salt on first use, and loads every key. NULL and `err` on failure. */
struct keystore *keystore_open(const char *path, char *err, size_t errcap);
void keystore_close(struct keystore *ks);

/* HMAC-SHA256(salt, key). Pure. */
void keys_hash(const unsigned char *salt, size_t salt_len, const char *key,
               unsigned char out[KEYSTORE_HASH_LEN]);

/* Generates a fresh key and id (random). Pure apart from the RNG. */
void keys_generate(char key[KEYSTORE_KEY_LEN + 1], char id[KEYSTORE_ID_LEN + 1]);

/* Finds the active or revoked key equal to `presented`, comparing against
 * every stored key. Returns an arena copy, or NULL when none matches. The
 * caller checks revoked_at and expires_at. */
struct key_view *keystore_find(struct keystore *ks, const char *presented, struct arena *a);

/* Creates a key from `spec` (name required). Writes the plain key (shown
 * once) and the id, stores only the hash. Returns 0, or -1 with `err`
 * (database error, too many keys). */
int keystore_create(struct keystore *ks, const struct key_view *spec, int64_t now_s,
                    char key_out[KEYSTORE_KEY_LEN + 1], char id_out[KEYSTORE_ID_LEN + 1],
                    char *err, size_t errcap);

/* Revokes key `id` at once. Returns 0, 1 when no active key has that id,
 * -1 on a database error. */
int keystore_revoke(struct keystore *ks, const char *id, int64_t now_s);

/* Calls `cb` for every key, revoked ones included (under the store's lock). */
void keystore_each(struct keystore *ks, void (*cb)(void *ctx, const struct key_view *k),
                   void *ctx);

/* Copies the key `id` into `a`; NULL when unknown. */
struct key_view *keystore_get(struct keystore *ks, const char *id, struct arena *a);

/* ---- shared keys (cluster.redis, SPEC section 6) ----
 * Keys created through any node of a cluster live in the shared store as
 * HMACs under a salt every node reads from it; each node keeps a copy of
 * them here, next to its own SQLite keys, so that lookups stay in memory.
 * keystore_revoke only revokes SQLite keys: a shared key is revoked in
 * the shared store, then put here again. */
void keystore_set_shared_salt(struct keystore *ks, const unsigned char *salt, size_t len);
/* HMAC of `presented` under the shared salt; false while it is unknown. */
bool keystore_shared_hash(struct keystore *ks, const char *presented,
                          unsigned char out[KEYSTORE_HASH_LEN]);
/* Adds, or replaces (same id), one shared key. */
void keystore_put_shared(struct keystore *ks, const struct key_view *v,
                         const unsigned char hash[KEYSTORE_HASH_LEN]);
/* Replaces every shared key with these. */
void keystore_replace_shared(struct keystore *ks, const struct key_view *views,
                             const unsigned char (*hashes)[KEYSTORE_HASH_LEN], size_t n);
/* A shared key by id, with its hash (for revocation); NULL when none. */
struct key_view *keystore_get_shared(struct keystore *ks, const char *id,
                                     unsigned char hash[KEYSTORE_HASH_LEN], struct arena *a);

#endif
