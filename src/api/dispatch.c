/* dispatch: routes each request to its endpoint. Unknown paths get 404 and
 * known paths with the wrong method 405, both OpenAI-shaped. */
#include "api/dispatch.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/admin_cache.h"
#include "api/admin_dashboard.h"
#include "api/admin_info.h"
#include "api/admin_ops.h"
#include "api/admin_keys.h"
#include "api/budget_api.h"
#include "api/count_tokens.h"
#include "api/grpc_api.h"
#include "api/mesh_api.h"
#include "api/models.h"
#include "api/proxy.h"
#include "providers/inbound.h"
#include "config/config.h"
#include "http/server.h"
#include "obs/access_log.h"
#include "obs/metrics.h"
#include "obs/timeline.h"
#include "obs/trace.h"
#include "core/clock.h"
#include "api/admission.h"
#include "api/context_api.h"
#include "api/responses_api.h"
#include "cluster/store.h"
#include "security/cors.h"

/* AUTH_PROXIED: a key, for a request that goes to a provider (its request
 * limits are taken with its budget reservation: one shared-store call). */
enum route_auth { AUTH_NONE, AUTH_KEY, AUTH_PROXIED, AUTH_ADMIN };

/* Where a route is served: the client listener, the mesh listener (for
 * peers, which authenticate with node.mesh.secret instead of a key), or both. */
enum route_where { ON_CLIENT = 1, ON_MESH = 2, ON_BOTH = 3 };

struct route {
    const char *path;
    bool prefix; /* path ends with '/' and matches what follows */
    enum http_method_kind method;
    enum route_auth auth;
    void (*handle)(struct http_request *req, const char *rest);
    enum route_where where;
};

static void handle_health(struct http_request *req, const char *rest)
{
    static const char body[] = "{\"status\":\"ok\"}";
    http_respond(req, 200, "application/json", NULL, body, sizeof body - 1);
}

static void handle_ready(struct http_request *req, const char *rest)
{
    if (http_server_is_draining(req)) {
        http_respond_error(req, GW_ERR_UNAVAILABLE, "The gateway is shutting down.", NULL);
        return;
    }
    if (store_enabled() && !store_is_up() && store_closed_when_down()) {
        /* (with on_store_down: local the node still serves: ready) */
        http_respond_error(req, GW_ERR_STORE_UNAVAILABLE, "The shared store (Redis) does not "
                           "answer and cluster.on_store_down is closed.", NULL);
        return;
    }
    if (store_enabled() && !store_is_up()) {
        static const char local[] = "{\"status\":\"ready\",\"store\":\"down\"}";
        http_respond(req, 200, "application/json", NULL, local, sizeof local - 1);
        return;
    }
    static const char body[] = "{\"status\":\"ready\"}";
    http_respond(req, 200, "application/json", NULL, body, sizeof body - 1);
}

static void handle_chat(struct http_request *req, const char *rest)
{
    proxy_handle(req, API_CHAT);
}

static void handle_completions(struct http_request *req, const char *rest)
{
    proxy_handle(req, API_COMPLETIONS);
}

static void handle_embeddings(struct http_request *req, const char *rest)
{
    proxy_handle(req, API_EMBEDDINGS);
}

static void handle_images(struct http_request *req, const char *rest)
{
    proxy_handle(req, API_IMAGES);
}

static void handle_messages(struct http_request *req, const char *rest)
{
    proxy_handle_inbound(req, &inbound_anthropic_ops);
}

static void handle_count_tokens(struct http_request *req, const char *rest)
{
    count_tokens_handle(req);
}

static void handle_predict(struct http_request *req, const char *rest)
{
    proxy_handle_inbound(req, &inbound_predict_ops);
}

