/* cache_stream_test: the stream accumulator and replay (cache/stream.c):
 * realistic OpenAI chat streams (role, content, finish and usage chunks),
 * parallel tool calls sent in fragments, legacy function_call, refusal,
 * completions, n=2 with interleaved choices; junk chunks refused for good;
 * replay in small pieces that never split a UTF-8 sequence (é, 日本, emoji)
 * and prefer cutting after a space; replay then accumulate gives the same
 * answer back; -1 for bodies that are not answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "cache/stream.h"
#include "core/alloc.h"

#define HEAD                                                                                       \
    "\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion.chunk\",\"created\":1718000000,"          \
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\""
#define CHUNK(choices) "{" HEAD ",\"choices\":[" choices "],\"usage\":null}"

/* ---- helpers ---- */

static struct cache_stream_acc *feed_all(bool completions, const char *const *chunks, size_t n)
{
    struct cache_stream_acc *acc = cache_acc_new(completions);
    for (size_t i = 0; i < n; i++) {
        if (cache_acc_feed(acc, chunks[i], strlen(chunks[i])) != 0)
            fail_msg("chunk %zu refused: %s", i, chunks[i]);
    }
    return acc;
}

static void assert_json_eq(const char *got, const char *want)
{
    json_error_t e;
    json_t *g = json_loads(got, 0, &e);
    if (!g) fail_msg("not JSON (%s): %s", e.text, got);
    json_t *w = json_loads(want, 0, &e);
    if (!w) fail_msg("test's JSON is wrong (%s): %s", e.text, want);
    if (!json_equal(g, w)) fail_msg("got  %s\nwant %s", got, want);
    json_decref(g);
    json_decref(w);
}

/* Accumulates `chunks` and checks the whole answer. */
static char *check_answer(bool completions, const char *const *chunks, size_t n, int64_t pt,
                          int64_t ct, const char *want)
{
    struct arena a;
    arena_init(&a);
    struct cache_stream_acc *acc = feed_all(completions, chunks, n);
    size_t len = 0;
    char *got = cache_acc_finish(acc, &a, pt, ct, &len);
    if (!got) fail_msg("no answer");
    assert_int_equal(len, strlen(got));
    assert_json_eq(got, want);
    char *copy = xstrdup(got);
    cache_acc_free(acc);
    arena_free(&a);
    return copy;
}

struct chunks {
    char **v;
    size_t n;
};

static void on_chunk(void *ctx, const char *json, size_t len)
{
    struct chunks *c = ctx;
    assert_int_equal(strlen(json), len); /* NUL-terminated */
    c->v = xrealloc(c->v, (c->n + 1) * sizeof *c->v);
    c->v[c->n++] = xstrndup(json, len);
}

static void chunks_free(struct chunks *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->v[i]);
    free(c->v);
    c->v = NULL;
    c->n = 0;
}

static struct chunks replay(const char *body, bool completions, const char *id, size_t piece)
{
    struct arena a;
    arena_init(&a);
    struct chunks c = {0};
    int n = cache_replay(&a, body, strlen(body), completions, id, piece, on_chunk, &c);
    if (n < 0) fail_msg("replay refused %s", body);
    assert_int_equal((size_t)n, c.n);
    arena_free(&a);
    return c;
}

/* Replays `answer` with several piece sizes, accumulates the chunks and
 * expects the same answer back. */
static void check_round_trip(const char *answer, bool completions)
{
    size_t pieces[] = {1, 2, 5, 7, 64, 0};
    json_error_t e;
    json_t *orig = json_loads(answer, 0, &e);
    assert_non_null(orig);
    const char *id = json_string_value(json_object_get(orig, "id"));
    json_t *usage = json_object_get(orig, "usage");
    int64_t pt = json_integer_value(json_object_get(usage, "prompt_tokens"));
    int64_t ct = json_integer_value(json_object_get(usage, "completion_tokens"));
    for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
        struct chunks c = replay(answer, completions, id, pieces[k]);
        struct arena a;
        arena_init(&a);
        struct cache_stream_acc *acc = feed_all(completions, (const char *const *)c.v, c.n);
        char *again = cache_acc_finish(acc, &a, pt, ct, NULL);
        assert_non_null(again);
        json_t *got = json_loads(again, 0, &e);
        if (!json_equal(got, orig))
            fail_msg("piece %zu:\ngot  %s\nwant %s", pieces[k], again, answer);
        json_decref(got);
        cache_acc_free(acc);
        arena_free(&a);
        chunks_free(&c);
    }
    json_decref(orig);
}

