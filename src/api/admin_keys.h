/* admin_keys: the managed-key admin API (admin role only; dispatch checks
 * it). POST /aiproxy/admin/keys creates a key and shows it once;
 * GET /aiproxy/admin/keys lists every key (config and managed) without
 * secrets; DELETE /aiproxy/admin/keys/{id} revokes a managed key at once. */
#ifndef AIPROXY_API_ADMIN_KEYS_H
#define AIPROXY_API_ADMIN_KEYS_H

struct http_request;

void admin_keys_create(struct http_request *req);
void admin_keys_list(struct http_request *req);
void admin_keys_revoke(struct http_request *req, const char *id);

#endif
