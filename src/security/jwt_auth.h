/* jwt_auth: security.auth.type jwt at run time. Holds the jwks_url
 * refresher of the serving configuration (replaced when a reload changes
 * the URL) and verifies a presented token against the configuration's key
 * source: its jwks_file set (loaded with the config), its jwks_url set (the
 * refresher's current one) or its HS256 secret. */
#ifndef AIPROXY_SECURITY_JWT_AUTH_H
#define AIPROXY_SECURITY_JWT_AUTH_H

#include "security/jwt.h"

struct config;

/* Starts, replaces or stops the jwks_url refresher to match `cfg` (a first
 * fetch blocks up to a few seconds). Call at start and after every config
 * swap, from one thread. */
void jwt_auth_configure(const struct config *cfg);
/* Stops the refresher. */
void jwt_auth_stop(void);

/* Verifies `token` under cfg->security.auth.jwt at the current time. On
 * JWT_OK `out` holds the mapped claims (jwt_result_cleanup). A token
 * naming an unknown key id asks the refresher for a new set. Counts
 * refusals in the metrics by reason. Thread-safe. */
enum jwt_reason jwt_auth_verify(const struct config *cfg, const char *token, struct jwt_result *out);

#endif
