#!/usr/bin/env bash
# Day two on throwaway clusters: what a DBA does to an installed vault.
#
#   1. Every C symbol an install or upgrade script of any release names is
#      exported by the library.
#   2. Upgrade: a vault created as 0.1.0 (its install script as released),
#      used by this library, updated to 0.2.0, used, dumped, updated to
#      this release; another updated from 0.1.0 in one step; the 0.2.0
#      dump restored into a 0.2.0 vault and updated: every record reads
#      back, every lookup finds it, the audit verifies, and the schema
#      equals a fresh install (pg_test/schema_snapshot.sql).
#   3. Dump and restore: pg_dump → pg_restore into another cluster with the
#      same key (everything readable, audit verifies, new stores work); into
#      a vault that keeps its own audit (refused, nothing restored); into a
#      cluster with another key (every call 55000, nothing written).
#   4. Key rotation: a second key version, CALL vault_rotate() under load
#      (records, applications' data and sessions move),
#      with zero failed calls, duplicates refused while records are still
#      under the old version, the old version retired, a missing version.
#
# Prints one line per check and ends with "day_two: N passed, N failed".
# Assumes the extension is installed (scripts/install.sh).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$HERE/.."
# shellcheck source=../scripts/cluster.sh
. "$ROOT/scripts/cluster.sh"
# shellcheck source=checks.sh
. "$HERE/checks.sh"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
BASE="$(mktemp -d /tmp/pii_vault_day_two.XXXXXX)"
chmod 755 "$BASE"
chown postgres "$BASE" # pg_dump writes its file here
KEEP="${PII_VAULT_KEEP_CLUSTER:-0}"

# Two clusters: A (the vault that is upgraded, dumped and rotated) and B
# (where dumps are restored). use_cluster switches cluster.sh's globals.
declare -A DIRS PORTS
use_cluster() {
    CLUSTER_DIR="${DIRS[$1]}" CLUSTER_PORT="${PORTS[$1]}"
    PGDATA="$CLUSTER_DIR/data" CLUSTER_LOG="$CLUSTER_DIR/server.log"
}
new_cluster() { # name, port, database
    mkdir -p "$BASE/$1"
    cluster_init "$BASE/$1" "$2" "$3"
    DIRS[$1]="$BASE/$1" PORTS[$1]="$2"
    cluster_conf "pii_vault.max_reads_per_minute = 0" "pii_vault.max_writes_per_minute = 0"
}
cleanup() {
    local c
    for c in "${!DIRS[@]}"; do
        use_cluster "$c"
        if cluster_running; then cluster_stop immediate || true; fi
    done
    if [ "$KEEP" = 1 ]; then echo "clusters kept in $BASE"; else rm -rf "$BASE"; fi
}
trap cleanup EXIT

restart() { # conf lines for the cluster in use
    cluster_stop
    cluster_conf "$@"
    cluster_start || { fail "cluster restarts ($*)"; tail -n 20 "$CLUSTER_LOG"; }
}
q() { cluster_psql -q -At -d "$DB" "$@"; }

