#!/usr/bin/env bash
# Hostile clients (`make bench`): one unprivileged uid floods a listener with trickling and
# silent connections (reopening whatever the daemon closes or refuses) while a management
# client loops GET on fresh or on kept-alive connections. Measured on pv-ctrl and on v1, with
# a short baseline without the flood. Appends a table to target/bench/latest.md.
#
# The flood runs as another uid (`tern-flood flood --uid`, setuid before it connects): needs
# root. Knobs: FLOOD_SECONDS (60), FLOOD_TRICKLE (500), FLOOD_SILENT (200), FLOOD_UID (65534),
# FLOOD_RECONNECT_MS (100), BASELINE_SECONDS (5).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
CARGO=${CARGO:-cargo}
OUT=${CARGO_TARGET_DIR:-$ROOT/target}
SECS=${FLOOD_SECONDS:-60}
TRICKLE=${FLOOD_TRICKLE:-500}
SILENT=${FLOOD_SILENT:-200}
FUID=${FLOOD_UID:-65534}
RECONNECT=${FLOOD_RECONNECT_MS:-100}
BASE=${BASELINE_SECONDS:-5}

source tests/bench/lib.sh  # the cd above put us at the repository root

if [[ $(id -u) != 0 ]]; then
    log "SKIP hostile-client benchmarks: the flood needs root to run as another uid"
    exit 0
fi
"$CARGO" build --release --bin tern >&2 || die "cargo build --release failed"
"$CARGO" build --release --features bench-tools --bin tern-flood >&2 || die "building tern-flood failed"
TERN=$OUT/release/tern
FLOOD=$OUT/release/tern-flood

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tern-hostile.XXXXXX")
chmod 755 "$WORK"
DPID=""
FPID=""
cleanup() {
    [[ -n $FPID ]] && kill "$FPID" 2>/dev/null || true
    if [[ -n $DPID ]]; then
        kill -TERM "$DPID" 2>/dev/null || true
        wait "$DPID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Below the ephemeral range: the flood leaves thousands of its ports in TIME_WAIT.
PORT=$((20000 + RANDOM % 10000))
SOCK=$WORK/run/pv-ctrl
"$TERN" daemon --storage "$WORK/storage" --rundir "$WORK/run" \
    --set "TERN_V1_ADDRESS=127.0.0.1:$PORT" >"$WORK/daemon.log" 2>&1 &
DPID=$!
for _ in $(seq 200); do [[ -S $SOCK && -s $WORK/storage/cache/v1-api-key ]] && break; sleep 0.05; done
[[ -S $SOCK ]] || die "the daemon did not come up"
chmod 777 "$SOCK" # let the flooding uid connect, as a container's bind mount would
KEY=$(cat "$WORK/storage/cache/v1-api-key")

# target <ctrl|v1>: the options that reach that listener.
target() { if [[ $1 == ctrl ]]; then echo "--socket $SOCK"; else echo "--tcp 127.0.0.1:$PORT"; fi; }
mgmt_args() { if [[ $1 == ctrl ]]; then echo "--path /steps"; else echo "--path /v1/device --key $KEY"; fi; }

declare -A R
for where in ctrl v1; do
    for mode in keepalive fresh; do
        log "$where, $mode: baseline ${BASE} s"
        # shellcheck disable=SC2046
        R[base,$where,$mode]=$("$FLOOD" mgmt $(target $where) $(mgmt_args $where) --mode $mode --seconds "$BASE")
        log "$where, $mode: $TRICKLE trickling + $SILENT silent from uid $FUID, mgmt client ${SECS} s"
        # shellcheck disable=SC2046
        "$FLOOD" flood $(target $where) --uid "$FUID" --trickle "$TRICKLE" --silent "$SILENT" \
            --seconds $((SECS + 5)) --reconnect-ms "$RECONNECT" >"$WORK/flood.json" &
        FPID=$!
        sleep 3
        # shellcheck disable=SC2046
        R[flood,$where,$mode]=$("$FLOOD" mgmt $(target $where) $(mgmt_args $where) --mode $mode --seconds "$SECS")
        wait "$FPID" || die "the flood failed"
        FPID=""
        R[hostile,$where,$mode]=$(cat "$WORK/flood.json")
        log "  mgmt: ${R[flood,$where,$mode]}"
        log "  flood: ${R[hostile,$where,$mode]}"
        kill -0 "$DPID" || die "the daemon died"
        sleep 6 # let the last flood connections time out
    done
done
FLOOD_LINES=$(grep -c 'flood:' "$WORK/daemon.log" || true)
RSS=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$DPID/status")

{
    printf '\n## Hostile clients\n\n'
    printf '%s trickling (a request byte every 2 s) + %s silent connections from uid %s, each reopened %s ms after the daemon closes or refuses it, for %s s; meanwhile root loops GET (pv-ctrl `/steps`, v1 `/v1/device` with the key). Baseline: the same client for %s s without the flood.\n\n' \
        "$TRICKLE" "$SILENT" "$FUID" "$RECONNECT" "$SECS" "$BASE"
    printf '| listener, connections | baseline p50 / p99 | flood: requests | flood: p50 / p99 / max | flood: refused / errors / lost conns | flood side: connects / 503 / 408 / closed |\n|---|---|---|---|---|---|\n'
    for where in ctrl v1; do
        for mode in keepalive fresh; do
            b=${R[base,$where,$mode]} f=${R[flood,$where,$mode]} h=${R[hostile,$where,$mode]}
            printf '| %s, %s | %s / %s µs | %s | %s / %s / %s µs | %s / %s / %s | %s / %s / %s / %s |\n' \
                "$where" "$mode" "$(field "$b" p50_us)" "$(field "$b" p99_us)" \
                "$(field "$f" requests)" "$(field "$f" p50_us)" "$(field "$f" p99_us)" "$(field "$f" max_us)" \
                "$(field "$f" refused)" "$(field "$f" errors)" "$(field "$f" lost_connections)" \
                "$(field "$h" connects)" "$(field "$h" refused_503)" "$(field "$h" timed_out_408)" "$(field "$h" closed)"
        done
    done
    printf '\nDaemon log lines about floods over the run: %s; daemon VmHWM %s kB.\n' "$FLOOD_LINES" "$RSS"
} | tee -a "$ROOT/target/bench/latest.md"
