/* mesh_route: peers for a request and the routes of answers (see
 * mesh_route.h). */
#include "api/mesh_route.h"

#include <string.h>

#include "config/config.h"
#include "core/arena.h"
#include "http/server.h"
#include "mesh/peers.h"

static void release_view(void *data)
{
    mesh_view_release(data);
}

/* Whether comma-separated `via` lists `id`. */
static bool via_lists(const char *via, const char *id)
{
    size_t n = strlen(id);
    for (const char *v = via; v && *v;) {
        const char *comma = strchr(v, ',');
        size_t len = comma ? (size_t)(comma - v) : strlen(v);
        if (len == n && memcmp(v, id, n) == 0) return true;
        v += len + (comma ? 1 : 0);
    }
    return false;
}

const struct config_provider **mesh_route_peers(struct http_request *req, int *hops_out,
                                                const char **via_out, size_t *n)
{
    const struct config *cfg = req->config;
    *n = 0;
    if (!cfg->node.mesh_enabled) return NULL;
    int hops = req->from_peer ? req->mesh_hops : 0;
    const char *via = req->from_peer ? req->mesh_via : NULL;
    *hops_out = hops + 1;
    *via_out = via && *via ? arena_concat(&req->arena, via, ",", cfg->node.id, NULL) : cfg->node.id;
    if (hops >= cfg->node.mesh_max_hops) return NULL;
    struct mesh_view *v = mesh_view_acquire();
    arena_on_free(&req->arena, release_view, v);
    if (!v->n) return NULL;
    const struct config_provider **out = arena_alloc(&req->arena, v->n * sizeof *out);
    for (size_t i = 0; i < v->n; i++) {
        const struct config_provider *p = &v->providers[i];
        if (strcmp(p->mesh_node, cfg->node.id) == 0 || via_lists(via, p->mesh_node)) continue;
        out[(*n)++] = p;
    }
    return *n ? out : NULL;
}

const char *mesh_route_answer(struct http_request *req, const struct provider_relay *relay,
                              const char *via_out)
{
    const char *self = req->config->node.id;
    if (relay->present) {
        const char *r = relay->route;
        if (!r) return arena_concat(&req->arena, via_out ? via_out : self, ",", relay->node, NULL);
        /* ["a","b"] -> a,b (ids are [A-Za-z0-9._-]; anything else is dropped) */
        size_t n = strlen(r), k = 0;
        char *o = arena_alloc(&req->arena, n + 1);
        for (size_t i = 0; i < n; i++) {
            char c = r[i];
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-' || c == ',')
                o[k++] = c;
        }
        o[k] = '\0';
        return o;
    }
    if (req->from_peer && req->mesh_via && *req->mesh_via)
        return arena_concat(&req->arena, req->mesh_via, ",", self, NULL);
    return self;
}
