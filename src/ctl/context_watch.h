/* ctl/context_watch: `aiproxyctl context watch DIR` (SPEC section 8), the
 * client side of the context delta buffer. Sends a snapshot of DIR's text
 * files (POST /v1/context/delta with reset: true, in bodies under
 * CONTEXT_WATCH_BATCH_BYTES), then watches DIR with inotify and sends each
 * settled change (no event for the debounce time) as one delta. Leaves out
 * .git, what .gitignore files ignore (ctl/ignore.h), binary files, files
 * over the size cap, symlinks and non-regular files. Keeps its changes
 * through a gateway outage (retrying 200 ms doubling to 5 s) and sends a
 * new snapshot when the gateway turns out to have lost the project. */
#ifndef AIPROXY_CTL_CONTEXT_WATCH_H
#define AIPROXY_CTL_CONTEXT_WATCH_H

#include <stdbool.h>
#include <stdint.h>

/* A body of a delta stays under this (a single file larger than it is sent
 * alone); the gateway's default server.max_request_size is 10 MB. */
#define CONTEXT_WATCH_BATCH_BYTES (4 * 1024 * 1024)

struct context_watch_opts {
    const char *url;     /* http://HOST:PORT, no trailing slash */
    const char *key;     /* bearer key, NULL for none */
    const char *dir;     /* the directory to watch */
    const char *project; /* a valid project name (1..128 of [A-Za-z0-9._-]) */
    int debounce_ms;     /* quiet time before a change is sent */
    int64_t max_file_size;
    int check_interval_ms; /* how often an idle watcher asks GET /v1/context/stats
                              whether the gateway still holds the project; 0: never */
    bool json;             /* print each delta's answer as one JSON line */
};

/* Runs the watcher until SIGINT or SIGTERM (returns 0), or until it cannot
 * go on (returns 1: DIR is not a readable directory or vanished, inotify is
 * unavailable, the gateway refused the key). Prints one line per delta to
 * stdout and errors to stderr. Blocking; installs its own SIGINT, SIGTERM
 * and SIGPIPE handling for the rest of the process. */
int context_watch_run(const struct context_watch_opts *o);

#endif
