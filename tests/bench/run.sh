#!/usr/bin/env bash
# Tern benchmark (`make bench`): binary size, idle memory, pv-ctrl request rate and latency,
# object ingest speed against sha256sum, and peak memory during the ingest. Prints one
# Markdown table and writes it to target/bench/latest.md.
#
# The daemon runs on a fresh temporary storage (removed on exit, daemon stopped on exit).
# The load comes from `tern-bench` (tests/bench/client.rs).
#
# Knobs (environment): BENCH_CLIENTS="1 8 64", BENCH_PATHS="/steps /containers",
# BENCH_PACED=100 (requests/s per client of the paced 64-client run; 0 skips it),
# BENCH_SECONDS=3, BENCH_WARMUP=0.5,
# BENCH_INGEST_MIB (default 1024, or 256 when the temp file system has under 4 GiB free),
# CARGO=cargo, TMPDIR (where the temporary storage goes).

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
CARGO=${CARGO:-cargo}
CLIENTS=${BENCH_CLIENTS:-"1 8 64"}
PATHS=${BENCH_PATHS:-"/steps /containers"}
PACED=${BENCH_PACED:-100}
SECS=${BENCH_SECONDS:-3}
WARMUP=${BENCH_WARMUP:-0.5}
RUN_START=$EPOCHREALTIME

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: ERROR: %s\n' "$*" >&2
    exit 1
}

for tool in awk df sha256sum stat mktemp; do
    command -v "$tool" >/dev/null || die "'$tool' is required but not installed"
done

# Pull a scalar field out of the one-line JSON that tern-bench prints.
field() {
    local v
    v=$(sed -n 's/.*"'"$2"'":\("[^"]*"\|[^,}]*\).*/\1/p' <<<"$1")
    [[ -n $v ]] || die "no field '$2' in tern-bench output: $1"
    printf '%s' "$v"
}
# Floating-point arithmetic: calc 'expr' [printf-format].
calc() { awk "BEGIN { printf \"${2:-%.2f}\", $1 }"; }
# A /proc/<pid>/status field in kB.
proc_kb() {
    local v
    v=$(awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null) || true
    [[ -n $v ]] || die "cannot read $2 from /proc/$1/status (daemon gone?)"
    printf '%s' "$v"
}
# Thousands separators for readability (integers only).
group() { sed ':a; s/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/; ta' <<<"$1"; }
# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() {
    local v
    v=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ print $12 + $13 }') || true
    [[ -n $v ]] || die "cannot read /proc/$1/stat (daemon gone?)"
    printf '%s' "$v"
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
export LC_NUMERIC=C

# ---------------------------------------------------------------------------------------------
# 1. Build.

log "building tern (release) and tern-bench"
"$CARGO" build --release --bin tern ||
    die "cargo build --release failed (see the compiler output above)"
"$CARGO" build --release --features bench-tools --bin tern-bench ||
    die "building tern-bench failed (see the compiler output above)"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TERN=$TARGET/release/tern
BENCH=$TARGET/release/tern-bench
[[ -x $TERN ]] || die "$TERN was not produced by the build"
[[ -x $BENCH ]] || die "$BENCH was not produced by the build"

BIN_BYTES=$(stat -c %s "$TERN")
BIN_NOTE="stripped by the release profile"
if command -v readelf >/dev/null && readelf -S "$TERN" 2>/dev/null | grep -q '\.symtab'; then
    BIN_NOTE="WARNING: binary still has a .symtab, not stripped"
    log "$BIN_NOTE"
fi

# ---------------------------------------------------------------------------------------------
# 2. Daemon on a fresh storage.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-bench.XXXXXX") || die "mktemp -d failed"
DAEMON_PID=""
DAEMON_LOG=$WORK/daemon.log

