/* str: small string helpers for hot paths, where printf's format parsing
 * costs more than the work: a bounded copy and integer formatting. */
#ifndef AIPROXY_CORE_STR_H
#define AIPROXY_CORE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STR_I64_LEN 21 /* "-9223372036854775808" and its NUL */

/* Copies `src` (NULL is taken as "") into `dst` of `cap` bytes, cutting it
 * short when needed; always NUL-terminates when cap > 0. Returns the
 * length written. */
size_t str_copy(char *dst, size_t cap, const char *src);

/* Appends `src` to the string of length *len in dst[cap], cutting it short
 * when needed (always NUL-terminated). Returns false when it was cut. */
bool str_append(char *dst, size_t cap, size_t *len, const char *src);

/* Writes the n bytes of `b` as 2n lowercase hex digits and a NUL into out. */
void str_hex(const unsigned char *b, size_t n, char *out);

/* Reads exactly 2n hex digits (either case) into b. Returns 0, or -1. */
int str_unhex(const char *hex, size_t len, unsigned char *b, size_t n);

/* A hex digit's value, or -1. */
int str_hex_value(char c);

/* Writes `v` in decimal into `buf` and returns where the digits start
 * (somewhere inside buf); NUL-terminated. */
char *str_i64(int64_t v, char buf[STR_I64_LEN]);

#endif
