/* ctl/context_cmd: `aiproxyctl context watch|stats|clear` (SPEC section 8):
 * the arguments of each, the two one-shot calls (GET /v1/context/stats,
 * DELETE /v1/context/{project}), and the watcher's start
 * (ctl/context_watch.h). */
#ifndef AIPROXY_CTL_CONTEXT_CMD_H
#define AIPROXY_CTL_CONTEXT_CMD_H

#include <stdbool.h>

/* `aiproxyctl context --help`. */
extern const char ctl_context_help[];

/* Runs `context ARGS...` (argv[0] is the subcommand) against the node at
 * `url` (http://HOST:PORT, no trailing slash) with `key` (NULL: none);
 * `json` is aiproxyctl's --json. Returns the exit code: 0, 1 (runtime
 * failure), 2 (bad usage, with the help on stderr). */
int ctl_context_command(const char *url, const char *key, bool json, int argc, char **argv);

#endif
