/* str: see str.h. */
#include "core/str.h"

#include <string.h>

size_t str_copy(char *dst, size_t cap, const char *src)
{
    if (cap == 0) return 0;
    size_t n = src ? strnlen(src, cap - 1) : 0;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

char *str_i64(int64_t v, char buf[STR_I64_LEN])
{
    char *p = buf + STR_I64_LEN - 1;
    *p = '\0';
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--p = '-';
    return p;
}

bool str_append(char *dst, size_t cap, size_t *len, const char *src)
{
    if (cap == 0) return false;
    size_t room = cap - 1 - *len, n = strlen(src);
    bool fits = n <= room;
    if (!fits) n = room;
    memcpy(dst + *len, src, n);
    *len += n;
    dst[*len] = '\0';
    return fits;
}