static void handle_models(struct http_request *req, const char *rest)
{
    models_list(req);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void handle_model(struct http_request *req, const char *rest)
{
    /* Model ids may contain '/', percent-encoded or not ("@cf/meta/..."). */
    char id[300];
    size_t n = 0;
    for (const char *s = rest; *s && n + 1 < sizeof id; s++) {
        if (*s == '%' && hexval(s[1]) >= 0 && hexval(s[2]) >= 0) {
            id[n++] = (char)(hexval(s[1]) * 16 + hexval(s[2]));
            s += 2;
        } else {
            id[n++] = *s;
        }
    }
    id[n] = '\0';
    if (n == 0 || memchr(id, '\0', n) != NULL) {
        http_respond_error(req, GW_ERR_MODEL_NOT_FOUND, "No model id was given.", "model");
        return;
    }
    models_get(req, id);
}

static void handle_metrics(struct http_request *req, const char *rest)
{
    admin_info_metrics(req);
}

static void handle_endpoints(struct http_request *req, const char *rest)
{
    admin_info_endpoints(req);
}

static void handle_budget(struct http_request *req, const char *rest)
{
    const char *q = req->query;
    if (q && (strcmp(q, "scope=cluster") == 0 || strstr(q, "&scope=cluster") ||
              strncmp(q, "scope=cluster&", 14) == 0)) {
        mesh_api_cluster_budget(req);
        return;
    }
    budget_api_get(req);
}

static void handle_status(struct http_request *req, const char *rest)
{
    admin_ops_status(req);
}

static void handle_mesh(struct http_request *req, const char *rest)
{
    mesh_api_status(req);
}

static void handle_mesh_metrics(struct http_request *req, const char *rest)
{
    mesh_api_cluster_metrics(req);
}

static void handle_heartbeat(struct http_request *req, const char *rest)
{
    mesh_api_heartbeat(req);
}

static void handle_stats(struct http_request *req, const char *rest)
{
    admin_ops_stats(req);
}

static void handle_reload(struct http_request *req, const char *rest)
{
    admin_ops_reload(req);
}

static void handle_cache_clear(struct http_request *req, const char *rest)
{
    admin_cache_clear(req);
}

static void handle_dashboard(struct http_request *req, const char *rest)
{
    dashboard_page(req);
}

static void handle_dashboard_asset(struct http_request *req, const char *rest)
{
    dashboard_asset(req, rest);
}

static void handle_keys_create(struct http_request *req, const char *rest)
{
    admin_keys_create(req);
}

static void handle_keys_list(struct http_request *req, const char *rest)
{
    admin_keys_list(req);
}

static void handle_keys_revoke(struct http_request *req, const char *rest)
{
    admin_keys_revoke(req, rest);
}

/* CORS: an allowed origin's preflight is answered here (before any key is
 * asked for, as browsers send none); its normal responses carry
 * Access-Control-Allow-Origin. Other origins get nothing. */
static bool handle_cors(struct http_request *req)
{
    const char *origin = http_header_get(req, "origin");
    if (!cors_origin_allowed(req->config, origin)) return false;
    if (req->method == HTTP_M_OPTIONS &&
        http_header_get(req, "access-control-request-method")) {
        const char *h = cors_preflight_headers(&req->arena, origin,
                                               http_header_get(req, "access-control-request-headers"));
        if (h) {
            http_respond(req, 204, "text/plain", h, "", 0);
            return true;
        }
        return false;
    }
    req->extra_headers = cors_response_headers(&req->arena, origin);
    return false;
}

static void handle_context_delta(struct http_request *req, const char *rest)
{
    context_api_delta(req);
}

static void handle_context_stats(struct http_request *req, const char *rest)
{
    context_api_stats(req);
}

static void handle_context_delete(struct http_request *req, const char *rest)
{
    context_api_delete(req, rest);
}

static void handle_responses(struct http_request *req, const char *rest)
{
    responses_api_create(req);
}

static void handle_response_get(struct http_request *req, const char *rest)
{
    responses_api_get(req, rest);
}

static void handle_response_delete(struct http_request *req, const char *rest)
{
    responses_api_delete(req, rest);
}

static const struct route routes[] = {
    {"/health", false, HTTP_M_GET, AUTH_NONE, handle_health, ON_BOTH},
    {"/ready", false, HTTP_M_GET, AUTH_NONE, handle_ready, ON_BOTH},
    {"/v1/chat/completions", false, HTTP_M_POST, AUTH_PROXIED, handle_chat, ON_BOTH},
    {"/v1/completions", false, HTTP_M_POST, AUTH_PROXIED, handle_completions, ON_BOTH},
    {"/v1/embeddings", false, HTTP_M_POST, AUTH_PROXIED, handle_embeddings, ON_BOTH},
    {"/v1/images/generations", false, HTTP_M_POST, AUTH_PROXIED, handle_images, ON_BOTH},
    {"/v1/messages", false, HTTP_M_POST, AUTH_PROXIED, handle_messages, ON_BOTH},
    {"/v1/responses", false, HTTP_M_POST, AUTH_PROXIED, handle_responses, ON_CLIENT},
    {"/v1/responses/", true, HTTP_M_GET, AUTH_KEY, handle_response_get, ON_CLIENT},
    {"/v1/responses/", true, HTTP_M_DELETE, AUTH_KEY, handle_response_delete, ON_CLIENT},
    /* costs nothing: authenticated (and rate limited) like /v1/models */
    {"/v1/messages/count_tokens", false, HTTP_M_POST, AUTH_KEY, handle_count_tokens, ON_CLIENT},
    {"/aiproxy/predict", false, HTTP_M_POST, AUTH_PROXIED, handle_predict, ON_BOTH},
    {"/aiproxy/mesh/heartbeat", false, HTTP_M_POST, AUTH_KEY, handle_heartbeat, ON_MESH},
    {"/v1/models", false, HTTP_M_GET, AUTH_KEY, handle_models, ON_BOTH},
    {"/v1/models/", true, HTTP_M_GET, AUTH_KEY, handle_model, ON_CLIENT},
    {"/v1/endpoints", false, HTTP_M_GET, AUTH_KEY, handle_endpoints, ON_CLIENT},
    {"/metrics", false, HTTP_M_GET, AUTH_KEY, handle_metrics, ON_BOTH},
    {"/v1/budget", false, HTTP_M_GET, AUTH_KEY, handle_budget, ON_CLIENT},
    {"/aiproxy/admin/keys", false, HTTP_M_POST, AUTH_ADMIN, handle_keys_create, ON_CLIENT},
    {"/aiproxy/admin/keys", false, HTTP_M_GET, AUTH_ADMIN, handle_keys_list, ON_CLIENT},
    {"/aiproxy/admin/keys/", true, HTTP_M_DELETE, AUTH_ADMIN, handle_keys_revoke, ON_CLIENT},
    {"/aiproxy/status", false, HTTP_M_GET, AUTH_KEY, handle_status, ON_CLIENT},
    {"/aiproxy/mesh/status", false, HTTP_M_GET, AUTH_KEY, handle_mesh, ON_BOTH},
    {"/aiproxy/mesh/metrics", false, HTTP_M_GET, AUTH_KEY, handle_mesh_metrics, ON_CLIENT},
    {"/aiproxy/admin/stats", false, HTTP_M_GET, AUTH_ADMIN, handle_stats, ON_CLIENT},
    {"/aiproxy/admin/reload", false, HTTP_M_POST, AUTH_ADMIN, handle_reload, ON_CLIENT},
    {"/aiproxy/admin/cache", false, HTTP_M_DELETE, AUTH_ADMIN, handle_cache_clear, ON_CLIENT},
    {"/v1/context/delta", false, HTTP_M_POST, AUTH_KEY, handle_context_delta, ON_CLIENT},
    {"/v1/context/stats", false, HTTP_M_GET, AUTH_KEY, handle_context_stats, ON_CLIENT},
    {"/v1/context/", true, HTTP_M_DELETE, AUTH_KEY, handle_context_delete, ON_CLIENT},
    {"/dashboard", false, HTTP_M_GET, AUTH_NONE, handle_dashboard, ON_CLIENT}, /* authenticates itself */
    {"/dashboard/", true, HTTP_M_GET, AUTH_NONE, handle_dashboard_asset, ON_CLIENT},
};

static bool path_disabled(const struct config *cfg, const char *path)
{
    for (size_t i = 0; i < cfg->server.n_disabled_paths; i++)
        if (strcmp(cfg->server.disabled_paths[i], path) == 0) return true;
    return false;
}

/* A route waiting for its key to be found in the shared store. */
struct route_resume {
    const struct route *route;
    const char *rest;
};

static void on_authenticated(struct http_request *req)
{
    struct route_resume *rr = req->handler_data;
    req->handler_data = NULL;
    rr->route->handle(req, rr->rest);
}

void api_dispatch(struct http_request *req)
{
    const char *path = req->path;
    bool path_known = false;
    trace_request_begin(req);
    metrics_request_begin();
    /* The mesh listener: peers prove the mesh secret; no CORS, no keys. */
    if (req->from_peer && !mesh_api_admit(req)) return;
    /* gRPC (content-type application/grpc): its own routes and errors. */
    if (!req->from_peer && grpc_api_is_grpc(req)) {
        grpc_api_handle(req);
        return;
    }
    if (!req->from_peer && handle_cors(req)) return;
    enum route_where here = req->from_peer ? ON_MESH : ON_CLIENT;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const struct route *r = &routes[i];
        if (!(r->where & here)) continue;
        size_t len = strlen(r->path);
        bool match = r->prefix ? strncmp(path, r->path, len) == 0 && path[len] != '\0'
                               : strcmp(path, r->path) == 0;
        if (!match) continue;
        path_known = true;
        bool head_ok = r->method == HTTP_M_GET && req->method == HTTP_M_HEAD;
        if (req->method != r->method && !head_ok) continue;
        if (path_disabled(req->config, r->prefix ? r->path : path)) break;
        if (r->handle == handle_messages || r->handle == handle_count_tokens)
            proxy_set_error_format(req, &inbound_anthropic_ops);
        if (r->handle == handle_stats) dashboard_cookie_auth(req); /* the dashboard's data */
        if (r->auth != AUTH_NONE && !req->from_peer) {
            enum admit a = admission_authenticate(req, r->auth == AUTH_ADMIN,
                                                  r->auth == AUTH_PROXIED, on_authenticated);
            if (a == ADMIT_REFUSED) return;
            if (a == ADMIT_WAIT) {
                struct route_resume *rr = arena_alloc(&req->arena, sizeof *rr);
                rr->route = r;
                rr->rest = path + len;
                req->handler_data = rr; /* until the handler runs */
                return;
            }
        }
        r->handle(req, path + len);
        return;
    }
    if (path_known && !path_disabled(req->config, path)) {
        char msg[160];
        snprintf(msg, sizeof msg, "Method %s is not allowed on this path.",
                 req->method_name ? req->method_name : "?");
        http_respond_error(req, GW_ERR_METHOD_NOT_ALLOWED, msg, NULL);
        return;
    }
    http_respond_error(req, GW_ERR_NOT_FOUND, "Unknown path. See GET /v1/models and POST "
                                              "/v1/chat/completions.", NULL);
}