/* The strings of field `key` in the chunks' first choice's delta (or the
 * choice itself for completions), concatenated; checks that each is whole
 * UTF-8 sequences no longer than `piece` unless one sequence is. */
static char *pieces_of(const struct chunks *c, const char *key, size_t piece, size_t *count)
{
    size_t cap = 1, len = 0;
    char *out = xmalloc(cap);
    *count = 0;
    for (size_t i = 0; i < c->n; i++) {
        json_error_t e;
        json_t *chunk = json_loads(c->v[i], 0, &e); /* jansson rejects broken UTF-8 */
        if (!chunk) fail_msg("chunk %zu is not JSON: %s", i, e.text);
        json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
        json_t *delta = json_object_get(choice, "delta");
        json_t *v = json_object_get(delta ? delta : choice, key);
        if (json_is_string(v) && json_string_length(v) > 0) {
            const unsigned char *s = (const unsigned char *)json_string_value(v);
            size_t n = json_string_length(v);
            if ((s[0] & 0xC0) == 0x80) fail_msg("piece starts inside a sequence: %s", c->v[i]);
            size_t seqlen = s[0] < 0x80 ? 1 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
            if (n > piece && n > seqlen) fail_msg("piece of %zu bytes: %s", n, c->v[i]);
            out = xrealloc(out, len + n + 1);
            memcpy(out + len, s, n);
            len += n;
            (*count)++;
        }
        json_decref(chunk);
    }
    out[len] = '\0';
    return out;
}

/* ---- accumulation ---- */

static const char *const chat_chunks[] = {
    CHUNK("{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
          "\"logprobs\":null,\"finish_reason\":null}"),
    CHUNK("{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,"
          "\"finish_reason\":null}"),
    CHUNK("{\"index\":0,\"delta\":{\"content\":\"! How can I\"},\"logprobs\":null,"
          "\"finish_reason\":null}"),
    "{" HEAD ",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" help you \\u00e9t\\u00e9?\"},"
    "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null,\"obfuscation\":\"x7Qz\"}",
    CHUNK("{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}"),
    "{" HEAD ",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":8,"
    "\"total_tokens\":17,\"prompt_tokens_details\":{\"cached_tokens\":0}}}",
};

#define CHAT_ANSWER                                                                                \
    "{\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion\",\"created\":1718000000,"               \
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\","               \
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","                               \
    "\"content\":\"Hello! How can I help you \\u00e9t\\u00e9?\"},\"logprobs\":null,"               \
    "\"finish_reason\":\"stop\"}],"                                                                \
    "\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":8,\"total_tokens\":17}}"

static void test_chat(void **state)
{
    char *got = check_answer(false, chat_chunks, 6, 9, 8, CHAT_ANSWER);
    /* the exact bytes: OpenAI's key order, compact */
    assert_string_equal(got, "{\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion\","
                             "\"created\":1718000000,\"model\":\"gpt-4o-mini-2024-07-18\","
                             "\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,"
                             "\"message\":{\"role\":\"assistant\",\"content\":\"Hello! How can I "
                             "help you \xc3\xa9t\xc3\xa9?\"},\"logprobs\":null,"
                             "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,"
                             "\"completion_tokens\":8,\"total_tokens\":17}}");
    free(got);
}

