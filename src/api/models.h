/* models: the model discovery endpoints. */
#ifndef AIPROXY_API_MODELS_H
#define AIPROXY_API_MODELS_H

struct http_request;

void models_set_start_time(long long unix_seconds);
void models_list(struct http_request *req);
/* The body GET /v1/models answers, as a malloc'd string the caller frees
 * (the gRPC ListModels is made from it). */
char *models_list_text(struct http_request *req);
/* `id` is the decoded model id from the path. */
void models_get(struct http_request *req, const char *id);

#endif
