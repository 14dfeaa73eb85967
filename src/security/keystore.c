/* keystore: in-memory copy of the api_keys table, written through. */
#include "security/keystore.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/str.h"
#include "security/digest.h"

struct stored_key {
    struct key_view v; /* strings below are heap-owned */
    char *name, *tenant;
    char **models;
    unsigned char hash[KEYSTORE_HASH_LEN];
    bool shared; /* from the shared store: hashed with the shared salt, not in SQLite */
};

struct keystore {
    pthread_mutex_t lock;
    sqlite3 *db;
    unsigned char salt[KEYSTORE_SALT_LEN];
    struct hmac_key salt_key; /* HMAC state for `salt`; set once at open, read without the lock */
    struct hmac_key shared_key; /* the shared store's salt; under the lock */
    bool have_shared_salt;
    struct stored_key *keys;
    size_t n, cap;
};

/* ---- pure parts ---- */

void keys_hash(const unsigned char *salt, size_t salt_len, const char *key,
               unsigned char out[KEYSTORE_HASH_LEN])
{
    struct hmac_key k;
    hmac_key_init(&k, salt, salt_len);
    hmac_sha256(&k, key, strlen(key), out);
    hmac_key_free(&k);
}

void keys_generate(char key[KEYSTORE_KEY_LEN + 1], char id[KEYSTORE_ID_LEN + 1])
{
    unsigned char r[24], i8[8];
    if (RAND_bytes(r, sizeof r) != 1 || RAND_bytes(i8, sizeof i8) != 1) abort(); /* no RNG: no keys */
    memcpy(key, KEYSTORE_KEY_PREFIX, 7);
    str_hex(r, sizeof r, key + 7);
    memcpy(id, "key_", 4);
    str_hex(i8, sizeof i8, id + 4);
    OPENSSL_cleanse(r, sizeof r);
}

/* ---- models list encoding: names joined by '\n' (names have no control bytes) ---- */

static char *join_models(const char *const *models, size_t n)
{
    if (n == 0) return NULL;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) len += strlen(models[i]) + 1;
    char *s = xmalloc(len), *p = s;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(models[i]);
        memcpy(p, models[i], l);
        p += l;
        *p++ = i + 1 < n ? '\n' : '\0';
    }
    return s;
}

static void split_models(const char *text, struct stored_key *k)
{
    k->models = NULL;
    k->v.n_models = 0;
    if (!text || !*text) return;
    const char *s = text;
    while (*s && k->v.n_models < KEYSTORE_MAX_MODELS) {
        const char *e = strchr(s, '\n');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        k->models = xrealloc(k->models, (k->v.n_models + 1) * sizeof *k->models);
        k->models[k->v.n_models++] = xstrndup(s, l);
        if (!e) break;
        s = e + 1;
    }
}

static void stored_free(struct stored_key *k)
{
    free(k->name);
    free(k->tenant);
    for (size_t i = 0; i < k->v.n_models; i++) free(k->models[i]);
    free(k->models);
}

static void fix_pointers(struct stored_key *k)
{
    k->v.name = k->name;
    k->v.tenant = k->tenant;
    k->v.models = (const char *const *)k->models;
}

static struct key_view *copy_view(const struct stored_key *k, struct arena *a)
{
    struct key_view *v = arena_alloc(a, sizeof *v);
    *v = k->v;
    v->name = arena_strdup(a, k->name);
    v->tenant = k->tenant ? arena_strdup(a, k->tenant) : NULL;
    if (k->v.n_models) {
        const char **m = arena_alloc(a, k->v.n_models * sizeof *m);
        for (size_t i = 0; i < k->v.n_models; i++) m[i] = arena_strdup(a, k->models[i]);
        v->models = m;
    } else {
        v->models = NULL;
    }
    return v;
}

/* ---- open, load ---- */

