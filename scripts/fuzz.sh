#!/usr/bin/env bash
# fuzz.sh [SECONDS] [TARGET...]: builds every libFuzzer target in tests/fuzz/
# (or only the named ones, e.g. `fuzz_headers`) with clang
# (-fsanitize=fuzzer,address,undefined) and runs each for SECONDS (default
# 10) on its seed corpus. `scripts/fuzz.sh 600` is the deeper run.
# A target names extra sources in a "// fuzz-sources:" line, extra
# pkg-config packages in a "// fuzz-libs:" line, and proto files whose
# protoc-c output it links in a "// fuzz-proto:" line (generated into
# build-fuzz/gen by scripts/proto-c.sh). The corpus each run grows
# is kept in build-fuzz/corpus-<target> and reused by the next run. Targets
# run side by side, one per core (FUZZ_JOBS=N to change).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
out=build-fuzz
mkdir -p "$out"
pkgs="yaml-0.1 jansson yajl libevent_core openssl"
# The pure modules: parsers and translators, no sockets.
lib_src="$(ls src/core/*.c src/config/*.c src/routing/*.c) src/security/digest.c src/security/jwt.c src/security/jwks.c src/http/errors.c src/api/scan.c src/cluster/redis_url.c"
lib_src=$(echo $lib_src) # one line, for the duplicate check below
cflags="-std=c17 -D_GNU_SOURCE -g -O1 -Isrc"
# The shared modules are compiled once per run (without the fuzzer's main), in
# parallel, then linked into every target.
objs=()
for f in $lib_src; do objs+=("$out/obj/${f%.c}.o"); done
printf '%s\n' $lib_src | xargs -P "$(nproc 2>/dev/null || echo 2)" -I{} sh -c '
    o="$0/obj/$(dirname "{}")/$(basename "{}" .c).o"; mkdir -p "$(dirname "$o")"
    exec clang $1 -fsanitize=fuzzer-no-link,address,undefined $(pkg-config --cflags $2) -c "{}" -o "$o"' \
    "$out" "$cflags" "$pkgs"
targets=()
if [ $# -gt 0 ]; then
    for n in "$@"; do targets+=("tests/fuzz/${n%.c}.c"); done
else
    targets=(tests/fuzz/fuzz_*.c)
fi
# One target: build, run, print one result line (and the log's tail on failure).
one_target() {
    local target=$1 name extra libs p g f corpus dict
    name=$(basename "$target" .c)
    # Each target names the sources it needs in a "// fuzz-sources:" line;
    # by default it links the pure modules.
    extra=""
    for f in $(sed -n 's|^// fuzz-sources: ||p' "$target"); do
        case " $lib_src " in *" $f "*) ;; *) extra="$extra $f" ;; esac
    done
    libs=$(sed -n 's|^// fuzz-libs: ||p' "$target")
    for p in $(sed -n 's|^// fuzz-proto: ||p' "$target"); do
        g="$out/gen/${p#proto/}" # generated before the targets start
        extra="$extra ${g%.proto}.pb-c.c"
    done
    if ! clang $cflags -I"$out/gen" -fsanitize=fuzzer,address,undefined \
        $(pkg-config --cflags $pkgs $libs) "$target" "${objs[@]}" $extra \
        $(pkg-config --libs $pkgs $libs) -lhttp_parser -lm -pthread -o "$out/$name" \
        > "$out/$name.build.log" 2>&1; then
        echo "FAIL $name: does not build (see $out/$name.build.log)"
        tail -20 "$out/$name.build.log"
        return 1
    fi
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
        return 1
    fi
}
# The protos the targets link are generated first, once each.
for target in "${targets[@]}"; do
    for p in $(sed -n 's|^// fuzz-proto: ||p' "$target"); do
        sh scripts/proto-c.sh "$p" "$out/gen"
    done
done
# Targets run side by side, one per core (FUZZ_JOBS), each for SECONDS; their
# reports are printed in order when all are done. A target that printed no
# "ok" line failed, whatever stopped it.
jobs_max=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
running=0
for target in "${targets[@]}"; do
    name=$(basename "$target" .c)
    one_target "$target" > "$out/$name.result" 2>&1 &
    running=$((running + 1))
    if [ "$running" -ge "$jobs_max" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true
status=0
for target in "${targets[@]}"; do
    name=$(basename "$target" .c)
    cat "$out/$name.result"
    if ! grep -q '^ok ' "$out/$name.result"; then
        grep -q '^FAIL' "$out/$name.result" || echo "FAIL $name: stopped without a result"
        status=1
    fi
done
exit $status
