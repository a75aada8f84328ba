#!/usr/bin/env bash
# Two shard clusters and a proxy database on this machine, one key, the
# PL/Proxy recipes of examples/plproxy/ as written: tokens carry their
# shard, identifiers of pii_vault.shard_key are owned by one shard and
# unique across both, every recipe finds its record through the proxy,
# budgets hold for the whole cluster at the proxy, and the shards' audit
# names the client's role, application and purpose.
#
# Prints one line per check and ends with "shards: N passed, N failed".
# Assumes the extension is installed (scripts/install.sh) and PL/Proxy
# (scripts/setup.sh).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$HERE/.."
# shellcheck source=../scripts/cluster.sh
. "$ROOT/scripts/cluster.sh"
# shellcheck source=checks.sh
. "$HERE/checks.sh"
BASE="$(mktemp -d /tmp/pii_vault_shards.XXXXXX)"
chmod 755 "$BASE"
KEEP="${PII_VAULT_KEEP_CLUSTER:-0}"
RECIPES="$ROOT/examples/plproxy"
PORTS=(54350 54351)
PROXY_PORT=54352
RECORDS="${SHARDS_RECORDS:-10000}"

node() { # shard0 | shard1 | proxy: the cluster the cluster_* helpers act on
    CLUSTER_DIR="$BASE/$1"; PGDATA="$CLUSTER_DIR/data"; CLUSTER_LOG="$CLUSTER_DIR/server.log"
    case "$1" in shard0) CLUSTER_PORT=${PORTS[0]} DB=vault ;; shard1) CLUSTER_PORT=${PORTS[1]} DB=vault ;;
                 proxy) CLUSTER_PORT=$PROXY_PORT DB=proxy ;; esac
}
cleanup() {
    for n in proxy shard1 shard0; do
        node "$n"; if [ -e "$PGDATA" ] && cluster_running; then cluster_stop immediate || true; fi
    done
    if [ "$KEEP" = 1 ]; then echo "clusters kept in $BASE"; else rm -rf "$BASE"; fi
}
trap cleanup EXIT
q() { cluster_psql -q -At -d "$DB" "$@"; }
as() { local role="$1"; shift; cluster_psql -q -At -d "$DB" -U "$role" "$@"; }
# The SQLSTATE and message a client sees, or ok.
try_as() { # role, SQL
    local out
    out="$(cluster_psql -q -At -d "$DB" -U "$1" -v VERBOSITY=verbose -c "$2" 2>&1 >/dev/null)"
    if [ -z "$out" ]; then echo ok; else sed -n 's/^ERROR:  \([0-9A-Z]\{5\}\): /\1 /p' <<<"$out" | head -1; fi
}
ROLES="CREATE ROLE app_writer LOGIN IN ROLE pii_vault_writer;
       CREATE ROLE app_reader LOGIN IN ROLE pii_vault_reader;
       CREATE ROLE bulk_writer LOGIN IN ROLE pii_vault_writer;
       CREATE ROLE bulk_reader LOGIN IN ROLE pii_vault_reader;
       CREATE ROLE partner LOGIN IN ROLE pii_vault_share_reader;
       CREATE ROLE auditor LOGIN IN ROLE pii_vault_auditor;
       CREATE ROLE dpo LOGIN IN ROLE pii_vault_admin;"

# ---- the clusters -----------------------------------------------------------
KEY=""
for n in shard0 shard1 proxy; do
    mkdir -p "$BASE/$n"
    node "$n"
    cluster_init "$CLUSTER_DIR" "$CLUSTER_PORT" "$DB"
    if [ -z "$KEY" ]; then KEY="$VAULT_KEY"; else write_keyfile "$CLUSTER_DIR/vault.key" "$KEY" 600; fi
    # The proxy's pii_vault.shard is never used: it mints no token.
    shard="${n#shard}"; [ "$n" = proxy ] && shard=0
    cluster_conf "pii_vault.shards = 2" "pii_vault.shard = $shard" "pii_vault.purge_interval = 3600"
done

node shard1
cluster_conf "pii_vault.shard = 2"
check "a shard numbered past pii_vault.shards does not start, and says why" \
    all_of "! cluster_start 2>/dev/null" "grep -q 'pii_vault.shard (2) must be below pii_vault.shards (2)' '$CLUSTER_LOG'"
