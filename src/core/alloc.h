/* alloc: allocation wrappers that abort on out-of-memory (STYLE rule 8), so
 * ordinary code never branches on NULL. Untrusted input is bounded by named
 * caps, not by malloc failing. */
#ifndef AIPROXY_CORE_ALLOC_H
#define AIPROXY_CORE_ALLOC_H

#include <stddef.h>

/* Each returns memory the caller owns and frees with free(); never NULL.
 * xstrndup copies at most n bytes and stops at a NUL, as strndup does. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh heap string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
