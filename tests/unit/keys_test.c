/* keys_test: key hashing (HMAC under a salt), generation, and the managed
 * key store on a real database: created keys found, only hashes stored,
 * revocation immediate and durable, the salt kept across reopenings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "budget/ledger.h"
#include "core/arena.h"
#include "core/log.h"
#include "security/auth.h"
#include "security/digest.h"
#include "security/keystore.h"

static char dir[64], path[128];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/keys_test_XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(path, sizeof path, "%s/costs.db", dir);
    log_configure(LOG_ERROR, false, "stderr");
    char err[256];
    struct ledger *l = ledger_open(path, err, sizeof err); /* creates the schema */
    if (!l) return -1;
    ledger_close(l);
    return 0;
}

static int teardown(void **state)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_hash(void **state)
{
    unsigned char a[32], b[32], c[32];
    const unsigned char s1[4] = "salt", s2[4] = "SALT";
    keys_hash(s1, 4, "sk-secret", a);
    keys_hash(s1, 4, "sk-secret", b);
    keys_hash(s2, 4, "sk-secret", c);
    assert_memory_equal(a, b, 32);
    assert_memory_not_equal(a, c, 32); /* the salt matters */
    keys_hash(s1, 4, "sk-secreT", c);
    assert_memory_not_equal(a, c, 32);
    /* RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?") */
    static const unsigned char want[32] = {
        0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95, 0x75, 0xc7,
        0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43};
    keys_hash((const unsigned char *)"Jefe", 4, "what do ya want for nothing?", a);
    assert_memory_equal(a, want, 32);
}

/* The digest module against published vectors, including the paths the
 * keystore does not take: an empty message and an HMAC key longer than a
 * block (hashed first), and a shared key used twice. */
static void test_digest_vectors(void **state)
{
    unsigned char out[32];
    static const unsigned char abc[32] = { /* FIPS 180-2: SHA-256("abc") */
        0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
        0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    digest_sha256("abc", 3, out);
    assert_memory_equal(out, abc, 32);
    static const unsigned char empty[32] = {
        0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
        0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};
    digest_sha256("", 0, out);
    assert_memory_equal(out, empty, 32);
    /* RFC 4231 test case 6: a 131-byte key of 0xaa */
    unsigned char key[131];
    memset(key, 0xaa, sizeof key);
    static const unsigned char tc6[32] = {
        0x60, 0xe4, 0x31, 0x59, 0x1e, 0xe0, 0xb6, 0x7f, 0x0d, 0x8a, 0x26, 0xaa, 0xcb, 0xf5, 0xb7, 0x7f,
        0x8e, 0x0b, 0xc6, 0x21, 0x37, 0x28, 0xc5, 0x14, 0x05, 0x46, 0x04, 0x0f, 0x0e, 0xe3, 0x7f, 0x54};
    struct hmac_key k;
    hmac_key_init(&k, key, sizeof key);
    const char *msg = "Test Using Larger Than Block-Size Key - Hash Key First";
    for (int i = 0; i < 2; i++) { /* the precomputed states are not used up */
        memset(out, 0, sizeof out);
        hmac_sha256(&k, msg, strlen(msg), out);
        assert_memory_equal(out, tc6, 32);
    }
    hmac_key_free(&k);
}

static void test_generate(void **state)
{
    char k1[KEYSTORE_KEY_LEN + 1], k2[KEYSTORE_KEY_LEN + 1], i1[KEYSTORE_ID_LEN + 1],
        i2[KEYSTORE_ID_LEN + 1];
    keys_generate(k1, i1);
    keys_generate(k2, i2);
    assert_int_equal(strlen(k1), KEYSTORE_KEY_LEN);
    assert_int_equal(strlen(i1), KEYSTORE_ID_LEN);
    assert_memory_equal(k1, "sk-aip-", 7);
    assert_memory_equal(i1, "key_", 4);
    assert_string_not_equal(k1, k2);
    assert_string_not_equal(i1, i2);
}

static void test_presented_key(void **state)
{
    assert_string_equal(auth_presented_key("Bearer abc", NULL), "abc");
    assert_string_equal(auth_presented_key("bearer   abc", NULL), "abc");
    assert_string_equal(auth_presented_key(NULL, "xyz"), "xyz");
    assert_null(auth_presented_key("Basic abc", NULL));
    assert_null(auth_presented_key(NULL, ""));
}

static bool db_contains(const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return memmem(buf, n, needle, strlen(needle)) != NULL;
}

static void test_store_lifecycle(void **state)
{
    char err[256];
    struct keystore *ks = keystore_open(path, err, sizeof err);
    assert_non_null(ks);
    const char *models[] = {"gpt-test", "cheap"};
    struct key_view spec = {.name = "team-a", .tenant = "acme", .models = models, .n_models = 2,
                            .daily_limit = 5, .rate_limit_per_hour = 7};
    char key[KEYSTORE_KEY_LEN + 1], id[KEYSTORE_ID_LEN + 1];
    assert_int_equal(keystore_create(ks, &spec, 1000, key, id, err, sizeof err), 0);
    struct arena a;
    arena_init(&a);
    struct key_view *v = keystore_find(ks, key, &a);
    assert_non_null(v);
    assert_string_equal(v->id, id);
    assert_string_equal(v->name, "team-a");
    assert_string_equal(v->tenant, "acme");
    assert_int_equal(v->n_models, 2);
    assert_string_equal(v->models[1], "cheap");
    assert_int_equal(v->daily_limit, 5);
    assert_int_equal(v->rate_limit_per_hour, 7);
    assert_int_equal(v->revoked_at, 0);
    assert_null(keystore_find(ks, "sk-aip-wrong", &a));
    keystore_close(ks);
    /* Only the hash is on disk (WAL checkpointed or not). */
    assert_false(db_contains(key));

    ks = keystore_open(path, err, sizeof err); /* same salt: the key still works */
    assert_non_null(ks);
    v = keystore_find(ks, key, &a);
    assert_non_null(v);
    assert_int_equal(keystore_revoke(ks, id, 2000), 0);
    assert_int_equal(keystore_revoke(ks, id, 2001), 1); /* already revoked */
    assert_int_equal(keystore_revoke(ks, "key_nope", 2001), 1);
    v = keystore_find(ks, key, &a);
    assert_non_null(v);
    assert_int_equal(v->revoked_at, 2000); /* revoked at once */
    keystore_close(ks);
    ks = keystore_open(path, err, sizeof err);
    v = keystore_find(ks, key, &a);
    assert_int_equal(v->revoked_at, 2000); /* and durably */
    keystore_close(ks);
    arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_digest_vectors),
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_presented_key),
        cmocka_unit_test_setup_teardown(test_store_lifecycle, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
