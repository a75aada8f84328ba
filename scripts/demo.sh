#!/usr/bin/env bash
# Installs what is missing, builds and installs pii_vault, starts a
# throwaway cluster with a freshly generated key, and shows the vault at
# work: store, lookup, get, update, and a denied SELECT on the storage.
# The cluster is removed at the end (PII_VAULT_KEEP_CLUSTER=1 keeps it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/setup.sh
echo "demo: building and installing pii_vault (release)"
scripts/install.sh >/dev/null 2>&1

. scripts/cluster.sh
DIR="$(mktemp -d /tmp/pii_vault_demo.XXXXXX)"
finish() {
    if cluster_running; then cluster_stop; fi
    if [ "${PII_VAULT_KEEP_CLUSTER:-0}" = 1 ]; then
        echo "demo: cluster kept: psql -h $DIR -p 54330 -U postgres"
    else
        rm -rf "$DIR"
    fi
}
trap finish EXIT
cluster_init "$DIR" "${PII_VAULT_DEMO_PORT:-54330}"
cluster_start
echo "demo: cluster up in $DIR, key in $DIR/vault.key (0600, owner postgres)"
echo

cluster_psql -U postgres -d postgres -v ON_ERROR_STOP=1 --echo-queries <<'SQL'
-- As the DBA: install, and give the application a role that can only call the vault.
CREATE EXTENSION pii_vault;
CREATE ROLE shop_app LOGIN IN ROLE pii_vault_writer;
CREATE TABLE customers (id serial PRIMARY KEY, vault_token uuid NOT NULL, plan text);
GRANT SELECT, INSERT ON customers TO shop_app;
GRANT USAGE ON SEQUENCE customers_id_seq TO shop_app;

\c - shop_app
-- The application keeps a token, not the person.
INSERT INTO customers (vault_token, plan)
VALUES (vault_store('{"name": "Ada Lovelace", "email": "Ada@Example.org", "phone": "+44 20 7946 0958", "address": {"city": "London"}}'), 'pro');
SELECT * FROM customers;
-- Find the customer by email (normalized: case and spaces do not matter).
-- A scalar subquery: one lookup, not one per row of customers.
SELECT id, plan FROM customers WHERE vault_token = (SELECT vault_lookup('email', ' ada@example.ORG'));
-- Read the record, or only some fields.
SELECT vault_get(vault_token) FROM customers;
SELECT vault_get(vault_token, ARRAY['name']) FROM customers;
-- Update with a JSON merge patch.
SELECT vault_update(vault_token, '{"address": {"city": "Marylebone"}}') FROM customers;
SELECT vault_get(vault_token, ARRAY['address']) FROM customers;
-- What the vault will index a phone number as (or why it refuses it).
SELECT vault_normalize('phone', '+44 (0)20 7946 0958');
-- A courier gets a share of the name and address only, for two hours
-- (the vault keeps a keyed hash of the share id, never the id).
SET pii_vault.purpose = 'delivery of order 1042';
SELECT vault_share(vault_token, ARRAY['name', 'address'], '2 hours') AS courier_share FROM customers WHERE id = 1 \gset
SELECT vault_get_shared(:'courier_share');
SELECT vault_unshare(:'courier_share');
SELECT vault_get_shared(:'courier_share') AS after_unshare;
RESET pii_vault.purpose;
-- The storage itself is out of reach, even for the vault's own writer role.
\set ON_ERROR_STOP off
SELECT * FROM pii_vault.records;
-- An injected bulk read is cut off at 100 records per statement (and at
-- 6 000 a minute per role), refused calls audited as throttled. Stores are
-- writes, 100 a statement too: 150 customers take two statements.
INSERT INTO customers (vault_token, plan)
SELECT vault_store(jsonb_build_object('name', 'Customer ' || n)), 'free' FROM generate_series(1, 100) AS n;
INSERT INTO customers (vault_token, plan)
SELECT vault_store(jsonb_build_object('name', 'Customer ' || n)), 'free' FROM generate_series(101, 150) AS n;
SELECT count(vault_get(vault_token)) FROM customers;
\set ON_ERROR_STOP on

\c - postgres
-- What a leaked dump or a stolen disk shows: tokens, ciphertext, keyed hashes.
SELECT token, left(encode(envelope, 'hex'), 48) || '…' AS envelope, left(encode(email_index, 'hex'), 16) || '…' AS email_index
FROM pii_vault.records LIMIT 3;
-- Ada asks to be forgotten (GDPR art. 17): an admin erases her at once;
-- the audit keeps only an erase event naming her token.
SELECT vault_erase(vault_token) AS erased FROM customers WHERE id = 1;
SELECT vault_get(vault_token) AS after_erasure, vault_lookup('email', 'ada@example.org') AS lookup
FROM customers WHERE id = 1;
SELECT count(*) AS rows_left FROM pii_vault.records r JOIN customers c ON c.vault_token = r.token WHERE c.id = 1;
-- Every call was audited (no values, only who, what and the outcome), by a
-- background writer, in rows chained by MACs.
SELECT pii_vault.audit_wait();
SELECT id, session_role, operation, fields, outcome, purpose FROM pii_vault.audit_log ORDER BY id LIMIT 12;
SELECT session_role, operation, outcome, count(*) FROM pii_vault.audit_log GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT * FROM vault_audit_verify();
-- The configuration checks a DBA runs after installing.
SELECT check_name, ok FROM vault_health();
SQL
echo
echo "demo: done"
