/* dburl: database URLs (budget.cost_db: postgres://USER:PASS@HOST:PORT/DB)
 * made fit to print: the password, written in the URL or as a password=
 * parameter, is shown as "***". A URL whose user, password and host could
 * be told apart two ways (more than one '@', or a '/' before the '@') is
 * refused beforehand (dburl_unambiguous), so that what is masked is what
 * libpq reads as the password. Pure functions, no allocation. */
#ifndef AIPROXY_CORE_DBURL_H
#define AIPROXY_CORE_DBURL_H

#include <stdbool.h>
#include <stddef.h>

#define DBURL_AMBIGUOUS_MESSAGE                                                                 \
    "the URL's user, password and host cannot be told apart (an '@' or '/' in the user or "    \
    "password must be percent-encoded as %40 or %2F), or it holds a control character"

/* False when `url` has no "://", holds a control character, more than one
 * '@', or a '/' between "://" and its '@'. */
bool dburl_unambiguous(const char *url);

/* Copies `url` into `out` (cap bytes, always NUL-terminated, cut short when
 * needed) with the password replaced by "***"; returns out. Anything
 * between the first ':' after "://" and the last '@' is taken as the
 * password (masking more, never less, on a strange URL). */
char *dburl_masked(const char *url, char *out, size_t cap);

/* The password as written in the URL's user part (maybe percent-encoded)
 * into `out`; false when there is none (or it does not fit). */
bool dburl_raw_password(const char *url, char *out, size_t cap);

#endif
