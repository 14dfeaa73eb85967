/* provider_fixture: the data-driven harness shared by the provider and
 * inbound unit tests (header-only; each test binary includes it once).
 * A case is a directory tests/data/providers/<case>/ holding some of:
 *   request.json            the OpenAI request the client sent
 *   upstream_request.json   the exact expected upstream body (JSON-equal)
 *   upstream_url.txt        the expected upstream URL
 *   upstream_headers.txt    header lines that must be among the request's
 *   prepare_error.txt       prepare must fail with a message containing this
 *   upstream_response.json  a canned 200 answer (or upstream_response.bin
 *                           with upstream_content_type.txt)
 *   expected.json           the OpenAI-shaped result of finish
 *   expected_usage.txt      "prompt completion cached [cache_write]" finish must report
 *   finish_error.txt        finish must fail with a message containing this
 *   upstream_stream.txt     a canned event stream, fed at awkward splits
 *   expected_stream.txt     one emitted chunk per line, then "DONE" (the
 *                           adapter set done), "ERROR <text>" (an event
 *                           failed with that text) and/or
 *                           "USAGE prompt completion cached [cache_write]"
 * JSON is compared with json_equal after dropping top-level "created". */
#ifndef AIPROXY_TESTS_PROVIDER_FIXTURE_H
#define AIPROXY_TESTS_PROVIDER_FIXTURE_H

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/scan.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "core/sse.h"
#include "providers/provider.h"

/* ---- files ---- */

static inline const char *fx_dir(void)
{
    const char *d = getenv("AIPROXY_TEST_DATA");
    return d ? d : "tests/data/providers";
}

/* The file's bytes (NUL-terminated, heap), or NULL when it does not exist. */
static inline char *fx_read(const char *name, const char *file, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s", fx_dir(), name, file);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n < 2) buf = xrealloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

/* The file's text without trailing newlines; NULL when absent. */
static inline char *fx_text(const char *name, const char *file)
{
    char *t = fx_read(name, file, NULL);
    if (!t) return NULL;
    size_t n = strlen(t);
    while (n && (t[n - 1] == '\n' || t[n - 1] == '\r')) t[--n] = '\0';
    return t;
}

static inline json_t *fx_parse(const char *what, const char *s, size_t len)
{
    json_error_t e;
    json_t *v = json_loadb(s, len, 0, &e);
    if (!v) fail_msg("%s is not JSON (%s): %.*s", what, e.text, (int)len, s);
    return v;
}

static inline void fx_assert_json(const char *what, const char *expected, size_t elen, const char *actual,
                           size_t alen)
{
    json_t *e = fx_parse("expected", expected, elen);
    json_t *a = fx_parse(what, actual, alen);
    if (json_is_object(e)) json_object_del(e, "created");
    if (json_is_object(a)) json_object_del(a, "created");
    if (!json_equal(e, a)) {
        char *es = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
        char *as = json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS);
        print_error("%s differs\nexpected: %s\nactual:   %s\n", what, es, as);
        free(es);
        free(as);
        json_decref(e);
        json_decref(a);
        fail();
    }
    json_decref(e);
    json_decref(a);
}

/* ---- a provider call ---- */

/* The preset of the provider fx_call_init builds (NULL: none). */
static const char *fx_preset __attribute__((unused));

struct fx_call {
    struct config_provider provider;
    struct config_model model;
    struct req_facts facts;
    struct arena arena;
    struct provider_call call;
    char *body;
};

/* Builds the call for case `name` (its request.json, or "{}" when absent). */
static inline void fx_call_init(struct fx_call *c, const char *name, enum provider_type type,
                         enum api_kind kind, const char *upstream_id)
{
    memset(c, 0, sizeof *c);
    c->provider.name = "p1";
    c->provider.type = type;
    c->provider.endpoint = type == PROVIDER_ANTHROPIC    ? "https://api.anthropic.com/v1"
                           : type == PROVIDER_CLOUDFLARE ? "https://api.cloudflare.com/client/v4"
                           : type == PROVIDER_OCF        ? "http://ocf.test:8092"
                                                         : "https://api.mistral.ai/v1";
    c->provider.api_key = "sk-test";
    c->provider.account_id = "acc123";
    c->provider.api_token = "cf-token";
    c->provider.max_tokens_default = 1024;
    c->provider.preset = (char *)fx_preset;
    c->model.name = "m";
    c->model.upstream_id = (char *)upstream_id;
    arena_init(&c->arena);
    size_t len = 0;
    c->body = fx_read(name, "request.json", &len);
    if (!c->body) {
        c->body = xstrdup("{}");
        len = 2;
    }
    if (kind == API_CHAT || kind == API_EMBEDDINGS || kind == API_COMPLETIONS) {
        struct scan_error e;
        enum scan_kind sk = kind == API_CHAT          ? SCAN_CHAT
                            : kind == API_EMBEDDINGS ? SCAN_EMBEDDINGS
                                                     : SCAN_COMPLETIONS;
        if (strcmp(c->body, "{}") != 0 && scan_request(sk, c->body, len, &c->facts, &e) != 0)
            fail_msg("%s/request.json fails the scan: %s", name, e.message);
    }
    c->call = (struct provider_call){
        .kind = kind,
        .body = c->body,
        .body_len = len,
        .facts = &c->facts,
        .provider = &c->provider,
        .model = &c->model,
        .arena = &c->arena,
        .request_id = "req-1",
    };
}

