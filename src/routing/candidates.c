/* candidates: alias resolution and priority-ordered candidate lists. */
#include "routing/candidates.h"

#include <stdio.h>
#include <string.h>

#include "config/config.h"

static const char *resolve_alias(const struct config *cfg, const char *model)
{
    for (int hop = 0; hop < 8; hop++) {
        const char *next = NULL;
        for (size_t i = 0; i < cfg->routing.n_aliases; i++) {
            if (strcmp(cfg->routing.aliases[i].name, model) == 0) {
                next = cfg->routing.aliases[i].target;
                break;
            }
        }
        if (!next || strcmp(next, model) == 0) break;
        model = next;
    }
    return model;
}

static void note_excluded(struct route_plan *out, const char *provider, const char *why)
{
    size_t len = strlen(out->excluded);
    if (len + 4 >= sizeof out->excluded) return;
    snprintf(out->excluded + len, sizeof out->excluded - len, "%s%s: %s", len ? "; " : "", provider,
             why);
}

void routing_plan(const struct config *cfg, const char *model, unsigned caps_needed,
                  struct route_plan *out)
{
    memset(out, 0, sizeof *out);
    out->model = resolve_alias(cfg, model);
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct config_provider *p = &cfg->providers[i];
        const struct config_model *m = NULL;
        for (size_t j = 0; j < p->n_models; j++) {
            if (strcmp(p->models[j].name, out->model) == 0) {
                m = &p->models[j];
                break;
            }
        }
        if (!m) continue;
        out->model_known = true;
        if (!p->available) {
            note_excluded(out, p->name, p->unavailable_reason ? p->unavailable_reason : "unavailable");
            continue;
        }
        if ((m->capabilities & caps_needed) != caps_needed) {
            note_excluded(out, p->name, "the model lacks a capability this request needs");
            continue;
        }
        if (out->n == ROUTE_MAX_CANDIDATES) break;
        /* Insertion keeps equal priorities in config order. */
        size_t k = out->n;
        while (k > 0 && out->items[k - 1].provider->priority > p->priority) {
            out->items[k] = out->items[k - 1];
            k--;
        }
        out->items[k].provider = p;
        out->items[k].model = m;
        out->n++;
    }
}
