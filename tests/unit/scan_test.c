/* scan_test: request validation (every field error names the right param),
 * the facts pulled from valid bodies (model token range, limits, text size,
 * images, tools), and what scan_response finds in responses and chunks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/scan.h"
#include "core/alloc.h"

/* ---- harness ---- */

#define MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static void ok_kind(enum scan_kind kind, const char *body, struct req_facts *f)
{
    struct scan_error e;
    int rc = scan_request(kind, body, strlen(body), f, &e);
    if (rc != 0) fail_msg("unexpected error for %s: %s (param %s)", body, e.message, e.param);
    /* The model token range always covers the quoted token. */
    assert_true(f->model_len >= 2);
    assert_true(f->model_off + f->model_len <= strlen(body));
    assert_int_equal(body[f->model_off], '"');
    assert_int_equal(body[f->model_off + f->model_len - 1], '"');
    assert_int_equal(body[f->root_open_off], '{');
}

static void ok(const char *body, struct req_facts *f)
{
    ok_kind(SCAN_CHAT, body, f);
}

/* Expects a failure with exactly `param` and a message containing `msg`. */
static void err_kind(enum scan_kind kind, const char *body, const char *param, const char *msg)
{
    struct req_facts f;
    struct scan_error e;
    if (scan_request(kind, body, strlen(body), &f, &e) != -1) fail_msg("accepted: %s", body);
    if (strcmp(e.param, param) != 0)
        fail_msg("param '%s' != '%s' for %s (%s)", e.param, param, body, e.message);
    if (!strstr(e.message, msg)) fail_msg("message '%s' lacks '%s' for %s", e.message, msg, body);
    assert_false(e.invalid_json);
}

static void err(const char *body, const char *param, const char *msg)
{
    err_kind(SCAN_CHAT, body, param, msg);
}

static void bad_json_len(const char *body, size_t len)
{
    struct req_facts f;
    struct scan_error e;
    assert_int_equal(scan_request(SCAN_CHAT, body, len, &f, &e), -1);
    assert_true(e.invalid_json);
    assert_string_equal(e.param, "");
    assert_non_null(strstr(e.message, "We could not parse the JSON body of your request."));
}

static void bad_json(const char *body)
{
    bad_json_len(body, strlen(body));
}

/* ---- valid requests ---- */

static void test_full_chat(void **state)
{
    const char *body =
        "{\"model\":\"gpt-4o-mini\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"max_tokens\":100,\"max_completion_tokens\":200,\"n\":2,\"temperature\":0.3,\"top_p\":1,"
        "\"user\":\"u-42\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is in this picture?\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBO\",\"detail\":\"low\"}}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
        "\"function\":{\"name\":\"lookup\",\"arguments\":\"{\\\"q\\\":\\\"cat\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"a tabby cat\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"lookup\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"q\":{\"type\":\"string\"}}}}}]}";
    struct req_facts f;

    ok(body, &f);
    assert_string_equal(f.model, "gpt-4o-mini");
    assert_int_equal(f.model_off, 9);
    assert_int_equal(f.model_len, 13);
    assert_true(f.stream);
    assert_true(f.has_stream_options);
    assert_true(f.include_usage);
    assert_int_equal(f.max_tokens, 200); /* max_completion_tokens wins, whatever the order */
    assert_int_equal(f.n, 2);
    assert_int_equal(f.text_bytes, strlen("Be brief.") + strlen("What is in this picture?") +
                                       strlen("a tabby cat"));
    assert_true(f.has_images);
    assert_true(f.has_tools);
    assert_int_equal(f.root_open_off, 0);
}

