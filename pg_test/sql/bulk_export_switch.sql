-- vault_export_all() is the one function that returns every record. It
-- works only for pii_vault_admin and only while a superuser has set
-- pii_vault.allow_bulk_export = on; every attempt is audited.
\set ECHO none
\ir common/setup.sql
\set ECHO all
SELECT vault_store('{"login": "export-target", "email": "Export-Target@Example.com"}') IS NOT NULL AS stored;
SELECT count(vault_store(jsonb_build_object('n', n))) AS more_stored FROM generate_series(1, 10) AS n;
CREATE ROLE vault_admin LOGIN IN ROLE pii_vault_admin;
CREATE ROLE export_thief LOGIN IN ROLE pii_vault_writer;

\c - export_thief
SELECT try_sql('SELECT count(*) FROM vault_export_all()');
SELECT try_sql('SET pii_vault.allow_bulk_export = on');

\c - vault_admin
SHOW pii_vault.allow_bulk_export;
SELECT try_sql('SELECT count(*) FROM vault_export_all()');

\c - postgres
ALTER SYSTEM SET pii_vault.allow_bulk_export = on;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
\c - vault_admin
SHOW pii_vault.allow_bulk_export;
SELECT count(*) > 10 AS exported_many, count(*) FILTER (WHERE record IS NULL) AS without_record
FROM vault_export_all();
SELECT e.record ->> 'email' AS email FROM vault_export_all() AS e WHERE e.record ->> 'login' = 'export-target';

\c - postgres
-- Every live record (deleted and expired ones are invisible to every call).
SELECT (SELECT count(*) FROM pii_vault.records WHERE deleted_at IS NULL AND (expires_at IS NULL OR expires_at > now()))
     = (SELECT count(*) FROM vault_export_all()) AS all_records_exported;
ALTER SYSTEM RESET pii_vault.allow_bulk_export;
SELECT pg_reload_conf();
SELECT pii_vault.audit_wait() AS audit_written;
SELECT session_role, outcome, count(*) FROM pii_vault.audit_log
WHERE operation = 'export' GROUP BY 1, 2 ORDER BY 1, 2;

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP ROLE vault_admin, export_thief;
