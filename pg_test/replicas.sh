#!/usr/bin/env bash
# A primary and a streaming standby on this machine (pg_basebackup -R, the
# same keyfile): what an operator runs on the standby works there, in a
# read-only transaction that takes no transaction id, and a write is
# refused as a driver expects of a read-only server (25006), not as a
# storage fault.
#
# Prints one line per check and ends with "replicas: N passed, N failed".
# Assumes the extension is installed (scripts/install.sh).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$HERE/.."
# shellcheck source=../scripts/cluster.sh
. "$ROOT/scripts/cluster.sh"
# shellcheck source=checks.sh
. "$HERE/checks.sh"
BASE="$(mktemp -d /tmp/pii_vault_replicas.XXXXXX)"
chmod 755 "$BASE"
KEEP="${PII_VAULT_KEEP_CLUSTER:-0}"
DB=vault
PRIMARY_PORT=54341
STANDBY_PORT=54342
SECOND_PORT=54343

mkdir -p "$BASE/primary" "$BASE/standby" "$BASE/second"
cluster_init "$BASE/primary" "$PRIMARY_PORT" "$DB"
PRIMARY_DIR="$CLUSTER_DIR" PRIMARY_DATA="$PGDATA" PRIMARY_LOG="$CLUSTER_LOG"
STANDBY_DIR="$BASE/standby" STANDBY_DATA="$BASE/standby/data" STANDBY_LOG="$BASE/standby/server.log"
SECOND_DIR="$BASE/second" SECOND_DATA="$BASE/second/data" SECOND_LOG="$BASE/second/server.log"
chown postgres:postgres "$STANDBY_DIR" "$SECOND_DIR"
chmod 700 "$STANDBY_DIR" "$SECOND_DIR"
use_primary() { CLUSTER_DIR="$PRIMARY_DIR" CLUSTER_PORT="$PRIMARY_PORT" PGDATA="$PRIMARY_DATA" CLUSTER_LOG="$PRIMARY_LOG"; }
use_standby() { CLUSTER_DIR="$STANDBY_DIR" CLUSTER_PORT="$STANDBY_PORT" PGDATA="$STANDBY_DATA" CLUSTER_LOG="$STANDBY_LOG"; }
use_second() { CLUSTER_DIR="$SECOND_DIR" CLUSTER_PORT="$SECOND_PORT" PGDATA="$SECOND_DATA" CLUSTER_LOG="$SECOND_LOG"; }
cleanup() {
    use_second; if cluster_running; then cluster_stop immediate || true; fi
    use_standby; if cluster_running; then cluster_stop immediate || true; fi
    use_primary; if cluster_running; then cluster_stop immediate || true; fi
    if [ "$KEEP" = 1 ]; then echo "clusters kept in $BASE"; else rm -rf "$BASE"; fi
}
trap cleanup EXIT
q() { cluster_psql -q -At -d "$DB" "$@"; }
# try SQL: 'ok', or the SQLSTATE, message and HINT a client sees.
try() { q -c "\\set VERBOSITY default" -c "$1" 2>&1 >/dev/null | sed -n '1,3p' | tr '\n' ' ' | sed 's/ *$//'; }

use_primary
cluster_conf "wal_level = replica" "hot_standby = on" "max_wal_senders = 4"
cluster_start || { cat "$CLUSTER_LOG"; fail "the primary starts"; exit 1; }
cluster_psql -q -d postgres -c "CREATE DATABASE $DB" >/dev/null
q -c "CREATE EXTENSION pii_vault" \
  -c "CREATE ROLE app_writer LOGIN IN ROLE pii_vault_writer" -c "CREATE ROLE app_reader LOGIN IN ROLE pii_vault_reader" \
  -c "CREATE ROLE auditor LOGIN IN ROLE pii_vault_auditor" -c "CREATE ROLE monitor LOGIN IN ROLE pg_monitor" \
  -c "CREATE TABLE people AS SELECT n, vault_store(jsonb_build_object('email', 'p' || n || '@standby.example', 'n', n)) AS tok
      FROM generate_series(1, 20) n" -c "GRANT SELECT ON people TO app_writer, app_reader, auditor" >/dev/null