static void test_defaults(void **state)
{
    struct req_facts f;

    ok("  \n{\"messages\":[{\"role\":\"developer\",\"content\":\"x\"}],\"model\":\"m\"}\n ", &f);
    assert_false(f.stream);
    assert_false(f.has_stream_options);
    assert_false(f.include_usage);
    assert_int_equal(f.max_tokens, -1);
    assert_int_equal(f.n, 1);
    assert_false(f.has_images);
    assert_false(f.has_tools);
    assert_int_equal(f.root_open_off, 3);
    assert_int_equal(f.text_bytes, 1);

    /* null means absent for optional fields. */
    ok("{\"model\":\"m\"," MSGS ",\"stream\":null,\"max_tokens\":null,\"n\":null,"
       "\"temperature\":null,\"top_p\":null,\"tools\":null,\"stream_options\":null}", &f);
    assert_int_equal(f.max_tokens, -1);
    assert_int_equal(f.n, 1);
    assert_false(f.has_tools);
    assert_true(f.has_stream_options); /* the key is there, even if null */

    ok("{\"model\":\"m\"," MSGS ",\"max_tokens\":10000000,\"n\":128,\"temperature\":2,"
       "\"top_p\":0,\"tools\":[],\"functions\":[]}", &f);
    assert_int_equal(f.max_tokens, 10000000);
    assert_int_equal(f.n, 128);
    assert_false(f.has_tools);
    ok("{\"model\":\"m\"," MSGS ",\"max_tokens\":7,\"functions\":[{\"name\":\"f\"}]}", &f);
    assert_int_equal(f.max_tokens, 7);
    assert_true(f.has_tools);
}

/* Containers of no meaning outside messages (a tool's schema, an unknown
 * parameter's object) are skipped by the parser, yet checked as strictly:
 * the facts are those of a full walk, bad JSON inside is invalid_json, and
 * the 64-level limit holds inside them with the same error. */
static void test_skipped_containers(void **state)
{
    struct req_facts f;
    ok("{\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\","
       "\"properties\":{\"model\":{\"type\":\"string\"},\"stream\":true,\"messages\":[{\"role\":\"bogus\"}]}}}}],"
       "\"model\":\"m\",\"metadata\":{\"max_tokens\":5,\"n\":[1,{\"x\":null}]}," MSGS "}", &f);
    assert_string_equal(f.model, "m");
    assert_true(f.has_tools);
    assert_false(f.stream);
    assert_int_equal(f.max_tokens, -1);
    assert_int_equal(f.n, 1);
    assert_int_equal(f.text_bytes, 2);
    bad_json("{\"model\":\"m\"," MSGS ",\"tools\":[{\"a\":[1,]}]}");
    bad_json("{\"model\":\"m\"," MSGS ",\"metadata\":{\"a\":\"\xc3\"}}");
    bad_json("{\"model\":\"m\"," MSGS ",\"metadata\":{\"a\":tru}}");
    char body[512];
    size_t n = (size_t)snprintf(body, sizeof body, "{\"model\":\"m\"," MSGS ",\"tools\":[{\"x\":");
    for (int i = 0; i < SCAN_MAX_DEPTH; i++) body[n++] = '[';
    body[n] = '\0'; /* unterminated, too: refused as too deep first */
    err(body, "", "nesting too deep (more than 64 levels)");
}

static void test_nested_model_ignored(void **state)
{
    struct req_facts f;
    const char *body = "{\"messages\":[{\"role\":\"user\",\"model\":\"evil\",\"content\":"
                       "[{\"type\":\"text\",\"text\":\"ab\",\"model\":\"evil2\"}]}],"
                       "\"metadata\":{\"model\":\"evil3\",\"stream\":\"x\",\"n\":-5},"
                       "\"model\":\"good\"}";

    ok(body, &f);
    assert_string_equal(f.model, "good");
    assert_int_equal(f.text_bytes, 2);
    /* Only the top-level model is required: a nested one does not count. */
    err("{\"messages\":[{\"role\":\"user\",\"model\":\"m\"}]}", "model", "model");
}

static void check_model_token(const char *body, const char *want_model, const char *want_token)
{
    struct req_facts f;

    ok(body, &f);
    assert_string_equal(f.model, want_model);
    assert_int_equal(f.model_len, strlen(want_token));
    assert_memory_equal(body + f.model_off, want_token, f.model_len);
}

