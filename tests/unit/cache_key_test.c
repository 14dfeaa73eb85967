/* cache_key_test: the response cache's keys (cache/key.c). The exact key
 * ignores key order, whitespace and the top-level stream, stream_options
 * and user, and changes with anything else (a message, temperature, a
 * tool, the model, the endpoint, the scope); length prefixes keep
 * "ab"+"c" and "a"+"bc" apart; the hashed bytes are pinned against a
 * digest computed here. The semantic partition ignores the conversation
 * but not the parameters. The conversation's text for string and array
 * contents, system prompts (message and Anthropic top-level, string and
 * array), tool calls, prompts, and none for embeddings, images or an empty
 * conversation. temperature and n. Refusals of non-objects, bad JSON and
 * duplicate keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache/key.h"
#include "core/arena.h"
#include "security/digest.h"

static const char base_body[] =
    "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
    "{\"role\":\"user\",\"content\":\"What is 2+2?\"}],\"temperature\":0.5,"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"calc\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}}}}}]}";

static struct cache_key key_of(struct arena *a, const char *scope, const char *model,
                               const char *endpoint, const char *body)
{
    struct cache_key k;
    if (cache_key_build(a, scope, model, endpoint, body, strlen(body), &k) != 0)
        fail_msg("refused: %s", body);
    return k;
}

static struct cache_key base_key(struct arena *a, const char *body)
{
    return key_of(a, "tenant-1", "gpt-4o", "chat", body);
}

static bool same_exact(const struct cache_key *x, const struct cache_key *y)
{
    return memcmp(x->exact, y->exact, CACHE_KEY_LEN) == 0;
}

static bool same_partition(const struct cache_key *x, const struct cache_key *y)
{
    return memcmp(x->partition, y->partition, CACHE_KEY_LEN) == 0;
}

static void assert_text(const char *body, const char *want)
{
    struct arena a;
    arena_init(&a);
    struct cache_key k = base_key(&a, body);
    if (!want) {
        if (k.text) fail_msg("%s: text \"%s\", want none", body, k.text);
        assert_int_equal(k.text_len, 0);
    } else {
        if (!k.text) fail_msg("%s: no text, want \"%s\"", body, want);
        if (strcmp(k.text, want) != 0) fail_msg("%s: text \"%s\", want \"%s\"", body, k.text, want);
        assert_int_equal(k.text_len, strlen(want));
    }
    arena_free(&a);
}

/* ---- the exact key ---- */

static void test_exact_ignores(void **state)
{
    struct arena a;
    arena_init(&a);
    struct cache_key k0 = base_key(&a, base_body);
    const char *same[] = {
        /* other key order at every depth, and whitespace */
        "{ \"temperature\" : 0.5 ,\n\t\"tools\":[{\"function\":{\"parameters\":{\"properties\":"
        "{\"x\":{\"type\":\"number\"}},\"type\":\"object\"},\"name\":\"calc\"},\"type\":\"function\"}],"
        "\"messages\":[ {\"content\":\"Be brief.\",\"role\":\"system\"},\r\n"
        "{\"content\":\"What is 2+2?\",\"role\":\"user\"} ], \"model\":\"gpt-4o\" }\n",
        /* the fields that do not change the answer */
        "{\"stream\":true,\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":"
        "\"Be brief.\"},{\"role\":\"user\",\"content\":\"What is 2+2?\"}],\"temperature\":0.5,"
        "\"stream_options\":{\"include_usage\":true},\"user\":\"alice\",\"tools\":[{\"type\":"
        "\"function\",\"function\":{\"name\":\"calc\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"x\":{\"type\":\"number\"}}}}}]}",
        /* the same double written another way, and an escape for a plain character */
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"What is 2\\u002b2?\"}],\"temperature\":5e-1,"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"calc\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}}}}}]}",
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        struct cache_key k = base_key(&a, same[i]);
        if (!same_exact(&k0, &k)) fail_msg("exact key differs for variant %zu", i);
        if (!same_partition(&k0, &k)) fail_msg("partition differs for variant %zu", i);
        assert_string_equal(k.text, k0.text);
    }
    arena_free(&a);
}

