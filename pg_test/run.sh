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
#
#   pg_test/run.sh                 every suite and check
#   pg_test/run.sh SUITE...        only the named suites of pg_test/sql, each
#                                  on its own (common/setup.sql gives each
#                                  what it needs), on a fresh cluster
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../scripts/cluster.sh
. "$HERE/../scripts/cluster.sh"
PG_REGRESS="${PG_REGRESS:-/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress}"
PORT="${PII_VAULT_TEST_PORT:-54329}"
WORK="$(mktemp -d /tmp/pii_vault_pg_test.XXXXXX)"
OUT="$WORK/regress"
DB=pii_vault_regress
KEEP="${PII_VAULT_KEEP_CLUSTER:-0}"

# shellcheck source=checks.sh
. "$HERE/checks.sh"

cleanup() {
    if cluster_running; then cluster_stop immediate || true; fi
    if [ "$KEEP" = 1 ]; then echo "cluster kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---- cluster ----------------------------------------------------------------
cluster_init "$WORK" "$PORT" "$DB"
KEY="$VAULT_KEY"
LOG="$CLUSTER_LOG"
if ! cluster_start; then
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
    # pg_regress feeds each suite to psql on standard input, so psql
    # resolves \ir common/setup.sql against the working directory.
    (cd "$HERE/sql" && as_pg "$PG_REGRESS" --host="$WORK" --port="$PORT" --user=postgres --dbname="$DB" \
        --bindir="$PG_BIN" --inputdir="$HERE" --outputdir="$out" "$@" >"$log" 2>&1)
    # Every requested test must report "ok"; a missing line is a failure.
    local name
    for name in "$@"; do
        case "$name" in --*) continue ;; esac
        if grep -qE "^(test )? *$name +\.\.\. ok" "$log"; then
            pass "pg_regress $label/$name"
        else
            fail "pg_regress $label/$name"
            grep -E "$name" "$log" || cat "$log"
        fi
    done
    if [ -s "$out/regression.diffs" ]; then
        echo "---- $label: regression.diffs ----"
        cat "$out/regression.diffs"
    fi
}

