/* candidates: the router's pure decision for one request: which providers
 * may serve the requested model (after alias resolution), in what order,
 * and why the others were left out. No I/O. The full strategy engine
 * (issue 4) plugs in here; today the order is priority, then config order. */
#ifndef AIPROXY_ROUTING_CANDIDATES_H
#define AIPROXY_ROUTING_CANDIDATES_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct config_provider;
struct config_model;

#define ROUTE_MAX_CANDIDATES 32

struct candidate {
    const struct config_provider *provider;
    const struct config_model *model;
};

struct route_plan {
    const char *model; /* the name after alias resolution (points into config) or the request's */
    bool model_known;  /* some provider lists it, available or not */
    struct candidate items[ROUTE_MAX_CANDIDATES];
    size_t n;
    /* Why known providers were left out: "p1: OPENAI_API_KEY is not set; ..." */
    char excluded[512];
};

/* Resolves `model` through routing.aliases (up to 8 hops) and lists the
 * available providers serving it whose model has every capability in
 * `caps_needed` (CAP_* bits), in priority order. */
void routing_plan(const struct config *cfg, const char *model, unsigned caps_needed,
                  struct route_plan *out);

#endif
