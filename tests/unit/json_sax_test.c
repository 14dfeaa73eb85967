/* json_sax_test: the strict JSON event parser (core/json_sax). Every value
 * kind with its event sequence, the token offsets a callback sees, string
 * escapes (surrogate pairs, lone surrogates, \u0000), strict UTF-8, the
 * number grammar, what is refused and where (error_at), nesting at and past
 * JSON_SAX_MAX_DEPTH, cancelling from each callback, the scratch
 * buffer reused by escaped strings of growing length, and containers whose
 * contents a start callback asked to skip. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_sax.h"

/* ---- recorder: the events as text, e.g. "{ k:a s:b n:1 [ ] }" ---- */

struct rec {
    struct json_sax p;
    char out[1 << 16];
    size_t n;
    bool offsets;  /* append "@tok-consumed" to each event */
    int cancel_at; /* the callback of this event (0-based) returns 0; -1: never */
    int events;
};

static void put(struct rec *r, const char *s, size_t len)
{
    if (r->n + len + 1 > sizeof r->out) fail_msg("recorder overflow");
    memcpy(r->out + r->n, s, len);
    r->n += len;
    r->out[r->n] = '\0';
}

/* Bytes outside 0x21..0x7e and '\\' are written as \xHH. */
static void put_text(struct rec *r, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char hex[8];
        if (c > 0x20 && c < 0x7f && c != '\\') {
            put(r, (const char *)&c, 1);
        } else {
            snprintf(hex, sizeof hex, "\\x%02x", c);
            put(r, hex, 4);
        }
    }
}

static int event(struct rec *r, const char *tag, const char *s, size_t len)
{
    if (r->n) put(r, " ", 1);
    put(r, tag, strlen(tag));
    if (s) put_text(r, s, len);
    if (r->offsets) {
        char at[64];
        int k = snprintf(at, sizeof at, "@%zu-%zu", json_sax_token_start(&r->p), json_sax_consumed(&r->p));
        put(r, at, (size_t)k);
    }
    return r->events++ != r->cancel_at;
}

static int on_null(void *ctx)
{
    return event(ctx, "null", NULL, 0);
}
static int on_bool(void *ctx, int v)
{
    return event(ctx, v ? "true" : "false", NULL, 0);
}
static int on_number(void *ctx, const char *t, size_t n)
{
    return event(ctx, "n:", t, n);
}
static int on_string(void *ctx, const char *s, size_t n)
{
    return event(ctx, "s:", s, n);
}
static int on_start_map(void *ctx)
{
    return event(ctx, "{", NULL, 0);
}
static int on_key(void *ctx, const char *s, size_t n)
{
    return event(ctx, "k:", s, n);
}
static int on_end_map(void *ctx)
{
    return event(ctx, "}", NULL, 0);
}
static int on_start_array(void *ctx)
{
    return event(ctx, "[", NULL, 0);
}
static int on_end_array(void *ctx)
{
    return event(ctx, "]", NULL, 0);
}

static const struct json_sax_callbacks REC = {
    .null_value = on_null,
    .boolean = on_bool,
    .number = on_number,
    .string = on_string,
    .start_map = on_start_map,
    .map_key = on_key,
    .end_map = on_end_map,
    .start_array = on_start_array,
    .end_array = on_end_array,
};

static struct rec *rec_new(void)
{
    struct rec *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->cancel_at = -1;
    return r;
}

static enum json_sax_status rec_run(struct rec *r, const char *json, size_t len)
{
    r->n = 0;
    r->out[0] = '\0';
    r->events = 0;
    return json_sax_parse(&r->p, &REC, r, json, len);
}

/* ---- harness ---- */

static void ok_len(const char *json, size_t len, const char *want, bool offsets)
{
    struct rec *r = rec_new();
    r->offsets = offsets;
    enum json_sax_status st = rec_run(r, json, len);
    if (st != JSON_SAX_OK)
        fail_msg("refused %s: %s at %zu", json, r->p.error ? r->p.error : "(canceled)", r->p.error_at);
    if (strcmp(r->out, want) != 0) fail_msg("%s:\n  got  '%s'\n  want '%s'", json, r->out, want);
    assert_null(r->p.error);
    assert_int_equal(json_sax_consumed(&r->p), len);
    assert_null(r->p.scratch);
    free(r);
}

static void ok(const char *json, const char *want)
{
    ok_len(json, strlen(json), want, false);
}

static void ok_at(const char *json, const char *want)
{
    ok_len(json, strlen(json), want, true);
}

/* Refused, at byte `at` with a message containing `msg` (NULL: any). */
static void bad_len(const char *json, size_t len, size_t at, const char *msg)
{
    struct rec *r = rec_new();
    enum json_sax_status st = rec_run(r, json, len);
    if (st != JSON_SAX_ERROR) fail_msg("accepted (%d) %s: '%s'", (int)st, json, r->out);
    assert_non_null(r->p.error);
    if (msg && !strstr(r->p.error, msg)) fail_msg("%s: error '%s' lacks '%s'", json, r->p.error, msg);
    if (r->p.error_at != at) fail_msg("%s: error '%s' at %zu, want %zu", json, r->p.error, r->p.error_at, at);
    assert_null(r->p.scratch);
    free(r);
}

static void bad(const char *json, size_t at, const char *msg)
{
    bad_len(json, strlen(json), at, msg);
}

/* One string value: parsed, its bytes must be want[0, want_len). */
static void str_is(const char *json, const char *want, size_t want_len)
{
    struct rec *r = rec_new();
    enum json_sax_status st = rec_run(r, json, strlen(json));
    if (st != JSON_SAX_OK) fail_msg("refused %s: %s at %zu", json, r->p.error, r->p.error_at);
    struct rec *w = rec_new();
    event(w, "s:", want, want_len);
    if (strcmp(r->out, w->out) != 0) fail_msg("%s:\n  got  '%s'\n  want '%s'", json, r->out, w->out);
    free(w);
    free(r);
}

