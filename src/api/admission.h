/* admission: who is asking, and may they. Authentication (config keys and
 * managed keys), rate limits, model allow-lists, budget reservation before
 * a request is sent, and its settlement (ledger record, spend) once it is
 * over. The proxy and the dispatcher call these; the policies live in
 * security/ and budget/. */
#ifndef AIPROXY_API_ADMISSION_H
#define AIPROXY_API_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>

#include "api/scan.h"
#include "core/money.h"
#include "providers/provider.h"
#include "routing/candidates.h"

struct http_request;

/* The authenticated caller (arena-owned, in req->principal). */
struct principal {
    const char *key_id;  /* stable id for limits and the ledger (never the key):
                          * a config key's name, or a managed key's "key_..." id */
    const char *name;    /* the key's name */
    const char *tenant;  /* NULL when none */
    bool admin;          /* may use /aiproxy/admin/... */
    bool managed;        /* created through the admin API (else from the config) */
    const char *const *models; /* allowed models or aliases; n_models == 0: all */
    size_t n_models;
    nanos_t daily_limit, monthly_limit; /* the key's own budget; 0 = none */
    int rate_limit_per_hour, requests_per_minute, tokens_per_minute; /* 0 = none */
    const char *limit_key; /* "k:" + key_id: this key's entry in the rate-limit table */
};

struct config;
struct ledger;
struct keystore;
struct spend_counter;
struct spend_table;

/* Opens the ledger (budget.cost_db) and the managed-key store in it,
 * restores today's and this month's spend (UTC) from it, and starts the
 * ledger and alert threads. Call once before the workers start. Returns 0,
 * or -1 with `err`. */
int admission_start(const struct config *cfg, char *err, size_t errcap);
/* Commits every queued ledger record, stops the threads and closes the
 * database. Call after the workers have drained. */
void admission_stop(void);

/* The shared state, for the budget and admin APIs (NULL before start). */
struct ledger *admission_ledger(void);
struct keystore *admission_keystore(void);
struct spend_counter *admission_global_spend(void);
/* which: "key", "tenant", "provider", "model". */
struct spend_table *admission_spend_table(const char *which);

enum admit {
    ADMIT_REFUSED, /* answered (401, 403, 429, 503) */
    ADMIT_OK,      /* go on */
    ADMIT_WAIT,    /* asked the shared store: `resume` runs once it answers */
};

/* Called once after ADMIT_WAIT, on the request's worker, when the request
 * was admitted. Not called when it was refused (already answered: the
 * request may be gone) nor when it was freed meanwhile (the client left). */
typedef void (*admission_resume_cb)(struct http_request *req);

/* Authenticates the request when security.auth is on and applies the rate
 * limits that do not depend on the model (per key, per client IP). On
 * refusal it answers (401, 403, 429). With a shared store, a managed key
 * this node does not know yet is looked up there (ADMIT_WAIT; only when
 * `resume` is given), and with `defer_limits` (a request that will reach
 * admission_reserve) the request limits are left to the reservation: one
 * round trip to Redis for everything. */
/* The caller's scope, what per-caller state is kept under (the response
 * cache, the context buffer): "t:<tenant>" for a key of a tenant, else
 * "k:<key id>", or "*" when authentication is off. NULL when auth is on
 * and the request has no authenticated caller (a peer's request): then
 * nothing per caller may be read or written. Arena-owned. */
const char *admission_scope(struct http_request *req);

enum admit admission_authenticate(struct http_request *req, bool admin_required,
                                  bool defer_limits, admission_resume_cb resume);

/* Before sending: refuses models the key may not use (403), removes
 * candidates the budget state forbids (paid providers disabled) and
 * reserves the estimated cost against every applicable limit (with a
 * shared store: in Redis, with the request and token limits, in one script
 * call). On refusal it answers (429 budget_exceeded with x-should-retry:
 * false, 429 rate_limit_exceeded, 403, or 503 store_unavailable when Redis
 * is down and on_store_down is closed). */
enum admit admission_reserve(struct http_request *req, struct route_plan *plan,
                             const struct req_facts *facts, enum api_kind kind,
                             admission_resume_cb resume);

/* Whether the caller's key may use the model it asked for (`asked`) or
 * the model that resolved to (`resolved`, may be NULL): the check
 * admission_reserve makes, for endpoints that reserve nothing. */
bool admission_model_allowed(const struct http_request *req, const char *asked,
                             const char *resolved);

/* Once per request, when it is complete or aborted (the server's completion
 * hook): settles the reservation with the real cost in req->acct and
 * appends the ledger record. A request that reserved nothing is ignored. */
void admission_finish(struct http_request *req);

#endif
