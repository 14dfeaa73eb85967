/* ratelimit: GCRA arithmetic in integer microseconds and a mutex-guarded
 * table of per-caller states. */
#include "security/ratelimit.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/str.h"

/* ---- pure ---- */

/* a * b / c for non-negative operands, in 64 bits when the product fits
 * (always, for the windows and limits in use: 128-bit division costs about
 * three times as much and runs several times per request). */
static int64_t mul_div(int64_t a, int64_t b, int64_t c)
{
    if (b == 0 || a <= INT64_MAX / b) return a * b / c;
    __int128 q = (__int128)a * b / c;
    return q > INT64_MAX ? INT64_MAX : (int64_t)q;
}

/* Time `cost` units occupy: floor(window * cost / limit). Rounding down
 * keeps a burst of exactly `limit` inside one window (rounding up would
 * refuse the last unit); the drift is under a microsecond per unit. */
static int64_t increment(int64_t limit, int64_t window_us, int64_t cost)
{
    int64_t inc = mul_div(window_us, cost, limit);
    if (inc == 0 && cost > 0) inc = 1;
    return inc > INT64_MAX / 4 ? INT64_MAX / 4 : inc;
}

void rl_gcra(int64_t *tat_us, int64_t limit, int64_t window_us, int64_t now_us, int64_t cost,
             struct rl_decision *out)
{
    memset(out, 0, sizeof *out);
    out->limit = limit;
    if (limit <= 0) {
        out->allowed = true;
        return;
    }
    if (cost < 0) cost = 0;
    int64_t tat = *tat_us > now_us ? *tat_us : now_us;
    int64_t inc = increment(limit, window_us, cost);
    int64_t new_tat = tat + inc;
    bool full = tat == now_us;
    if (new_tat - now_us <= window_us || (full && cost > limit)) {
        *tat_us = new_tat;
        out->allowed = true;
        int64_t used = new_tat - now_us;
        int64_t left = window_us - used;
        out->remaining = left > 0 ? mul_div(left, limit, window_us) : 0;
        out->reset_us = used;
    } else {
        out->allowed = false;
        int64_t used = tat - now_us;
        int64_t left = window_us - used;
        out->remaining = left > 0 ? mul_div(left, limit, window_us) : 0;
        out->reset_us = used;
        out->retry_after_us = new_tat - window_us - now_us;
    }
}

/* Appends `s` at `*p`, keeping one byte of `end` for the NUL. */
static void put(char **p, char *end, const char *s)
{
    while (*s && *p < end - 1) *(*p)++ = *s++;
}

char *rl_format_duration(int64_t us, char *buf, size_t cap)
{
    if (cap == 0) return buf;
    if (us < 0) us = 0;
    int64_t ms = (us + 999) / 1000; /* round up: never tell a client to come back too early */
    char *p = buf, *end = buf + cap, n[STR_I64_LEN];
    if (ms == 0) {
        put(&p, end, "0s");
    } else if (ms < 1000) {
        put(&p, end, str_i64(ms, n));
        put(&p, end, "ms");
    } else {
        int64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, frac = ms % 1000;
        if (h) {
            put(&p, end, str_i64(h, n));
            put(&p, end, "h");
        }
        if (h || m) {
            put(&p, end, str_i64(m, n));
            put(&p, end, "m");
        }
        put(&p, end, str_i64(s, n));
        if (frac) {
            char f[5] = {'.', (char)('0' + frac / 100), (char)('0' + frac / 10 % 10),
                         (char)('0' + frac % 10), '\0'};
            for (int i = 3; f[i] == '0'; i--) f[i] = '\0';
            put(&p, end, f);
        }
        put(&p, end, "s");
    }
    *p = '\0';
    return buf;
}