/* ---- values and their events ---- */

static void test_scalars(void **state)
{
    ok("null", "null");
    ok("true", "true");
    ok("false", "false");
    ok("0", "n:0");
    ok("-12.5e+3", "n:-12.5e+3");
    ok("\"\"", "s:");
    ok("\"abc\"", "s:abc");
    ok(" \t\r\n 7 \t\r\n ", "n:7");
}

static void test_containers(void **state)
{
    ok("{}", "{ }");
    ok("[]", "[ ]");
    ok(" { } ", "{ }");
    ok("[ \n ]", "[ ]");
    ok("{\"k\":\"a\",\"s\":\"b\",\"n\":1,\"x\":[]}", "{ k:k s:a k:s s:b k:n n:1 k:x [ ] }");
    ok("[1,\"two\",true,false,null,{},[],{\"a\":[{}]}]",
       "[ n:1 s:two true false null { } [ ] { k:a [ { } ] } ]");
    ok("{\"a\":{\"b\":{\"c\":[[[null]]]}}}", "{ k:a { k:b { k:c [ [ [ null ] ] ] } } }");
    ok(" [ 1 , 2 ] ", "[ n:1 n:2 ]");
    ok("{ \"a\" : 1 , \"b\" : [ ] }", "{ k:a n:1 k:b [ ] }");
    /* duplicate keys are all reported; the empty key is a key */
    ok("{\"a\":1,\"a\":2,\"\":3}", "{ k:a n:1 k:a n:2 k: n:3 }");
    /* a key that reads like a value */
    ok("{\"true\":true,\"1\":1,\"{\":\"}\"}", "{ k:true true k:1 n:1 k:{ s:} }");
}

static void test_numbers(void **state)
{
    static const char *const good[] = {
        "0",     "-0",    "1",    "-1",      "10",     "1234567890123456789012345678901234567890",
        "0.5",   "-0.0",  "1e5",  "1E5",     "1e+5",   "1e-5",
        "0e0",   "0E+0",  "-0.0e-0", "1.5e-10", "3.14159", "1e400",
        "-9223372036854775809", "123.456E789",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char want[128];
        snprintf(want, sizeof want, "n:%s", good[i]);
        ok(good[i], want);
        char in[128], wantc[160];
        snprintf(in, sizeof in, "[%s,{\"a\":%s}]", good[i], good[i]);
        snprintf(wantc, sizeof wantc, "[ n:%s { k:a n:%s } ]", good[i], good[i]);
        ok(in, wantc);
    }
    /* what may end a number */
    ok("[1]", "[ n:1 ]");
    ok("{\"a\":1}", "{ k:a n:1 }");
    ok("[1,2]", "[ n:1 n:2 ]");
    ok("1\t", "n:1");
    ok("[-0.5e-7\n]", "[ n:-0.5e-7 ]");

    bad("01", 0, "invalid number");
    bad("-01", 0, "invalid number");
    bad("00", 0, "invalid number");
    bad("-", 0, "invalid number");
    bad("--1", 0, "invalid number");
    bad("-a", 0, "invalid number");
    bad("1.", 0, "invalid number");
    bad("1.e5", 0, "invalid number");
    bad("1e", 0, "invalid number");
    bad("1e+", 0, "invalid number");
    bad("1E-", 0, "invalid number");
    bad("1.5.5", 0, "invalid number");
    bad("1e5e5", 0, "invalid number");
    bad("1e5.5", 0, "invalid number");
    bad("0x10", 0, "invalid number");
    bad("12abc", 0, "invalid number");
    bad(".5", 0, "invalid character");
    bad("+1", 0, "invalid character");
    bad("NaN", 0, "invalid character");
    bad("Infinity", 0, "invalid character");
    bad("-Infinity", 0, "invalid number");
    bad("[01]", 1, "invalid number");
    bad("{\"a\":1.}", 5, "invalid number");
    bad("[1.0e]", 1, "invalid number");
    bad("- 1", 0, "invalid number");
    bad("1 .5", 2, "trailing garbage");
    bad("1-2", 1, "trailing garbage");
    bad("1_000", 1, "trailing garbage");
}

static void test_literals(void **state)
{
    ok("[true,false,null]", "[ true false null ]");
    ok("{\"t\":true,\"f\":false,\"n\":null}", "{ k:t true k:f false k:n null }");
    bad("tru", 0, "invalid literal");
    bad("nul", 0, "invalid literal");
    bad("fals", 0, "invalid literal");
    bad("t", 0, "invalid literal");
    bad("n", 0, "invalid literal");
    bad("f", 0, "invalid literal");
    bad("truex", 0, "invalid literal");
    bad("nullx", 0, "invalid literal");
    bad("falsey", 0, "invalid literal");
    bad("trUe", 0, "invalid literal");
    bad("True", 0, "invalid character");
    bad("NULL", 0, "invalid character");
    bad("[nil]", 1, "invalid literal");
    bad("true1", 4, "trailing garbage");
    bad("[true false]", 6, "',' or ']'");
    bad("null null", 5, "trailing garbage");
}

/* ---- offsets during callbacks ---- */

