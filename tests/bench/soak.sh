#!/usr/bin/env bash
# Soak (`make bench`): SOAK_REQUESTS mixed requests on pv-ctrl (GET /steps, GET /containers,
# PUT and DELETE /user-meta, GET /objects; pipelined by 8 and one per fresh connection) while
# a second client restarts a container SOAK_RESTARTS times through the API, each restart
# waited for. Samples the daemon every SOAK_SAMPLE requests: VmRSS, RssAnon, descriptors,
# zombie children; then checks growth, descriptors back to their start, no zombie, no
# leftover mount. Appends the curve to target/bench/latest.md.
#
# Knobs: SOAK_REQUESTS (1000000), SOAK_RESTARTS (10000), SOAK_SAMPLE (50000). Needs root and
# a static busybox plus mksquashfs for the container (isolated when possible).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
CARGO=${CARGO:-cargo}
OUT=${CARGO_TARGET_DIR:-$ROOT/target}
REQUESTS=${SOAK_REQUESTS:-1000000}
RESTARTS=${SOAK_RESTARTS:-10000}
SAMPLE=${SOAK_SAMPLE:-50000}

source tests/bench/lib.sh  # the cd above put us at the repository root

if [[ $(id -u) != 0 ]]; then
    log "SKIP soak: it needs root for its container"
    exit 0
fi
BUSYBOX=$(command -v busybox || true)
[[ -n $BUSYBOX ]] && command -v mksquashfs >/dev/null ||
    die "the soak needs busybox (static) and mksquashfs (see containers.sh)"
"$CARGO" build --release --bin tern >&2 || die "cargo build --release failed"
"$CARGO" build --release --features bench-tools --bin tern-flood --bin tern-bench >&2 ||
    die "building the bench tools failed"
