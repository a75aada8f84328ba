-- A share id outlives its purpose: it sits in a partner's log, an old
-- e-mail, a browser history, a dump. Whoever holds it later must get
-- nothing once the share expired, was revoked (vault_unshare), or its
-- record was deleted, expired or erased: vault_get_shared returns NULL,
-- and the audit says why (an expired share or record: 'expired'). The
-- storage never holds the share id itself (only a keyed hash of it), so a
-- dump of pii_vault.shares gives no id to read through. Checked by what
-- each call returns and what rows are left.
\set ECHO none
\ir common/setup.sql
\set ECHO all
-- The purge worker stays away for the suite (a reload wakes it once, with
-- nothing due yet): what an expired share returns is the API's doing,
-- not the worker's.
\ir common/purge_worker_away.sql
CREATE ROLE share_eraser LOGIN IN ROLE pii_vault_admin;

\c - app_writer
SELECT vault_store('{"name": "Grace Hopper", "email": "grace@expired-share.example", "phone": "+1 415 555 2681", "note": "cobol"}') AS grace \gset
SELECT vault_store('{"name": "Deleted Dora", "email": "dora@expired-share.example"}') AS dora \gset
SELECT vault_store('{"name": "Expiring Eve"}', clock_timestamp() + interval '2 seconds') AS eve \gset
SELECT vault_store('{"name": "Erased Earl", "email": "earl@expired-share.example"}') AS earl \gset

SELECT vault_share(:'grace', ARRAY['name'], '2 seconds') AS short_share \gset
SELECT vault_share(:'grace', ARRAY['name', 'email'], '2 seconds') AS purged_share \gset
SELECT vault_share(:'grace', ARRAY['name'], '1 hour') AS revoked_share \gset
SELECT vault_share(:'grace', ARRAY['name'], '1 hour') AS live_share \gset
SELECT vault_share(:'dora', ARRAY['name'], '1 hour') AS dora_share \gset
SELECT vault_share(:'eve', ARRAY['name'], '1 hour') AS eve_share \gset
SELECT vault_share(:'earl', ARRAY['name'], '1 hour') AS earl_share \gset
-- Seven distinct share ids, none of them a record's token.
SELECT count(DISTINCT s) AS distinct_share_ids,
       count(*) FILTER (WHERE s IN (:'grace', :'dora', :'eve', :'earl')) AS share_ids_equal_to_tokens
FROM unnest(ARRAY[:'short_share', :'purged_share', :'revoked_share', :'live_share', :'dora_share', :'eve_share', :'earl_share']::uuid[]) AS s;

-- Every share reads while it lives.
SELECT vault_get_shared(:'short_share') AS short_share_while_live;
SELECT vault_get_shared(:'dora_share') AS dora_share_while_live;
SELECT vault_get_shared(:'eve_share') AS eve_share_while_live;
SELECT vault_get_shared(:'earl_share') AS earl_share_while_live;

-- 1. Revoked: NULL at once; a second revoke finds nothing.
SELECT vault_unshare(:'revoked_share') AS unshared;
SELECT vault_get_shared(:'revoked_share') IS NULL AS revoked_share_is_null;
SELECT vault_unshare(:'revoked_share') AS unshared_again;

-- 2. The record deleted: its share is NULL at once.
SELECT vault_delete(:'dora') AS dora_deleted;
SELECT vault_get_shared(:'dora_share') IS NULL AS share_of_deleted_is_null;

-- 3. The record erased (by an admin): its share is NULL, and its row is gone.
\c - share_eraser
SELECT vault_erase(:'earl') AS earl_erased;
\c - app_writer
SELECT vault_get_shared(:'earl_share') IS NULL AS share_of_erased_is_null;

-- 4. and 5. The share's time-to-live ends; the record's expiry passes.
SELECT pg_sleep(2.5);
SET application_name = 'expired_share_read';
SELECT vault_get_shared(:'short_share') IS NULL AS expired_share_is_null;
SET application_name = 'expired_record_share_read';
SELECT vault_get_shared(:'eve_share') IS NULL AS share_of_expired_record_is_null;
RESET application_name;
-- The live share of the live record still reads: the NULLs above are the
-- shares' and records' states, not a broken share mechanism.
SELECT vault_get_shared(:'live_share') AS live_share_still_reads;

