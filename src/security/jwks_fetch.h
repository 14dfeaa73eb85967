/* jwks_fetch: a JWKS kept fresh from security.auth.jwt.jwks_url. A
 * background thread GETs the URL (https, or http to a loopback address)
 * every `refresh` interval, and sooner when a token names a key id the set
 * lacks (at most once per JWKS_KICK_MIN_MS); a failed fetch keeps the last
 * good set and logs a warning. Workers read the current set through a
 * reference-counted holder (security/jwks.h), never waiting on a fetch. */
#ifndef AIPROXY_SECURITY_JWKS_FETCH_H
#define AIPROXY_SECURITY_JWKS_FETCH_H

#include <stddef.h>
#include <stdint.h>

#define JWKS_FETCH_TIMEOUT_MS 5000
#define JWKS_KICK_MIN_MS 30000  /* unknown-kid refreshes, at most one per this */
#define JWKS_RETRY_MS 10000     /* after a failed fetch, retry this soon (or at refresh if sooner) */

struct jwks;
struct jwks_fetcher;

/* Fetches `url` once (blocking, up to JWKS_FETCH_TIMEOUT_MS; a failure is
 * logged and retried in the background) and starts the refresh thread.
 * Never NULL. */
struct jwks_fetcher *jwks_fetcher_start(const char *url, int64_t refresh_ms);
/* Stops the thread (waits for a fetch in progress to end) and frees. */
void jwks_fetcher_stop(struct jwks_fetcher *f);

const char *jwks_fetcher_url(const struct jwks_fetcher *f);
int64_t jwks_fetcher_refresh_ms(const struct jwks_fetcher *f);
/* The current set with a reference (jwks_unref), or NULL before the first
 * successful fetch. Thread-safe, never blocks on the network. */
struct jwks *jwks_fetcher_get(struct jwks_fetcher *f);
/* Asks for a refresh now (a token named an unknown key id); ignored when
 * the last such request was less than JWKS_KICK_MIN_MS ago. Thread-safe. */
void jwks_fetcher_kick(struct jwks_fetcher *f);

/* One blocking GET of `url` (http:// or https://, the system CA store and
 * host name check for https). On 200 returns 0 with the body in *body
 * (heap, caller frees) and *len; else -1 with why in `err`. Bodies over
 * `max_body` are refused. */
int jwks_http_get(const char *url, int timeout_ms, size_t max_body, char **body, size_t *len,
                  char *err, size_t errcap);

#endif
