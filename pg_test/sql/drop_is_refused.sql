-- DROP EXTENSION pii_vault would erase every record and the whole audit,
-- while application tables still hold the tokens. Refused (55006) while
-- the vault holds a record, by every path that drops its storage, unless
-- a superuser sets pii_vault.allow_drop = on in that session.
\set ECHO none
\ir common/setup.sql
\set ECHO all
SELECT vault_store('{"name": "kept"}') AS kept \gset
SELECT count(*) > 0 AS holds_records FROM pii_vault.records;

-- Every way of dropping it, as a superuser.
SELECT try_sql('DROP EXTENSION pii_vault') AS drop_extension;
SELECT try_sql('DROP EXTENSION pii_vault CASCADE') AS drop_cascade;
SET client_min_messages = warning; -- its NOTICE lists what other suites left in public
SELECT try_sql('DROP SCHEMA public CASCADE') AS drop_the_extensions_schema;
RESET client_min_messages;
SELECT try_sql('DROP SCHEMA pii_vault CASCADE') AS drop_the_storage_schema;
SELECT vault_get(:'kept') ->> 'name' AS still_there;

-- Only a superuser can lift the guard, and only for a session.
SET ROLE app_writer;
SELECT try_sql('SET pii_vault.allow_drop = on') AS writer_lifts_guard;
RESET ROLE;
SELECT current_setting('pii_vault.allow_drop') AS default_setting;

-- Lifted: the drop goes through (rolled back here, so the vault stays).
BEGIN;
SET LOCAL pii_vault.allow_drop = on;
DROP EXTENSION pii_vault;
SELECT count(*) AS extensions_left FROM pg_extension WHERE extname = 'pii_vault';
ROLLBACK;
SELECT vault_get(:'kept') ->> 'name' AS after_rollback;
