-- A partner-facing service logs in with a role in pii_vault_share_reader
-- and is compromised (SQL injection, a stolen password). All it may do is
-- read a share it holds the id of: every other vault function (read,
-- lookup, write, delete, share, revoke, audit, erase, restore, export,
-- rotate) is refused by PostgreSQL's EXECUTE check (42501), and the
-- vault's tables are out of reach. A record's token is not a share id.
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE ROLE partner_svc LOGIN IN ROLE pii_vault_share_reader;
SELECT vault_store('{"name": "Partner Target", "email": "target@share-reader.example", "phone": "+1 415 555 2682", "login": "share-reader-target"}') AS target \gset
SELECT vault_share(:'target', ARRAY['name'], '1 hour') AS share \gset
SELECT vault_share(:'target', ARRAY['name'], '1 hour') AS other_share \gset

\c - partner_svc
-- What it may do: read the share it was given.
SELECT vault_get_shared(:'share') AS shared_fields;
-- A record's token used as a share id reads nothing.
SELECT vault_get_shared(:'target') IS NULL AS token_is_not_a_share;

-- Everything else: 42501.
SELECT try_sql(format('SELECT vault_get(%L)', :'target')) AS vault_get;
SELECT try_sql(format('SELECT vault_get(%L, ARRAY[''name''])', :'target')) AS vault_get_fields;
SELECT try_sql($$SELECT vault_lookup('email', 'target@share-reader.example')$$) AS vault_lookup_email;
SELECT try_sql(format('SELECT vault_lookup(''token'', %L)', :'target')) AS vault_lookup_token;
SELECT try_sql($$SELECT vault_normalize('email', 'target@share-reader.example')$$) AS vault_normalize;
SELECT try_sql($$SELECT vault_store('{"name": "planted"}')$$) AS vault_store;
SELECT try_sql($$SELECT vault_store('{"name": "planted"}', now() + interval '1 day')$$) AS vault_store_expiring;
SELECT try_sql(format('SELECT vault_update(%L, ''{"name": "changed"}'')', :'target')) AS vault_update;
SELECT try_sql(format('SELECT vault_delete(%L)', :'target')) AS vault_delete;
SELECT try_sql(format('SELECT vault_set_expiry(%L, now() + interval ''1 second'')', :'target')) AS vault_set_expiry;
SELECT try_sql(format('SELECT vault_share(%L, ARRAY[''email''], ''1 hour'')', :'target')) AS vault_share;
SELECT try_sql(format('SELECT vault_unshare(%L)', :'other_share')) AS vault_unshare;
SELECT try_sql(format('SELECT * FROM vault_audit(%L)', :'target')) AS vault_audit;
SELECT try_sql('SELECT * FROM vault_audit_verify()') AS vault_audit_verify;
SELECT try_sql(format('SELECT vault_erase(%L)', :'target')) AS vault_erase;
SELECT try_sql(format('SELECT vault_restore(%L)', :'target')) AS vault_restore;
SELECT try_sql('SELECT * FROM vault_export_all()') AS vault_export_all;
SELECT try_sql('SELECT * FROM vault_health()') AS vault_health;
SELECT try_sql('SELECT * FROM vault_key_versions()') AS vault_key_versions;
SELECT try_sql($$SELECT vault_audit_prune(now() - interval '400 days')$$) AS vault_audit_prune;
SELECT try_sql('CALL vault_rotate()') AS vault_rotate;
SELECT try_sql('SELECT pii_vault.audit_wait()') AS audit_wait;
-- The storage: not even the schema.
SELECT try_sql('SELECT count(*) FROM pii_vault.records') AS select_records;
SELECT try_sql('SELECT count(*) FROM pii_vault.shares') AS select_shares;
SELECT try_sql('SELECT count(*) FROM pii_vault.audit_log') AS select_audit_log;
SELECT try_sql('SELECT count(*) FROM pii_vault.audit_batches') AS select_audit_batches;
SELECT try_sql('DELETE FROM pii_vault.shares') AS delete_shares;
-- Nor can it become a role that may do more.
SELECT try_sql('SET ROLE pii_vault_reader') AS set_role_reader;
SELECT try_sql('SET ROLE pii_vault_writer') AS set_role_writer;
SELECT try_sql('SET ROLE pii_vault_admin') AS set_role_admin;

-- Nothing was changed by the attempts: the record reads as before, the
-- other share still works.
SELECT vault_get_shared(:'other_share') AS other_share_still_reads;
\c - postgres
SELECT vault_get(:'target') = '{"name": "Partner Target", "email": "target@share-reader.example", "phone": "+1 415 555 2682", "login": "share-reader-target"}' AS record_unchanged;
SELECT count(*) AS target_share_rows FROM pii_vault.shares WHERE token = :'target';

-- By the catalog, not by the list above: of every function of the
-- extension, the share reader may execute vault_get_shared and the two a
-- proxy routes it with (vault_shard_of: arithmetic on an id it holds;
-- vault_route: a charge to its own budgets), neither of which reads
-- anything, and it holds no privilege on any relation of the storage
-- schema.
SELECT p.oid::regprocedure AS executable_by_share_reader
FROM pg_proc AS p
JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'pii_vault'
WHERE has_function_privilege('partner_svc', p.oid, 'EXECUTE')
ORDER BY 1::text;
SELECT has_schema_privilege('partner_svc', 'pii_vault', 'USAGE') AS schema_usage,
       count(*) FILTER (WHERE has_table_privilege('partner_svc', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')) AS relations_with_any_privilege
FROM pg_class AS c WHERE c.relnamespace = 'pii_vault'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p', 'f');
-- The grants of pii_vault_share_reader itself, which every member inherits.
SELECT p.oid::regprocedure AS executable_by_pii_vault_share_reader
FROM pg_proc AS p
JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'pii_vault'
WHERE has_function_privilege('pii_vault_share_reader', p.oid, 'EXECUTE')
ORDER BY 1::text;

-- The roles that may read records may read shares too; the auditor,
-- who never sees personal data, may not.
SELECT r AS role, has_function_privilege(r, 'vault_get_shared(uuid)', 'EXECUTE') AS may_read_shares
FROM unnest(ARRAY['pii_vault_reader', 'pii_vault_writer', 'pii_vault_admin', 'pii_vault_auditor', 'pii_vault_share_reader']) AS r
ORDER BY 1;
-- And a share reader gains nothing from PUBLIC: no vault function is
-- executable by PUBLIC.
SELECT count(*) AS vault_functions_executable_by_public
FROM pg_proc AS p
JOIN pg_depend AS d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension AS e ON e.oid = d.refobjid AND e.extname = 'pii_vault'
WHERE p.proname LIKE 'vault\_%'
  AND EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
              WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE');

-- The audit has the partner's share reads (the calls PostgreSQL refused
-- never reached the vault).
SELECT pii_vault.audit_wait() AS audit_written;
SELECT operation, outcome, count(*) FROM pii_vault.audit_log
WHERE session_role = 'partner_svc' GROUP BY 1, 2 ORDER BY 1, 2;

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP ROLE partner_svc;
