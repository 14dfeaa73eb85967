/* ctl/http: one JSON call to a node, and the words for its failures. */
#include "ctl/http.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "upstream/probe.h"

int ctl_http_call(const char *base_url, const char *key, const char *method, const char *path,
                  const char *body, size_t len, int timeout_ms, json_t **doc)
{
    *doc = NULL;
    char *url = xasprintf("%s%s", base_url, path);
    char *resp = NULL;
    size_t rlen = 0;
    int status = probe_request(method, url, key, body, len, timeout_ms, CTL_HTTP_MAX_ANSWER, &resp,
                               &rlen);
    free(url);
    if (status < 0) return -1;
    json_error_t err;
    *doc = json_loadb(resp, rlen, 0, &err);
    free(resp);
    return status;
}

const char *ctl_http_error_message(json_t *doc, const char *dflt)
{
    const char *msg = json_string_value(json_object_get(json_object_get(doc, "error"), "message"));
    return msg ? msg : dflt;
}

void ctl_http_explain(const char *base_url, bool key_given, const char *path, int status,
                      json_t *doc)
{
    if (status < 0)
        fprintf(stderr, "aiproxyctl: cannot reach %s (is aiproxyd running there?)\n", base_url);
    else if (status == 401)
        fprintf(stderr, "aiproxyctl: the node refused the API key (HTTP 401)%s; pass --key or "
                        "set AIPROXY_API_KEY\n", key_given ? "" : " (no key was given)");
    else if (status == 403)
        fprintf(stderr, "aiproxyctl: %s needs an admin key (HTTP 403): %s\n", path,
                ctl_http_error_message(doc, "forbidden"));
    else if (status == 404)
        fprintf(stderr, "aiproxyctl: %s: HTTP 404: %s\n", path,
                ctl_http_error_message(doc, "not found"));
    else if (!doc)
        fprintf(stderr, "aiproxyctl: %s answered HTTP %d with a body that is not JSON\n", path,
                status);
    else
        fprintf(stderr, "aiproxyctl: %s: HTTP %d: %s\n", path, status,
                ctl_http_error_message(doc, "request refused"));
}