sed -i '$d' "$PGDATA/postgresql.conf"

for n in shard0 shard1 proxy; do
    node "$n"
    cluster_start || { cat "$CLUSTER_LOG"; fail "$n starts"; exit 1; }
    cluster_psql -q -d postgres -c "CREATE DATABASE $DB" >/dev/null
    q -c "CREATE EXTENSION pii_vault" -c "$ROLES" >/dev/null
    for role in bulk_writer bulk_reader; do
        q -c "ALTER ROLE $role SET pii_vault.max_reads_per_statement = 0" \
          -c "ALTER ROLE $role SET pii_vault.max_writes_per_statement = 0" >/dev/null
    done
done
# The bulk roles have no per-statement budget (above); per-minute budgets
# are off on every server until the budget checks (a setting per server,
# not per role).
for n in shard0 shard1 proxy; do
    node "$n"
    q -c "ALTER SYSTEM SET pii_vault.max_reads_per_minute = 0" -c "ALTER SYSTEM SET pii_vault.max_writes_per_minute = 0" \
      -c "SELECT pg_reload_conf()" >/dev/null
done
for n in shard0 shard1; do
    node "$n"
    q -v ON_ERROR_STOP=1 -f "$RECIPES/shard.sql" >/dev/null || fail "shard.sql runs on $n"
done
node proxy
q -v ON_ERROR_STOP=1 -v shard0="host=$BASE/shard0 port=${PORTS[0]} dbname=vault" \
  -v shard1="host=$BASE/shard1 port=${PORTS[1]} dbname=vault" -f "$RECIPES/cluster.sql" >/dev/null \
    || fail "cluster.sql runs on the proxy"
q -v ON_ERROR_STOP=1 -f "$RECIPES/proxy.sql" >/dev/null || fail "proxy.sql runs on the proxy"
on() { node "$1"; shift; q "$@"; }

# ---- tokens carry their shard ------------------------------------------------
# Stores through the proxy, in one statement (the bulk roles have no
# per-statement budget): records with an email (routed to its owner),
# and every tenth without one (any shard).
node proxy
as bulk_writer -c "CREATE TABLE people (n int PRIMARY KEY, tok uuid)" >/dev/null 2>&1 \
    || q -c "CREATE TABLE people (n int PRIMARY KEY, tok uuid)" -c "GRANT ALL ON people TO PUBLIC" >/dev/null
as bulk_writer -c "INSERT INTO people SELECT n, vault.vault_store(CASE WHEN n % 10 = 0
                          THEN jsonb_build_object('n', n, 'phone', '+1415' || (2000000 + n))
                          ELSE jsonb_build_object('n', n, 'email', 'p' || n || '@shards.example',
                                                  'phone', '+1415' || (2000000 + n)) END)
                   FROM generate_series(1, $RECORDS) n" >/dev/null
check_equal "$RECORDS stores through the proxy each return a token" \
    "$(q -c "SELECT count(tok) FROM people")" "$RECORDS"
on shard0 -c "CREATE TABLE held AS SELECT token FROM pii_vault.records" >/dev/null
on shard1 -c "CREATE TABLE held AS SELECT token FROM pii_vault.records" >/dev/null
c0="$(on shard0 -c "SELECT count(*) FROM held")"; c1="$(on shard1 -c "SELECT count(*) FROM held")"
check "they landed on both shards, about half each ($c0 and $c1)" \
    all_of "[ $((c0 + c1)) -eq $RECORDS ]" "[ $c0 -gt $((RECORDS * 2 / 5)) ]" "[ $c1 -gt $((RECORDS * 2 / 5)) ]"
check_equal "every token on shard 0 says shard 0, and every token on shard 1 says shard 1 (vault_shard_of)" \
    "$(on shard0 -c "SELECT count(*) FILTER (WHERE vault_shard_of(token) <> 0) FROM held")/$(on shard1 -c "SELECT count(*) FILTER (WHERE vault_shard_of(token) <> 1) FROM held")" "0/0"
check_equal "vault_shard_of is pure: the proxy, which holds no record, computes the same shards" \
    "$(on proxy -c "SELECT count(*) FILTER (WHERE vault_shard_of(tok) NOT IN (0, 1)) FROM people")" 0
