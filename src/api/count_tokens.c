/* count_tokens: POST /v1/messages/count_tokens (see count_tokens.h).
 * The flow: validate (the inbound Anthropic translator's rules, with a
 * stand-in max_tokens) -> plan like a chat request -> the Anthropic
 * candidates' count_tokens one after another, or the estimate. A side
 * call, not a proxied request: no attempts in the live stats, no ledger,
 * no budget reservation. */
#include "api/count_tokens.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/admission.h"
#include "api/proxy.h"
#include "api/scan.h"
#include "api/upstream_slot.h"
#include "config/config.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/log.h"
#include "http/server.h"
#include "providers/anthropic_native.h"
#include "providers/inbound.h"
#include "providers/provider.h"
#include "providers/token_estimate.h"
#include "routing/candidates.h"
#include "upstream/client.h"

#define MAX_COUNT_ANSWER (64 * 1024) /* a bigger answer is not a count */
#define MAX_COUNT_TRIES 3            /* Anthropic candidates asked before estimating */
#define COUNT_DEADLINE_MS 30000      /* all tries together */

struct count_call {
    struct http_request *req;
    struct route_plan plan;
    size_t next;
    int tries;
    const struct anthropic_passthrough *pt;
    int64_t deadline_ms;
    char why[256]; /* the last failure, for the estimate's marker */
    /* the attempt in flight */
    const struct candidate *cand;
    struct provider_call pcall;
    struct upstream_call *call;
    int status;
    char *answer; /* heap, freed with the request */
    size_t answer_len, answer_cap;
    bool too_large;
};

/* ---- answers ---- */

static void respond_estimate(struct http_request *req, const char *body, size_t len,
                             const char *why)
{
    struct token_estimate e;
    if (token_estimate_messages(body, len, &e) != 0) {
        http_respond_error(req, GW_ERR_INVALID_JSON, "The request body is not a JSON object.", NULL);
        return;
    }
    json_t *x = json_object();
    json_object_set_new(x, "estimated", json_true());
    json_object_set_new(x, "reason", json_string(why));
    json_object_set_new(x, "node", json_string(req->config->node.id ? req->config->node.id : ""));
    json_t *r = json_object();
    json_object_set_new(r, "input_tokens", json_integer(e.tokens));
    json_object_set_new(r, "x-aiproxy", x);
    char *out = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    req->acct.estimated = true;
    req->acct.tokens_in = e.tokens;
    http_respond(req, 200, "application/json", "x-aiproxy-estimated: true\r\n", out, strlen(out));
    free(out);
}

/* ---- the Anthropic candidates ---- */

static bool try_next(struct count_call *cc);

static void reset_answer(struct count_call *cc)
{
    free(cc->answer);
    cc->answer = NULL;
    cc->answer_len = cc->answer_cap = 0;
    cc->too_large = false;
    cc->status = 0;
}

static void on_freed(void *arg)
{
    struct count_call *cc = arg;
    if (cc->call) upstream_call_cancel(cc->call);
    cc->call = NULL;
    free(cc->answer);
    cc->answer = NULL;
}

static void failed(struct count_call *cc, const char *why)
{
    snprintf(cc->why, sizeof cc->why, "%.80s: %.160s", cc->cand->provider->name, why);
    log_event(LOG_DEBUG, "count_tokens_failed", "request %s: count_tokens on %s failed: %s",
              cc->req->id, cc->cand->provider->name, why);
    reset_answer(cc);
    if (try_next(cc)) return;
    struct http_request *req = cc->req;
    char why_all[300];
    snprintf(why_all, sizeof why_all, "every Anthropic provider failed (%.250s)", cc->why);
    respond_estimate(req, req->body, req->body_len, why_all);
}

static void on_head(void *ctx, const struct upstream_head *h)
{
    struct count_call *cc = ctx;
    cc->status = h->status;
}

static void on_data(void *ctx, const char *data, size_t len)
{
    struct count_call *cc = ctx;
    if (cc->too_large || cc->answer_len + len > MAX_COUNT_ANSWER) {
        cc->too_large = true;
        return;
    }
    if (cc->answer_len + len + 1 > cc->answer_cap) {
        size_t cap = cc->answer_cap ? cc->answer_cap * 2 : 1024;
        while (cap < cc->answer_len + len + 1) cap *= 2;
        cc->answer = xrealloc(cc->answer, cap);
        cc->answer_cap = cap;
    }
    memcpy(cc->answer + cc->answer_len, data, len);
    cc->answer_len += len;
    cc->answer[cc->answer_len] = '\0';
}