void api_prepare_request(struct http_request *req)
{
    if (!req->from_peer) grpc_api_prepare(req);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A short, secret-free description of a failed request for the
 * dashboard's recent errors. */
static const char *error_summary(const struct http_request *req)
{
    switch (req->status) {
    case 400: return "bad request";
    case 401: return "missing or invalid API key";
    case 403: return "forbidden";
    case 404: return req->acct.model ? "model not found" : "not found";
    case 413: return "request too large";
    case 429: return "rate limit or budget exceeded";
    case 499: return "client closed the request";
    case 502: return "every provider failed";
    case 503: return "unavailable (capacity or draining)";
    case 504: return "deadline passed";
    default: return req->status >= 500 ? "server error" : "client error";
    }
}

void api_request_complete(struct http_request *req)
{
    admission_finish(req);
    const char *key_name = req->principal ? req->principal->name : NULL;
    const struct config_provider *p =
        req->acct.provider ? config_find_provider(req->config, req->acct.provider) : NULL;
    trace_request_end(req, p ? provider_type_name(p->type) : NULL, key_name);
    metrics_record_request(req, req->trace != NULL, key_name);
    if (req->acct.model) {
        /* the dashboard's timeline: proxied requests only */
        timeline_record(clock_wall_s(), req->status, clock_mono_us() - req->start_us,
                        trace_ttft_us(req), req->acct.cost_nanos);
    }
    if (req->status >= 400 && (req->acct.model || (req->path && strncmp(req->path, "/v1/", 4) == 0)))
        timeline_error(wall_ms(), req->id, req->path, req->acct.model, req->acct.provider,
                       req->status, error_summary(req));
    access_log_request(req);
}