check_equal "tokens are version 4 UUIDs, all distinct" \
    "$(on proxy -c "SELECT count(*) FILTER (WHERE substr(tok::text, 15, 1) = '4' AND substr(tok::text, 20, 1) IN ('8','9','a','b')), count(DISTINCT tok) FROM people")" \
    "$RECORDS|$RECORDS"
check_equal "vault_shard_of is IMMUTABLE, STRICT and PARALLEL SAFE, and needs no key" \
    "$(on proxy -c "SELECT provolatile::text || proisstrict::text || proparallel::text FROM pg_proc WHERE proname = 'vault_shard_of'")" "itrues"

# ---- every recipe finds its record ------------------------------------------
node proxy
check_equal "every get through the proxy returns its record (0 misses in $RECORDS)" \
    "$(as bulk_reader -c "SELECT count(*) FILTER (WHERE (vault.vault_get(tok) ->> 'n')::int IS DISTINCT FROM n) FROM people")" 0
check_equal "every get of one field through the proxy returns it" \
    "$(as bulk_reader -c "SELECT count(*) FILTER (WHERE vault.vault_get(tok, '{n}') IS DISTINCT FROM jsonb_build_object('n', n)) FROM people")" 0
check_equal "every lookup by email (routed by vault_shard_for) finds its record, in any spelling" \
    "$(as bulk_reader -c "SELECT count(*) FILTER (WHERE vault.vault_lookup('email', ' P' || n || '@Shards.EXAMPLE ') IS DISTINCT FROM tok)
                          FROM people WHERE n % 10 <> 0")" 0
check_equal "every lookup by phone (asked of both shards) finds its record" \
    "$(as bulk_reader -c "SELECT count(*) FILTER (WHERE vault.vault_lookup('phone', '+1 415 ' || (2000000 + n)) IS DISTINCT FROM tok)
                          FROM people WHERE n <= 2000")" 0
check_equal "every lookup by token finds its record" \
    "$(as bulk_reader -c "SELECT count(*) FILTER (WHERE vault.vault_lookup('token', tok::text) IS DISTINCT FROM tok) FROM people WHERE n <= 2000")" 0
check_equal "the proxy's vault_shard_for agrees with each shard's own (same key, same routing version)" \
    "$(on proxy -c "SELECT string_agg(vault_shard_for('email', 'p' || n || '@shards.example')::text, '' ORDER BY n) FROM generate_series(1, 200) n")" \
    "$(on shard1 -c "SELECT string_agg(vault_shard_for('email', 'p' || n || '@shards.example')::text, '' ORDER BY n) FROM generate_series(1, 200) n")"

T1="$(on proxy -c "SELECT tok FROM people WHERE n = 1")"
S1="$(on proxy -c "SELECT vault_shard_of('$T1')")"; O1=$((1 - S1))
node proxy
check_equal "an update through the proxy reaches the record's shard" \
    "$(as app_writer -c "SELECT vault.vault_update('$T1', '{\"name\": \"Ada\"}')" -c "SELECT vault.vault_get('$T1', '{name}')" | tr '\n' ' ')" \
    't {"name": "Ada"} '
# README, "Transactions": store with an expiry, clear it once kept.
KEPT="$(as app_writer -c "SELECT vault.vault_store('{\"n\": -2}', now() + interval '1 hour')")"
check_equal "a store with an expiry through the proxy, its expiry cleared through the proxy, and a delete" \
    "$(as app_writer -c "SELECT vault.vault_set_expiry('$KEPT', NULL)" -c "SELECT vault.vault_get('$KEPT')" \
         -c "SELECT vault.vault_delete('$KEPT')" -c "SELECT vault.vault_get('$KEPT') IS NULL" | tr '\n' ' ')" \
    't {"n": -2} t t '
SHARE="$(as app_writer -c "SELECT vault.vault_share('$T1', '{name}', '1 hour')")"
check_equal "a share made through the proxy lives on its record's shard, and a partner reads it through the proxy" \
    "$(q -c "SELECT vault_shard_of('$SHARE') = vault_shard_of('$T1')")|$(as partner -c "SELECT vault.vault_get_shared('$SHARE')")" \
    't|{"name": "Ada"}'
check_equal "the partner's role can route (vault_shard_of, vault_route) and nothing else: vault.vault_get is refused" \
    "$(try_as partner "SELECT vault.vault_get('$T1')")" "42501 permission denied for function vault_get"
