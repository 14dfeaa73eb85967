#!/usr/bin/env bash
# The semantic index's search time, memory and recall (bench/semantic_bench.c
# says what it measures): builds build/semantic_bench with cc -O2 (no make,
# nothing else is rebuilt) and runs it. About a minute with the defaults
# (10,000 and 100,000 entries of 1,536 dimensions; most of it is the
# brute-force search the recall is checked against).
#   bench/semantic.sh                       # the defaults
#   bench/semantic.sh --clustered=0.97 100000
# Env: BUILD (output directory, default build), CC (default cc).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
out="${BUILD:-$root/build}"
mkdir -p "$out"
cd "$root"
"${CC:-cc}" -O2 -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
  -Isrc bench/semantic_bench.c src/cache/semantic.c src/core/alloc.c -lm -pthread \
  -o "$out/semantic_bench"
echo "# $(date -u +%Y-%m-%dT%H:%MZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')," \
  "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$out/semantic_bench" "$@"
