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

mkdir -p "$BASE/primary" "$BASE/standby"
cluster_init "$BASE/primary" "$PRIMARY_PORT" "$DB"
PRIMARY_DIR="$CLUSTER_DIR" PRIMARY_DATA="$PGDATA" PRIMARY_LOG="$CLUSTER_LOG"
STANDBY_DIR="$BASE/standby" STANDBY_DATA="$BASE/standby/data" STANDBY_LOG="$BASE/standby/server.log"
chown postgres:postgres "$STANDBY_DIR"
chmod 700 "$STANDBY_DIR"
use_primary() { CLUSTER_DIR="$PRIMARY_DIR" CLUSTER_PORT="$PRIMARY_PORT" PGDATA="$PRIMARY_DATA" CLUSTER_LOG="$PRIMARY_LOG"; }
use_standby() { CLUSTER_DIR="$STANDBY_DIR" CLUSTER_PORT="$STANDBY_PORT" PGDATA="$STANDBY_DATA" CLUSTER_LOG="$STANDBY_LOG"; }
cleanup() {
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
check_equal "vault_health() runs on the standby, says it is one, and that its reads reach no audit" \
    "$(q -c "SELECT bool_and(ok) FILTER (WHERE check_name <> 'audit_writer'),
                    count(*) FILTER (WHERE check_name = 'standby' AND ok AND detail LIKE 'this server is a standby%'),
                    count(*) FILTER (WHERE check_name = 'audit_writer' AND NOT ok AND detail LIKE '%standby%not forwarded%')
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

# ---- reads served by the standby: kept where a restart finds them -------------
# More reads than the audit queue holds (8192): none refused, as the
# keeper moves their events into its file under PGDATA as they come.
use_standby
check_equal "the standby serves 9000 reads (more than the audit queue holds)" \
    "$(PGAPPNAME=standby_reads q -c "SET pii_vault.max_reads_per_statement = 0" \
        -c "SELECT count(vault_get(tok)) FROM people, generate_series(1, 450)" 2>&1)" 9000
stat_of() { cluster_psql -q -At -d "$DB" -U monitor -c "SELECT value FROM vault_stats() WHERE metric = '$1'"; }
kept_before="$(stat_of audit_kept_bytes)"
check "their events are kept in the standby's PGDATA (audit_kept_bytes $kept_before, queue depth $(stat_of audit_queue_depth))" \
    all_of "[ '${kept_before:-0}' -gt 9000 ]" "[ -s '$STANDBY_DATA/$SPILL_NAME' ]"
cluster_stop
cluster_start || fail "the standby restarts"
check_equal "a clean restart of the standby keeps them (the file is as large or larger)" \
    "$([ "$(stat -c %s "$STANDBY_DATA/$SPILL_NAME")" -ge "$kept_before" ] && echo kept)" kept
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
# Promotion: the keeper keeps what is left and exits; the new primary's
# writer writes everything kept, once, into the chain it continues.
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -w promote >/dev/null
check_equal "after pg_ctl promote every read the standby served is in its audit, once" \
    "$(q -c "SELECT pii_vault.audit_wait(30000)" \
         -c "SELECT count(*) FROM pii_vault.audit_log WHERE application_name = 'standby_reads' AND operation = 'get' AND outcome = 'ok'" | tail -1)" 9000
check_equal "the promoted server's audit verifies and its spill file is gone" \
    "$(q -c "SELECT ok FROM vault_audit_verify()")|$([ -e "$STANDBY_DATA/$SPILL_NAME" ] && echo left || echo gone)" "t|gone"

echo "replicas: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
