-- Restarted with the original key (now from pii_vault.key_command): every
-- record written before is intact, and the vault works again.
\set ECHO none
\ir common/setup.sql
\set ECHO all
SELECT vault_get(vault_lookup('login', 'canary-3b1f9e-login')) ->> 'name' AS canary_name;
SELECT vault_get(vault_lookup('email', 'alice@new.example'), ARRAY['name', 'address']) AS alice;
SELECT vault_get(vault_lookup('login', $$o'brien; drop table users; --$$), ARRAY['n', 'uni']) AS odd;
SELECT vault_store('{"login": "after-restart"}') IS NOT NULL AS store_works;
SELECT current_setting('pii_vault.key_command') <> '' AS key_command_set;
-- Nothing was MACed under the wrong key meanwhile: the audit verifies.
SELECT pii_vault.audit_wait() AS audit_written;
SELECT ok FROM vault_audit_verify();
