/* translate: the gRPC service's messages (proto/aiproxy/v1/gateway.proto,
 * proto/grpc/health/v1/health.proto) <-> the gateway's OpenAI JSON. The
 * Gateway methods that reach a provider are inbound formats
 * (providers/inbound.h: grpc_chat_ops, grpc_chat_stream_ops, grpc_embed_ops,
 * grpc_predict_ops); the rest is here. Answers are framed messages (the
 * 5-byte prefix included), ready to send. Pure functions, no I/O;
 * everything comes from the given arena. */
#ifndef AIPROXY_GRPC_TRANSLATE_H
#define AIPROXY_GRPC_TRANSLATE_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "providers/inbound.h"

/* grpc.health.v1.HealthCheckResponse.ServingStatus */
enum grpc_health_status {
    GRPC_HEALTH_UNKNOWN = 0,
    GRPC_HEALTH_SERVING = 1,
    GRPC_HEALTH_NOT_SERVING = 2,
    GRPC_HEALTH_SERVICE_UNKNOWN = 3,
};

/* The listing of GET /v1/models ({"data":[{"id", "providers":[{"name",
 * "available"}]}]}) -> a framed ListModelsResponse (arena). Returns 0, or
 * -1 when `json` is not such a listing. */
int grpc_models_from_json(struct arena *a, const char *json, size_t len, char **out,
                          size_t *out_len);

/* Whether `msg` unpacks as a ListModelsRequest (unknown fields allowed). */
bool grpc_list_models_request_ok(const uint8_t *msg, size_t len);

/* A HealthCheckRequest -> its `service` (arena; "" for the whole server).
 * Returns 0, or -1 when the message does not unpack. */
int grpc_health_request(struct arena *a, const uint8_t *msg, size_t len, char **service);

/* A framed HealthCheckResponse (arena). */
char *grpc_health_response(struct arena *a, enum grpc_health_status status, size_t *len);

#endif
