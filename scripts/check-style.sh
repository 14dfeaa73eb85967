#!/usr/bin/env bash
# check-style.sh: the banned-call check of STYLE.md rule 14. Fails when src/
# calls an unbounded string function (strcpy, strcat, sprintf, vsprintf,
# gets), an unchecked number parser (atoi, atol, atoll), or allocates
# outside core/alloc.c (the xmalloc wrappers abort on out-of-memory).
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
banned=$(grep -rnE '\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|atoll)\s*\(' src \
         | grep -vE '\b(snprintf|vsnprintf)\s*\(' || true)
if [ -n "$banned" ]; then
    echo "check-style: banned calls (use snprintf, strtol with checks):"
    echo "$banned"
    status=1
fi
raw=$(grep -rnE '(^|[^A-Za-z0-9_])(malloc|calloc|realloc|strdup|strndup)\s*\(' src \
      | grep -v '^src/core/alloc\.c:' || true)
if [ -n "$raw" ]; then
    echo "check-style: raw allocation outside core/alloc.c (use xmalloc and friends):"
    echo "$raw"
    status=1
fi
[ $status = 0 ] && echo "check-style: ok"
exit $status
