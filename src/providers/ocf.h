/* ocf: the Open Compute Foundation network (APIS.md section 8). Parses a
 * node's /v1/dnt/table into which models are served by which connected
 * peers (pure, no I/O; the daemon fetches the table periodically), and the
 * `ocf` adapter (provider_ocf_ops) that sends OpenAI-format requests through
 * the node's load-balanced forward /v1/service/llm/v1/... */
#ifndef AIPROXY_PROVIDERS_OCF_H
#define AIPROXY_PROVIDERS_OCF_H

#include <stddef.h>

#define OCF_MAX_MODELS 4096 /* models kept from one table; the rest are dropped */
#define OCF_MAX_PEERS 4096  /* peers kept per model */

struct ocf_model {
    char *name;    /* the model id (what follows "model=") */
    char **peers;  /* ids of the connected peers serving it, in table order */
    size_t n_peers;
};

struct ocf_model_list {
    struct ocf_model *items; /* sorted by name, names unique */
    size_t count;
};

/* Parses a /v1/dnt/table document (an object keyed by datastore key, or an
 * array of peers). Keeps peers whose `connected` is true, their `service`
 * entries named "llm" (whose status, when given, is "connected"), and each
 * "model=NAME" entry of `identity_group`; a peer's id is its `id` field,
 * else its key without the leading '/'. Missing or null arrays are empty.
 * Returns 0 and fills `out` (heap memory the caller releases with
 * ocf_model_list_cleanup), or -1 when the text is not a JSON object or
 * array (out is then empty). */
int ocf_parse_table(const char *json, size_t len, struct ocf_model_list *out);

void ocf_model_list_cleanup(struct ocf_model_list *l);

#endif
