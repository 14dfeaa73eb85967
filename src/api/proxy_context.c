/* proxy_context: the context delta buffer in the request flow (SPEC
 * section 8).
 *
 * A request that says X-Inject-Context: true gets the caller's pending
 * changes of its project (X-Context-Project, default "default") appended
 * to its system message, before anything reads the body: the scan, the
 * token estimate, admission and the budget, the cache key and the
 * providers all see the injected prompt, so it is priced and metered like
 * the rest. /v1/messages and /aiproxy/predict arrive here already
 * translated to an OpenAI chat body (Anthropic's top-level `system` is
 * its first message), so one injection serves every endpoint. Once the
 * answer succeeded, what was injected counts as seen; a failed request
 * leaves it pending for the next. */
#include "api/proxy_context.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "api/admission.h"
#include "api/context_api.h"
#include "api/proxy_internal.h"
#include "config/config.h"
#include "context/buffer.h"
#include "context/delta.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "http/server.h"

struct proxy_context {
    const char *scope;
    const char *project;
    struct ctx_injection inj; /* block NULL: nothing was pending */
    bool done;
};

static bool header_true(const char *v)
{
    if (!v) return false;
    while (*v == ' ' || *v == '\t') v++;
    return strncasecmp(v, "true", 4) == 0 || strncmp(v, "1", 1) == 0 ||
           strncasecmp(v, "yes", 3) == 0;
}

/* The body with `block` appended to its system message (created first
 * when there is none); NULL when the body is not a chat body with a
 * messages array. */
static char *with_block(struct arena *a, const char *body, size_t len, const char *block,
                        size_t *out_len)
{
    json_error_t e;
    json_t *root = json_loadb(body, len, 0, &e);
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs)) {
        json_decref(root);
        return NULL;
    }
    json_t *first = json_array_get(msgs, 0);
    const char *role = json_string_value(json_object_get(first, "role"));
    bool system = role && (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0);
    json_t *content = system ? json_object_get(first, "content") : NULL;
    if (json_is_string(content)) {
        const char *old = json_string_value(content);
        size_t n = json_string_length(content);
        size_t bl = strlen(block);
        char *joined = xmalloc(n + 2 + bl + 1);
        memcpy(joined, old, n);
        memcpy(joined + n, "\n\n", 2);
        memcpy(joined + n + 2, block, bl + 1);
        json_object_set_new(first, "content", json_stringn(joined, n + 2 + bl));
        free(joined);
    } else if (json_is_array(content)) {
        json_t *part = json_object();
        json_object_set_new(part, "type", json_string("text"));
        json_object_set_new(part, "text", json_string(block));
        json_array_append_new(content, part);
    } else {
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string("system"));
        json_object_set_new(m, "content", json_string(block));
        json_array_insert_new(msgs, 0, m);
    }
    size_t n = json_dumpb(root, NULL, 0, JSON_COMPACT | JSON_REAL_PRECISION(17));
    char *out = arena_alloc(a, n + 1);
    json_dumpb(root, out, n, JSON_COMPACT | JSON_REAL_PRECISION(17));
    out[n] = '\0';
    json_decref(root);
    *out_len = n;
    return out;
}

bool proxy_context_inject(struct proxy *px)
{
    struct http_request *req = px->req;
    const struct config *cfg = req->config;
    if (!cfg->context.enabled || req->from_peer || px->kind != API_CHAT) return true;
    if (!header_true(http_header_get(req, "x-inject-context"))) return true;
    const char *project = http_header_get(req, "x-context-project");
    if (!project || !*project) project = "default";
    if (!ctx_project_name_ok(project, strlen(project))) {
        http_respond_error(req, GW_ERR_BAD_REQUEST,
                           "X-Context-Project must be 1 to 128 characters of letters, digits, "
                           "'.', '_' and '-'.",
                           "x-context-project");
        return false;
    }
    const char *scope = admission_scope(req);
    struct ctx_store *store = context_store();
    if (!scope || !store) return true;
    struct proxy_context *pc = arena_alloc(&req->arena, sizeof *pc);
    memset(pc, 0, sizeof *pc);
    pc->scope = scope;
    pc->project = arena_strdup(&req->arena, project);
    px->context = pc;
    if (ctx_store_inject(store, scope, project, cfg->context.max_inject_tokens, clock_wall_ms(),
                         &req->arena, &pc->inj) != 0 ||
        !pc->inj.block)
        return true; /* nothing pending: the request goes as it is */
    size_t len = 0;
    char *body = with_block(&req->arena, req->body, req->body_len, pc->inj.block, &len);
    if (!body) return true; /* the scan answers what is wrong with it */
    req->body = body;
    req->body_len = len;
    return true;
}

void proxy_context_done(struct proxy *px)
{
    struct proxy_context *pc = px->context;
    if (!pc || pc->done || !pc->inj.block) return;
    pc->done = true;
    struct ctx_store *store = context_store();
    if (store) ctx_store_mark_seen(store, pc->scope, pc->project, &pc->inj);
}

void proxy_context_meta(const struct proxy *px, struct jsonw *w)
{
    const struct proxy_context *pc = px->context;
    if (!pc) return;
    jsonw_raw(w, ",\"context\":{\"project\":");
    jsonw_str(w, pc->project);
    jsonw_raw(w, ",\"files\":");
    jsonw_int(w, pc->inj.files);
    jsonw_raw(w, ",\"diff_lines\":");
    jsonw_int(w, pc->inj.diff_lines);
    jsonw_raw(w, ",\"tokens_injected\":");
    jsonw_int(w, pc->inj.tokens_injected);
    jsonw_raw(w, ",\"tokens_saved\":");
    jsonw_int(w, pc->inj.tokens_saved);
    if (pc->inj.left_out) {
        jsonw_raw(w, ",\"left_out\":");
        jsonw_int(w, pc->inj.left_out);
    }
    jsonw_raw(w, "}");
}
