#!/usr/bin/env bash
# Container benchmarks (`make bench`, after run.sh): start time of a 3-container revision,
# daemon memory with 3 and with 100 containers, and respawn latency (SIGKILL of the init →
# the new init running, as the command's own clock reading) for Tern's isolated containers, Tern's process mode and runit's
# runsv supervising the same command in the same run. Appends a table to
# target/bench/latest.md.
#
# Needs root, a static busybox, mksquashfs and runit (installed with apt-get when missing).
# Knobs: BENCH_ROUNDS (respawn rounds, default 20), BENCH_MANY (default 100).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
ROUNDS=${BENCH_ROUNDS:-20}
MANY=${BENCH_MANY:-100}
TERN=$ROOT/target/release/tern
BENCH=$ROOT/target/release/tern-bench

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: ERROR: %s\n' "$*" >&2
    exit 1
}
field() { sed -n 's/.*"'"$2"'":\([^,}]*\).*/\1/p' <<<"$1"; }
proc_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

if [[ $(id -u) != 0 ]]; then
    log "SKIP container benchmarks: they need root (loop devices, mounts, namespaces)"
    exit 0
fi
is_static() { ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'program interpreter'; }
BUSYBOX=$(command -v busybox || true)
if [[ -z $BUSYBOX ]] || ! is_static "$BUSYBOX" || ! command -v mksquashfs >/dev/null ||
    ! command -v runsv >/dev/null; then
    log "installing busybox-static, squashfs-tools and runit"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q busybox-static squashfs-tools runit >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q busybox-static squashfs-tools runit >/dev/null; } ||
        die "cannot install busybox-static squashfs-tools runit"
    BUSYBOX=$(command -v busybox)
fi
"${CARGO:-cargo}" build --release --bin tern >&2 || die "cargo build --release failed"
"${CARGO:-cargo}" build --release --features bench-tools --bin tern-bench >&2 ||
    die "building tern-bench failed"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-cbench.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
[[ -n ${BENCH_KEEP:-} ]] && trap - EXIT

# One busybox root volume for every container.
mkdir -p "$WORK/rootfs"/{bin,proc,sys,dev,tmp,pantavisor}
cp "$BUSYBOX" "$WORK/rootfs/bin/busybox"
for a in sh sleep adjtimex echo; do ln -s busybox "$WORK/rootfs/bin/$a"; done
mksquashfs "$WORK/rootfs" "$WORK/root.squashfs" -noappend -quiet -all-root >/dev/null

# factory <dir> <count> <first container's script> [tag]: the others sleep (tag changes what).
factory() {
    local dir=$1 n=$2 first=$3 tag=${4:-100} objs=$1/factory/objects
    mkdir -p "$objs"
    local root_sha
    root_sha=$(sha256sum "$WORK/root.squashfs" | cut -d' ' -f1)
    cp "$WORK/root.squashfs" "$objs/$root_sha"
    {
        printf '{"#spec":"pantavisor-service-system@1"'
        for i in $(seq 1 "$n"); do
            local name script conf sha
            name=$(printf 'c%03d' "$i")
            script="exec sleep $tag$i"
            [[ $i == 1 ]] && script=$first
            conf="$dir/$name.conf"
            printf 'lxc.uts.name = %s\nlxc.namespace.keep = net\nlxc.init.cmd = /bin/sh -c "%s"\n' \
                "$name" "$script" >"$conf"
            sha=$(sha256sum "$conf" | cut -d' ' -f1)
            cp "$conf" "$objs/$sha"
            printf ',"%s/lxc.container.conf":"%s","%s/root.squashfs":"%s"' "$name" "$sha" "$name" "$root_sha"
            printf ',"%s/run.json":{"name":"%s","type":"lxc","config":"lxc.container.conf",' "$name" "$name"
            printf '"root-volume":"root.squashfs","restart_policy":"container",'
            printf '"storage":{"lxc-overlay":{"persistence":"boot"}},'
            printf '"auto_recovery":{"policy":"always","max_retries":0,"retry_delay":0}}'
        done
        printf '}\n'
    } >"$dir/factory/json"
}

