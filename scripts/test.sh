#!/usr/bin/env bash
# test.sh: the whole suite on a fresh Debian 12 machine: installs what is
# missing, builds plain and ASan+UBSan, checks for banned calls, runs unit
# and integration tests on both, one integration file under valgrind
# memcheck, and runs every fuzz target briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
status=0
scripts/check-style.sh || status=1
scripts/run-tests.sh build || status=1
scripts/run-tests.sh build-asan || status=1
scripts/valgrind.sh build || status=1
scripts/fuzz.sh 10 || status=1
if [ $status = 0 ]; then echo "ALL TESTS PASSED"; else echo "TESTS FAILED"; fi
exit $status