static void test_exact_changes(void **state)
{
    struct arena a;
    arena_init(&a);
    struct cache_key k0 = base_key(&a, base_body);
    const char *other[] = {
        /* a message */
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"What is 2+3?\"}],\"temperature\":0.5,"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"calc\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}}}}}]}",
        /* a role */
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"What is 2+2?\"}],\"temperature\":0.5,"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"calc\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}}}}}]}",
        /* temperature */
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"What is 2+2?\"}],\"temperature\":0.6,"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"calc\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}}}}}]}",
        /* a tool */
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"What is 2+2?\"}],\"temperature\":0.5,"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"calc\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"}}}}}]}",
        /* no tools */
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"What is 2+2?\"}],\"temperature\":0.5}",
        /* a "user" or "stream" below the top level is part of the request */
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"What is 2+2?\"}],\"temperature\":0.5,"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"calc\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}}},\"user\":1}}]}",
        /* another parameter, and integer 1 against real 1.0 */
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":\"What is 2+2?\"}],\"temperature\":0.5,\"max_tokens\":5,"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"calc\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}}}}}]}",
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        struct cache_key k = base_key(&a, other[i]);
        if (same_exact(&k0, &k)) fail_msg("exact key unchanged for variant %zu", i);
    }
    struct cache_key k;
    k = key_of(&a, "tenant-1", "gpt-4o-mini", "chat", base_body);
    assert_false(same_exact(&k0, &k));
    assert_false(same_partition(&k0, &k));
    k = key_of(&a, "tenant-1", "gpt-4o", "completions", base_body);
    assert_false(same_exact(&k0, &k));
    assert_false(same_partition(&k0, &k));
    k = key_of(&a, "tenant-2", "gpt-4o", "chat", base_body);
    assert_false(same_exact(&k0, &k));
    assert_false(same_partition(&k0, &k));
    /* integer against real: the type is part of the request */
    struct cache_key i1 = base_key(&a, "{\"max_tokens\":1,\"prompt\":\"x\"}");
    struct cache_key r1 = base_key(&a, "{\"max_tokens\":1.0,\"prompt\":\"x\"}");
    assert_false(same_exact(&i1, &r1));
    arena_free(&a);
}

static void test_no_concat_collision(void **state)
{
    struct arena a;
    arena_init(&a);
    const char *body = "{\"prompt\":\"hi\"}";
    struct cache_key k[] = {
        key_of(&a, "ab", "c", "chat", body),  key_of(&a, "a", "bc", "chat", body),
        key_of(&a, "a", "b", "cchat", body),  key_of(&a, "a", "bc", "hat", body),
        key_of(&a, "", "abc", "chat", body),  key_of(&a, "abc", "", "chat", body),
        key_of(&a, "abcchat", "", "", body),
    };
    size_t nk = sizeof k / sizeof k[0];
    for (size_t i = 0; i < nk; i++)
        for (size_t j = i + 1; j < nk; j++) {
            if (same_exact(&k[i], &k[j])) fail_msg("exact keys %zu and %zu collide", i, j);
            if (same_partition(&k[i], &k[j])) fail_msg("partitions %zu and %zu collide", i, j);
        }
    /* NULL names hash as empty ones */
    struct cache_key n = key_of(&a, NULL, "abc", "chat", body);
    assert_true(same_exact(&n, &k[4]));
    arena_free(&a);
}

/* The hashed bytes, pinned: lp(scope) lp(model) lp(endpoint) lp(kind)
 * lp(canonical body), each length 8 bytes little-endian. */
static size_t lp(unsigned char *out, const char *s)
{
    size_t n = strlen(s);
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(out + 8, s, n);
    return 8 + n;
}

static void test_hashed_bytes(void **state)
{
    struct arena a;
    arena_init(&a);
    struct cache_key k = key_of(&a, "s", "m", "chat",
                                "{\"user\":\"u\",\"prompt\":\"hi\", \"b\":{\"y\":1,\"x\":[true,null]}}");
    unsigned char buf[256], want[DIGEST_SHA256_LEN];
    size_t n = 0;
    n += lp(buf + n, "s");
    n += lp(buf + n, "m");
    n += lp(buf + n, "chat");
    n += lp(buf + n, "exact");
    n += lp(buf + n, "{\"b\":{\"x\":[true,null],\"y\":1},\"prompt\":\"hi\"}");
    digest_sha256(buf, n, want);
    assert_memory_equal(k.exact, want, CACHE_KEY_LEN);
    n = 0;
    n += lp(buf + n, "s");
    n += lp(buf + n, "m");
    n += lp(buf + n, "chat");
    n += lp(buf + n, "semantic");
    n += lp(buf + n, "{\"b\":{\"x\":[true,null],\"y\":1}}");
    digest_sha256(buf, n, want);
    assert_memory_equal(k.partition, want, CACHE_KEY_LEN);
    arena_free(&a);
}

