#!/usr/bin/env bash
# Cost of the boot-time object check (PV_SECUREBOOT_CHECKSUM), in ms per MB:
#
#   checksum.sh [--qemu qemu-arm-static] [--mib N] BINARY
#
# Seeds a factory revision holding one N MiB object (default 64) of random bytes, starts
# `tern daemon` on a fresh storage (under qemu-user when given), and reads the line the
# first boot logs after hashing the revision's objects ("… bytes hashed in T ms (R ms/MB)").
# Then SIGTERM. Prints one Markdown table row: arch, object size, ms, ms/MB, and for
# comparison the host's `sha256sum` on the same file (native, not emulated).
# The first start hashes before the loop starts (the check is part of the boot decision),
# so the time is also how much later the control socket answers on a first boot.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source tests/bench/lib.sh

qemu=() mib=64
while [ $# -gt 1 ]; do
    case $1 in
    --qemu) qemu=("$2"); shift 2 ;;
    --mib) mib=$2; shift 2 ;;
    *) break ;;
    esac
done
[ $# -eq 1 ] || die "usage: $0 [--qemu QEMU] [--mib N] BINARY"
bin=$1
[ -x "$bin" ] || die "$bin: not an executable"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tern-bench-checksum.XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/factory/objects"
head -c "$((mib * 1048576))" /dev/urandom >"$tmp/blob"
t0=$EPOCHREALTIME
sha=$(sha256sum "$tmp/blob" | cut -d' ' -f1)
t1=$EPOCHREALTIME
host_ms=$(awk "BEGIN { printf \"%.1f\", ($t1 - $t0) * 1000 }")
mv "$tmp/blob" "$tmp/factory/objects/$sha"
printf '{"#spec":"pantavisor-service-system@1","bench/blob":"%s"}' "$sha" >"$tmp/factory/json"

TERN_HUB=off "${qemu[@]}" "$bin" daemon --storage "$tmp/storage" --rundir "$tmp/run" \
    --factory "$tmp/factory" --set PV_LOG_LEVEL=4 >"$tmp/daemon.log" 2>&1 &
pid=$!
line=
for _ in $(seq 1 1200); do
    line=$(grep -m1 'checksum: revision 0: ' "$tmp/daemon.log" || true)
    [ -n "$line" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$line" ] || { cat "$tmp/daemon.log" >&2; die "no checksum line in the daemon log"; }
kill -TERM "$pid"
wait "$pid" || true
pid=
ms=$(sed -n 's/.* hashed in \([0-9.]*\) ms.*/\1/p' <<<"$line")
per_mb=$(sed -n 's/.*(\([0-9.]*\) ms\/MB).*/\1/p' <<<"$line")
arch=$(file -b "$bin" | cut -d, -f2 | sed 's/^ *//')
[ ${#qemu[@]} -eq 0 ] || arch="$arch (${qemu[0]})"
printf '| %s | %s MiB | %s ms | %s ms/MB | %s ms (%s ms/MB) |\n' "$arch" "$mib" "$ms" "$per_mb" \
    "$host_ms" "$(awk "BEGIN { printf \"%.2f\", $host_ms / $mib }")"