static int load_salt(struct keystore *ks, char *err, size_t errcap)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (sqlite3_prepare_v2(ks->db, "SELECT value FROM meta WHERE name = 'key_salt'", -1, &st,
                           NULL) != SQLITE_OK)
        goto out;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == KEYSTORE_SALT_LEN) {
        memcpy(ks->salt, sqlite3_column_blob(st, 0), KEYSTORE_SALT_LEN);
        rc = 0;
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (RAND_bytes(ks->salt, sizeof ks->salt) != 1) goto out;
    /* OR IGNORE then re-read: two processes opening a fresh file agree. */
    if (sqlite3_prepare_v2(ks->db, "INSERT OR IGNORE INTO meta (name, value) VALUES ('key_salt', ?)",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_blob(st, 1, ks->salt, sizeof ks->salt, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) goto out;
    sqlite3_finalize(st);
    st = NULL;
    return load_salt(ks, err, errcap);
out:
    if (rc != 0) snprintf(err, errcap, "key salt: %s", sqlite3_errmsg(ks->db));
    sqlite3_finalize(st);
    return rc;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

static int load_keys(struct keystore *ks, char *err, size_t errcap)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(ks->db,
                           "SELECT id, name, hash, tenant, role, models, daily_limit, monthly_limit,"
                           " rate_limit_per_hour, requests_per_minute, tokens_per_minute,"
                           " expires_at, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errcap, "api keys: %s", sqlite3_errmsg(ks->db));
        return -1;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 2) != KEYSTORE_HASH_LEN) continue;
        if (ks->n == ks->cap) {
            ks->cap = ks->cap ? ks->cap * 2 : 16;
            ks->keys = xrealloc(ks->keys, ks->cap * sizeof *ks->keys);
        }
        struct stored_key *k = &ks->keys[ks->n++];
        memset(k, 0, sizeof *k);
        snprintf(k->v.id, sizeof k->v.id, "%s", col_text(st, 0) ? col_text(st, 0) : "");
        k->name = xstrdup(col_text(st, 1) ? col_text(st, 1) : "");
        memcpy(k->hash, sqlite3_column_blob(st, 2), KEYSTORE_HASH_LEN);
        k->tenant = col_text(st, 3) ? xstrdup(col_text(st, 3)) : NULL;
        k->v.admin = col_text(st, 4) && strcmp(col_text(st, 4), "admin") == 0;
        split_models(col_text(st, 5), k);
        k->v.daily_limit = sqlite3_column_int64(st, 6);
        k->v.monthly_limit = sqlite3_column_int64(st, 7);
        k->v.rate_limit_per_hour = sqlite3_column_int(st, 8);
        k->v.requests_per_minute = sqlite3_column_int(st, 9);
        k->v.tokens_per_minute = sqlite3_column_int(st, 10);
        k->v.expires_at = sqlite3_column_int64(st, 11);
        k->v.created_at = sqlite3_column_int64(st, 12);
        k->v.revoked_at = sqlite3_column_int64(st, 13);
        fix_pointers(k);
    }
    sqlite3_finalize(st);
    return 0;
}

struct keystore *keystore_open(const char *path, char *err, size_t errcap)
{
    struct keystore *ks = xcalloc(1, sizeof *ks);
    pthread_mutex_init(&ks->lock, NULL);
    if (sqlite3_open_v2(path, &ks->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, errcap, "cannot open %s: %s", path,
                 ks->db ? sqlite3_errmsg(ks->db) : "out of memory");
        keystore_close(ks);
        return NULL;
    }
    sqlite3_busy_timeout(ks->db, 5000);
    if (load_salt(ks, err, errcap) != 0 || load_keys(ks, err, errcap) != 0) {
        keystore_close(ks);
        return NULL;
    }
    hmac_key_init(&ks->salt_key, ks->salt, sizeof ks->salt);
    return ks;
}

void keystore_close(struct keystore *ks)
{
    if (!ks) return;
    for (size_t i = 0; i < ks->n; i++) stored_free(&ks->keys[i]);
    free(ks->keys);
    sqlite3_close(ks->db);
    if (ks->salt_key.inner) hmac_key_free(&ks->salt_key);
    if (ks->have_shared_salt) hmac_key_free(&ks->shared_key);
    OPENSSL_cleanse(ks->salt, sizeof ks->salt);
    pthread_mutex_destroy(&ks->lock);
    free(ks);
}

/* ---- lookups ---- */

struct key_view *keystore_find(struct keystore *ks, const char *presented, struct arena *a)
{
    if (!presented || !*presented) return NULL;
    unsigned char want[KEYSTORE_HASH_LEN], want_shared[KEYSTORE_HASH_LEN];
    hmac_sha256(&ks->salt_key, presented, strlen(presented), want);
    pthread_mutex_lock(&ks->lock);
    if (ks->have_shared_salt)
        hmac_sha256(&ks->shared_key, presented, strlen(presented), want_shared);
    const struct stored_key *found = NULL;
    /* Every key is compared, so the time taken does not say which matched. */
    for (size_t i = 0; i < ks->n; i++) {
        const unsigned char *w = ks->keys[i].shared ? want_shared : want;
        if ((!ks->keys[i].shared || ks->have_shared_salt) &&
            CRYPTO_memcmp(w, ks->keys[i].hash, KEYSTORE_HASH_LEN) == 0 && !found)
            found = &ks->keys[i];
    }
    struct key_view *v = found ? copy_view(found, a) : NULL;
    pthread_mutex_unlock(&ks->lock);
    return v;
}

