/* ocf: /v1/dnt/table parsing and the `ocf` adapter (ocf.h). The adapter is
 * OpenAI passthrough through the node's forward
 * {endpoint}/v1/service/llm/v1/<path>, which picks a peer serving the body's
 * model at random: that is where the load is spread. */
#include "providers/ocf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/alloc.h"
#include "providers/internal.h"
#include "providers/provider.h"

/* ---- table parsing ---- */

struct pair {
    const char *model, *peer; /* borrowed from the parsed document */
    size_t order;             /* table order, for stable peer lists */
};

struct pairs {
    struct pair *items;
    size_t count, cap;
};

#define MAX_PAIRS (OCF_MAX_MODELS * 4)

static void add_pair(struct pairs *p, const char *model, const char *peer)
{
    if (p->count >= MAX_PAIRS) return;
    if (p->count == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->items = xrealloc(p->items, p->cap * sizeof *p->items);
    }
    p->items[p->count] = (struct pair){model, peer, p->count};
    p->count++;
}

static int cmp_pair(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    int c = strcmp(x->model, y->model);
    if (c) return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static bool text_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

static void scan_peer(struct pairs *p, const char *key, const json_t *peer)
{
    if (!json_is_object(peer) || !json_is_true(json_object_get(peer, "connected"))) return;
    const char *id = pj_str(peer, "id");
    if (!id || !*id) id = key && key[0] == '/' ? key + 1 : key;
    if (!id || !text_ok(id, 256)) return;
    size_t i;
    json_t *svc;
    json_array_foreach(json_object_get(peer, "service"), i, svc) {
        const char *name = pj_str(svc, "name");
        const char *status = pj_str(svc, "status");
        if (!name || strcmp(name, "llm") != 0) continue;
        if (status && *status && strcmp(status, "connected") != 0) continue;
        size_t j;
        json_t *g;
        json_array_foreach(json_object_get(svc, "identity_group"), j, g) {
            const char *s = json_is_string(g) ? json_string_value(g) : NULL;
            if (!s || strncmp(s, "model=", 6) != 0 || !text_ok(s + 6, 256)) continue;
            add_pair(p, s + 6, id);
        }
    }
}

int ocf_parse_table(const char *json, size_t len, struct ocf_model_list *out)
{
    json_error_t e;
    out->items = NULL;
    out->count = 0;
    json_t *root = json_loadb(json, len, 0, &e);
    if (!json_is_object(root) && !json_is_array(root)) {
        json_decref(root);
        return -1;
    }
    struct pairs p = {0};
    if (json_is_object(root)) {
        const char *key;
        json_t *peer;
        json_object_foreach(root, key, peer) scan_peer(&p, key, peer);
    } else {
        size_t i;
        json_t *peer;
        json_array_foreach(root, i, peer) scan_peer(&p, NULL, peer);
    }
    if (p.count) qsort(p.items, p.count, sizeof *p.items, cmp_pair);
    for (size_t i = 0; i < p.count;) {
        size_t j = i;
        while (j < p.count && strcmp(p.items[j].model, p.items[i].model) == 0) j++;
        if (out->count < OCF_MAX_MODELS) {
            out->items = xrealloc(out->items, (out->count + 1) * sizeof *out->items);
            struct ocf_model *m = &out->items[out->count++];
            m->name = xstrdup(p.items[i].model);
            m->peers = xcalloc(j - i, sizeof *m->peers);
            m->n_peers = 0;
            for (size_t k = i; k < j; k++) {
                bool dup = false;
                for (size_t q = 0; q < m->n_peers && !dup; q++)
                    dup = strcmp(m->peers[q], p.items[k].peer) == 0;
                if (!dup && m->n_peers < OCF_MAX_PEERS) m->peers[m->n_peers++] = xstrdup(p.items[k].peer);
            }
        }
        i = j;
    }
    free(p.items);
    json_decref(root);
    return 0;
}

void ocf_model_list_cleanup(struct ocf_model_list *l)
{
    for (size_t i = 0; i < l->count; i++) {
        for (size_t k = 0; k < l->items[i].n_peers; k++) free(l->items[i].peers[k]);
        free(l->items[i].peers);
        free(l->items[i].name);
    }
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

/* ---- the adapter ---- */

static int ocf_prepare(const struct provider_call *call, struct provider_request *out, char *err,
                       size_t cap)
{
    const char *path;
    switch (call->kind) {
    case API_CHAT: path = "/chat/completions"; break;
    case API_COMPLETIONS: path = "/completions"; break;
    case API_EMBEDDINGS: path = "/embeddings"; break;
    default:
        perr(err, cap, "provider %s (type ocf) does not serve image generation",
             call->provider->name);
        return -1;
    }
    /* The node API lives under /v1; an endpoint given with it is accepted. */
    const char *ep = provider_call_endpoint(call);
    size_t n = strlen(ep);
    if (n >= 3 && strcmp(ep + n - 3, "/v1") == 0) n -= 3;
    const char *url = arena_printf(call->arena, "%.*s/v1/service/llm/v1%s", (int)n, ep, path);
    return openai_build_request(call, url, out, err, cap);
}

const struct provider_ops provider_ocf_ops = {
    .type = "ocf",
    .stream_mode = SSE_MODE_SSE,
    .prepare = ocf_prepare,
};