SESSION="$(as app_writer -c "SELECT vault.vault_session_store('{\"cart\": 3}', '1 hour', '$T1')")"
check_equal "a session stored through the proxy is read, listed and deleted through it" \
    "$(as app_writer -c "SELECT vault.vault_session_get('$SESSION')" -c "SELECT count(*) FROM vault.vault_sessions('$T1') s WHERE s = '$SESSION'" \
         -c "SELECT vault.vault_session_delete('$SESSION')" -c "SELECT vault.vault_session_get('$SESSION') IS NULL" | tr '\n' ' ')" \
    '{"cart": 3} 1 t t '
check_equal "a session without a record goes to some shard and comes back by its id" \
    "$(as app_writer -c "SELECT vault.vault_session_get(vault.vault_session_store('{\"anon\": true}', '1 hour'))")" '{"anon": true}'
check_equal "an application's data set through the proxy is read and deleted through it" \
    "$(as app_writer -c "SELECT vault.vault_appdata_set('$T1', 'crm', '{\"tier\": \"gold\"}')" -c "SELECT vault.vault_appdata_get('$T1', 'crm')" \
         -c "SELECT vault.vault_appdata_delete('$T1', 'crm')" -c "SELECT vault.vault_appdata_get('$T1', 'crm') IS NULL" | tr '\n' ' ')" \
    't {"tier": "gold"} t t '
check_equal "consents set through the proxy are read and their history kept" \
    "$(as app_writer -c "SELECT vault.vault_consent_set('$T1', 'newsletter', true)" -c "SELECT vault.vault_consent_set('$T1', 'newsletter', false)" >/dev/null
       as app_reader -c "SELECT granted FROM vault.vault_consents('$T1')" -c "SELECT count(*) FROM vault.vault_consent_history('$T1')" | tr '\n' ' ')" \
    "f 2 "
check_equal "the subject export (admin) through the proxy holds the record, its consents and shares" \
    "$(as dpo -c "SELECT (e -> 'record' ->> 'name') || ' ' || jsonb_array_length(e -> 'consents') || ' ' || jsonb_array_length(e -> 'shares')
                   FROM vault.vault_subject_export('$T1') e")" "Ada 1 1"
check_equal "the audit of one token through the proxy (auditor) lists its calls" \
    "$(as auditor -c "SELECT count(*) FILTER (WHERE operation = 'update') || ' ' || count(*) FILTER (WHERE operation = 'share')
                      FROM vault.vault_audit('$T1')")" "1 1"

# ---- uniqueness of the routing kind across shards ---------------------------
# p1's email is owned by shard S1; a store of it, in any spelling, routes
# there and is a duplicate; stored directly on the other shard it is
# refused there (22023), before anything is probed.
node proxy
for spelling in "p1@shards.example" " P1@SHARDS.example " "p1@ＳＨＡＲＤＳ.example"; do
    check_equal "a second record with '$spelling' through the proxy is a duplicate (23505)" \
        "$(try_as app_writer "SELECT vault.vault_store('{\"email\": \"$spelling\"}')")" \
        "23505 vault_remote.vault_store(4): [vault] REMOTE ERROR: pii_vault: a record with this email already exists"
done
node "shard$O1"
WRONG_SHARD="22023 pii_vault: this email belongs on shard $S1, not on this server (shard $O1)"
check_equal "the same email stored directly on the shard that does not own it is refused (22023)" \
    "$(try_as app_writer "SELECT vault_store('{\"email\": \"P1@shards.example\"}')")" "$WRONG_SHARD"
check "… with a hint naming vault_shard_for" \
    grep -q "HINT:  Route the call to the shard vault_shard_for(kind, value) names" \
    <<<"$(cluster_psql -d vault -U app_writer -c "SELECT vault_store('{\"email\": \"P1@shards.example\"}')" 2>&1)"
NOEMAIL="$(as app_writer -c "SELECT vault_store('{\"n\": -1}')")"
check_equal "a record without an email on that shard cannot be given it by vault_update (22023)" \
    "$(try_as app_writer "SELECT vault_update('$NOEMAIL', '{\"email\": \"p1@Shards.example\"}')")" "$WRONG_SHARD"
