/* store_call: a shared-store call made for a request, on the request's
 * worker connection. Its callback runs only while the request lives (a
 * client that leaves drops the answer); `data` is released either way. */
#ifndef AIPROXY_API_STORE_CALL_H
#define AIPROXY_API_STORE_CALL_H

#include <stddef.h>

struct http_request;
struct redisReply;
struct redis_conn;

/* reply: NULL when the call failed (Redis down, timeout). */
typedef void (*store_reply_cb)(struct http_request *req, struct redisReply *reply, void *data);

/* Runs script `script` (cluster/scripts.h) with `argv`. Returns 0, or -1
 * when the store cannot be asked (down): then neither the callback nor
 * `free_data` runs. */
int store_call_script(struct http_request *req, int script, int argc, const char **argv,
                      const size_t *lens, store_reply_cb cb, void *data,
                      void (*free_data)(void *));
/* The same with a plain command. */
int store_call_command(struct http_request *req, int argc, const char **argv, const size_t *lens,
                       store_reply_cb cb, void *data, void (*free_data)(void *));
/* A plain command on another of the worker's connections (the cache's). */
int store_call_command_on(struct redis_conn *conn, struct http_request *req, int argc,
                          const char **argv, const size_t *lens, store_reply_cb cb, void *data,
                          void (*free_data)(void *));

#endif
