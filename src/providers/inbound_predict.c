/* inbound_predict: the standard's native POST /aiproxy/predict (section
 * 5.2). {model, input | messages, routing{strategy, max_cost, timeout}}
 * becomes an OpenAI chat request plus routing options; the OpenAI answer
 * and its x-aiproxy object become {request_id, model, output, metadata}.
 * Predict has no streams; its errors keep OpenAI's shape. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "providers/inbound.h"
#include "providers/internal.h"

static int bad(struct inbound_error *err, const char *param, const char *msg)
{
    snprintf(err->message, sizeof err->message, "%s", msg);
    snprintf(err->param, sizeof err->param, "%s", param);
    return -1;
}

/* Generation settings accepted at the top level and passed through. */
static const char *const passthrough[] = {
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "seed", "user", NULL,
};

static int read_routing(const json_t *r, struct inbound_routing *out, struct inbound_error *err)
{
    if (!r || json_is_null(r)) return 0;
    if (!json_is_object(r)) return bad(err, "routing", "routing must be an object");
    json_t *s = json_object_get(r, "strategy");
    if (s && !json_is_null(s)) {
        enum routing_strategy rs;
        if (!json_is_string(s) || !routing_strategy_parse(json_string_value(s), &rs))
            return bad(err, "routing.strategy",
                       "routing.strategy must be one of cost_optimized, latency_optimized, "
                       "availability, round_robin, least_loaded, weighted");
        if (out) snprintf(out->strategy, sizeof out->strategy, "%s", json_string_value(s));
    }
    json_t *mc = json_object_get(r, "max_cost");
    if (mc && !json_is_null(mc)) {
        /* A client's limit in USD, rounded to the nano-dollar: not an
         * accounting amount, so the double from the JSON is acceptable. */
        double v = json_is_number(mc) ? json_number_value(mc) : -1;
        if (v < 0 || v > 1e9 || isnan(v))
            return bad(err, "routing.max_cost", "routing.max_cost must be a non-negative number (USD)");
        if (out) out->max_cost_nanos = (int64_t)llround(v * 1e9);
    }
    json_t *t = json_object_get(r, "timeout");
    if (t && !json_is_null(t)) {
        double v = json_is_number(t) ? json_number_value(t) : -1;
        if (v < 1 || v > 86400000 || isnan(v))
            return bad(err, "routing.timeout", "routing.timeout must be a number of milliseconds from 1");
        if (out) out->timeout_ms = (int64_t)v;
    }
    return 0;
}

static int request_to_openai(struct arena *a, const char *body, size_t len, char **out,
                             size_t *out_len, bool *stream, struct inbound_routing *routing,
                             struct inbound_error *err)
{
    *stream = false;
    json_t *in = pj_inbound_begin(body, len, routing, err);
    if (!in) return -1;
    json_t *o = json_object();
    int rc = -1;
    const char *model = pj_str(in, "model");
    if (!model || !*model) {
        bad(err, "model", "model: a non-empty string is required");
        goto done;
    }
    pj_set_str(o, "model", model);
    json_t *input = json_object_get(in, "input");
    json_t *msgs = json_object_get(in, "messages");
    if (input && !json_is_null(input)) {
        if (!json_is_string(input) || json_string_length(input) == 0) {
            bad(err, "input", "input must be a non-empty string");
            goto done;
        }
        json_t *m = json_object();
        pj_set_str(m, "role", "user");
        pj_set_str(m, "content", json_string_value(input));
        json_t *list = json_array();
        json_array_append_new(list, m);
        json_object_set_new(o, "messages", list);
    } else if (json_is_array(msgs) && json_array_size(msgs) > 0) {
        json_object_set(o, "messages", msgs);
    } else {
        bad(err, "input", "input (a string) or messages (a non-empty array) is required");
        goto done;
    }
    if (pj_true(in, "stream")) {
        bad(err, "stream", "/aiproxy/predict does not stream; use /v1/chat/completions");
        goto done;
    }
    if (read_routing(json_object_get(in, "routing"), routing, err) != 0) goto done;
    for (const char *const *k = passthrough; *k; k++) {
        json_t *v = json_object_get(in, *k);
        if (v && !json_is_null(v)) json_object_set(o, *k, v);
    }
    *out = pj_dump(a, o, out_len);
    rc = 0;
done:
    json_decref(in);
    json_decref(o);
    return rc;
}