-- The same through the other roles that may read shares.
\c - app_reader
SELECT vault_get_shared(:'short_share') IS NULL AS expired_share_is_null_for_reader,
       vault_get_shared(:'revoked_share') IS NULL AS revoked_share_is_null_for_reader,
       vault_get_shared(:'dora_share') IS NULL AS deleted_record_share_is_null_for_reader,
       vault_get_shared(:'eve_share') IS NULL AS expired_record_share_is_null_for_reader,
       vault_get_shared(:'earl_share') IS NULL AS erased_record_share_is_null_for_reader,
       vault_get_shared(:'live_share') ->> 'name' AS live_share_for_reader;

-- Revoking a share that already expired gives nothing either (and takes
-- its row away).
\c - app_writer
SELECT vault_unshare(:'short_share') AS unshare_of_expired_share;
SELECT vault_get_shared(:'short_share') IS NULL AS unshared_expired_share_is_null;

\c - postgres
-- The erased record's share row went with it, and revoked ones went at
-- once; the others stay until the purge worker comes by, unreadable.
SELECT count(*) AS shares_of_erased_record FROM pii_vault.shares WHERE token = :'earl';
SELECT count(*) AS share_rows_left FROM pii_vault.shares WHERE token IN (:'grace', :'dora', :'eve', :'earl');
SELECT count(*) FILTER (WHERE token = :'grace') AS grace_share_rows,
       count(*) FILTER (WHERE token = :'dora') AS dora_share_rows,
       count(*) FILTER (WHERE token = :'eve') AS eve_share_rows
FROM pii_vault.shares;
-- No column of any share row holds a share id: not as the uuid, not as
-- its 16 bytes, not as their hex, not inside another value.
WITH ids(id) AS (
    SELECT unnest(ARRAY[:'short_share', :'purged_share', :'revoked_share', :'live_share', :'dora_share', :'eve_share', :'earl_share']::uuid[])
)
SELECT count(*) AS share_rows_holding_a_share_id
FROM pii_vault.shares AS s, ids
WHERE s.token = ids.id
   OR position(uuid_send(ids.id) IN s.id_hash) > 0
   OR s.id_hash = uuid_send(ids.id)
   OR s::text ILIKE '%' || ids.id::text || '%'
   OR s::text ILIKE '%' || encode(uuid_send(ids.id), 'hex') || '%';
-- Nor does the audit: it names the record a share read, never the share.
SELECT pii_vault.audit_wait() AS audit_written;
WITH ids(id) AS (
    SELECT unnest(ARRAY[:'short_share', :'purged_share', :'revoked_share', :'live_share', :'dora_share', :'eve_share', :'earl_share']::uuid[])
)
SELECT count(*) AS audit_events_naming_a_share_id
FROM pii_vault.audit_log AS a, ids
WHERE a.token = ids.id OR a::text ILIKE '%' || ids.id::text || '%';

-- What the audit says of each read and revoke: an expired share or a
-- share of an expired record 'expired', a revoked share and a share of a
-- deleted or erased record 'not_found'.
SELECT operation, outcome, count(*) FROM pii_vault.audit_log
WHERE session_role IN ('app_writer', 'app_reader') AND operation IN ('share', 'get_shared', 'unshare')
  AND application_name IN (current_setting('application_name'), 'expired_share_read', 'expired_record_share_read')
GROUP BY 1, 2 ORDER BY 1, 2;
-- The read of the expired share, and of the share of the expired record:
SELECT application_name, operation, outcome FROM pii_vault.audit_log
WHERE application_name IN ('expired_share_read', 'expired_record_share_read') ORDER BY id;
-- Per record: the reads of the shares of the expired record are 'expired'
-- and name it; the erased record's share, once gone, names no token.
SELECT operation, outcome, count(*) FROM pii_vault.audit_log
WHERE token = :'eve' AND operation = 'get_shared' GROUP BY 1, 2 ORDER BY 1, 2;
SELECT operation, outcome, count(*) FROM pii_vault.audit_log
WHERE token = :'dora' AND operation = 'get_shared' GROUP BY 1, 2 ORDER BY 1, 2;
SELECT operation, outcome FROM pii_vault.audit_log
WHERE token = :'earl' ORDER BY id;


