#!/usr/bin/env bash
# Run every fuzz target for SECONDS seconds (default 60) from its seeds; installs cargo-fuzz
# on the nightly toolchain when missing. Exits non-zero if any target crashed.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
    cargo +nightly install cargo-fuzz --locked
fi
status=0
for target in $(cargo +nightly fuzz list); do
    mkdir -p "corpus/$target"
    log=$(mktemp)
    if cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- -max_total_time="$secs" >"$log" 2>&1; then
        verdict=ok
    else
        verdict=CRASHED
        status=1
        tail -30 "$log"
    fi
    runs=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1 | grep -oE '[0-9]+' || echo "?")
    echo "fuzz: $target: $runs executions in ${secs}s: $verdict"
    rm -f "$log"
done
exit $status
