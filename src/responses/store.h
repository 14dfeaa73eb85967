/* store: stored responses of the Responses API (SPEC section 9), for
 * GET/DELETE /v1/responses/{id} and previous_response_id. One row per
 * response: its scope (the caller's tenant or key: a response is never
 * read through another scope), the response it continued, the Response
 * object as sent, and its turn (this request's input items and the
 * answer's output items, a JSON array). A conversation is the turns along
 * the chain of previous ids, oldest first, read in one recursive query.
 * Rows expire after `responses.retention`.
 *
 * Backends: the ledger's local SQLite file (its own connection, WAL), or
 * the ledger's PostgreSQL database, so that every node of a cluster finds
 * every node's responses. Calls are synchronous and thread-safe (one
 * connection behind a mutex); they run on the worker, each one statement. */
#ifndef AIPROXY_RESPONSES_STORE_H
#define AIPROXY_RESPONSES_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

struct resp_store;

/* Limits of a conversation read for previous_response_id. */
#define RESP_MAX_CHAIN 1000

/* Opens the store in the SQLite file `sqlite_path`, or, when `pg_url` is
 * set, in that PostgreSQL database (the table is created when missing).
 * NULL with `err` on failure. */
struct resp_store *resp_store_open(const char *sqlite_path, const char *pg_url,
                                   int64_t retention_s, char *err, size_t errcap);
void resp_store_close(struct resp_store *s);

struct resp_record {
    const char *id;
    const char *scope;
    const char *previous_id; /* NULL when none */
    const char *model;
    int64_t created_at; /* unix seconds */
    const char *response;
    size_t response_len;
    const char *turn; /* JSON array text */
    size_t turn_len;
};

enum resp_result { RESP_OK, RESP_NOT_FOUND, RESP_FAILED };

/* Stores (or replaces) a response. */
enum resp_result resp_store_put(struct resp_store *s, const struct resp_record *r);

/* The Response object stored under `id` in `scope` (arena, NUL-terminated). */
enum resp_result resp_store_get(struct resp_store *s, const char *id, const char *scope,
                                struct arena *a, char **response, size_t *len);

/* The response's own turn (arena). */
enum resp_result resp_store_turn(struct resp_store *s, const char *id, const char *scope,
                                 struct arena *a, char **turn, size_t *len);

/* The conversation ending with `id` (its turn included): one JSON array of
 * every turn's items, oldest first (arena). */
enum resp_result resp_store_history(struct resp_store *s, const char *id, const char *scope,
                                    struct arena *a, char **items, size_t *len);

enum resp_result resp_store_delete(struct resp_store *s, const char *id, const char *scope);

/* Deletes expired rows; returns how many (or -1). Called now and then. */
int64_t resp_store_expire(struct resp_store *s);

#endif
