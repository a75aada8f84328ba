-- Bulk exfiltration is throttled: through one statement
-- (pii_vault.max_reads_per_statement, default 100) and through many
-- statements and sessions of one login role (pii_vault.max_reads_per_minute).
-- Throttled reads fail with 54000, are audited as throttled, and log one
-- WARNING. The application's role cannot raise the limits.
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

-- Per minute, across statements and sessions of one login role.
ALTER SYSTEM SET pii_vault.max_reads_per_minute = 30;
SELECT pg_reload_conf();
-- Stay clear of a minute boundary, which would start a fresh window.
SELECT pg_sleep(CASE WHEN extract(second FROM clock_timestamp()) > 45
                     THEN 61 - extract(second FROM clock_timestamp()) ELSE 0 END) AS waited;
\c - bulk_thief
SHOW pii_vault.max_reads_per_minute;
SELECT count(vault_get(:'target')) AS reads FROM generate_series(1, 20);
\c - bulk_thief
SELECT count(vault_get(:'target')) AS reads FROM generate_series(1, 10);
SELECT try_sql($$SELECT vault_get('$$ || :'target' || $$')$$);
\c - bulk_thief
SELECT try_sql($$SELECT vault_lookup('token', '$$ || :'target' || $$')$$);
-- Another login role has its own window.
\c - postgres
SELECT vault_get(:'target') ->> 'name' AS other_role_reads;
ALTER SYSTEM RESET pii_vault.max_reads_per_minute;
SELECT pg_reload_conf();
