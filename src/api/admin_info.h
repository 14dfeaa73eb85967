/* admin_info: GET /metrics and GET /v1/endpoints. */
#ifndef AIPROXY_API_ADMIN_INFO_H
#define AIPROXY_API_ADMIN_INFO_H

struct http_request;

void admin_info_metrics(struct http_request *req);
void admin_info_endpoints(struct http_request *req);
/* The whole handler of the prometheus_port listener: GET /metrics and
 * GET /health, nothing else, no authentication. */
void admin_info_metrics_listener(struct http_request *req);

#endif
