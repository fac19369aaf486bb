#!/bin/bash
# Smoke run of a (possibly foreign) tern binary:
#
#   smoke.sh [--qemu qemu-mipsel-static] [--config board-configs/BOARD] BINARY
#
# Starts `tern daemon` on a fresh temporary storage and run dir (the flags override any paths
# of the config file), then over its control socket with the host's curl:
#   GET /steps                     200, revision "0" listed
#   PUT /objects/<sha256>          200 for a small file, then GET /objects lists it
#   GET /config2                   with --config: every key of the file is in effect with its
#                                  value (the two paths: from the flags), no unknown key
#   GET /containers                the factory revision's one container, run in process mode
#                                  (TERN_CONTAINER_MODE=process: no root, no loop devices), is
#                                  STARTED and its console.log holds what its init printed
# and finally SIGTERM: the daemon must exit 0 within 10 s, its container stopped. Under
# qemu-user the pid is the emulator's, which forwards the signal to the guest; the container's
# init is the host's /bin/sh (qemu-user execs a native binary natively). Any failure exits 1
# with the daemon's log.
set -euo pipefail

qemu=() config=
while [ $# -gt 1 ]; do
    case $1 in
    --qemu) qemu=("$2"); shift 2 ;;
    --config) config=$2; shift 2 ;;
    *) break ;;
    esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--qemu QEMU] [--config FILE] BINARY" >&2; exit 2; }
bin=$1
[ -x "$bin" ] || { echo "smoke: $bin: not an executable" >&2; exit 2; }
command -v curl >/dev/null || { echo "smoke: curl is needed" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tern-smoke.XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
sock=$tmp/run/pv-ctrl
log=$tmp/daemon.log

fail() {
    echo "smoke: FAIL: $*" >&2
    echo "---- daemon log ----" >&2
    cat "$log" >&2 || true
    exit 1
}
ok() { echo "smoke: ok: $*"; }

# curl_ctrl METHOD PATH [curl args...]: body to $tmp/body, prints the status code.
curl_ctrl() {
    local method=$1 path=$2
    shift 2
    curl -sS --max-time 20 --unix-socket "$sock" -X "$method" -o "$tmp/body" \
        -w '%{http_code}' "$@" "http://localhost$path"
}

# The factory revision: one container "smoke" whose init is a host shell loop. Process mode
# never mounts the root volume, so any object stands in for it.
mkdir -p "$tmp/factory/objects"
put() { # put FILE: store as a factory object, print its sha256
    local sha
    sha=$(sha256sum "$1" | cut -d' ' -f1)
    cp "$1" "$tmp/factory/objects/$sha"
    echo "$sha"
}
printf 'placeholder root volume (process mode does not mount it)\n' >"$tmp/root.squashfs"
cat >"$tmp/smoke.conf" <<'CONF'
lxc.uts.name = smoke
lxc.namespace.keep = net
lxc.environment = PATH=/usr/bin:/bin
lxc.init.cmd = /bin/sh -c "echo smoke container up; while true; do sleep 1; done"
CONF
cat >"$tmp/factory/json" <<JSON
{"#spec":"pantavisor-service-system@1",
 "smoke/lxc.container.conf":"$(put "$tmp/smoke.conf")",
 "smoke/root.squashfs":"$(put "$tmp/root.squashfs")",
 "smoke/run.json":{"#spec":"service-manifest-run@1","name":"smoke","type":"lxc",
   "config":"lxc.container.conf","root-volume":"root.squashfs",
   "storage":{"lxc-overlay":{"persistence":"boot"}},"volumes":[]}}
JSON

args=(daemon)
[ -n "$config" ] && args+=(--config "$config")
args+=(--storage "$tmp/storage" --rundir "$tmp/run" --factory "$tmp/factory"
    --set TERN_CONTAINER_MODE=process)
start=$(date +%s%N)
# A clean environment: PV_*/PH_*/TERN_* variables of the caller would override the file.
env -i PATH="$PATH" "${qemu[@]}" "$bin" "${args[@]}" >"$log" 2>&1 &
pid=$!
for _ in $(seq 200); do
    [ -S "$sock" ] && break
    kill -0 "$pid" 2>/dev/null || fail "daemon exited during start-up"
    sleep 0.1
done
[ -S "$sock" ] || fail "no control socket after 20 s"
ok "${qemu[*]:+${qemu[*]} }$(basename "$bin") ${args[*]} (socket after $((($(date +%s%N) - start) / 1000000)) ms)"

code=$(curl_ctrl GET /steps) || fail "GET /steps: curl failed"
[ "$code" = 200 ] || fail "GET /steps: HTTP $code: $(cat "$tmp/body")"
grep -q '"name":"0"' "$tmp/body" || fail "GET /steps: revision 0 missing: $(cat "$tmp/body")"
ok "GET /steps -> 200 $(head -c 100 "$tmp/body")"

printf 'tern smoke object %s\n' "$(date +%s%N)" >"$tmp/object"
sha=$(sha256sum "$tmp/object" | cut -d' ' -f1)
size=$(wc -c <"$tmp/object" | tr -d ' ')
code=$(curl_ctrl PUT "/objects/$sha" --data-binary "@$tmp/object") || fail "PUT object: curl failed"
[ "$code" = 200 ] || fail "PUT /objects/$sha: HTTP $code: $(cat "$tmp/body")"
ok "PUT /objects/${sha:0:12}... ($size bytes) -> 200"
code=$(curl_ctrl GET /objects) || fail "GET /objects: curl failed"
[ "$code" = 200 ] || fail "GET /objects: HTTP $code"
grep -q "\"sha256\":\"$sha\",\"size\":\"$size\"" "$tmp/body" ||
    fail "GET /objects does not list $sha: $(cat "$tmp/body")"
ok "GET /objects -> 200, lists it"

if [ -n "$config" ]; then
    code=$(curl_ctrl GET /config2) || fail "GET /config2: curl failed"
    [ "$code" = 200 ] || fail "GET /config2: HTTP $code"
    n=0
    while IFS='=' read -r key value; do
        value=${value%\"}; value=${value#\"}
        case $key in
        PV_STORAGE_MNTPOINT | PV_SYSTEM_RUNDIR) # overridden by --storage / --rundir
            want="{\"key\":\"$key\",\"value\":\"$tmp/" level=args ;;
        *) want="{\"key\":\"$key\",\"value\":\"$value\",\"modified\":\"pv conf file\"}" level="pv conf file" ;;
        esac
        # Plain values only (board files hold no quotes or backslashes to JSON-escape).
        grep -qF "$want" "$tmp/body" || fail "GET /config2: $key is not '$value' from the $level"
        n=$((n + 1))
    done < <(sed -n 's/^[[:space:]]*\([A-Za-z][A-Za-z0-9_.]*\)[[:space:]]*=[[:space:]]*\(.*[^[:space:]]\)[[:space:]]*$/\1=\2/p' "$config")
    ! grep -qi 'unknown config key' "$log" || fail "unknown key in $config: $(grep -i 'unknown config key' "$log")"
    ok "GET /config2 -> 200, all $n keys of $config in effect, no unknown key"
