#!/usr/bin/env bash
# Container benchmarks (`make bench`, after run.sh): start time of a 3-container revision,
# daemon memory with 3 and with 100 containers beside a runit tree supervising 3 services,
# respawn latency (SIGKILL of the init → the new init running, as the command's own clock
# reading) for Tern's isolated containers, Tern's process mode and runit (runsvdir + runsv)
# supervising the same command in the same run, and update times: a non-reboot update that
# changes one container whose init SIGTERM cannot reach, the same with an init that exits
# on SIGTERM, each beside that container's own start, and a reboot-mode update (re-exec).
# Appends a table to target/bench/latest.md.
#
# Everything it starts it stops by PID (daemons, runsvdir and the runsv it started; the
# killed inits are read from the supervisor's own pid files), and it leaves nothing running.
# Needs root, a static busybox, mksquashfs and runit (installed with apt-get when missing).
# Knobs: BENCH_ROUNDS (respawn rounds, default 20), BENCH_MANY (default 100).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
ROUNDS=${BENCH_ROUNDS:-20}
MANY=${BENCH_MANY:-100}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TERN=$TARGET/release/tern
BENCH=$TARGET/release/tern-bench

source tests/bench/lib.sh  # the cd above put us at the repository root
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
RUNSVDIR_PID=""
# The runsv processes our runsvdir started (its children).
runsv_pids() {
    [[ -n $RUNSVDIR_PID ]] || return 0
    cat "/proc/$RUNSVDIR_PID/task/$RUNSVDIR_PID/children" 2>/dev/null || true
}
# SIGHUP makes runsvdir send SIGTERM to each runsv (which stops its service) and exit; then
# wait for those pids, and SIGKILL by PID whatever of ours is left.
stop_runit() {
    [[ -n $RUNSVDIR_PID ]] || return 0
    local ours
    ours="$RUNSVDIR_PID $(runsv_pids)"
    for f in "$WORK"/sv/*/supervise/pid; do [[ -s $f ]] && ours+=" $(cat "$f")"; done
    kill -HUP "$RUNSVDIR_PID" 2>/dev/null || true
    for p in $ours; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$p" 2>/dev/null || true
    done
    wait "$RUNSVDIR_PID" 2>/dev/null || true
    RUNSVDIR_PID=""
}
# The cgroup.procs file of container <name> (the first hierarchy that has it).
procs_of() {
    local f
    for f in /sys/fs/cgroup/tern/"$1"/cgroup.procs /sys/fs/cgroup/*/tern/"$1"/cgroup.procs; do
        [[ -f $f ]] && { printf '%s' "$f"; return 0; }
    done
    die "no cgroup.procs for container $1"
}
cleanup() {
    stop_runit
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
        --set PV_LOG_LEVEL=3 "$@" >"$dir/daemon.log" 2>&1 &
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
ISO_R=$("$BENCH" respawn --pids-from "$(procs_of c001)" --stamps "$WORK/iso3/storage/logs/0/c001/lxc/console.log" --rounds "$ROUNDS")
stop "$DPID"

log "tern, process mode: respawn x$ROUNDS"
boot proc3 3 "$BUSYBOX adjtimex; exec sleep 3003" --set TERN_CONTAINER_MODE=process
PROC_R=$("$BENCH" respawn --pids-from "$(procs_of c001)" --stamps "$WORK/proc3/storage/logs/0/c001/lxc/console.log" --rounds "$ROUNDS")
stop "$DPID"

log "runit (runsvdir + runsv), 3 services: memory, then respawn x$ROUNDS"
SVDIR=$WORK/sv
for s in bench s2 s3; do
    mkdir -p "$SVDIR/$s"
    if [[ $s == bench ]]; then
        printf '#!%s sh\nexec %s sh -c "%s adjtimex >> %s; exec %s sleep 3002"\n' \
            "$BUSYBOX" "$BUSYBOX" "$BUSYBOX" "$WORK/runit.stamps" "$BUSYBOX" >"$SVDIR/$s/run"
    else
        printf '#!%s sh\nexec %s sleep 300%s\n' "$BUSYBOX" "$BUSYBOX" "${s#s}0" >"$SVDIR/$s/run"
    fi
    chmod +x "$SVDIR/$s/run"
done
runsvdir -P "$SVDIR" >/dev/null 2>&1 &
RUNSVDIR_PID=$!
for _ in $(seq 100); do [[ -s $WORK/runit.stamps && -s $SVDIR/s3/supervise/pid ]] && break; sleep 0.05; done
sleep 1
RUNIT_RSS=0
RUNIT_ANON=0
for p in $RUNSVDIR_PID $(runsv_pids); do
    RUNIT_RSS=$((RUNIT_RSS + $(proc_kb "$p" VmRSS)))
    RUNIT_ANON=$((RUNIT_ANON + $(proc_kb "$p" RssAnon)))
done
RUNIT_R=$("$BENCH" respawn --pids-from "$SVDIR/bench/supervise/pid" --stamps "$WORK/runit.stamps" --rounds "$ROUNDS")
stop_runit

# stage <name> <first script> <tag>: the revision locals/<name>, where only c001 differs.
stage() {
    factory "$WORK/$1" 3 "$2" "$3"
    for obj in "$WORK/$1/factory/objects"/*; do
        "$TERN" ctl -s "$SOCK" objects put "$obj" "$(basename "$obj")" >/dev/null
    done
    "$TERN" ctl -s "$SOCK" steps put "$WORK/$1/factory/json" "locals/$1" >/dev/null
}
# update <name> <command> <final status>: stage done, run it, milliseconds to the status.
update() {
    local t0 out
    t0=$(date +%s%N)
    "$TERN" ctl -s "$SOCK" cmd "$2" "locals/$1" >/dev/null
    out=$("$BENCH" progress --socket "$SOCK" --rev "locals/$1" --status "$3" --since-ns "$t0" --timeout 60) ||
        die "the update to $1 did not reach $3 (see $WORK/upd/daemon.log)"
    field "$out" reached_after_ms
}
# own_start: API stop, then start of c001; milliseconds from the start to all 3 running.
own_start() {
    "$TERN" ctl -s "$SOCK" containers stop c001 >/dev/null
    "$BENCH" status --socket "$SOCK" --name c001 --status STOPPED --timeout 30 >/dev/null ||
        die "c001 did not stop"
    local t0
    t0=$(date +%s%N)
    "$TERN" ctl -s "$SOCK" containers start c001 >/dev/null
    field "$("$BENCH" running --socket "$SOCK" --count 3 --since-ns "$t0" --timeout 30)" running_after_ms
}

HANDLER="trap 'exit 0' TERM; sleep 3006 & wait"
log "tern: non-reboot updates of one container of 3 (default 5 s grace), then GC of 1000 objects"
boot upd 3 "exec sleep 3005" --set PV_UPDATER_COMMIT_DELAY=0 --set PV_CONTROL_REMOTE=0 \
    --set TERN_GC_GRACE=0 --set TERN_DEV_REBOOT=reexec
stage v2 "$HANDLER" 100
UPD_SHIELDED_MS=$(update v2 run UPDATED)
stage v3 "exec sleep 3007" 100
UPD_HANDLER_MS=$(update v3 run UPDATED)
OWN_START_MS=$(own_start)
stage v4 "exec sleep 3008" 100
UPD_REBOOT_MS=$(update v4 run-commit DONE)
for i in $(seq 1000); do
    printf 'unreferenced object %s\n' "$i" >"$WORK/obj"
    cp "$WORK/obj" "$WORK/upd/storage/objects/$(sha256sum "$WORK/obj" | cut -d' ' -f1)"
done
T0=$(date +%s%N)
GC_OUT=$("$TERN" ctl -s "$SOCK" storage gc)
GC_MS=$(awk "BEGIN { printf \"%.1f\", ($(date +%s%N) - $T0) / 1e6 }")
GC_LEFT=$(find "$WORK/upd/storage/objects" -type f | wc -l)
T0=$(date +%s%N)
stop "$DPID"
UPD_STOP_MS=$(awk "BEGIN { printf \"%.0f\", ($(date +%s%N) - $T0) / 1e6 }")

log "tern, isolated: $MANY containers"
boot many "$MANY" "exec sleep 3004"
MANY_UP=$UP_MS
MANY_RSS=$(proc_kb "$DPID" VmRSS)
MANY_ANON=$(proc_kb "$DPID" RssAnon)
stop "$DPID"

# The memory budget (issue: ≤ 1 MB RSS): the static binary idle with the demo revision
# running (its two containers up), when `make static` has built it.
STATIC=$TARGET/x86_64-unknown-linux-musl/release/tern
DEMO_ROW="| static x86_64 binary idle with the demo revision: VmRSS / RssAnon / RssFile | not measured: run \`make static\` first | |"
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
    DEMO_ROW="| static x86_64 binary idle with the demo revision: VmRSS / RssAnon / RssFile | $(proc_kb "$DPID" VmRSS) / $(proc_kb "$DPID" RssAnon) / $(proc_kb "$DPID" RssFile) kB | |"
    stop "$DPID"
fi

ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }
r3() { printf '%s / %s / %s' "$(field "$1" p50_us)" "$(field "$1" p99_us)" "$(field "$1" max_us)"; }
TABLE=$(
    printf '| container metric | Tern | reference, same run |\n|---|---|---|\n'
    printf '| 3-container revision: daemon start → all STARTED | %s ms | |\n' "$ISO3_UP"
    printf '| idle VmRSS / RssAnon with 3 services | %s / %s kB (daemon, 3 isolated containers) | runit tree (runsvdir + 3 runsv): %s / %s kB |\n' \
        "$ISO3_RSS" "$ISO3_ANON" "$RUNIT_RSS" "$RUNIT_ANON"
    printf '| daemon VmRSS / RssAnon, %s containers (start → all STARTED %s ms) | %s / %s kB | |\n' \
        "$MANY" "$MANY_UP" "$MANY_RSS" "$MANY_ANON"
    printf '| respawn after SIGKILL, p50 / p99 / max, process mode | %s µs | runit: %s µs (p50 ratio %s×) |\n' \
        "$(r3 "$PROC_R")" "$(r3 "$RUNIT_R")" "$(ratio "$(field "$PROC_R" p50_us)" "$(field "$RUNIT_R" p50_us)")"
    printf '| respawn after SIGKILL, p50 / p99 / max, isolated | %s µs | runit: %s µs (p50 ratio %s×) |\n' \
        "$(r3 "$ISO_R")" "$(r3 "$RUNIT_R")" "$(ratio "$(field "$ISO_R" p50_us)" "$(field "$RUNIT_R" p50_us)")"
    printf '| non-reboot update of 1 of 3 containers, LOCAL_RUN → UPDATED, init SIGTERM cannot reach (busybox sleep as pid-ns init), 5 s grace | %s ms | the container'"'"'s own start (API start → STARTED): %s ms; Pantavisor waits its 25 s stop timeout by design |\n' \
        "$UPD_SHIELDED_MS" "$OWN_START_MS"
    printf '| the same, init that exits on SIGTERM (shell trap) | %s ms | own start: %s ms |\n' "$UPD_HANDLER_MS" "$OWN_START_MS"
    printf '| reboot-mode update (LOCAL_RUN_COMMIT, TERN_DEV_REBOOT=reexec) → DONE | %s ms | cold start of 3: %s ms |\n' "$UPD_REBOOT_MS" "$ISO3_UP"
    printf '| daemon SIGTERM → exited, 3 containers whose inits SIGTERM cannot reach, 5 s grace | %s ms | |\n' "$UPD_STOP_MS"
    printf '| POST /storage/gc with 1000 unreferenced objects (client process included) | %s ms, %s, %s objects left | |\n' "$GC_MS" "$GC_OUT" "$GC_LEFT"
    printf '%s\n' "$DEMO_ROW"
    printf '\nRespawn: SIGKILL of the init (its pid read from the container'"'"'s cgroup.procs, or runsv'"'"'s supervise/pid) to the new command running (its own clock reading, busybox `adjtimex`), %s rounds, retry_delay 0; runsvdir + runsv supervise the same busybox command. Load average at the end: %s.\n' "$ROUNDS" "$(cut -d' ' -f1-3 /proc/loadavg)"
)
mkdir -p "$ROOT/target/bench"
printf '\n%s\n' "$TABLE" >>"$ROOT/target/bench/latest.md"
printf '\n%s\n\n' "$TABLE"
