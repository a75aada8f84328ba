-- If the audit cannot be written, reads are refused: fail closed. A
-- superuser makes the audit table reject new rows; the writer keeps its
-- events queued and retries; once the queue is full, a read waits 5 s for
-- room and is refused with 55000. When the table accepts rows again, the
-- writer catches up and the chain is intact.
\set ECHO none
\ir common/setup.sql
\set ECHO all
SELECT pii_vault.audit_wait() AS audit_written;
ALTER TABLE pii_vault.audit_batches ADD CONSTRAINT refuse_new_rows CHECK (first_id < 0) NOT VALID;
SET pii_vault.max_reads_per_statement = 0;
-- The per-role budget would stop the 8 191 reads long before the queue fills.
\ir common/reads_per_minute_off.sql
SELECT vault_store('{"name": "Fail Closed"}') AS tok \gset
-- Fill the queue (8192 events: the store and 8191 lookups), then one more read.
SELECT count(vault_lookup('token', :'tok')) AS reads_while_queue_fills FROM generate_series(1, 8191);
SELECT try_sql($$SELECT vault_get('$$ || :'tok' || $$')$$) AS refused_read;
SELECT try_sql($$SELECT vault_lookup('token', '$$ || :'tok' || $$')$$) AS refused_lookup;
ALTER TABLE pii_vault.audit_batches DROP CONSTRAINT refuse_new_rows;
SELECT pii_vault.audit_wait(30000) AS caught_up;
SELECT vault_get(:'tok') ->> 'name' AS reads_again;
SELECT count(*) AS queued_reads_written FROM pii_vault.audit_log WHERE token = :'tok' AND operation = 'lookup';
SELECT ok FROM vault_audit_verify();
RESET pii_vault.max_reads_per_statement;
ALTER SYSTEM RESET pii_vault.max_reads_per_minute;
SELECT pg_reload_conf();