static void test_escaped_model(void **state)
{
    check_model_token("{\"model\":\"a\\\"b\"," MSGS "}", "a\"b", "\"a\\\"b\"");
    check_model_token("{\"model\":\"a\\\\\"," MSGS "}", "a\\", "\"a\\\\\"");
    check_model_token("{\"model\":\"\\\\\\\"\\\\\"," MSGS "}", "\\\"\\", "\"\\\\\\\"\\\\\"");
    check_model_token("{" MSGS ",\"model\" :  \"\\u00e9\\u4e2d\" }", "\xc3\xa9\xe4\xb8\xad",
                      "\"\\u00e9\\u4e2d\"");
    check_model_token("{" MSGS ",\"model\":\"\\ud83d\\ude00x\"}", "\xf0\x9f\x98\x80x",
                      "\"\\ud83d\\ude00x\"");
    check_model_token("{\"model\":\"\\/\\\"\"," MSGS "}", "/\"", "\"\\/\\\"\"");
    /* An escaped key is the same key. */
    check_model_token("{\"mod\\u0065l\":\"gpt\"," MSGS "}", "gpt", "\"gpt\"");
    /* Escapes next to raw UTF-8 in keys and values are fine. */
    check_model_token("{\"k\\n\xc3\xa9\\\"\":\"\\t\xe4\xb8\xad\\u00e9\xf0\x9f\x98\x80\"," MSGS
                      ",\"model\":\"m\"}", "m", "\"m\"");
    /* A model value with a raw UTF-8 character. */
    check_model_token("{\"model\":\"m\xc3\xa9\"," MSGS "}", "m\xc3\xa9", "\"m\xc3\xa9\"");
}