static void test_bytes(void **state)
{
    struct cache_stream_acc *acc = cache_acc_new(false);
    assert_int_equal(cache_acc_bytes(acc), 0);
    size_t last = 0;
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(cache_acc_feed(acc, chat_chunks[i], strlen(chat_chunks[i])), 0);
        assert_true(cache_acc_bytes(acc) >= last);
        last = cache_acc_bytes(acc);
    }
    /* at least the content, at most a small multiple of it */
    assert_true(last >= strlen("Hello! How can I help you été?"));
    assert_true(last < 1024);
    /* the usage chunk adds nothing */
    assert_int_equal(cache_acc_feed(acc, chat_chunks[5], strlen(chat_chunks[5])), 0);
    assert_int_equal(cache_acc_bytes(acc), last);
    /* a long answer of tiny chunks is counted whole */
    const char *big = CHUNK("{\"index\":0,\"delta\":{\"content\":\"0123456789\"}}");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(cache_acc_feed(acc, big, strlen(big)), 0);
    assert_true(cache_acc_bytes(acc) >= last + 10000);
    cache_acc_free(acc);
    cache_acc_free(NULL);
}

/* Two parallel tool calls whose argument fragments interleave. */
static const char *const tool_chunks[] = {
    CHUNK("{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null},"
          "\"logprobs\":null,\"finish_reason\":null}"),
    CHUNK("{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_Ab1\","
          "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},"
          "\"logprobs\":null,\"finish_reason\":null}"),
    CHUNK("{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
          "{\"arguments\":\"{\\\"city\\\": \"}}]},\"logprobs\":null,\"finish_reason\":null}"),
    CHUNK("{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_Cd2\","
          "\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"\"}}]},"
          "\"logprobs\":null,\"finish_reason\":null}"),
    CHUNK("{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":"
          "{\"arguments\":\"{\\\"tz\\\":\"}}]},\"logprobs\":null,\"finish_reason\":null}"),
    CHUNK("{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
          "{\"arguments\":\"\\\"Paris\\\"}\"}},{\"index\":1,\"function\":"
          "{\"arguments\":\" \\\"CET\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}"),
    CHUNK("{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}"),
    "{" HEAD ",\"choices\":[],\"usage\":{\"prompt_tokens\":80,\"completion_tokens\":40,"
    "\"total_tokens\":120}}",
};

