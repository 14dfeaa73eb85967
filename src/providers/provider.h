/* provider: the adapter interface (DESIGN.md). A provider type is a table
 * of pure functions that turn the OpenAI-shaped call into the provider's
 * request (URL, headers, body) and, for non-OpenAI wire formats, its
 * responses back into the OpenAI shape. No adapter touches a socket. */
#ifndef AIPROXY_PROVIDERS_PROVIDER_H
#define AIPROXY_PROVIDERS_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>

#include "api/scan.h"
#include "core/arena.h"

struct config_provider;
struct config_model;

enum api_kind { API_CHAT, API_COMPLETIONS, API_EMBEDDINGS };

/* What the client asked for, already validated. */
struct provider_call {
    enum api_kind kind;
    const char *body; /* the client's JSON body */
    size_t body_len;
    const struct req_facts *facts;
    const struct config_provider *provider;
    const struct config_model *model;
    struct arena *arena; /* for everything prepare allocates */
};

/* The provider request prepare builds (arena-owned). */
struct provider_request {
    char *url;
    char *headers; /* "Name: value\r\n" lines */
    char *body;
    size_t body_len;
    bool stream;
};

struct provider_ops {
    const char *type;
    /* Builds the upstream request. Returns 0, or -1 with a message in
     * `err` (a 400 for the client: the request cannot be expressed). */
    int (*prepare)(const struct provider_call *call, struct provider_request *out, char *err,
                   size_t err_cap);
};

/* The ops for a provider type name ("openai", "local", ...); NULL if unknown. */
const struct provider_ops *provider_ops_for(const struct config_provider *p);

#endif
