/* budget_api: GET /v1/budget, spend against the limits today and this
 * month (UTC), by provider, model, key and tenant. An admin key (or any
 * caller when auth is off) sees everything; any other key sees only its
 * own spend and limits. Money is given as USD numbers and as exact integer
 * nano-dollars (`*_nanos`). */
#ifndef AIPROXY_API_BUDGET_API_H
#define AIPROXY_API_BUDGET_API_H

struct http_request;

void budget_api_get(struct http_request *req);

#endif
