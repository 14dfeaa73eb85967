/* token_estimate_test: the count_tokens estimator's character-class rules
 * (words, ids, digits, whitespace, non-ASCII bytes), the walk over a
 * Messages request (system, blocks, tools, images, nesting) and malformed
 * bodies. The calibration against the real tokenizer is in
 * tests/integration/count-tokens.test.mjs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "providers/token_estimate.h"

static int64_t text(const char *s) { return token_estimate_text(s, strlen(s)); }

static int64_t request(const char *body, struct token_estimate *e)
{
    assert_int_equal(token_estimate_messages(body, strlen(body), e), 0);
    return e->tokens;
}

static int64_t with_margin(int64_t t) { return t + (t * TOKEN_EST_MARGIN_PCT + 99) / 100; }

static void test_words(void **s)
{
    (void)s;
    assert_int_equal(text(""), 0);
    assert_int_equal(text("a"), 1);
    assert_int_equal(text("hello"), 2);        /* ceil(5/4) */
    assert_int_equal(text("hello there"), 4);  /* the space goes with "there" */
    assert_int_equal(text("world"), 4);        /* 1 vowel in 5: not word-like enough */
    assert_int_equal(text("Hello"), 2);        /* capitalised is still a word */
    assert_int_equal(text("HTTP"), 3);         /* all caps without vowels: dense */
    assert_int_equal(text("AUTO"), 2);         /* all caps word: one per 2 */
    assert_int_equal(text("camelCase"), 3);    /* "camel" 2 + "Case" 1 */
    /* no vowels: not a word, one token per 1.5 letters */
    assert_int_equal(text("xkcdqz"), 4);
}

static void test_ids_and_digits(void **s)
{
    (void)s;
    assert_int_equal(text("2024"), 4);
    assert_int_equal(text("3.14"), 4);
    /* base64-like: at least one token per 1.3 characters */
    const char *b64 = "aGVsbG8gd29ybGQhIHRoaXMgaXMgYmFzZTY0";
    assert_true(text(b64) >= (int64_t)(strlen(b64) * 10 + 12) / 13);
}

static void test_whitespace_and_symbols(void **s)
{
    (void)s;
    assert_int_equal(text("    "), 1);
    assert_int_equal(text("\n\n\n"), 3);
    assert_int_equal(text("{}();"), 5);
    assert_int_equal(text("a  b"), 3); /* a, the run, b */
}

static void test_non_ascii(void **s)
{
    (void)s;
    assert_int_equal(text("\xc3\xa9"), 2);             /* é: 2 bytes */
    assert_int_equal(text("\xe4\xb8\xad\xe6\x96\x87"), 6); /* 中文 */
    assert_int_equal(text("\xf0\x9f\x98\x80"), 4);     /* an emoji */
    assert_int_equal(text("\xff\xfe"), 2);             /* invalid bytes count too */
}

static void test_request_walk(void **s)
{
    (void)s;
    struct token_estimate e;
    int64_t t = request("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}", &e);
    assert_int_equal(e.messages, 1);
    assert_int_equal(e.text_tokens, 2);
    assert_int_equal(t, with_margin(TOKEN_EST_REQUEST + TOKEN_EST_MESSAGE + 2));

    /* system as blocks, an image, a tool round trip, a thinking block */
    request("{\"model\":\"m\",\"system\":[{\"type\":\"text\",\"text\":\"hello\"}],"
            "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hello\"},"
            "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://x/y.png\"}}]},"
            "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"hello\",\"signature\":\"s\"},"
            "{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{\"q\":1}}]},"
            "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\","
            "\"content\":[{\"type\":\"text\",\"text\":\"hello\"},{\"type\":\"image\",\"source\":{}}]}]}],"
            "\"tools\":[{\"name\":\"f\",\"description\":\"hello\",\"input_schema\":{\"type\":\"object\"}}]}",
            &e);
    assert_int_equal(e.messages, 3);
    assert_int_equal(e.images, 2);
    assert_int_equal(e.tools, 1);
    assert_true(e.text_tokens > TOKEN_EST_TOOLS_SYSTEM + 3 * TOKEN_EST_BLOCK + 4 * 2);
    assert_true(e.tokens > e.text_tokens + 2 * TOKEN_EST_IMAGE);

    /* a server tool costs its hidden definition */
    request("{\"messages\":[],\"tools\":[{\"type\":\"bash_20250124\",\"name\":\"bash\"}]}", &e);
    assert_true(e.text_tokens >= TOKEN_EST_TOOLS_SYSTEM + TOKEN_EST_SERVER_TOOL);

    /* documents: text counted, base64 by size, unseen ones a fixed amount */
    request("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":"
            "{\"type\":\"url\",\"url\":\"https://x/a.pdf\"}}]}]}", &e);
    assert_int_equal(e.documents, 1);
    assert_true(e.text_tokens >= TOKEN_EST_DOCUMENT_URL);
}

static void test_more_text_more_tokens(void **s)
{
    (void)s;
    struct token_estimate a, b;
    request("{\"messages\":[{\"role\":\"user\",\"content\":\"one\"}]}", &a);
    request("{\"messages\":[{\"role\":\"user\",\"content\":\"one two three four\"}]}", &b);
    assert_true(b.tokens > a.tokens);
}

static void test_malformed(void **s)
{
    (void)s;
    struct token_estimate e;
    assert_int_equal(token_estimate_messages("[1,2]", 5, &e), -1);
    assert_int_equal(token_estimate_messages("{", 1, &e), -1);
    assert_int_equal(e.tokens, 0);
    /* odd shapes are counted, not refused */
    int64_t t = request("{\"system\":5,\"messages\":[1,\"x\",{\"content\":{\"type\":7}},"
                        "{\"content\":[null,{\"type\":\"tool_result\",\"content\":{\"a\":1}}]}],"
                        "\"tools\":{}}", &e);
    assert_true(t >= TOKEN_EST_REQUEST);
    /* deep nesting stops at a bound */
    char deep[8192];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"messages\":[{\"content\":");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(deep + n, sizeof deep - n, "[{\"type\":\"tool_result\",\"content\":");
    n += (size_t)snprintf(deep + n, sizeof deep - n, "\"x\"");
    for (int i = 0; i < 200; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "}]");
    snprintf(deep + n, sizeof deep - n, "}]}");
    assert_int_equal(token_estimate_messages(deep, strlen(deep), &e), 0);
    assert_true(e.tokens > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words),
        cmocka_unit_test(test_ids_and_digits),
        cmocka_unit_test(test_whitespace_and_symbols),
        cmocka_unit_test(test_non_ascii),
        cmocka_unit_test(test_request_walk),
        cmocka_unit_test(test_more_text_more_tokens),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