node proxy
check_equal "nor through the proxy, which routes an update by its token" \
    "$(try_as app_writer "SELECT vault.vault_update('$NOEMAIL', '{\"email\": \"p1@shards.example\"}')")" \
    "22023 vault_remote.vault_update(4): [vault] REMOTE ERROR: ${WRONG_SHARD#22023 }"
check_equal "the misrouted calls were charged no probe and left p1's email on one record, found by lookup" \
    "$(as app_reader -c "SELECT vault.vault_lookup('email', 'p1@shards.example') = '$T1'")" t
check_equal "a record may take an email its own shard owns (vault_update through the proxy)" \
    "$(as app_writer -c "SELECT vault.vault_update('$NOEMAIL', jsonb_build_object('email', (SELECT 'free' || n || '@shards.example'
            FROM generate_series(1, 100) n WHERE vault_shard_for('email', 'free' || n || '@shards.example') = $O1 LIMIT 1)))")" t
# Phones are unique per shard only: the same phone on both shards.
PHONE_A="$(as app_writer -c "SELECT vault.vault_store(jsonb_build_object('phone', '+44 20 7946 0958', 'email', (SELECT 'ph' || n || '@shards.example'
            FROM generate_series(1, 100) n WHERE vault_shard_for('email', 'ph' || n || '@shards.example') = 0 LIMIT 1)))")"
PHONE_B="$(as app_writer -c "SELECT vault.vault_store(jsonb_build_object('phone', '+44 20 7946 0958', 'email', (SELECT 'ph' || n || '@shards.example'
            FROM generate_series(1, 100) n WHERE vault_shard_for('email', 'ph' || n || '@shards.example') = 1 LIMIT 1)))")"
check_equal "a phone is unique per shard only: two shards hold it, vault.vault_lookup says so (21000)" \
    "$(try_as app_reader "SELECT vault.vault_lookup('phone', '+442079460958')")" \
    "21000 pii_vault: more than one shard holds a record with this phone"
check_equal "… and vault.vault_lookup_all lists both" \
    "$(as app_reader -c "SELECT count(*) FROM vault.vault_lookup_all('phone', '+442079460958') t WHERE t IN ('$PHONE_A', '$PHONE_B')")" 2

# ---- one shard per routed call; the audit names role, application, purpose ---
node proxy
T2="$(q -c "SELECT tok FROM people WHERE n = 2")"; S2="$(q -c "SELECT vault_shard_of('$T2')")"
as app_reader -c "SET application_name = 'crm-web'" -c "SET pii_vault.purpose = 'ticket 4711'" \
    -c "SELECT vault.vault_get('$T2')" -c "SELECT vault.vault_lookup('email', 'p2@shards.example')" >/dev/null
for n in shard0 shard1; do on "$n" -c "SELECT pii_vault.audit_wait()" >/dev/null; done
check_equal "on the token's shard, the get and the routed lookup name app_reader, crm-web and the purpose" \
    "$(on "shard$S2" -c "SELECT string_agg(operation || ':' || session_role || ':' || application_name || ':' || purpose || ':' || outcome, ' ' ORDER BY id)
                         FROM pii_vault.audit_log WHERE token = '$T2' AND operation IN ('get', 'lookup')")" \
    "get:app_reader:crm-web:ticket 4711:ok lookup:app_reader:crm-web:ticket 4711:ok"
check_equal "the other shard heard nothing of either: no event at all of app_reader's crm-web calls" \
    "$(on "shard$((1 - S2))" -c "SELECT count(*) FROM pii_vault.audit_log WHERE application_name = 'crm-web'")" 0
check_equal "the proxy audits the route of the get, naming app_reader, the operation, the token, crm-web and the purpose" \
    "$(on proxy -c "SELECT pii_vault.audit_wait()" \
         -c "SELECT string_agg(session_role || ':' || array_to_string(fields, ',') || ':' || application_name || ':' || purpose, ' ')
             FROM pii_vault.audit_log WHERE operation = 'route' AND token = '$T2'" | tail -1)" \
    "app_reader:get:crm-web:ticket 4711"