TERN=$OUT/release/tern
FLOOD=$OUT/release/tern-flood
BENCH=$OUT/release/tern-bench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-soak.XXXXXX")
DPID=""
cleanup() {
    if [[ -n $DPID ]]; then
        kill -TERM "$DPID" 2>/dev/null || true
        wait "$DPID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# One container; TERN_STOP_GRACE=0 so a restart does not wait out a stop grace.
mkdir -p "$WORK/rootfs"/{bin,proc,sys,dev,tmp,pantavisor} "$WORK/factory/objects"
cp "$BUSYBOX" "$WORK/rootfs/bin/busybox"
for a in sh sleep; do ln -s busybox "$WORK/rootfs/bin/$a"; done
mksquashfs "$WORK/rootfs" "$WORK/root.squashfs" -noappend -quiet -all-root >/dev/null
ROOT_SHA=$(sha256sum "$WORK/root.squashfs" | cut -d' ' -f1)
cp "$WORK/root.squashfs" "$WORK/factory/objects/$ROOT_SHA"
printf 'lxc.uts.name = soak\nlxc.namespace.keep = net\nlxc.init.cmd = /bin/sh -c "exec sleep 100000"\n' >"$WORK/soak.conf"
CONF_SHA=$(sha256sum "$WORK/soak.conf" | cut -d' ' -f1)
cp "$WORK/soak.conf" "$WORK/factory/objects/$CONF_SHA"
cat >"$WORK/factory/json" <<JSON
{"#spec":"pantavisor-service-system@1","soak/lxc.container.conf":"$CONF_SHA","soak/root.squashfs":"$ROOT_SHA","soak/run.json":{"name":"soak","type":"lxc","config":"lxc.container.conf","root-volume":"root.squashfs","restart_policy":"container","storage":{"lxc-overlay":{"persistence":"boot"}}}}
JSON

SOCK=$WORK/run/pv-ctrl
"$TERN" daemon --storage "$WORK/storage" --rundir "$WORK/run" --factory "$WORK/factory" \
    --set PV_LOG_LEVEL=2 --set TERN_STOP_GRACE=0 >"$WORK/daemon.log" 2>&1 &
DPID=$!
"$BENCH" wait --socket "$SOCK" --timeout 30 >/dev/null || die "the daemon did not start"
"$BENCH" running --socket "$SOCK" --count 1 --timeout 60 >/dev/null ||
    die "the soak container did not start (see $WORK/daemon.log)"
MODE=$(grep -o '(\(isolated\|process\) mode)' "$WORK/daemon.log" | head -1 | tr -d '()' || true)
sleep 1
mounts() { grep -c "$WORK" /proc/self/mountinfo || true; }
loops() { losetup -a 2>/dev/null | grep -c "$WORK" || true; }
M0=$(mounts)
L0=$(loops)

log "soak: $REQUESTS requests, $RESTARTS restarts of a container, a sample every $SAMPLE"
T0=$EPOCHREALTIME
"$FLOOD" soak --socket "$SOCK" --requests "$REQUESTS" --sample "$SAMPLE" --pid "$DPID" \
    --container soak --restarts "$RESTARTS" >"$WORK/soak.jsonl" || die "the soak client failed"
ELAPSED=$(awk "BEGIN { printf \"%.0f\", $EPOCHREALTIME - $T0 }")
kill -0 "$DPID" || die "the daemon died during the soak"
"$BENCH" running --socket "$SOCK" --count 1 --timeout 30 >/dev/null || die "the container is not running after the soak"
sleep 2
M1=$(mounts)
L1=$(loops)

FIRST=$(grep '"requests"' "$WORK/soak.jsonl" | head -1)
SECOND=$(grep '"requests"' "$WORK/soak.jsonl" | sed -n 2p)
LAST=$(grep '"requests"' "$WORK/soak.jsonl" | tail -1)
FAILS=$(field "$(tail -1 "$WORK/soak.jsonl")" failures)
pct() { awk "BEGIN { printf \"%+.1f\", 100 * ($2 - $1) / $1 }"; }
{
    printf '\n## Soak\n\n'
    printf '%s mixed requests and %s container restarts (%s) through pv-ctrl in %s s; %s requests answered 4xx/5xx or not at all.\n\n' \
        "$(field "$LAST" requests)" "$(field "$LAST" restarts)" "${MODE:-mode unknown}" "$ELAPSED" "$FAILS"
    printf '| requests | restarts | s | VmRSS kB | RssAnon kB | fds | zombies |\n|---|---|---|---|---|---|---|\n'
    grep '"requests"' "$WORK/soak.jsonl" | while read -r l; do
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$(field "$l" requests)" "$(field "$l" restarts)" \
            "$(field "$l" seconds)" "$(field "$l" vm_rss_kb)" "$(field "$l" rss_anon_kb)" "$(field "$l" fds)" "$(field "$l" zombies)"
    done
    printf '\nGrowth from the start: VmRSS %s%%, RssAnon %s%%; from the first sample (after %s requests): VmRSS %s%%, RssAnon %s%%. Descriptors %s at the start, %s at the end; zombies at the end %s; mounts under the work dir %s before, %s after; loop devices %s before, %s after.\n' \
        "$(pct "$(field "$FIRST" vm_rss_kb)" "$(field "$LAST" vm_rss_kb)")" \
        "$(pct "$(field "$FIRST" rss_anon_kb)" "$(field "$LAST" rss_anon_kb)")" \
        "$(field "$SECOND" requests)" \
        "$(pct "$(field "$SECOND" vm_rss_kb)" "$(field "$LAST" vm_rss_kb)")" \
        "$(pct "$(field "$SECOND" rss_anon_kb)" "$(field "$LAST" rss_anon_kb)")" \
        "$(field "$FIRST" fds)" "$(field "$LAST" fds)" "$(field "$LAST" zombies)" "$M0" "$M1" "$L0" "$L1"
} | tee -a "$ROOT/target/bench/latest.md"