/* ---- the semantic partition ---- */

static void test_partition(void **state)
{
    struct arena a;
    arena_init(&a);
    struct cache_key k0 = base_key(&a, base_body);
    assert_false(memcmp(k0.exact, k0.partition, CACHE_KEY_LEN) == 0);
    /* another conversation, same parameters */
    struct cache_key k1 = base_key(
        &a, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Add two and two\"}],"
            "\"temperature\":0.5,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"calc\","
            "\"parameters\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}}}}}]}");
    assert_false(same_exact(&k0, &k1));
    assert_true(same_partition(&k0, &k1));
    assert_string_not_equal(k0.text, k1.text);
    /* Anthropic's top-level system is conversation too */
    struct cache_key s1 = base_key(&a, "{\"max_tokens\":9,\"system\":\"a\",\"messages\":[]}");
    struct cache_key s2 = base_key(&a, "{\"max_tokens\":9,\"system\":\"b\",\"messages\":[{}]}");
    assert_true(same_partition(&s1, &s2));
    assert_false(same_exact(&s1, &s2));
    /* prompts and inputs */
    struct cache_key p1 = base_key(&a, "{\"prompt\":\"one\",\"max_tokens\":3}");
    struct cache_key p2 = base_key(&a, "{\"prompt\":[\"two\"],\"max_tokens\":3,\"stream\":true}");
    struct cache_key p3 = base_key(&a, "{\"input\":\"three\",\"max_tokens\":3,\"user\":\"x\"}");
    assert_true(same_partition(&p1, &p2));
    assert_true(same_partition(&p1, &p3));
    /* other tools, or another temperature: another partition */
    struct cache_key t1 = base_key(
        &a, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Add two and two\"}],"
            "\"temperature\":0.5,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"add\","
            "\"parameters\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}}}}}]}");
    assert_false(same_partition(&k1, &t1));
    struct cache_key t2 = base_key(
        &a, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"Add two and two\"}],"
            "\"temperature\":0.7,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"calc\","
            "\"parameters\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"}}}}}]}");
    assert_false(same_partition(&k1, &t2));
    arena_free(&a);
}

/* ---- the conversation's text ---- */