static void test_offsets(void **state)
{
    /*         0         1         2         3         4         5
     *         0123456789012345678901234567890123456789012345678901234 */
    ok_at(" {\"a\" : [1, -2.5e3, true, false, null, \"x\\\"y\"], \"b\":{}} ",
          "{@1-2 k:a@2-5 [@8-9 n:1@9-10 n:-2.5e3@12-18 true@20-24 false@26-31 null@33-37 "
          "s:x\"y@39-45 ]@45-46 k:b@48-51 {@52-53 }@53-54 }@54-55");
    ok_at("\"\"", "s:@0-2");
    ok_at("  42  ", "n:42@2-4");
    ok_at("\ttrue\n", "true@1-5");
    ok_at("[ ]", "[@0-1 ]@2-3");
    ok_at("{ }", "{@0-1 }@2-3");
    ok_at("[[],{}]", "[@0-1 [@1-2 ]@2-3 {@4-5 }@5-6 ]@6-7");
    /* an escaped key: its token keeps the raw text */
    ok_at("{\"\\u00e9\":0}", "{@0-1 k:\\xc3\\xa9@1-9 n:0@10-11 }@11-12");
    /* a raw UTF-8 string */
    ok_at("[\"\xc3\xa9\xe2\x82\xac\"]", "[@0-1 s:\\xc3\\xa9\\xe2\\x82\\xac@1-8 ]@8-9");
}

/* Unescaped strings are handed as pointers into the buffer. */
static const char *seen_ptr;
static size_t seen_len;
static int grab(void *ctx, const char *s, size_t n)
{
    seen_ptr = s;
    seen_len = n;
    return 1;
}

static void test_strings_point_into_the_buffer(void **state)
{
    struct json_sax p;
    struct json_sax_callbacks cb = {.string = grab, .map_key = grab};
    const char *json = "  \"plain text, long enough for the word loop\"";
    assert_int_equal(json_sax_parse(&p, &cb, NULL, json, strlen(json)), JSON_SAX_OK);
    assert_ptr_equal(seen_ptr, json + 3);
    assert_int_equal(seen_len, strlen(json) - 4);
    const char *esc = "\"a\\nb\"";
    assert_int_equal(json_sax_parse(&p, &cb, NULL, esc, strlen(esc)), JSON_SAX_OK);
    assert_true(seen_ptr < esc || seen_ptr >= esc + strlen(esc));
    assert_int_equal(seen_len, 3);
    const char *key = "{\"key\":0}";
    assert_int_equal(json_sax_parse(&p, &cb, NULL, key, strlen(key)), JSON_SAX_OK);
    assert_ptr_equal(seen_ptr, key + 2);
    assert_int_equal(seen_len, 3);
}

/* ---- escapes ---- */

static void test_simple_escapes(void **state)
{
    str_is("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\" \\ / \b \f \n \r \t", 15);
    str_is("\"\\\"\"", "\"", 1);
    str_is("\"\\\\\"", "\\", 1);
    str_is("\"\\/\"", "/", 1);
    str_is("\"\\b\"", "\b", 1);
    str_is("\"\\f\"", "\f", 1);
    str_is("\"\\n\"", "\n", 1);
    str_is("\"\\r\"", "\r", 1);
    str_is("\"\\t\"", "\t", 1);
    str_is("\"a\\\\\"", "a\\", 2);
    str_is("\"\\\\\\\\\"", "\\\\", 2);
    str_is("\"\\\\u0041\"", "\\u0041", 6); /* an escaped backslash, not a \u */
    ok("{\"a\\tb\":\"c\\nd\"}", "{ k:a\\x09b s:c\\x0ad }");
}

