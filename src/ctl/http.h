/* ctl/http: the JSON calls aiproxyctl's newer commands make to a node, over
 * upstream/probe's blocking HTTP/1.1 client (the one every aiproxyctl
 * command uses): one request, one parsed answer, nothing printed. */
#ifndef AIPROXY_CTL_HTTP_H
#define AIPROXY_CTL_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* The most a node's answer may be (a stats listing is small; this bounds a
 * misbehaving node). */
#define CTL_HTTP_MAX_ANSWER (16 * 1024 * 1024)

/* Sends `method` base_url + `path` (base_url is "http://HOST:PORT", no
 * trailing slash) with `key` as a bearer token (NULL: none) and the JSON
 * text `body` of `len` bytes (NULL: no body), waiting at most timeout_ms.
 * Returns the HTTP status and sets *doc to the parsed answer (caller
 * decrefs; NULL when the answer is not JSON), or returns -1 (*doc NULL)
 * when the node could not be reached, did not answer in time or answered
 * more than CTL_HTTP_MAX_ANSWER bytes. */
int ctl_http_call(const char *base_url, const char *key, const char *method, const char *path,
                  const char *body, size_t len, int timeout_ms, json_t **doc)
    __attribute__((warn_unused_result));

/* The message of an OpenAI-shaped error answer ({"error": {"message"}}),
 * or `dflt`. Borrowed from doc. */
const char *ctl_http_error_message(json_t *doc, const char *dflt);

/* Prints to stderr, in words people can act on, why a call of `path`
 * failed: status -1 (unreachable), 401 (key refused; key_given says whether
 * one was sent), 403, 404 or another status with the node's message. */
void ctl_http_explain(const char *base_url, bool key_given, const char *path, int status,
                      json_t *doc);

#endif