static void test_completions(void **state)
{
    struct req_facts f;

    ok_kind(SCAN_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"hello\",\"max_tokens\":5}", &f);
    assert_int_equal(f.text_bytes, 5);
    assert_int_equal(f.max_tokens, 5);
    ok_kind(SCAN_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[\"ab\",\"cde\"]}", &f);
    assert_int_equal(f.text_bytes, 5);
    ok_kind(SCAN_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[[1,2],[3]]}", &f);
    assert_int_equal(f.text_bytes, 12);
    ok_kind(SCAN_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[1,2,3,4]}", &f);
    assert_int_equal(f.text_bytes, 16);
    /* messages means nothing to completions. */
    ok_kind(SCAN_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"\",\"messages\":5}", &f);

    err_kind(SCAN_COMPLETIONS, "{\"model\":\"m\"}", "prompt", "Missing required parameter: 'prompt'");
    err_kind(SCAN_COMPLETIONS, "{\"model\":\"m\",\"prompt\":5}", "prompt", "'prompt'");
    err_kind(SCAN_COMPLETIONS, "{\"model\":\"m\",\"prompt\":null}", "prompt", "'prompt'");
    err_kind(SCAN_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[{}]}", "prompt", "'prompt'");
    err_kind(SCAN_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[[\"a\"]]}", "prompt", "'prompt'");
    err_kind(SCAN_COMPLETIONS, "{\"prompt\":\"x\"}", "model", "model");
}

static void test_embeddings(void **state)
{
    struct req_facts f;

    ok_kind(SCAN_EMBEDDINGS, "{\"model\":\"e\",\"input\":\"hello\"}", &f);
    assert_int_equal(f.n_inputs, 1);
    assert_int_equal(f.text_bytes, 5);
    ok_kind(SCAN_EMBEDDINGS, "{\"model\":\"e\",\"input\":[\"a\",\"bb\",\"ccc\"]}", &f);
    assert_int_equal(f.n_inputs, 3);
    assert_int_equal(f.text_bytes, 6);
    ok_kind(SCAN_EMBEDDINGS, "{\"model\":\"e\",\"input\":[1,2,3]}", &f);
    assert_int_equal(f.n_inputs, 1);
    assert_int_equal(f.text_bytes, 12);
    ok_kind(SCAN_EMBEDDINGS, "{\"model\":\"e\",\"input\":[[1,2],[3]],\"encoding_format\":\"float\"}",
            &f);
    assert_int_equal(f.n_inputs, 2);
    assert_int_equal(f.text_bytes, 12);

    err_kind(SCAN_EMBEDDINGS, "{\"model\":\"e\"}", "input", "Missing required parameter: 'input'");
    err_kind(SCAN_EMBEDDINGS, "{\"model\":\"e\",\"input\":\"\"}", "input", "non-empty");
    err_kind(SCAN_EMBEDDINGS, "{\"model\":\"e\",\"input\":[]}", "input", "non-empty");
    err_kind(SCAN_EMBEDDINGS, "{\"model\":\"e\",\"input\":5}", "input", "'input'");
    err_kind(SCAN_EMBEDDINGS, "{\"model\":\"e\",\"input\":[\"a\",1]}", "input", "mixes");
    err_kind(SCAN_EMBEDDINGS, "{\"model\":\"e\",\"input\":[true]}", "input", "'input'");
    err_kind(SCAN_EMBEDDINGS, "{\"model\":\"e\",\"input\":[[\"a\"]]}", "input", "'input'");
}

/* ---- field errors ---- */

static void test_model_errors(void **state)
{
    char body[600];

    err("{" MSGS "}", "model", "you must provide a model parameter");
    err("{\"model\":null," MSGS "}", "model", "you must provide a model parameter");
    err("{\"model\":5," MSGS "}", "model", "'model' must be a string");
    err("{\"model\":[\"m\"]," MSGS "}", "model", "'model' must be a string");
    err("{\"model\":\"\"," MSGS "}", "model", "non-empty");
    err("{\"model\":\"a\\u0001b\"," MSGS "}", "model", "control characters");
    err("{\"model\":\"a\\nb\"," MSGS "}", "model", "control characters");
    err("{\"model\":\"a\\u0000\"," MSGS "}", "model", "control characters");
    err("{\"model\":\"a\x7f\"," MSGS "}", "model", "control characters");
    err("{\"model\":\"\\ud800\"," MSGS "}", "model", "UTF-8");
    err("{\"model\":\"\\udc00\"," MSGS "}", "model", "UTF-8");
    err("{\"model\":\"a\",\"model\":\"b\"," MSGS "}", "model", "duplicate key 'model'");
    err("{\"model\":\"a\",\"mod\\u0065l\":\"b\"," MSGS "}", "model", "duplicate");

    /* SCAN_MODEL_MAX bytes are fine, one more is not. */
    struct req_facts f;
    int n = snprintf(body, sizeof body, "{\"model\":\"");
    memset(body + n, 'x', SCAN_MODEL_MAX);
    snprintf(body + n + SCAN_MODEL_MAX, sizeof body - (size_t)n - SCAN_MODEL_MAX, "\"," MSGS "}");
    ok(body, &f);
    assert_int_equal(strlen(f.model), SCAN_MODEL_MAX);
    memset(body + n, 'x', SCAN_MODEL_MAX + 1);
    snprintf(body + n + SCAN_MODEL_MAX + 1, sizeof body - (size_t)n - SCAN_MODEL_MAX - 1,
             "\"," MSGS "}");
    err(body, "model", "too long");
}

static void test_messages_errors(void **state)
{
    err("{\"model\":\"m\"}", "messages", "Missing required parameter: 'messages'");
    err("{\"model\":\"m\",\"messages\":null}", "messages", "'messages' must be a non-empty array");
    err("{\"model\":\"m\",\"messages\":{}}", "messages", "'messages' must be a non-empty array");
    err("{\"model\":\"m\",\"messages\":\"hi\"}", "messages", "'messages' must be a non-empty array");
    err("{\"model\":\"m\",\"messages\":[]}", "messages", "'messages' must be a non-empty array");
    err("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"},5]}", "messages",
        "messages[1] must be an object");
    err("{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}", "messages",
        "messages[0]: missing required 'role'");
    err("{\"model\":\"m\",\"messages\":[{\"role\":5}]}", "messages", "messages[0].role must be a string");
    err("{\"model\":\"m\",\"messages\":[{\"role\":null}]}", "messages",
        "messages[0].role must be a string");
    err("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"},{\"role\":\"assistant\"},"
        "{\"role\":\"robot\"}]}",
        "messages", "messages[2].role: unknown role 'robot'");
    err("{\"model\":\"m\",\"messages\":[{\"role\":\"User\"}]}", "messages", "unknown role 'User'");
    err("{\"model\":\"m\",\"messages\":[{\"role\":\"\"}]}", "messages", "unknown role ''");
    /* A nasty role is echoed short and printable. */
    err("{\"model\":\"m\",\"messages\":[{\"role\":\"a\\n\\u00e9xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}]}",
        "messages", "unknown role 'a???xxxxxxxx");
    err("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"messages\":[{\"role\":\"user\"}]}",
        "messages", "duplicate");
}