static void test_unicode_escapes(void **state)
{
    str_is("\"\\u0041\"", "A", 1);
    str_is("\"\\u00e9\"", "\xc3\xa9", 2);
    str_is("\"\\u00E9\"", "\xc3\xa9", 2);
    str_is("\"\\u007f\"", "\x7f", 1);
    str_is("\"\\u0080\"", "\xc2\x80", 2);
    str_is("\"\\u07ff\"", "\xdf\xbf", 2);
    str_is("\"\\u0800\"", "\xe0\xa0\x80", 3);
    str_is("\"\\u20ac\"", "\xe2\x82\xac", 3);
    str_is("\"\\uffff\"", "\xef\xbf\xbf", 3);
    str_is("\"\\uFfFf\"", "\xef\xbf\xbf", 3);
    /* surrogate pairs */
    str_is("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4);
    str_is("\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80", 4);
    str_is("\"\\ud800\\udc00\"", "\xf0\x90\x80\x80", 4);
    str_is("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf", 4);
    str_is("\"x\\ud83d\\ude00y\"", "x\xf0\x9f\x98\x80y", 6);
    /* lone surrogates decode to U+FFFD */
    str_is("\"\\ud83d\"", "\xef\xbf\xbd", 3);
    str_is("\"\\ude00\"", "\xef\xbf\xbd", 3);
    str_is("\"\\udbff\"", "\xef\xbf\xbd", 3);
    str_is("\"\\udc00\"", "\xef\xbf\xbd", 3);
    str_is("\"a\\ud83d\"", "a\xef\xbf\xbd", 4);
    str_is("\"\\ud83dx\"", "\xef\xbf\xbdx", 4);
    str_is("\"\\ud83d\\u0041\"", "\xef\xbf\xbd" "A", 4);    /* high, then not a low */
    str_is("\"\\ud83d\\ud83d\"", "\xef\xbf\xbd\xef\xbf\xbd", 6); /* high, high */
    str_is("\"\\ud83d\\ud83d\\ude00\"", "\xef\xbf\xbd\xf0\x9f\x98\x80", 7);
    str_is("\"\\ude00\\ud83d\"", "\xef\xbf\xbd\xef\xbf\xbd", 6); /* low, high */
    str_is("\"\\ud83d\\n\"", "\xef\xbf\xbd\n", 4);
    str_is("\"\\ud83d\\\\ude00\"", "\xef\xbf\xbd\\ude00", 9); /* escaped backslash */
    str_is("\"\\ud83d\\u00e9\"", "\xef\xbf\xbd\xc3\xa9", 5);
    /* \u0000 is a NUL byte in the output */
    str_is("\"\\u0000\"", "\0", 1);
    str_is("\"a\\u0000b\"", "a\0b", 3);
    ok("{\"\\u0000\":\"\\u0000\\u0000\"}", "{ k:\\x00 s:\\x00\\x00 }");
    /* the raw text of an escaped string may itself hold UTF-8 */
    str_is("\"\xc3\xa9\\n\xf0\x9f\x98\x80\"", "\xc3\xa9\n\xf0\x9f\x98\x80", 7);
}

static void test_bad_escapes(void **state)
{
    bad("\"\\x\"", 1, "invalid escape");
    bad("\"ab\\a\"", 3, "invalid escape");
    bad("\"\\U0041\"", 1, "invalid escape");
    bad("\"\\'\"", 1, "invalid escape");
    bad("\"\\0\"", 1, "invalid escape");
    bad("\"\\ \"", 1, "invalid escape");
    bad_len("\"\\\0\"", 4, 1, "invalid escape");
    bad("\"\\\xc3\xa9\"", 1, "invalid escape");
    bad("\"\\u\"", 1, "\\u escape");
    bad("\"\\u1\"", 1, "\\u escape");
    bad("\"\\u12\"", 1, "\\u escape");
    bad("\"\\u123\"", 1, "\\u escape");
    bad("\"\\u123g\"", 1, "\\u escape");
    bad("\"\\u-123\"", 1, "\\u escape");
    bad("\"\\u 123\"", 1, "\\u escape");
    bad("\"x\\ud83d\\u12\"", 8, "\\u escape");
    bad("\"\\u12", 1, "\\u escape");
    bad("\"\\u", 1, "\\u escape");
    bad("\"\\", 2, "unterminated string");
    bad("\"\\\"", 3, "unterminated string");
    bad("[\"a\\\"]", 6, "unterminated string");
}

/* ---- strings: control characters and UTF-8 ---- */

static void test_control_characters(void **state)
{
    for (int c = 0; c < 0x20; c++) {
        char json[8] = {'"', 'a', (char)c, 'b', '"'};
        bad_len(json, 5, 2, "control character");
    }
    /* DEL is not a control character for JSON */
    str_is("\"\x7f\"", "\x7f", 1);
    /* a raw NUL outside a string is no value */
    bad_len("\0", 1, 0, "invalid character");
    bad_len("1\0", 2, 1, "trailing garbage");
}

static void test_utf8(void **state)
{
    /* the edges of each length */
    str_is("\"\xc2\x80\"", "\xc2\x80", 2);
    str_is("\"\xdf\xbf\"", "\xdf\xbf", 2);
    str_is("\"\xe0\xa0\x80\"", "\xe0\xa0\x80", 3);
    str_is("\"\xed\x9f\xbf\"", "\xed\x9f\xbf", 3); /* U+D7FF */
    str_is("\"\xee\x80\x80\"", "\xee\x80\x80", 3); /* U+E000 */
    str_is("\"\xef\xbf\xbf\"", "\xef\xbf\xbf", 3);
    str_is("\"\xf0\x90\x80\x80\"", "\xf0\x90\x80\x80", 4);
    str_is("\"\xf4\x8f\xbf\xbf\"", "\xf4\x8f\xbf\xbf", 4); /* U+10FFFF */
    ok("{\"\xc3\xa9\":\"\xe2\x82\xac\"}", "{ k:\\xc3\\xa9 s:\\xe2\\x82\\xac }");

    static const char *const invalid[] = {
        "\x80", "\xbf", "\x80\x80",                /* continuation bytes alone */
        "\xc0\x80", "\xc1\xbf", "\xc0\xaf",        /* 0xC0/0xC1: overlong */
        "\xe0\x80\x80", "\xe0\x9f\xbf",            /* overlong 3 */
        "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf",    /* overlong 4 */
        "\xed\xa0\x80", "\xed\xbf\xbf", "\xed\xa0\xbd\xed\xb8\x80", /* surrogates (CESU) */
        "\xf4\x90\x80\x80", "\xf7\xbf\xbf\xbf",    /* past U+10FFFF */
        "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80", "\xfe", "\xff",
        "\xc3", "\xe2\x82", "\xf0\x9f\x98",        /* cut short (before the quote) */
        "\xc3\x41", "\xe2\x41\xac", "\xe2\x82\x41", "\xf0\x9f\x41\x80", "\xf0\x9f\x98\x41",
        "\xc3\xc3\xa9", "\xe2\x82\xe2\x82\xac",    /* a lead where a continuation belongs */
    };
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        char json[32];
        int n = snprintf(json, sizeof json, "\"ab%s\"", invalid[i]);
        bad_len(json, (size_t)n, 3, "invalid UTF-8");
        /* the same inside a key */
        n = snprintf(json, sizeof json, "{\"%s\":1}", invalid[i]);
        bad_len(json, (size_t)n, 2, "invalid UTF-8");
    }
    /* cut short by the end of the buffer */
    bad_len("\"\xc3", 2, 1, "invalid UTF-8");
    bad_len("\"\xf0\x9f\x98", 4, 1, "invalid UTF-8");
    /* raw UTF-8 is no value outside a string */
    bad("\xc3\xa9", 0, "invalid character");
    bad("\xef\xbb\xbf{}", 0, "invalid character"); /* a BOM */
    bad("[1,\xc2\xa0" "2]", 3, "invalid character");
}

/* Every byte value at every position of a 20-byte string (both sides of
 * the 8-byte word boundaries of the fast scan): plain bytes pass, the rest
 * are caught exactly where they are. */
