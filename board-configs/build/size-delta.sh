#!/bin/sh
# size-delta.sh NAME BASE FILE MAX: prints how many bytes FILE adds to BASE (both stripped
# binaries, e.g. the armv7 hub build without and with the signature verifier); fails when
# that is more than MAX bytes or a file is missing.
set -eu
name=$1 base=$2 file=$3 max=$4
for f in "$base" "$file"; do
    if [ ! -f "$f" ]; then
        echo "$name: $f missing"
        exit 1
    fi
done
b=$(wc -c <"$base" | tr -d ' ')
s=$(wc -c <"$file" | tr -d ' ')
delta=$((s - b))
if [ "$delta" -gt "$max" ]; then
    printf '%s: +%s bytes (%s -> %s), budget %s: OVER BUDGET by %s bytes\n' "$name" "$delta" "$b" "$s" "$max" "$((delta - max))"
    exit 1
fi
printf '%s: +%s bytes (%s -> %s), budget %s\n' "$name" "$delta" "$b" "$s" "$max"