static json_t *copy_or_null(const json_t *v)
{
    return v ? json_deep_copy(v) : json_null();
}

static int response_from_openai(struct arena *a, void *ctx, const char *body, size_t len, char **out,
                                size_t *out_len)
{
    json_t *root = pj_load(body, len);
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *msg = json_object_get(choice, "message");
    if (!json_is_object(msg)) {
        json_decref(root);
        return -1;
    }
    json_t *x = json_object_get(root, "x-aiproxy");
    json_t *usage = json_object_get(root, "usage");
    json_t *r = json_object();
    const char *rid = pj_str(x, "request_id");
    json_object_set_new(r, "request_id", rid ? json_string(rid) : json_null());
    /* The model the client asked for (the standard echoes it); the
     * provider's own id stays in metadata. */
    const char *model = pj_str(x, "requested_model");
    if (!model) model = pj_str(root, "model");
    json_object_set_new(r, "model", model ? json_string(model) : json_null());
    const char *text = pj_str(msg, "content");
    pj_set_str(r, "output", text ? text : "");
    json_t *calls = json_object_get(msg, "tool_calls");
    if (json_array_size(calls) > 0) json_object_set(r, "tool_calls", calls);
    const char *finish = pj_str(choice, "finish_reason");
    if (finish) pj_set_str(r, "finish_reason", finish);

    json_t *meta = json_object();
    json_object_set_new(meta, "provider", copy_or_null(json_object_get(x, "provider")));
    json_object_set_new(meta, "node_id", copy_or_null(json_object_get(x, "node")));
    json_object_set_new(meta, "latency_ms", copy_or_null(json_object_get(x, "latency_ms")));
    int64_t in = 0, outt = 0, total = -1;
    (void)pj_int(usage, "prompt_tokens", &in);
    (void)pj_int(usage, "completion_tokens", &outt);
    if (!pj_int(usage, "total_tokens", &total)) total = in + outt;
    json_t *tokens = json_object();
    pj_set_int(tokens, "input", in);
    pj_set_int(tokens, "output", outt);
    pj_set_int(tokens, "total", total);
    if (json_is_boolean(json_object_get(x, "usage_estimated")))
        json_object_set(tokens, "estimated", json_object_get(x, "usage_estimated"));
    json_object_set_new(meta, "tokens", tokens);
    json_t *cost = json_object();
    json_t *amount = json_object_get(x, "cost");
    json_object_set_new(cost, "amount", json_is_number(amount) ? json_deep_copy(amount) : json_integer(0));
    pj_set_str(cost, "currency", "USD");
    json_object_set_new(meta, "cost", cost);
    json_t *routing = json_object();
    json_object_set_new(routing, "strategy_used", copy_or_null(json_object_get(x, "strategy")));
    json_t *tried = json_object_get(x, "providers_tried");
    json_object_set_new(routing, "providers_tried", json_is_array(tried) ? json_deep_copy(tried) : json_array());
    int64_t failovers = 0;
    (void)pj_int(x, "failovers", &failovers);
    pj_set_int(routing, "failovers", failovers);
    json_object_set_new(routing, "reason", copy_or_null(json_object_get(x, "reason")));
    json_object_set_new(meta, "routing", routing);
    json_object_set_new(r, "metadata", meta);
    *out = pj_dump(a, r, out_len);
    json_decref(r);
    json_decref(root);
    return 0;
}

/* Predict clients get OpenAI's error shape, as is when it is one. */
static int error_from_openai(struct arena *a, int status, const char *body, size_t len, char **out,
                             size_t *out_len)
{
    json_t *root = pj_load(body, len);
    if (json_is_object(json_object_get(root, "error"))) {
        *out = arena_strndup(a, body, len);
        *out_len = len;
        json_decref(root);
        return 0;
    }
    json_decref(root);
    json_t *e = json_object();
    pj_set_str(e, "message", arena_printf(a, "HTTP %d", status));
    pj_set_str(e, "type", status >= 500 ? "server_error" : "invalid_request_error");
    json_object_set_new(e, "param", json_null());
    json_object_set_new(e, "code", json_null());
    json_t *r = json_object();
    json_object_set_new(r, "error", e);
    *out = pj_dump(a, r, out_len);
    json_decref(r);
    return 0;
}

const struct inbound_ops inbound_predict_ops = {
    .name = "predict",
    .request_to_openai = request_to_openai,
    .response_from_openai = response_from_openai,
    .error_from_openai = error_from_openai,
};
