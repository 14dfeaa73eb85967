/* models: GET /v1/models and GET /v1/models/{id} with the providers array
 * of SPEC section 3 (name, available, cost_per_1k_tokens, avg_latency_ms).
 * Models that healthy mesh peers serve are listed too, with the peer as
 * provider "mesh:<id>" (not to peers themselves: a node offers its peers
 * only its own providers).
 * `available` is false when the provider is unavailable or its active
 * health checks hold it down; avg_latency_ms is this model's EWMA on that
 * provider (routing/stats.h). */
#include "api/models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "budget/pricing.h"
#include "config/config.h"
#include "core/money.h"
#include "http/server.h"
#include "mesh/peers.h"
#include "routing/candidates.h"
#include "routing/stats.h"

static long long process_start;

void models_set_start_time(long long unix_seconds)
{
    process_start = unix_seconds;
}

/* USD as a JSON real, for display only: the amount itself stays integer. */
static json_t *usd_json(nanos_t n)
{
    char buf[32];
    money_format_usd(n, buf, sizeof buf);
    json_error_t err;
    json_t *v = json_loads(buf, JSON_DECODE_ANY, &err);
    return v ? v : json_integer(0);
}

/* The providers a listing shows: the configured ones, then the peers. */
struct sources {
    const struct config *cfg;
    const struct mesh_view *peers; /* NULL: none */
};

static size_t n_sources(const struct sources *src)
{
    return src->cfg->n_providers + (src->peers ? src->peers->n : 0);
}

static const struct config_provider *source(const struct sources *src, size_t i)
{
    return i < src->cfg->n_providers ? &src->cfg->providers[i]
                                     : &src->peers->providers[i - src->cfg->n_providers];
}

static json_t *model_object(const struct sources *src, const char *name)
{
    json_t *providers = json_array();
    const char *owner = NULL;
    for (size_t i = 0; i < n_sources(src); i++) {
        const struct config_provider *p = source(src, i);
        for (size_t j = 0; j < p->n_models; j++) {
            const struct config_model *m = &p->models[j];
            if (strcmp(m->name, name) != 0) continue;
            if (!owner) owner = p->name;
            json_t *o = json_object();
            json_object_set_new(o, "name", json_string(p->name));
            json_object_set_new(o, "type", json_string(provider_type_name(p->type)));
            int checks = 0;
            bool down = p->available && routing_provider_down(p, &checks);
            json_object_set_new(o, "available", json_boolean(p->available && !down));
            if (!p->available && p->unavailable_reason)
                json_object_set_new(o, "reason", json_string(p->unavailable_reason));
            else if (down) {
                char why[80];
                snprintf(why, sizeof why, "failing health checks (%d in a row)", checks);
                json_object_set_new(o, "reason", json_string(why));
            }
            json_object_set_new(o, "cost_per_1k_tokens", usd_json(m->price_in_per_1k));
            json_object_set_new(o, "cost_per_1k_input_tokens", usd_json(m->price_in_per_1k));
            json_object_set_new(o, "cost_per_1k_output_tokens", usd_json(m->price_out_per_1k));
            json_object_set_new(o, "cost_per_1k_cached_input_tokens",
                                usd_json(pricing_cached_in_price(m)));
            json_object_set_new(o, "cost_per_1k_cache_write_tokens",
                                usd_json(pricing_cache_write_price(m)));
            /* this model's own figures on this provider (routing/stats.h) */
            const struct provider_stats *ms = provider_stats_model(p->stats, m->name);
            long long ewma = ms ? atomic_load(&ms->ewma_latency_us) : 0;
            json_object_set_new(o, "avg_latency_ms", ewma ? json_integer((ewma + 500) / 1000)
                                                          : json_null());
            json_object_set_new(o, "priority", json_integer(p->priority));
            json_array_append_new(providers, o);
            break;
        }
    }
    if (json_array_size(providers) == 0) {
        json_decref(providers);
        return NULL;
    }
    json_t *m = json_object();
    json_object_set_new(m, "id", json_string(name));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(m, "created", json_integer(process_start));
    json_object_set_new(m, "owned_by", json_string(owner));
    json_object_set_new(m, "providers", providers);
    return m;
}

static void respond_json(struct http_request *req, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(12));
    json_decref(doc);
    http_respond(req, 200, "application/json", NULL, text, strlen(text));
    free(text);
}

static void sources_init(struct sources *src, const struct http_request *req)
{
    src->cfg = req->config;
    src->peers = req->config->node.mesh_enabled && !req->from_peer ? mesh_view_acquire() : NULL;
}

static void sources_cleanup(struct sources *src)
{
    mesh_view_release((struct mesh_view *)src->peers);
}

static json_t *list_doc(struct http_request *req)
{
    const struct config *cfg = req->config;
    struct sources src;
    sources_init(&src, req);
    json_t *data = json_array();
    json_t *seen = json_object();
    for (size_t i = 0; i < n_sources(&src); i++) {
        const struct config_provider *p = source(&src, i);
        for (size_t j = 0; j < p->n_models; j++) {
            const char *name = p->models[j].name;
            if (json_object_get(seen, name)) continue;
            json_object_set_new(seen, name, json_true());
            json_t *m = model_object(&src, name);
            if (m) json_array_append_new(data, m);
        }
    }
    for (size_t i = 0; i < cfg->routing.n_aliases; i++) {
        const char *name = cfg->routing.aliases[i].name;
        if (json_object_get(seen, name)) continue;
        json_t *m = model_object(&src, cfg->routing.aliases[i].target);
        if (!m) continue;
        json_object_set_new(seen, name, json_true());
        json_object_set_new(m, "id", json_string(name));
        json_object_set_new(m, "alias_for", json_string(cfg->routing.aliases[i].target));
        json_array_append_new(data, m);
    }
    json_decref(seen);
    sources_cleanup(&src);
    json_t *doc = json_object();
    json_object_set_new(doc, "object", json_string("list"));
    json_object_set_new(doc, "data", data);
    return doc;
}

void models_list(struct http_request *req)
{
    respond_json(req, list_doc(req));
}

char *models_list_text(struct http_request *req)
{
    json_t *doc = list_doc(req);
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(12));
    json_decref(doc);
    return text;
}

void models_get(struct http_request *req, const char *id)
{
    const struct config *cfg = req->config;
    struct sources src;
    sources_init(&src, req);
    json_t *m = model_object(&src, id);
    if (!m) {
        for (size_t i = 0; i < cfg->routing.n_aliases && !m; i++) {
            if (strcmp(cfg->routing.aliases[i].name, id) != 0) continue;
            m = model_object(&src, cfg->routing.aliases[i].target);
            if (m) {
                json_object_set_new(m, "id", json_string(id));
                json_object_set_new(m, "alias_for", json_string(cfg->routing.aliases[i].target));
            }
        }
    }
    sources_cleanup(&src);
    if (!m) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model '%.256s' does not exist or no provider serves it.", id);
        http_respond_error(req, GW_ERR_MODEL_NOT_FOUND, msg, "model");
        return;
    }
    respond_json(req, m);
}
