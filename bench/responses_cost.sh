#!/bin/sh
# Instructions per /v1/responses translation (bench/responses_cost.c says
# what it runs): builds build/responses_cost against build/libaiproxy.a
# (run make first), counts with callgrind at N=1 and N=101, prints the
# difference / 100 for the whole answer and the stream.
set -e
cd "$(dirname "$0")/.."
out=build/responses_cost
cc -std=c17 -D_GNU_SOURCE -O2 -g -Isrc bench/responses_cost.c build/libaiproxy.a \
  $(pkg-config --libs jansson yajl libevent openssl) -lm -pthread -o "$out"
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$out" "$1" "$2" 2>&1 |
    sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
for part in whole stream; do
  a=$(count 1 "$part"); b=$(count 101 "$part")
  echo "$part: $(( (b - a) / 100 )) instructions per request"
done
