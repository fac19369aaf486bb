#!/bin/sh
# Installs what a cross build needs, only when it is missing (a warm run costs ~0.1 s).
#
#   ensure.sh apt CMD=PACKAGE...           Debian package for each command not on PATH
#   ensure.sh target TOOLCHAIN TRIPLE...   rustup target (prebuilt std) for a toolchain
#   ensure.sh rust-src TOOLCHAIN           the toolchain (minimal profile) plus rust-src
#   ensure.sh cargo-bin CMD CRATE          `cargo install --locked CRATE` when CMD is missing
#
# Reaches only Debian's archive, rustup's mirror and crates.io.
set -eu

log() { printf 'ensure: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else log "need root for: $*"; exit 1
    fi
}

apt_install() {
    # Another engineer's apt may hold the lock: wait for it instead of failing.
    set -- -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends install "$@"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get "$@"; then
        log "apt-get install failed; refreshing the package lists once"
        as_root apt-get -q -o DPkg::Lock::Timeout=600 update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get "$@"
    fi
}

case "${1:-}" in
apt)
    shift
    missing=
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null 2>&1 || missing="$missing ${pair#*=}"
    done
    if [ -n "$missing" ]; then
        log "installing Debian packages:$missing"
        # shellcheck disable=SC2086 # word splitting wanted
        apt_install $missing
    fi
    ;;
target)
    tc=$2; shift 2
    installed=$(rustup target list --installed --toolchain "$tc" 2>/dev/null || true)
    for t in "$@"; do
        if ! printf '%s\n' "$installed" | grep -qx "$t"; then
            log "rustup target add --toolchain $tc $t"
            rustup target add --toolchain "$tc" "$t"
        fi
    done
    ;;
rust-src)
    tc=$2
    if ! rustup run "$tc" rustc --version >/dev/null 2>&1; then
        log "rustup toolchain install $tc (minimal, rust-src)"
        rustup toolchain install "$tc" --profile minimal --component rust-src
    fi
    if ! rustup component list --installed --toolchain "$tc" 2>/dev/null | grep -q '^rust-src'; then
        log "rustup component add rust-src --toolchain $tc"
        rustup component add rust-src --toolchain "$tc"
    fi
    ;;
cargo-bin)
    if ! command -v "$2" >/dev/null 2>&1; then
        log "cargo install --locked $3"
        nice -n 10 cargo install --locked "$3"
    fi
    ;;
*)
    log "usage: $0 apt CMD=PKG... | target TOOLCHAIN TRIPLE... | rust-src TOOLCHAIN | cargo-bin CMD CRATE"
    exit 2
    ;;
esac