# boot <name> <count> <first script> [--set K=V...]: starts a daemon, sets DPID, SOCK, UP_MS.
boot() {
    local name=$1 n=$2 first=$3
    shift 3
    local dir=$WORK/$name
    mkdir -p "$dir"
    factory "$dir" "$n" "$first"
    SOCK=$dir/run/pv-ctrl
    local t0
    t0=$(date +%s%N)
    "$TERN" daemon --storage "$dir/storage" --rundir "$dir/run" --factory "$dir/factory" \
        --set PV_LOG_LEVEL=2 --set TERN_STOP_GRACE=1 "$@" >"$dir/daemon.log" 2>&1 &
    DPID=$!
    PIDS+=("$DPID")
    "$BENCH" wait --socket "$SOCK" --timeout 30 >/dev/null || die "$name: daemon did not start"
    local out
    out=$("$BENCH" running --socket "$SOCK" --count "$n" --since-ns "$t0" --timeout 120) ||
        die "$name: containers did not all start (see $dir/daemon.log)"
    UP_MS=$(field "$out" running_after_ms)
    sleep 1
}
stop() {
    kill -TERM "$1"
    for _ in $(seq 200); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.05; done
    die "daemon $1 did not stop"
}

STAMP='adjtimex; exec sleep 3001'

log "tern, isolated: 3 containers"
boot iso3 3 "$STAMP"
ISO3_UP=$UP_MS
ISO3_RSS=$(proc_kb "$DPID" VmRSS)
ISO3_ANON=$(proc_kb "$DPID" RssAnon)
log "tern, isolated: respawn x$ROUNDS"
ISO_R=$("$BENCH" respawn --marker 'sleep 3001' --stamps "$WORK/iso3/storage/logs/0/c001/lxc/console.log" --rounds "$ROUNDS")
stop "$DPID"

log "tern, process mode: respawn x$ROUNDS"
boot proc3 3 "$BUSYBOX adjtimex; exec sleep 3003" --set TERN_CONTAINER_MODE=process
PROC_R=$("$BENCH" respawn --marker 'sleep 3003' --stamps "$WORK/proc3/storage/logs/0/c001/lxc/console.log" --rounds "$ROUNDS")
stop "$DPID"

log "runit (runsv): respawn x$ROUNDS"
SV=$WORK/sv/bench
mkdir -p "$SV"
printf '#!%s sh\nexec %s sh -c "%s adjtimex >> %s; exec %s sleep 3002"\n' \
    "$BUSYBOX" "$BUSYBOX" "$BUSYBOX" "$WORK/runit.stamps" "$BUSYBOX" >"$SV/run"
chmod +x "$SV/run"
runsv "$SV" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [[ -s $WORK/runit.stamps ]] && break; sleep 0.05; done
RUNIT_R=$("$BENCH" respawn --marker 'sleep 3002' --stamps "$WORK/runit.stamps" --rounds "$ROUNDS")
kill -TERM "${PIDS[-1]}" 2>/dev/null || true
pkill -f 'sleep 3002' || true

log "tern: non-reboot update of a 3-container revision, then GC of 1000 objects"
boot upd 3 "exec sleep 3005" --set TERN_STOP_GRACE=0 --set PV_UPDATER_COMMIT_DELAY=2 \
    --set PV_CONTROL_REMOTE=0 --set TERN_GC_GRACE=0
