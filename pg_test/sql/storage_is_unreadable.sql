-- Segregation: no role but the extension's owner reads or writes the
-- storage; function grants follow DESIGN.md; nothing is granted to PUBLIC.
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE ROLE analyst LOGIN;
CREATE ROLE auditor LOGIN IN ROLE pii_vault_auditor;

-- Nothing of the vault is executable by PUBLIC, nothing in its schema granted.
SELECT p.oid::regprocedure AS function, has_function_privilege('public', p.oid, 'EXECUTE') AS public_can_execute
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pii_vault'
ORDER BY p.oid::regprocedure::text;
SELECT n.nspacl IS NULL OR NOT EXISTS (
         SELECT 1 FROM aclexplode(n.nspacl) a WHERE a.grantee <> n.nspowner) AS storage_schema_has_no_grants
FROM pg_namespace n WHERE nspname = 'pii_vault';
SELECT c.relname, c.relacl IS NULL OR NOT EXISTS (
         SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner) AS no_grants
FROM pg_class c WHERE c.relnamespace = 'pii_vault'::regnamespace ORDER BY 1;
-- Every API function is SECURITY DEFINER with a pinned search_path.
SELECT p.proname, p.prosecdef, p.proconfig
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pii_vault'
WHERE p.proname LIKE 'vault\_%' ORDER BY p.oid::regprocedure::text;

-- Grants per role.
SELECT r.rolname, f.fn, has_function_privilege(r.rolname, f.fn, 'EXECUTE') AS can_execute
FROM (VALUES ('pii_vault_reader'), ('pii_vault_writer'), ('pii_vault_auditor'), ('pii_vault_admin'), ('analyst')) AS r(rolname),
     (VALUES ('vault_store(jsonb)'), ('vault_get(uuid)'), ('vault_get(uuid,text[])'), ('vault_lookup(text,text)'),
             ('vault_update(uuid,jsonb)'), ('vault_delete(uuid)'), ('vault_audit(uuid)'), ('vault_audit_verify()'),
             ('vault_export_all()'), ('pii_vault.install_key_check()'), ('pii_vault.audit_wait(integer)'),
             ('pii_vault.audit_events(bigint,bytea)')) AS f(fn)
ORDER BY 1, 2;

-- A canary value stored by the writer.
\c - app_writer
SELECT vault_store('{"email": "segregation-canary@mail.example", "name": "segregation-canary-name"}') AS tok \gset
SELECT vault_get(:'tok') ->> 'name' AS writer_reads_back;

-- The writer cannot touch the storage directly.
SELECT try_sql('SELECT * FROM pii_vault.records');
SELECT try_sql('SELECT * FROM pii_vault.audit_log');
SELECT try_sql('SELECT * FROM pii_vault.audit_batches');
SELECT try_sql('SELECT * FROM pii_vault.key_check');
SELECT try_sql($$UPDATE pii_vault.records SET envelope = '\x00'$$);
SELECT try_sql('DELETE FROM pii_vault.records');
SELECT try_sql('TRUNCATE pii_vault.records');
SELECT try_sql('DELETE FROM pii_vault.audit_log');
SELECT try_sql('DELETE FROM pii_vault.audit_batches');
SELECT try_sql('CREATE TABLE pii_vault.mine (x int)');
SELECT try_sql('SELECT pii_vault.install_key_check()');
SELECT try_sql('ALTER FUNCTION vault_get(uuid) SECURITY INVOKER');
SELECT try_sql('GRANT USAGE ON SCHEMA pii_vault TO app_writer');
SELECT try_sql('GRANT pii_vault_admin TO app_writer');
SELECT try_sql('ALTER FUNCTION vault_get(uuid) OWNER TO app_writer');
SELECT try_sql($$CREATE OR REPLACE FUNCTION vault_get(token uuid) RETURNS jsonb LANGUAGE sql AS 'SELECT NULL::jsonb'$$);
SELECT try_sql($$CREATE OR REPLACE FUNCTION public.vault_store(record jsonb) RETURNS uuid LANGUAGE sql AS 'SELECT NULL::uuid'$$);
SELECT try_sql('SET ROLE postgres');
SELECT try_sql('SET SESSION AUTHORIZATION postgres');
SELECT try_sql($$LOAD 'pii_vault'$$);
SELECT try_sql($$LOAD '$libdir/pii_vault'$$);
-- No pii_vault setting is the writer's to change.
SELECT try_sql('SET pii_vault.keyfile = ''/tmp/mine.key''');
SELECT try_sql('SET pii_vault.key_command = ''echo 00''');
SELECT try_sql('SET pii_vault.default_region = ''FR''');
SELECT try_sql('SET pii_vault.database = ''postgres''');
SELECT try_sql('SET pii_vault.max_record_bytes = ''1GB''');
SELECT try_sql('SET pii_vault.allow_bulk_export = on');
SELECT try_sql('SET pii_vault.max_reads_per_minute = 0');
SELECT try_sql('SET pii_vault.max_reads_per_statement = 0');
-- Secrets' locations are not even visible to it.
SELECT try_sql('SHOW pii_vault.keyfile');
SELECT try_sql('SHOW pii_vault.key_command');

-- The reader reads and looks up, but cannot write.
\c - app_reader
SELECT vault_get(:'tok') ->> 'name' AS reader_reads;
SELECT vault_lookup('email', 'Segregation-Canary@mail.example') = :'tok' AS reader_looks_up;
SELECT try_sql($$SELECT vault_store('{"a": 1}')$$);
SELECT try_sql($$SELECT vault_update('$$ || :'tok' || $$', '{"a": 1}')$$);
SELECT try_sql($$SELECT vault_delete('$$ || :'tok' || $$')$$);
SELECT try_sql('SELECT * FROM pii_vault.records');

-- An analyst with no vault grants gets nothing at all.
\c - analyst
SELECT try_sql($$SELECT vault_get('$$ || :'tok' || $$')$$);
SELECT try_sql($$SELECT vault_lookup('email', 'segregation-canary@mail.example')$$);
SELECT try_sql('SELECT count(*) FROM pii_vault.records');

-- The auditor reads no PII.
\c - auditor
SELECT try_sql($$SELECT vault_get('$$ || :'tok' || $$')$$);

-- As the owner: what the tables hold is ciphertext and keyed hashes.
\c - postgres
SELECT pii_vault.audit_wait() AS audit_written;
SELECT count(*) AS rows_with_plaintext
FROM pii_vault.records r
WHERE position('segregation-canary' IN encode(r.envelope, 'escape')) > 0
   OR position('segregation-canary' IN r::text) > 0;
SELECT count(*) AS audit_rows_with_plaintext
FROM pii_vault.audit_log a WHERE a::text LIKE '%segregation-canary%';
SELECT length(email_index) AS index_bytes, phone_index IS NULL AS no_phone
FROM pii_vault.records WHERE token = :'tok';
-- The audit names the login role that acted.
SELECT session_role, acting_role, operation, outcome
FROM pii_vault.audit_log WHERE token = :'tok' ORDER BY id;

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP ROLE analyst, auditor;
