#!/usr/bin/env bash
# End-to-end suites against a throwaway PostgreSQL cluster.
#
# Starts a cluster as the `postgres` OS user with
# shared_preload_libraries = 'pii_vault' and a freshly generated keyfile,
# runs the pg_regress suites of pg_test/sql, then restarts the cluster with
# each kind of key failure, and scans PGDATA, WAL and the server log for
# plaintext and key material. Assumes the extension is installed already
# (scripts/test.sh does that).
#
# Prints one line per check and ends with "pg_test: N passed, N failed".
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_REGRESS="${PG_REGRESS:-/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress}"
PORT="${PII_VAULT_TEST_PORT:-54329}"
WORK="$(mktemp -d /tmp/pii_vault_pg_test.XXXXXX)"
PGDATA="$WORK/data"
SOCK="$WORK"
LOG="$WORK/server.log"
OUT="$WORK/regress"
DB=pii_vault_regress
KEEP="${PII_VAULT_KEEP_CLUSTER:-0}"

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok     - $1"; }
fail() { failed=$((failed + 1)); echo "FAILED - $1"; }

as_pg() { runuser -u postgres -- "$@"; }
pg_ctl() { as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$LOG" -w "$@" >/dev/null; }
psql_su() { as_pg "$PG_BIN/psql" -X -q -At -h "$SOCK" -p "$PORT" -d "${PSQL_DB:-$DB}" -v ON_ERROR_STOP=1 "$@"; }

cleanup() {
    if [ -f "$PGDATA/postmaster.pid" ]; then pg_ctl stop -m immediate || true; fi
    if [ "$KEEP" = 1 ]; then echo "cluster kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

new_key() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }
write_keyfile() { # path key mode
    printf '%s\n' "$2" > "$1"
    chown postgres:postgres "$1"
    chmod "$3" "$1"
}

# ---- cluster ----------------------------------------------------------------
chown postgres:postgres "$WORK"
chmod 700 "$WORK"
KEY="$(new_key)"
write_keyfile "$WORK/vault.key" "$KEY" 600
as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
cat >> "$PGDATA/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$SOCK'
shared_preload_libraries = 'pii_vault'
pii_vault.keyfile = '$WORK/vault.key'
# The vault's own messages never carry values; statement texts written by
# the client can, so failing statements are not logged (see README).
log_min_error_statement = panic
log_statement = none
CONF
set_conf() { # name value: replace a setting by appending (last one wins)
    echo "$1 = $2" >> "$PGDATA/postgresql.conf"
}

if ! pg_ctl start; then
    cat "$LOG"
    fail "cluster starts with shared_preload_libraries = 'pii_vault'"
    echo "pg_test: $passed passed, $failed failed"
    exit 1
fi

# ---- pg_regress -------------------------------------------------------------
# run_suites LABEL [--use-existing] test...
run_suites() {
    local label="$1"; shift
    local out="$OUT/$label"
    mkdir -p "$out"
    chown -R postgres:postgres "$OUT"
    local log="$out/pg_regress.log"
    as_pg "$PG_REGRESS" --host="$SOCK" --port="$PORT" --user=postgres --dbname="$DB" \
        --bindir="$PG_BIN" --inputdir="$HERE" --outputdir="$out" "$@" >"$log" 2>&1
    local line name
    while IFS= read -r line; do
        name="$(sed -E 's/^(test|ok|not ok)? *[0-9]* *-? *//; s/ +\.\.\..*$//; s/^ +//' <<<"$line")"
        case "$line" in
            *"... ok"*|*"... ignored"*) pass "pg_regress $label/$name" ;;
            *"... FAILED"*|*"... failed"*) fail "pg_regress $label/$name" ;;
        esac
    done < <(grep -E '\.\.\. ' "$log")
    if ! grep -qE '\.\.\. ' "$log"; then
        cat "$log"
        fail "pg_regress $label ran"
    fi
    if [ -s "$out/regression.diffs" ]; then
        echo "---- $label: regression.diffs ----"
        cat "$out/regression.diffs"
    fi
}