factory "$WORK/upd2" 3 "exec sleep 3006" 200
for obj in "$WORK/upd2/factory/objects"/*; do
    "$TERN" ctl -s "$SOCK" objects put "$obj" "$(basename "$obj")" >/dev/null
done
"$TERN" ctl -s "$SOCK" steps put "$WORK/upd2/factory/json" locals/v2 >/dev/null
T0=$(date +%s%N)
"$TERN" ctl -s "$SOCK" cmd run locals/v2 >/dev/null
out=$("$BENCH" progress --socket "$SOCK" --rev locals/v2 --status TESTING --since-ns "$T0") ||
    die "the update did not reach TESTING (see $WORK/upd/daemon.log)"
UPD_MS=$(field "$out" reached_after_ms)
"$BENCH" progress --socket "$SOCK" --rev locals/v2 --status UPDATED >/dev/null ||
    die "the update did not finish"
for i in $(seq 1000); do
    printf 'unreferenced object %s\n' "$i" >"$WORK/obj"
    cp "$WORK/obj" "$WORK/upd/storage/objects/$(sha256sum "$WORK/obj" | cut -d' ' -f1)"
done
T0=$(date +%s%N)
GC_OUT=$("$TERN" ctl -s "$SOCK" storage gc)
GC_MS=$(awk "BEGIN { printf \"%.1f\", ($(date +%s%N) - $T0) / 1e6 }")
GC_LEFT=$(find "$WORK/upd/storage/objects" -type f | wc -l)
stop "$DPID"

log "tern, isolated: $MANY containers"
boot many "$MANY" "exec sleep 3004"
MANY_UP=$UP_MS
MANY_RSS=$(proc_kb "$DPID" VmRSS)
MANY_ANON=$(proc_kb "$DPID" RssAnon)
stop "$DPID"

# The memory budget (issue: ≤ 1 MB RSS): the static binary idle with the demo revision
# running (its two containers up), when `make static` has built it.
STATIC=$ROOT/target/x86_64-unknown-linux-musl/release/tern
DEMO_ROW="| static x86_64 binary idle with the demo revision: VmRSS / RssAnon / RssFile | not measured: run \`make static\` first |"
if [[ -x $STATIC ]]; then
    log "static binary: idle memory with the demo revision"
    bash "$ROOT/board-configs/demo/build.sh" "$WORK/demo" "$TERN" >/dev/null
    "$STATIC" daemon --storage "$WORK/demo/s" --rundir "$WORK/demo/r" \
        --factory "$WORK/demo/factory" --set TERN_V1_ADDRESS=off >"$WORK/demo.log" 2>&1 &
    DPID=$!
    PIDS+=("$DPID")
    SOCK=$WORK/demo/r/pv-ctrl
    "$BENCH" wait --socket "$SOCK" --timeout 30 >/dev/null || die "demo: daemon did not start"
    "$BENCH" running --socket "$SOCK" --count 2 --timeout 60 >/dev/null || die "demo: containers did not start"
    sleep 2
    DEMO_ROW="| static x86_64 binary idle with the demo revision: VmRSS / RssAnon / RssFile | $(proc_kb "$DPID" VmRSS) / $(proc_kb "$DPID" RssAnon) / $(proc_kb "$DPID" RssFile) kB |"
    stop "$DPID"
fi

ratio() { awk "BEGIN { printf \"%.1f\", $1 / $2 }"; }
TABLE=$(
    printf '| container metric | value |\n|---|---|\n'
    printf '| 3-container revision: daemon start → all STARTED | %s ms |\n' "$ISO3_UP"
    printf '| daemon VmRSS / RssAnon, 3 containers | %s / %s kB |\n' "$ISO3_RSS" "$ISO3_ANON"
    printf '| daemon VmRSS / RssAnon, %s containers (start → all STARTED %s ms) | %s / %s kB |\n' \
        "$MANY" "$MANY_UP" "$MANY_RSS" "$MANY_ANON"
    for row in "tern isolated:$ISO_R" "tern process mode:$PROC_R" "runit runsv:$RUNIT_R"; do
        printf '| respawn p50 / p99 / max, %s | %s / %s / %s µs |\n' "${row%%:*}" \
            "$(field "${row#*:}" p50_us)" "$(field "${row#*:}" p99_us)" "$(field "${row#*:}" max_us)"
    done
    printf '| non-reboot update of 3 containers: LOCAL_RUN → all goals reached (TESTING) | %s ms (cold start of 3: %s ms) |\n' "$UPD_MS" "$ISO3_UP"
    printf '| POST /storage/gc with 1000 unreferenced objects (client process included) | %s ms, %s, %s objects left |\n' "$GC_MS" "$GC_OUT" "$GC_LEFT"
    printf '%s\n' "$DEMO_ROW"
    printf '| respawn p50 vs runit: isolated / process mode | %s× / %s× |\n' \
        "$(ratio "$(field "$ISO_R" p50_us)" "$(field "$RUNIT_R" p50_us)")" \
        "$(ratio "$(field "$PROC_R" p50_us)" "$(field "$RUNIT_R" p50_us)")"
    printf '\nRespawn: SIGKILL of the init to the new command running (its own clock reading, busybox `adjtimex`), %s rounds, retry_delay 0; runsv supervises the same busybox command.\n' "$ROUNDS"
)
mkdir -p "$ROOT/target/bench"
printf '\n%s\n' "$TABLE" >>"$ROOT/target/bench/latest.md"
printf '\n%s\n\n' "$TABLE"
