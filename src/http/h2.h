/* h2: the HTTP/2 transport of the front end (nghttp2). A connection that
 * opened with the client preface, or chose "h2" by ALPN, gets one nghttp2
 * server session; each stream becomes a struct http_request handed to the
 * same handler as HTTP/1.1, and server.c's response functions branch here
 * when req->h2 is set. Internal to src/http/ (server.c is the only caller). */
#ifndef AIPROXY_HTTP_H2_H
#define AIPROXY_HTTP_H2_H

#include <stdbool.h>
#include <stddef.h>

struct http_conn;
struct http_request;

/* SETTINGS_MAX_CONCURRENT_STREAMS: streams past it are refused
 * (RST_STREAM REFUSED_STREAM). */
#define H2_MAX_CONCURRENT_STREAMS 128

/* Looks at a connection's first bytes (or its ALPN choice on TLS). Returns
 * 1 for HTTP/2, 0 for HTTP/1.1, -1 when more bytes are needed to tell (a
 * strict prefix of the preface arrived). */
int h2_conn_detect(struct http_conn *c);
/* Switches the connection to HTTP/2: creates the session and queues the
 * server's SETTINGS. The preface is left in the input, for nghttp2. */
void h2_conn_start(struct http_conn *c);
/* Feeds what the connection read to the session, dispatches the requests
 * that completed and writes what the session has to send. */
void h2_conn_input(struct http_conn *c);
/* The connection's output drained below its low watermark. */
void h2_conn_on_write(struct http_conn *c);
/* The connection's timer fired (idle: no stream open): GOAWAY, close. */
void h2_conn_on_timer(struct http_conn *c);
/* Graceful shutdown (drain): GOAWAY; streams in flight finish, then the
 * connection closes. */
void h2_conn_shutdown(struct http_conn *c);
/* The connection is being freed: aborts the requests handlers still own
 * (on_abort, as for a closed HTTP/1.1 connection) and frees the session. */
void h2_conn_free(struct http_conn *c);

/* The response functions of server.h for a request with req->h2 set.
 * `trailers` ("name: value\r\n"..., or NULL) follow the body; `len` bytes
 * of `body` are copied. */
void h2_respond(struct http_request *req, int status, const char *content_type,
                const char *extra_headers, const char *body, size_t len, const char *trailers);
void h2_stream_start(struct http_request *req, int status, const char *content_type,
                     const char *extra_headers);
bool h2_stream_write3(struct http_request *req, const char *a, size_t alen, const char *b,
                      size_t blen, const char *c, size_t clen);
void h2_stream_end(struct http_request *req, const char *trailers);
void h2_stream_flush(struct http_request *req);

#endif