q -c "SELECT pii_vault.audit_wait()" >/dev/null
# The standby: a base backup of the primary, streaming from it, with the
# primary's keyfile (copied: its own file under its own directory).
# A spill file on the primary (its writer's kept events) must not travel
# with a base backup: the standby would replay the primary's events.
SPILL_NAME=pgsql_tmp_pii_vault_audit_spill
as_pg bash -c "echo primary-events > '$PRIMARY_DATA/$SPILL_NAME'"
as_pg "$PG_BIN/pg_basebackup" -h "$PRIMARY_DIR" -p "$PRIMARY_PORT" -D "$STANDBY_DATA" -R -X stream -c fast
check "a base backup leaves out the primary's spill file (pgsql_tmp prefix)" \
    all_of "[ -e '$PRIMARY_DATA/$SPILL_NAME' ]" "[ ! -e '$STANDBY_DATA/$SPILL_NAME' ]"
rm -f "$PRIMARY_DATA/$SPILL_NAME"
write_keyfile "$STANDBY_DIR/vault.key" "$VAULT_KEY" 600
use_standby
cluster_conf "port = $STANDBY_PORT" "unix_socket_directories = '$STANDBY_DIR'" \
    "pii_vault.keyfile = '$STANDBY_DIR/vault.key'"
cluster_start || { cat "$CLUSTER_LOG"; fail "the standby starts"; exit 1; }
check_equal "the standby is in recovery and has the primary's records" \
    "$(q -c "SELECT pg_is_in_recovery(), count(*) FROM people")" "t|20"

# ---- what an operator runs, on the standby ----------------------------------
TOKEN="$(q -c "SELECT tok FROM people WHERE n = 1")"
# Every check but the audit writer's is ok; that one fails on a standby,
# whose reads reach no audit yet (README, "honest limits"), and says so.
check_equal "vault_health() runs on the standby, says it is one, and that its keeper and forwarder run" \
    "$(q -c "SELECT bool_and(ok) FILTER (WHERE check_name <> 'audit_writer'),
                    count(*) FILTER (WHERE check_name = 'standby' AND ok AND detail LIKE 'this server is a standby%'),
                    count(*) FILTER (WHERE check_name = 'audit_writer' AND ok AND detail LIKE 'a standby: %forwarder%')
             FROM vault_health()")" "t|1|1"
got="$(q -c "SELECT check_name, detail FROM vault_health() WHERE NOT ok AND check_name <> 'audit_writer'")"
[ -z "$got" ] || echo "   failing checks: $got"
check_equal "vault_audit_verify() runs on the standby and verifies" \
    "$(q -c "SELECT ok, rows_checked > 0 FROM vault_audit_verify()")" "t|t"
check_equal "vault_key_versions() runs on the standby" \
    "$(q -c "SELECT key_version, records FROM vault_key_versions()")" "1|20"
check_equal "vault_stats() runs on the standby for a pg_monitor member: standby 1, no writer, the reads counted" \
    "$(cluster_psql -q -At -d "$DB" -U monitor \
        -c "SELECT max(value) FILTER (WHERE metric = 'standby'), max(value) FILTER (WHERE metric = 'audit_writer_up'),
                   sum(value) FILTER (WHERE metric = 'calls_total' AND labels ->> 'outcome' = 'ok') > 0 FROM vault_stats()")" "1|0|t"
check_equal "vault_audit(token) runs on the standby and finds the record's store" \
    "$(cluster_psql -q -At -d "$DB" -U auditor -c "SELECT count(*) FILTER (WHERE operation = 'store') FROM vault_audit('$TOKEN')")" 1
for sql in "SELECT vault_store('{\"email\": \"new@standby.example\"}')" \
           "SELECT vault_update('$TOKEN', '{\"n\": 0}')" \
           "SELECT vault_delete('$TOKEN')"; do
    check_equal "on the standby, refused as on a read-only server (25006, with a hint): $sql" \
        "$(cluster_psql -q -At -d "$DB" -U app_writer -v VERBOSITY=verbose -c "$sql" 2>&1 | grep -Eo '^ERROR:  [0-9A-Z]{5}|^HINT' | tr '\n' ' ')" \
        "ERROR:  25006 HINT "
