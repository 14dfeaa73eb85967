/* access_log: one JSON line per request (SPEC: request id, model,
 * provider, status, latency, tokens, cost). Never a credential: only the
 * fields below are written, each escaped. */
#ifndef AIPROXY_OBS_ACCESS_LOG_H
#define AIPROXY_OBS_ACCESS_LOG_H

struct http_request;

/* For http_server_opts.on_complete. */
void access_log_request(struct http_request *req);

#endif
