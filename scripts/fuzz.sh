#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each):
#   scripts/fuzz.sh [SECONDS]
# Targets: normalize (email/phone/login/token), record_json (indexed
# fields, field selection, merge patch), envelope_open (the stored-envelope
# decoder), audit_batch (the audit batch decoder). Needs the nightly
# toolchain (present on this machine) and cargo-fuzz, which it installs
# when missing. Not part of CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"
export PATH="$HOME/.cargo/bin:$PATH"
seconds="${1:-60}"
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in normalize record_json envelope_open audit_batch; do
    echo "fuzz: $target for ${seconds}s"
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" 2>&1 | grep -E '^(Done|SUMMARY)|panicked' || true
    if [ -n "$(ls artifacts/"$target" 2>/dev/null)" ]; then
        echo "fuzz: $target found a crash: fuzz/artifacts/$target"
        exit 1
    fi
done
echo "fuzz: no crash"