struct key_view *keystore_get(struct keystore *ks, const char *id, struct arena *a)
{
    pthread_mutex_lock(&ks->lock);
    struct key_view *v = NULL;
    for (size_t i = 0; i < ks->n && !v; i++)
        if (strcmp(ks->keys[i].v.id, id) == 0) v = copy_view(&ks->keys[i], a);
    pthread_mutex_unlock(&ks->lock);
    return v;
}

void keystore_each(struct keystore *ks, void (*cb)(void *ctx, const struct key_view *k),
                   void *ctx)
{
    pthread_mutex_lock(&ks->lock);
    for (size_t i = 0; i < ks->n; i++) cb(ctx, &ks->keys[i].v);
    pthread_mutex_unlock(&ks->lock);
}

/* ---- changes ---- */

int keystore_create(struct keystore *ks, const struct key_view *spec, int64_t now_s,
                    char key_out[KEYSTORE_KEY_LEN + 1], char id_out[KEYSTORE_ID_LEN + 1],
                    char *err, size_t errcap)
{
    struct stored_key k;
    memset(&k, 0, sizeof k);
    k.v = *spec;
    keys_generate(key_out, id_out);
    snprintf(k.v.id, sizeof k.v.id, "%s", id_out);
    k.v.created_at = now_s;
    k.v.revoked_at = 0;
    k.name = xstrdup(spec->name ? spec->name : "");
    k.tenant = spec->tenant ? xstrdup(spec->tenant) : NULL;
    char *models = join_models(spec->models, spec->n_models);
    split_models(models, &k);
    fix_pointers(&k);

    hmac_sha256(&ks->salt_key, key_out, strlen(key_out), k.hash);
    pthread_mutex_lock(&ks->lock);
    int rc = -1;
    sqlite3_stmt *st = NULL;
    if (ks->n >= KEYSTORE_MAX_KEYS) {
        snprintf(err, errcap, "the store already holds %d keys", KEYSTORE_MAX_KEYS);
        goto out;
    }
    if (sqlite3_prepare_v2(ks->db,
                           "INSERT INTO api_keys (id, name, hash, tenant, role, models, daily_limit,"
                           " monthly_limit, rate_limit_per_hour, requests_per_minute,"
                           " tokens_per_minute, expires_at, created_at)"
                           " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        goto dberr;
    sqlite3_bind_text(st, 1, k.v.id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, k.name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, k.hash, KEYSTORE_HASH_LEN, SQLITE_STATIC);
    if (k.tenant) sqlite3_bind_text(st, 4, k.tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, k.v.admin ? "admin" : "user", -1, SQLITE_STATIC);
    if (models) sqlite3_bind_text(st, 6, models, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, k.v.daily_limit);
    sqlite3_bind_int64(st, 8, k.v.monthly_limit);
    sqlite3_bind_int(st, 9, k.v.rate_limit_per_hour);
    sqlite3_bind_int(st, 10, k.v.requests_per_minute);
    sqlite3_bind_int(st, 11, k.v.tokens_per_minute);
    if (k.v.expires_at) sqlite3_bind_int64(st, 12, k.v.expires_at);
    sqlite3_bind_int64(st, 13, now_s);
    if (sqlite3_step(st) != SQLITE_DONE) goto dberr;
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? ks->cap * 2 : 16;
        ks->keys = xrealloc(ks->keys, ks->cap * sizeof *ks->keys);
    }
    ks->keys[ks->n++] = k;
    rc = 0;
    goto out;
dberr:
    snprintf(err, errcap, "cannot store the key: %s", sqlite3_errmsg(ks->db));
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&ks->lock);
    free(models);
    if (rc != 0) {
        stored_free(&k);
        OPENSSL_cleanse(key_out, KEYSTORE_KEY_LEN);
        key_out[0] = '\0';
    }
    return rc;
}