stop_daemon() {
    # SIGTERM, up to 10 s to stop, then SIGKILL. Returns the daemon's exit status.
    local pid=$DAEMON_PID status=0
    [[ -n $pid ]] || return 0
    DAEMON_PID=""
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "daemon $pid ignored SIGTERM for 10 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || status=$?
    return "$status"
}
cleanup() {
    local rc=$?
    stop_daemon || true
    if ((rc != 0)) && [[ -s $DAEMON_LOG ]]; then
        log "last lines of the daemon log:"
        tail -n 20 "$DAEMON_LOG" >&2 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

STORAGE=$WORK/storage
RUNDIR=$WORK/run
SOCK=$RUNDIR/pv-ctrl
FSTYPE=$(df --output=fstype "$WORK" 2>/dev/null | awk 'NR == 2') || true
[[ -n $FSTYPE ]] || FSTYPE=$(stat -f -c %T "$WORK")

log "starting the daemon (storage $STORAGE, $FSTYPE)"
"$TERN" daemon --storage "$STORAGE" --rundir "$RUNDIR" </dev/null >"$DAEMON_LOG" 2>&1 &
DAEMON_PID=$!
"$BENCH" wait --socket "$SOCK" --timeout 20 >/dev/null ||
    die "the daemon did not come up on $SOCK"

alive() {
    # Not `kill -0`: that succeeds on a zombie, and the daemon is our unreaped child.
    local state
    state=$(sed 's/^.*) //' "/proc/$DAEMON_PID/stat" 2>/dev/null | cut -d' ' -f1) || true
    if [[ -z $state || $state == Z || $state == X ]]; then
        local pid=$DAEMON_PID status=0
        DAEMON_PID=""
        wait "$pid" 2>/dev/null || status=$?
        die "the daemon (pid $pid) died during $1 (exit status $status)"
    fi
}

# ---------------------------------------------------------------------------------------------
# 3. Idle memory.

sleep 1
alive "the idle wait"
IDLE_RSS=$(proc_kb "$DAEMON_PID" VmRSS)
IDLE_ANON=$(proc_kb "$DAEMON_PID" RssAnon)
IDLE_FILE=$(proc_kb "$DAEMON_PID" RssFile)
log "idle: VmRSS ${IDLE_RSS} kB, RssAnon ${IDLE_ANON} kB, RssFile ${IDLE_FILE} kB"

# ---------------------------------------------------------------------------------------------
# 4. Request rate: GET <path> over N keep-alive connections, back to back; then 64 clients
#    paced at $PACED requests/s each (latency below saturation).

declare -A RPS P50 P99 PMAX DCPU
RUNS=()
for path in $PATHS; do
    for n in $CLIENTS; do RUNS+=("$path:$n:0"); done
    ((PACED > 0)) && RUNS+=("$path:64:$PACED")
done
for run in "${RUNS[@]}"; do
    IFS=: read -r path n rate <<<"$run"
    log "GET $path: $n client(s)$( ((rate > 0)) && echo " at $rate req/s each"), ${WARMUP} s warm-up + ${SECS} s"
    c0=$(cpu_ticks "$DAEMON_PID")
    t0=$EPOCHREALTIME
    out=$("$BENCH" requests --socket "$SOCK" --clients "$n" --seconds "$SECS" \
        --warmup "$WARMUP" --path "$path" --rate "$rate") || {
        [[ -n ${out:-} ]] && log "tern-bench: $out"
        sleep 0.3 # let a dying daemon become a zombie before looking
        alive "the $n-client request run"
        die "GET $path with $n clients had errors (see above)"
    }
    alive "the $n-client request run"
    # Daemon CPU over the whole run, warm-up included: 100% is one core, the daemon's limit.
    DCPU[$run]=$(calc "100 * ($(cpu_ticks "$DAEMON_PID") - $c0) / $CLK_TCK / ($EPOCHREALTIME - $t0)" %.0f)
    RPS[$run]=$(field "$out" rps)
    P50[$run]=$(field "$out" p50_us)
    P99[$run]=$(field "$out" p99_us)
    PMAX[$run]=$(field "$out" max_us)
    log "  $(group "${RPS[$run]}") req/s, p50 ${P50[$run]} us, p99 ${P99[$run]} us," \
        "max ${PMAX[$run]} us; daemon CPU ${DCPU[$run]}%"
done

# ---------------------------------------------------------------------------------------------
# 5. Object ingest: PUT /objects/<sha> against sha256sum on the same (page-cached) file.

GIB=$((1024 * 1024 * 1024))
AVAIL=$(($(df -Pk "$WORK" | awk 'NR == 2 { print $4 }') * 1024))
INGEST_NOTE=""
if [[ -n ${BENCH_INGEST_MIB:-} ]]; then
    INGEST_BYTES=$((BENCH_INGEST_MIB * 1024 * 1024))
    INGEST_NOTE="size set by BENCH_INGEST_MIB"
elif ((AVAIL < 4 * GIB)); then
    INGEST_BYTES=$((256 * 1024 * 1024))
    INGEST_NOTE="only $((AVAIL / 1024 / 1024)) MiB free on $WORK: fell back to 256 MiB"
    log "NOTE: $INGEST_NOTE"
else
    INGEST_BYTES=$GIB
fi
INGEST_MIB=$((INGEST_BYTES / 1024 / 1024))
# The file and the stored object both need room.
((AVAIL > 2 * INGEST_BYTES + 64 * 1024 * 1024)) ||
    die "not enough space on $WORK for a ${INGEST_MIB} MiB ingest ($((AVAIL / 1024 / 1024)) MiB free)"

BLOB=$WORK/blob
log "generating a ${INGEST_MIB} MiB test file"
"$BENCH" gen --file "$BLOB" --bytes "$INGEST_BYTES" >/dev/null || die "could not write $BLOB"

log "sha256sum (reference; first run warms the cache, the second is timed)"
SHA=$(sha256sum "$BLOB" | awk '{ print $1 }')
[[ $SHA =~ ^[0-9a-f]{64}$ ]] || die "sha256sum printed no digest for $BLOB"
t0=$EPOCHREALTIME
SHA2=$(sha256sum "$BLOB" | awk '{ print $1 }')
t1=$EPOCHREALTIME
[[ $SHA2 == "$SHA" ]] || die "sha256sum gave two different digests for $BLOB"
SUM_S=$(calc "$t1 - $t0" %.3f)
SUM_MBS=$(calc "$INGEST_BYTES / ($t1 - $t0) / 1e6" %.1f)
log "  sha256sum: ${SUM_S} s, ${SUM_MBS} MB/s"

log "PUT /objects/$SHA (${INGEST_MIB} MiB, Content-Length)"
c0=$(cpu_ticks "$DAEMON_PID")
out=$("$BENCH" upload --socket "$SOCK" --file "$BLOB" --sha "$SHA" --expect 200 \
    --watch-pid "$DAEMON_PID") || {
    [[ -n ${out:-} ]] && log "tern-bench: $out"
    sleep 0.3 # let a dying daemon become a zombie before looking
    alive "the upload"
    die "the upload of ${INGEST_MIB} MiB failed (see above)"
}
alive "the upload"
c1=$(cpu_ticks "$DAEMON_PID")
PUT_S=$(field "$out" seconds)
PUT_MBS=$(field "$out" mb_per_s)
PUT_ANON=$(field "$out" peak_rss_anon_kb)
PUT_RSS=$(field "$out" peak_vm_rss_kb)
PUT_SAMPLES=$(field "$out" samples)
HWM=$(proc_kb "$DAEMON_PID" VmHWM)
RATIO=$(calc "$PUT_MBS / $SUM_MBS" %.2f)
PUT_CPU=$(calc "($c1 - $c0) / $CLK_TCK" %.2f)
PUT_CPU_PCT=$(calc "100 * $PUT_CPU / $PUT_S" %.0f)
log "  tern: ${PUT_S} s, ${PUT_MBS} MB/s (${RATIO}x sha256sum); VmHWM ${HWM} kB," \
    "RssAnon peak ${PUT_ANON} kB over ${PUT_SAMPLES} samples; daemon CPU ${PUT_CPU} s"

# The object is listed with its size and stored under its digest.
out=$("$BENCH" objects --socket "$SOCK" --sha "$SHA") || die "GET /objects failed"
[[ $(field "$out" listed) == true ]] || die "GET /objects does not list $SHA after a 200: $out"
[[ $(field "$out" size) == "$INGEST_BYTES" ]] ||
    die "GET /objects lists $SHA with $(field "$out" size) bytes, expected $INGEST_BYTES"
OBJ=$STORAGE/objects/$SHA
[[ -f $OBJ ]] || die "the daemon answered 200 but $OBJ does not exist"
[[ $(stat -c %s "$OBJ") == "$INGEST_BYTES" ]] ||
    die "$OBJ is $(stat -c %s "$OBJ") bytes, expected $INGEST_BYTES"
# A wrong digest must be refused (422) and leave nothing behind.
head -c $((4 * 1024 * 1024)) "$BLOB" >"$WORK/small"
BAD=$(printf '%064d' 0)
"$BENCH" upload --socket "$SOCK" --file "$WORK/small" --sha "$BAD" --expect 422 >/dev/null ||
    die "a PUT under a wrong sha256 was not refused with 422"
[[ ! -e $STORAGE/objects/$BAD ]] || die "a refused upload left $STORAGE/objects/$BAD behind"
alive "the checks after the upload"

# There is no DELETE in pv-ctrl: remove the object from the storage directly.
rm -f "$OBJ" "$BLOB" "$WORK/small"
out=$("$BENCH" objects --socket "$SOCK" --sha "$SHA") || die "GET /objects failed"
[[ $(field "$out" listed) == false ]] || die "GET /objects still lists $SHA after deleting it"

# ---------------------------------------------------------------------------------------------
# Clean shutdown.

STOP_STATUS=0
stop_daemon || STOP_STATUS=$?
((STOP_STATUS == 0)) || die "the daemon exited with status $STOP_STATUS on SIGTERM"

# ---------------------------------------------------------------------------------------------
# 6. Report.

ELAPSED=$(calc "$EPOCHREALTIME - $RUN_START" %.0f)
CPU=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)
REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=""
if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]]; then DIRTY="+dirty"; fi