static inline void fx_call_cleanup(struct fx_call *c)
{
    arena_free(&c->arena);
    free(c->body);
}

/* ---- prepare ---- */

static inline void fx_check_prepare(struct fx_call *c, const char *name, const struct provider_ops *ops)
{
    char *want_err = fx_text(name, "prepare_error.txt");
    char *want_body = fx_read(name, "upstream_request.json", NULL);
    if (!want_err && !want_body) return;
    struct provider_request pr;
    memset(&pr, 0, sizeof pr);
    char err[256] = "";
    int rc = ops->prepare(&c->call, &pr, err, sizeof err);
    if (want_err) {
        if (rc != -1) fail_msg("%s: prepare succeeded, expected error '%s'", name, want_err);
        if (!strstr(err, want_err)) fail_msg("%s: error '%s' lacks '%s'", name, err, want_err);
        free(want_err);
        free(want_body);
        return;
    }
    if (rc != 0) fail_msg("%s: prepare failed: %s", name, err);
    assert_int_equal(strlen(pr.body), pr.body_len);
    fx_assert_json(name, want_body, strlen(want_body), pr.body, pr.body_len);
    free(want_body);
    char *url = fx_text(name, "upstream_url.txt");
    if (url) {
        assert_string_equal(pr.url, url);
        free(url);
    }
    char *hdrs = fx_read(name, "upstream_headers.txt", NULL);
    if (hdrs) {
        for (char *line = strtok(hdrs, "\n"); line; line = strtok(NULL, "\n"))
            if (*line && !strstr(pr.headers, line))
                fail_msg("%s: header '%s' missing from:\n%s", name, line, pr.headers);
        free(hdrs);
    }
}

/* ---- finish ---- */

static inline void fx_check_usage(const char *name, const char *file_text, const struct provider_usage *u)
{
    long long p, comp, cached, written = 0;
    if (sscanf(file_text, "%lld %lld %lld %lld", &p, &comp, &cached, &written) < 3)
        fail_msg("%s: bad usage line '%s'", name, file_text);
    if (!u->present) fail_msg("%s: no usage reported", name);
    assert_int_equal(u->prompt_tokens, p);
    assert_int_equal(u->completion_tokens, comp);
    assert_int_equal(u->cached_tokens, cached);
    assert_int_equal(u->cache_write_tokens, written);
}

static inline void fx_check_finish(struct fx_call *c, const char *name, const struct provider_ops *ops)
{
    size_t len = 0;
    char *body = fx_read(name, "upstream_response.json", &len);
    char *ctype = NULL;
    if (!body) {
        body = fx_read(name, "upstream_response.bin", &len);
        ctype = fx_text(name, "upstream_content_type.txt");
    }
    if (!body) return;
    struct provider_response resp = {.status = 200,
                                     .content_type = ctype ? ctype : "application/json",
                                     .body = body,
                                     .len = len};
    char *out = NULL;
    size_t out_len = 0;
    struct provider_usage u = {0};
    char err[256] = "";
    int rc = ops->finish(&c->call, &resp, &out, &out_len, &u, err, sizeof err);
    char *want_err = fx_text(name, "finish_error.txt");
    if (want_err) {
        if (rc != -1) fail_msg("%s: finish succeeded, expected '%s'", name, want_err);
        if (!strstr(err, want_err)) fail_msg("%s: finish error '%s' lacks '%s'", name, err, want_err);
        free(want_err);
    } else {
        if (rc != 0) fail_msg("%s: finish failed: %s", name, err);
        char *want = fx_read(name, "expected.json", NULL);
        if (!want) fail_msg("%s: expected.json missing", name);
        fx_assert_json(name, want, strlen(want), out, out_len);
        free(want);
        char *usage = fx_text(name, "expected_usage.txt");
        if (usage) fx_check_usage(name, usage, &u);
        else if (u.present) fail_msg("%s: usage reported but no expected_usage.txt", name);
        free(usage);
    }
    free(body);
    free(ctype);
}

/* ---- streams ---- */

struct fx_stream {
    struct fx_call *c;
    const struct provider_ops *ops;
    struct provider_stream st;
    char **chunks;
    size_t n;
    int rc;
};