done
use_primary
for sql in "SELECT count(*) FROM vault_health()" "SELECT ok FROM vault_audit_verify()" \
           "SELECT count(*) FROM vault_key_versions()" "SELECT count(*) FROM vault_audit('$TOKEN')" \
           "SELECT count(*) FROM vault_stats()"; do
    check_equal "on the primary, $sql takes no transaction id" \
        "$(q -c "BEGIN" -c "$sql" -c "SELECT pg_current_xact_id_if_assigned() IS NULL" -c "COMMIT" | tail -1)" t
done
check_equal "on the primary, in a read-only transaction, a store is refused (25006, with a hint)" \
    "$(cluster_psql -q -At -d "$DB" -U app_writer -v VERBOSITY=verbose -c "BEGIN READ ONLY" \
        -c "SELECT vault_store('{\"email\": \"ro@standby.example\"}')" 2>&1 | grep -Eo '^ERROR:  [0-9A-Z]{5}|^HINT' | tr '\n' ' ')" \
    "ERROR:  25006 HINT "
use_standby
check_equal "the standby's server log names no XID it could not take" \
    "$(grep -c "cannot assign TransactionIds during recovery" "$STANDBY_LOG")" 0

# ---- reads served by the standby, audited in the primary's chain ------------
# More reads than the audit queue holds (8192): none refused; the keeper
# keeps their events and the forwarder hands them to the primary, whose
# audit names the standby.
use_standby
stat_of() { cluster_psql -q -At -d "$DB" -U monitor -c "SELECT value FROM vault_stats() WHERE metric = '$1'"; }
# primary_count APP [PORT]: the primary's audit events of that application
# (get, ok) served by the standby on PORT (the first by default).
primary_count() {
    use_primary
    q -c "SELECT count(*) FROM pii_vault.audit_log WHERE application_name = '$1' AND operation = 'get' AND outcome = 'ok' AND server LIKE '%:${2:-$STANDBY_PORT}'"
    use_standby
}
# until_primary_has APP N [PORT]: polls (60 s at most) until the primary's
# audit holds N such events; prints how many it found.
until_primary_has() {
    local got=""
    for _ in $(seq 1 600); do
        got="$(primary_count "$1" "${3:-$STANDBY_PORT}")"
        [ "$got" -ge "$2" ] && break
        sleep 0.1
    done
    echo "$got"
}
check_equal "the standby serves 20000 reads (more than the audit queue holds)" \
    "$(PGAPPNAME=standby_reads q -c "SET pii_vault.max_reads_per_statement = 0" \
        -c "SELECT count(vault_get(tok)) FROM people, generate_series(1, 1000)" 2>&1)" 20000
check_equal "all 20000 reach the primary's audit, naming the standby" "$(until_primary_has standby_reads 20000)" 20000
# A second standby, reading at the same time as the first.
as_pg "$PG_BIN/pg_basebackup" -h "$PRIMARY_DIR" -p "$PRIMARY_PORT" -D "$SECOND_DATA" -R -X stream -c fast
write_keyfile "$SECOND_DIR/vault.key" "$VAULT_KEY" 600
use_second
cluster_conf "port = $SECOND_PORT" "unix_socket_directories = '$SECOND_DIR'" "pii_vault.keyfile = '$SECOND_DIR/vault.key'"
cluster_start || fail "the second standby starts"
PGAPPNAME=both_standbys q -c "SET pii_vault.max_reads_per_statement = 0" \
    -c "SELECT count(vault_get(tok)) FROM people, generate_series(1, 1000)" >"$BASE/second.out" 2>&1 &
use_standby
PGAPPNAME=both_standbys q -c "SET pii_vault.max_reads_per_statement = 0" \
    -c "SELECT count(vault_get(tok)) FROM people, generate_series(1, 1000)" >"$BASE/first.out" 2>&1