static void test_flag_errors(void **state)
{
    err("{\"model\":\"m\"," MSGS ",\"stream\":\"true\"}", "stream", "'stream' must be a boolean");
    err("{\"model\":\"m\"," MSGS ",\"stream\":1}", "stream", "'stream' must be a boolean");
    err("{\"model\":\"m\"," MSGS ",\"stream_options\":true}", "stream_options", "must be an object");
    err("{\"model\":\"m\"," MSGS ",\"stream_options\":{\"include_usage\":\"yes\"}}",
        "stream_options.include_usage", "must be a boolean");
    err("{\"model\":\"m\"," MSGS ",\"tools\":{}}", "tools", "'tools' must be an array");
    err("{\"model\":\"m\"," MSGS ",\"functions\":\"f\"}", "functions", "'functions' must be an array");
}

static void test_number_errors(void **state)
{
    static const char *const bad_ints[] = { "-1", "0", "1e308", "3.5", "\"10\"", "10000001",
                                            "1e3", "2.0", "99999999999999999999999", "true",
                                            "-9223372036854775809", "[]" };
    char body[256];

    for (size_t i = 0; i < sizeof bad_ints / sizeof bad_ints[0]; i++) {
        snprintf(body, sizeof body, "{\"model\":\"m\"," MSGS ",\"max_tokens\":%s}", bad_ints[i]);
        err(body, "max_tokens", "'max_tokens' must be");
        snprintf(body, sizeof body, "{\"model\":\"m\"," MSGS ",\"max_completion_tokens\":%s}",
                 bad_ints[i]);
        err(body, "max_completion_tokens", "'max_completion_tokens' must be");
    }
    err("{\"model\":\"m\"," MSGS ",\"max_tokens\":-1}", "max_tokens", "between 1 and 10000000");
    err("{\"model\":\"m\"," MSGS ",\"max_tokens\":3.5}", "max_tokens", "must be an integer");
    err("{\"model\":\"m\"," MSGS ",\"max_tokens\":\"10\"}", "max_tokens", "must be an integer");
    err("{\"model\":\"m\"," MSGS ",\"n\":10000}", "n", "'n' must be between 1 and 128");
    err("{\"model\":\"m\"," MSGS ",\"n\":0}", "n", "'n' must be between 1 and 128");
    err("{\"model\":\"m\"," MSGS ",\"n\":1.5}", "n", "'n' must be an integer");
    err("{\"model\":\"m\"," MSGS ",\"temperature\":2.5}", "temperature", "between 0 and 2");
    err("{\"model\":\"m\"," MSGS ",\"temperature\":-0.1}", "temperature", "between 0 and 2");
    err("{\"model\":\"m\"," MSGS ",\"temperature\":1e999}", "temperature", "between 0 and 2");
    err("{\"model\":\"m\"," MSGS ",\"temperature\":\"1\"}", "temperature", "must be a number");
    err("{\"model\":\"m\"," MSGS ",\"top_p\":1.0000001}", "top_p", "between 0 and 1");

    struct req_facts f;
    ok("{\"model\":\"m\"," MSGS ",\"temperature\":1.5e0,\"top_p\":0.5,\"max_tokens\":1}", &f);
    assert_int_equal(f.max_tokens, 1);
}

/* ---- JSON-level errors ---- */

static void test_invalid_json(void **state)
{
    bad_json("");
    bad_json("   ");
    bad_json("{");
    bad_json("{\"model\":\"m\",}");
    bad_json("{\"model\":'m'}");
    bad_json("{\"model\":\"m\"," MSGS "} x");
    bad_json("{\"model\":\"m\"," MSGS "}{}");
    bad_json("{\"model\":\"m\"," MSGS "} \"");        /* unterminated string after */
    bad_json("{\"model\":\"m\"," MSGS "}\"abc\\");
    bad_json("{\"model\":\"m\"," MSGS "} // comment");
    bad_json("{\"model\":\"m\xff\"," MSGS "}");          /* invalid UTF-8 */
    bad_json("{\"model\":\"m\xc0\x80\"," MSGS "}");      /* overlong NUL */
    bad_json("{\"model\":\"m\"," MSGS ",\"x\xfe\":1}");  /* invalid UTF-8 in a key */
    bad_json("{\"model\":\"m\"," MSGS ",\"x\xc1\xbf\":1}"); /* overlong, in a key */
    bad_json("{\"model\":\"m\"," MSGS ",\"x\":\"\xed\xa0\x80\"}"); /* UTF-8 surrogate */
    bad_json("{\"model\":\"m\"," MSGS ",\"x\":\"\xf4\x90\x80\x80\"}"); /* > U+10FFFF */
    bad_json("{\"model\":\"m\"," MSGS ",\"x\":\"\\n\xe0\x80\xaf\"}"); /* escape + overlong */
    bad_json("{\"model\":\"m\"," MSGS ",\"x\":\"\xf0\x9f\x98\"}"); /* truncated */
    bad_json("{\"model\":\"a\tb\"," MSGS "}");           /* raw control byte */
    bad_json("{\"model\":\"\\x41\"," MSGS "}");          /* bad escape */
    bad_json_len("{\"model\":\"m\"\0," MSGS "}", 14);

    /* Valid JSON that is not an object is a request error, not a parse error. */
    err("[]", "", "must be a JSON object");
    err("\"hello\"", "", "must be a JSON object");
    err("null", "", "must be a JSON object");
}

