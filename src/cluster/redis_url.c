/* redis_url: parsing and masking of the shared store's address. */
#include "cluster/redis_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/dburl.h"
#include "core/str.h"

/* A percent-decoded copy of s[0, n), or NULL when an escape is broken or
 * decodes to NUL. */
static char *decode(const char *s, size_t n)
{
    char *out = xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        int a = i + 1 < n ? str_hex_value(s[i + 1]) : -1, b = i + 2 < n ? str_hex_value(s[i + 2]) : -1;
        if (a < 0 || b < 0 || (a == 0 && b == 0)) {
            memset(out, 0, n + 1); /* (maybe half a password) */
            free(out);
            return NULL;
        }
        *o++ = (char)(a * 16 + b);
        i += 2;
    }
    *o = '\0';
    return out;
}

static bool parse_int(const char *s, size_t n, int lo, int hi, int *out)
{
    if (n == 0 || n > 9) return false;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* user[:password]@ at the start of `*p` (before `end`), when there is an '@'. */
static int parse_userinfo(const char **p, const char *end, struct redis_url *u, char *err,
                          size_t errcap)
{
    const char *at = memchr(*p, '@', (size_t)(end - *p));
    if (!at) return 0;
    /* the last '@' ends the user info (a password may hold '@' when escaped only) */
    for (const char *q = at + 1; q < end; q++)
        if (*q == '@') at = q;
    const char *colon = memchr(*p, ':', (size_t)(at - *p));
    const char *user_end = colon ? colon : at;
    if (user_end > *p) {
        u->user = decode(*p, (size_t)(user_end - *p));
        if (!u->user) goto bad;
    }
    if (colon) {
        u->password = decode(colon + 1, (size_t)(at - colon - 1));
        if (!u->password) goto bad;
        if (!*u->password) {
            free(u->password);
            u->password = NULL;
        }
    }
    *p = at + 1;
    return 0;
bad:
    snprintf(err, errcap, "a broken %%-escape in the user or password");
    return -1;
}

int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    const char *p;
    bool unix_sock = false;
    if (strncmp(url, "redis://", 8) == 0) p = url + 8;
    else if (strncmp(url, "rediss://", 9) == 0) {
        p = url + 9;
        out->tls = true;
    } else if (strncmp(url, "unix://", 7) == 0) {
        p = url + 7;
        unix_sock = true;
    } else {
        snprintf(err, errcap, "unsupported scheme (expected redis://, rediss:// or unix://)");
        return -1;
    }
    for (const char *q = p; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f) {
            snprintf(err, errcap, "holds a space or a control character");
            return -1;
        }
    const char *query = strchr(p, '?');
    const char *end = query ? query : p + strlen(p);
    if (parse_userinfo(&p, end, out, err, errcap) != 0) goto fail;
    if (unix_sock) {
        if (*p != '/' || p + 1 >= end) {
            snprintf(err, errcap, "expected unix:///path/to/redis.sock");
            goto fail;
        }
        out->path = xstrndup(p, (size_t)(end - p));
    } else {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *hp_end = slash ? slash : end;
        const char *colon = NULL;
        if (*p == '[') { /* [v6]:port */
            const char *rb = memchr(p, ']', (size_t)(hp_end - p));
            if (!rb) {
                snprintf(err, errcap, "an unclosed [ in the host");
                goto fail;
            }
            out->host = xstrndup(p + 1, (size_t)(rb - p - 1));
            if (rb + 1 < hp_end) {
                if (rb[1] != ':') {
                    snprintf(err, errcap, "expected :port after the host");
                    goto fail;
                }
                colon = rb + 1;
            }
        } else {
            colon = memchr(p, ':', (size_t)(hp_end - p));
            out->host = xstrndup(p, (size_t)((colon ? colon : hp_end) - p));
        }
        if (!*out->host) {
            snprintf(err, errcap, "no host");
            goto fail;
        }
        if (colon && !parse_int(colon + 1, (size_t)(hp_end - colon - 1), 1, 65535, &out->port)) {
            snprintf(err, errcap, "the port is not a number from 1 to 65535");
            goto fail;
        }
        if (slash && slash + 1 < end &&
            !parse_int(slash + 1, (size_t)(end - slash - 1), 0, 100000, &out->db)) {
            snprintf(err, errcap, "the database is not a number");
            goto fail;
        }
    }
    if (query) {
        const char *db = strstr(query, "db=");
        if (db && (db == query + 1 || db[-1] == '&')) {
            size_t n = strcspn(db + 3, "&");
            if (!parse_int(db + 3, n, 0, 100000, &out->db)) {
                snprintf(err, errcap, "db= is not a number");
                goto fail;
            }
        }
    }
    return 0;
fail:
    redis_url_free(out);
    return -1;
}

void redis_url_free(struct redis_url *u)
{
    free(u->host);
    free(u->path);
    free(u->user);
    if (u->password) {
        memset(u->password, 0, strlen(u->password));
        free(u->password);
    }
    memset(u, 0, sizeof *u);
}

char *redis_url_masked(const char *url, char *out, size_t cap)
{
    return dburl_masked(url, out, cap); /* the same user:password@ form */
}
