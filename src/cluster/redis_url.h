/* redis_url: the cluster.redis.url forms (SPEC section 6), parsed without
 * I/O: redis://[user[:password]@]host[:port][/db], rediss://... (TLS) and
 * unix://[user[:password]@]/path/to.sock[?db=N]. A password alone
 * ("redis://:pw@host") is Redis's legacy AUTH; user and password are an ACL
 * user. Percent-escapes in user and password are decoded. */
#ifndef AIPROXY_CLUSTER_REDIS_URL_H
#define AIPROXY_CLUSTER_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

struct redis_url {
    bool tls;
    char *host;     /* NULL for unix */
    int port;       /* default 6379 */
    char *path;     /* unix socket path, NULL for TCP */
    int db;         /* SELECT, default 0 */
    char *user;     /* NULL: none (default user) */
    char *password; /* NULL: no AUTH */
};

/* Parses `url` into `out` (heap strings). Returns 0, or -1 with a reason
 * in `err` that never repeats the password. */
int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errcap);
void redis_url_free(struct redis_url *u);

/* Writes `url` with its password replaced by "***" (for logs, status and
 * /v1/endpoints). Returns out. */
char *redis_url_masked(const char *url, char *out, size_t cap);

#endif