# ---- 1. symbols ---------------------------------------------------------------
SO="$("$PG_CONFIG" --pkglibdir)/pii_vault.so"
# Listed once: `nm | grep -q` under pipefail fails whenever grep's early
# exit makes nm die of SIGPIPE, which read as a missing symbol.
nm -D --defined-only "$SO" >"$BASE/symbols.txt"
missing=""
symbols=0
for symbol in $(grep -ho "'MODULE_PATHNAME', '[a-z_0-9]*'" "$ROOT"/sql/install/*.sql "$ROOT"/sql/pii_vault--*--*.sql \
                | sed "s/.*, '//; s/'$//" | sort -u); do
    symbols=$((symbols + 1))
    grep -qw "$symbol" "$BASE/symbols.txt" || missing="$missing $symbol"
done
check_equal "the library exports every C symbol named by the SQL of every release" "$missing" ""
# A pattern that stopped matching would find nothing and pass: 0.3.1's
# scripts name 41 symbols.
check "the SQL of every release names at least 41 C symbols (found $symbols)" [ "$symbols" -ge 41 ]
# The install script cargo-pgrx generated for this release is the frozen
# one in sql/install/: the same lines, comments aside (they carry source
# line numbers) and in any order (pgrx's order of independent objects
# varies between builds).
# A version still in development (its issue open) has no frozen script
# yet; it is frozen, and from then on checked here, when it is released.
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")"
if [ -e "$ROOT/sql/install/pii_vault--$VERSION.sql" ]; then
    check "the installed pii_vault--$VERSION.sql is the frozen sql/install/pii_vault--$VERSION.sql" \
        diff <(grep -v '^--' "$("$PG_CONFIG" --sharedir)/extension/pii_vault--$VERSION.sql" | sort) \
             <(grep -v '^--' "$ROOT/sql/install/pii_vault--$VERSION.sql" | sort)
else
    echo "note   - $VERSION is not released yet: its install script is frozen into sql/install/ when it is"
fi

# ---- 2. upgrade from 0.1.0 ------------------------------------------------------
new_cluster a 54339 vault
use_cluster a
DB=vault
KEY_A="$VAULT_KEY"
cluster_start || { cat "$CLUSTER_LOG"; fail "cluster A starts"; }
cluster_psql -q -d postgres -c "CREATE DATABASE vault" >/dev/null
q -c "CREATE EXTENSION pii_vault VERSION '0.1.0'"
(cd "$HERE/sql" && q -f common/setup.sql >/dev/null)
check_equal "a vault is created as 0.1.0 from its released install script" \
    "$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_vault'")" "0.1.0"
q -c "CREATE TABLE people AS SELECT n, vault_store(jsonb_build_object('email', 'person' || n || '@upgrade.example',
          'login', 'person' || n, 'phone', '(415) 555-26' || lpad(n::text, 2, '0'), 'name', 'Person ' || n)) AS tok
      FROM generate_series(1, 20) n" \
  -c "SELECT vault_update(tok, '{\"name\": \"Person 1 updated\"}') FROM people WHERE n = 1" \
  -c "SELECT vault_delete(tok) FROM people WHERE n = 20" -c "DELETE FROM people WHERE n = 20" >/dev/null
check_equal "this library works a 0.1.0 vault: stores, reads, lookups, update, delete" \
    "$(q -c "SELECT count(*) FILTER (WHERE vault_get(tok) ->> 'login' = 'person' || n
                                     AND vault_lookup('email', 'Person' || n || '@UPGRADE.example') = tok) FROM people")" 19
check_equal "the 0.1.0 vault's audit verifies" "$(q -c "SELECT pii_vault.audit_wait()" -c "SELECT ok FROM vault_audit_verify()" | tail -1)" t
# people_intact LABEL: every record reads back as it was, every lookup
# (email, phone, login) finds it, and the audit verifies, old events
# included.
people_intact() {
    check_equal "$1: every record reads back as it was" \
        "$(q -c "SELECT count(*) FILTER (WHERE vault_get(tok) ->> 'name' = CASE n WHEN 1 THEN 'Person 1 updated' ELSE 'Person ' || n END) FROM people")" 19
    check_equal "$1: every lookup (email, phone, login) finds its record" \
        "$(q -c "SELECT count(*) FILTER (WHERE vault_lookup('email', 'person' || n || '@upgrade.example') = tok
                                         AND vault_lookup('phone', '(415) 555-26' || lpad(n::text, 2, '0')) = tok
                                         AND vault_lookup('login', 'PERSON' || n) = tok) FROM people")" 19
    check_equal "$1: the audit verifies, every earlier release's events included" \
        "$(q -c "SELECT pii_vault.audit_wait()" -c "SELECT ok, rows_checked > 40 FROM vault_audit_verify()" | tail -1)" "t|t"
}
q -c "ALTER EXTENSION pii_vault UPDATE TO '0.2.0'" >/dev/null
check_equal "ALTER EXTENSION pii_vault UPDATE TO '0.2.0' goes to 0.2.0" \
    "$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_vault'")" "0.2.0"
people_intact "0.1.0 -> 0.2.0"
# Used as 0.2.0 (a delete there removes the row), then dumped: the dump a
# 0.2.0 vault leaves, restored below into a 0.2.0 vault that is updated.
q -c "INSERT INTO people SELECT 20, vault_store('{\"email\": \"person20@upgrade.example\"}')" \
  -c "SELECT vault_delete(tok) FROM people WHERE n = 20" -c "DELETE FROM people WHERE n = 20" >/dev/null
check_equal "this library works a 0.2.0 vault: a delete there removes the row" \
    "$(q -c "SELECT count(*) FROM pii_vault.records")" 19
DUMP_020="$BASE/vault-0.2.0.dump"
as_pg "$PG_BIN/pg_dump" -Fc -h "$CLUSTER_DIR" -p "$CLUSTER_PORT" -d vault -f "$DUMP_020"
q -c "ALTER EXTENSION pii_vault UPDATE" >/dev/null
check_equal "ALTER EXTENSION pii_vault UPDATE goes on to $VERSION" \
    "$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_vault'")" "$VERSION"
people_intact "0.1.0 -> 0.2.0 -> $VERSION"
check_equal "after the upgrade to $VERSION a delete is soft and an admin restores it with its lookups" \
    "$(q -c "SELECT vault_delete(tok) FROM people WHERE n = 2" -c "SELECT vault_get(tok) IS NULL FROM people WHERE n = 2" \
         -c "SELECT vault_restore(tok) FROM people WHERE n = 2" \
         -c "SELECT vault_lookup('email', 'person2@upgrade.example') = tok FROM people WHERE n = 2" | tr '\n' ' ')" "t t t t "
check_equal "after the upgrade the purpose of access is audited" \
    "$(q -c "SET pii_vault.purpose = 'upgrade check'" -c "SELECT vault_get(tok) IS NOT NULL FROM people WHERE n = 3" \
         -c "SELECT pii_vault.audit_wait()" \
         -c "SELECT purpose FROM vault_audit((SELECT tok FROM people WHERE n = 3)) ORDER BY id DESC LIMIT 1" | tr '\n' ' ')" \
    "t t upgrade check "
check_equal "after the upgrade new stores work and a known email is still refused" \
    "$(q -c "SELECT vault_store('{\"email\": \"after-upgrade@upgrade.example\"}') IS NOT NULL" \
          -c "SELECT try_sql('SELECT vault_store(''{\"email\": \"person2@upgrade.example\"}'')')" | sed -n 1,2p | tr '\n' '|')" \
    "t|23505 pii_vault: a record with this email already exists|"
q -f "$HERE/schema_snapshot.sql" >"$BASE/upgraded.snapshot"

# ---- 3. dump and restore ---------------------------------------------------------
DUMP="$BASE/vault.dump"
as_pg "$PG_BIN/pg_dump" -Fc -h "$CLUSTER_DIR" -p "$CLUSTER_PORT" -d vault -f "$DUMP"
NAMES_A="$(q -c "SELECT string_agg(n || '=' || (vault_get(tok) ->> 'name'), ',' ORDER BY n) FROM people")"

new_cluster b 54340 restored
use_cluster b
DB=restored
write_keyfile "$CLUSTER_DIR/vault.key" "$KEY_A" 600
cluster_start || { cat "$CLUSTER_LOG"; fail "cluster B starts"; }
cluster_psql -q -d postgres -c "CREATE DATABASE restored" >/dev/null
drop_vault() {
    q -c "SET pii_vault.allow_drop = on" -c "DROP EXTENSION pii_vault CASCADE" -c "DROP TABLE IF EXISTS people" \
      -c "DROP FUNCTION IF EXISTS try_sql(text)" -c "DROP PROCEDURE IF EXISTS wait_for_worker(text, numeric)" \
      -c "DROP PROCEDURE IF EXISTS wait_for_logout(name, numeric)" >/dev/null 2>&1
}

# 0.1.0 -> this release in one ALTER EXTENSION UPDATE.
q -c "CREATE EXTENSION pii_vault VERSION '0.1.0'"
(cd "$HERE/sql" && q -f common/setup.sql >/dev/null)
q -c "CREATE TABLE people AS SELECT n, vault_store(jsonb_build_object('email', 'person' || n || '@upgrade.example',
          'login', 'person' || n, 'phone', '(415) 555-26' || lpad(n::text, 2, '0'),
          'name', CASE n WHEN 1 THEN 'Person 1 updated' ELSE 'Person ' || n END)) AS tok
      FROM generate_series(1, 19) n" -c "SELECT vault_get(tok) FROM people" >/dev/null
q -c "ALTER EXTENSION pii_vault UPDATE" >/dev/null
check_equal "ALTER EXTENSION pii_vault UPDATE from 0.1.0 goes to $VERSION at once" \
    "$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_vault'")" "$VERSION"
people_intact "0.1.0 -> $VERSION"
q -f "$HERE/schema_snapshot.sql" >"$BASE/direct.snapshot"
drop_vault

# A 0.2.0 vault's dump restored into a 0.2.0 vault, then updated.
q -c "CREATE EXTENSION pii_vault VERSION '0.2.0'" >/dev/null
got="$(as_pg "$PG_BIN/pg_restore" --single-transaction -h "$CLUSTER_DIR" -p "$CLUSTER_PORT" -d "$DB" "$DUMP_020" 2>&1)"
check_equal "a 0.2.0 vault's dump restores into a vault created as 0.2.0" "$got" ""
# Updated by one session while another is open, in a REPEATABLE READ
# transaction begun before the update: the open session reads the new
# release, not the old one its snapshot shows.
check_equal "a session open across ALTER EXTENSION UPDATE works the vault as $VERSION does" \
    "$(python3 "$HERE/update_under_open_sessions.py" "$CLUSTER_DIR" "$CLUSTER_PORT" "$DB" postgres 2>&1)" \
    "A reads its record before: open across the update
A reads its record in a snapshot of before: open across the update
B deletes it: True
A reads the deleted record: None
A reads the expired record: None
A stores a record that expires: True"
people_intact "0.2.0 dump restored, then updated to $VERSION"
drop_vault

# A vault created as 0.3.0 (its install script as released), used by this
# library (the audit's new columns and format, the 0.3.0 storage guards),
# then updated.
q -c "CREATE EXTENSION pii_vault VERSION '0.3.0'" >/dev/null
(cd "$HERE/sql" && q -f common/setup.sql >/dev/null)
q -c "SET pii_vault.max_reads_per_statement = 0" -c "SET pii_vault.max_writes_per_statement = 0" \
  -c "CREATE TABLE people AS SELECT n, vault_store(jsonb_build_object('email', 'person' || n || '@upgrade.example',
          'login', 'person' || n, 'phone', '(415) 555-26' || lpad(n::text, 2, '0'),
          'name', CASE n WHEN 1 THEN 'Person 1 updated' ELSE 'Person ' || n END)) AS tok
      FROM generate_series(1, 19) n" -c "SELECT vault_get(tok) FROM people" >/dev/null
check_equal "this library works a 0.3.0 vault: its audit reads and verifies" \
    "$(q -c "SELECT pii_vault.audit_wait()" -c "SELECT count(*) FROM pii_vault.audit_log WHERE operation = 'get'" \
         -c "SELECT ok FROM vault_audit_verify()" | tr '\n' ' ')" "t 19 t "
q -c "ALTER EXTENSION pii_vault UPDATE" >/dev/null
check_equal "ALTER EXTENSION pii_vault UPDATE from 0.3.0 goes to $VERSION" \
    "$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_vault'")" "$VERSION"
people_intact "0.3.0 -> $VERSION"
check_equal "after the update the audit's events of 0.3.0 read with their acting role as calling role, one call each" \
    "$(q -c "SELECT count(*) FILTER (WHERE calling_role = acting_role AND calls = 1) = count(*) FROM pii_vault.audit_log")" t
q -f "$HERE/schema_snapshot.sql" >"$BASE/from030.snapshot"
drop_vault

# Vaults created as 0.3.1, 0.3.2, 0.4.0 and 0.5.0, used, then updated (vault_stats()
# appears; the audit gains its server column, the forwarded table and
# vault_audit_forward; granted as a fresh install grants them).
for release in 0.3.1 0.3.2 0.4.0 0.5.0; do
    q -c "CREATE EXTENSION pii_vault VERSION '$release'" >/dev/null
    (cd "$HERE/sql" && q -f common/setup.sql >/dev/null)
    q -c "CREATE TABLE people AS SELECT n, vault_store(jsonb_build_object('email', 'person' || n || '@upgrade.example',
              'login', 'person' || n, 'phone', '(415) 555-26' || lpad(n::text, 2, '0'),
              'name', CASE n WHEN 1 THEN 'Person 1 updated' ELSE 'Person ' || n END)) AS tok
          FROM generate_series(1, 19) n" >/dev/null
    q -c "ALTER EXTENSION pii_vault UPDATE" >/dev/null
    check_equal "ALTER EXTENSION pii_vault UPDATE from $release goes to $VERSION" \
        "$(q -c "SELECT extversion FROM pg_extension WHERE extname = 'pii_vault'")" "$VERSION"
    people_intact "$release -> $VERSION"
    q -f "$HERE/schema_snapshot.sql" >"$BASE/from$release.snapshot"
    drop_vault
done

q -c "CREATE EXTENSION pii_vault" >/dev/null
q -f "$HERE/schema_snapshot.sql" >"$BASE/fresh.snapshot"
check "0.1.0 -> 0.2.0 -> $VERSION leaves the schema of a fresh $VERSION install (functions, grants, tables, indexes, triggers, dump list)" \
    diff -u "$BASE/fresh.snapshot" "$BASE/upgraded.snapshot"
check "0.1.0 -> $VERSION in one update leaves the schema of a fresh $VERSION install" \
    diff -u "$BASE/fresh.snapshot" "$BASE/direct.snapshot"
check "0.3.0 -> $VERSION leaves the schema of a fresh $VERSION install" \
    diff -u "$BASE/fresh.snapshot" "$BASE/from030.snapshot"
for release in 0.3.1 0.3.2 0.4.0 0.5.0; do
    check "$release -> $VERSION leaves the schema of a fresh $VERSION install" \
        diff -u "$BASE/fresh.snapshot" "$BASE/from$release.snapshot"
done

restore() { as_pg "$PG_BIN/pg_restore" --single-transaction -h "$CLUSTER_DIR" -p "$CLUSTER_PORT" -d "$DB" "$DUMP" 2>&1; }
# This vault has audited a call of its own: a restore would mix two chains.
q -c "SELECT count(*) FROM vault_health()" -c "SELECT pii_vault.audit_wait()" >/dev/null
got="$(restore)"
check "a restore into a vault that keeps its own audit is refused, saying why" \
    grep -q "pii_vault: this vault already has an audit; a dump's audit can only be restored into a vault just created" <<<"$got"
check_equal "the refused restore left nothing behind" "$(q -c "SELECT count(*) FROM pii_vault.records")" 0
q -c "DROP EXTENSION pii_vault" >/dev/null
got="$(restore)"
check_equal "pg_restore into a freshly created vault with the same key succeeds" "$got" ""
check_equal "after the restore every token reads back" \
    "$(q -c "SELECT string_agg(n || '=' || (vault_get(tok) ->> 'name'), ',' ORDER BY n) FROM people")" "$NAMES_A"
check_equal "after the restore every lookup finds its record" \
    "$(q -c "SELECT count(*) FILTER (WHERE vault_lookup('email', 'person' || n || '@upgrade.example') = tok) FROM people")" 19
check_equal "after the restore new stores work, and the audit verifies with them" \
    "$(q -c "SELECT vault_store('{\"email\": \"after-restore@upgrade.example\"}') IS NOT NULL" -c "SELECT pii_vault.audit_wait()" \
         -c "SELECT ok FROM vault_audit_verify()" | tr '\n' ' ')" "t t t "

# Another key: a new database on a server started with another key.
cluster_stop
write_keyfile "$CLUSTER_DIR/vault.key" "$(new_key)" 600
cluster_conf "pii_vault.database = 'other_key'"
cluster_start || fail "cluster B restarts with another key"
cluster_psql -q -d postgres -c "CREATE DATABASE other_key" >/dev/null
DB=other_key
got="$(restore)"
check_equal "pg_restore under another key completes (the data is only ciphertext)" "$got" ""
WRONG="55000 pii_vault: the loaded key version 1 does not match the key this vault's data is under (key check failed)"
for call in "SELECT vault_get(tok) FROM people LIMIT 1" \
            "SELECT vault_lookup('email', 'person2@upgrade.example')" \
            "SELECT vault_store('{\"email\": \"new@other.example\"}')" \
            "SELECT vault_update(tok, '{\"x\": 1}') FROM people LIMIT 1" \
            "SELECT vault_delete(tok) FROM people LIMIT 1"; do
    check_equal "under another key, refused: $call" "$(q -c "SELECT try_sql(\$q\$$call\$q\$)" | sed -n 1p)" "$WRONG"
done
check_equal "under another key nothing was written: records and audit as restored" \
    "$(q -c "SELECT pg_sleep(1.5)" -c "SELECT (SELECT count(*) FROM pii_vault.records) || ' ' || (SELECT max(last_id) FROM pii_vault.audit_batches)" | tail -1)" \
    "$(use_cluster a; DB=vault; q -c "SELECT count(*) FROM pii_vault.records" ) $(as_pg "$PG_BIN/pg_restore" -f - -a -t audit_batches "$DUMP" | awk -F'\t' '/^[0-9]+\t/ {if ($2 > m) m = $2} END {print m}')"
check_equal "vault_health() says the key does not match" \
    "$(q -c "SELECT ok, detail LIKE 'the loaded key version 1 does not match%' FROM vault_health() WHERE check_name = 'key_check'")" "f|t"
# Another key under a version the dump does not have (as an old dump
# restored into a vault rotated since): refused too, not taken for a new
# version beside the dump's.
write_keyfile "$CLUSTER_DIR/vault.key" "5:$(new_key)" 600
restart
check_equal "under a key version the dump does not have, refused: no loaded version is the data's" \
    "$(q -c "SELECT try_sql('SELECT vault_store(''{\"email\": \"new@other.example\"}'')')" | sed -n 1p)" \
    "55000 pii_vault: none of the loaded key versions is one this vault's data is under (it has key versions 1)"
# A vault that made a call (and so stored its own key check value) before
# the dump's records and key check values were restored into it, with the
# audit left out so the audit's restore guard does not stop it: two
# vaults' values meet, and every call is refused.
restart "pii_vault.database = 'raced'"
cluster_psql -q -d postgres -c "CREATE DATABASE raced" >/dev/null
DB=raced
(cd "$HERE/sql" && q -f common/setup.sql >/dev/null)
q -c "SELECT vault_store('{\"name\": \"early\"}')" >/dev/null
as_pg "$PG_BIN/pg_restore" --single-transaction --data-only -n pii_vault -t key_check -t records \
    -h "$CLUSTER_DIR" -p "$CLUSTER_PORT" -d raced "$DUMP"
check_equal "the dump's key checks restored into a vault already in use: every call refused (two vaults)" \
    "$(q -c "SELECT try_sql('SELECT vault_store(''{\"name\": \"late\"}'')')" | sed -n 1p)" \
    "55000 pii_vault: this vault's key check values come from two vaults: a dump was restored into a vault already in use"
cluster_stop

# ---- 4. key rotation --------------------------------------------------------------
use_cluster a
DB=vault
# Enough records under version 1 for a rotation that takes a while.
q -c "SET pii_vault.max_reads_per_statement = 0" -c "SET pii_vault.max_writes_per_statement = 0" \
  -c "INSERT INTO people SELECT n, vault_store(jsonb_build_object('email', 'bulk' || n || '@rotate.example', 'name', 'Bulk ' || n))
      FROM generate_series(100, 3099) n" >/dev/null
TOTAL="$(q -c "SELECT count(*) FROM pii_vault.records")"
# Applications' data and a session under version 1: rotation moves them
# too (they are read back once version 1 is retired).
SESSION_1="$(q -c "SELECT vault_appdata_set(tok, 'shop', jsonb_build_object('cart', n)) FROM people WHERE n < 6" \
               -c "SELECT vault_session_store('{\"step\": 3}', '1 day', (SELECT tok FROM people WHERE n = 1))" | tail -1)"
# Field tokens under version 1: a card's, and an email's deduplicated for
# a record (its value hash is recomputed under the new version).
FT_CARD="$(q -c "SELECT vault_tokenize('4111 1111 1111 1111', 'card')")"
FT_MAIL="$(q -c "SELECT vault_tokenize('Rotate.Me@rotate.example', 'email', (SELECT tok FROM people WHERE n = 2), dedup => true)")"
KEY_2="$(new_key)"
write_keyfile "$CLUSTER_DIR/vault.key" "$(printf '# version 1 until rotated\n1:%s\n2:%s' "$KEY_A" "$KEY_2")" 600
restart
check_equal "with versions 1 and 2 loaded, 2 is active and every record is still under 1" \
    "$(q -c "SELECT string_agg(key_version || ':' || loaded || ':' || active || ':' || records, ' ' ORDER BY key_version) FROM vault_key_versions()")" \
    "1:true:false:$TOTAL 2:true:true:0"
NEW_TOKEN="$(q -c "SELECT vault_store('{\"email\": \"new@rotate.example\"}')")"
check_equal "a new record is written under version 2; old and new records both read and look up" \
    "$(q -c "SELECT (SELECT records FROM vault_key_versions() WHERE key_version = 2) || ' '
              || (vault_lookup('email', 'new@rotate.example') = '$NEW_TOKEN') || ' '
              || (SELECT vault_lookup('email', 'person3@upgrade.example') = tok FROM people WHERE n = 3)")" "1 true true"
check_equal "an email held under version 1 cannot be stored again under version 2" \
    "$(q -c "SELECT try_sql('SELECT vault_store(''{\"email\": \"PERSON3@upgrade.example\"}'')')" | sed -n 1p)" \
    "23505 pii_vault: a record with this email already exists"

# A rotation batch holds its records mid-move (uncommitted): a store of one
# of their emails is refused at once (seen under version 1), a store of a
# new email does not wait, and after the commit the email is still taken.
hold_gate() {
    PGAPPNAME=gate q -c "SELECT pg_advisory_lock(4242), pg_sleep(300)" >/dev/null 2>&1 &
    until_sql "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
               WHERE a.application_name = 'gate' AND l.locktype = 'advisory' AND l.granted)"
}
hold_gate
PGAPPNAME=rotating q -c "BEGIN" -c "SELECT rotated FROM vault_rotate_batch(100000, true)" \
    -c "SELECT pg_advisory_xact_lock(4242)" -c "COMMIT" >"$BASE/rotating.out" 2>&1 &
pid_rot=$!
until_sql "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = 'rotating' AND wait_event_type = 'Lock')"
got="$(q -c "SET lock_timeout = '10s'" \
    -c "SELECT split_part(try_sql('SELECT vault_store(''{\"email\": \"person4@upgrade.example\"}'')'), E'\n', 1)" \
    -c "SELECT vault_store('{\"email\": \"fresh@rotate.example\"}') IS NOT NULL" | tr '\n' '|')"
check_equal "mid-rotation: a store of an email being moved is refused at once; a new email is stored without waiting" \
    "$got" "23505 pii_vault: a record with this email already exists|t|"
q -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gate'" >/dev/null
wait "$pid_rot"
check_equal "the held batch moved every record; after it commits the email is still taken" \
    "$(grep -v NOTICE "$BASE/rotating.out" | sed -n 1p)|$(q -c "SELECT try_sql('SELECT vault_store(''{\"email\": \"person4@upgrade.example\"}'')')" | sed -n 1p)" \
    "$((TOTAL))|23505 pii_vault: a record with this email already exists"

# Back to version 1 for everything (active_key_version = 1), this time with
# pii_vault.default_region = GB, under which the 19 US phone numbers
# written without + no longer normalize: rotation cannot recompute their
# index (dropping it would hide them from a lookup by +1 … and let a
# duplicate in), so it leaves those records where they are, names each,
# and moves the rest.
# A US number that is also a valid London number written nationally
# ((207) 946-0958 under GB is +44 20 7946 0958) must not be re-indexed as
# the London one either.
ZOE="$(q -c "SELECT vault_store('{\"name\": \"Zoe\", \"phone\": \"(207) 946-0958\"}')")"
restart "pii_vault.active_key_version = 1" "pii_vault.default_region = 'GB'"
got="$(q -c "CALL vault_rotate(500, '0')" 2>&1)"
check_equal "with version 1 active again, vault_rotate moves everything it can back to 1" \
    "$(q -c "SELECT string_agg(key_version || ':' || records, ' ' ORDER BY key_version) FROM vault_key_versions()")" \
    "1:$((TOTAL + 2 - 19)) 2:20"
check_equal "records whose values no longer normalize to what they were indexed under are named (by token) and left" \
    "$(grep -c "WARNING:  pii_vault: record [0-9a-f-]* was not moved: its phone no longer normalizes to what it was indexed under" <<<"$got") $(grep -c "WARNING:  pii_vault: 20 records stay under older key versions" <<<"$got")" \
    "20 1"
check_equal "such records are still found by their numbers written with +1, and those numbers stay taken" \
    "$(q -c "SELECT vault_lookup('phone', '+1 415 555 2605') = tok FROM people WHERE n = 5" \
         -c "SELECT vault_lookup('phone', '+1 207 946 0958') = '$ZOE'" \
         -c "SELECT split_part(try_sql('SELECT vault_store(''{\"phone\": \"+1 207 946 0958\"}'')'), E'\n', 1)" | tr '\n' '|')" \
    "t|t|23505 pii_vault: a record with this phone already exists|"
restart "pii_vault.active_key_version = 0" "pii_vault.default_region = 'US'"
: >"$BASE/load.errors"
load() { # kind: reads, lookups or updates, until $BASE/rotated exists
    local i=0 sql
    case "$1" in
        reads) sql="SELECT count(*) = 80 FROM (SELECT vault_get(tok) AS r FROM people ORDER BY random() LIMIT 80) s WHERE r IS NOT NULL" ;;
        lookups) sql="SELECT count(*) = 80 FROM (SELECT * FROM people WHERE n >= 100 ORDER BY random() LIMIT 80) s
                      WHERE vault_lookup('email', 'bulk' || n || '@rotate.example') = tok" ;;
        updates) sql="SELECT count(*) = 20 FROM (SELECT tok FROM people ORDER BY random() LIMIT 20) s
                      WHERE vault_update(tok, jsonb_build_object('seen', now()))" ;;
    esac
    while [ ! -e "$BASE/rotated" ]; do
        out="$(PGAPPNAME="load_$1" q -v ON_ERROR_STOP=1 -c "$sql" 2>&1)"
        [ "$out" = t ] || echo "$1: $out" >>"$BASE/load.errors"
        i=$((i + 1))
    done
    echo "$i" >"$BASE/load.$1"
}
rm -f "$BASE/rotated"
for kind in reads lookups updates; do load "$kind" & done
sleep 1
started=$(date +%s%N)
q -c "CALL vault_rotate(100, '50 ms')" >"$BASE/rotate.out" 2>&1
rotate_status=$?
ended=$(date +%s%N)
touch "$BASE/rotated"
wait
calls="$(cat "$BASE/load.reads") $(cat "$BASE/load.lookups") $(cat "$BASE/load.updates")"
check_equal "CALL vault_rotate(100, '50 ms') completes, a NOTICE per batch (load: $calls statements of 80 reads, 80 lookups, 20 updates; $(( (ended - started) / 1000000 )) ms)" \
    "$rotate_status $(grep -c 'NOTICE:  pii_vault: .* records moved to key version 2' "$BASE/rotate.out" | awk '{print ($1 >= 2)}')" "0 1"
check_equal "no read, lookup or update failed while the rotation ran" "$(head -3 "$BASE/load.errors")" ""
check_equal "after the rotation every record is under version 2" \
    "$(q -c "SELECT string_agg(key_version || ':' || records, ' ' ORDER BY key_version) FROM vault_key_versions()")" "1:0 2:$((TOTAL + 3))"
check_equal "after the rotation the applications' data and the session are under version 2 and read back" \
    "$(q -c "SELECT count(*) FROM pii_vault.app_data WHERE substring(envelope, 3, 4) = '\\x00000002'::bytea" \
         -c "SELECT count(*) FROM pii_vault.sessions WHERE substring(envelope, 3, 4) = '\\x00000002'::bytea" \
         -c "SELECT vault_session_get('$SESSION_1') ->> 'step'" | tr '\n' ' ')" "5 1 3 "
check_equal "after the rotation both field tokens are under version 2" \
    "$(q -c "SELECT count(*) FROM pii_vault.field_tokens WHERE substring(envelope, 3, 4) = '\\x00000002'::bytea AND key_version IS DISTINCT FROM 1")" 2
check_equal "after the rotation the audit verifies, and the batches MACed under version 1 are sealed by an anchor" \
    "$(q -c "SELECT pii_vault.audit_wait()" -c "SELECT ok FROM vault_audit_verify()" \
         -c "SELECT sealed_upto > 0 AND key_version = 2 FROM pii_vault.audit_anchor" | tail -2 | tr '\n' ' ')" "t t "

# Version 1 retired: only version 2 in the keyfile.
write_keyfile "$CLUSTER_DIR/vault.key" "2:$KEY_2" 600
restart
check_equal "version 1 retired: every record reads back and every lookup finds it" \
    "$(q -c "SET pii_vault.max_reads_per_statement = 0" \
         -c "SELECT count(*) FILTER (WHERE vault_get(tok) IS NOT NULL AND (n >= 100 OR vault_lookup('login', 'person' || n) = tok)) FROM people")" \
    "$((TOTAL - 1))"
check_equal "under US again, the rotation moved them too and every phone lookup finds its record" \
    "$(q -c "SELECT count(*) FROM people WHERE n < 100 AND vault_lookup('phone', '(415) 555-26' || lpad(n::text, 2, '0')) = tok")" 19
# A session's id is stored as its keyed hash under the version it was
# made under, which rotation cannot recompute (only the holder knows the
# id): made under version 1, it is not found once 1 is retired.
check_equal "version 1 retired: the applications' data made under it were moved and read back; its session is not found" \
    "$(q -c "SELECT count(*) FILTER (WHERE vault_appdata_get(tok, 'shop') ->> 'cart' = n::text) FROM people WHERE n < 6" \
         -c "SELECT vault_session_get('$SESSION_1') IS NULL" | tr '\n' ' ')" "5 t "
check_equal "version 1 retired: the field tokens made under it read back, and the deduplicated one is found again" \
    "$(q -c "SELECT vault_detokenize('$FT_CARD')" -c "SELECT vault_detokenize('$FT_MAIL')" \
         -c "SELECT vault_tokenize('rotate.me@ROTATE.example', 'email', (SELECT tok FROM people WHERE n = 2), dedup => true) = '$FT_MAIL'" | tr '\n' ' ')" \
    "4111111111111111 rotate.me@rotate.example t "
check_equal "version 1 retired: the audit still verifies (the anchor vouches for version 1's batches)" \
    "$(q -c "SELECT ok FROM vault_audit_verify()")" t
check_equal "version 1 retired: vault_health() finds nothing to fix about keys" \
    "$(q -c "SELECT string_agg(check_name || '=' || ok, ' ' ORDER BY check_name) FROM vault_health() WHERE check_name IN ('key_check', 'key_loaded', 'key_versions')")" \
    "key_check=true key_loaded=true key_versions=true"

# Version 2 missing (only version 1 loaded): records say which version.
write_keyfile "$CLUSTER_DIR/vault.key" "$KEY_A" 600
restart
check_equal "version 2 not loaded: a read fails with 55000 naming the version" \
    "$(q -c "SELECT try_sql(format('SELECT vault_get(%L)', tok)) FROM people WHERE n = 3" | sed -n 1p)" \
    "55000 pii_vault: the stored record is encrypted under key version 2, which is not loaded"
check_equal "version 2 not loaded: vault_health() and vault_key_versions() say so" \
    "$(q -c "SELECT ok FROM vault_health() WHERE check_name = 'key_versions'" \
         -c "SELECT loaded::text || ' ' || records FROM vault_key_versions() WHERE key_version = 2" | tr '\n' ' ')" \
    "f false $((TOTAL + 3)) "
restart "pii_vault.active_key_version = 3"
check_equal "an active version the key source does not hold: every call fails, saying so" \
    "$(q -c "SELECT try_sql('SELECT vault_lookup(''login'', ''x'')')" | sed -n 1p)" \
    "55000 pii_vault: pii_vault.active_key_version names key version 3, which the key source does not hold"
check "the server log says so once, at start" \
    [ "$(grep -c "pii_vault: pii_vault.active_key_version names key version 3" "$CLUSTER_LOG")" = 1 ]
for c in a b; do
    check "no key and no record value in the server log of cluster $c" \
        python3 "$HERE/scan_files.py" "${DIRS[$c]}/server.log" --text "$KEY_A" "$KEY_2" upgrade.example rotate.example --hex "$KEY_A" "$KEY_2"
done

echo "day_two: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
