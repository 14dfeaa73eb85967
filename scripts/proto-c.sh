#!/bin/sh
# proto-c.sh PROTO OUTDIR: generates C for one file of proto/ with protoc-c
# into OUTDIR (the build's gen/ directory; generated code is not committed).
# Debian 12's protoc-c (1.4.1) refuses proto3 `optional`, so the file is
# first copied with each `optional T name = N;` written as the synthetic
# oneof it stands for (`oneof _name { T name = N; }`): the same wire format,
# and presence becomes the oneof's case field. Clients use proto/ as it is.
set -eu
proto=$1
out=$2
rel=${proto#proto/}
src="$out/proto-src"
mkdir -p "$src/$(dirname "$rel")" "$out"
sed -E 's/(^|[;{ ])[[:space:]]*optional[[:space:]]+([A-Za-z0-9_.]+)[[:space:]]+([A-Za-z0-9_]+)[[:space:]]*=[[:space:]]*([0-9]+)[[:space:]]*;/\1 oneof _\3 { \2 \3 = \4; }/g' \
    "$proto" > "$src/$rel"
protoc-c --proto_path="$src" --c_out="$out" "$src/$rel"