wait
check_equal "two standbys serve 20000 reads each at once; each read is in the primary's audit once, naming its standby" \
    "$(cat "$BASE/first.out" "$BASE/second.out" | tr '\n' ' ')$(until_primary_has both_standbys 20000)|$(until_primary_has both_standbys 20000 "$SECOND_PORT")" \
    "20000 20000 20000|20000"
use_second
cluster_stop
use_standby
use_primary
check_equal "the primary's audit verifies with them" "$(q -c "SELECT ok FROM vault_audit_verify()")" t
use_standby
forwarded_total="$(stat_of audit_events_forwarded_total)"
check "the standby's forwarder reports them ($forwarded_total events forwarded, the operator's calls too), connected" \
    all_of "[ '${forwarded_total:-0}' -ge 20000 ]" "[ '$(stat_of forward_connected)' = 1 ]"
# The primary stopped: reads go on, their events kept on the standby,
# across a restart of the standby too; forwarded once the primary is back.
use_primary
cluster_stop
use_standby
check_equal "with the primary down, the standby still serves reads" \
    "$(PGAPPNAME=while_primary_down q -c "SET pii_vault.max_reads_per_statement = 0" \
        -c "SELECT count(vault_get(tok)) FROM people, generate_series(1, 100)" 2>&1)" 2000
sleep 2
kept_down="$(stat_of audit_kept_bytes)"
check "their events are kept in the standby's PGDATA ($kept_down bytes) and vault_health says the primary is out of reach" \
    all_of "[ '${kept_down:-0}' -gt 2000 ]" \
           "[ \"\$(q -c \"SELECT count(*) FROM vault_health() WHERE NOT ok AND detail LIKE '%cannot reach the primary%'\")\" = 1 ]"
cp "$STANDBY_DATA/$SPILL_NAME" "$BASE/frames.bin"
chown postgres "$BASE/frames.bin"
cluster_stop
cluster_start || fail "the standby restarts"
check "a clean restart of the standby keeps them" [ "$(stat -c %s "$STANDBY_DATA/$SPILL_NAME")" -ge "$kept_down" ]
# The forwarder held off (a connection string that fails) while the
# primary comes back, so the test hands it frames first.
cluster_conf "pii_vault.forward_conninfo = 'host=/nonexistent'"
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" reload >/dev/null
use_primary
cluster_start || fail "the primary starts again"
# The captured file, split into its frames; forged variants of them.
python3 - "$BASE" <<'PY'
import os, sys
base = sys.argv[1]
data = open(os.path.join(base, "frames.bin"), "rb").read()
frames, at = [], 0
while at + 53 <= len(data):
    end = at + 53 + int.from_bytes(data[at + 49:at + 53], "big") + 32
    frames.append(data[at:end])
    at = end
def write(name, blob):
    open(os.path.join(base, name), "wb").write(blob)
