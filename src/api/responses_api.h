/* responses_api: the Responses API's endpoints and its store's lifecycle
 * (see responses_api.c). */
#ifndef AIPROXY_API_RESPONSES_API_H
#define AIPROXY_API_RESPONSES_API_H

#include <stddef.h>

struct config;
struct http_request;

/* Opens the store of responses (in the ledger's database) when
 * responses.enabled. Returns 0, or -1 with `err`. */
int responses_api_start(const struct config *cfg, char *err, size_t errcap);
void responses_api_stop(void);

void responses_api_create(struct http_request *req);
void responses_api_get(struct http_request *req, const char *rest);
void responses_api_delete(struct http_request *req, const char *rest);

#endif
