/* admission: authentication today; rate limits and budgets plug in here. */
#include "api/admission.h"

#include <string.h>

#include "config/config.h"
#include "http/server.h"
#include "security/auth.h"

bool admission_authenticate(struct http_request *req, bool admin_required)
{
    const struct config *cfg = req->config;
    if (!cfg->security.auth_enabled) return true;
    const char *presented = auth_presented_key(http_header_get(req, "authorization"),
                                               http_header_get(req, "x-api-key"));
    const struct config_api_key *k = auth_find_key(cfg, presented);
    if (!k) {
        http_respond_error_h(req, GW_ERR_INVALID_API_KEY,
                             "Missing or invalid API key. Send it as 'Authorization: Bearer KEY' "
                             "or 'x-api-key: KEY'.",
                             NULL, "WWW-Authenticate: Bearer\r\n");
        return false;
    }
    struct principal *p = arena_alloc(&req->arena, sizeof *p);
    memset(p, 0, sizeof *p);
    p->name = k->name ? k->name : "";
    p->key_id = p->name;
    req->principal = p;
    if (admin_required && !p->admin) {
        http_respond_error(req, GW_ERR_FORBIDDEN, "This endpoint needs an admin key.", NULL);
        return false;
    }
    return true;
}

bool admission_reserve(struct http_request *req, struct route_plan *plan,
                       const struct req_facts *facts, enum api_kind kind)
{
    return true;
}

void admission_finish(struct http_request *req)
{
}
