/* tier: the tier aliases users know (cheap, balanced, premium, free, local;
 * proxym's), the task tiers of x-task-tier (trivial, operational, standard,
 * complex, deep) and the cheap content analyser that picks a task tier from
 * a request body when routing.auto_tier is on and no model is named. Pure:
 * reads the config and a bounded window of the body, allocates nothing. */
#ifndef AIPROXY_ROUTING_TIER_H
#define AIPROXY_ROUTING_TIER_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct req_facts;

enum model_tier { TIER_CHEAP, TIER_BALANCED, TIER_PREMIUM, TIER_FREE, TIER_LOCAL, TIER_COUNT };
enum task_tier { TASK_TRIVIAL, TASK_OPERATIONAL, TASK_STANDARD, TASK_COMPLEX, TASK_DEEP, TASK_COUNT };

/* The analyser reads at most this much of the body: the first half from the
 * start, the second from the end (where the newest message is). */
#define TIER_SCAN_MAX (64 * 1024)

const char *tier_name(enum model_tier t);
const char *task_tier_name(enum task_tier t);
/* Parse a name; false when it is not one (case-sensitive, as sent). */
bool tier_parse(const char *name, enum model_tier *out);
bool task_tier_parse(const char *name, enum task_tier *out);

/* The model tier a task tier uses: trivial and operational -> cheap,
 * standard -> balanced, complex and deep -> premium. */
enum model_tier task_tier_model_tier(enum task_tier t);

/* The model for tier `name` (a model tier or a task tier): routing.tiers
 * when it names one; for a task tier, then its model tier; for a model tier
 * derived from the models of available providers with text capability:
 *   free     the first model whose price is 0 (input, output, per generation);
 *   cheap    the cheapest paid model (input + output per 1k), else the cheapest;
 *   premium  the most expensive model;
 *   balanced the lower median of the paid models by that price, else of all;
 *   local    the first model of a provider of type local.
 * Ties go to config order. Returns a name owned by the config, or NULL when
 * no model fits; `why` gets a short explanation ("routing.tiers.cheap",
 * "cheapest paid model"). */
const char *tier_resolve(const struct config *cfg, const char *name, char *why, size_t why_cap);

/* The content analyser: picks a task tier from the request's text.
 * Signals, from a bounded scan of the body (case-insensitive):
 *   - keywords of each tier ("typo" trivial, "what is" operational,
 *     "implement" standard, "refactor" complex, "step by step" deep, ...);
 *     the highest tier whose keyword appears wins;
 *   - size: estimated prompt tokens < 50 trivial, < 500 operational,
 *     < 2000 standard, < 8000 complex, else deep;
 *   - code: a ``` fence or code-like text lifts to at least standard;
 *   - conversation depth: more than 6 messages lifts one tier.
 * The tier is the highest signal. `why` gets e.g. "keyword 'refactor'". */
enum task_tier tier_analyse(const char *body, size_t len, const struct req_facts *facts,
                            char *why, size_t why_cap);

#endif
