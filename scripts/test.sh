#!/usr/bin/env bash
# Runs the gates and every test suite of pii_vault, and ends with
# "N passed, N failed":
#   0. cargo fmt --check and cargo clippy -D warnings (with and without the
#      pg_test feature);
#   1. cargo test        the core (crypto, normalizers, merge patch, key
#                        sources), no PostgreSQL;
#   2. cargo pgrx test   #[pg_test]s inside a live backend;
#   3. pg_test/run.sh    end-to-end pg_regress suites on a throwaway
#                        cluster: roles, attacks, key failures, leak scans;
#      pg_test/day_two.sh  upgrade from every earlier release, dump and
#                        restore, key rotation under load;
#   4. bench/run.sh --smoke --secdef-cost --floor --budget-cost, so the benchmark keeps working
#      (not a timing).
# Installs whatever is missing first (scripts/setup.sh). Exit status is 0
# only when nothing failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config

passed=0
failed=0
section() { echo; echo "==== $*"; }

# Adds up "test result: ... N passed; M failed" lines of cargo's output; a
# run that produced no result line at all (build error) counts as a failure.
count_cargo() { # log, exit status
    local log="$1" status="$2" p f
    p=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')
    f=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
    if ! grep -q "^test result:" "$log" || { [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; }; then
        f=$((f + 1))
        tail -n 40 "$log"
    fi
    passed=$((passed + p)); failed=$((failed + f))
    echo "$p passed, $f failed"
}

# Adds up a suite's closing "NAME: N passed, N failed" line; none at all
# (the script died) counts as a failure.
count_suite() { # name, log
    local line
    line=$(grep -E "^$1: [0-9]+ passed, [0-9]+ failed" "$2" | tail -1)
    if [ -n "$line" ]; then
        passed=$((passed + $(awk '{print $2}' <<<"$line")))
        failed=$((failed + $(awk '{print $4}' <<<"$line")))
    else
        failed=$((failed + 1))
    fi
}

section "setup"
if ! scripts/setup.sh; then
    echo "0 passed, 1 failed"
    exit 1
fi

LOGS="$(mktemp -d /tmp/pii_vault_test_logs.XXXXXX)"

section "gates: cargo fmt --check, cargo clippy -D warnings"
gate() { # description, command...
    local what="$1"; shift
    if "$@" >"$LOGS/gate.log" 2>&1; then
        echo "ok     - $what"; passed=$((passed + 1))
    else
        tail -n 40 "$LOGS/gate.log"; echo "FAILED - $what"; failed=$((failed + 1))
    fi
}
gate "cargo fmt --check" cargo fmt --check
gate "cargo clippy --all-targets -- -D warnings" cargo clippy --all-targets -- -D warnings
gate "cargo clippy --all-targets --features pg_test -- -D warnings" \
    cargo clippy --all-targets --features pg_test -- -D warnings

section "cargo test (core, no PostgreSQL)"
cargo test --quiet >"$LOGS/cargo_test.log" 2>&1
count_cargo "$LOGS/cargo_test.log" $?
grep -E "^test .* FAILED|panicked" "$LOGS/cargo_test.log" || true

section "cargo pgrx test pg15 (#[pg_test]s in a live backend)"
PGRX_DATA="$(mktemp -d /tmp/pii_vault_pgrx_data.XXXXXX)"
chown postgres:postgres "$PGRX_DATA"
# Only the pg_tests module: the core's unit tests already ran above.
cargo pgrx test pg15 pg_tests:: --runas postgres --pgdata "$PGRX_DATA" >"$LOGS/pgrx_test.log" 2>&1
count_cargo "$LOGS/pgrx_test.log" $?
grep -E "^test .* FAILED" "$LOGS/pgrx_test.log" || true
rm -rf "$PGRX_DATA"

section "scripts/install.sh (release build, renamed into place)"
if scripts/install.sh >"$LOGS/install.log" 2>&1; then
    echo "installed"
    section "pg_test (end-to-end suites on a throwaway cluster)"
    pg_test/run.sh | tee "$LOGS/pg_test.log"
    count_suite pg_test "$LOGS/pg_test.log"
    section "pg_test/day_two.sh (upgrade, dump and restore, key rotation)"
    pg_test/day_two.sh | tee "$LOGS/day_two.log"
    count_suite day_two "$LOGS/day_two.log"
    section "benchmark smoke run (bench/run.sh --smoke --secdef-cost --floor --budget-cost: small N, keeps the benchmark working)"
    if bench/run.sh --smoke --secdef-cost --floor --budget-cost --no-install >"$LOGS/bench.log" 2>&1 \
        && grep -q "^| store | 1 |" "$LOGS/bench.log" && grep -q "^## What SECURITY DEFINER" "$LOGS/bench.log" \
        && grep -q "^## What a lookup could ever reach" "$LOGS/bench.log" \
        && grep -q "^## What the per-role read budget costs" "$LOGS/bench.log"; then
        grep -E "^\| (get|lookup|store) |^## Memory" "$LOGS/bench.log"
        echo "ok     - benchmark smoke run"
        passed=$((passed + 1))
    else
        tail -n 30 "$LOGS/bench.log"
        echo "FAILED - benchmark smoke run"
        failed=$((failed + 1))
    fi
else
    tail -n 40 "$LOGS/install.log"
    failed=$((failed + 1))
fi

rm -rf "$LOGS"
echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