run_suites main \
    api_contract \
    errors_and_limits \
    storage_is_unreadable \
    ciphertext_moved_fails \
    search_path_hijack \
    leave_canaries

# ---- files: no plaintext, no key --------------------------------------------
psql_su -c "CHECKPOINT" >/dev/null
# The canaries of leave_canaries.sql: present in the vault, so they must be
# found nowhere in PGDATA (heap, TOAST, WAL) as plaintext.
CANARIES=(canary-3b1f9e-name canary-3b1f9e@mail.example canary-3b1f9e-login canary-3b1f9e-secret-note)
if python3 "$HERE/scan_files.py" "$PGDATA" --text "${CANARIES[@]}"; then
    pass "no canary value in any file of PGDATA after CHECKPOINT (heap, TOAST, WAL)"
else
    fail "no canary value in any file of PGDATA after CHECKPOINT (heap, TOAST, WAL)"
fi
# Make sure the scan can find things at all: the tokens are there in clear.
TOKEN="$(psql_su -c "SELECT token FROM pii_vault.records LIMIT 1")"
if ! python3 "$HERE/scan_files.py" "$PGDATA" --uuid "$TOKEN" >/dev/null; then
    pass "the scanner does find a stored token (it can see what it looks for)"
else
    fail "the scanner does find a stored token (it can see what it looks for)"
fi
if python3 "$HERE/scan_files.py" "$PGDATA" --text "$KEY" --hex "$KEY"; then
    pass "the master key (hex or raw bytes) is in no file of PGDATA"
else
    fail "the master key (hex or raw bytes) is in no file of PGDATA"
fi

# ---- key failures: restart and expect 55000 with the right message ----------
restart_with() { # description, then conf lines
    local what="$1"; shift
    pg_ctl stop -m fast
    for line in "$@"; do echo "$line" >> "$PGDATA/postgresql.conf"; done
    if pg_ctl start; then pass "server starts with $what"; else fail "server starts with $what"; cat "$LOG"; fi
}

# A different key.
write_keyfile "$WORK/other.key" "$(new_key)" 600
restart_with "a different key" "pii_vault.keyfile = '$WORK/other.key'"
run_suites wrong_key --use-existing key_wrong

# A keyfile readable by group and world.
write_keyfile "$WORK/loose.key" "$KEY" 644
restart_with "a 0644 keyfile" "pii_vault.keyfile = '$WORK/loose.key'"
run_suites loose_key --use-existing key_loose_permissions

# No keyfile at all.
restart_with "a missing keyfile" "pii_vault.keyfile = '$WORK/does-not-exist.key'"
run_suites missing_key --use-existing key_missing

# A keyfile that is not 64 hex characters.
write_keyfile "$WORK/bad.key" "this is not a key" 600
restart_with "a malformed keyfile" "pii_vault.keyfile = '$WORK/bad.key'"
run_suites bad_key --use-existing key_bad_format

# Not preloaded.
restart_with "pii_vault not in shared_preload_libraries" "shared_preload_libraries = ''" "pii_vault.keyfile = '$WORK/vault.key'"
run_suites not_preloaded --use-existing not_preloaded

# The right key again, this time from a key command: data intact.
restart_with "the original key from pii_vault.key_command" \
    "shared_preload_libraries = 'pii_vault'" "pii_vault.keyfile = ''" \
    "pii_vault.key_command = 'cat $WORK/vault.key'"
run_suites restored --use-existing key_restored

# The postmaster said what was wrong, once per start.
for msg in "is not the key this vault was created with" \
           "has group or world access" \
           "does not exist or cannot be read" \
           "is not 64 hexadecimal characters"; do
    if grep -q "pii_vault: .*$msg" "$LOG"; then pass "server log explains: $msg"; else fail "server log explains: $msg"; fi
done

# ---- the server log: no values, no key --------------------------------------
pg_ctl stop -m fast
if python3 "$HERE/scan_files.py" "$LOG" --text "${CANARIES[@]}" "$KEY" --hex "$KEY"; then
    pass "no canary value and no key in the server log"
else
    fail "no canary value and no key in the server log"
fi

echo "pg_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