#define TOOL_ANSWER                                                                                \
    "{\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion\",\"created\":1718000000,"               \
    "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\","               \
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"              \
    "\"tool_calls\":["                                                                             \
    "{\"id\":\"call_Ab1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","           \
    "\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}},"                                           \
    "{\"id\":\"call_Cd2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\","              \
    "\"arguments\":\"{\\\"tz\\\": \\\"CET\\\"}\"}}]},"                                             \
    "\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],"                                        \
    "\"usage\":{\"prompt_tokens\":80,\"completion_tokens\":40,\"total_tokens\":120}}"

static void test_tool_calls(void **state)
{
    free(check_answer(false, tool_chunks, sizeof tool_chunks / sizeof tool_chunks[0], 80, 40,
                      TOOL_ANSWER));
}

static void test_function_call_and_refusal(void **state)
{
    static const char *const fc[] = {
        CHUNK("{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,"
              "\"function_call\":{\"name\":\"lookup\",\"arguments\":\"\"}}}"),
        CHUNK("{\"index\":0,\"delta\":{\"function_call\":{\"arguments\":\"{\\\"q\\\":\"}}}"),
        CHUNK("{\"index\":0,\"delta\":{\"function_call\":{\"arguments\":\"\\\"cat\\\"}\"}}}"),
        CHUNK("{\"index\":0,\"delta\":{},\"finish_reason\":\"function_call\"}"),
    };
    free(check_answer(false, fc, 4, 1, 2,
                      "{\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion\","
                      "\"created\":1718000000,\"model\":\"gpt-4o-mini-2024-07-18\","
                      "\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,"
                      "\"message\":{\"role\":\"assistant\",\"content\":null,\"function_call\":"
                      "{\"name\":\"lookup\",\"arguments\":\"{\\\"q\\\":\\\"cat\\\"}\"}},"
                      "\"logprobs\":null,\"finish_reason\":\"function_call\"}],"
                      "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,"
                      "\"total_tokens\":3}}"));
    static const char *const refusal[] = {
        CHUNK("{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,"
              "\"refusal\":\"\"}}"),
        CHUNK("{\"index\":0,\"delta\":{\"refusal\":\"I can't \"}}"),
        CHUNK("{\"index\":0,\"delta\":{\"refusal\":\"help with that.\"}}"),
        CHUNK("{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}"),
    };
    free(check_answer(false, refusal, 4, 5, 6,
                      "{\"id\":\"chatcmpl-9x\",\"object\":\"chat.completion\","
                      "\"created\":1718000000,\"model\":\"gpt-4o-mini-2024-07-18\","
                      "\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,"
                      "\"message\":{\"role\":\"assistant\",\"content\":\"\","
                      "\"refusal\":\"I can't help with that.\"},"
                      "\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                      "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6,"
                      "\"total_tokens\":11}}"));
}

/* n=2: the choices' chunks interleave, choice 1 first; no fingerprint. */
static const char *const multi_chunks[] = {
    "{\"id\":\"c2\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\","
    "\"choices\":[{\"index\":1,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"finish_reason\":null}]}",
    "{\"id\":\"c2\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"finish_reason\":null}]}",
    "{\"id\":\"c2\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\","
    "\"choices\":[{\"index\":1,\"delta\":{\"content\":\"Second \"},\"finish_reason\":null},"
    "{\"index\":0,\"delta\":{\"content\":\"First \"},\"finish_reason\":null}]}",
    "{\"id\":\"c2\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one\"},\"finish_reason\":null}]}",
    "{\"id\":\"c2\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\","
    "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}",
    "{\"id\":\"c2\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\","
    "\"choices\":[{\"index\":1,\"delta\":{\"content\":\"one, cut\"},\"finish_reason\":null}]}",
    "{\"id\":\"c2\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\","
    "\"choices\":[{\"index\":1,\"delta\":{},\"finish_reason\":\"length\"}]}",
    "{\"id\":\"c2\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\","
    "\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":6,"
    "\"total_tokens\":9}}",
};

#define MULTI_ANSWER                                                                               \
    "{\"id\":\"c2\",\"object\":\"chat.completion\",\"created\":7,\"model\":\"m\",\"choices\":["    \
    "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"First one\"},"                 \
    "\"logprobs\":null,\"finish_reason\":\"stop\"},"                                               \
    "{\"index\":1,\"message\":{\"role\":\"assistant\",\"content\":\"Second one, cut\"},"           \
    "\"logprobs\":null,\"finish_reason\":\"length\"}],"                                            \
    "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":6,\"total_tokens\":9}}"

static void test_multi_choice(void **state)
{
    free(check_answer(false, multi_chunks, sizeof multi_chunks / sizeof multi_chunks[0], 3, 6,
                      MULTI_ANSWER));
}

static const char *const completion_chunks[] = {
    "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":5,\"model\":\"davinci-002\","
    "\"choices\":[{\"text\":\" Once\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}",
    "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":5,\"model\":\"davinci-002\","
    "\"choices\":[{\"text\":\" upon a\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}",
    "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":5,\"model\":\"davinci-002\","
    "\"choices\":[{\"text\":\" time\",\"index\":0,\"logprobs\":null,"
    "\"finish_reason\":\"length\"}]}",
    "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":5,\"model\":\"davinci-002\","
    "\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":4,\"total_tokens\":6}}",
};

#define COMPLETION_ANSWER                                                                          \
    "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":5,\"model\":\"davinci-002\","   \
    "\"choices\":[{\"text\":\" Once upon a time\",\"index\":0,\"logprobs\":null,"                  \
    "\"finish_reason\":\"length\"}],"                                                              \
    "\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":4,\"total_tokens\":6}}"

static void test_completions(void **state)
{
    free(check_answer(true, completion_chunks, 4, 2, 4, COMPLETION_ANSWER));
}

/* ---- refusals ---- */

static void test_junk_refused(void **state)
{
    static const char *const junk[] = {
        "",
        "not json",
        "[DONE]",
        "[]",
        "42",
        "\"s\"",
        "{}",
        "{\"id\":\"x\"}",
        "{\"choices\":{}}",
        "{\"choices\":null}",
        "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}",
        "{\"choices\":[1]}",
        "{\"choices\":[{\"index\":128,\"delta\":{\"content\":\"x\"}}]}",
        "{\"choices\":[{\"index\":-1,\"delta\":{}}]}",
        "{\"choices\":[{\"index\":\"0\",\"delta\":{}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":7}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":[]}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":1}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":{}}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":128}]}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"id\":\"no index\"}]}}]}",
        ("{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,"
         "\"function\":{\"arguments\":{}}}]}}]}"),
        "{\"choices\":[{\"index\":0,\"delta\":{\"function_call\":\"auto\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]} trailing",
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        struct cache_stream_acc *acc = cache_acc_new(false);
        assert_int_equal(cache_acc_feed(acc, chat_chunks[0], strlen(chat_chunks[0])), 0);
        if (cache_acc_feed(acc, junk[i], strlen(junk[i])) != -1) fail_msg("accepted %s", junk[i]);
        /* sticky: a good chunk after it is refused too, and nothing is stored */
        assert_int_equal(cache_acc_feed(acc, chat_chunks[1], strlen(chat_chunks[1])), -1);
        struct arena a;
        arena_init(&a);
        assert_null(cache_acc_finish(acc, &a, 1, 1, NULL));
        arena_free(&a);
        cache_acc_free(acc);
    }
    /* completions: text must be a string */
    struct cache_stream_acc *acc = cache_acc_new(true);
    const char *bad = "{\"choices\":[{\"text\":[\"x\"],\"index\":0}]}";
    assert_int_equal(cache_acc_feed(acc, bad, strlen(bad)), -1);
    cache_acc_free(acc);
}

