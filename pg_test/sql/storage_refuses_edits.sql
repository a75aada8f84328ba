-- The attack: a member of pg_write_all_data (a migration tool's role, an
-- ETL service) may INSERT, UPDATE and DELETE in every table, and LOCK it
-- in any mode, without reading a row. One UPDATE of key_check
-- stopped every vault call; an ACCESS EXCLUSIVE lock on the audit stopped
-- the audit writer and, once the queue filled, every vault call of every
-- role. Now every table of the vault refuses changes but the vault's own
-- (its functions, its workers, a superuser's restore), and a LOCK stronger
-- than ROW EXCLUSIVE on any of them, or on a view over one.
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE ROLE bulk_loader LOGIN IN ROLE pg_write_all_data;
CREATE SCHEMA loader AUTHORIZATION bulk_loader;
CREATE TABLE edit_victims AS SELECT vault_store('{"email": "edit-victim@example.com", "name": "edit victim"}') AS tok;

SET ROLE bulk_loader;
SELECT try_sql('UPDATE pii_vault.key_check SET check_value = ''\x00''') AS update_key_check;
SELECT try_sql('DELETE FROM pii_vault.key_check') AS delete_key_check;
SELECT try_sql('UPDATE pii_vault.records SET deleted_at = NULL') AS update_records;
SELECT try_sql('DELETE FROM pii_vault.records') AS delete_records;
SELECT try_sql('INSERT INTO pii_vault.records (token, envelope) VALUES (gen_random_uuid(), ''\x00'')') AS insert_records;
SELECT try_sql('UPDATE pii_vault.shares SET expires_at = ''infinity''') AS widen_shares;
SELECT try_sql('UPDATE pii_vault.sessions SET expires_at = ''infinity''') AS extend_sessions;
SELECT try_sql('DELETE FROM pii_vault.app_data') AS delete_app_data;
SELECT try_sql('INSERT INTO pii_vault.consents (token, purpose, granted, legal_basis) VALUES (gen_random_uuid(), ''x'', true, ''consent'')') AS forge_consent;
SELECT try_sql('INSERT INTO pii_vault.audit_anchor DEFAULT VALUES') AS insert_anchor;
SELECT try_sql('UPDATE pii_vault.field_tokens SET expires_at = NULL') AS keep_field_tokens;
SELECT try_sql('DELETE FROM pii_vault.field_tokens') AS delete_field_tokens;
-- Every table of the vault has the guard (a table added without it would
-- be open to this role).
SELECT count(*) AS tables_without_the_guard FROM pg_class AS c
WHERE c.relnamespace = 'pii_vault'::regnamespace AND c.relkind IN ('r', 'p')
  AND NOT EXISTS (SELECT 1 FROM pg_trigger AS t WHERE t.tgrelid = c.oid AND t.tgname = c.relname || '_storage_guard');
-- No sequence to setval to its end (which stopped every consent change).
SELECT count(*) AS sequences_in_the_vault FROM pg_class WHERE relkind = 'S' AND relnamespace = 'pii_vault'::regnamespace;
RESET ROLE;
-- TRUNCATE is not in pg_write_all_data; granted by mistake, still refused.
GRANT TRUNCATE ON pii_vault.sessions TO bulk_loader;
SET ROLE bulk_loader;
SELECT try_sql('TRUNCATE pii_vault.sessions') AS truncate_sessions;
RESET ROLE;
REVOKE TRUNCATE ON pii_vault.sessions FROM bulk_loader;
SET ROLE bulk_loader;
-- Locks: ROW EXCLUSIVE (what any INSERT takes) is not refused; anything
-- stronger is, on a table of the vault or on a view over one.
SELECT try_sql('LOCK TABLE pii_vault.audit_batches IN ACCESS EXCLUSIVE MODE') AS lock_audit;
SELECT try_sql('LOCK TABLE pii_vault.records IN SHARE MODE') AS lock_records_share;
SELECT try_sql('LOCK TABLE pii_vault.key_check IN EXCLUSIVE MODE') AS lock_key_check;
SELECT try_sql('LOCK TABLE pii_vault.audit_batches IN ROW EXCLUSIVE MODE') AS lock_row_exclusive;
CREATE VIEW loader.batches AS SELECT first_id FROM pii_vault.audit_batches;
CREATE VIEW loader.batches_again AS SELECT * FROM loader.batches;
SELECT try_sql('LOCK TABLE loader.batches_again IN ACCESS EXCLUSIVE MODE') AS lock_through_views;
-- Its own tables it may lock as it likes.
CREATE TABLE loader.own (n int);
SELECT try_sql('LOCK TABLE loader.own IN ACCESS EXCLUSIVE MODE') AS lock_own_table;
RESET ROLE;

-- The vault is untouched and keeps working.
SELECT vault_get(tok) ->> 'name' AS still_there, vault_lookup('email', 'edit-victim@example.com') = tok AS still_found
FROM edit_victims;
SELECT vault_store('{"name": "after the attempts"}') IS NOT NULL AS stores_work;
SELECT pii_vault.audit_wait() AS audit_written;
SELECT ok FROM vault_audit_verify();
-- A superuser is not refused (a restore, the purge); the trigger fires for
-- statements that change nothing too, and lets them through.
UPDATE pii_vault.key_check SET key_version = key_version WHERE false;
BEGIN;
LOCK TABLE pii_vault.audit_batches IN ACCESS EXCLUSIVE MODE;
ROLLBACK;
DROP SCHEMA loader CASCADE;
DROP TABLE edit_victims;
DROP ROLE bulk_loader;