static inline void fx_on_chunk(void *ctx, const char *json, size_t len)
{
    struct fx_stream *s = ctx;
    assert_int_equal(strlen(json), len);
    s->chunks = xrealloc(s->chunks, (s->n + 1) * sizeof *s->chunks);
    s->chunks[s->n++] = xstrndup(json, len);
}

static inline int fx_on_event(void *ctx, const struct sse_event *ev)
{
    struct fx_stream *s = ctx;
    if (s->rc != 0 || s->st.done) return 0;
    s->rc = s->ops->stream_event(&s->c->call, &s->st, ev, fx_on_chunk, s);
    return 0;
}

/* Feeds the stream in pieces of `step` bytes (0: whole) and checks the
 * result against expected_stream.txt. */
static inline void fx_run_stream(const char *name, const struct provider_ops *ops, enum provider_type type,
                          enum api_kind kind, const char *upstream_id, const char *data,
                          size_t len, const char *want, size_t step)
{
    struct fx_call c;
    fx_call_init(&c, name, type, kind, upstream_id);
    struct fx_stream s = {.c = &c, .ops = ops};
    struct sse_reader r;
    sse_reader_init(&r, ops->stream_mode, 1 << 20, fx_on_event, &s);
    for (size_t off = 0; off < len;) {
        size_t n = step && step < len - off ? step : len - off;
        assert_int_equal(sse_reader_feed(&r, data + off, n), SSE_OK);
        off += n;
    }
    assert_int_equal(sse_reader_finish(&r), SSE_OK);
    sse_reader_cleanup(&r);

    char *copy = xstrdup(want);
    size_t i = 0;
    bool want_done = false;
    const char *want_error = NULL;
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        if (!*line) continue;
        if (strcmp(line, "DONE") == 0) {
            want_done = true;
        } else if (strncmp(line, "ERROR ", 6) == 0) {
            want_error = line + 6;
        } else if (strncmp(line, "USAGE ", 6) == 0) {
            fx_check_usage(name, line + 6, &s.st.usage);
        } else {
            if (i >= s.n) fail_msg("%s (step %zu): only %zu chunks, expected more: %s", name, step, s.n, line);
            char what[128];
            snprintf(what, sizeof what, "%s chunk %zu (step %zu)", name, i, step);
            fx_assert_json(what, line, strlen(line), s.chunks[i], strlen(s.chunks[i]));
            i++;
        }
    }
    if (i != s.n) fail_msg("%s (step %zu): %zu chunks, expected %zu; extra: %s", name, step, s.n, i, s.chunks[i]);
    if (want_done != s.st.done) fail_msg("%s: done is %d", name, s.st.done);
    if (want_error) {
        if (s.rc != -1) fail_msg("%s: no error, expected '%s'", name, want_error);
        if (!strstr(s.st.error, want_error)) fail_msg("%s: error '%s' lacks '%s'", name, s.st.error, want_error);
    } else if (s.rc != 0) {
        fail_msg("%s: stream error: %s", name, s.st.error);
    }
    free(copy);
    for (size_t k = 0; k < s.n; k++) free(s.chunks[k]);
    free(s.chunks);
    fx_call_cleanup(&c);
}

static inline void fx_check_stream(const char *name, const struct provider_ops *ops, enum provider_type type,
                            enum api_kind kind, const char *upstream_id)
{
    size_t len = 0;
    char *data = fx_read(name, "upstream_stream.txt", &len);
    if (!data) return;
    char *want = fx_read(name, "expected_stream.txt", NULL);
    if (!want) fail_msg("%s: expected_stream.txt missing", name);
    static const size_t steps[] = {0, 1, 2, 3, 7, 13, 64};
    for (size_t k = 0; k < sizeof steps / sizeof *steps; k++)
        fx_run_stream(name, ops, type, kind, upstream_id, data, len, want, steps[k]);
    free(data);
    free(want);
}

/* Runs every file of the case that exists. */
static inline void fx_case(const char *name, const struct provider_ops *ops, enum provider_type type,
                    enum api_kind kind, const char *upstream_id)
{
    char *probe = fx_read(name, "request.json", NULL);
    char *probe2 = fx_read(name, "upstream_response.json", NULL);
    char *probe3 = fx_read(name, "upstream_stream.txt", NULL);
    char *probe4 = fx_read(name, "upstream_response.bin", NULL);
    if (!probe && !probe2 && !probe3 && !probe4) fail_msg("case %s has no files (cwd must be the repo root)", name);
    free(probe);
    free(probe2);
    free(probe3);
    free(probe4);
    struct fx_call c;
    fx_call_init(&c, name, type, kind, upstream_id);
    fx_check_prepare(&c, name, ops);
    fx_check_finish(&c, name, ops);
    fx_call_cleanup(&c);
    fx_check_stream(name, ops, type, kind, upstream_id);
}

#endif