fi

for _ in $(seq 100); do
    code=$(curl_ctrl GET /containers) || fail "GET /containers: curl failed"
    grep -q '"name":"smoke"[^}]*"status":"STARTED"' "$tmp/body" && break
    sleep 0.1
done
grep -q '"name":"smoke"[^}]*"status":"STARTED"' "$tmp/body" ||
    fail "GET /containers: container smoke not STARTED after 10 s: $(cat "$tmp/body")"
console=$(find "$tmp/storage/logs" -path '*/smoke/*' -name console.log 2>/dev/null | head -n 1)
for _ in $(seq 50); do
    [ -n "$console" ] && grep -q 'smoke container up' "$console" && break
    sleep 0.1
    console=$(find "$tmp/storage/logs" -path '*/smoke/*' -name console.log 2>/dev/null | head -n 1)
done
[ -n "$console" ] && grep -q 'smoke container up' "$console" ||
    fail "the container's console.log does not hold its output"
init=$(sed -n 's/.*smoke: init pid \([0-9]*\).*/\1/p' "$log" | head -n 1)
ok "GET /containers -> smoke STARTED (process mode, init pid ${init:-?}), console.log: $(head -n 1 "$console")"

kill -TERM "$pid"
for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$pid" 2>/dev/null && fail "still running 10 s after SIGTERM"
rc=0
wait "$pid" || rc=$?
pid=
[ "$rc" = 0 ] || fail "exit status $rc after SIGTERM"
[ ! -e "$sock" ] || echo "smoke: note: the socket file is left behind after exit" >&2
if [ -n "$init" ] && kill -0 "$init" 2>/dev/null; then fail "container init $init outlived the daemon"; fi
ok "SIGTERM -> exit 0, container stopped"
