/* policy: routing.policies, the standard's rule language (its sections 4.1
 * and 7.1), compiled once per config snapshot and applied to every plan.
 * A rule is `if: CONDITION` + `then: ACTION`, or `else: ACTION`; the
 * grammar, the fields and the semantics are in docs/routing.md. Parsing is
 * a hand-written recursive descent over the rule text that reports the
 * column (1-based, within the rule's text) at fault. */
#ifndef AIPROXY_ROUTING_POLICY_H
#define AIPROXY_ROUTING_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Applicable policies beyond this many still filter and set priorities,
 * but add no ordering key. */
#define POLICY_MAX_KEYS 8
#define POLICY_MAX_NOTE 96

struct policy_set; /* opaque, immutable once compiled */

struct policy_error {
    int col; /* 1-based column in the rule's text */
    char msg[160];
};

/* Compiles every rule of cfg->routing.policies into cfg->compiled_policies
 * (with its free hook). A rule that does not parse is a DIAG_ERROR
 * "FILE:LINE:COL: routing.policies[i].rules[j].if: message" (".then" /
 * ".else"; bare rules are "routing.policies[i].if"). Suspicious but valid
 * rules (`==` with a glob, a provider that does not exist, rules after an
 * `else`) are warnings. Returns false when an error was reported. */
bool routing_compile_policies(struct config *cfg, struct diag_list *diags);

/* A set with no rules, for compiling single rules (tests, fuzzing): `cfg`
 * (may be NULL) resolves provider names in prefer/require. */
struct policy_set *policy_set_new(const struct config *cfg);
void policy_set_free(struct policy_set *set);
/* Adds one rule to the set's last policy (a new one named `policy` when
 * `policy` differs from the last one's name). `if_text` NULL is an `else`.
 * Returns 0, or -1 with `err` for the condition or -2 for the action. */
int policy_add_rule(struct policy_set *set, const char *policy, const char *type,
                    const char *if_text, const char *then_text, struct policy_error *err);
size_t policy_set_count(const struct policy_set *set); /* policies */

/* ---- evaluation ---- */

/* What a condition can see of the request. */
struct policy_request {
    const char *model; /* after alias / tier resolution */
    int64_t tokens;    /* estimated prompt tokens */
    int64_t max_tokens; /* -1 absent */
    bool stream;
    unsigned caps;    /* CAP_* bits the request needs */
    const char *tier; /* "" when none */
};

/* What a condition or an ordering can see of one candidate. */
struct policy_provider {
    const struct config_provider *provider;
    int64_t priority;     /* configured */
    nanos_t cost_per_1k;  /* the model's (input + output) / 2 */
    nanos_t est_cost;     /* this request's estimated cost */
    int64_t latency_ms;   /* EWMA; 0 when unmeasured */
    int64_t load_permille; /* in-flight relative to max_concurrency */
};

/* What the policies made of one candidate. */
struct policy_outcome {
    bool excluded;
    int64_t priority;            /* after `priority = N` assignments */
    int64_t keys[POLICY_MAX_KEYS]; /* lower sorts first; compare `n_keys` of them */
    char note[POLICY_MAX_NOTE];  /* "policy p: priority = 1" or why excluded */
};

/* Applies the policies that apply under `strategy` (a policy whose `type`
 * names a strategy applies only under that strategy; any other type, or
 * none, always applies) to `n` candidates. Fills out[i] and returns how
 * many keys each outcome carries (the same for all). */
size_t policy_apply(const struct policy_set *set, enum routing_strategy strategy,
                    const struct policy_request *rq, const struct policy_provider *provs,
                    size_t n, struct policy_outcome *out);

#endif
