/* control: a request's cache reads and writes from mode and headers (see
 * control.h). */
#include "cache/control.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Cache-Control is a comma-separated list of directives (RFC 9111). */
static bool has_directive(const char *cc, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = cc; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *end = p;
        while (*end && *end != ',') end++;
        const char *stop = end;
        while (stop > p && (stop[-1] == ' ' || stop[-1] == '\t')) stop--;
        if ((size_t)(stop - p) == n && strncasecmp(p, name, n) == 0) return true;
        p = end;
    }
    return false;
}

static const char *trimmed(const char *v, char *buf, size_t cap)
{
    while (*v == ' ' || *v == '\t') v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    if (n >= cap) n = cap - 1;
    memcpy(buf, v, n);
    buf[n] = '\0';
    return buf;
}

void cache_decide(bool mode_always, int64_t cfg_ttl_ms, const char *x_cache,
                  const char *cache_control, const char *x_ttl, int64_t n, bool has_temperature,
                  double temperature, struct cache_decision *out)
{
    memset(out, 0, sizeof *out);
    out->ttl_ms = cfg_ttl_ms;
    bool read = mode_always, write = mode_always;
    if (x_cache) {
        char buf[32];
        const char *v = trimmed(x_cache, buf, sizeof buf);
        if (strcasecmp(v, "use") == 0) read = write = true;
        else if (strcasecmp(v, "skip") == 0) read = write = false;
        else if (strcasecmp(v, "refresh") == 0) read = false, write = true;
        else {
            out->error = "The x-aiproxy-cache header must be use, skip or refresh.";
            out->error_param = "x-aiproxy-cache";
            return;
        }
    }
    if (cache_control) {
        /* Cache-Control only narrows what the mode and x-aiproxy-cache
         * allow: with opt_in, a client that sends no-cache by habit (many
         * HTTP tools do) does not fill the cache without asking. */
        if (has_directive(cache_control, "no-store")) read = write = false;
        else if (has_directive(cache_control, "no-cache")) read = false;
    }
    if (x_ttl) {
        char buf[32];
        const char *v = trimmed(x_ttl, buf, sizeof buf);
        char *end = NULL;
        long long s = isdigit((unsigned char)v[0]) ? strtoll(v, &end, 10) : -1;
        if (s <= 0 || !end || *end || s > 365LL * 86400) {
            out->error = "The x-aiproxy-cache-ttl header must be a number of seconds from 1 to "
                         "31536000.";
            out->error_param = "x-aiproxy-cache-ttl";
            return;
        }
        if (s * 1000 < out->ttl_ms) out->ttl_ms = s * 1000;
    }
    if (n > 1 && !(has_temperature && temperature == 0)) read = write = false;
    out->read = read;
    out->write = write;
}
