#!/bin/sh
# binfmt.sh ARCH -- COMMAND...   (ARCH: arm | aarch64 | mipsel)
#
# Runs COMMAND with a binfmt_misc handler for ARCH registered, so the kernel itself runs
# foreign ELF files through qemu-user. The end-to-end tests need this: they spawn the foreign
# `tern` binary directly (env!("CARGO_BIN_EXE_tern")), which a cargo `runner` cannot wrap.
#
# The entry is Debian's own (/usr/lib/binfmt.d/qemu-ARCH.conf from qemu-user-static): the
# interpreter is qemu-ARCH-static under the name .../ARCH-binfmt-P, flags O, P and F. F opens
# the interpreter at registration, so it works in any mount namespace or chroot; P keeps
# argv[0] as the caller gave it (the binary acts as `pvcontrol` when called by that name).
#
# binfmt_misc is mounted when it is not (root only). An entry this script added is removed
# when COMMAND ends, and a mount it made is undone, so the handler lives for this run only;
# an entry that was already there is used and left alone. When registration is impossible
# (not root, no binfmt_misc in the kernel, a read-only /proc), COMMAND is not run: the script
# says why and runs the shell command in $BINFMT_OTHERWISE instead (the tests a cargo runner
# can still wrap), or exits 0 when there is none, because the end-to-end part is then skipped,
# not failed.
set -eu

arch=$1
shift
[ "${1:-}" = -- ] && shift
name=qemu-$arch
dir=/proc/sys/fs/binfmt_misc
conf=/usr/lib/binfmt.d/$name.conf

skip() {
    echo "binfmt: cannot register a $name handler: $*" >&2
    echo "binfmt: SKIPPED: $*" >&2
    echo "binfmt: SKIPPED the end-to-end tests ($*)"
    if [ -n "${BINFMT_OTHERWISE:-}" ]; then
        echo "binfmt: running instead: $BINFMT_OTHERWISE"
        exec sh -c "$BINFMT_OTHERWISE"
    fi
    exit 0
}

mounted=
if [ ! -e "$dir/register" ]; then
    [ "$(id -u)" = 0 ] || skip "binfmt_misc is not mounted and this is not root"
    grep -qw binfmt_misc /proc/filesystems || skip "the kernel has no binfmt_misc"
    mount -t binfmt_misc binfmt_misc "$dir" 2>/dev/null || skip "mount -t binfmt_misc failed"
    mounted=1
fi

added=
if [ -e "$dir/$name" ] && head -n 1 "$dir/$name" | grep -qx enabled; then
    echo "binfmt: using the existing $name handler ($(sed -n 's/^interpreter //p' "$dir/$name"))"
else
    [ -f "$conf" ] || skip "$conf is missing (package qemu-user-static)"
    [ -w "$dir/register" ] || skip "$dir/register is not writable"
    [ -e "$dir/$name" ] && echo -1 >"$dir/$name" # a disabled leftover
    if ! cat "$conf" >"$dir/register" 2>/dev/null; then
        [ -n "$mounted" ] && umount "$dir" 2>/dev/null
        skip "writing $dir/register was refused"
    fi
    added=1
    echo "binfmt: registered $name for this run: $(sed -n 's/^interpreter //p' "$dir/$name"), flags $(sed -n 's/^flags: //p' "$dir/$name")"
fi

rc=0
"$@" || rc=$?

if [ -n "$added" ] && [ -e "$dir/$name" ]; then
    echo -1 >"$dir/$name" && echo "binfmt: removed $name"
fi
if [ -n "$mounted" ] && [ -z "$(ls "$dir" | grep -v -x -e register -e status)" ]; then
    umount "$dir" 2>/dev/null || true
fi
exit $rc