static void test_every_byte_every_position(void **state)
{
    struct rec *r = rec_new(), *w = rec_new();
    for (int k = 0; k < 16; k++) {
        for (int c = 0; c < 256; c++) {
            char json[24];
            json[0] = '"';
            memset(json + 1, 'a', 20);
            json[1 + k] = (char)c;
            json[21] = '"';
            enum json_sax_status st = rec_run(r, json, 22);
            if (c < 0x20) {
                assert_int_equal(st, JSON_SAX_ERROR);
                assert_string_equal(r->p.error, "control character in a string");
                assert_int_equal(r->p.error_at, 1 + k);
            } else if (c == '"') {
                assert_int_equal(st, JSON_SAX_ERROR);
                assert_string_equal(r->p.error, "trailing garbage after the value");
                assert_int_equal(r->p.error_at, 2 + k);
            } else if (c == '\\') {
                assert_int_equal(st, JSON_SAX_ERROR);
                assert_string_equal(r->p.error, "invalid escape in a string");
                assert_int_equal(r->p.error_at, 1 + k);
            } else if (c >= 0x80) {
                assert_int_equal(st, JSON_SAX_ERROR);
                assert_string_equal(r->p.error, "invalid UTF-8 in a string");
                assert_int_equal(r->p.error_at, 1 + k);
            } else {
                assert_int_equal(st, JSON_SAX_OK);
                w->n = 0;
                event(w, "s:", json + 1, 20);
                assert_string_equal(r->out, w->out);
            }
        }
    }
    free(w);
    free(r);
}

/* Random code points written raw or as \u escapes (pairs above U+FFFF),
 * mixed with short escapes and runs of plain text: the string read back is
 * their UTF-8. */