static void test_nothing_to_store(void **state)
{
    struct arena a;
    arena_init(&a);
    struct cache_stream_acc *acc = cache_acc_new(false);
    assert_null(cache_acc_finish(acc, &a, 0, 0, NULL)); /* no chunk */
    /* only the usage chunk: no choice to answer with */
    assert_int_equal(cache_acc_feed(acc, chat_chunks[5], strlen(chat_chunks[5])), 0);
    assert_null(cache_acc_finish(acc, &a, 9, 8, NULL));
    cache_acc_free(acc);
    /* index 127 is the last one taken; a missing index is the position */
    acc = cache_acc_new(false);
    const char *last = "{\"choices\":[{\"delta\":{\"content\":\"a\"}},{\"delta\":{\"content\":"
                       "\"b\"}},{\"index\":127,\"delta\":{\"tool_calls\":[{\"index\":127,"
                       "\"function\":{\"arguments\":\"{}\"}}]}}]}";
    assert_int_equal(cache_acc_feed(acc, last, strlen(last)), 0);
    char *got = cache_acc_finish(acc, &a, 0, 0, NULL);
    assert_json_eq(got, "{\"id\":\"\",\"object\":\"chat.completion\",\"created\":0,\"model\":\"\","
                        "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                        "\"content\":\"a\"},\"logprobs\":null,\"finish_reason\":null},"
                        "{\"index\":1,\"message\":{\"role\":\"assistant\",\"content\":\"b\"},"
                        "\"logprobs\":null,\"finish_reason\":null},"
                        "{\"index\":127,\"message\":{\"role\":\"assistant\",\"content\":null,"
                        "\"tool_calls\":[{\"id\":\"\",\"type\":\"function\",\"function\":"
                        "{\"name\":\"\",\"arguments\":\"{}\"}}]},\"logprobs\":null,"
                        "\"finish_reason\":null}],\"usage\":{\"prompt_tokens\":0,"
                        "\"completion_tokens\":0,\"total_tokens\":0}}");
    cache_acc_free(acc);
    arena_free(&a);
}

/* ---- replay ---- */

#define UTF8_TEXT                                                                                  \
    "Caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e ok \xf0\x9f\x98\x80\xf0\x9f\x8e\x89 "        \
    "d\xc3\xa9j\xc3\xa0 vu, and then some words to cut"