write("count", str(len(frames)).encode())
write("first.bin", frames[0])
write("rest.bin", b"".join(frames[1:]))
edited = bytearray(frames[0]); edited[60] ^= 0x01  # inside its first event
write("edited.bin", bytes(edited))
# Marked unvouched (a writer's own spill file may hold such frames, replayed
# marked): a forward must not take it on that account.
unvouched = bytearray(frames[0]); unvouched[8] = 1; unvouched[-1] ^= 0x01
write("unvouched.bin", bytes(unvouched))
PY
chown postgres "$BASE"/*.bin
check "the 2000 reads were kept in several frames ($(cat "$BASE/count"))" [ "$(cat "$BASE/count")" -ge 2 ]
forward_as() { # role, file: the reply, or the error a client sees
    q -c "CREATE TEMP TABLE f AS SELECT pg_read_binary_file('$2') AS b" -c "GRANT SELECT ON f TO $1" -c "SET ROLE $1" \
      -c "\\set VERBOSITY verbose" -c "SELECT vault_audit_forward(b) > 0 FROM f" 2>&1 | grep -v '^LOCATION' | tail -1
}
refused() { grep -o '^ERROR:  [0-9A-Z]*: pii_vault: forwarded audit events refused: .*' <<<"$1"; }
q -c "CREATE ROLE forwarder LOGIN IN ROLE pii_vault_forwarder" >/dev/null
check_equal "frames handed over out of order are refused (28000): a forwarder cannot skip or reorder" \
    "$(refused "$(forward_as forwarder "$BASE/rest.bin")")" \
    "ERROR:  28000: pii_vault: forwarded audit events refused: frames out of order or missing"
check_equal "an altered frame is refused" "$(refused "$(forward_as forwarder "$BASE/edited.bin")")" \
    "ERROR:  28000: pii_vault: forwarded audit events refused: a frame does not verify"
check_equal "a frame marked unvouched whose MAC does not verify is refused" \
    "$(refused "$(forward_as forwarder "$BASE/unvouched.bin")")" \
    "ERROR:  28000: pii_vault: forwarded audit events refused: a frame does not verify"
check_equal "an application role cannot forward" "$(forward_as app_reader "$BASE/first.bin" | grep -o 'permission denied for function vault_audit_forward')" \
    "permission denied for function vault_audit_forward"
check_equal "the first frame handed over by hand is taken, and again adds nothing" \
    "$(forward_as forwarder "$BASE/first.bin")|$(forward_as forwarder "$BASE/first.bin")|$(primary_count while_primary_down)" \
    "t|t|$(python3 -c "
import sys; d=open('$BASE/first.bin','rb').read(); print(int.from_bytes(d[45:49],'big'))")"
use_standby
cluster_conf "pii_vault.forward_conninfo = ''"
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" reload >/dev/null
check_equal "once the forwarder may reach the primary, the 2000 reach its audit, each once" \
    "$(until_primary_has while_primary_down 2000; sleep 1; primary_count while_primary_down)" "2000
2000"
use_primary
check_equal "after all this the primary's audit verifies" "$(q -c "SELECT ok FROM vault_audit_verify()")" t
use_standby
# pii_vault.standby_reads = refused: no vault call but the operator's.
cluster_conf "pii_vault.standby_reads = refused"
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" reload >/dev/null
sleep 0.5
check_equal "with standby_reads = refused a read on the standby fails 25006, with a hint" \
    "$(cluster_psql -q -At -d "$DB" -U app_reader -v VERBOSITY=verbose -c "SELECT vault_get(tok) FROM people LIMIT 1" 2>&1 \
        | grep -Eo '^ERROR:  [0-9A-Z]{5}|^HINT' | tr '\n' ' ')" "ERROR:  25006 HINT "
check_equal "with standby_reads = refused the operator's functions still run there" \
    "$(q -c "SELECT count(*) > 0 FROM vault_health()" -c "SELECT ok FROM vault_audit_verify()" | tr '\n' ' ')" "t t "
cluster_conf "pii_vault.standby_reads = audited"
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" reload >/dev/null
sleep 0.5
# Promotion right after reads: what the old primary took comes with the
# replicated audit, the rest from the standby's file; each event once.
PGAPPNAME=before_promote q -c "SELECT count(vault_get(tok)) FROM people" >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -w promote >/dev/null
check_equal "after pg_ctl promote every read the standby served is in its audit, once" \
    "$(q -c "SELECT pii_vault.audit_wait(30000)" \
         -c "SELECT string_agg(application_name || '=' || n, ' ' ORDER BY application_name) FROM (
               SELECT application_name, count(*) AS n FROM pii_vault.audit_log
               WHERE application_name IN ('standby_reads', 'while_primary_down', 'before_promote')
                 AND operation = 'get' AND outcome = 'ok' GROUP BY 1) c" | tail -1)" \
    "before_promote=20 standby_reads=20000 while_primary_down=2000"
check_equal "the promoted server's audit verifies and its spill file is gone" \
    "$(q -c "SELECT ok FROM vault_audit_verify()")|$([ -e "$STANDBY_DATA/$SPILL_NAME" ] && echo left || echo gone)" "t|gone"

echo "replicas: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