int keystore_revoke(struct keystore *ks, const char *id, int64_t now_s)
{
    pthread_mutex_lock(&ks->lock);
    struct stored_key *k = NULL;
    for (size_t i = 0; i < ks->n && !k; i++)
        if (!ks->keys[i].shared && strcmp(ks->keys[i].v.id, id) == 0 &&
            ks->keys[i].v.revoked_at == 0)
            k = &ks->keys[i];
    int rc = 1;
    if (k) {
        sqlite3_stmt *st = NULL;
        rc = -1;
        if (sqlite3_prepare_v2(ks->db, "UPDATE api_keys SET revoked_at = ? WHERE id = ?", -1, &st,
                               NULL) == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, now_s > 0 ? now_s : 1);
            sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_DONE) {
                k->v.revoked_at = now_s > 0 ? now_s : 1;
                rc = 0;
            }
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&ks->lock);
    return rc;
}

/* ---- shared keys ---- */

void keystore_set_shared_salt(struct keystore *ks, const unsigned char *salt, size_t len)
{
    pthread_mutex_lock(&ks->lock);
    if (!ks->have_shared_salt) {
        hmac_key_init(&ks->shared_key, salt, len);
        ks->have_shared_salt = true;
    }
    pthread_mutex_unlock(&ks->lock);
}

bool keystore_shared_hash(struct keystore *ks, const char *presented,
                          unsigned char out[KEYSTORE_HASH_LEN])
{
    pthread_mutex_lock(&ks->lock);
    bool ok = ks->have_shared_salt;
    if (ok) hmac_sha256(&ks->shared_key, presented, strlen(presented), out);
    pthread_mutex_unlock(&ks->lock);
    return ok;
}

static void fill_shared(struct stored_key *k, const struct key_view *v,
                        const unsigned char hash[KEYSTORE_HASH_LEN])
{
    memset(k, 0, sizeof *k);
    k->v = *v;
    k->name = xstrdup(v->name ? v->name : "");
    k->tenant = v->tenant ? xstrdup(v->tenant) : NULL;
    char *models = join_models(v->models, v->n_models);
    split_models(models, k);
    free(models);
    memcpy(k->hash, hash, KEYSTORE_HASH_LEN);
    k->shared = true;
    fix_pointers(k);
}

/* Adds or replaces (same id) one shared key; the lock is held. */
static void put_shared_locked(struct keystore *ks, const struct key_view *v,
                              const unsigned char hash[KEYSTORE_HASH_LEN])
{
    for (size_t i = 0; i < ks->n; i++)
        if (ks->keys[i].shared && strcmp(ks->keys[i].v.id, v->id) == 0) {
            stored_free(&ks->keys[i]);
            fill_shared(&ks->keys[i], v, hash);
            return;
        }
    if (ks->n >= KEYSTORE_MAX_KEYS) return;
    if (ks->n == ks->cap) {
        ks->cap = ks->cap ? ks->cap * 2 : 16;
        ks->keys = xrealloc(ks->keys, ks->cap * sizeof *ks->keys);
    }
    fill_shared(&ks->keys[ks->n++], v, hash);
}

void keystore_put_shared(struct keystore *ks, const struct key_view *v,
                         const unsigned char hash[KEYSTORE_HASH_LEN])
{
    pthread_mutex_lock(&ks->lock);
    put_shared_locked(ks, v, hash);
    pthread_mutex_unlock(&ks->lock);
}

void keystore_replace_shared(struct keystore *ks, const struct key_view *views,
                             const unsigned char (*hashes)[KEYSTORE_HASH_LEN], size_t n)
{
    pthread_mutex_lock(&ks->lock);
    size_t w = 0;
    for (size_t i = 0; i < ks->n; i++) {
        if (ks->keys[i].shared) stored_free(&ks->keys[i]);
        else ks->keys[w++] = ks->keys[i];
    }
    ks->n = w;
    for (size_t i = 0; i < n; i++) put_shared_locked(ks, &views[i], hashes[i]);
    pthread_mutex_unlock(&ks->lock);
}

struct key_view *keystore_get_shared(struct keystore *ks, const char *id,
                                     unsigned char hash[KEYSTORE_HASH_LEN], struct arena *a)
{
    pthread_mutex_lock(&ks->lock);
    struct key_view *v = NULL;
    for (size_t i = 0; i < ks->n && !v; i++)
        if (ks->keys[i].shared && strcmp(ks->keys[i].v.id, id) == 0) {
            v = copy_view(&ks->keys[i], a);
            memcpy(hash, ks->keys[i].hash, KEYSTORE_HASH_LEN);
        }
    pthread_mutex_unlock(&ks->lock);
    return v;
}
