/* parse_sections: the key tables of the sections parsed outside
 * config/parse.c, joined into the top-level table there. */
#ifndef AIPROXY_CONFIG_PARSE_SECTIONS_H
#define AIPROXY_CONFIG_PARSE_SECTIONS_H

#include "config/walk.h"

extern const struct key_spec config_security_keys[]; /* config/parse_security.c */
extern const struct key_spec config_cluster_keys[];  /* config/parse_features.c */
extern const struct key_spec config_cache_keys[];
extern const struct key_spec config_context_keys[];
extern const struct key_spec config_responses_keys[];

/* security.auth.jwt's checks across keys (one key source, secret length,
 * jwks_url scheme, algorithms) and the jwks_file load; after the walk. */
void config_validate_jwt(struct parse_ctx *cx, const struct cnode *root);

#endif
