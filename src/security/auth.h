/* auth: client API keys (SPEC section 3). A key arrives as
 * `Authorization: Bearer KEY` or `x-api-key: KEY` and is compared, in
 * constant time, with the configured keys. Keys are never logged. */
#ifndef AIPROXY_SECURITY_AUTH_H
#define AIPROXY_SECURITY_AUTH_H

#include <stdbool.h>

struct config;
struct config_api_key;

/* The key the client presented (NULL when none); points into `authorization`
 * or `x_api_key`. */
const char *auth_presented_key(const char *authorization, const char *x_api_key);

/* Finds the configured key equal to `presented`; NULL when none matches.
 * Every configured key is compared, so timing does not reveal which one
 * (or how much of one) matched. */
const struct config_api_key *auth_find_key(const struct config *cfg, const char *presented);

#endif
