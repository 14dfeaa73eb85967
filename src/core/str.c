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

void str_hex(const unsigned char *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

int str_hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int str_unhex(const char *hex, size_t len, unsigned char *b, size_t n)
{
    if (len != 2 * n) return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = str_hex_value(hex[2 * i]), lo = str_hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        b[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}