static uint32_t rng = 12345;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static size_t utf8_put(char *o, uint32_t cp)
{
    if (cp < 0x80) return o[0] = (char)cp, 1;
    if (cp < 0x800) return o[0] = (char)(0xC0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static const char *got_s;
static size_t got_n;
static int got(void *ctx, const char *s, size_t n)
{
    char *copy = ctx;
    memcpy(copy, s, n);
    got_s = copy;
    got_n = n;
    return 1;
}

static void test_random_strings(void **state)
{
    enum { MAXB = 4096 };
    char *json = malloc(MAXB * 12 + 2), *want = malloc(MAXB * 4), *copy = malloc(MAXB * 12);
    struct json_sax p;
    struct json_sax_callbacks cb = {.string = got};
    for (int round = 0; round < 2000; round++) {
        size_t j = 0, w = 0, chars = rnd() % (round < 1000 ? 40 : 1200);
        json[j++] = '"';
        for (size_t i = 0; i < chars; i++) {
            uint32_t kind = rnd() % 8, cp;
            switch (rnd() % 4) {
            case 0: cp = 0x20 + rnd() % 0x60; break;
            case 1: cp = rnd() % 0x800; break;
            case 2: cp = rnd() % 0x10000; break;
            default: cp = 0x10000 + rnd() % 0x100000; break;
            }
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
            bool must_escape = cp < 0x20 || cp == '"' || cp == '\\';
            if (kind < 3 && !must_escape) {
                j += utf8_put(json + j, cp);
            } else if (cp < 0x10000) {
                j += (size_t)snprintf(json + j, 7, kind & 1 ? "\\u%04x" : "\\u%04X", cp);
            } else {
                uint32_t v = cp - 0x10000;
                j += (size_t)snprintf(json + j, 13, "\\u%04x\\u%04X", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            }
            w += utf8_put(want + w, cp);
        }
        json[j++] = '"';
        got_n = (size_t)-1;
        if (json_sax_parse(&p, &cb, copy, json, j) != JSON_SAX_OK)
            fail_msg("round %d refused: %s at %zu", round, p.error, p.error_at);
        assert_int_equal(got_n, w);
        assert_memory_equal(got_s, want, w);
    }
    free(json);
    free(want);
    free(copy);
}

/* Escaped strings of growing (and then shrinking) length, one parse: each
 * is unescaped into the scratch buffer, which must grow in time. String i
 * is "<\n>" sizes[i] times, 'x' sizes[i] % 3 times, then "\u00e9". */
struct grow {
    const size_t *sizes;
    size_t idx, longest;
};

static int check_escaped(void *ctx, const char *s, size_t n)
{
    struct grow *g = ctx;
    size_t sz = g->sizes[g->idx++];
    assert_int_equal(n, sz * 3 + sz % 3 + 2);
    for (size_t k = 0; k < sz; k++)
        if (memcmp(s + 3 * k, "<\n>", 3) != 0) fail_msg("string %zu: bad text at %zu", g->idx - 1, 3 * k);
    for (size_t k = 0; k < sz % 3; k++) assert_int_equal(s[3 * sz + k], 'x');
    assert_memory_equal(s + n - 2, "\xc3\xa9", 2);
    if (n > g->longest) g->longest = n;
    return 1;
}

static void test_scratch_growth(void **state)
{
    static const size_t sizes[] = {0,   1,   2,    10,   84,   85,   86,    100,   254,  255, 256,
                                   257, 511, 512,  513,  1000, 4095, 4096,  4097,  10000, 3, 70000,
                                   1,   300, 9000, 0,    131071, 131072, 5};
    size_t cap = 16;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) cap += sizes[i] * 4 + 32;
    char *json = malloc(cap);
    size_t j = 0;
    json[j++] = '[';
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        if (i) json[j++] = ',';
        json[j++] = '"';
        for (size_t k = 0; k < sizes[i]; k++) {
            memcpy(json + j, "<\\n>", 4);
            j += 4;
        }
        for (size_t k = 0; k < sizes[i] % 3; k++) json[j++] = 'x';
        memcpy(json + j, "\\u00e9\"", 7);
        j += 7;
    }
    json[j++] = ']';
    struct grow g = {.sizes = sizes};
    struct json_sax p;
    struct json_sax_callbacks cb = {.string = check_escaped};
    enum json_sax_status st = json_sax_parse(&p, &cb, &g, json, j);
    if (st != JSON_SAX_OK) fail_msg("refused: %s at %zu", p.error, p.error_at);
    assert_int_equal(g.idx, sizeof sizes / sizeof *sizes);
    assert_int_equal(g.longest, 131072 * 3 + 131072 % 3 + 2);
    assert_null(p.scratch);
    assert_int_equal(p.scratch_cap, 0);
    free(json);

    /* escapes that shrink least: "\u0800" (6 bytes) is 3; a pair (12) is 4 */
    for (size_t n = 0; n < 300; n++) {
        char *t = malloc(n * 12 + 3), *want = malloc(n * 4 + 1), *copy = malloc(n * 12 + 3);
        size_t a = 0, w = 0;
        t[a++] = '"';
        for (size_t k = 0; k < n; k++) {
            if (k % 2) {
                memcpy(t + a, "\\u0800", 6), a += 6;
                memcpy(want + w, "\xe0\xa0\x80", 3), w += 3;
            } else {
                memcpy(t + a, "\\ud83d\\ude00", 12), a += 12;
                memcpy(want + w, "\xf0\x9f\x98\x80", 4), w += 4;
            }
        }
        t[a++] = '"';
        struct json_sax_callbacks gcb = {.string = got};
        got_n = (size_t)-1;
        assert_int_equal(json_sax_parse(&p, &gcb, copy, t, a), JSON_SAX_OK);
        assert_int_equal(got_n, w);
        assert_memory_equal(got_s, want, w);
        free(t);
        free(want);
        free(copy);
    }
}

/* ---- what is refused, and where ---- */

static void test_structure_errors(void **state)
{
    bad("", 0, "unexpected end of input");
    bad_len(NULL, 0, 0, "unexpected end of input");
    bad(" ", 1, "unexpected end of input");
    bad(" \t\r\n", 4, "unexpected end of input");
    bad("\"abc", 4, "unterminated string");
    bad("\"", 1, "unterminated string");
    bad("{\"abc", 5, "unterminated string");
    bad("[", 1, "unexpected end of input");
    bad("[1", 2, "unexpected end of input in a container");
    bad("[1,", 3, "unexpected end of input");
    bad("[[]", 3, "unexpected end of input in a container");
    bad("{", 1, "a key was expected");
    bad("{\"a\"", 4, "':' expected");
    bad("{\"a\":", 5, "a value was expected");
    bad("{\"a\":1", 6, "unexpected end of input in a container");
    bad("{\"a\":1,", 7, "a key was expected");
    bad("[1,]", 3, "invalid character");
    bad("[,1]", 1, "invalid character");
    bad("[1,,2]", 3, "invalid character");
    bad("{\"a\":1,}", 7, "an object key must be a string");
    bad("{,}", 1, "an object key must be a string");
    bad("{\"a\" 1}", 5, "':' expected");
    bad("{\"a\",1}", 4, "':' expected");
    bad("{\"a\"::1}", 5, "invalid character");
    bad("{\"a\":1 \"b\":2}", 7, "',' or '}'");
    bad("{\"a\":1]", 6, "',' or '}'");
    bad("[1}", 2, "',' or ']'");
    bad("[1:2]", 2, "',' or ']'");
    bad("{1:2}", 1, "an object key must be a string");
    bad("{true:1}", 1, "an object key must be a string");
    bad("{null:1}", 1, "an object key must be a string");
    bad("{{}:1}", 1, "an object key must be a string");
    bad("{[]:1}", 1, "an object key must be a string");
    bad("{'a':1}", 1, "an object key must be a string");
    bad("{a:1}", 1, "an object key must be a string");
    bad("{\"a\":}", 5, "invalid character");
    bad("['a']", 1, "invalid character");
    bad("]", 0, "invalid character");
    bad("}", 0, "invalid character");
    bad(":", 0, "invalid character");
    bad(",", 0, "invalid character");
    bad("1 2", 2, "trailing garbage");
    bad("{} {}", 3, "trailing garbage");
    bad("[]]", 2, "trailing garbage");
    bad("{}}", 2, "trailing garbage");
    bad("\"a\"\"b\"", 3, "trailing garbage");
    bad("null,", 4, "trailing garbage");
    bad("1\f", 1, "trailing garbage"); /* form feed is not JSON whitespace */
    bad("\f1", 0, "invalid character");
    bad("\v1", 0, "invalid character");
    bad("/*c*/1", 0, "invalid character");
    bad("1//c", 1, "trailing garbage");
    bad_len("{}\0", 3, 2, "trailing garbage");
}

/* Events already reported before an error stand. */
static void test_events_before_an_error(void **state)
{
    struct rec *r = rec_new();
    const char *json = "{\"a\":[1,true,\"x\"],\"b\":tru}";
    assert_int_equal(rec_run(r, json, strlen(json)), JSON_SAX_ERROR);
    assert_string_equal(r->out, "{ k:a [ n:1 true s:x ] k:b");
    assert_int_equal(r->p.error_at, 22);
    free(r);
}

/* ---- nesting ---- */

struct depth_ctx {
    size_t depth, max, events;
    char kinds[JSON_SAX_MAX_DEPTH + 2];
};
static int d_open_map(void *ctx)
{
    struct depth_ctx *d = ctx;
    d->kinds[d->depth++] = '{';
    if (d->depth > d->max) d->max = d->depth;
    d->events++;
    return 1;
}
static int d_open_array(void *ctx)
{
    struct depth_ctx *d = ctx;
    d->kinds[d->depth++] = '[';
    if (d->depth > d->max) d->max = d->depth;
    d->events++;
    return 1;
}
static int d_close_map(void *ctx)
{
    struct depth_ctx *d = ctx;
    assert_true(d->depth > 0);
    assert_int_equal(d->kinds[--d->depth], '{');
    d->events++;
    return 1;
}
static int d_close_array(void *ctx)
{
    struct depth_ctx *d = ctx;
    assert_true(d->depth > 0);
    assert_int_equal(d->kinds[--d->depth], '[');
    d->events++;
    return 1;
}
static int d_other(void *ctx)
{
    ((struct depth_ctx *)ctx)->events++;
    return 1;
}
static int d_key(void *ctx, const char *s, size_t n)
{
    return d_other(ctx);
}
static int d_num(void *ctx, const char *s, size_t n)
{
    return d_other(ctx);
}

static const struct json_sax_callbacks DEPTH = {
    .start_map = d_open_map,
    .end_map = d_close_map,
    .start_array = d_open_array,
    .end_array = d_close_array,
    .map_key = d_key,
    .number = d_num,
    .null_value = d_other,
};

/* `levels` containers, level i an object when pattern(i) says so (a key
 * "k" then its value) else an array, and `inner` innermost. */
static char *nest(size_t levels, int pattern, const char *inner, size_t *len)
{
    size_t cap = levels * 8 + strlen(inner) + 1, n = 0;
    char *s = malloc(cap);
    for (size_t i = 0; i < levels; i++) {
        bool map = pattern == 0 ? false : pattern == 1 ? true : pattern == 2 ? (i & 1) : ((i * 7919u) >> 3) & 1;
        if (map) memcpy(s + n, "{\"k\":", 5), n += 5;
        else s[n++] = '[';
    }
    memcpy(s + n, inner, strlen(inner));
    n += strlen(inner);
    for (size_t i = levels; i-- > 0;) {
        bool map = pattern == 0 ? false : pattern == 1 ? true : pattern == 2 ? (i & 1) : ((i * 7919u) >> 3) & 1;
        s[n++] = map ? '}' : ']';
    }
    *len = n;
    return s;
}

static void test_nesting(void **state)
{
    struct depth_ctx *d = calloc(1, sizeof *d);
    struct json_sax p;
    for (int pattern = 0; pattern < 4; pattern++) {
        static const char *const inner[] = {"", "1", "null", "[]", "{}"};
        for (size_t k = 0; k < sizeof inner / sizeof *inner; k++) {
            bool container = inner[k][0] == '[' || inner[k][0] == '{';
            size_t len, levels = JSON_SAX_MAX_DEPTH - (container ? 1 : 0);
            if (pattern != 0 && inner[k][0] == '\0') continue; /* {"k":} is no JSON */
            /* exactly JSON_SAX_MAX_DEPTH open containers: accepted */
            char *s = nest(levels, pattern, inner[k], &len);
            memset(d, 0, sizeof *d);
            enum json_sax_status st = json_sax_parse(&p, &DEPTH, d, s, len);
            if (st != JSON_SAX_OK) fail_msg("pattern %d inner '%s': %s at %zu", pattern, inner[k], p.error, p.error_at);
            assert_int_equal(d->max, JSON_SAX_MAX_DEPTH);
            assert_int_equal(d->depth, 0);
            free(s);
            /* one more: refused at the opening bracket past the limit */
            s = nest(levels + 1, pattern, inner[k], &len);
            memset(d, 0, sizeof *d);
            assert_int_equal(json_sax_parse(&p, &DEPTH, d, s, len), JSON_SAX_ERROR);
            assert_string_equal(p.error, "nesting too deep");
            assert_int_equal(d->max, JSON_SAX_MAX_DEPTH);
            assert_true(s[p.error_at] == '[' || s[p.error_at] == '{');
            free(s);
        }
    }
    /* far past it, unterminated: still an error, not a crash */
    size_t big = 200000;
    char *s = malloc(big);
    memset(s, '[', big);
    memset(d, 0, sizeof *d);
    assert_int_equal(json_sax_parse(&p, &DEPTH, d, s, big), JSON_SAX_ERROR);
    assert_string_equal(p.error, "nesting too deep");
    assert_int_equal(p.error_at, JSON_SAX_MAX_DEPTH);
    /* many containers side by side do not add up: "[[],[],...,[]]" */
    size_t m = (big - 2) / 3, n = 1;
    for (size_t i = 0; i < m; i++) {
        if (i) s[n++] = ',';
        s[n++] = '[', s[n++] = ']';
    }
    s[n++] = ']';
    memset(d, 0, sizeof *d);
    assert_int_equal(json_sax_parse(&p, &DEPTH, d, s, n), JSON_SAX_OK);
    assert_int_equal(d->max, 2);
    assert_int_equal(d->events, 2 + 2 * m);
    free(s);
    free(d);
}

/* ---- cancelling ---- */

static void test_cancel_from_each_callback(void **state)
{
    const char *json = "{\"a\":[1,\"s\",true,null,{}],\"b\":false}";
    const char *all = "{ k:a [ n:1 s:s true null { } ] k:b false }";
    ok(json, all);
    struct rec *full = rec_new();
    rec_run(full, json, strlen(json));
    int total = full->events;
    assert_int_equal(total, 13);
    for (int k = 0; k < total; k++) {
        struct rec *r = rec_new();
        r->cancel_at = k;
        assert_int_equal(rec_run(r, json, strlen(json)), JSON_SAX_CANCELED);
        assert_int_equal(r->events, k + 1);
        assert_null(r->p.error);
        assert_null(r->p.scratch);
        /* the events so far are the full run's first k + 1 */
        assert_int_equal(strncmp(full->out, r->out, strlen(r->out)), 0);
        assert_true(full->out[strlen(r->out)] == ' ' || full->out[strlen(r->out)] == '\0');
        free(r);
    }
    /* cancelled in an escaped string's callback: the scratch is freed */
    struct rec *r = rec_new();
    r->cancel_at = 1;
    assert_int_equal(rec_run(r, "[\"a\\n\",\"b\\n\"]", 13), JSON_SAX_CANCELED);
    assert_string_equal(r->out, "[ s:a\\x0a");
    assert_null(r->p.scratch);
    free(r);
    free(full);
}

static void test_no_callbacks(void **state)
{
    struct json_sax p;
    struct json_sax_callbacks none = {0};
    const char *json = "{\"a\\n\":[1,\"s\\u00e9\",true,false,null,{},[]]}";
    assert_int_equal(json_sax_parse(&p, &none, NULL, json, strlen(json)), JSON_SAX_OK);
    assert_int_equal(json_sax_parse(&p, &none, NULL, "[1,]", 4), JSON_SAX_ERROR);
    assert_int_equal(p.error_at, 3);
}

/* A parser struct is reusable: nothing from a failed parse leaks into the
 * next one. */
static void test_reuse(void **state)
{
    struct rec *r = rec_new();
    assert_int_equal(rec_run(r, "[\"a\\n\", tru]", 12), JSON_SAX_ERROR);
    assert_non_null(r->p.error);
    assert_int_equal(rec_run(r, "{\"b\\t\":[[]]}", 12), JSON_SAX_OK);
    assert_null(r->p.error);
    assert_int_equal(r->p.error_at, 0);
    assert_string_equal(r->out, "{ k:b\\x09 [ [ ] ] }");
    free(r);
}

/* A start callback that asks to skip the contents of the containers
 * opened under the key "skip" (its key is remembered by on_key_skip). */
static bool next_is_skipped;
static int on_key_skip(void *ctx, const char *s, size_t n)
{
    next_is_skipped = n == 4 && memcmp(s, "skip", 4) == 0;
    return on_key(ctx, s, n);
}
static int start_skip(void *ctx, const char *tag)
{
    bool skip = next_is_skipped;
    next_is_skipped = false;
    if (!event(ctx, tag, NULL, 0)) return 0;
    return skip ? JSON_SAX_SKIP_CONTENTS : 1;
}
static int on_start_map_skip(void *ctx)
{
    return start_skip(ctx, "{");
}
static int on_start_array_skip(void *ctx)
{
    return start_skip(ctx, "[");
}

static void test_skip_contents(void **state)
{
    struct json_sax_callbacks cb = REC;
    cb.map_key = on_key_skip;
    cb.start_map = on_start_map_skip;
    cb.start_array = on_start_array_skip;
    struct rec *r = rec_new();
    r->offsets = true;
    const char *json = "{\"skip\":{\"a\":[1,{\"b\":\"x\\u00e9\"}],\"skip\":[]},\"c\":[true],\"skip\":[[],{}]}";
    next_is_skipped = false;
    r->n = 0;
    r->out[0] = '\0';
    assert_int_equal(json_sax_parse(&r->p, &cb, r, json, strlen(json)), JSON_SAX_OK);
    /* the skipped containers' starts and ends with their offsets, nothing inside */
    assert_string_equal(r->out, "{@0-1 k:skip@1-7 {@8-9 }@42-43 k:c@44-47 [@48-49 true@49-53 ]@53-54 "
                                "k:skip@55-61 [@62-63 ]@68-69 }@69-70");
    /* inside, the grammar, UTF-8 and depth are checked as strictly */
    static const char *const bad[] = {
        "{\"skip\":[1,]}", "{\"skip\":{\"a\":tru}}", "{\"skip\":[\"\xc3\"]}", "{\"skip\":[\"\x01\"]}",
        "{\"skip\":[01]}", "{\"skip\":{1:2}}", "{\"skip\":[}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct json_sax q;
        struct json_sax_callbacks none = {0};
        enum json_sax_status want = json_sax_parse(&q, &none, NULL, bad[i], strlen(bad[i]));
        size_t want_at = q.error_at;
        next_is_skipped = false;
        assert_int_equal(want, JSON_SAX_ERROR);
        assert_int_equal(json_sax_parse(&r->p, &cb, r, bad[i], strlen(bad[i])), JSON_SAX_ERROR);
        assert_int_equal(r->p.error_at, want_at);
    }
    char *deep = malloc(JSON_SAX_MAX_DEPTH + 32);
    assert_non_null(deep);
    size_t n = (size_t)sprintf(deep, "{\"skip\":");
    for (int i = 0; i < JSON_SAX_MAX_DEPTH; i++) deep[n++] = '[';
    next_is_skipped = false;
    assert_int_equal(json_sax_parse(&r->p, &cb, r, deep, n), JSON_SAX_ERROR);
    assert_string_equal(r->p.error, "nesting too deep");
    free(deep);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_containers),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_strings_point_into_the_buffer),
        cmocka_unit_test(test_simple_escapes),
        cmocka_unit_test(test_unicode_escapes),
        cmocka_unit_test(test_bad_escapes),
        cmocka_unit_test(test_control_characters),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_every_byte_every_position),
        cmocka_unit_test(test_random_strings),
        cmocka_unit_test(test_scratch_growth),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_events_before_an_error),
        cmocka_unit_test(test_nesting),
        cmocka_unit_test(test_cancel_from_each_callback),
        cmocka_unit_test(test_no_callbacks),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_skip_contents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
