/* anthropic_native: an Anthropic client's own headers and fields, carried
 * to Anthropic providers, and the count_tokens request (see the header).
 *
 * Why a side channel and not a field in the OpenAI body: POST /v1/messages
 * is translated to OpenAI chat and served by any provider; the OpenAI
 * adapter forwards bodies spliced, unread, so a gateway-private field there
 * would have to be cut out on the chat path of every request. Carried in
 * provider_call instead, the fields reach only the Anthropic adapter, and
 * the plain chat path does not change. */
#include "providers/anthropic_native.h"

#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "providers/internal.h"

/* Top-level Messages fields that survive the trip through OpenAI chat. */
static const char *const passthrough_keys[] = {
    "thinking", "context_management", "metadata", "service_tier", "top_k", NULL,
};

const char *anthropic_passthrough_fields(struct arena *a, const char *body, size_t len)
{
    bool any = false;
    for (const char *const *k = passthrough_keys; *k && !any; k++)
        any = memmem(body, len, *k, strlen(*k)) != NULL;
    if (!any) return NULL; /* most requests: no parse */
    json_t *in = pj_load(body, len);
    if (!json_is_object(in)) {
        json_decref(in);
        return NULL;
    }
    json_t *out = json_object();
    for (const char *const *k = passthrough_keys; *k; k++) {
        json_t *v = json_object_get(in, *k);
        if (v && !json_is_null(v)) json_object_set(out, *k, v);
    }
    const char *text = json_object_size(out) > 0 ? pj_dump(a, out, NULL) : NULL;
    json_decref(out);
    json_decref(in);
    return text;
}

char *anthropic_headers(struct arena *a, const char *api_key,
                        const struct anthropic_passthrough *pt, bool stream)
{
    const char *version = pt && header_value_ok(pt->version) ? pt->version
                                                             : ANTHROPIC_DEFAULT_VERSION;
    const char *beta = pt && header_value_ok(pt->beta) ? pt->beta : NULL;
    return arena_printf(a,
                        "x-api-key: %s\r\nanthropic-version: %s\r\n%s%s%s"
                        "content-type: application/json\r\naccept: %s\r\n",
                        api_key, version, beta ? "anthropic-beta: " : "", beta ? beta : "",
                        beta ? "\r\n" : "", stream ? "text/event-stream" : "application/json");
}

/* Whether the last assistant turn of a Messages array holds a tool_use. */
static bool last_assistant_uses_tools(const json_t *messages)
{
    for (size_t i = json_array_size(messages); i-- > 0;) {
        const json_t *m = json_array_get(messages, i);
        const char *role = pj_str(m, "role");
        if (!role || strcmp(role, "assistant") != 0) continue;
        size_t j;
        const json_t *b;
        json_array_foreach(json_object_get(m, "content"), j, b) {
            const char *t = pj_str(b, "type");
            if (t && strcmp(t, "tool_use") == 0) return true;
        }
        return false;
    }
    return false;
}

void anthropic_apply_passthrough(json_t *out, const struct anthropic_passthrough *pt)
{
    if (!pt || !pt->fields) return;
    json_t *f = pj_load(pt->fields, strlen(pt->fields));
    if (!json_is_object(f)) {
        json_decref(f);
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(f, k, v) {
        if (strcmp(k, "thinking") == 0 && last_assistant_uses_tools(json_object_get(out, "messages")))
            continue;
        json_object_set(out, k, v);
    }
    json_decref(f);
}

int anthropic_count_tokens_prepare(const struct provider_call *call, const char *body, size_t len,
                                   const struct anthropic_passthrough *pt,
                                   struct provider_request *out, char *err, size_t err_cap)
{
    const struct config_provider *p = call->provider;
    if (!header_value_ok(p->api_key)) {
        perr(err, err_cap, "provider %s has no usable api_key", p->name);
        return -1;
    }
    json_t *in = pj_load(body, len);
    if (!json_is_object(in)) {
        json_decref(in);
        perr(err, err_cap, "the request body is not a JSON object");
        return -1;
    }
    pj_set_str(in, "model", call->model->upstream_id);
    json_object_del(in, "max_tokens");
    json_object_del(in, "stream");
    out->body = pj_dump(call->arena, in, &out->body_len);
    json_decref(in);
    out->url = arena_printf(call->arena, "%s/messages/count_tokens", provider_call_endpoint(call));
    out->headers = anthropic_headers(call->arena, p->api_key, pt, false);
    out->stream = false;
    return 0;
}

int anthropic_count_tokens_read(const char *body, size_t len, long long *input_tokens)
{
    json_t *root = pj_load(body, len);
    int64_t n = -1;
    int rc = json_is_object(root) && json_is_integer(json_object_get(root, "input_tokens")) &&
                     pj_int(root, "input_tokens", &n) && n >= 0
                 ? 0
                 : -1;
    json_decref(root);
    *input_tokens = rc == 0 ? (long long)n : 0;
    return rc;
}
