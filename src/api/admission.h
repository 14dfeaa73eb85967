/* admission: who is asking, and may they. Authentication (config keys and
 * managed keys), rate limits, model allow-lists, budget reservation before
 * a request is sent, and its settlement (ledger record, spend) once it is
 * over. The proxy and the dispatcher call these; the policies live in
 * security/ and budget/. */
#ifndef AIPROXY_API_ADMISSION_H
#define AIPROXY_API_ADMISSION_H

#include <stdbool.h>

#include "api/scan.h"
#include "providers/provider.h"
#include "routing/candidates.h"

struct http_request;

/* The authenticated caller (arena-owned, in req->principal). */
struct principal {
    const char *key_id;  /* stable id for limits and the ledger (never the key) */
    const char *name;    /* the key's name */
    const char *tenant;  /* NULL when none */
    bool admin;          /* may use /aiproxy/admin/... */
};

/* Authenticates the request when security.auth is on and applies the rate
 * limits that do not depend on the model (per key, per client IP). On
 * refusal it answers (401, 403, 429) and returns false. */
bool admission_authenticate(struct http_request *req, bool admin_required);

/* Before sending: refuses models the key may not use (403), removes
 * candidates the budget state forbids (paid providers disabled) and
 * reserves the estimated cost against every applicable limit. On refusal
 * it answers (429 budget_exceeded with x-should-retry: false, or 403) and
 * returns false. */
bool admission_reserve(struct http_request *req, struct route_plan *plan,
                       const struct req_facts *facts, enum api_kind kind);

/* Once per request, when it is complete or aborted (the server's completion
 * hook): settles the reservation with the real cost in req->acct and
 * appends the ledger record. A request that reserved nothing is ignored. */
void admission_finish(struct http_request *req);

#endif
