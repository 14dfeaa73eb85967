/* context_api: the context delta buffer's endpoints and its process-wide
 * store (see context_api.c; SPEC section 8). */
#ifndef AIPROXY_API_CONTEXT_API_H
#define AIPROXY_API_CONTEXT_API_H

#include <stddef.h>

struct config;
struct ctx_limits;
struct ctx_store;
struct http_request;

/* Creates the store and loads it from the ledger's local SQLite file
 * (budget.cost_db's, or the PostgreSQL ledger's spool). Call after the
 * ledger opened (it made the tables). Returns 0, or -1 with `err`. */
int context_start(const struct config *cfg, char *err, size_t errcap);
void context_stop(void);

/* NULL before context_start. */
struct ctx_store *context_store(void);
void context_limits(const struct config *cfg, struct ctx_limits *out);

void context_api_delta(struct http_request *req);
void context_api_stats(struct http_request *req);
/* `project`: the path segment after /v1/context/. */
void context_api_delete(struct http_request *req, const char *project);

#endif
