/* dburl: masking the password of database URLs (see dburl.h). */
#include "core/dburl.h"

#include <string.h>

bool dburl_unambiguous(const char *url)
{
    const char *rest = url ? strstr(url, "://") : NULL;
    if (!rest) return false;
    rest += 3;
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) return false;
    const char *at = strchr(rest, '@');
    if (!at) return true;
    if (strchr(at + 1, '@')) return false;
    /* libpq reads a user part only when its '@' comes before any '/' */
    return memchr(rest, '/', (size_t)(at - rest)) == NULL;
}

/* The password's span in the user part: [*from, *to). */
static bool password_span(const char *url, const char **from, const char **to)
{
    const char *rest = url ? strstr(url, "://") : NULL;
    if (!rest) return false;
    rest += 3;
    const char *at = strrchr(rest, '@');
    if (!at) return false;
    const char *colon = memchr(rest, ':', (size_t)(at - rest));
    if (!colon) return false;
    *from = colon + 1;
    *to = at;
    return true;
}

bool dburl_raw_password(const char *url, char *out, size_t cap)
{
    const char *from, *to;
    if (!password_span(url, &from, &to) || to == from || (size_t)(to - from) >= cap) return false;
    memcpy(out, from, (size_t)(to - from));
    out[to - from] = '\0';
    return true;
}

/* Appends n bytes of s at out[*o], within cap (one byte kept for the NUL). */
static void put(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
    if (*o + 1 >= cap) return;
    size_t room = cap - 1 - *o;
    if (n > room) n = room;
    memcpy(out + *o, s, n);
    *o += n;
}

static int hex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* When url[i..] starts a parameter of the query whose name, percent-decoded
 * as libpq does, is "password": the length of "name=" as written; else 0. */
static size_t password_param(const char *url, size_t i, const char *query)
{
    if (!query || url + i <= query || (url[i - 1] != '?' && url[i - 1] != '&')) return 0;
    char name[16];
    size_t n = 0, j = i;
    while (url[j] && url[j] != '=' && url[j] != '&') {
        char c = url[j];
        if (c == '%' && hex(url[j + 1]) >= 0 && hex(url[j + 2]) >= 0) {
            c = (char)(hex(url[j + 1]) * 16 + hex(url[j + 2]));
            j += 2;
        }
        if (n + 1 >= sizeof name) return 0;
        name[n++] = c;
        j++;
    }
    name[n] = '\0';
    return url[j] == '=' && strcmp(name, "password") == 0 ? j + 1 - i : 0;
}

char *dburl_masked(const char *url, char *out, size_t cap)
{
    if (!out || !cap) return out;
    size_t o = 0;
    if (!url) url = "";
    const char *from = NULL, *to = NULL;
    password_span(url, &from, &to);
    const char *query = strchr(to ? to : url, '?');
    for (size_t i = 0; url[i];) {
        if (from && to > from && url + i == from) {
            put(out, cap, &o, "***", 3);
            i = (size_t)(to - url);
            continue;
        }
        size_t key = password_param(url, i, query);
        if (key) {
            put(out, cap, &o, url + i, key);
            put(out, cap, &o, "***", 3);
            i += key;
            while (url[i] && url[i] != '&') i++;
            continue;
        }
        put(out, cap, &o, url + i, 1);
        i++;
    }
    out[o] = '\0';
    return out;
}
