/* control: whether one request reads and writes the response cache, from
 * cache.mode and its headers (SPEC section 7). Pure: no I/O.
 *
 *   x-aiproxy-cache: use      read and write (what mode always does)
 *                    skip     neither
 *                    refresh  write, don't read
 *   Cache-Control: no-cache   don't read (a refresh where writing is on);
 *                  no-store   skip (wins over the rest); it only narrows
 *                             what the mode and x-aiproxy-cache allow
 *   x-aiproxy-cache-ttl: N    the entry lives at most N seconds
 *
 * With mode opt_in, a request that says nothing neither reads nor writes.
 * An answer that asked for several random samples (n > 1 without
 * temperature 0) is neither read nor written: each call must differ. */
#ifndef AIPROXY_CACHE_CONTROL_H
#define AIPROXY_CACHE_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

struct cache_decision {
    bool read, write;
    int64_t ttl_ms;
    const char *error; /* a header's value is not understood: answer 400 (param below) */
    const char *error_param;
};

/* Headers are the raw values (NULL when absent). has_temperature and
 * temperature, n: from the request body (cache/key.h). */
void cache_decide(bool mode_always, int64_t cfg_ttl_ms, const char *x_cache,
                  const char *cache_control, const char *x_ttl, int64_t n, bool has_temperature,
                  double temperature, struct cache_decision *out);

#endif
