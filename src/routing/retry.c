/* retry: backoff, Retry-After and the retry/failover/stop decision. */
#include "routing/retry.h"

#include <ctype.h>
#include <string.h>

/* splitmix64: a good 64-bit mix, so nearby seeds give unrelated jitter. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int64_t routing_retry_delay_ms(int retry_index, int64_t base_ms, uint64_t seed)
{
    if (base_ms <= 0) return 0;
    if (retry_index < 0) retry_index = 0;
    int64_t d = base_ms > ROUTING_RETRY_DELAY_CAP_MS ? ROUTING_RETRY_DELAY_CAP_MS : base_ms;
    for (int i = 0; i < retry_index && d < ROUTING_RETRY_DELAY_CAP_MS; i++) d *= 2;
    if (d > ROUTING_RETRY_DELAY_CAP_MS) d = ROUTING_RETRY_DELAY_CAP_MS;
    int64_t half = d / 2;
    uint64_t span = (uint64_t)(d - half) + 1;
    return half + (int64_t)(mix(seed ^ (uint64_t)retry_index) % span);
}

/* ---- HTTP-date ---- */

static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int month_index(const char *p)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (strncmp(p, names + 3 * i, 3) == 0) return i + 1;
    return 0;
}

/* Reads exactly `n` digits (n = 0: one or more, at most 4). */
static bool digits(const char **pp, int n, int *out)
{
    const char *p = *pp;
    int v = 0, k = 0;
    while (isdigit((unsigned char)p[k]) && (n ? k < n : k < 4)) v = v * 10 + (p[k++] - '0');
    if (k == 0 || (n && k != n)) return false;
    *pp = p + k;
    *out = v;
    return true;
}

static bool lit(const char **pp, const char *s)
{
    size_t n = strlen(s);
    if (strncmp(*pp, s, n) != 0) return false;
    *pp += n;
    return true;
}

static bool hms(const char **p, int *h, int *mi, int *s)
{
    return digits(p, 2, h) && lit(p, ":") && digits(p, 2, mi) && lit(p, ":") && digits(p, 2, s) &&
           *h < 24 && *mi < 60 && *s < 61;
}

static bool parse_http_date(const char *p, int64_t *out)
{
    int d, mon, y, h, mi, s;
    const char *comma = strchr(p, ',');
    if (comma && comma - p == 3) { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        p = comma + 1;
        if (!lit(&p, " ") || !digits(&p, 2, &d) || !lit(&p, " ")) return false;
        if (!(mon = month_index(p))) return false;
        p += 3;
        if (!lit(&p, " ") || !digits(&p, 4, &y) || !lit(&p, " ") || !hms(&p, &h, &mi, &s) ||
            !lit(&p, " GMT"))
            return false;
    } else if (comma) { /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        p = comma + 1;
        if (!lit(&p, " ") || !digits(&p, 2, &d) || !lit(&p, "-")) return false;
        if (!(mon = month_index(p))) return false;
        p += 3;
        if (!lit(&p, "-") || !digits(&p, 2, &y) || !lit(&p, " ") || !hms(&p, &h, &mi, &s) ||
            !lit(&p, " GMT"))
            return false;
        y += y < 70 ? 2000 : 1900;
    } else { /* asctime: Sun Nov  6 08:49:37 1994 */
        if (strlen(p) < 4 || p[3] != ' ') return false;
        p += 4;
        if (!(mon = month_index(p))) return false;
        p += 3;
        if (!lit(&p, " ")) return false;
        if (*p == ' ') p++;
        if (!digits(&p, 0, &d) || d > 31 || !lit(&p, " ") || !hms(&p, &h, &mi, &s) ||
            !lit(&p, " ") || !digits(&p, 4, &y))
            return false;
    }
    while (*p == ' ' || *p == '\t') p++;
    if (*p || d < 1 || d > 31) return false;
    *out = days_from_civil(y, mon, d) * 86400 + h * 3600 + mi * 60 + s;
    return true;
}

