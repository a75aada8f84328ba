-- vault_key_versions(): which key versions are loaded, which is active,
-- and how many records each holds (auditors and admins only).
\set ECHO none
\ir common/setup.sql
\set ECHO all
SELECT vault_store('{"name": "versioned"}') IS NOT NULL AS stored;
SELECT key_version, loaded, active, records > 0 AS holds_records FROM vault_key_versions();
SELECT current_setting('pii_vault.active_key_version') AS active_setting;
SET ROLE app_reader;
SELECT try_sql('SELECT * FROM vault_key_versions()') AS reader_asks;
RESET ROLE;
CREATE ROLE key_auditor IN ROLE pii_vault_auditor;
SET ROLE key_auditor;
SELECT key_version, loaded, active FROM vault_key_versions();
RESET ROLE;
DROP ROLE key_auditor;
-- Rotating with every record under the active version moves nothing.
SELECT try_sql('CALL vault_rotate(0)') AS bad_batch_size;
CALL vault_rotate();
SELECT key_version, records > 0 AS holds_records FROM vault_key_versions();
SELECT ok FROM vault_audit_verify();

-- A key check value that does not match the loaded key, added while this
-- session has already judged the keys (as a restore appends the dump's):
-- the next call judges again and refuses; removed, calls work again.
INSERT INTO pii_vault.key_check (key_version, check_value, vault_id)
SELECT 1, '\x00', vault_id FROM pii_vault.key_check LIMIT 1;
SELECT try_sql('SELECT vault_lookup(''login'', ''nobody'')') AS after_a_foreign_check_value;
DELETE FROM pii_vault.key_check WHERE check_value = '\x00';
SELECT try_sql('SELECT vault_lookup(''login'', ''nobody'')') AS after_it_is_gone;
