/* limits: the arguments and replies of the shared store's scripts
 * (cluster/scripts.h), built and read without I/O: what one request asks
 * of Redis before it is sent (request limits, tokens per minute, budget
 * holds: one script call) and after it (its real cost: one call), and the
 * spend counted node-locally while Redis was down (reconciliation). */
#ifndef AIPROXY_CLUSTER_LIMITS_H
#define AIPROXY_CLUSTER_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/money.h"
#include "core/str.h"
#include "security/ratelimit.h"

struct redisReply;

#define CL_MAX_ASKS 2
#define CL_MAX_SCOPES 3
#define CL_MAX_ARGS 64
#define CL_SCOPE_MAX 160 /* bytes of an encoded scope name */
/* Lua numbers are doubles: money and counts stay below 2^53. */
#define CL_NUM_MAX (((int64_t)1 << 53) - 1) /* past it, sums round: a limit could pass */

/* A budget scope's name in Redis: "g" (the gateway), "k:" + key id,
 * "t:" + tenant, with spaces, control bytes and '%' percent-encoded (the
 * scripts split on spaces). Writes into out (cap >= CL_SCOPE_MAX); a name
 * too long is cut (names are limited far below that by the config). */
void cl_scope_name(char kind, const char *name, char *out, size_t cap);

/* An argument vector with room for its numbers. */
struct cl_argv {
    int argc;
    const char *argv[CL_MAX_ARGS];
    size_t lens[CL_MAX_ARGS];
    char nums[CL_MAX_ARGS][STR_I64_LEN];
    int n_nums;
};

struct cl_reserve {
    const char *prefix;
    const char *member; /* cl_hold_member */
    int64_t hold_ms; /* the hold's life if the request is never settled */
    struct rl_ask asks[CL_MAX_ASKS]; /* per_hour, per_minute: 0 = none */
    int n_asks;
    const char *tpm_who; /* NULL: no token limit */
    int64_t tpm_limit, est_tokens;
    nanos_t amount;
    int64_t day, month;
    struct {
        const char *name; /* cl_scope_name */
        nanos_t daily, monthly; /* 0 = none */
    } scopes[CL_MAX_SCOPES];
    int n_scopes;
};

enum cl_code { CL_ADMITTED = 0, CL_RATE = 1, CL_TOKENS = 2, CL_BUDGET = 3 };

struct cl_reserve_result {
    enum cl_code code;
    int index;    /* the refusing ask or scope */
    bool monthly; /* a budget refusal: the monthly limit */
    struct rl_decision asks[CL_MAX_ASKS];
    struct rl_decision tokens;
    /* What each scope's windows hold (-1: not read: the scope has no limit). */
    nanos_t day_spent[CL_MAX_SCOPES], month_spent[CL_MAX_SCOPES];
};

#define CL_MEMBER_MAX (96 + CL_MAX_SCOPES * CL_SCOPE_MAX)

/* A request's hold as listed in Redis: "request_id amount day month n
 * scope..." with the scopes that have a limit (the reservation is theirs).
 * The scripts split it on blanks: request ids have none (core/ids.h), scope
 * names are encoded (cl_scope_name).
 * Built once at reservation, sent again to settle or release it. Returns
 * out, or NULL when it does not fit. */
char *cl_hold_member(const struct cl_reserve *in, const char *request_id, char *out, size_t cap);

/* One request's arguments for the reserve script (a batch entry). */
void cl_reserve_argv(const struct cl_reserve *in, struct cl_argv *out);
/* Reads the reserve script's reply for `in`. Returns 0, or -1 when the
 * reply is not one (an error reply, a wrong shape). */
int cl_reserve_decode(const struct redisReply *r, const struct cl_reserve *in,
                      struct cl_reserve_result *out);

struct cl_settle {
    const char *prefix;
    const char *member; /* the hold, as reserved */
    nanos_t cost, first_cost; /* first_cost: the first scope's (the gateway's own) */
    int64_t day, month;
    const char *tpm_who; /* NULL: none */
    int64_t tpm_limit, tpm_delta;
    const char *scopes[CL_MAX_SCOPES];
    int n_scopes;
};

struct cl_settle_result {
    bool applied; /* false: settled before (a retry) */
    /* Each scope's spend after the cost (-1: nothing written, a zero cost). */
    nanos_t day_spent[CL_MAX_SCOPES], month_spent[CL_MAX_SCOPES];
};

void cl_settle_argv(const struct cl_settle *in, struct cl_argv *out);

/* A heap copy of `in` with its strings (but `prefix`, which is the
 * store's for the process's life) in the same block: one free(). */
struct cl_settle *cl_settle_copy(const struct cl_settle *in);
int cl_settle_decode(const struct redisReply *r, int n_scopes, struct cl_settle_result *out);

/* Spend one scope's window took while Redis was down. */
struct cl_delta {
    char scope[CL_SCOPE_MAX];
    char kind; /* 'd' or 'm' */
    int64_t period;
    nanos_t amount;
};

#define CL_RECONCILE_BATCH 15 /* deltas per script call (4 arguments each) */

void cl_reconcile_argv(const char *prefix, const char *batch_id, const struct cl_delta *d,
                       int n, struct cl_argv *out);
/* 1 applied, 0 applied before (same batch id), -1 not a reply of it. */
int cl_reconcile_decode(const struct redisReply *r);

#endif
