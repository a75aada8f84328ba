#!/usr/bin/env bash
# Logical replication, as a major-version upgrade uses it: a publisher
# vault and a subscriber vault (the same key, copied as a file) on
# loopback, a publication FOR ALL TABLES, the subscriber used meanwhile,
# then the cut-over (DROP SUBSCRIPTION): the subscriber's audit is the
# publisher's, continued, and verifies. README, "Logical replication".
# Prints one line per check and ends with "logical: N passed, N failed".
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.." || exit 1
# shellcheck source=../scripts/cluster.sh
. scripts/cluster.sh
# shellcheck source=checks.sh
. "$HERE/checks.sh"

BASE="$(mktemp -d /tmp/pii_vault_logical.XXXXXX)"
chmod 755 "$BASE"
DB=vault
PUB_PORT=54346
SUB_PORT=54347
mkdir -p "$BASE/pub" "$BASE/sub"
cluster_init "$BASE/sub" "$SUB_PORT" "$DB"
SUB_DIR="$CLUSTER_DIR" SUB_DATA="$PGDATA" SUB_LOG="$CLUSTER_LOG"
cluster_init "$BASE/pub" "$PUB_PORT" "$DB"
PUB_DIR="$CLUSTER_DIR" PUB_DATA="$PGDATA" PUB_LOG="$CLUSTER_LOG"
# The subscriber gets the publisher's key: a file copied by the DBA, never
# anything sent through SQL or the replication stream.
write_keyfile "$SUB_DIR/vault.key" "$VAULT_KEY" 600
use_pub() { CLUSTER_DIR="$PUB_DIR" CLUSTER_PORT="$PUB_PORT" PGDATA="$PUB_DATA" CLUSTER_LOG="$PUB_LOG"; }
use_sub() { CLUSTER_DIR="$SUB_DIR" CLUSTER_PORT="$SUB_PORT" PGDATA="$SUB_DATA" CLUSTER_LOG="$SUB_LOG"; }
cleanup() {
    use_sub; if cluster_running; then cluster_stop immediate || true; fi
    use_pub; if cluster_running; then cluster_stop immediate || true; fi
    rm -rf "$BASE"
}
trap cleanup EXIT
q() { cluster_psql -q -At -d "$DB" "$@"; }

use_pub
cluster_conf "wal_level = logical"
cluster_start || { cat "$CLUSTER_LOG"; fail "the publisher starts"; exit 1; }
cluster_psql -q -d postgres -c "CREATE DATABASE $DB" >/dev/null
PEOPLE="CREATE TABLE people (n int PRIMARY KEY, tok uuid)"
q -c "CREATE EXTENSION pii_vault" -c "$PEOPLE" -c "SET pii_vault.max_writes_per_statement = 0" \
  -c "INSERT INTO people SELECT n, vault_store(jsonb_build_object('email', 'p' || n || '@logical.example', 'n', n))
      FROM generate_series(1, 50) n" -c "SELECT count(vault_get(tok)) FROM people" \
  -c "SELECT pii_vault.audit_wait()" >/dev/null
use_sub
cluster_start || { cat "$CLUSTER_LOG"; fail "the subscriber starts"; exit 1; }
cluster_psql -q -d postgres -c "CREATE DATABASE $DB" >/dev/null
# The subscriber's vault is created and left unused; the application's own
# tables exist there too, as any subscription needs.
q -c "CREATE EXTENSION pii_vault" -c "$PEOPLE" >/dev/null
use_pub
q -c "CREATE PUBLICATION vault_pub FOR ALL TABLES" >/dev/null
use_sub
# The subscription's connection reads every table of the publisher, the
# vault's too: a superuser here (or a role with pg_read_all_data, for the
# time of the upgrade).
q -c "CREATE SUBSCRIPTION vault_sub CONNECTION 'host=$PUB_DIR port=$PUB_PORT dbname=$DB user=postgres' PUBLICATION vault_pub" \
    >/dev/null 2>&1
synced() { [ "$(q -c "SELECT count(*) FILTER (WHERE srsubstate <> 'r') = 0 AND count(*) > 0 FROM pg_subscription_rel")" = t ]; }
for _ in $(seq 1 300); do synced && break; sleep 0.2; done
check "the subscription copies every table, the vault's included" synced
errors() { q -c "SELECT apply_error_count + sync_error_count FROM pg_stat_subscription_stats"; }
# A call on the subscriber while it replicates: its event waits (the writer
# writes nothing into a replicated audit), the call is served.
check_equal "a read on the subscriber is served while it replicates" \
    "$(PGAPPNAME=on_subscriber q -c "SELECT vault_get(tok) ->> 'n' FROM people WHERE n = 7")" 7
check_equal "vault_health there says the writer waits for the subscription" \
    "$(q -c "SELECT count(*) FROM vault_health() WHERE check_name = 'audit_writer' AND NOT ok AND detail LIKE '%logical replica%'")" 1
use_pub
q -c "SET pii_vault.max_writes_per_statement = 0" \
  -c "INSERT INTO people SELECT n, vault_store(jsonb_build_object('email', 'p' || n || '@logical.example', 'n', n))
      FROM generate_series(51, 80) n" -c "SELECT count(vault_get(tok)) FROM people" \
  -c "SELECT pii_vault.audit_wait()" >/dev/null
pub_last="$(q -c "SELECT max(last_id) FROM pii_vault.audit_batches")"
use_sub
caught_up() { [ "$(q -c "SELECT coalesce(max(last_id), 0) FROM pii_vault.audit_batches")" = "$pub_last" ]; }
for _ in $(seq 1 300); do caught_up && break; sleep 0.2; done
check "the publisher's later stores and audit reach the subscriber" caught_up
check_equal "with no apply error (no batch of the subscriber's own collided)" "$(errors)" 0
check_equal "the subscriber's records read back (under the copied key)" \
    "$(q -c "SELECT count(*) FILTER (WHERE (vault_get(tok) ->> 'n')::int = n) FROM people")" 80
# The cut-over: the publisher stops taking calls, the subscription goes.
use_pub
q -c "SELECT pii_vault.audit_wait()" >/dev/null
use_sub
q -c "ALTER SUBSCRIPTION vault_sub DISABLE" -c "ALTER SUBSCRIPTION vault_sub SET (slot_name = NONE)" \
  -c "DROP SUBSCRIPTION vault_sub" >/dev/null
use_pub
q -c "SELECT pg_drop_replication_slot('vault_sub')" >/dev/null
check_equal "after the cut-over no replication slot is left on the publisher" \
    "$(q -c "SELECT count(*) FROM pg_replication_slots")" 0
use_sub
check_equal "the subscriber's audit is the publisher's, continued with the calls made there, and verifies" \
    "$(q -c "SELECT pii_vault.audit_wait()" \
         -c "SELECT count(*) FROM pii_vault.audit_log WHERE application_name = 'on_subscriber'" \
         -c "SELECT ok FROM vault_audit_verify()" | tr '\n' ' ')" "t 1 t "
check_equal "the subscriber's vault takes new stores and finds them" \
    "$(q -c "SELECT vault_lookup('email', 'p7@logical.example') = (SELECT tok FROM people WHERE n = 7)" \
         -c "SELECT vault_store('{\"email\": \"new@logical.example\"}') IS NOT NULL" | tr '\n' ' ')" "t t "

echo "logical: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