if [ $# -gt 0 ]; then
    run_suites main "$@"
    echo "pg_test: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
fi

# Roles are per cluster, not per database: the roles the cluster has before
# the suites, for the check after them.
list_roles() { cluster_psql -q -At -d postgres -c "SELECT rolname FROM pg_roles ORDER BY 1"; }
ROLES_BEFORE="$(list_roles)"

run_suites main \
    api_contract \
    errors_and_limits \
    lookup_index_only \
    storage_is_unreadable \
    ciphertext_moved_fails \
    search_path_hijack \
    audit_survives_the_attacker \
    audit_tamper_evidence \
    audit_fails_closed \
    read_throttling \
    bulk_export_switch \
    health_check \
    statement_budget_holds \
    write_budget_holds \
    inputs_cannot_slip_through \
    merge_cannot_be_blown_up \
    drop_is_refused \
    key_versions \
    audit_prune_keeps_evidence \
    expiry_is_immediate \
    deletion_is_restorable_within_grace \
    erased_subject_leaves_no_row \
    expired_share_reveals_nothing \
    share_gives_only_its_fields \
    share_reader_cannot_do_anything_else \
    purpose_is_audited \
    session_is_gone_when_it_ends \
    app_data_is_per_record_and_app \
    consent_history_is_append_only \
    subject_export_gives_everything \
    maintenance_cannot_launder \
    definer_wrapper_pays \
    storage_refuses_edits \
    refused_flood_is_bounded \
    one_person_one_identity \
    one_shard_routes_to_itself \
    errors_leave_no_budget_behind \
    card_token_never_passes_as_a_card \
    field_token_reveals_nothing_else \
    erased_subject_takes_its_tokens \
    many_records_past_the_budget_read_nothing \
    json_patch_changes_all_or_nothing \
    migration_moves_each_row_once \
    leave_canaries

# ---- the suites leave no role behind ----------------------------------------
# Each suite drops at its end the roles it made, with what they own and
# were granted, so that it stands alone. New since the suites began may be
# only the vault's own roles (pii_vault*) and common/setup.sql's
# app_writer and app_reader. The lists must show they read the cluster
# (postgres before, app_writer and app_reader after): a query that read
# nothing would find no role left either.
roles_after="$(list_roles)"
roles_left="$(grep -vxF -f <(printf '%s\n' "$ROLES_BEFORE") <<<"$roles_after" \
    | grep -vE '^(pg_.*|postgres|pii_vault.*|app_writer|app_reader)$' | paste -sd ' ' -)"
roles_read() { grep -qx postgres <<<"$ROLES_BEFORE" && grep -qx app_writer <<<"$roles_after" && grep -qx app_reader <<<"$roles_after"; }
check "the suites leave no role behind but the vault's, app_writer and app_reader ($(grep -c . <<<"$roles_after") roles)" \
    all_of roles_read '[ -z "$roles_left" ]'
roles_read || echo "   the role lists read nothing: before: $(paste -sd ' ' - <<<"$ROLES_BEFORE"); after: $(paste -sd ' ' - <<<"$roles_after")"
[ -z "$roles_left" ] || echo "   roles left: $roles_left"

# ---- what the checks below read ---------------------------------------------
# 400 records and a reader allowed to read the table of their tokens: the
# harness's own (the suites leave nothing behind), for the protocol paths,
# the swarm and the audit writer's restart. A superuser lifts the write
# budget to store them in one statement.
cluster_psql -q -At -d "$DB" -v ON_ERROR_STOP=1 -c "CREATE ROLE cursor_thief LOGIN IN ROLE pii_vault_reader" \
    -c "SET pii_vault.max_writes_per_statement = 0" \
    -c "CREATE TABLE victims AS SELECT n, vault_store(jsonb_build_object('n', n)) AS tok FROM generate_series(1, 400) AS n" \
    -c "GRANT SELECT ON victims TO cursor_thief" >/dev/null

# ---- protocol paths a client library takes ----------------------------------
# One statement split into many protocol messages keeps one budget: a named
# cursor fetched 50 rows at a time, and one portal executed with a row limit
# of 50 (the victims table and the role are made above).
got="$(python3 "$HERE/protocol_paths.py" "$WORK" "$PORT" "$DB" cursor_thief 2>&1)"
check_equal "psycopg named cursor (itersize 50) gets 100 records, then 54000" \
    "$(grep '^psycopg' <<<"$got")" "psycopg named cursor, itersize 50: 100 rows, then 54000"
check_equal "a portal executed with a row limit of 50 (asyncpg) gets 100 records, then 54000" \
    "$(grep '^asyncpg' <<<"$got")" "asyncpg portal, row limit 50: 100 rows, then 54000"

# ---- concurrency: the UNIQUE constraints decide ------------------------------
# Races are driven by what the server says each session is doing
# (pg_stat_activity, pg_locks), never by sleeping and hoping.
waiting_on_lock() { # application_name
    until_sql "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = '$1' AND wait_event_type = 'Lock')"
}
# A session that holds advisory lock 4242 until it is terminated: what the
# others wait on where a test needs them to hold still.
hold_gate() {
    PGAPPNAME=gate cluster_psql -q -At -d "$DB" -c "SELECT pg_advisory_lock(4242), pg_sleep(300)" >/dev/null 2>&1 &
    until_sql "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
               WHERE a.application_name = 'gate' AND l.locktype = 'advisory' AND l.granted)"
}
open_gate() { cluster_psql -q -At -d "$DB" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gate'" >/dev/null; }

DUPLICATE_EMAIL=$'23505 pii_vault: a record with this email already exists\nDETAIL:  The unique index pii_vault.records_email_index_key already holds this email\'s keyed hash.'
# Session A writes an email and holds its transaction open (waiting at the
# gate); session B writes the same email meanwhile and must wait for A on
# the unique index; the gate opens, A commits, and B fails with the vault's
# own 23505 (naming the kind), for a store and for an update alike.
race() { # label, statement of A, statement of B (B's via try_sql)
    local label="$1" a="$2" b="$3"
    hold_gate
    PGAPPNAME=race_a cluster_psql -q -At -d "$DB" -c "BEGIN; $a; SELECT pg_advisory_xact_lock(4242); COMMIT;" >/dev/null &
    local pid_a=$!
    waiting_on_lock race_a
    PGAPPNAME=race_b cluster_psql -q -At -d "$DB" -c "SELECT try_sql(\$q\$$b\$q\$)" >"$WORK/race_b.out" &
    local pid_b=$!
    waiting_on_lock race_b
    open_gate
    wait "$pid_a" "$pid_b"
    check_equal "concurrent $label of one email: the second waits, then gets 23505 naming the kind" \
        "$(cat "$WORK/race_b.out")" "$DUPLICATE_EMAIL"
}
race "stores" \
    "SELECT vault_store('{\"email\": \"race-store@example.com\"}')" \
    "SELECT vault_store('{\"email\": \"RACE-STORE@example.com\"}')"
RACE_A="$(cluster_psql -q -At -d "$DB" -c "SELECT vault_store('{\"name\": \"race a\"}')")"
RACE_B="$(cluster_psql -q -At -d "$DB" -c "SELECT vault_store('{\"name\": \"race b\"}')")"
race "updates" \
    "SELECT vault_update('$RACE_A', '{\"email\": \"race-update@example.com\"}')" \
    "SELECT vault_update('$RACE_B', '{\"email\": \"race-update@example.com\"}')"

# ---- an ERROR in the middle of an index probe ---------------------------------
# vault_get and vault_lookup run their index probe's PostgreSQL calls under
# one pgrx guard (src/store/index_read.rs). An ERROR raised inside it (here
# a lock timeout in table_open, caught by try_sql's subtransaction) must
# come back as that ERROR and leave the session's next probe working.
hold_gate
PGAPPNAME=locker cluster_psql -q -At -d "$DB" \
    -c "BEGIN; LOCK TABLE pii_vault.records IN ACCESS EXCLUSIVE MODE; SELECT pg_advisory_xact_lock(4242); COMMIT;" >/dev/null &
pid_lock=$!
waiting_on_lock locker
got="$(cluster_psql -q -At -d "$DB" -c "SET lock_timeout = '200ms'" \
    -c "SELECT try_sql(\$q\$SELECT vault_get('$RACE_A')\$q\$)" \
    -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gate'" \
    -c "RESET lock_timeout" -c "SELECT vault_get('$RACE_A') ->> 'name'" | tr '\n' '|')"
