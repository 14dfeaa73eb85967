/* discover: probes discovering providers and folds what they list into a
 * snapshot (see discover.h). */
#include "api/discover.h"

#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/alloc.h"
#include "core/log.h"
#include "providers/discovery.h"
#include "providers/ocf.h"
#include "upstream/probe.h"

#define DISCOVERY_MAX_BODY (8 * 1024 * 1024)

static void add_model(struct config_provider *p, const char *id)
{
    for (size_t k = 0; k < p->n_models; k++)
        if (strcmp(p->models[k].upstream_id, id) == 0 || strcmp(p->models[k].name, id) == 0)
            return;
    bool embed = strstr(id, "embed") != NULL;
    config_provider_add_model(p, id, id, embed ? CAP_EMBEDDINGS : CAP_TEXT);
}

/* Marks a provider down, keeping the models it listed last time (from
 * `previous`), so that clients see them as unavailable rather than gone. */
static void mark_down(struct config_provider *p, const struct config *previous, char *reason)
{
    p->available = false;
    free(p->unavailable_reason);
    p->unavailable_reason = reason;
    const struct config_provider *old = previous ? config_find_provider(previous, p->name) : NULL;
    for (size_t i = 0; old && i < old->n_models; i++) add_model(p, old->models[i].name);
}

/* GET url; returns the body (heap) on HTTP 200, else NULL with *why set. */
static char *fetch(const struct config_provider *p, const char *url, int timeout_ms, size_t *len,
                   char **why)
{
    char *body = NULL;
    int status = probe_get(url, p->api_key, timeout_ms, DISCOVERY_MAX_BODY, &body, len);
    if (status == 200) return body;
    free(body);
    *why = status < 0 ? xasprintf("no server answers at %s", p->endpoint)
                      : xasprintf("%s answered HTTP %d", url, status);
    return NULL;
}

static void discover_local(struct config_provider *p, const struct config *previous, int timeout_ms)
{
    char *why = NULL;
    size_t len = 0;
    char *url = xasprintf("%s/models", p->endpoint);
    char *body = fetch(p, url, timeout_ms, &len, &why);
    free(url);
    struct discovery_list list = {0};
    if (!body || discovery_parse_models(body, len, &list) != 0) {
        /* Ollama's own API, when the OpenAI-compatible one is missing:
         * {endpoint without /v1}/api/tags. */
        free(body);
        size_t el = strlen(p->endpoint);
        size_t base = el >= 3 && strcmp(p->endpoint + el - 3, "/v1") == 0 ? el - 3 : el;
        char *tags = xasprintf("%.*s/api/tags", (int)base, p->endpoint);
        char *why2 = NULL;
        body = fetch(p, tags, timeout_ms, &len, &why2);
        free(tags);
        if (!body || discovery_parse_ollama_tags(body, len, &list) != 0) {
            free(body);
            free(why2);
            mark_down(p, previous, why ? why : xasprintf("%s lists no models", p->endpoint));
            return;
        }
        free(why2);
    }
    free(why);
    free(body);
    for (size_t i = 0; i < list.count; i++) add_model(p, list.ids[i]);
    discovery_list_cleanup(&list);
}

static void discover_ocf(struct config_provider *p, const struct config *previous, int timeout_ms)
{
    char *why = NULL;
    size_t len = 0;
    char *url = xasprintf("%s/v1/dnt/table", p->endpoint);
    char *body = fetch(p, url, timeout_ms, &len, &why);
    free(url);
    struct ocf_model_list list = {0};
    if (!body || ocf_parse_table(body, len, &list) != 0) {
        free(body);
        mark_down(p, previous, why ? why : xasprintf("%s/v1/dnt/table is not a node table", p->endpoint));
        return;
    }
    free(body);
    for (size_t i = 0; i < list.count; i++) add_model(p, list.items[i].name);
    ocf_model_list_cleanup(&list);
}

void discover_apply(struct config *cfg, const struct config *previous, int timeout_ms)
{
    for (size_t i = 0; i < cfg->n_providers; i++) {
        struct config_provider *p = &cfg->providers[i];
        if (!p->discover_models || !p->enabled || !p->available) continue;
        if (strncmp(p->endpoint, "http://", 7) != 0) {
            log_event(LOG_WARN, "discovery_skipped", "provider %s: model discovery needs a plain "
                      "http endpoint", p->name);
            continue;
        }
        if (p->type == PROVIDER_OCF) discover_ocf(p, previous, timeout_ms);
        else discover_local(p, previous, timeout_ms);
    }
}

/* FNV-1a over the routing-relevant facts. */
static uint64_t mix(uint64_t h, const char *s)
{
    for (; s && *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    h ^= 0xff;
    return h * 1099511628211ULL;
}

uint64_t discover_fingerprint(const struct config *cfg)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct config_provider *p = &cfg->providers[i];
        h = mix(h, p->name);
        h = mix(h, p->available ? "up" : "down");
        h = mix(h, p->unavailable_reason);
        for (size_t j = 0; j < p->n_models; j++) h = mix(h, p->models[j].name);
    }
    return h;
}

void discover_log_changes(const struct config *before, const struct config *after)
{
    for (size_t i = 0; i < after->n_providers; i++) {
        const struct config_provider *a = &after->providers[i];
        const struct config_provider *b = config_find_provider(before, a->name);
        if (!b || b->available == a->available) continue;
        if (a->available)
            log_event(LOG_INFO, "provider_up", "provider %s is reachable again (%zu models)",
                      a->name, a->n_models);
        else
            log_event(LOG_WARN, "provider_down", "provider %s is down: %s", a->name,
                      a->unavailable_reason ? a->unavailable_reason : "unavailable");
    }
}