static void test_depth(void **state)
{
    char body[1024];
    struct req_facts f;
    size_t n = 0;

    /* The root object is level 1, so 63 arrays inside it reach the limit. */
    n += (size_t)snprintf(body, sizeof body, "{\"model\":\"m\"," MSGS ",\"x\":");
    for (int i = 0; i < SCAN_MAX_DEPTH - 1; i++) body[n++] = '[';
    for (int i = 0; i < SCAN_MAX_DEPTH - 1; i++) body[n++] = ']';
    body[n++] = '}';
    body[n] = '\0';
    ok(body, &f);

    n = (size_t)snprintf(body, sizeof body, "{\"model\":\"m\"," MSGS ",\"x\":");
    for (int i = 0; i < SCAN_MAX_DEPTH; i++) body[n++] = '[';
    for (int i = 0; i < SCAN_MAX_DEPTH; i++) body[n++] = ']';
    body[n++] = '}';
    body[n] = '\0';
    err(body, "", "nesting too deep");

    /* Deep and unterminated: refused as too deep before the parse error. */
    memset(body, '[', 1000);
    body[1000] = '\0';
    body[0] = '{';
    body[1] = '"';
    body[2] = '"';
    body[3] = ':';
    err(body, "", "nesting too deep");
}

static void test_images(void **state)
{
    struct req_facts f;

    ok("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
       "\"image_url\":\"https://x/y.png\"}]}]}", &f);
    assert_true(f.has_images);
    ok("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"image_url\":{\"url\":\"u\"}}]}]}",
       &f);
    assert_true(f.has_images);
    /* Text that merely says image_url is not an image, nor is a tool schema. */
    ok("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"image_url\"}],"
       "\"tools\":[{\"type\":\"image_url\",\"image_url\":1}]}", &f);
    assert_false(f.has_images);
    assert_int_equal(f.text_bytes, 9);
}

static void test_null_errors_arg(void **state)
{
    struct req_facts f;
    assert_int_equal(scan_request(SCAN_CHAT, "{}", 2, &f, NULL), -1);
}

/* ---- responses ---- */

static void resp_ok(const char *body, struct resp_facts *r)
{
    size_t len = strlen(body);
    assert_int_equal(scan_response(body, len, r), 0);
    assert_true(r->close_off < len);
    assert_int_equal(body[r->close_off], '}');
    /* Only whitespace may follow the closing brace. */
    for (size_t i = r->close_off + 1; i < len; i++) assert_non_null(strchr(" \t\r\n", body[i]));
}

/* Prompt caching (SPEC section 9): reads and writes from
 * prompt_tokens_details, else from Anthropic's names at the top of usage. */