static void on_done(void *ctx, int err)
{
    struct count_call *cc = ctx;
    struct http_request *req = cc->req;
    cc->call = NULL;
    if (err) {
        failed(cc, upstream_error_text(err));
        return;
    }
    if (cc->too_large) {
        failed(cc, "answer too large");
        return;
    }
    char extra[200];
    snprintf(extra, sizeof extra, "x-aiproxy-provider: %s\r\n", cc->cand->provider->name);
    if (cc->status == 400 || cc->status == 413 || cc->status == 422) {
        /* The request's fault: the provider's (Anthropic-shaped) error as it is. */
        req->acct.provider = cc->cand->provider->name;
        http_respond(req, cc->status, "application/json", extra, cc->answer ? cc->answer : "",
                     cc->answer_len);
        return;
    }
    if (cc->status < 200 || cc->status >= 300) {
        char st[32];
        snprintf(st, sizeof st, "HTTP %d", cc->status);
        failed(cc, st);
        return;
    }
    long long n = 0;
    if (!cc->answer || anthropic_count_tokens_read(cc->answer, cc->answer_len, &n) != 0) {
        failed(cc, "the answer has no input_tokens");
        return;
    }
    req->acct.provider = cc->cand->provider->name;
    req->acct.tokens_in = n;
    http_respond(req, 200, "application/json", extra, cc->answer, cc->answer_len);
}

static const struct upstream_callbacks callbacks = {
    .on_head = on_head,
    .on_data = on_data,
    .on_done = on_done,
};

static bool try_next(struct count_call *cc)
{
    struct http_request *req = cc->req;
    while (cc->next < cc->plan.n && cc->tries < MAX_COUNT_TRIES) {
        const struct candidate *c = &cc->plan.items[cc->next++];
        const struct config_provider *p = c->provider;
        if (p->type != PROVIDER_ANTHROPIC) continue;
        int64_t left = cc->deadline_ms - clock_mono_ms();
        if (left <= 0) return false;
        cc->pcall = (struct provider_call){
            .kind = API_CHAT,
            .body = req->body,
            .body_len = req->body_len,
            .provider = p,
            .model = c->model,
            .endpoint = c->endpoint ? c->endpoint : p->endpoint,
            .arena = &req->arena,
            .request_id = req->id,
            .anthropic = cc->pt,
        };
        struct provider_request pr;
        char why[256];
        cc->cand = c;
        if (anthropic_count_tokens_prepare(&cc->pcall, req->body, req->body_len, cc->pt, &pr, why,
                                           sizeof why) != 0) {
            snprintf(cc->why, sizeof cc->why, "%.80s: %.160s", p->name, why);
            continue;
        }
        cc->tries++;
        int64_t timeout = p->timeout_ms < left ? p->timeout_ms : left;
        struct upstream_request ur = {
            .method = "POST",
            .url = pr.url,
            .headers = pr.headers,
            .body = pr.body,
            .body_len = pr.body_len,
            .timeout_ms = timeout,
            .idle_timeout_ms = timeout,
            .tls_ca_file = p->tls_ca_file,
            .tls_insecure = p->tls_insecure_skip_verify,
            .tls_cert_file = p->tls_cert_file,
            .tls_key_file = p->tls_key_file,
        };
        cc->call = upstream_call_start(api_upstream_pool(req->worker), &ur, &callbacks, cc);
        return true;
    }
    return false;
}

/* ---- the request ---- */

/* The body as /v1/messages would see it: a stand-in max_tokens (count_tokens
 * has none) and no stream. NULL when the body is not a JSON object. */
static char *as_messages_body(struct http_request *req, size_t *len)
{
    json_error_t jerr;
    json_t *in = json_loadb(req->body, req->body_len, 0, &jerr);
    if (!json_is_object(in)) {
        json_decref(in);
        return NULL;
    }
    json_object_set_new(in, "max_tokens", json_integer(1));
    json_object_del(in, "stream");
    char *s = json_dumps(in, JSON_COMPACT);
    json_decref(in);
    if (!s) return NULL;
    *len = strlen(s);
    char *copy = arena_alloc(&req->arena, *len + 1);
    memcpy(copy, s, *len + 1);
    free(s);
    return copy;
}

