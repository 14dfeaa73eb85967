/* grpc_api: routes gRPC calls to the gateway's flows (see grpc_api.h).
 * The transport has read the whole request body when the handler runs
 * (the service has unary and server-streaming methods only), so a call's
 * message is checked here in one go: its prefix (compression, length
 * against server.max_request_size), then its protobuf in the translator. */
#include "api/grpc_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "api/admission.h"
#include "api/models.h"
#include "api/proxy.h"
#include "config/config.h"
#include "grpc/translate.h"
#include "grpc/wire.h"
#include "http/server.h"
#include "providers/inbound.h"

#define GATEWAY_PREFIX "/aiproxy.v1.Gateway/"
#define HEALTH_PREFIX "/grpc.health.v1.Health/"
#define GATEWAY_SERVICE "aiproxy.v1.Gateway"
/* How often a Watch looks whether the gateway began to drain. */
#define WATCH_TICK_MS 250

struct grpc_call;
typedef void (*method_cb)(struct http_request *req, struct grpc_call *call);

struct method {
    const char *path;
    bool needs_key;
    bool proxied; /* goes to a provider: the request limits come with the reservation */
    method_cb run;
};

struct grpc_call {
    const struct method *method;
    const uint8_t *msg;
    size_t msg_len;
    int64_t timeout_ms; /* grpc-timeout; 0 when none */
};

/* ---- answers ---- */

static void respond_status(struct http_request *req, enum grpc_status st, const char *message)
{
    http_respond_trailers(req, 200, "application/grpc", NULL, "", 0,
                          grpc_trailers(&req->arena, st, message));
}

static void respond_message(struct http_request *req, const char *framed, size_t len)
{
    http_respond_trailers(req, 200, "application/grpc", NULL, framed, len, "grpc-status: 0\r\n");
}

/* req->error_responder: the REST error, as a gRPC status with the same message. */
static void on_error(struct http_request *req, enum gw_error e, const char *message,
                     const char *param)
{
    respond_status(req, grpc_status_from_error(e), message);
}

bool grpc_api_is_grpc(const struct http_request *req)
{
    const char *ct = http_header_get(req, "content-type");
    if (!ct || strncasecmp(ct, "application/grpc", 16) != 0) return false;
    return ct[16] == '\0' || ct[16] == '+' || ct[16] == ';';
}

void grpc_api_prepare(struct http_request *req)
{
    if (http_request_is_h2(req) && grpc_api_is_grpc(req)) req->error_responder = on_error;
}

/* ---- aiproxy.v1.Gateway ---- */

static void run_chat(struct http_request *req, struct grpc_call *call)
{
    proxy_handle_inbound_kind(req, &grpc_chat_ops, API_CHAT, call->timeout_ms);
}

static void run_chat_stream(struct http_request *req, struct grpc_call *call)
{
    proxy_handle_inbound_kind(req, &grpc_chat_stream_ops, API_CHAT, call->timeout_ms);
}

static void run_embed(struct http_request *req, struct grpc_call *call)
{
    proxy_handle_inbound_kind(req, &grpc_embed_ops, API_EMBEDDINGS, call->timeout_ms);
}

static void run_predict(struct http_request *req, struct grpc_call *call)
{
    proxy_handle_inbound_kind(req, &grpc_predict_ops, API_CHAT, call->timeout_ms);
}

static void run_list_models(struct http_request *req, struct grpc_call *call)
{
    if (!grpc_list_models_request_ok(call->msg, call->msg_len)) {
        respond_status(req, GRPC_INVALID_ARGUMENT,
                       "The request is not a valid aiproxy.v1.ListModelsRequest message.");
        return;
    }
    char *text = models_list_text(req);
    char *out;
    size_t len;
    int rc = grpc_models_from_json(&req->arena, text, strlen(text), &out, &len);
    free(text);
    if (rc != 0) {
        respond_status(req, GRPC_INTERNAL, "The model list could not be translated.");
        return;
    }
    respond_message(req, out, len);
}

/* ---- grpc.health.v1.Health ---- */

/* SERVING while the gateway takes requests, NOT_SERVING once it drains;
 * SERVICE_UNKNOWN for a service other than "" and aiproxy.v1.Gateway. */
static enum grpc_health_status health_of(struct http_request *req, const char *service)
{
    if (*service && strcmp(service, GATEWAY_SERVICE) != 0) return GRPC_HEALTH_SERVICE_UNKNOWN;
    return http_server_is_draining(req) ? GRPC_HEALTH_NOT_SERVING : GRPC_HEALTH_SERVING;
}

static void run_health_check(struct http_request *req, struct grpc_call *call)
{
    char *service;
    if (grpc_health_request(&req->arena, call->msg, call->msg_len, &service) != 0) {
        respond_status(req, GRPC_INVALID_ARGUMENT, "The request is not a valid "
                                                   "grpc.health.v1.HealthCheckRequest message.");
        return;
    }
    enum grpc_health_status st = health_of(req, service);
    if (st == GRPC_HEALTH_SERVICE_UNKNOWN) {
        respond_status(req, GRPC_NOT_FOUND, "Unknown service: the gateway serves \"\" and "
                                            "\"aiproxy.v1.Gateway\".");
        return;
    }
    size_t len;
    char *out = grpc_health_response(&req->arena, st, &len);
    respond_message(req, out, len);
}

/* A Watch: the current status at once, then each change, until the client
 * cancels or the gateway drains (NOT_SERVING, then the stream ends). */
struct watch {
    struct http_request *req;
    struct event *tick;
    const char *service;
    enum grpc_health_status last;
};

static void watch_send(struct watch *w, enum grpc_health_status st)
{
    size_t len;
    char *out = grpc_health_response(&w->req->arena, st, &len);
    http_stream_write(w->req, out, len);
    http_stream_flush(w->req);
    w->last = st;
}