wait "$pid_lock"
check_equal "an ERROR inside an index probe (lock timeout) surfaces as itself; the session's next get works" \
    "$got" "55P03 canceling statement due to lock timeout|t|race a|"

# ---- a full audit queue answers nothing -----------------------------------------
# A superuser holds the audit writer behind an ACCESS EXCLUSIVE lock on the
# audit (a pg_write_all_data member no longer can: storage_refuses_edits),
# and the queue is filled until a call is refused. Then a store of a taken
# email and of a free one are both refused the same way: the 23505 the
# first would have raised leaves no trace (fields, message, timing).
hold_gate
PGAPPNAME=locker cluster_psql -q -At -d "$DB" \
    -c "BEGIN; LOCK TABLE pii_vault.audit_batches IN ACCESS EXCLUSIVE MODE; SELECT pg_advisory_xact_lock(4242); COMMIT;" >/dev/null &
pid_lock=$!
waiting_on_lock locker
filled="$(cluster_psql -q -At -d "$DB" -c "SET pii_vault.max_reads_per_statement = 0" -c "DO \$\$
BEGIN
    LOOP
        PERFORM vault_normalize('email', 'fill@queue.example');
    END LOOP;
EXCEPTION WHEN object_not_in_prerequisite_state THEN
    RAISE NOTICE 'queue full';
END \$\$" 2>&1)"
check_equal "the audit queue fills while the writer is held behind a lock" "$filled" "NOTICE:  queue full"
got="$(python3 "$HERE/full_queue.py" "$WORK" "$PORT" "$DB" postgres "race-store@example.com" 2>&1)"
refusal="55000 pii_vault: the audit queue stayed full; the call was refused constraint=None table=None.None detail=None after 5 s"
check_equal "full queue: a store of a taken email is refused with a bare 55000 after the common wait" \
    "$(grep '^taken:' <<<"$got")" "taken: $refusal"
check_equal "full queue: a store of a free email is refused exactly the same way" \
    "$(grep '^free:' <<<"$got")" "free: $refusal"
open_gate
wait "$pid_lock"
check "the audit writer drains the queue once the lock is gone" \
    [ "$(cluster_psql -q -At -d "$DB" -c "SELECT pii_vault.audit_wait(30000)")" = t ]

# ---- a LOCK whose view is redefined while it waits ------------------------------
# A pg_write_all_data member holds its own view (over a table of its own)
# locked, and LOCKs it again from a second session: the check before the
# LOCK sees only its own table. The first session redefines the view over
# the audit and commits; the waiting LOCK then takes the audit's table
# too, and the check after it refuses (the abort releases the lock).
cluster_psql -q -At -d "$DB" -c "CREATE ROLE lock_racer LOGIN IN ROLE pg_write_all_data" \
    -c "CREATE SCHEMA racer AUTHORIZATION lock_racer" >/dev/null
cluster_psql -q -At -U lock_racer -d "$DB" -c "CREATE TABLE racer.own (first_id bigint)" \
    -c "CREATE VIEW racer.v AS SELECT first_id FROM racer.own" >/dev/null
hold_gate
PGAPPNAME=racer_b cluster_psql -q -At -U lock_racer -d "$DB" \
    -c "BEGIN; LOCK TABLE racer.v IN ACCESS EXCLUSIVE MODE; SELECT pg_advisory_xact_lock(4242);
        CREATE OR REPLACE VIEW racer.v AS SELECT first_id FROM pii_vault.audit_batches; COMMIT;" >/dev/null &
pid_b=$!
waiting_on_lock racer_b
PGAPPNAME=racer_a cluster_psql -q -At -U lock_racer -d "$DB" \
    -c "SELECT try_sql('LOCK TABLE racer.v IN ACCESS EXCLUSIVE MODE')" >"$WORK/racer_a.out" &
pid_a=$!
waiting_on_lock racer_a
open_gate
wait "$pid_a" "$pid_b"
check_equal "a LOCK whose view was redefined over the audit while it waited is refused once it holds the lock" \
    "$(cat "$WORK/racer_a.out")" \
    "42501 pii_vault: LOCK of the vault's tables in a mode stronger than ROW EXCLUSIVE is refused: only the vault's own code changes or locks them"
cluster_psql -q -At -d "$DB" -c "DROP SCHEMA racer CASCADE" -c "DROP ROLE lock_racer" >/dev/null 2>&1
# The LOCK hook reads catalogs before and after the lock, and must not fix
# a REPEATABLE READ transaction's snapshot while doing so: LOCK first, then
# read, sees the rows the lock waited for, as PostgreSQL documents.
cluster_psql -q -At -d "$DB" -c "CREATE TABLE lock_then_read (n int)" -c "INSERT INTO lock_then_read VALUES (1)" \
    -c "GRANT SELECT, UPDATE ON lock_then_read TO app_writer" >/dev/null
