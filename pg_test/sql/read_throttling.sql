-- Bulk exfiltration is throttled: through one statement
-- (pii_vault.max_reads_per_statement, default 100) and through many
-- statements and sessions of one login role (pii_vault.max_reads_per_minute).
-- Throttled reads fail with 54000, are audited as throttled, and log one
-- WARNING. The application's role cannot raise the limits.
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE ROLE bulk_thief LOGIN IN ROLE pii_vault_reader;
SELECT vault_store('{"name": "Throttle Target"}') AS target \gset
SHOW pii_vault.max_reads_per_statement;

\c - bulk_thief
-- The limits are not the thief's to change.
SELECT try_sql('SET pii_vault.max_reads_per_statement = 1000000');
SELECT try_sql('SET pii_vault.max_reads_per_minute = 0');
SELECT try_sql($$SELECT set_config('pii_vault.max_reads_per_statement', '0', false)$$);
SELECT try_sql('ALTER ROLE bulk_thief SET pii_vault.max_reads_per_statement = 0');

-- 100 reads in one statement are fine; the 101st is refused.
SELECT count(vault_get(:'target')) AS reads FROM generate_series(1, 100);
SELECT count(vault_get(:'target')) AS reads FROM generate_series(1, 150);
SELECT count(vault_lookup('token', :'target')) AS lookups FROM generate_series(1, 101);
-- The next statement starts a new count.
SELECT vault_get(:'target') ->> 'name' AS next_statement_reads;

\c - postgres
SELECT pii_vault.audit_wait() AS audit_written;
SELECT operation, outcome, count(*) FROM pii_vault.audit_log
WHERE session_role = 'bulk_thief' GROUP BY 1, 2 ORDER BY 1, 2;

-- Per minute, across statements and sessions of one login role: a
-- rolling budget (no window edge to wait for). With 6 reads a minute one
-- read costs 10 s of budget and a burst of one passes beyond it, so two
-- reads pass at once and the third is refused, in whatever session.
CREATE ROLE minute_thief LOGIN IN ROLE pii_vault_reader;
CREATE ROLE thief_alias IN ROLE pii_vault_reader;
GRANT thief_alias TO minute_thief;
ALTER SYSTEM SET pii_vault.max_reads_per_minute = 6;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
\c - minute_thief
SHOW pii_vault.max_reads_per_minute;
SELECT vault_get(:'target') ->> 'name' AS first_read;
\c - minute_thief
SELECT vault_lookup('token', :'target') IS NOT NULL AS second_read_other_session;
SELECT try_sql($$SELECT vault_get('$$ || :'target' || $$')$$);
\c - minute_thief
SELECT try_sql($$SELECT vault_lookup('token', '$$ || :'target' || $$')$$);
-- SET ROLE does not escape: the budget belongs to the login role.
SET ROLE thief_alias;
SELECT try_sql($$SELECT vault_get('$$ || :'target' || $$')$$);
RESET ROLE;
-- Another login role has its own budget.
\c - postgres
SELECT vault_get(:'target') ->> 'name' AS other_role_reads;
SELECT pii_vault.audit_wait() AS audit_written;
SELECT operation, outcome, count(*) FROM pii_vault.audit_log
WHERE session_role = 'minute_thief' GROUP BY 1, 2 ORDER BY 1, 2;
ALTER SYSTEM RESET pii_vault.max_reads_per_minute;
SELECT pg_reload_conf();
DROP ROLE thief_alias;
DROP OWNED BY minute_thief;
DROP ROLE minute_thief;

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP ROLE bulk_thief;