static void test_replay_utf8_pieces(void **state)
{
    const char *answer =
        "{\"id\":\"orig\",\"object\":\"chat.completion\",\"created\":42,\"model\":\"m\","
        "\"system_fingerprint\":\"fp\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
        "\"assistant\",\"content\":\"" UTF8_TEXT "\"},\"logprobs\":null,\"finish_reason\":"
        "\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}";
    struct chunks c = replay(answer, false, "chatcmpl-new", 5);
    assert_true(c.n >= 3);
    assert_string_equal(c.v[0], "{\"id\":\"chatcmpl-new\",\"object\":\"chat.completion.chunk\","
                                "\"created\":42,\"model\":\"m\",\"system_fingerprint\":\"fp\","
                                "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                                "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}");
    assert_string_equal(c.v[c.n - 1],
                        "{\"id\":\"chatcmpl-new\",\"object\":\"chat.completion.chunk\","
                        "\"created\":42,\"model\":\"m\",\"system_fingerprint\":\"fp\","
                        "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                        "\"finish_reason\":\"stop\"}]}");
    size_t count;
    char *text = pieces_of(&c, "content", 5, &count);
    assert_string_equal(text, UTF8_TEXT);
    assert_int_equal(count, c.n - 2);
    assert_true(count >= strlen(UTF8_TEXT) / 5);
    free(text);
    chunks_free(&c);

    /* piece 1: one character per chunk, a 4-byte emoji included */
    c = replay(answer, false, "x", 1);
    text = pieces_of(&c, "content", 1, &count);
    assert_string_equal(text, UTF8_TEXT);
    free(text);
    chunks_free(&c);

    /* piece 0: the content whole */
    c = replay(answer, false, "x", 0);
    assert_int_equal(c.n, 3);
    chunks_free(&c);
}

static void test_replay_space_cut(void **state)
{
    const char *answer = "{\"choices\":[{\"message\":{\"content\":\"abcdef ghijkl mnop ab "
                         "cdefghijkl xy zzzzzzzzz\"},\"finish_reason\":\"stop\"}]}";
    struct chunks c = replay(answer, false, "i", 8);
    /* a space in the last quarter (bytes 6 and 7) ends the piece after it;
     * one before that does not */
    const char *want[] = {"abcdef ", "ghijkl ", "mnop ab ", "cdefghij", "kl xy zz", "zzzzzzz"};
    assert_int_equal(c.n, 2 + sizeof want / sizeof want[0]);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        json_t *chunk = json_loads(c.v[i + 1], 0, NULL);
        json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
        const char *got =
            json_string_value(json_object_get(json_object_get(choice, "delta"), "content"));
        if (!got || strcmp(got, want[i]) != 0)
            fail_msg("piece %zu: \"%s\", want \"%s\"", i, got ? got : "(none)", want[i]);
        json_decref(chunk);
    }
    chunks_free(&c);
}

static void test_replay_tool_calls(void **state)
{
    struct chunks c = replay(TOOL_ANSWER, false, "chatcmpl-new", 5);
    /* role, call 0 with its args in 5-byte pieces, call 1 likewise, finish */
    assert_string_equal(c.v[1],
                        "{\"id\":\"chatcmpl-new\",\"object\":\"chat.completion.chunk\","
                        "\"created\":1718000000,\"model\":\"gpt-4o-mini-2024-07-18\","
                        "\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,"
                        "\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_Ab1\","
                        "\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                        "\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}");
    assert_string_equal(c.v[2],
                        "{\"id\":\"chatcmpl-new\",\"object\":\"chat.completion.chunk\","
                        "\"created\":1718000000,\"model\":\"gpt-4o-mini-2024-07-18\","
                        "\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,"
                        "\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
                        "\"{\\\"cit\"}}]},\"logprobs\":null,\"finish_reason\":null}]}");
    assert_non_null(strstr(c.v[c.n - 1], "\"delta\":{},\"logprobs\":null,"
                                         "\"finish_reason\":\"tool_calls\""));
    size_t second = 0;
    for (size_t i = 0; i < c.n; i++)
        if (strstr(c.v[i], "\"id\":\"call_Cd2\"")) second = i;
    assert_true(second > 2);
    assert_non_null(strstr(c.v[second], "\"index\":1,\"id\":\"call_Cd2\""));
    chunks_free(&c);
}