cluster_psql -q -At -d "$DB" -c "BEGIN" -c "INSERT INTO lock_then_read VALUES (2)" -c "SELECT pg_sleep(1)" -c "COMMIT" \
    >/dev/null 2>&1 &
holder=$!
until_sql "SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                          WHERE c.relname = 'lock_then_read' AND l.mode = 'RowExclusiveLock')" >/dev/null
check_equal "LOCK, then read, in REPEATABLE READ sees the rows the lock waited for (a role of the application)" \
    "$(cluster_psql -q -At -U app_writer -d "$DB" -c "BEGIN ISOLATION LEVEL REPEATABLE READ" \
        -c "LOCK lock_then_read IN SHARE MODE" -c "SELECT count(*) FROM lock_then_read" -c "COMMIT")" 2
wait "$holder"
cluster_psql -q -At -d "$DB" -c "DROP TABLE lock_then_read" >/dev/null

# ---- dump and restore: ciphertext travels, plaintext does not ---------------
DUMP="$WORK/vault.dump.sql"
as_pg "$PG_BIN/pg_dump" -h "$WORK" -p "$PORT" -d "$DB" -f "$DUMP"
check "pg_dump carries the vault's ciphertext (records and audit rows are in the dump)" \
    grep -q "^COPY pii_vault.records" "$DUMP"
check "no canary value and no key in the pg_dump output" \
    python3 "$HERE/scan_files.py" "$DUMP" --text canary-3b1f9e-name canary-3b1f9e-secret-note canary-3b1f9e-field-text \
        4000056655665556 "$KEY" --hex "$KEY"

# ---- files: no plaintext, no key --------------------------------------------
cluster_psql -q -d "$DB" -c "CHECKPOINT" >/dev/null
# The canaries of leave_canaries.sql: present in the vault, so they must be
# found nowhere in PGDATA (heap, TOAST, WAL) as plaintext.
CANARIES=(canary-3b1f9e-name canary-3b1f9e@mail.example canary-3b1f9e-login canary-3b1f9e-secret-note
          canary-3b1f9e-field-text 4000056655665556 canary-3b1f9e-field@mail.example)
check "no canary value in any file of PGDATA after CHECKPOINT (heap, TOAST, WAL)" \
    python3 "$HERE/scan_files.py" "$PGDATA" --text "${CANARIES[@]}"
# The scanner must be able to see what it looks for: a stored token (binary
# uuid) is in the heap, so searching for one has to fail.
TOKEN="$(cluster_psql -At -d "$DB" -c "SELECT token FROM pii_vault.records LIMIT 1")"
check "the scanner finds a token stored in clear (it sees what it looks for)" \
    bash -c 'python3 "$1" "$2" --uuid "$3" >/dev/null; [ $? -eq 1 ]' _ "$HERE/scan_files.py" "$PGDATA" "$TOKEN"
check "the master key (hex or raw bytes) is in no file of PGDATA" \
    python3 "$HERE/scan_files.py" "$PGDATA" --text "$KEY" --hex "$KEY"

PSQL=(cluster_psql -q -At -d "$DB")

# ---- one role's budget across many concurrent sessions ------------------------
# 12 sessions of one login role read at once, 5 reads each, under a budget
# of 60 a minute (1 s per read, a burst of 6): at most 7 pass at once, and
# one more per second the run takes.
"${PSQL[@]}" -c "CREATE ROLE swarm LOGIN IN ROLE pii_vault_reader" -c "GRANT SELECT ON victims TO swarm" \
    -c "ALTER SYSTEM SET pii_vault.max_reads_per_minute = 60" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
started=$(date +%s)
for _ in $(seq 1 12); do
    PGAPPNAME=swarm cluster_psql -q -At -U swarm -d "$DB" \
        -c "SELECT try_sql(format('SELECT vault_get(%L)', tok)) FROM victims ORDER BY n LIMIT 5" >/dev/null &
done
wait
elapsed=$(( $(date +%s) - started + 1 ))
got="$("${PSQL[@]}" -c "SELECT pii_vault.audit_wait()" -c "SELECT count(*) FILTER (WHERE outcome = 'ok') || ' ' || sum(calls) FROM pii_vault.audit_log WHERE application_name = 'swarm' AND operation = 'get'" | tail -1)"
"${PSQL[@]}" -c "ALTER SYSTEM RESET pii_vault.max_reads_per_minute" -c "SELECT pg_reload_conf()" >/dev/null
check "12 concurrent sessions of one role: at most 7 + 1 per second of 60 reads pass (got ${got% *} of ${got#* } in ${elapsed} s)" \
    all_of "[ '${got#* }' = 60 ]" "[ '${got% *}' -ge 7 ]" "[ '${got% *}' -le $((7 + elapsed)) ]"