bool rl_ip_matches(const char *ip, const char *rule)
{
    char addr[64];
    const char *slash = strchr(rule, '/');
    size_t alen = slash ? (size_t)(slash - rule) : strlen(rule);
    if (alen >= sizeof addr) return false;
    memcpy(addr, rule, alen);
    addr[alen] = '\0';
    unsigned char a[16], b[16];
    int family = strchr(addr, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(family, addr, a) != 1) return false;
    /* An IPv4 peer may be written as ::ffff:a.b.c.d. */
    const char *test = ip;
    if (family == AF_INET && strncmp(ip, "::ffff:", 7) == 0) test = ip + 7;
    if (inet_pton(family, test, b) != 1) return false;
    int bits = family == AF_INET ? 32 : 128;
    int prefix = bits;
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (*end || p < 0 || p > bits) return false;
        prefix = (int)p;
    }
    for (int i = 0; i < prefix; i++) {
        int byte = i / 8, bit = 7 - i % 8;
        if (((a[byte] >> bit) & 1) != ((b[byte] >> bit) & 1)) return false;
    }
    return true;
}

static bool trusted_ip(const char *ip, char *const *trusted, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rl_ip_matches(ip, trusted[i])) return true;
    return false;
}

void rl_client_ip(const char *peer, const char *xff, char *const *trusted, size_t n_trusted,
                  char *out, size_t cap)
{
    str_copy(out, cap, peer);
    if (!xff || !trusted_ip(peer, trusted, n_trusted)) return;
    /* Walk from the right: the nearest hop not ours is the client. */
    const char *end = xff + strlen(xff);
    while (end > xff) {
        const char *start = end;
        while (start > xff && start[-1] != ',') start--;
        const char *s = start, *e = end;
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        char hop[64];
        size_t n = (size_t)(e - s);
        if (n > 0 && n < sizeof hop) {
            memcpy(hop, s, n);
            hop[n] = '\0';
            unsigned char tmp[16];
            bool valid = inet_pton(strchr(hop, ':') ? AF_INET6 : AF_INET, hop, tmp) == 1;
            if (!valid) return; /* garbage: keep what we know */
            str_copy(out, cap, hop);
            if (!trusted_ip(hop, trusted, n_trusted)) return;
        }
        end = start > xff ? start - 1 : xff;
    }
}

/* ---- the table ---- */

#define RL_BUCKETS 1024

struct rl_entry {
    struct rl_entry *next;
    int64_t tat_hour, tat_minute, tat_tokens;
    char who[];
};

struct rl_table {
    pthread_mutex_t lock;
    struct rl_entry *buckets[RL_BUCKETS];
    size_t n;
};

