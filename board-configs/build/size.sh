#!/bin/sh
# size.sh "NAME FILE MAX"...: prints the file size of each binary; fails when one is larger
# than its MAX bytes ("-" for no budget) or missing.
set -eu
status=0
printf '%-14s %10s %10s  %s\n' target bytes budget file
for spec in "$@"; do
    set -- $spec
    name=$1 file=$2 max=$3
    if [ ! -f "$file" ]; then
        printf '%-14s %10s %10s  %s\n' "$name" missing "$max" "$file"
        status=1
        continue
    fi
    size=$(wc -c <"$file" | tr -d ' ')
    verdict=
    if [ "$max" != - ] && [ "$size" -gt "$max" ]; then
        verdict="  OVER BUDGET by $((size - max)) bytes"
        status=1
    fi
    printf '%-14s %10s %10s  %s%s\n' "$name" "$size" "$max" "$file" "$verdict"
done
exit $status