static void test_text_messages(void **state)
{
    assert_text(base_body, "system: Be brief.\nuser: What is 2+2?\n");
    assert_text("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                "{\"type\":\"input_text\",\"text\":\"b\"}]},{\"role\":\"assistant\",\"content\":\"c\"}]}",
                "user: a\nb\nassistant: c\n");
    /* Anthropic: top-level system, string or text parts, first */
    assert_text("{\"system\":\"Be kind.\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                "system: Be kind.\nuser: hi\n");
    assert_text("{\"system\":[{\"type\":\"text\",\"text\":\"One.\"},{\"type\":\"text\",\"text\":"
                "\"Two.\",\"cache_control\":{\"type\":\"ephemeral\"}}],\"messages\":[{\"role\":"
                "\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}",
                "system: One.\nTwo.\nuser: hi\n");
    assert_text("{\"system\":\"\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", "user: hi\n");
    /* tool calls: their names and arguments; tool answers */
    assert_text("{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"},{\"role\":\"assistant\","
                "\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":"
                "{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},{\"id\":"
                "\"c2\",\"type\":\"function\",\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}}]},"
                "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sunny\"}]}",
                "user: weather?\nassistant: get_weather {\"city\":\"Paris\"}\nnow {}\ntool: sunny\n");
    assert_text("{\"messages\":[{\"role\":\"assistant\",\"content\":\"Let me look.\",\"tool_calls\":"
                "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"1\"}}]}]}",
                "assistant: Let me look.\nf 1\n");
    /* Anthropic tool_use / tool_result parts; reasoning is left out */
    assert_text("{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\","
                "\"thinking\":\"hmm\"},{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":"
                "{\"b\":1,\"a\":2}}]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                "\"tool_use_id\":\"t\",\"content\":[{\"type\":\"text\",\"text\":\"42\"}]}]}]}",
                "assistant: f {\"a\":2,\"b\":1}\nuser: 42\n");
    /* not all text (an image): not compared by meaning */
    assert_text("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
                "\"what is this?\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}}]}]}",
                NULL);
    assert_text("{\"messages\":[{\"role\":\"user\",\"content\":7}]}", NULL);
    assert_text("{\"messages\":[\"hi\"]}", NULL);
    assert_text("{\"messages\":\"hi\"}", NULL);
    /* no text at all */
    assert_text("{\"messages\":[]}", NULL);
    assert_text("{\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}", NULL);
    assert_text("{\"model\":\"m\"}", NULL);
}

static void test_text_prompt_input(void **state)
{
    assert_text("{\"prompt\":\"Once upon a time\",\"max_tokens\":5}", "Once upon a time");
    assert_text("{\"prompt\":[\"one\",\"two\"]}", "one\ntwo");
    assert_text("{\"prompt\":\"\"}", NULL);
    assert_text("{\"prompt\":[1,2,3]}", NULL); /* token ids */
    /* embeddings: the input is what is embedded, not compared */
    assert_text("{\"input\":\"embed me\",\"model\":\"text-embedding-3-small\"}", NULL);
    assert_text("{\"input\":[\"a\",\"b\"]}", NULL);
}

/* ---- parameters ---- */

static void test_parameters(void **state)
{
    struct arena a;
    arena_init(&a);
    struct cache_key k = base_key(&a, "{\"prompt\":\"x\"}");
    assert_false(k.has_temperature);
    assert_int_equal(k.n, 1);
    k = base_key(&a, "{\"prompt\":\"x\",\"temperature\":0,\"n\":3}");
    assert_true(k.has_temperature);
    assert_true(k.temperature == 0.0);
    assert_int_equal(k.n, 3);
    k = base_key(&a, "{\"prompt\":\"x\",\"temperature\":1,\"n\":0}");
    assert_true(k.has_temperature);
    assert_true(k.temperature == 1.0);
    assert_int_equal(k.n, 1);
    k = base_key(&a, "{\"prompt\":\"x\",\"temperature\":0.7,\"n\":-4}");
    assert_true(k.temperature == 0.7);
    assert_int_equal(k.n, 1);
    k = base_key(&a, "{\"prompt\":\"x\",\"temperature\":\"0.7\",\"n\":2.0}");
    assert_false(k.has_temperature);
    assert_int_equal(k.n, 1);
    k = base_key(&a, "{\"prompt\":\"x\",\"temperature\":null,\"n\":\"2\"}");
    assert_false(k.has_temperature);
    assert_int_equal(k.n, 1);
    arena_free(&a);
}

/* ---- canonical form and refusals ---- */

static void test_canonical(void **state)
{
    struct arena a;
    arena_init(&a);
    const char *body = " {\"b\" : 1, \"stream\":false, \"a\":{\"d\":2,\"c\":[1, 2.5, \"\\u00e9\\n\"]},"
                       "\"user\":null, \"stream_options\":{}, \"e\":{\"user\":1}} ";
    const char *want = "{\"a\":{\"c\":[1,2.5,\"\xc3\xa9\\n\"],\"d\":2},\"b\":1,\"e\":{\"user\":1}}";
    size_t n = 0;
    char *c = cache_canonical(&a, body, strlen(body), &n);
    assert_non_null(c);
    assert_string_equal(c, want);
    assert_int_equal(n, strlen(want));
    /* a fixed point */
    char *c2 = cache_canonical(&a, c, n, &n);
    assert_string_equal(c2, want);
    /* a double reads back as itself */
    c = cache_canonical(&a, "{\"t\":0.1}", 9, &n);
    assert_non_null(c);
    assert_string_equal(cache_canonical(&a, c, n, NULL), c);
    c = cache_canonical(&a, "{}", 2, &n);
    assert_string_equal(c, "{}");
    assert_int_equal(n, 2);
    arena_free(&a);
}

static void test_refusals(void **state)
{
    struct arena a;
    arena_init(&a);
    const char *bad[] = {
        "",         "[]",          "[{\"a\":1}]",      "\"s\"",         "1",
        "null",     "{",           "{\"a\":1} x",      "{\"a\":1}{}",   "{'a':1}",
        "{\"a\":}", "{\"a\":1,}",  "{\"a\":NaN}",      "{\"a\":1e999}", "{\"a\":99999999999999999999}",
        /* a NUL inside a string is refused (keys and C strings stay intact) */
        "{\"a\":\"x\\u0000y\"}",
        /* invalid UTF-8 */
        "{\"a\":\"\xff\"}",
        /* duplicate keys, at any depth: which one counts is the parser's choice */
        "{\"messages\":[],\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        "{\"a\":{\"b\":1,\"b\":1}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cache_key k;
        memset(&k, 0x5a, sizeof k);
        if (cache_key_build(&a, "s", "m", "chat", bad[i], strlen(bad[i]), &k) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_null(k.text);
        if (cache_canonical(&a, bad[i], strlen(bad[i]), NULL)) fail_msg("canonical: %s", bad[i]);
    }
    /* a NUL byte in the body, and a body cut short by its length */
    struct cache_key k;
    assert_int_equal(cache_key_build(&a, "s", "m", "chat", "{}\0{}", 5, &k), -1);
    assert_int_equal(cache_key_build(&a, "s", "m", "chat", "{\"a\":1}", 6, &k), -1);
    assert_int_equal(cache_key_build(&a, "s", "m", "chat", NULL, 0, &k), -1);
    assert_int_equal(cache_key_build(&a, "s", "m", "chat", "{\"a\":1}xyz", 7, &k), 0);
    arena_free(&a);
}

/* The raw key: the bytes as they are (no parse), apart per scope, model
 * and endpoint, never equal to the canonical key, and the same with a
 * large body (past the stack buffer). */
static void test_raw_key(void **state)
{
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    uint8_t a[32], b[32], c[32];
    cache_key_raw("t:a", "m", "chat", body, strlen(body), a);
    cache_key_raw("t:a", "m", "chat", body, strlen(body), b);
    assert_memory_equal(a, b, 32);
    cache_key_raw("t:b", "m", "chat", body, strlen(body), c);
    assert_memory_not_equal(a, c, 32);
    cache_key_raw("t:a", "m2", "chat", body, strlen(body), c);
    assert_memory_not_equal(a, c, 32);
    cache_key_raw("t:a", "m", "messages", body, strlen(body), c);
    assert_memory_not_equal(a, c, 32);
    const char *spaced = "{ \"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    cache_key_raw("t:a", "m", "chat", spaced, strlen(spaced), c);
    assert_memory_not_equal(a, c, 32); /* raw: bytes count (the canonical key is the one that forgives) */
    cache_key_raw("t:ab", "", "chat", body, strlen(body), b);
    cache_key_raw("t:a", "b", "chat", body, strlen(body), c);
    assert_memory_not_equal(b, c, 32);
    struct arena ar;
    arena_init(&ar);
    struct cache_key k;
    assert_int_equal(cache_key_build(&ar, "t:a", "m", "chat", body, strlen(body), &k), 0);
    assert_memory_not_equal(a, k.exact, 32);
    size_t big = 100000;
    char *large = malloc(big);
    memset(large, 'x', big);
    cache_key_raw("t:a", "m", "chat", large, big, b);
    cache_key_raw("t:a", "m", "chat", large, big, c);
    assert_memory_equal(b, c, 32);
    large[big - 1] = 'y';
    cache_key_raw("t:a", "m", "chat", large, big, c);
    assert_memory_not_equal(b, c, 32);
    free(large);
    arena_free(&ar);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_ignores),     cmocka_unit_test(test_exact_changes),
        cmocka_unit_test(test_no_concat_collision), cmocka_unit_test(test_hashed_bytes),
        cmocka_unit_test(test_partition),         cmocka_unit_test(test_text_messages),
        cmocka_unit_test(test_text_prompt_input), cmocka_unit_test(test_parameters),
        cmocka_unit_test(test_canonical),         cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_raw_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
