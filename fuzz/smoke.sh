#!/usr/bin/env bash
# Usage: bash fuzz/smoke.sh [SECONDS] [TARGET...]
#
# Runs every cargo-fuzz target (or only the TARGETs named) for SECONDS seconds each (default
# 60), starting from fuzz/seeds/<target> plus whatever fuzz/corpus/<target> already holds, and
# prints one summary line per target. Installs the nightly toolchain and cargo-fuzz when they
# are missing. Exits non-zero if any target crashed (panic, sanitizer report, timeout, OOM) or
# did not build. Targets are built with debug assertions (-a), so integer overflow panics too,
# and with cargo-fuzz's default AddressSanitizer; fuzz/dicts/<target>.dict is used if present.
set -euo pipefail

secs=${1:-60}
shift || true
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs < 1)); then
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: installing the nightly toolchain" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo +nightly install cargo-fuzz --locked
fi

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

logdir=$(mktemp -d "${TMPDIR:-/tmp}/tern-fuzz-smoke.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

# Build everything first so a compile error is reported as such, not as a crash.
echo "fuzz: building the targets" >&2
if ! cargo +nightly fuzz build -a >"$logdir/build.log" 2>&1; then
    cat "$logdir/build.log" >&2
    echo "fuzz: build failed" >&2
    exit 1
fi

status=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    args=(-max_total_time="$secs" -print_final_stats=1)
    if [[ -f fuzz/dicts/$t.dict ]]; then
        args+=(-dict="fuzz/dicts/$t.dict")
    fi
    log=$logdir/$t.log
    echo "fuzz: $t for ${secs}s ..." >&2
    start=$(date +%s)
    if cargo +nightly fuzz run -a "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- "${args[@]}" >"$log" 2>&1; then
        verdict="no crash"
    else
        verdict="CRASHED"
        status=1
        echo "---- $t: last lines of the log ----" >&2
        tail -n 40 "$log" >&2
        echo "-----------------------------------" >&2
    fi
    elapsed=$(($(date +%s) - start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [[ -z $runs ]]; then
        runs=$(sed -n 's/^Done \([0-9][0-9]*\) runs.*/\1/p' "$log" | tail -n 1)
    fi
    if [[ -z $runs ]]; then
        # A crash stops libFuzzer before its final stats; take the last status line.
        runs=$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)
    fi
    runs=${runs:-0}
    rate=$(sed -n 's/^stat::average_exec_per_sec: *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
    rate=${rate:-$((runs / (elapsed > 0 ? elapsed : 1)))}
    line="fuzz: $t: $runs executions in ${secs}s (~$rate/s), $verdict"
    if [[ $verdict == CRASHED ]]; then
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        panic=$(grep -m1 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "$log" || true)
        line+=" — ${panic:-see log above}${artifact:+ — artifact: $artifact}"
    fi
    summary+=("$line")
    echo "$line (wall ${elapsed}s)" >&2
done

echo
for line in "${summary[@]}"; do
    echo "$line"
done
exit $status