void count_tokens_handle(struct http_request *req)
{
    size_t mlen = 0;
    char *messages = as_messages_body(req, &mlen);
    if (!messages) {
        http_respond_error(req, GW_ERR_INVALID_JSON, "The request body is not a JSON object.", NULL);
        return;
    }
    char *chat;
    size_t chat_len;
    bool stream = false;
    struct inbound_routing routing;
    struct inbound_error ierr;
    memset(&ierr, 0, sizeof ierr);
    if (inbound_anthropic_ops.request_to_openai(&req->arena, messages, mlen, &chat, &chat_len,
                                                &stream, &routing, &ierr) != 0) {
        http_respond_error(req, ierr.invalid_json ? GW_ERR_INVALID_JSON : GW_ERR_BAD_REQUEST,
                           ierr.message[0] ? ierr.message : "The request is not valid.", ierr.param);
        return;
    }
    struct req_facts facts;
    struct scan_error serr;
    if (scan_request(SCAN_CHAT, chat, chat_len, &facts, &serr) != 0) {
        http_respond_error(req, serr.invalid_json ? GW_ERR_INVALID_JSON : GW_ERR_BAD_REQUEST,
                           serr.message, serr.param);
        return;
    }
    req->acct.model = arena_strdup(&req->arena, facts.model);

    struct count_call *cc = arena_alloc(&req->arena, sizeof *cc);
    memset(cc, 0, sizeof *cc);
    cc->req = req;
    cc->deadline_ms = clock_mono_ms() + COUNT_DEADLINE_MS;
    struct route_input in = {
        .model = facts.model,
        .facts = &facts,
        .body = chat,
        .body_len = chat_len,
        .strategy_override = http_header_get(req, "x-aiproxy-strategy"),
        .task_tier = http_header_get(req, "x-task-tier"),
        .max_cost_nanos = -1,
        .seed = (uint64_t)clock_mono_us() * 6364136223846793005ULL ^ (uint64_t)(uintptr_t)cc,
        .now_ms = clock_mono_ms(),
    };
    routing_plan_request(req->config, &in, &cc->plan, &req->arena);
    if (cc->plan.error != ROUTE_OK) {
        const char *param = cc->plan.error == ROUTE_ERR_STRATEGY    ? "x-aiproxy-strategy"
                            : cc->plan.error == ROUTE_ERR_TASK_TIER ? "x-task-tier"
                                                                    : "model";
        http_respond_error(req, GW_ERR_BAD_REQUEST, cc->plan.error_message, param);
        return;
    }
    if (!cc->plan.model_known) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model '%s' does not exist or no provider serves it.",
                 facts.model);
        http_respond_error(req, GW_ERR_MODEL_NOT_FOUND, msg, "model");
        return;
    }
    if (!admission_model_allowed(req, facts.model, cc->plan.model)) {
        char msg[400];
        snprintf(msg, sizeof msg, "The key '%s' may not use the model '%s'.",
                 req->principal ? req->principal->name : "?", facts.model);
        http_respond_error(req, GW_ERR_FORBIDDEN, msg, "model");
        return;
    }
    if (cc->plan.n == 0) {
        respond_estimate(req, req->body, req->body_len, "no provider can take this request now");
        return;
    }
    const struct config_provider *first = cc->plan.items[0].provider;
    if (first->type != PROVIDER_ANTHROPIC) {
        char why[200];
        snprintf(why, sizeof why, "provider %s (type %s) has no count_tokens", first->name,
                 provider_type_name(first->type));
        respond_estimate(req, req->body, req->body_len, why);
        return;
    }
    cc->pt = proxy_anthropic_passthrough(req);
    arena_on_free(&req->arena, on_freed, cc);
    if (try_next(cc)) return;
    char why[300];
    snprintf(why, sizeof why, "no Anthropic provider could be asked (%.250s)",
             cc->why[0] ? cc->why : "none");
    respond_estimate(req, req->body, req->body_len, why);
}