# PL/Proxy reaches the shard as the client's current role: after SET
# ROLE, or inside a SECURITY DEFINER function, the shard names that role
# only; the proxy's audit names the login role and the calling role too.
node proxy
q -c "CREATE ROLE alice LOGIN IN ROLE app_reader" >/dev/null
as alice -c "SET application_name = 'alice-app'" -c "SET ROLE app_reader" -c "SELECT vault.vault_get('$T2')" >/dev/null
check_equal "after SET ROLE on the proxy, the proxy's audit names the login role (alice) beside the role it set" \
    "$(q -c "SELECT pii_vault.audit_wait()" \
         -c "SELECT session_role || ':' || \"current_role\" FROM vault_audit('$T2') WHERE operation = 'route' AND application_name = 'alice-app'" | tail -1)" \
    "alice:app_reader"
check_equal "… while the shard, reached as app_reader, names app_reader" \
    "$(on "shard$S2" -c "SELECT pii_vault.audit_wait()" \
         -c "SELECT session_role FROM pii_vault.audit_log WHERE token = '$T2' AND application_name = 'alice-app'" | tail -1)" app_reader

# ---- budgets through the proxy ------------------------------------------------
# One statement on the proxy is one statement per routed call on the
# shards: the proxy's routing expression charges the statement, so 100
# reads (the default per statement) is the limit through the proxy too.
node proxy
got="$(try_as app_reader "SELECT count(vault.vault_get(tok)) FROM people WHERE n <= 150")"
check_equal "a statement of 150 gets through the proxy is refused at the proxy's per-statement budget (54000)" \
    "$got" "54000 pii_vault: read limit reached: more than pii_vault.max_reads_per_statement (100) reads in one statement"
check_equal "a DO block through the proxy is one statement too: refused past 100 lookups" \
    "$(try_as app_reader "DO \$\$ BEGIN PERFORM vault.vault_lookup('token', tok::text) FROM people WHERE n <= 150; END \$\$")" \
    "54000 pii_vault: read limit reached: more than pii_vault.max_reads_per_statement (100) reads in one statement"
for n in shard0 shard1; do on "$n" -c "SELECT pii_vault.audit_wait()" >/dev/null; done
served=$(( $(on shard0 -c "SELECT count(*) FROM pii_vault.audit_log WHERE session_role = 'app_reader' AND operation = 'get' AND application_name = 'psql'") \
         + $(on shard1 -c "SELECT count(*) FROM pii_vault.audit_log WHERE session_role = 'app_reader' AND operation = 'get' AND application_name = 'psql'") ))
check "the shards served at most 100 of those gets between them (they served $served)" [ "$served" -le 100 ]
check_equal "the refusal is audited at the proxy, naming the role (route, throttled)" \
    "$(on proxy -c "SELECT pii_vault.audit_wait()" -c "SELECT count(*) > 0 FROM pii_vault.audit_log WHERE operation = 'route' AND outcome = 'throttled' AND session_role = 'app_reader'" | tail -1)" t
node proxy
check_equal "a cursor on the proxy is one statement across its fetches: the second fetch of 60 is refused" \
    "$(as app_reader -v VERBOSITY=verbose -c "BEGIN" -c "DECLARE c CURSOR FOR SELECT vault.vault_get(tok) FROM people WHERE n <= 150" \
         -c "FETCH 60 FROM c" -c "FETCH 60 FROM c" -c "ROLLBACK" 2>&1 | grep -Eo '^ERROR:  [0-9A-Z]{5}' | tr '\n' ' ')" "ERROR:  54000 "
node proxy
# A table owner's expression, run by an index build as that owner in a
# security-restricted operation, would reach the shards with nobody's
# budget: the routing expression refuses to run there.
q -c "CREATE FUNCTION laundered(t uuid) RETURNS text LANGUAGE sql IMMUTABLE AS \$\$ SELECT vault.vault_get(t) ->> 'n' \$\$" \
  -c "GRANT EXECUTE ON FUNCTION laundered(uuid) TO PUBLIC" -c "CREATE TABLE app_tokens AS SELECT tok FROM people WHERE n <= 5" \
  -c "ALTER TABLE app_tokens OWNER TO app_reader" -c "GRANT CREATE ON SCHEMA public TO app_reader" >/dev/null
check_equal "an index build on the proxy cannot route vault reads through to the shards (42501)" \
    "$(try_as app_reader "CREATE INDEX ON app_tokens (laundered(tok))")" \
    "42501 pii_vault: vault functions do not run inside a security-restricted operation (ANALYZE, VACUUM, CREATE INDEX, REINDEX, CLUSTER, a materialized view)"
