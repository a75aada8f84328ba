-- vault_health(): every check of the harness's cluster passes; a DBA
-- mistake shows up with how to fix it.
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE ROLE health_auditor LOGIN IN ROLE pii_vault_auditor;
\c - health_auditor
-- admin_logins warns of every login role in pii_vault_admin, and other
-- suites run in this cluster leave some: it is checked on its own below.
SELECT check_name, ok FROM vault_health() WHERE check_name <> 'admin_logins';
SELECT count(*) AS failing FROM vault_health() WHERE NOT ok AND check_name <> 'admin_logins';

-- Mistakes: EXECUTE granted to PUBLIC, to the wrong vault role, and taken
-- from the right one; a grant on the storage; statement logging in the
-- server's settings and in the application role's own; a role that can
-- read the keyfile through the server; a login admin.
\c - postgres
GRANT EXECUTE ON FUNCTION vault_get(uuid) TO PUBLIC;
GRANT EXECUTE ON FUNCTION vault_restore(uuid) TO pii_vault_writer;
REVOKE EXECUTE ON FUNCTION vault_key_versions() FROM pii_vault_auditor;
GRANT USAGE ON SCHEMA pii_vault TO health_auditor;
SET log_statement = 'all';
SET log_min_duration_statement = 0;
ALTER ROLE app_writer SET log_statement = 'all';
ALTER ROLE app_reader SET log_parameter_max_length = -1;
ALTER ROLE health_auditor SET log_statement = 'all';
GRANT pg_read_server_files TO health_auditor;
CREATE ROLE health_admin LOGIN IN ROLE pii_vault_admin;
SELECT check_name, detail FROM vault_health() WHERE NOT ok AND check_name <> 'admin_logins' ORDER BY check_name;
SELECT ok, detail LIKE 'warning: login roles in pii_vault_admin: %health_admin%' AS names_health_admin
FROM vault_health() WHERE check_name = 'admin_logins';
REVOKE EXECUTE ON FUNCTION vault_get(uuid) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION vault_restore(uuid) FROM pii_vault_writer;
GRANT EXECUTE ON FUNCTION vault_key_versions() TO pii_vault_auditor;
REVOKE USAGE ON SCHEMA pii_vault FROM health_auditor;
RESET log_statement;
RESET log_min_duration_statement;
ALTER ROLE app_writer RESET log_statement;
ALTER ROLE app_reader RESET log_parameter_max_length;
ALTER ROLE health_auditor RESET log_statement;
REVOKE pg_read_server_files FROM health_auditor;
DROP ROLE health_admin;
SELECT count(*) AS failing FROM vault_health() WHERE NOT ok AND check_name <> 'admin_logins';
-- Writers and readers cannot run it.
\c - app_writer
SELECT try_sql('SELECT * FROM vault_health()');

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
\c - postgres
DROP ROLE health_auditor;
