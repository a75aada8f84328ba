#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each):
#   scripts/fuzz.sh [SECONDS]
# Targets (on the core crate, no PostgreSQL): normalize (email/phone/login/
# token), record_json (indexed fields, field selection, merge patch),
# envelope_open (the stored-envelope decoder), audit_batch (the audit batch
# decoder). Needs the nightly toolchain and cargo-fuzz (scripts/setup.sh
# installs both). Fails when a target does not build, does not run to its
# time limit, or finds a crash. scripts/test.sh builds the targets (no run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
export PATH="$HOME/.cargo/bin:$PATH"
seconds="${1:-60}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in normalize record_json envelope_open audit_batch; do
    echo "fuzz: $target for ${seconds}s"
    # libFuzzer ends a run that reached its time limit with "Done N runs".
    if cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" >"$log" 2>&1 \
        && grep -q '^Done [0-9]* runs' "$log"; then
        grep '^Done' "$log"
    else
        tail -n 30 "$log"
        echo "fuzz: $target did not build, did not run to its limit, or crashed (fuzz/artifacts/$target)"
        exit 1
    fi
done
echo "fuzz: every target ran ${seconds}s without a crash"
