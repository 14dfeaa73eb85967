/* store_call: request-bound shared-store calls (see store_call.h). */
#include "api/store_call.h"

#include <stdbool.h>
#include <stdlib.h>

#include "api/upstream_slot.h"
#include "cluster/redis.h"
#include "core/alloc.h"
#include "core/arena.h"
#include "http/server.h"

struct waiter {
    struct http_request *req; /* NULL once the request is freed */
    bool answered;
    store_reply_cb cb;
    void *data;
    void (*free_data)(void *);
};

static void release(struct waiter *w)
{
    if (w->free_data) w->free_data(w->data);
    free(w);
}

static void on_request_freed(void *arg)
{
    struct waiter *w = arg;
    if (w->answered) free(w);
    else w->req = NULL;
}

static void on_reply(void *arg, struct redisReply *r)
{
    struct waiter *w = arg;
    w->answered = true;
    if (w->req) {
        /* w goes with the request (on_request_freed), which the callback's
         * answer may free at once: nothing of w is read after it */
        void *data = w->data;
        void (*free_data)(void *) = w->free_data;
        w->cb(w->req, r, data);
        if (free_data) free_data(data);
    } else {
        release(w);
    }
}

static struct waiter *waiter_new(struct http_request *req, store_reply_cb cb, void *data,
                                 void (*free_data)(void *))
{
    struct waiter *w = xcalloc(1, sizeof *w);
    w->req = req;
    w->cb = cb;
    w->data = data;
    w->free_data = free_data;
    return w;
}

int store_call_script(struct http_request *req, int script, int argc, const char **argv,
                      const size_t *lens, store_reply_cb cb, void *data,
                      void (*free_data)(void *))
{
    struct waiter *w = waiter_new(req, cb, data, free_data);
    if (redis_conn_script(api_store_conn(req->worker), script, argc, argv, lens, on_reply, w) != 0) {
        free(w);
        return -1;
    }
    arena_on_free(&req->arena, on_request_freed, w);
    return 0;
}

int store_call_command(struct http_request *req, int argc, const char **argv, const size_t *lens,
                       store_reply_cb cb, void *data, void (*free_data)(void *))
{
    return store_call_command_on(api_store_conn(req->worker), req, argc, argv, lens, cb, data,
                                 free_data);
}

int store_call_command_on(struct redis_conn *conn, struct http_request *req, int argc,
                          const char **argv, const size_t *lens, store_reply_cb cb, void *data,
                          void (*free_data)(void *))
{
    struct waiter *w = waiter_new(req, cb, data, free_data);
    if (redis_conn_call(conn, argc, argv, lens, on_reply, w) != 0) {
        free(w);
        return -1;
    }
    arena_on_free(&req->arena, on_request_freed, w);
    return 0;
}
