#!/usr/bin/env bash
# Runs the gates and every test suite of pii_vault, and ends with
# "N passed, N failed":
#   0. gates: cargo fmt --check and cargo clippy -D warnings over the
#      workspace (and the extension with the pg_test feature); the core
#      crate free of pgrx (cargo tree); shellcheck on every shell script;
#      cargo deny (licenses, bans, sources); the fuzz targets build;
#   1. cargo test        the workspace's tests without PostgreSQL: the core
#                        (crypto, normalizers, merge patch, key sources,
#                        budgets, audit events) and the extension's pure
#                        helpers; then Miri over the core's tests that run
#                        under it;
#   2. cargo pgrx test   #[pg_test]s inside a live backend;
#   3. pg_test/run.sh    end-to-end pg_regress suites on a throwaway
#                        cluster: roles, attacks, key failures, leak scans;
#      pg_test/day_two.sh  upgrade from every earlier release, dump and
#                        restore, key rotation under load;
#      pg_test/replicas.sh  a primary and a streaming standby: operator
#                        functions on the standby, writes refused there;
#      pg_test/logical.sh  a publisher and a subscriber vault: logical
#                        replication of the vault, used meanwhile, cut over;
#      pg_test/shards.sh  two shard clusters and a PL/Proxy proxy database:
#                        the recipes of examples/plproxy/, tokens that carry
#                        their shard, uniqueness and budgets across shards;
#      pg_test/package.sh  the Debian package (scripts/package.sh): dpkg -i,
#                        its files, the extension at work, dpkg -i of a
#                        higher revision under a running server with a
#                        session open, the upgrade path from its scripts;
#   4. bench/run.sh --smoke --secdef-cost --floor --budget-cost, so the benchmark keeps working
#      (not a timing).
# Installs whatever is missing first (scripts/setup.sh). Exit status is 0
# only when nothing failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PATH="$HOME/.cargo/bin:$PATH"

passed=0
failed=0
section() { echo; echo "==== $*"; }

# Adds up "test result: ... N passed; M failed" lines of cargo's output; a
# run that produced no result line at all (build error), or passed no test
# at all (a renamed module, a filter that matches nothing), counts as a
# failure.
count_cargo() { # log, exit status
    local log="$1" status="$2" p f
    p=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s += $1} END {print s + 0}')
    f=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s += $1} END {print s + 0}')
    if ! grep -q "^test result:" "$log" || [ "$p" -eq 0 ] || { [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; }; then
        f=$((f + 1))
        tail -n 40 "$log"
    fi
    passed=$((passed + p)); failed=$((failed + f))
    echo "$p passed, $f failed"
}