TABLE=$(
    cat <<EOF
## Tern benchmark

$(date -u +%Y-%m-%dT%H:%M:%SZ), tern $REV$DIRTY, $(nproc) CPU ($CPU), Linux $(uname -r), storage on $FSTYPE; run took ${ELAPSED} s; load average $(cut -d' ' -f1-3 /proc/loadavg).

| Metric | Value |
|---|---|
| Binary size, target/release/tern | $(group "$BIN_BYTES") B ($(calc "$BIN_BYTES / 1048576" %.2f) MiB, $BIN_NOTE) |
| Idle VmRSS (after 1 s) | $(group "$IDLE_RSS") kB |
| Idle RssAnon | $(group "$IDLE_ANON") kB |
| Idle RssFile | $(group "$IDLE_FILE") kB |
EOF
    for run in "${RUNS[@]}"; do
        IFS=: read -r path n rate <<<"$run"
        what="GET $path, $n client$([[ $n == 1 ]] || echo s)$( ((rate > 0)) && echo " paced at $rate req/s each")"
        printf '| %s: req/s, p50 / p99 (max) latency, daemon CPU | %s req/s, %s / %s µs (max %s µs), %s%% of one core |\n' \
            "$what" "$(group "${RPS[$run]}")" "${P50[$run]}" "${P99[$run]}" "${PMAX[$run]}" "${DCPU[$run]}"
    done
    cat <<EOF
| Ingest ${INGEST_MIB} MiB: tern PUT /objects (hash + write + fsync) | ${PUT_MBS} MB/s (${PUT_S} s; daemon CPU ${PUT_CPU} s = ${PUT_CPU_PCT}%) |
| Ingest ${INGEST_MIB} MiB: sha256sum, warm page cache | ${SUM_MBS} MB/s (${SUM_S} s) |
| Ingest ratio tern / sha256sum | ${RATIO} |
| Peak VmRSS since start (VmHWM, read after the upload) | $(group "$HWM") kB |
| Peak RssAnon sampled during the upload | $(group "$PUT_ANON") kB (VmRSS peak $(group "$PUT_RSS") kB, ${PUT_SAMPLES} samples) |
EOF
    [[ -z $INGEST_NOTE ]] || printf '\nNote: %s.\n' "$INGEST_NOTE"
    printf '\nMB = 10^6 bytes. Requests: %s s after a %s s warm-up, one keep-alive connection per client thread.\n' "$SECS" "$WARMUP"
)

mkdir -p "$ROOT/target/bench"
printf '%s\n' "$TABLE" >"$ROOT/target/bench/latest.md"
printf '\n%s\n\n' "$TABLE"
log "written to target/bench/latest.md"