static void on_watch_tick(evutil_socket_t fd, short what, void *arg)
{
    struct watch *w = arg;
    enum grpc_health_status st = health_of(w->req, w->service);
    if (st != w->last) watch_send(w, st);
    if (st == GRPC_HEALTH_NOT_SERVING) {
        event_del(w->tick);
        http_stream_end_trailers(w->req, grpc_trailers(&w->req->arena, GRPC_UNAVAILABLE,
                                                       "The gateway is shutting down."));
    }
}

static void on_watch_abort(void *data)
{
    struct watch *w = data;
    event_del(w->tick);
}

static void watch_free(void *data)
{
    struct watch *w = data;
    event_free(w->tick);
}

static void run_health_watch(struct http_request *req, struct grpc_call *call)
{
    char *service;
    if (grpc_health_request(&req->arena, call->msg, call->msg_len, &service) != 0) {
        respond_status(req, GRPC_INVALID_ARGUMENT, "The request is not a valid "
                                                   "grpc.health.v1.HealthCheckRequest message.");
        return;
    }
    struct watch *w = arena_alloc(&req->arena, sizeof *w);
    w->req = req;
    w->service = service;
    w->tick = event_new(http_worker_base(req->worker), -1, EV_PERSIST, on_watch_tick, w);
    arena_on_free(&req->arena, watch_free, w);
    req->handler_data = w;
    req->on_abort = on_watch_abort;
    http_stream_start(req, 200, "application/grpc", NULL);
    watch_send(w, health_of(req, service));
    if (w->last == GRPC_HEALTH_NOT_SERVING) {
        http_stream_end_trailers(req, grpc_trailers(&req->arena, GRPC_UNAVAILABLE,
                                                    "The gateway is shutting down."));
        return;
    }
    struct timeval tv = {.tv_sec = 0, .tv_usec = WATCH_TICK_MS * 1000};
    event_add(w->tick, &tv);
}

/* ---- routing ---- */

static const struct method methods[] = {
    {GATEWAY_PREFIX "Chat", true, true, run_chat},
    {GATEWAY_PREFIX "ChatStream", true, true, run_chat_stream},
    {GATEWAY_PREFIX "Embed", true, true, run_embed},
    {GATEWAY_PREFIX "Predict", true, true, run_predict},
    {GATEWAY_PREFIX "ListModels", true, false, run_list_models},
    {HEALTH_PREFIX "Check", false, false, run_health_check},
    {HEALTH_PREFIX "Watch", false, false, run_health_watch},
};

static void on_authenticated(struct http_request *req)
{
    struct grpc_call *call = req->handler_data;
    req->handler_data = NULL;
    call->method->run(req, call);
}

void grpc_api_handle(struct http_request *req)
{
    if (!http_request_is_h2(req)) {
        http_respond_error(req, GW_ERR_UNSUPPORTED_MEDIA,
                           "gRPC needs HTTP/2 (h2c with prior knowledge, or h2 over TLS).", NULL);
        return;
    }
    req->error_responder = on_error;
    const struct method *m = NULL;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0] && !m; i++)
        if (strcmp(req->path, methods[i].path) == 0) m = &methods[i];
    if (!m) {
        char msg[300];
        snprintf(msg, sizeof msg, "Unknown method %.200s: the gateway serves aiproxy.v1.Gateway "
                                  "and grpc.health.v1.Health.", req->path);
        respond_status(req, GRPC_UNIMPLEMENTED, msg);
        return;
    }
    if (req->method != HTTP_M_POST) {
        respond_status(req, GRPC_UNIMPLEMENTED, "gRPC calls are POST requests.");
        return;
    }
    struct grpc_call *call = arena_alloc(&req->arena, sizeof *call);
    memset(call, 0, sizeof *call);
    call->method = m;
    size_t max = (size_t)req->config->server.max_request_size;
    char msg[200];
    switch (grpc_frame_read((const uint8_t *)req->body, req->body_len,
                            http_header_get(req, "grpc-encoding"), max, &call->msg,
                            &call->msg_len)) {
    case GRPC_FRAME_OK: break;
    case GRPC_FRAME_COMPRESSED:
        respond_status(req, GRPC_UNIMPLEMENTED, "compression not supported: send messages "
                                                "uncompressed (grpc-encoding identity).");
        return;
    case GRPC_FRAME_TOO_LARGE:
        snprintf(msg, sizeof msg, "The message is larger than the server's limit of %lld bytes "
                                  "(server.max_request_size).",
                 (long long)req->config->server.max_request_size);
        respond_status(req, GRPC_RESOURCE_EXHAUSTED, msg);
        return;
    case GRPC_FRAME_MALFORMED:
    default:
        respond_status(req, GRPC_INTERNAL, "The request body is not one length-prefixed gRPC "
                                           "message.");
        return;
    }
    /* From here the body is the message itself (the translators' input). */
    req->body += GRPC_PREFIX_LEN;
    req->body_len = call->msg_len;
    const char *timeout = http_header_get(req, "grpc-timeout");
    if (timeout && grpc_timeout_parse(timeout, &call->timeout_ms) != 0) {
        respond_status(req, GRPC_INVALID_ARGUMENT, "grpc-timeout is malformed (1 to 8 digits "
                                                   "and a unit of H M S m u n).");
        return;
    }
    if (m->needs_key) {
        enum admit a = admission_authenticate(req, false, m->proxied, on_authenticated);
        if (a == ADMIT_REFUSED) return;
        if (a == ADMIT_WAIT) {
            req->handler_data = call; /* until the method runs */
            return;
        }
    }
    m->run(req, call);
}
