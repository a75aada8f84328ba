-- vault_health(): every check of the harness's cluster passes; a DBA
-- mistake shows up with how to fix it.
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE ROLE health_auditor LOGIN IN ROLE pii_vault_auditor;
\c - health_auditor
SELECT check_name, ok FROM vault_health();
SELECT count(*) AS failing FROM vault_health() WHERE NOT ok;

-- Mistakes: EXECUTE granted to PUBLIC, a grant on the storage, statement logging.
\c - postgres
GRANT EXECUTE ON FUNCTION vault_get(uuid) TO PUBLIC;
GRANT USAGE ON SCHEMA pii_vault TO health_auditor;
SET log_statement = 'all';
SET log_min_duration_statement = 0;
SELECT check_name, detail FROM vault_health() WHERE NOT ok ORDER BY check_name;
REVOKE EXECUTE ON FUNCTION vault_get(uuid) FROM PUBLIC;
REVOKE USAGE ON SCHEMA pii_vault FROM health_auditor;
RESET log_statement;
RESET log_min_duration_statement;
SELECT count(*) AS failing FROM vault_health() WHERE NOT ok;
-- Writers and readers cannot run it.
\c - app_writer
SELECT try_sql('SELECT * FROM vault_health()');
