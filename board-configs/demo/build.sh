#!/usr/bin/env bash
# Builds the demo revision `make run` boots: a factory folder (`json` + `objects/<sha256>`)
# with two containers sharing one busybox root volume:
#   sensor     group platform, goal STARTED, restart_policy system: prints a reading every 5 s;
#   dashboard  group app, goal READY, restart_policy container, auto_recovery on-failure, no
#              mgmt role: sends the ready signal through pv-ctrl from inside itself.
# Usage: build.sh <out dir> <tern binary>
set -euo pipefail
out=$1
tern=$(readlink -f "$2")
here=$(cd "$(dirname "$0")" && pwd)

need() { command -v "$1" >/dev/null 2>&1; }
is_static() { ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'; }

busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ! is_static "$busybox" || ! need mksquashfs; then
    if [ "$(id -u)" = 0 ] && need apt-get; then
        echo "demo: installing busybox-static and squashfs-tools"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static squashfs-tools >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static squashfs-tools >/dev/null; }
        busybox=$(command -v busybox)
    else
        echo "demo: needs a static busybox (busybox-static) and mksquashfs (squashfs-tools)" >&2
        exit 1
    fi
fi

rm -rf "$out"
root="$out/rootfs"
mkdir -p "$root"/{bin,usr/bin,etc,proc,sys,dev,tmp,pantavisor} "$out/factory/objects" "$out/bin"
cp "$busybox" "$root/bin/busybox"
for a in sh sleep echo cat date hostname ps ls uptime printf grep; do ln -s busybox "$root/bin/$a"; done

# pvcontrol inside the root volume is Tern itself (argv[0] pvcontrol), with its libraries when
# it is not a static build.
cp "$tern" "$root/usr/bin/pvcontrol"
if ! is_static "$tern"; then
    for lib in $(ldd "$tern" | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
fi
# Process mode (no privileges): the same scripts run on the host, where this dir is on PATH.
ln -sf "$tern" "$out/bin/pvcontrol"

mksquashfs "$root" "$out/root.squashfs" -noappend -quiet -all-root >/dev/null

put() { # put <file>: store as an object, print its sha256
    local sha
    sha=$(sha256sum "$1" | cut -d' ' -f1)
    cp "$1" "$out/factory/objects/$sha"
    echo "$sha"
}
root_sha=$(put "$out/root.squashfs")

conf() { # conf <name> <script>
    cat >"$out/$1.conf" <<CONF
lxc.uts.name = $1
lxc.namespace.keep = net
lxc.environment = PATH=/usr/bin:/bin:$out/bin
lxc.init.cmd = /bin/sh -c "$2"
CONF
    put "$out/$1.conf"
}
sensor_conf=$(conf sensor 'n=0; while true; do n=$((n+1)); echo reading $n: 21.$((n % 10)) C; sleep 5; done')
dash_conf=$(conf dashboard 'echo dashboard starting; sleep 1; pvcontrol signal ready && echo ready signal sent; while true; do sleep 30; echo dashboard alive; done')

cat >"$out/factory/json" <<JSON
{
 "#spec": "pantavisor-service-system@1",
 "sensor/lxc.container.conf": "$sensor_conf",
 "sensor/root.squashfs": "$root_sha",
 "sensor/run.json": {"#spec":"service-manifest-run@1","name":"sensor","type":"lxc",
   "config":"lxc.container.conf","root-volume":"root.squashfs","group":"platform",
   "storage":{"lxc-overlay":{"persistence":"permanent"}},"volumes":[]},
 "dashboard/lxc.container.conf": "$dash_conf",
 "dashboard/root.squashfs": "$root_sha",
 "dashboard/run.json": {"#spec":"service-manifest-run@1","name":"dashboard","type":"lxc",
   "config":"lxc.container.conf","root-volume":"root.squashfs","group":"app",
   "status_goal":"READY","restart_policy":"container","roles":[],
   "auto_recovery":{"policy":"on-failure","max_retries":5,"retry_delay":2,"backoff_factor":2.0,
     "reset_window":60,"stable_timeout":10,"backoff_policy":"1min"},
   "storage":{"lxc-overlay":{"persistence":"boot"}},"volumes":[]}
}
JSON
echo "demo: factory revision in $out/factory"