static void test_response_usage_prompt_cache(void **state)
{
    struct resp_facts r;
    resp_ok("{\"usage\":{\"prompt_tokens\":2000,\"completion_tokens\":50,"
            "\"prompt_tokens_details\":{\"cached_tokens\":1500,\"cache_write_tokens\":400}}}",
            &r);
    assert_int_equal(r.usage.prompt_tokens, 2000);
    assert_int_equal(r.usage.cached_tokens, 1500);
    assert_int_equal(r.usage.cache_write_tokens, 400);
    resp_ok("{\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":1,"
            "\"cache_read_input_tokens\":20,\"cache_creation_input_tokens\":5}}", &r);
    assert_int_equal(r.usage.cached_tokens, 20);
    assert_int_equal(r.usage.cache_write_tokens, 5);
    /* the details win, whichever comes first */
    resp_ok("{\"usage\":{\"cache_read_input_tokens\":20,\"cache_creation_input_tokens\":5,"
            "\"prompt_tokens\":30,\"prompt_tokens_details\":{\"cached_tokens\":7,"
            "\"cache_write_tokens\":3}}}", &r);
    assert_int_equal(r.usage.cached_tokens, 7);
    assert_int_equal(r.usage.cache_write_tokens, 3);
    resp_ok("{\"usage\":{\"prompt_tokens\":30,\"prompt_tokens_details\":{\"cached_tokens\":7},"
            "\"cache_read_input_tokens\":20}}", &r);
    assert_int_equal(r.usage.cached_tokens, 7);
    assert_int_equal(r.usage.cache_write_tokens, 0);
    /* a repeated usage starts over; negative counts are ignored */
    resp_ok("{\"usage\":{\"prompt_tokens_details\":{\"cached_tokens\":7}},"
            "\"usage\":{\"cache_read_input_tokens\":2,\"cache_creation_input_tokens\":-4}}", &r);
    assert_int_equal(r.usage.cached_tokens, 2);
    assert_int_equal(r.usage.cache_write_tokens, 0);
    /* only inside usage */
    resp_ok("{\"cache_read_input_tokens\":9,\"usage\":{\"prompt_tokens\":1}}", &r);
    assert_int_equal(r.usage.cached_tokens, 0);
}

/* cache_control in a message marks the request (the OpenAI adapter strips it). */
static void test_request_cache_control(void **state)
{
    struct req_facts f;
    struct scan_error e;
    const char *with = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                       "\"text\",\"text\":\"hi\",\"cache_control\":{\"type\":\"ephemeral\"}}]}]}";
    assert_int_equal(scan_request(SCAN_CHAT, with, strlen(with), &f, &e), 0);
    assert_true(f.has_cache_control);
    const char *msg = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"x\","
                      "\"cache_control\":{\"type\":\"ephemeral\"}}]}";
    assert_int_equal(scan_request(SCAN_CHAT, msg, strlen(msg), &f, &e), 0);
    assert_true(f.has_cache_control);
    const char *without = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                          "\"cache_control\"}]}";
    assert_int_equal(scan_request(SCAN_CHAT, without, strlen(without), &f, &e), 0);
    assert_false(f.has_cache_control);
}

static void test_response_usage(void **state)
{
    struct resp_facts r;

    resp_ok("{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
            "\"message\":{\"role\":\"assistant\",\"content\":\"Hi!\"},\"usage\":{\"prompt_tokens\":999}}],"
            "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15,"
            "\"prompt_tokens_details\":{\"cached_tokens\":4,\"audio_tokens\":0},"
            "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n",
            &r);
    assert_true(r.usage.present);
    assert_int_equal(r.usage.prompt_tokens, 12);
    assert_int_equal(r.usage.completion_tokens, 3);
    assert_int_equal(r.usage.total_tokens, 15);
    assert_int_equal(r.usage.cached_tokens, 4);
    assert_true(r.has_choices);
    assert_false(r.choices_empty);
    assert_false(r.has_error);
    assert_false(r.root_empty);

    /* total computed when absent */
    resp_ok("{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}", &r);
    assert_int_equal(r.usage.total_tokens, 12);
    assert_int_equal(r.usage.cached_tokens, 0);

    /* usage null is absent */
    resp_ok("{\"choices\":[{\"delta\":{}}],\"usage\":null}", &r);
    assert_false(r.usage.present);

    /* bogus counts are not trusted */
    resp_ok("{\"usage\":{\"prompt_tokens\":-5,\"completion_tokens\":2.5,\"total_tokens\":\"9\"}}", &r);
    assert_true(r.usage.present);
    assert_int_equal(r.usage.prompt_tokens, 0);
    assert_int_equal(r.usage.completion_tokens, 0);
    assert_int_equal(r.usage.total_tokens, 0);
}

static void test_response_stream_usage_chunk(void **state)
{
    struct resp_facts r;
    const char *chunk = "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                        "\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":20,"
                        "\"completion_tokens\":9,\"total_tokens\":29}}";

    resp_ok(chunk, &r);
    assert_true(r.has_choices);
    assert_true(r.choices_empty);
    assert_true(r.usage.present);
    assert_int_equal(r.usage.total_tokens, 29);
    assert_int_equal(r.close_off, strlen(chunk) - 1);

    chunk = "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"}\"}}]}  \r\n";
    resp_ok(chunk, &r);
    assert_false(r.choices_empty);
    assert_false(r.usage.present);
    assert_int_equal(r.close_off, strlen(chunk) - 5);
}