# ---- what a driver sees of an error ---------------------------------------------
got="$(python3 "$HERE/driver_errors.py" "$WORK" "$PORT" "$DB" postgres 2>&1)"
for kind in email phone login; do
    check_equal "a duplicate $kind names its constraint, table and schema to the driver (psycopg diag)" \
        "$(grep "^duplicate $kind:" <<<"$got")" \
        "duplicate $kind: 23505 constraint=records_${kind}_index_key table=pii_vault.records hint=no"
done
check_equal "a refused phone number comes with a hint" \
    "$(grep '^invalid phone:' <<<"$got")" "invalid phone: 22023 constraint=None table=None.None hint=yes"

# ---- the audit writer cannot be switched off ---------------------------------
# pg_terminate_backend on the writer: it is back within seconds, and the
# reads made meanwhile are in the audit.
writer_pid() { "${PSQL[@]}" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pii_vault audit writer'"; }
TOKENS="SELECT tok FROM victims ORDER BY n LIMIT 50"
old_pid="$(writer_pid)"
"${PSQL[@]}" -c "SELECT pg_terminate_backend($old_pid)" >/dev/null
PGAPPNAME=while_writer_down "${PSQL[@]}" -c "SELECT count(vault_get(tok)) FROM ($TOKENS) t" >/dev/null
new_pid=""
for _ in $(seq 1 50); do
    new_pid="$(writer_pid)"
    if [ -n "$new_pid" ] && [ "$new_pid" != "$old_pid" ]; then break; fi
    sleep 0.1
done
check "the audit writer is back within 5 s of pg_terminate_backend" \
    all_of "[ -n '$new_pid' ]" "[ '$new_pid' != '$old_pid' ]"
check_equal "the 50 reads made while it was down are in the audit" \
    "$("${PSQL[@]}" -c "SELECT pii_vault.audit_wait()" -c "SELECT count(*) FROM pii_vault.audit_log WHERE application_name = 'while_writer_down' AND operation = 'get' AND outcome = 'ok'" | tail -1)" 50
# A clean shutdown right after 50 reads: the writer drains its queue first.
PGAPPNAME=before_shutdown "${PSQL[@]}" -c "SELECT count(vault_get(tok)) FROM ($TOKENS) t" >/dev/null
cluster_stop
cluster_start
check_equal "a clean shutdown right after 50 reads loses none of their audit" \
    "$("${PSQL[@]}" -c "SELECT count(*) FROM pii_vault.audit_log WHERE application_name = 'before_shutdown' AND operation = 'get' AND outcome = 'ok'")" 50
check "the audit verifies after the writer was killed and the server restarted" \
    [ "$("${PSQL[@]}" -c "SELECT ok FROM vault_audit_verify()")" = t ]

# ---- the purge worker killed while purging loses no live record --------------
# 5 000 records (five batches) expire at once, beside 500 that never do;
# the purge worker (every second, no delete grace) is killed with SIGKILL
# as soon as it has begun removing them, so the server restarts as after a
# crash. Its
# batch in flight rolls back; afterwards every expired record is gone and
# every live one reads back and is found.
purge_pid() { "${PSQL[@]}" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pii_vault purge worker'"; }
doomed_left() { "${PSQL[@]}" -c "SELECT count(*) FROM pii_vault.records r JOIN purge_doomed d ON d.tok = r.token"; }
"${PSQL[@]}" -c "ALTER SYSTEM SET pii_vault.purge_interval = 1" -c "ALTER SYSTEM SET pii_vault.delete_grace = 0" \
    -c "SELECT pg_reload_conf()" >/dev/null
"${PSQL[@]}" -c "SET pii_vault.max_reads_per_statement = 0" -c "SET pii_vault.max_writes_per_statement = 0" -c "CREATE TABLE purge_live AS SELECT n, vault_store(jsonb_build_object('n', n, 'email', 'live' || n || '@purge.example')) AS tok
                 FROM generate_series(1, 500) n" \
    -c "CREATE TABLE purge_doomed AS SELECT n, vault_store(jsonb_build_object('n', n), now() + interval '1 hour') AS tok
        FROM generate_series(1, 5000) n" >/dev/null
# All of them expire at once, after they are committed (set in the table
# directly: setup, not a path under test).
"${PSQL[@]}" -c "UPDATE pii_vault.records SET expires_at = clock_timestamp() WHERE token IN (SELECT tok FROM purge_doomed)" >/dev/null
killed=""
for _ in $(seq 1 600); do
    left="$(doomed_left)"
    if [ "$left" -lt 5000 ] && [ "$left" -gt 0 ]; then
        pid="$(purge_pid)"
        [ -n "$pid" ] && kill -9 "$pid" && killed="$left"
        break
    fi
    sleep 0.02
done
check "the purge worker was killed (SIGKILL) while purging ($killed of 5000 expired records left)" [ -n "$killed" ]
for _ in $(seq 1 300); do "${PSQL[@]}" -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
until_sql "SELECT count(*) = 0 FROM pii_vault.records r JOIN purge_doomed d ON d.tok = r.token" >/dev/null
# Of the 5 000 it had to remove (an empty table would leave none either).
check_equal "after the crash the purge resumes and removes every expired record" \
    "$(doomed_left) of $("${PSQL[@]}" -c "SELECT count(*) FROM purge_doomed")" "0 of 5000"
check_equal "every live record reads back and is found by its email" \
    "$("${PSQL[@]}" -c "SET pii_vault.max_reads_per_statement = 0" -c "SELECT count(*) FILTER (WHERE vault_get(tok) ->> 'n' = n::text
                                               AND vault_lookup('email', 'live' || n || '@purge.example') = tok) FROM purge_live")" 500
"${PSQL[@]}" -c "ALTER SYSTEM RESET pii_vault.purge_interval" -c "ALTER SYSTEM RESET pii_vault.delete_grace" \
    -c "SELECT pg_reload_conf()" >/dev/null

# ---- monitoring: vault_stats() and prometheus-postgres-exporter -------------
# A login role with pg_monitor and no vault role reads the counters, and
# nothing else of the vault; a call takes no XID and adds no audit event.
"${PSQL[@]}" -c "CREATE ROLE vault_exporter LOGIN IN ROLE pg_monitor" >/dev/null
MONITOR=(cluster_psql -q -At -d "$DB" -U vault_exporter)
check_equal "a pg_monitor member reads vault_stats() without an XID or an audit event, and no record" \
    "$("${PSQL[@]}" -c "SELECT pii_vault.audit_wait()" >/dev/null
       before=$("${PSQL[@]}" -c "SELECT sum(last_id - first_id + 1) FROM pii_vault.audit_batches")
       "${MONITOR[@]}" -c "BEGIN" -c "SELECT count(*) > 10 FROM vault_stats()" -c "SELECT txid_current_if_assigned() IS NULL" \
           -c "COMMIT" -c "SELECT try_sql('SELECT vault_get(gen_random_uuid())')" 2>&1 | tr '\n' ' '
       "${PSQL[@]}" -c "SELECT pii_vault.audit_wait()" >/dev/null
       [ "$("${PSQL[@]}" -c "SELECT sum(last_id - first_id + 1) FROM pii_vault.audit_batches")" = "$before" ] && echo same)" \
    "t t 42501 permission denied for function vault_get same"
EXPORTER_PORT=$((PORT + 61))
# A client like any other (it connects as vault_exporter): run directly,
# so $! is the exporter itself.
DATA_SOURCE_NAME="host=$WORK port=$PORT user=vault_exporter dbname=$DB sslmode=disable" \
    prometheus-postgres-exporter --web.listen-address="127.0.0.1:$EXPORTER_PORT" --disable-default-metrics \
    --disable-settings-metrics --extend.query-path="$HERE/../monitoring/postgres_exporter.yml" >"$WORK/exporter.log" 2>&1 &
EXPORTER=$!
expected_gets="$("${PSQL[@]}" -c "SELECT value FROM vault_stats() WHERE metric = 'calls_total' AND labels = '{\"operation\": \"get\", \"outcome\": \"ok\"}'")"
scraped="$(python3 - "$EXPORTER_PORT" <<'PY'
import re, sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/metrics"
for _ in range(100):
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("no /metrics")
wanted = ['pii_vault_calls_total{operation="get",outcome="ok"}', "pii_vault_audit_queue_capacity",
          "pii_vault_audit_writer_up", "pii_vault_preloaded", "pii_vault_standby", "pii_vault_audit_kept_bytes"]
values = {}
for line in text.splitlines():
    if line.startswith("pii_vault"):
        name, _, value = line.rpartition(" ")
        # The exporter adds a server label to every metric of a query file.
        name = re.sub(r',?server="[^"]*"', "", name).replace("{}", "")
        values[name] = float(value)
print(" ".join(f"{w}={values[w]:.0f}" if w in values else f"{w}=missing" for w in wanted))
PY
)"
kill "$EXPORTER" 2>/dev/null; wait "$EXPORTER" 2>/dev/null
check_equal "prometheus-postgres-exporter with monitoring/postgres_exporter.yml serves the vault's metrics with vault_stats()'s values" \
    "$scraped" "pii_vault_calls_total{operation=\"get\",outcome=\"ok\"}=$expected_gets pii_vault_audit_queue_capacity=8192 pii_vault_audit_writer_up=1 pii_vault_preloaded=1 pii_vault_standby=0 pii_vault_audit_kept_bytes=0"
