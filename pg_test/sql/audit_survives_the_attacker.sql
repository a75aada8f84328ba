-- The audit survives what an attacker with the app's role can do to its
-- own transaction: ROLLBACK, and a statement that fails after rows were
-- already sent. Failed calls are audited too. Rows are written by the
-- audit writer (a background worker) in its own transactions.
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE ROLE audit_app LOGIN IN ROLE pii_vault_writer;
CREATE ROLE audit_reviewer LOGIN IN ROLE pii_vault_auditor;

\c - audit_app
SELECT vault_store('{"name": "Rolled Back", "login": "rollback-victim"}') AS victim \gset

-- 1. Read, then roll back.
BEGIN;
SELECT vault_get(:'victim') ->> 'name' AS read_in_doomed_transaction;
SELECT vault_lookup('login', 'rollback-victim') = :'victim' AS looked_up;
ROLLBACK;

-- 2. A statement that streams rows, then fails (division by zero at n = 3).
SELECT n, vault_get(:'victim') ->> 'name' AS name, 1 / (n - 3) AS boom
FROM generate_series(1, 5) AS n;

-- 3. Calls that fail are audited as errors.
SELECT try_sql($$SELECT vault_store('{"login": "ROLLBACK-VICTIM"}')$$);
SELECT try_sql($$SELECT vault_get('$$ || :'victim' || $$', ARRAY[NULL::text])$$);

-- The auditor sees all of it through vault_audit (waits for the writer).
\c - audit_reviewer
SELECT operation, outcome, fields, session_role, "current_role"
FROM vault_audit(:'victim') ORDER BY id;
-- ... and cannot read the record.
SELECT try_sql($$SELECT vault_get('$$ || :'victim' || $$')$$);

-- The failed duplicate store has no token: find it by its outcome.
\c - postgres
SELECT pii_vault.audit_wait() AS audit_written;
SELECT operation, outcome, session_role FROM pii_vault.audit_log
WHERE session_role = 'audit_app' AND token IS NULL ORDER BY id;

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP ROLE audit_app, audit_reviewer;