-- The purge worker, once it comes by (with no delete grace here),
-- removes the expired share, the expired record and the deleted record,
-- each with its share; it leaves the live share. A deleted record's
-- share is unreadable all along (deletion_is_restorable_within_grace
-- keeps a deleted record through its grace).
-- The purge worker connects once the database exists (pg_regress creates
-- it after the server started, and the postmaster restarts the worker 10 s
-- after its failed first try): wait for it, 15 s at most.
CALL wait_for_worker('pii_vault purge worker', 15);
-- No delete grace: the expired and the deleted record go at once (with
-- the grace, they would stay, unreadable, that long).
ALTER SYSTEM SET pii_vault.delete_grace = 0;
ALTER SYSTEM SET pii_vault.purge_interval = 1;
SELECT set_config('test.dora', :'dora', false) IS NOT NULL AS dora_noted;
SELECT pg_reload_conf();
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pii_vault.shares WHERE expires_at <= clock_timestamp())
              AND NOT EXISTS (SELECT 1 FROM pii_vault.records WHERE expires_at <= clock_timestamp())
              AND NOT EXISTS (SELECT 1 FROM pii_vault.records WHERE token = current_setting('test.dora')::uuid);
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT count(*) FILTER (WHERE token = :'grace') AS grace_share_rows,
       count(*) FILTER (WHERE token = :'dora') AS dora_share_rows,
       count(*) FILTER (WHERE token = :'eve') AS eve_share_rows
FROM pii_vault.shares;
SELECT count(*) AS eve_record_rows FROM pii_vault.records WHERE token = :'eve';
SELECT vault_get_shared(:'purged_share') IS NULL AS purged_share_is_null,
       vault_get_shared(:'eve_share') IS NULL AS purged_record_share_is_null,
       vault_get_shared(:'dora_share') IS NULL AS deleted_record_share_still_null,
       vault_get_shared(:'live_share') ->> 'name' AS live_share_after_purge;
-- Each removal is in the audit as a purge (a share's names its record and
-- the field 'share'; never the share id).
SELECT pii_vault.audit_wait() AS audit_written;
SELECT token = :'grace' AS of_grace, token = :'eve' AS of_eve, fields, outcome
FROM pii_vault.audit_log WHERE operation = 'purge' AND token IN (:'grace', :'dora', :'eve', :'earl')
ORDER BY of_grace, of_eve, fields;

ALTER SYSTEM RESET pii_vault.purge_interval;
ALTER SYSTEM RESET pii_vault.delete_grace;
SELECT pg_reload_conf();

-- A superuser reshapes the storage, each time in a transaction rolled
-- back after. The vault finds its columns by name: a share's expiry
-- dropped and added again in the past makes the live share read NULL;
-- columns of another type (the share's fields, the record's envelope)
-- are an error, never a datum read as the wrong type.
BEGIN;
ALTER TABLE pii_vault.shares DROP COLUMN expires_at;
ALTER TABLE pii_vault.shares ADD COLUMN expires_at timestamptz NOT NULL DEFAULT '2000-01-01';
SELECT vault_get_shared(:'live_share') IS NULL AS readded_past_expiry_is_read;
ROLLBACK;
BEGIN;
ALTER TABLE pii_vault.shares ALTER COLUMN fields TYPE text USING array_to_string(fields, ',');
SELECT try_sql(format('SELECT vault_get_shared(%L)', :'live_share')) AS fields_of_another_type;
ROLLBACK;
BEGIN;
ALTER TABLE pii_vault.records ALTER COLUMN envelope TYPE text USING encode(envelope, 'hex');
SELECT try_sql(format('SELECT vault_get_shared(%L)', :'live_share')) AS envelope_of_another_type;
ROLLBACK;
SELECT vault_get_shared(:'live_share') ->> 'name' AS live_share_after_rollback;

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP ROLE share_eraser;
