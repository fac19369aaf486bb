#!/bin/bash
# rss.sh NAME=BINARY...: starts each `tern daemon` on a fresh temporary storage, waits until
# its socket is up, lets it idle 1 s, then prints VmRSS, RssAnon, RssFile and VmSize from
# /proc/<pid>/status (median of 3 runs each) and stops it with SIGTERM.
set -euo pipefail
field() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$2/status"; }
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
printf '%-14s %9s %9s %9s %9s %10s\n' build VmRSS RssAnon RssFile VmSize 'file bytes'
for spec in "$@"; do
    name=${spec%%=*} bin=${spec#*=}
    rss=() anon=() file=() vsz=()
    for _ in 1 2 3; do
        tmp=$(mktemp -d "${TMPDIR:-/tmp}/tern-rss.XXXXXX")
        env -i PATH="$PATH" TERN_HUB=off "$bin" daemon --storage "$tmp/s" --rundir "$tmp/r" 2>/dev/null &
        pid=$!
        for _ in $(seq 100); do [ -S "$tmp/r/pv-ctrl" ] && break; sleep 0.05; done
        sleep 1
        rss+=("$(field VmRSS $pid)") anon+=("$(field RssAnon $pid)")
        file+=("$(field RssFile $pid)") vsz+=("$(field VmSize $pid)")
        kill -TERM "$pid"
        wait "$pid"
        rm -rf "$tmp"
    done
    printf '%-14s %6s kB %6s kB %6s kB %6s kB %10s\n' "$name" "$(median "${rss[@]}")" \
        "$(median "${anon[@]}")" "$(median "${file[@]}")" "$(median "${vsz[@]}")" "$(wc -c <"$bin")"
done