struct rl_table *rl_table_new(void)
{
    struct rl_table *t = xcalloc(1, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void rl_table_free(struct rl_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < RL_BUCKETS; i++) {
        struct rl_entry *e = t->buckets[i];
        while (e) {
            struct rl_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* Drops entries whose buckets are all full again: they hold no state. */
static void sweep(struct rl_table *t, int64_t now_us)
{
    for (size_t i = 0; i < RL_BUCKETS; i++) {
        struct rl_entry **pp = &t->buckets[i];
        while (*pp) {
            struct rl_entry *e = *pp;
            if (e->tat_hour <= now_us && e->tat_minute <= now_us && e->tat_tokens <= now_us) {
                *pp = e->next;
                free(e);
                t->n--;
            } else {
                pp = &e->next;
            }
        }
    }
}

static struct rl_entry *entry(struct rl_table *t, const char *who, int64_t now_us)
{
    size_t h = 5381;
    for (const char *s = who; *s; s++) h = h * 33 + (unsigned char)*s;
    h %= RL_BUCKETS;
    for (struct rl_entry *e = t->buckets[h]; e; e = e->next)
        if (strcmp(e->who, who) == 0) return e;
    if (t->n >= RL_TABLE_MAX) sweep(t, now_us);
    size_t len = strlen(who);
    struct rl_entry *e = xcalloc(1, sizeof *e + len + 1);
    memcpy(e->who, who, len + 1);
    e->next = t->buckets[h];
    t->buckets[h] = e;
    t->n++;
    return e;
}

/* rl_take_request with the table locked. */
static bool take_locked(struct rl_table *t, const char *who, int64_t per_hour, int64_t per_minute,
                        int64_t now_us, struct rl_decision *out)
{
    memset(out, 0, sizeof *out);
    if (per_hour <= 0 && per_minute <= 0) {
        out->allowed = true;
        return true;
    }
    struct rl_entry *e = entry(t, who, now_us);
    int64_t th = e->tat_hour, tm = e->tat_minute;
    struct rl_decision dh, dm;
    rl_gcra(&th, per_hour, RL_HOUR_US, now_us, 1, &dh);
    rl_gcra(&tm, per_minute, RL_MINUTE_US, now_us, 1, &dm);
    bool ok = dh.allowed && dm.allowed;
    if (ok) {
        e->tat_hour = th;
        e->tat_minute = tm;
    }
    /* Report the limit that refuses (the hour's first: its wait is the one
     * that lets the request through), else the one with less left. */
    if (per_hour <= 0) *out = dm;
    else if (per_minute <= 0) *out = dh;
    else if (!dh.allowed) *out = dh;
    else if (!dm.allowed) *out = dm;
    else *out = dm.remaining < dh.remaining ? dm : dh;
    if (!ok) out->allowed = false;
    if (!ok && out->retry_after_us <= 0) {
        /* The other limit would have allowed it: refused by the first. */
        out->retry_after_us = dh.allowed ? dm.retry_after_us : dh.retry_after_us;
    }
    return ok;
}

bool rl_take_request(struct rl_table *t, const char *who, int64_t per_hour, int64_t per_minute,
                     int64_t now_us, struct rl_decision *out)
{
    struct rl_ask ask = {who, per_hour, per_minute};
    return rl_take_requests(t, &ask, 1, now_us, out) < 0;
}

int rl_take_requests(struct rl_table *t, const struct rl_ask *asks, int n, int64_t now_us,
                     struct rl_decision *out)
{
    int refused = -1;
    bool locked = false;
    for (int i = 0; i < n && refused < 0; i++) {
        bool limited = asks[i].per_hour > 0 || asks[i].per_minute > 0;
        if (limited && !locked) {
            pthread_mutex_lock(&t->lock);
            locked = true;
        }
        if (!take_locked(t, asks[i].who, asks[i].per_hour, asks[i].per_minute, now_us, &out[i]))
            refused = i;
    }
    if (locked) pthread_mutex_unlock(&t->lock);
    return refused;
}

bool rl_take_tokens(struct rl_table *t, const char *who, int64_t per_minute, int64_t tokens,
                    int64_t now_us, struct rl_decision *out)
{
    memset(out, 0, sizeof *out);
    if (per_minute <= 0) {
        out->allowed = true;
        return true;
    }
    pthread_mutex_lock(&t->lock);
    struct rl_entry *e = entry(t, who, now_us);
    rl_gcra(&e->tat_tokens, per_minute, RL_MINUTE_US, now_us, tokens, out);
    pthread_mutex_unlock(&t->lock);
    return out->allowed;
}

void rl_adjust_tokens(struct rl_table *t, const char *who, int64_t per_minute, int64_t delta,
                      int64_t now_us)
{
    if (per_minute <= 0 || delta == 0) return;
    pthread_mutex_lock(&t->lock);
    struct rl_entry *e = entry(t, who, now_us);
    int64_t inc = increment(per_minute, RL_MINUTE_US, delta < 0 ? -delta : delta);
    int64_t base = e->tat_tokens > now_us ? e->tat_tokens : now_us;
    if (delta > 0) e->tat_tokens = base + inc;
    else e->tat_tokens = e->tat_tokens - inc < now_us ? now_us : e->tat_tokens - inc;
    pthread_mutex_unlock(&t->lock);
}