static void test_replay_completions(void **state)
{
    struct chunks c = replay(COMPLETION_ANSWER, true, "cmpl-new", 5);
    assert_string_equal(c.v[0], "{\"id\":\"cmpl-new\",\"object\":\"text_completion\","
                                "\"created\":5,\"model\":\"davinci-002\",\"choices\":[{\"text\":"
                                "\" Once\",\"index\":0,\"logprobs\":null,"
                                "\"finish_reason\":null}]}");
    assert_string_equal(c.v[c.n - 1],
                        "{\"id\":\"cmpl-new\",\"object\":\"text_completion\",\"created\":5,"
                        "\"model\":\"davinci-002\",\"choices\":[{\"text\":\"\",\"index\":0,"
                        "\"logprobs\":null,\"finish_reason\":\"length\"}]}");
    size_t count;
    char *text = pieces_of(&c, "text", 5, &count);
    assert_string_equal(text, " Once upon a time");
    free(text);
    chunks_free(&c);
}

static void test_round_trip(void **state)
{
    check_round_trip(CHAT_ANSWER, false);
    check_round_trip(TOOL_ANSWER, false);
    check_round_trip(MULTI_ANSWER, false);
    check_round_trip(COMPLETION_ANSWER, true);
    check_round_trip(
        "{\"id\":\"u\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\",\"choices\":["
        "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"" UTF8_TEXT "\","
        "\"refusal\":\"Je ne peux pas \xe2\x80\x94 d\xc3\xa9sol\xc3\xa9\"},\"logprobs\":null,"
        "\"finish_reason\":\"stop\"},"
        "{\"index\":3,\"message\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":\"\"},"
        "\"logprobs\":null,\"finish_reason\":null},"
        "{\"index\":4,\"message\":{\"role\":\"assistant\",\"content\":null,\"function_call\":"
        "{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\\\"\xf0\x9f\x98\x80\\\"}\"}},"
        "\"logprobs\":null,\"finish_reason\":\"function_call\"}],"
        "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}",
        false);
    check_round_trip(
        "{\"id\":\"cmpl-2\",\"object\":\"text_completion\",\"created\":5,"
        "\"model\":\"m\",\"system_fingerprint\":\"fp\",\"choices\":[{\"text\":\"" UTF8_TEXT
        "\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"},"
        "{\"text\":\"\",\"index\":1,\"logprobs\":null,\"finish_reason\":null}],"
        "\"usage\":{\"prompt_tokens\":0,\"completion_tokens\":0,"
        "\"total_tokens\":0}}",
        true);
}

static void test_replay_not_answer(void **state)
{
    static const char *const bad[] = {
        "",
        "nope",
        "[]",
        "{}",
        "null",
        "{\"choices\":{}}",
        "{\"choices\":[1]}",
        "{\"choices\":[{},\"x\"]}",
        "{\"error\":{\"message\":\"x\"}}",
        "{\"choices\":[]} x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct arena a;
        arena_init(&a);
        struct chunks c = {0};
        if (cache_replay(&a, bad[i], strlen(bad[i]), false, "id", 5, on_chunk, &c) != -1)
            fail_msg("replayed %s", bad[i]);
        assert_int_equal(c.n, 0);
        arena_free(&a);
    }
    /* no choices: nothing to send, and no error */
    struct arena a;
    arena_init(&a);
    struct chunks c = {0};
    assert_int_equal(cache_replay(&a, "{\"choices\":[]}", 14, false, "id", 5, on_chunk, &c), 0);
    arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_tool_calls),
        cmocka_unit_test(test_function_call_and_refusal),
        cmocka_unit_test(test_multi_choice),
        cmocka_unit_test(test_completions),
        cmocka_unit_test(test_junk_refused),
        cmocka_unit_test(test_nothing_to_store),
        cmocka_unit_test(test_replay_utf8_pieces),
        cmocka_unit_test(test_replay_space_cut),
        cmocka_unit_test(test_replay_tool_calls),
        cmocka_unit_test(test_replay_completions),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_replay_not_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