check "calls were counted (get ok: $expected_gets)" [ "${expected_gets:-0}" -gt 100 ]
"${PSQL[@]}" -c "CALL wait_for_logout('vault_exporter', 10)" -c "DROP ROLE vault_exporter" >/dev/null

# ---- key failures: restart and expect 55000 with the right message ----------
restart_with() { # description, then conf lines
    local what="$1"; shift
    cluster_stop
    cluster_conf "$@"
    if cluster_start; then pass "server starts with $what"; else fail "server starts with $what"; cat "$LOG"; fi
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

# No key source configured at all.
restart_with "no key configured" "pii_vault.keyfile = ''"
run_suites no_key --use-existing key_not_configured

# Not preloaded.
restart_with "pii_vault not in shared_preload_libraries" "shared_preload_libraries = ''" "pii_vault.keyfile = '$WORK/vault.key'"
run_suites not_preloaded --use-existing not_preloaded

# The right key again, this time from a key command: data intact.
restart_with "the original key from pii_vault.key_command" \
    "shared_preload_libraries = 'pii_vault'" "pii_vault.keyfile = ''" \
    "pii_vault.key_command = 'cat $WORK/vault.key'"
run_suites restored --use-existing key_restored
# The events queued while the wrong key was loaded (calls it refused) were
# kept in the spill file at that shutdown, MACed under the wrong key: the
# writer under the right key writes them marked, not authenticated.
unverified=$("${PSQL[@]}" -c "SELECT pii_vault.audit_wait()" \
    -c "SELECT count(*) FROM pii_vault.audit_log WHERE application_name LIKE 'unverified: %'" | tail -1)
check "the calls made under the wrong key are in the audit, marked unverified ($unverified events)" \
    all_of "[ '$unverified' -gt 0 ]" "[ ! -e '$PGDATA/pgsql_tmp_pii_vault_audit_spill' ]"

# The postmaster said what was wrong, once (each was one start). A wrong key
# is only visible to a backend, which says it once per backend.
logged_once() { [ "$(grep -c "pii_vault: .*$1" "$LOG")" -eq 1 ]; }
for msg in "has group or world access" \
           "does not exist or cannot be read" \
           "is not one key per line" \
           "no master key is configured"; do
    check "server log explains once: $msg" logged_once "$msg"
done
check "server log explains: the loaded key version 1 does not match the vault's data" \
    grep -q "pii_vault: the loaded key version 1 does not match the key this vault's data is under" "$LOG"

# ---- restore the dump taken above ----------------------------------------------
# The vault serves one database (pii_vault.database): restore into a new
# one and point the server at it, as a DBA moving the vault would.
log_mark=$(wc -l <"$LOG")
restart_with "pii_vault.database pointing at a new database" "pii_vault.database = 'pii_vault_restored'"
# Until the database exists the audit writer says so once and retries
# less and less often (1, 2, 4 … s apart), not every second: in the 6 s
# after it says so, at most 2 more attempts (each logs PostgreSQL's FATAL).
since_restart() { tail -n "+$((log_mark + 1))" "$LOG"; }
waited_for_db() { since_restart | grep -q "pii_vault audit writer: could not connect to the database named by pii_vault.database"; }
for _ in $(seq 1 100); do waited_for_db && break; sleep 0.1; done
fatals_before=$(grep -c 'FATAL:  database "pii_vault_restored" does not exist' "$LOG")
sleep 6
fatals_after=$(grep -c 'FATAL:  database "pii_vault_restored" does not exist' "$LOG")
# At least one FATAL before (the failed attempt the writer says so after):
# a pattern that matched nothing would count no retries either.
check "while pii_vault.database does not exist, the writer says so once and retries less often (FATALs $fatals_before then $fatals_after)" \
    all_of "[ $(since_restart | grep -c 'pii_vault audit writer: could not connect') = 1 ]" "[ $fatals_before -ge 1 ]" \
           "[ $((fatals_after - fatals_before)) -le 2 ]"
# The fifth failed attempt (about 19 s after the start) is followed by a
# pause of 16 s: the database is made, restored and used within it, and
# the server shut down while the writer still waits to reconnect.
fatals() { since_restart | grep -c 'FATAL:  database "pii_vault_restored" does not exist'; }
for _ in $(seq 1 300); do [ "$(fatals)" -ge 5 ] && break; sleep 0.1; done
cluster_psql -q -d postgres -c "CREATE DATABASE pii_vault_restored" >/dev/null
check "the dump restores into a new database (same key)" \
    cluster_psql -q -d pii_vault_restored -v ON_ERROR_STOP=1 -f "$DUMP" -o /dev/null
PSQL_RESTORED=(cluster_psql -q -At -d pii_vault_restored)
PGAPPNAME=while_writer_waits "${PSQL_RESTORED[@]}" \
    -c "SELECT count(vault_store(jsonb_build_object('login', 'waits-' || n))) FROM generate_series(1, 40) n" >/dev/null
waiting_fatals=$(fatals)
SPILL="$PGDATA/pgsql_tmp_pii_vault_audit_spill"
cluster_stop
check "a clean shutdown while the writer waits to reconnect keeps its queue in PGDATA (no attempt since: $waiting_fatals FATALs)" \
    all_of "[ -s '$SPILL' ]" "[ $waiting_fatals -eq 5 ]"
cluster_start
check_equal "after the restart the writer writes the kept events first: the 40 stores are in the audit" \
    "$("${PSQL_RESTORED[@]}" -c "SELECT pii_vault.audit_wait()" -c "SELECT count(*) FROM pii_vault.audit_log WHERE application_name = 'while_writer_waits' AND operation = 'store' AND outcome = 'ok'" | tail -1)" 40
check "and removes the file once they are committed" [ ! -e "$SPILL" ]
check "records read back after restore" \
    [ "$("${PSQL_RESTORED[@]}" -c "SELECT vault_get(vault_lookup('login', 'canary-3b1f9e-login')) ->> 'name'")" = canary-3b1f9e-name ]
check "the restored vault keeps working (audit ids continue after the restored rows)" \
    "${PSQL_RESTORED[@]}" -c "SELECT vault_store('{\"login\": \"after-restore\"}'); SELECT vault_get(vault_lookup('login', 'after-restore'))" -o /dev/null
check "the restored audit verifies (the writer continues the restored MAC chain)" \
    [ "$("${PSQL_RESTORED[@]}" -c "SELECT pii_vault.audit_wait()" -c "SELECT ok FROM vault_audit_verify()" | tail -1)" = t ]

# ---- a spill file that does not verify ----------------------------------------
# Planted (or written under another key): not written to the audit, set
# aside, and reported until an operator deals with it; the writer goes on
# writing new events.
cluster_stop
printf 'PIIVSPL1%s' "$(head -c 300 /dev/zero | tr '\0' x)" >"$SPILL"
chown postgres:postgres "$SPILL"
cluster_start
PGAPPNAME=after_plant "${PSQL_RESTORED[@]}" -c "SELECT vault_store('{\"login\": \"after-plant\"}')" >/dev/null
check_equal "with a planted spill file the writer still writes new events" \
    "$("${PSQL_RESTORED[@]}" -c "SELECT pii_vault.audit_wait()" -c "SELECT count(*) FROM pii_vault.audit_log WHERE application_name = 'after_plant'" | tail -1)" 1
check "the planted file is set aside, not replayed" all_of "[ ! -e '$SPILL' ]" "[ -s '$SPILL.unverified.1' ]"
check_equal "vault_health fails the audit writer and names the file" \
    "$("${PSQL_RESTORED[@]}" -c "SELECT ok, detail ~ 'pgsql_tmp_pii_vault_audit_spill.unverified.1' FROM vault_health() WHERE check_name = 'audit_writer'")" "f|t"
check_equal "vault_audit_verify is not ok while kept events are unwritten" \
    "$("${PSQL_RESTORED[@]}" -c "SELECT ok FROM vault_audit_verify()" 2>&1)" "WARNING:  pii_vault: audit events the writer could not write before it stopped are kept in PGDATA, not written yet: pgsql_tmp_pii_vault_audit_spill.unverified.1 (308 bytes); a file named .unverified did not verify under the loaded keys: rename it back and start with the key that wrote it, or move it out of PGDATA to accept the loss (see the server log)
f"
rm -f "$SPILL.unverified.1"
check_equal "once the operator removes it, the audit verifies again" \
    "$("${PSQL_RESTORED[@]}" -c "SELECT ok FROM vault_audit_verify()")" t

# A spill file kept while the server runs (the audit table refuses rows,
# so the writer cannot write it) and then rewritten by a member of
# pg_write_server_files with COPY: the writer notices the change (inode,
# size and time as it left them, in shared memory), sets it aside instead
# of replaying or removing it, and the audit does not verify.
"${PSQL_RESTORED[@]}" -c "CREATE ROLE file_writer LOGIN IN ROLE pg_write_server_files" \
    -c "ALTER TABLE pii_vault.audit_batches ADD CONSTRAINT refuse_rows CHECK (first_id < 0) NOT VALID" >/dev/null
PGAPPNAME=before_copy "${PSQL_RESTORED[@]}" -c "SELECT count(vault_lookup('login', 'after-plant')) FROM generate_series(1, 20)" >/dev/null
cluster_stop
check "a shutdown while the audit table refuses rows keeps the queue in the spill file" [ -s "$SPILL" ]
cluster_start
sleep 1.5
cluster_psql -q -At -d pii_vault_restored -U file_writer -c "COPY (SELECT 1 WHERE false) TO '$SPILL'" >/dev/null
"${PSQL_RESTORED[@]}" -c "ALTER TABLE pii_vault.audit_batches DROP CONSTRAINT refuse_rows" >/dev/null
for _ in $(seq 1 50); do [ -e "$SPILL.unverified.1" ] && break; sleep 0.1; done
check_equal "the spill file emptied by COPY is set aside, not replayed, and the audit does not verify" \
    "$([ -e "$SPILL" ] && echo left || echo gone)|$([ -e "$SPILL.unverified.1" ] && echo aside)|$("${PSQL_RESTORED[@]}" -c "SELECT ok FROM vault_audit_verify()" 2>/dev/null)" \
    "gone|aside|f"
rm -f "$SPILL.unverified.1"
"${PSQL_RESTORED[@]}" -c "DROP ROLE file_writer" >/dev/null

# ---- the server log: no values, no key --------------------------------------
cluster_stop
check "no canary value and no key in the server log (leak-canary-* are values of failing calls)" \
    python3 "$HERE/scan_files.py" "$LOG" --text "${CANARIES[@]}" leak-canary "$KEY" --hex "$KEY"

echo "pg_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