static void test_response_errors(void **state)
{
    struct resp_facts r;

    resp_ok("{\"error\":{\"message\":\"Rate limit \\\"exceeded\\\"\",\"type\":\"requests\","
            "\"param\":null,\"code\":\"rate_limit_exceeded\"}}",
            &r);
    assert_true(r.has_error);
    assert_string_equal(r.error_message, "Rate limit \"exceeded\"");
    assert_false(r.has_choices);

    resp_ok("{\"error\":\"upstream exploded\"}", &r);
    assert_true(r.has_error);
    assert_string_equal(r.error_message, "upstream exploded");

    resp_ok("{\"error\":null,\"choices\":[{\"error\":{\"message\":\"nested\"}}]}", &r);
    assert_false(r.has_error);
    assert_string_equal(r.error_message, "");

    resp_ok("{\"error\":{\"code\":500}}", &r);
    assert_true(r.has_error);
    assert_string_equal(r.error_message, "");

    /* A long message is truncated on a character boundary. */
    char body[1200];
    int n = snprintf(body, sizeof body, "{\"error\":{\"message\":\"");
    for (int i = 0; i < 200; i++) n += snprintf(body + n, sizeof body - (size_t)n, "\xc3\xa9");
    snprintf(body + n, sizeof body - (size_t)n, "\"}}");
    resp_ok(body, &r);
    assert_int_equal(strlen(r.error_message), 254);
}

static void test_response_shapes(void **state)
{
    struct resp_facts r;

    resp_ok("{}", &r);
    assert_true(r.root_empty);
    assert_int_equal(r.close_off, 1);
    resp_ok(" { }\n", &r);
    assert_true(r.root_empty);
    assert_int_equal(r.close_off, 3);
    resp_ok("{\"a\":{}}", &r);
    assert_false(r.root_empty);
    assert_int_equal(r.close_off, 7);

    assert_int_equal(scan_response("[]", 2, &r), -1);
    assert_int_equal(scan_response("", 0, &r), -1);
    assert_int_equal(scan_response("[DONE]", 6, &r), -1);
    assert_int_equal(scan_response("{} {}", 5, &r), -1);
    assert_int_equal(scan_response(" { }\"", 5, &r), -1); /* found by fuzz_scan */
    assert_int_equal(scan_response("{\"a\":1", 6, &r), -1);
    assert_int_equal(scan_response("{\"a\":\"\xff\"}", 9, &r), -1);

    /* Responses may nest deeper than requests may. */
    char deep[512];
    size_t n = 0;
    deep[n++] = '{';
    memcpy(deep + n, "\"x\":", 4);
    n += 4;
    for (int i = 0; i < 200; i++) deep[n++] = '[';
    for (int i = 0; i < 200; i++) deep[n++] = ']';
    memcpy(deep + n, ",\"choices\":[]}", 15);
    resp_ok(deep, &r);
    assert_true(r.choices_empty);
}

static void test_estimate(void **state)
{
    assert_int_equal(scan_estimate_tokens(0), 0);
    assert_int_equal(scan_estimate_tokens(1), 1);
    assert_int_equal(scan_estimate_tokens(4), 1);
    assert_int_equal(scan_estimate_tokens(5), 2);
    assert_int_equal(scan_estimate_tokens(4000), 1000);
    assert_true(scan_estimate_tokens(SIZE_MAX) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_chat),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_nested_model_ignored),
        cmocka_unit_test(test_skipped_containers),
        cmocka_unit_test(test_escaped_model),
        cmocka_unit_test(test_completions),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_model_errors),
        cmocka_unit_test(test_messages_errors),
        cmocka_unit_test(test_flag_errors),
        cmocka_unit_test(test_number_errors),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_images),
        cmocka_unit_test(test_null_errors_arg),
        cmocka_unit_test(test_response_usage),
        cmocka_unit_test(test_response_usage_prompt_cache),
        cmocka_unit_test(test_request_cache_control),
        cmocka_unit_test(test_response_stream_usage_chunk),
        cmocka_unit_test(test_response_errors),
        cmocka_unit_test(test_response_shapes),
        cmocka_unit_test(test_estimate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
