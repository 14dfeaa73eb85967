/* retry: the failover decisions as pure functions (routing.failover): the
 * backoff delay with jitter, the provider's Retry-After, and, after a failed
 * attempt, whether to retry the same provider, move to the next candidate or
 * stop. The proxy owns the timers and sockets; it asks these. */
#ifndef AIPROXY_ROUTING_RETRY_H
#define AIPROXY_ROUTING_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#define ROUTING_RETRY_DELAY_CAP_MS 10000 /* no backoff step waits longer */
#define ROUTING_RETRY_AFTER_CAP_S 86400  /* a larger Retry-After is clamped */

/* The wait before retry number `retry_index` (0 for the first retry):
 * base_ms * 2^retry_index, capped at ROUTING_RETRY_DELAY_CAP_MS, then
 * "equal jitter": half of it fixed, the other half drawn from `seed`. Same
 * inputs, same answer. 0 when base_ms <= 0. */
int64_t routing_retry_delay_ms(int retry_index, int64_t base_ms, uint64_t seed);

/* Parses a Retry-After header value: delay-seconds ("120") or an HTTP-date
 * (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 or asctime form),
 * relative to `now_unix_s`. Returns milliseconds (0 for a date in the past,
 * clamped to ROUTING_RETRY_AFTER_CAP_S), or -1 when absent or malformed. */
int64_t routing_retry_after_ms(const char *header_value, int64_t now_unix_s);

/* How an attempt failed, as the proxy saw it. */
enum attempt_failure {
    AF_CONNECT,      /* no connection, DNS, TLS, reset before an answer */
    AF_TIMEOUT,      /* the per-try timeout fired before an answer */
    AF_RETRYABLE,    /* 5xx, 401/403 (our credentials), a 200 with an error body,
                      * a stream whose first event is an error, an unreadable answer */
    AF_RATE_LIMITED, /* 429 (Retry-After may say when) */
    AF_CLIENT_ERROR, /* another 4xx: the request itself is at fault; passed through */
    AF_MID_STREAM,   /* broke after bytes reached the client */
};

struct retry_input {
    enum attempt_failure failure;
    int attempts;             /* attempts made so far, the failed one included (>= 1) */
    int max_retries;          /* routing.failover.max_retries */
    bool failover_enabled;    /* routing.failover.enabled */
    int64_t base_delay_ms;    /* routing.failover.retry_delay */
    int64_t retry_after_ms;   /* from routing_retry_after_ms; -1 none */
    int64_t remaining_ms;     /* until the request's overall deadline */
    bool has_next;            /* the plan has another candidate left */
    int64_t next_timeout_ms;  /* the per-try timeout of whichever provider goes next */
    uint64_t seed;            /* per-request randomness for the jitter */
};

enum retry_action { RETRY_STOP, RETRY_SAME, RETRY_NEXT };

struct retry_decision {
    enum retry_action action;
    int64_t wait_ms;            /* wait this long before the next attempt */
    int64_t attempt_timeout_ms; /* the next attempt's timeout: never past the deadline */
    const char *why;            /* static text for providers_tried / logs */
};

/* The decision after a failed attempt. Rules, in order:
 *  - a failure after bytes reached the client, or a client error, stops;
 *  - failover disabled, or 1 + max_retries attempts made, stops;
 *  - 429 with a Retry-After: the same provider after that wait when no
 *    other candidate is left and the wait fits the deadline; otherwise the
 *    next candidate (a Retry-After beyond the deadline is not waited for);
 *  - otherwise the next candidate when there is one, else the same provider
 *    (connect errors and retryable statuses are transient) -- except after a
 *    timeout: a hanging provider costs one per-try timeout, not several;
 *  - the next candidate is tried at once; a retry of the same provider
 *    waits the backoff delay (routing_retry_delay_ms with retry_index =
 *    attempts - 1), or the Retry-After when that is longer;
 *  - when the wait leaves less than ROUTING_MIN_ATTEMPT_MS before the
 *    deadline, stop: a try that cannot finish is not worth starting. */
#define ROUTING_MIN_ATTEMPT_MS 50
void routing_retry_decide(const struct retry_input *in, struct retry_decision *out);

const char *routing_retry_action_name(enum retry_action a);

#endif
