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

/* ---- the block spliced into the body ----
 *
 * The body is not parsed and re-serialised (jansson's dump of a large
 * conversation costs more than everything else the injection does): a
 * walk over its text finds the top-level "messages" array and its first
 * message, and the block goes in as a JSON string at one place. The walk
 * checks the structure it passes through but is not a validator: the scan
 * that follows reads the result and answers what is wrong with a body.
 * Keys are compared as written (a key spelled with escapes is not seen);
 * of duplicated keys the last counts, as jansson's parse would have it. */

struct span {
    const char *p; /* the value's first byte */
    const char *end; /* past its last */
};

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* p at '"': past the closing quote, NULL when there is none. */
static const char *skip_string(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        if (*p == '\\') {
            p++;
            continue;
        }
        if (*p == '"') return p + 1;
    }
    return NULL;
}

/* p at a value: past it (strings skipped as strings, brackets counted),
 * NULL when the text ends first. */
static const char *skip_value(const char *p, const char *e)
{
    if (p >= e) return NULL;
    if (*p == '"') return skip_string(p, e);
    if (*p != '{' && *p != '[') {
        while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
               *p != '\n' && *p != '\r')
            p++;
        return p;
    }
    size_t depth = 0;
    for (; p < e; p++) {
        if (*p == '"') {
            p = skip_string(p, e);
            if (!p) return NULL;
            p--;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (--depth == 0) return p + 1;
        }
    }
    return NULL;
}

static bool key_is(const char *k, const char *kend, const char *want)
{
    size_t n = strlen(want);
    return (size_t)(kend - k) == n + 2 && memcmp(k + 1, want, n) == 0;
}

/* The members of the object at `p` ('{') named `want[i]` (the last of
 * each), into out[i] (p NULL: absent). False when it is not an object. */
static bool object_members(const char *p, const char *e, const char *const *want, size_t n,
                           struct span *out)
{
    for (size_t i = 0; i < n; i++) out[i] = (struct span){0};
    if (p >= e || *p != '{') return false;
    p = skip_ws(p + 1, e);
    if (p < e && *p == '}') return true;
    for (;;) {
        if (p >= e || *p != '"') return false;
        const char *k = p, *kend = skip_string(p, e);
        if (!kend) return false;
        p = skip_ws(kend, e);
        if (p >= e || *p != ':') return false;
        p = skip_ws(p + 1, e);
        const char *v = p, *vend = skip_value(p, e);
        if (!vend || vend == v) return false;
        for (size_t i = 0; i < n; i++)
            if (key_is(k, kend, want[i])) out[i] = (struct span){v, vend};
        p = skip_ws(vend, e);
        if (p < e && *p == ',') {
            p = skip_ws(p + 1, e);
            continue;
        }
        return p < e && *p == '}';
    }
}

/* `s` as the inside of a JSON string (no quotes), in the arena. The block
 * is valid UTF-8 (contents are checked on the way in): bytes from 0x80 go
 * as they are. */
static char *json_escaped(struct arena *a, const char *s, size_t n, size_t *out_len)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        len += c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' ? 2 : c < 0x20 ? 6 : 1;
    }
    char *out = arena_alloc(a, len + 1), *w = out;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *w++ = '\\';
            *w++ = (char)c;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            *w++ = '\\';
            *w++ = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (c < 0x20) {
            memcpy(w, "\\u00", 4);
            w[4] = hex[c >> 4];
            w[5] = hex[c & 15];
            w += 6;
        } else {
            *w++ = (char)c;
        }
    }
    *w = '\0';
    *out_len = len;
    return out;
}

/* The body with `block` appended to its system message (a first message
 * of role system or developer: to its string content after a blank line,
 * or as a text part of its array content), or a system message inserted
 * first when there is none; NULL when the body is not an object with a
 * messages array (the scan answers what is wrong with it). */
static char *with_block(struct arena *a, const char *body, size_t len, const char *block,
                        size_t block_len, size_t *out_len)
{
    const char *e = body + len;
    static const char *const top_keys[] = {"messages"};
    struct span msgs;
    if (!object_members(skip_ws(body, e), e, top_keys, 1, &msgs) || !msgs.p || *msgs.p != '[')
        return NULL;
    const char *first = skip_ws(msgs.p + 1, e);
    if (first >= e) return NULL;
    bool empty = *first == ']';
    static const char *const msg_keys[] = {"role", "content"};
    struct span m[2] = {{0}};
    if (!empty && *first == '{' && !object_members(first, e, msg_keys, 2, m)) return NULL;
    bool system = m[0].p && *m[0].p == '"' &&
                  (key_is(m[0].p, m[0].end, "system") || key_is(m[0].p, m[0].end, "developer"));
    const struct span *content = system && m[1].p ? &m[1] : NULL;

    size_t el;
    const char *esc = json_escaped(a, block, block_len, &el);
    const char *pre, *suf, *at;
    if (content && *content->p == '"') {
        pre = "\\n\\n";
        suf = "";
        at = content->end - 1; /* before the closing quote */
    } else if (content && *content->p == '[') {
        bool none = *skip_ws(content->p + 1, e) == ']';
        pre = none ? "{\"type\":\"text\",\"text\":\"" : ",{\"type\":\"text\",\"text\":\"";
        suf = "\"}";
        at = content->end - 1; /* before the closing bracket */
    } else {
        pre = "{\"role\":\"system\",\"content\":\"";
        suf = empty ? "\"}" : "\"},";
        at = msgs.p + 1; /* after the opening bracket */
    }
    size_t head = (size_t)(at - body), pl = strlen(pre), sl = strlen(suf);
    size_t n = len + pl + el + sl;
    char *out = arena_alloc(a, n + 1), *w = out;
    memcpy(w, body, head);
    w += head;
    memcpy(w, pre, pl);
    w += pl;
    memcpy(w, esc, el);
    w += el;
    memcpy(w, suf, sl);
    w += sl;
    memcpy(w, at, len - head);
    out[n] = '\0';
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
    char *body = with_block(&req->arena, req->body, req->body_len, pc->inj.block,
                            pc->inj.block_len, &len);
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
