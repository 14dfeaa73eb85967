#!/usr/bin/env bash
# fuzz.sh [SECONDS]: builds every libFuzzer target in tests/fuzz/ with clang
# (-fsanitize=fuzzer,address,undefined) and runs each for SECONDS (default
# 10) on its seed corpus. `scripts/fuzz.sh 600` is the deeper run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
out=build-fuzz
mkdir -p "$out"
pkgs="yaml-0.1 jansson yajl libevent_core openssl"
# The pure modules: parsers and translators, no sockets.
lib_src="$(ls src/core/*.c src/config/*.c src/routing/*.c) src/http/sse.c src/http/errors.c src/api/scan.c"
status=0
for target in tests/fuzz/fuzz_*.c; do
    name=$(basename "$target" .c)
    # Each target names the sources it needs in a "// fuzz-sources:" line;
    # by default it links the pure modules.
    extra=$(sed -n 's|^// fuzz-sources: ||p' "$target")
    clang -std=c17 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
        $(pkg-config --cflags $pkgs) "$target" $lib_src $extra \
        $(pkg-config --libs $pkgs) -lhttp_parser -lm -pthread -o "$out/$name"
    corpus="tests/fuzz/corpus/${name#fuzz_}"
    mkdir -p "$corpus" "$out/corpus-$name"
    dict=""
    [ -f "tests/fuzz/${name#fuzz_}.dict" ] && dict="-dict=tests/fuzz/${name#fuzz_}.dict"
    if "$out/$name" -max_total_time="$secs" -print_final_stats=1 $dict \
            -artifact_prefix="$out/$name-" "$out/corpus-$name" "$corpus" > "$out/$name.log" 2>&1; then
        echo "ok   $name: $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$name.log" | grep -o '[0-9]*$') executions"
    else
        echo "FAIL $name (see $out/$name.log)"
        tail -30 "$out/$name.log"
        status=1
    fi
done
exit $status
