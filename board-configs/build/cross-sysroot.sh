#!/bin/sh
# Fills target/cross/<triple>/ with what a -Zbuild-std link needs and rustup has no prebuilt
# rust-std for: crt1.o crti.o crtn.o crtbegin.o crtend.o libc.a libunwind.a. rustc finds them
# through `-L native=target/cross/<triple>` (cross.mk passes it).
#
#   cross-sysroot.sh armv7-unknown-linux-musleabihf mipsel-unknown-linux-musl
#
# Debian packages come through a private apt state under target/cross/.work (its own lists and
# cache, an armhf architecture and deb-src), so no global apt or dpkg setting is changed and
# nothing is installed. Needs the Debian cross gcc of each target (cross.mk installs them).
# A directory that already holds its .done stamp is left alone.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${CROSS_SYSROOT:-$ROOT/target/cross}
W=$OUT/.work
SUITE=${CROSS_DEBIAN_SUITE:-bookworm}
MIRROR=${CROSS_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf 'cross-sysroot: %s\n' "$*" >&2; }

APT_READY=
apt_private() { # [src]: also deb-src (only mipsel needs a source package; it is ~10 MB more)
    mkdir -p "$W/lists/partial" "$W/cache/archives/partial"
    stamp=$W/lists/.done${1:+-$1}
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$W/sources.list"
    [ -n "${1:-}" ] && printf 'deb-src %s %s main\n' "$MIRROR" "$SUITE" >>"$W/sources.list"
    APT="apt-get -q -o Dir::Etc::SourceList=$W/sources.list -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists=$W/lists -o Dir::Cache=$W/cache -o Acquire::Languages=none
        -o APT::Architectures::=armhf -o APT::Get::Download-Only=true
        -o APT::Sandbox::User=root"
    if [ "$APT_READY" != "${1:-bin}" ]; then
        # Refresh when the private lists are missing or older than a week.
        if [ -z "$(find "$stamp" -mtime -7 2>/dev/null)" ]; then
            log "apt-get update (private lists under $W)"
            $APT update >/dev/null
            touch "$stamp"
        fi
        APT_READY=${1:-bin}
    fi
}

gcc_dir() { # <gnu-triple>: the cross gcc's library directory (crtbegin.o, libgcc_eh.a)
    dirname "$("$1-gcc" -print-libgcc-file-name)"
}

stub_unwind() { # <gnu-triple> <cflags> <dir>: the no-op unwinder as libunwind.a
    "$1-gcc" $2 -Os -c "$HERE/unwind_stub.c" -o "$W/unwind_stub-$1.o"
    rm -f "$3/libunwind.a"
    "$1-ar" rcs "$3/libunwind.a" "$W/unwind_stub-$1.o"
}

armv7() {
    D=$OUT/armv7-unknown-linux-musleabihf
    mkdir -p "$D"
    apt_private
    # Debian's musl-dev:armhf has the right ABI (EABI5, hard float, VFP).
    (cd "$W" && $APT download musl-dev:armhf >/dev/null)
    deb=$(ls "$W"/musl-dev_*_armhf.deb | tail -n 1)
    rm -rf "$W/armhf"
    dpkg-deb -x "$deb" "$W/armhf"
    for f in crt1.o crti.o crtn.o libc.a; do
        cp "$W/armhf/usr/lib/arm-linux-musleabihf/$f" "$D/"
    done
    G=$(gcc_dir arm-linux-gnueabihf)
    cp "$G/crtbegin.o" "$G/crtend.o" "$D/"
    # The ARM EHABI libgcc_eh needs nothing from glibc, so it serves as a real unwinder (test
    # builds unwind through it; release builds only ask it for backtraces).
    cp "$G/libgcc_eh.a" "$D/libunwind.a"
    log "armv7: $(basename "$deb") + gcc $(basename "$G") -> $D"
}

mipsel() {
    D=$OUT/mipsel-unknown-linux-musl
    mkdir -p "$D"
    # The Rust target is soft-float mips32r2; Debian's musl-dev:mipsel is hard-float, so build
    # musl itself from Debian's source package.
    if [ ! -f "$D/libc.a" ]; then
        apt_private src
        if [ -z "$(ls -d "$W"/musl-src 2>/dev/null)" ]; then
            (cd "$W" && rm -f musl_*.dsc && $APT source --download-only musl >/dev/null &&
                dpkg-source --no-check -x "$(ls musl_*.dsc | tail -n 1)" musl-src >/dev/null)
        fi
        rm -rf "$W/b-mips"
        mkdir "$W/b-mips"
        log "mipsel: building soft-float musl ($(ls "$W"/musl_*.dsc | tail -n 1 | xargs basename))"
        (cd "$W/b-mips" &&
            CC=mipsel-linux-gnu-gcc AR=mipsel-linux-gnu-ar RANLIB=mipsel-linux-gnu-ranlib \
                CFLAGS="-msoft-float -Os -ffunction-sections -fdata-sections" \
                ../musl-src/configure --target=mipsel-linux-musl --disable-shared >/dev/null &&
            make -j"${CROSS_JOBS:-1}" AR=mipsel-linux-gnu-ar RANLIB=mipsel-linux-gnu-ranlib \
                lib/libc.a lib/crt1.o lib/crti.o lib/crtn.o >/dev/null &&
            cp lib/crt1.o lib/crti.o lib/crtn.o "$D/" && cp lib/libc.a "$D/libc.a")
    fi
    G=$(gcc_dir mipsel-linux-gnu)
    for f in crtbegin.o crtend.o; do # drop their hard-float ABI tag (they hold no FP code)
        mipsel-linux-gnu-objcopy -R .gnu.attributes -R .MIPS.abiflags "$G/$f" "$D/$f"
    done
    stub_unwind mipsel-linux-gnu -msoft-float "$D"
    log "mipsel: soft-float musl + gcc $(basename "$G") crt objects + stub unwinder -> $D"
}

[ $# -gt 0 ] || { log "usage: $0 TRIPLE..."; exit 2; }
mkdir -p "$W"
for triple in "$@"; do
    D=$OUT/$triple
    [ -f "$D/.done" ] && continue
    case $triple in
    armv7-unknown-linux-musleabihf) armv7 ;;
    mipsel-unknown-linux-musl) mipsel ;;
    *) log "no recipe for $triple"; exit 2 ;;
    esac
    touch "$D/.done"
done
