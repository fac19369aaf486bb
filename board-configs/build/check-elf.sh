#!/bin/sh
# check-elf.sh FILE ARCH: FILE is a static, stripped ELF executable for ARCH
# (x86_64|aarch64|armv7|mipsel). Prints one line, fails on the first thing that is wrong.
set -eu
f=$1 arch=$2
fail() { echo "check-elf: $f: $*" >&2; exit 1; }
[ -f "$f" ] || fail "missing"
hdr=$(readelf -h "$f") || fail "not an ELF file"
case $arch in
x86_64)  want='Advanced Micro Devices X86-64' ;;
aarch64) want='AArch64' ;;
armv7)   want='ARM' ;;
mipsel)  want='MIPS R3000' ;;
*) fail "unknown arch $arch" ;;
esac
printf '%s\n' "$hdr" | grep -q "Machine: *$want\$" || fail "not $arch: $(printf '%s\n' "$hdr" | grep Machine:)"
readelf -lW "$f" | grep -q ' INTERP ' && fail "has a program interpreter (dynamically linked)"
readelf -dW "$f" 2>/dev/null | grep -q '(NEEDED)' && fail "needs shared libraries"
readelf -SW "$f" | grep -q ' \.symtab ' && fail "not stripped (.symtab present)"
extra=
case $arch in
armv7)
    readelf -AW "$f" | grep -q 'Tag_ABI_VFP_args: VFP registers' || fail "not hard-float EABI"
    extra=", EABI5 hard-float" ;;
mipsel)
    readelf -AW "$f" | grep -q 'FP ABI: Soft float' || fail "not soft-float"
    extra=", soft-float" ;;
esac
type=$(printf '%s\n' "$hdr" | sed -n 's/^ *Type: *\([A-Z]*\).*/\1/p')
[ "$type" = DYN ] && link=static-pie || link=static
echo "ok: $f: $arch, $link, stripped$extra, $(wc -c <"$f" | tr -d ' ') bytes"