int64_t routing_retry_after_ms(const char *v, int64_t now_unix_s)
{
    if (!v) return -1;
    while (*v == ' ' || *v == '\t') v++;
    if (!*v) return -1;
    if (isdigit((unsigned char)*v)) {
        int64_t secs = 0;
        const char *p = v;
        for (; isdigit((unsigned char)*p); p++)
            if (secs <= ROUTING_RETRY_AFTER_CAP_S) secs = secs * 10 + (*p - '0');
        while (*p == ' ' || *p == '\t') p++;
        if (*p) return -1;
        if (secs > ROUTING_RETRY_AFTER_CAP_S) secs = ROUTING_RETRY_AFTER_CAP_S;
        return secs * 1000;
    }
    int64_t when;
    if (!parse_http_date(v, &when)) return -1;
    int64_t d = when - now_unix_s;
    if (d < 0) d = 0;
    if (d > ROUTING_RETRY_AFTER_CAP_S) d = ROUTING_RETRY_AFTER_CAP_S;
    return d * 1000;
}

/* ---- the decision ---- */

const char *routing_retry_action_name(enum retry_action a)
{
    switch (a) {
    case RETRY_STOP: return "stop";
    case RETRY_SAME: return "retry_same";
    case RETRY_NEXT: return "next";
    }
    return "unknown";
}

static void stop(struct retry_decision *out, const char *why)
{
    out->action = RETRY_STOP;
    out->wait_ms = 0;
    out->attempt_timeout_ms = 0;
    out->why = why;
}

void routing_retry_decide(const struct retry_input *in, struct retry_decision *out)
{
    if (in->failure == AF_MID_STREAM) return stop(out, "the stream broke after bytes reached the client");
    if (in->failure == AF_CLIENT_ERROR) return stop(out, "the provider refused the request itself");
    if (!in->failover_enabled) return stop(out, "failover is disabled");
    if (in->attempts >= 1 + (in->max_retries > 0 ? in->max_retries : 0))
        return stop(out, "max_retries reached");

    int64_t wait = routing_retry_delay_ms(in->attempts - 1, in->base_delay_ms, in->seed);
    int64_t must_wait = 0; /* a Retry-After honoured on the same provider */
    bool same;
    out->why = NULL;
    if (in->failure == AF_RATE_LIMITED && in->retry_after_ms >= 0) {
        bool fits = in->retry_after_ms + ROUTING_MIN_ATTEMPT_MS <= in->remaining_ms;
        if (!in->has_next) {
            if (!fits) return stop(out, "Retry-After is beyond the deadline");
            same = true;
            must_wait = in->retry_after_ms;
            if (must_wait > wait) wait = must_wait;
            out->why = "rate limited: retrying the same provider after its Retry-After";
        } else {
            same = false;
            out->why = "rate limited: trying the next candidate";
        }
    } else {
        same = !in->has_next;
        /* A provider that hung once costs one per-try timeout, not several. */
        if (same && in->failure == AF_TIMEOUT) return stop(out, "the only provider timed out");
        out->why = same ? "no other candidate: retrying the same provider"
                        : "trying the next candidate";
    }
    /* Another provider is tried at once: the backoff spaces out retries of
     * the same one. */
    if (!same) wait = must_wait;
    if (wait + ROUTING_MIN_ATTEMPT_MS > in->remaining_ms) {
        /* The backoff would eat the deadline: try at once if that leaves a
         * useful attempt, else give up. */
        wait = must_wait;
        if (wait + ROUTING_MIN_ATTEMPT_MS > in->remaining_ms) return stop(out, "the request's deadline is reached");
    }
    out->action = same ? RETRY_SAME : RETRY_NEXT;
    out->wait_ms = wait;
    int64_t left = in->remaining_ms - wait;
    out->attempt_timeout_ms =
        in->next_timeout_ms > 0 && in->next_timeout_ms < left ? in->next_timeout_ms : left;
}
