#!/usr/bin/env bash
# setup.sh: installs what a fresh Debian 12 machine is missing to build and
# test aiproxy (Debian packages, then the npm test clients from the lock
# file), then builds. Safe to run again: it installs only what is missing.
#   scripts/setup.sh          build deps + plain build
#   scripts/setup.sh --test   also test deps (nginx, wrk, node, clang...) and the ASan build
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

build_pkgs=(build-essential pkg-config libevent-dev libssl-dev libhttp-parser-dev libyajl-dev
            libjansson-dev libyaml-dev libsqlite3-dev libhiredis-dev libpq-dev libgit2-dev
            libnghttp2-dev protobuf-c-compiler libprotobuf-c-dev ca-certificates)
test_pkgs=(libcmocka-dev nginx wrk redis-server postgresql clang libclang-rt-14-dev nodejs npm
           openssl curl procps strace python3 valgrind chromium sqlite3 nghttp2-client)

missing=()
check() { for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p"); done; }
check "${build_pkgs[@]}"
[ $want_test = 1 ] && check "${test_pkgs[@]}"
# An nginx of any flavour is enough.
if [ $want_test = 1 ] && { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }; then
    missing=("${missing[@]/nginx}")
fi
# A node already on the machine (any >= 18) is enough.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
pkgs=()
for p in "${missing[@]}"; do [ -n "$p" ] && pkgs+=("$p"); done
if ((${#pkgs[@]})); then
    echo "setup: installing ${pkgs[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

jobs=$(nproc 2>/dev/null || echo 2)
make -s -j"$jobs" BUILD=build

if [ $want_test = 1 ]; then
    make -s -j"$jobs" BUILD=build-asan SAN=1 all unit
    make -s -j"$jobs" BUILD=build unit
    (cd tests && npm ci --no-audit --no-fund --loglevel=error)
fi
