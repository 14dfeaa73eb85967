/* admin_info: the read-only operational endpoints: GET /metrics (also on
 * the observability.metrics.prometheus_port listener) and GET /v1/endpoints
 * (every provider, its endpoint, health and models; credentials are never
 * part of the answer). */
#include "api/admin_info.h"
#include "api/mesh_api.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/admin_ops.h"
#include "config/config.h"
#include "http/server.h"
#include "obs/metrics.h"
#include "routing/stats.h"

void admin_info_metrics(struct http_request *req)
{
    if (!req->config->observability.metrics_enabled) {
        http_respond_error(req, GW_ERR_NOT_FOUND, "Metrics are disabled "
                           "(observability.metrics.enabled: false).", NULL);
        return;
    }
    struct metrics_extra x;
    admin_metrics_extra(req->config, &x);
    size_t len;
    char *text = metrics_render(req->config, &x, &len);
    text = mesh_api_metrics_append(req->config, text, &len);
    http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, text, len);
    free(text);
}

/* The prometheus_port listener: /metrics and /health only, no key (bind it
 * to a private address). */
void admin_info_metrics_listener(struct http_request *req)
{
    if (req->method != HTTP_M_GET && req->method != HTTP_M_HEAD) {
        http_respond_error(req, GW_ERR_METHOD_NOT_ALLOWED, "Only GET is served here.", NULL);
        return;
    }
    if (strcmp(req->path, "/metrics") == 0) {
        admin_info_metrics(req);
        return;
    }
    if (strcmp(req->path, "/health") == 0) {
        static const char body[] = "{\"status\":\"ok\"}";
        http_respond(req, 200, "application/json", NULL, body, sizeof body - 1);
        return;
    }
    http_respond_error(req, GW_ERR_NOT_FOUND, "This listener serves GET /metrics and GET /health "
                       "only.", NULL);
}

/* Whether active health checks (api/health.c) hold every endpoint down. */
static bool checks_down(const struct config_provider *p)
{
    if (p->n_endpoints < 2) return atomic_load(&p->stats->down);
    for (size_t e = 0; e < p->n_endpoints; e++)
        if (!atomic_load(&provider_stats_endpoint(p->stats, p->endpoints[e])->down)) return false;
    return true;
}

static const char *health_of(const struct config_provider *p)
{
    if (!p->available) return "unavailable";
    if (!p->stats) return "unknown";
    if (checks_down(p)) return "down";
    unsigned long long attempts = atomic_load(&p->stats->attempts);
    unsigned long long failures = atomic_load(&p->stats->failures);
    if (attempts == 0) return "unknown";
    return failures * 2 > attempts ? "degraded" : "healthy";
}

void admin_info_endpoints(struct http_request *req)
{
    const struct config *cfg = req->config;
    json_t *list = json_array();
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct config_provider *p = &cfg->providers[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(p->name));
        json_object_set_new(o, "type", json_string(provider_type_name(p->type)));
        json_object_set_new(o, "endpoint", json_string(p->endpoint));
        json_object_set_new(o, "priority", json_integer(p->priority));
        json_object_set_new(o, "available", json_boolean(p->available));
        json_object_set_new(o, "health", json_string(health_of(p)));
        if (!p->available && p->unavailable_reason)
            json_object_set_new(o, "reason", json_string(p->unavailable_reason));
        if (p->stats) {
            long long ewma = atomic_load(&p->stats->ewma_latency_us);
            json_object_set_new(o, "avg_latency_ms",
                                ewma ? json_integer((ewma + 500) / 1000) : json_null());
            json_object_set_new(o, "in_flight", json_integer(atomic_load(&p->stats->in_flight)));
        }
        json_t *models = json_array();
        for (size_t j = 0; j < p->n_models; j++) json_array_append_new(models, json_string(p->models[j].name));
        json_object_set_new(o, "models", models);
        json_array_append_new(list, o);
    }
    json_t *doc = json_object();
    json_object_set_new(doc, "object", json_string("list"));
    json_object_set_new(doc, "data", list);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    http_respond(req, 200, "application/json", NULL, text, strlen(text));
    free(text);
}
