/* money_test: USD text <-> nano-dollars and token cost arithmetic
 * (core/money.c), the bounded JSON writer (core/jsonw.c) and the string
 * helpers (core/str.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/jsonw.h"
#include "core/money.h"
#include "core/str.h"

static nanos_t parse(const char *s)
{
    nanos_t v = -1;
    assert_true(money_parse_usd(s, strlen(s), &v));
    return v;
}

static void test_parse(void **state)
{
    assert_int_equal(parse("0"), 0);
    assert_int_equal(parse("0.0003"), 300000);
    assert_int_equal(parse("0.005"), 5000000);
    assert_int_equal(parse("100"), 100 * NANOS_PER_USD);
    assert_int_equal(parse("2000.00"), 2000 * NANOS_PER_USD);
    assert_int_equal(parse(".5"), 500000000);
    assert_int_equal(parse("+1.25"), 1250000000);
    /* past the 9th decimal: rounded half up */
    assert_int_equal(parse("0.0000000014"), 1);
    assert_int_equal(parse("0.0000000015"), 2);
    nanos_t v;
    const char *bad[] = {"", "-1", "1e-3", "abc", "1.2.3", "0x10", " 1", "1 ", ".", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(money_parse_usd(bad[i], strlen(bad[i]), &v));
}

static void test_format(void **state)
{
    char b[32];
    struct {
        nanos_t n;
        const char *s;
    } cases[] = {{0, "0"}, {1, "0.000000001"}, {21000, "0.000021"}, {NANOS_PER_USD, "1"},
                 {1500000000, "1.5"}, {123456789012LL, "123.456789012"}, {-2500, "-0.0000025"},
                 {INT64_MAX, "9223372036.854775807"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = money_format_usd(cases[i].n, b, sizeof b);
        assert_string_equal(b, cases[i].s);
        assert_int_equal(n, strlen(cases[i].s));
    }
    /* a short buffer is truncated, never overflowed */
    char small[4];
    assert_int_equal(money_format_usd(1500000000, small, sizeof small), 3);
    assert_string_equal(small, "1.5");
    /* format and parse agree */
    for (nanos_t n = 0; n < 5000000; n += 12347) {
        money_format_usd(n, b, sizeof b);
        assert_int_equal(parse(b), n);
    }
}

static void test_cost_tokens(void **state)
{
    /* 17 tokens at $0.001/1k = $0.000017 exactly */
    assert_int_equal(money_cost_tokens(17, parse("0.001")), 17000);
    /* 1234 in at 0.001 + 567 out at 0.002 = 0.001234 + 0.001134 */
    assert_int_equal(money_cost_tokens(1234, parse("0.001")) + money_cost_tokens(567, parse("0.002")),
                     2368000);
    /* a fraction of a nano-dollar is rounded up: never under-charge */
    assert_int_equal(money_cost_tokens(1, 1), 1);
    assert_int_equal(money_cost_tokens(999, 1), 1);
    assert_int_equal(money_cost_tokens(1001, 1), 2);
    assert_int_equal(money_cost_tokens(0, parse("5")), 0);
    assert_int_equal(money_cost_tokens(-5, parse("5")), 0);
    assert_int_equal(money_cost_tokens(5, 0), 0);
    /* absurd counts saturate instead of overflowing */
    assert_int_equal(money_cost_tokens(INT64_MAX, parse("1")), INT64_MAX);
}

static void test_jsonw(void **state)
{
    char b[64];
    struct jsonw w;
    jsonw_init(&w, b, sizeof b);
    jsonw_str(&w, "a\"b\\c\n\x01\xff");
    assert_string_equal(b, "\"a\\\"b\\\\c\\n\\u0001\\ufffd\"");
    jsonw_init(&w, b, sizeof b);
    jsonw_int(&w, INT64_MIN);
    jsonw_raw(&w, ",");
    jsonw_int(&w, 0);
    assert_string_equal(b, "-9223372036854775808,0");
    /* truncation is flagged and bounded */
    char t[8];
    jsonw_init(&w, t, sizeof t);
    jsonw_raw(&w, "0123456789");
    assert_true(w.truncated);
    assert_int_equal(strlen(t), 7);
}

static void test_str(void **state)
{
    char n[STR_I64_LEN];
    assert_string_equal(str_i64(0, n), "0");
    assert_string_equal(str_i64(-42, n), "-42");
    assert_string_equal(str_i64(INT64_MAX, n), "9223372036854775807");
    assert_string_equal(str_i64(INT64_MIN, n), "-9223372036854775808");
    char b[4];
    assert_int_equal(str_copy(b, sizeof b, "abcdef"), 3); /* cut short, terminated */
    assert_string_equal(b, "abc");
    assert_int_equal(str_copy(b, sizeof b, NULL), 0);
    assert_string_equal(b, "");
    assert_int_equal(str_copy(b, sizeof b, "ab"), 2);
    assert_string_equal(b, "ab");
    assert_int_equal(str_copy(b, 0, "ab"), 0); /* nothing written */
    assert_string_equal(b, "ab");
    char k[8] = "";
    size_t len = 0;
    assert_true(str_append(k, sizeof k, &len, "abc"));
    assert_true(str_append(k, sizeof k, &len, ""));
    assert_true(str_append(k, sizeof k, &len, "defg")); /* exactly full: 7 bytes + NUL */
    assert_string_equal(k, "abcdefg");
    assert_false(str_append(k, sizeof k, &len, "h")); /* cut, still terminated */
    assert_int_equal(len, 7);
    assert_string_equal(k, "abcdefg");
    len = 2;
    k[2] = '\0';
    assert_false(str_append(k, sizeof k, &len, "0123456789"));
    assert_string_equal(k, "ab01234");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_cost_tokens),
        cmocka_unit_test(test_jsonw),
        cmocka_unit_test(test_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
