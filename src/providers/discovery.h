/* discovery: parsers for what local inference servers say they serve: the
 * OpenAI `GET /v1/models` list (llama.cpp, vLLM, LM Studio, TGI, Ollama's
 * compat layer) and Ollama's `GET /api/tags`. Pure; the daemon does the
 * periodic requests and feeds the bodies here. */
#ifndef AIPROXY_PROVIDERS_DISCOVERY_H
#define AIPROXY_PROVIDERS_DISCOVERY_H

#include <stddef.h>

#define DISCOVERY_MAX_MODELS 4096 /* ids kept from one answer */
#define DISCOVERY_MAX_ID 256      /* longer ids are skipped */

struct discovery_list {
    char **ids; /* unique, in the server's order */
    size_t count;
};

/* {"object":"list","data":[{"id":...},...]} -> ids. Returns 0 and fills
 * `out` (heap; release with discovery_list_cleanup), or -1 when the body has
 * no `data` array (out is then empty). */
int discovery_parse_openai_models(const char *json, size_t len, struct discovery_list *out);

/* {"models":[{"name":...,"model":...},...]} -> names ("model" when "name"
 * is absent). Returns as discovery_parse_openai_models, -1 without a
 * `models` array. */
int discovery_parse_ollama_tags(const char *json, size_t len, struct discovery_list *out);

/* Either shape: `data` is read when present, else `models`. */
int discovery_parse_models(const char *json, size_t len, struct discovery_list *out);

void discovery_list_cleanup(struct discovery_list *l);

#endif