# A store's answer (a new token, or 23505) says whether its email, phone
# and login are taken: each is charged as a read at the proxy too.
node proxy
check_equal "a statement of 40 stores through the proxy, each setting an email, a phone and a login, is refused past 100 reads (54000)" \
    "$(try_as app_writer "SELECT count(vault.vault_store(jsonb_build_object('email', 'probe' || n || '@shards.example',
                              'phone', '+1415' || (3000000 + n), 'login', 'probe' || n))) FROM generate_series(1, 40) n")" \
    "54000 pii_vault: read limit reached: more than pii_vault.max_reads_per_statement (100) reads in one statement"
check_equal "a lookup asked of both shards is charged a read on each: 51 phone lookups in one statement are refused" \
    "$(try_as app_reader "SELECT count(vault.vault_lookup('phone', '+1415' || (2000000 + n))) FROM generate_series(1, 51) n")" \
    "54000 pii_vault: read limit reached: more than pii_vault.max_reads_per_statement (100) reads in one statement"
# Per minute: 600 reads a minute at the proxy, none on the shards (they
# would allow 6000 each). A burst of a tenth passes; the rest is refused,
# whichever shard each read would have gone to.
on proxy -c "ALTER SYSTEM SET pii_vault.max_reads_per_minute = 600" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
node proxy
# The second statement right after the first: still refused.
got="$(as bulk_reader -c "SET application_name = 'minute'" -c "SELECT count(*) FROM people WHERE n <= 300 AND vault.vault_get(tok) IS NOT NULL" \
          -c "SELECT vault.vault_get('$T2') IS NOT NULL" 2>&1)"
check_equal "300 gets at once through the proxy under 600 a minute are refused after the burst (54000), and the next call too" \
    "$(grep -c "ERROR:  pii_vault: read limit reached: pii_vault.max_reads_per_minute (600) reads by this login role in the last minute" <<<"$got")" 2
for n in shard0 shard1; do on "$n" -c "SELECT pii_vault.audit_wait()" >/dev/null; done
served=$(( $(on shard0 -c "SELECT count(*) FROM pii_vault.audit_log WHERE application_name = 'minute' AND outcome = 'ok'") \
         + $(on shard1 -c "SELECT count(*) FROM pii_vault.audit_log WHERE application_name = 'minute' AND outcome = 'ok'") ))
check "the two shards served the burst between them, a tenth of the proxy's 600 (they served $served), not twice it" \
    all_of "[ $served -ge 55 ]" "[ $served -le 62 ]"
on proxy -c "ALTER SYSTEM RESET pii_vault.max_reads_per_minute" -c "SELECT pg_reload_conf()" >/dev/null

# ---- moving a record to the shard that owns its new email --------------------
# README, "Shards": read it where it is, store it where its new email
# belongs (a new token), erase the old one; the application swaps tokens.
node proxy
NEW_EMAIL="$(q -c "SELECT 'moved' || n || '@shards.example' FROM generate_series(1, 100) n
                   WHERE vault_shard_for('email', 'moved' || n || '@shards.example') = $O1 LIMIT 1")"
MOVED="$(as dpo -c "SELECT vault.vault_store(vault.vault_get('$T1') || '{\"email\": \"$NEW_EMAIL\"}')")"
as dpo -c "SELECT vault.vault_erase('$T1')" >/dev/null
check_equal "a record moved to its new email's shard: new token there, old token gone, lookup finds the new one" \
    "$(as dpo -c "SELECT vault_shard_of('$MOVED')" -c "SELECT vault.vault_get('$T1') IS NULL" \
         -c "SELECT vault.vault_lookup('email', '$NEW_EMAIL') = '$MOVED'" -c "SELECT vault.vault_get('$MOVED') ->> 'name'" | tr '\n' ' ')" \
    "$O1 t t Ada "

check_equal "vault_health on shard 1 says where it stands (shards check)" \
    "$(on shard1 -c "SELECT ok || ' ' || detail FROM vault_health() WHERE check_name = 'shards'")" \
    "true shard 1 of 2, routing key version 1 loaded"
for n in shard0 shard1 proxy; do
    check_equal "the audit of $n verifies" "$(on "$n" -c "SELECT pii_vault.audit_wait()" -c "SELECT ok FROM vault_audit_verify()" | tail -1)" t
done
echo "shards: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
