/* dispatch: the endpoint table: method + path -> handler, with the checks
 * every endpoint shares (disabled paths, authentication). */
#ifndef AIPROXY_API_DISPATCH_H
#define AIPROXY_API_DISPATCH_H

struct http_request;

/* The server's request handler (http_server_opts.handler). */
void api_dispatch(struct http_request *req);

/* The server's early hook (http_server_opts.prepare): a gRPC call's errors,
 * even those the transport answers itself (a body over
 * server.max_request_size), become gRPC statuses. */
void api_prepare_request(struct http_request *req);

/* The server's completion hook (http_server_opts.on_complete): metrics and
 * the access log. */
void api_request_complete(struct http_request *req);

#endif