# Adds up a suite's closing "NAME: N passed, N failed" line; none at all
# (the script died), or none passed, counts as a failure.
count_suite() { # name, log
    local line
    line=$(grep -E "^$1: [0-9]+ passed, [0-9]+ failed" "$2" | tail -1)
    if [ -n "$line" ] && [ "$(awk '{print $2}' <<<"$line")" -gt 0 ]; then
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
gate "cargo fmt --all --check" cargo fmt --all --check
gate "cargo clippy --workspace --all-targets -- -D warnings" cargo clippy --workspace --all-targets -- -D warnings
gate "cargo clippy --all-targets --features pg_test -- -D warnings (the extension)" \
    cargo clippy --all-targets --features pg_test -- -D warnings
# The core stays testable without PostgreSQL: pgrx nowhere in its closure.
core_is_pgrx_free() {
    cargo tree -p pii_vault_core -e normal,build,dev --prefix none >"$LOGS/core_tree.log" || return 1
    grep -q '^pii_vault_core ' "$LOGS/core_tree.log" && ! grep -Eq '^(pgrx|pgrx-[a-z-]+) ' "$LOGS/core_tree.log"
}
gate "cargo tree -p pii_vault_core: no pgrx in the core's dependencies" core_is_pgrx_free
mapfile -t shell_scripts < <(git ls-files '*.sh' .ci/run)
gate "shellcheck -x -S warning on ${#shell_scripts[@]} shell scripts" \
    shellcheck -x -P SCRIPTDIR -S warning "${shell_scripts[@]}"
# Offline: no advisory database is reachable here (deny.toml).
gate "cargo deny check licenses bans sources" cargo deny --offline check licenses bans sources
# PGXN's META.json names this release and its frozen install script, and
# LICENSE is the license the crate declares.
meta_matches() {
    python3 - <<'PY'
import json, pathlib, re, sys
version = re.search(r'^version = "([^"]+)"', pathlib.Path("Cargo.toml").read_text(), re.M).group(1)
meta = json.loads(pathlib.Path("META.json").read_text())
provided = meta["provides"]["pii_vault"]
ok = (meta["version"] == provided["version"] == version
      and pathlib.Path(provided["file"]).is_file() and provided["file"].endswith(f"--{version}.sql")
      and meta["license"] == "apache_2_0" and 'license = "Apache-2.0"' in pathlib.Path("Cargo.toml").read_text()
      and pathlib.Path("LICENSE").read_text().lstrip().startswith("Apache License\n                        Version 2.0"))
sys.exit(0 if ok else 1)
PY
}
gate "META.json names release $(grep -m1 '^version = ' Cargo.toml | cut -d'"' -f2) and its install script; LICENSE is Apache-2.0" meta_matches
gate "cargo +nightly fuzz build (every fuzz target compiles)" \
    bash -c 'cd fuzz && cargo +nightly fuzz build'

section "cargo test --workspace (no PostgreSQL)"
cargo test --workspace --quiet >"$LOGS/cargo_test.log" 2>&1
count_cargo "$LOGS/cargo_test.log" $?
grep -E "^test .* FAILED|panicked" "$LOGS/cargo_test.log" || true

section "cargo +nightly miri test -p pii_vault_core (a stated subset)"
# Miri interprets Rust only, at a few thousand steps a second: tests that
# reach ring's assembly, a C call (fork, geteuid, a key command's process)
# or ICU's large tables cannot run, and long loops over safe code take
# many minutes. The subset (about 5 minutes): every audit event test (its
# fixed layout, copied into used slots); the budgets' cells from zeroed
# memory, a raised budget, the one warning a minute, and compare-and-swap
# from four threads (checked for data races); the token filters; the
# document bindings; the merge patch and projections. Property tests run
# 8 cases each.
MIRI_RUN=(audit_event:: budget::tests::concurrent_charges budget::tests::a_raised_budget
          budget::tests::one_warning_per_minute crypto::token_filter::tests::every_member
          crypto::token_filter::tests::order_does_not crypto::token_filter::tests::a_malformed
          crypto::token_filter::tests::an_empty crypto::token_filter::tests::the_format_is_stable
          crypto::document_binding_tests record::tests::rfc7386 record::tests::big_numbers
          record::tests::patch_must record::tests::projection_keeps record::tests::every_non_object
          record::tests::merge_patch_removes)
PROPTEST_CASES=8 MIRIFLAGS="-Zmiri-disable-isolation" cargo +nightly miri test -p pii_vault_core --lib -- \
    "${MIRI_RUN[@]}" >"$LOGS/miri.log" 2>&1
count_cargo "$LOGS/miri.log" $?
grep -E "^test .* FAILED|panicked|Undefined Behavior" "$LOGS/miri.log" || true

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
    section "pg_test/replicas.sh (a primary and a streaming standby)"
    pg_test/replicas.sh | tee "$LOGS/replicas.log"
    count_suite replicas "$LOGS/replicas.log"
    # scripts/package.sh builds in the same target directory as
    # scripts/install.sh above: its release build is reused, not redone.
    section "pg_test/logical.sh (a publisher and a subscriber: upgrade by logical replication)"
    pg_test/logical.sh | tee "$LOGS/logical.log"
    count_suite logical "$LOGS/logical.log"
    section "pg_test/shards.sh (two shards and a PL/Proxy proxy: the recipes of examples/plproxy/)"
    pg_test/shards.sh | tee "$LOGS/shards.log"
    count_suite shards "$LOGS/shards.log"
    section "pg_test/package.sh (the Debian package: dpkg -i, an upgrade under a running server)"
    pg_test/package.sh | tee "$LOGS/package.log"
    count_suite package "$LOGS/package.log"
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
