/* candidates: the router's pure decision for one request (DESIGN: request
 * facts + config snapshot + live stats -> an ordered list of candidates,
 * each with the reason it is there, and the reasons the others were left
 * out). Resolves the model (routing.aliases, tier aliases, x-task-tier,
 * routing.auto_tier), filters by availability, capabilities, health and
 * max_cost, applies routing.policies, orders by the strategy and places
 * routing.failover.fallback_chain. No I/O; see docs/routing.md. */
#ifndef AIPROXY_ROUTING_CANDIDATES_H
#define AIPROXY_ROUTING_CANDIDATES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/arena.h"

struct req_facts;

#define ROUTE_MAX_CANDIDATES 32
#define ROUTE_REASON_MAX 112

/* A candidate is one model on one provider endpoint. `provider` points to
 * a per-request view of the configured provider (route_plan.views): a copy
 * whose `endpoint` is this candidate's base URL and whose `stats` is the
 * entry this attempt is counted on (routing/stats.h: the model entry, or the
 * model-on-endpoint leaf for a provider with several endpoints), so callers
 * use provider->stats and provider->name as before. Compare providers by
 * name, not by pointer. */
struct candidate {
    const struct config_provider *provider;
    const struct config_model *model;
    const char *endpoint; /* the base URL for this attempt (== provider->endpoint) */
    int endpoint_index;   /* in provider's `endpoints`; 0 with one endpoint */
    nanos_t est_cost; /* this request's estimated cost on this candidate */
    bool probe;       /* a half-open circuit's probe: report its outcome promptly */
    char reason[ROUTE_REASON_MAX]; /* why it is here and in this place */
};

enum route_error {
    ROUTE_OK,
    ROUTE_ERR_STRATEGY, /* unknown strategy override: a 400 (param "x-aiproxy-strategy") */
    ROUTE_ERR_TASK_TIER, /* unknown x-task-tier: a 400 */
    ROUTE_ERR_NO_MODEL, /* no model and routing.auto_tier off: a 400 (param "model") */
};

struct route_plan {
    const char *model; /* the name after alias / tier resolution (points into config) or the request's */
    bool model_known;  /* some provider lists it, available or not */
    /* The candidates in order, `n` of them (at most ROUTE_MAX_CANDIDATES),
     * allocated in the arena given to routing_plan_request. */
    struct candidate *items;
    size_t n;
    /* The providers as the candidates see them (see struct candidate), one
     * per item, in the same arena; a candidate copied elsewhere keeps
     * pointing here, so the arena must outlive its candidates. */
    struct config_provider *views;
    /* Why known providers were left out: "p1: OPENAI_API_KEY is not set; ..." */
    char excluded[512];
    /* How many were left out because the request itself does not fit them
     * (a capability it needs, or over its max_cost), as opposed to the
     * provider's state: when only these remain, the request is at fault. */
    size_t excluded_by_capability;
    size_t excluded_by_cost;
    size_t excluded_other;

    enum route_error error;   /* ROUTE_OK unless the request must be refused */
    char error_message[192];  /* for the 400 when error != ROUTE_OK */
    enum routing_strategy strategy_used;
    const char *tier;      /* model tier used ("cheap", ...), NULL when none */
    const char *task_tier; /* "trivial".."deep" when the header or the analyser chose, else NULL */
    int64_t prompt_tokens; /* the estimate used for cost and policies */
    /* Why the first candidate is first, for x-aiproxy `reason`, e.g.
     * "tier=cheap (auto: keyword 'what is', ~6 tokens, 1 messages); cost_optimized: est $0.00002" */
    char reason[256];
};

struct route_input {
    const char *model;             /* as requested; may be an alias or a tier alias; "" when absent */
    unsigned caps_needed;          /* CAP_* the endpoint implies (CAP_EMBEDDINGS for /v1/embeddings) */
    const struct req_facts *facts; /* NULL allowed (no estimate: 0 prompt tokens) */
    const char *body;              /* for the content analyser; NULL allowed */
    size_t body_len;
    const char *strategy_override; /* x-aiproxy-strategy or predict routing.strategy; NULL */
    const char *task_tier;         /* x-task-tier; NULL */
    int64_t max_cost_nanos;        /* -1 none */
    uint64_t seed;                 /* per-request randomness (weighted, jitter) */
    int64_t now_ms;                /* monotonic, for the circuit breaker */
    /* Mesh peers this request may go to (PROVIDER_MESH views, mesh/peers.h),
     * already cut down by the loop rules (hops, via); ranked like providers,
     * after the configured ones on ties, placed by `mesh_peer` in
     * routing.failover.fallback_chain. */
    const struct config_provider *const *peers;
    size_t n_peers;
};

/* The plan for one request. Images add CAP_VISION; tools add CAP_TOOLS for
 * models whose capabilities were listed explicitly (a model without a list
 * is assumed to take tools). Never fails except with out->error set (then
 * out->n is 0). Reads live stats through provider->stats (may be NULL).
 * The candidates and their views are allocated in `arena`. */
void routing_plan_request(const struct config *cfg, const struct route_input *in,
                          struct route_plan *out, struct arena *arena);

/* Whether active health checks hold every endpoint of `p` down (routing then
 * keeps it only as a last resort); *failures gets the consecutive failed
 * checks of the first endpoint down (may be NULL). False without stats. */
bool routing_provider_down(const struct config_provider *p, int *failures);

/* The estimated cost of the request on model `m` of provider `p`: prompt
 * tokens (scan_estimate_tokens of facts->text_bytes) at the input price,
 * completion tokens (facts->max_tokens, else p->max_tokens_default; 0 for
 * embeddings) times facts->n at the output price, plus the per-generation
 * price. Integer nano-dollars, rounded up. */
nanos_t routing_estimate_cost(const struct config_provider *p, const struct config_model *m,
                              const struct req_facts *facts, bool embeddings);

#endif
