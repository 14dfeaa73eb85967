/* responses_cost: the CPU cost of the /v1/responses translation alone, for
 * callgrind (bench/responses_cost.sh): N times the bench's request (parse,
 * references, begin), its whole answer (with an x-aiproxy object as the
 * gateway splices it) and its stream (bench/bench.py's chunks). Run with
 * N=1 and N=101 and divide the difference by 100 for one request's
 * instructions; argv[2] picks the part: all, whole or stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "providers/inbound.h"
#include "providers/responses.h"

static const char request[] = "{\"model\":\"gpt-bench\",\"input\":\"Say hello\",\"store\":false}";
static const char stream_request[] =
    "{\"model\":\"gpt-bench\",\"input\":\"Say hello\",\"store\":false,\"stream\":true}";
static const char answer[] =
    "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":1700000000,"
    "\"model\":\"gpt-bench\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
    "\"content\":\"Hello! How can I help you today?\"},\"logprobs\":null,\"finish_reason\":"
    "\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9,\"total_tokens\":18},"
    "\"system_fingerprint\":\"fp_bench\",\"x-aiproxy\":{\"request_id\":"
    "\"req_0123456789abcdef0123456789\",\"provider\":\"fake\",\"node\":\"bench-node\","
    "\"cost_usd\":\"0.000027\",\"cost_nanos\":27000,\"tokens\":{\"in\":9,\"out\":9,"
    "\"estimated\":false},\"latency_ms\":{\"upstream\":1,\"total\":1},\"attempts\":1,"
    "\"cache\":\"miss\"}}";
static const char *const words[] = {"Hello", "!", " How", " can", " I", " help", " you", " today", "?", " Bye"};

static void sink(void *ctx, const char *s, size_t n)
{
    *(size_t *)ctx += n + (s ? 0 : 1);
}

static void whole(void)
{
    struct arena a;
    arena_init(&a);
    struct responses_request info;
    struct inbound_error e;
    if (responses_parse(&a, request, strlen(request), &info, &e) != 0) abort();
    const char **ids;
    size_t n;
    responses_referenced_in(&a, &info, &ids, &n);
    char *chat, *out;
    size_t chat_len, out_len;
    struct responses_ctx *c = responses_begin_parsed(&a, &info, NULL, 0, NULL, 0,
                                                     "resp_0123456789abcdef", 1700000000, &chat,
                                                     &chat_len, &e);
    if (!c) abort();
    if (inbound_responses_ops.response_from_openai(&a, c, answer, strlen(answer), &out, &out_len) != 0)
        abort();
    arena_free(&a);
}

static void stream(void)
{
    struct arena a;
    arena_init(&a);
    struct responses_request info;
    struct inbound_error e;
    if (responses_parse(&a, stream_request, strlen(stream_request), &info, &e) != 0) abort();
    char *chat;
    size_t chat_len, total = 0;
    struct responses_ctx *c = responses_begin_parsed(&a, &info, NULL, 0, NULL, 0,
                                                     "resp_0123456789abcdef", 1700000000, &chat,
                                                     &chat_len, &e);
    if (!c) abort();
    void *st = inbound_responses_ops.stream_begin(&a, "req_1", c);
    char chunk[512];
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        int k = snprintf(chunk, sizeof chunk,
                         "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\","
                         "\"created\":1700000000,\"model\":\"gpt-bench\",\"choices\":[{\"index\":0,"
                         "\"delta\":{\"content\":\"%s\"},\"finish_reason\":null}]}",
                         words[i]);
        inbound_responses_ops.stream_chunk(st, chunk, (size_t)k, sink, &total);
    }
    static const char fin[] =
        "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
        "\"model\":\"gpt-bench\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}";
    static const char use[] =
        "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
        "\"model\":\"gpt-bench\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
        "\"completion_tokens\":10,\"total_tokens\":19},\"x-aiproxy\":{\"request_id\":\"req_1\","
        "\"provider\":\"fake\",\"cost_usd\":\"0.000027\"}}";
    inbound_responses_ops.stream_chunk(st, fin, strlen(fin), sink, &total);
    inbound_responses_ops.stream_chunk(st, use, strlen(use), sink, &total);
    inbound_responses_ops.stream_end(st, sink, &total);
    arena_free(&a);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 1;
    const char *part = argc > 2 ? argv[2] : "all";
    for (long i = 0; i < n; i++) {
        if (strcmp(part, "stream") != 0) whole();
        if (strcmp(part, "whole") != 0) stream();
    }
    return 0;
}
