-- A data subject asks to be erased (GDPR art. 17). After an admin's
-- vault_erase nothing of the subject may remain for an attacker who later
-- reads the storage (a dump, a backup taken after, a superuser's SELECT):
-- no row of any vault table names the token (the record, its live and
-- expired shares), whatever state the record was in (live, soft-deleted,
-- expired), nor its session, application data, consents or their
-- history; the API sees nothing; the audit keeps an 'erase' event naming
-- the token and no value. The application's roles cannot erase (42501),
-- and an erase of an unknown token is false and audited as not_found.
-- Checked by the rows left in every table of the storage schema.
\set ECHO none
\ir common/setup.sql
\set ECHO all
-- The purge worker stays away: the rows must go because of the erase.
\ir common/purge_worker_away.sql
CREATE ROLE erasure_admin LOGIN IN ROLE pii_vault_admin;
-- Rows naming a token, per table of the storage schema that has a token
-- column (the audit's batches have none: they are checked apart).
CREATE FUNCTION rows_naming(tok uuid) RETURNS TABLE (tbl text, n bigint) LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel FROM pg_class AS c JOIN pg_attribute AS a ON a.attrelid = c.oid
             WHERE c.relnamespace = 'pii_vault'::regnamespace AND c.relkind IN ('r', 'p')
               AND a.attname = 'token' AND NOT a.attisdropped
             ORDER BY 1::text LOOP
        tbl := r.rel::text;
        EXECUTE format('SELECT count(*) FROM %s WHERE token = $1', r.rel) INTO n USING tok;
        RETURN NEXT;
    END LOOP;
END
$$;
-- Rows of any table of the storage schema other than the audit's that
-- hold the token anywhere, as its text or its bytes.
CREATE FUNCTION rows_holding(tok uuid) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE r record; n bigint; total bigint := 0;
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel FROM pg_class AS c
             WHERE c.relnamespace = 'pii_vault'::regnamespace AND c.relkind IN ('r', 'p')
               AND c.relname NOT IN ('audit_batches', 'audit_anchor') LOOP
        EXECUTE format('SELECT count(*) FROM %s AS t WHERE t::text ILIKE $1 OR t::text ILIKE $2', r.rel) INTO n
            USING '%' || tok::text || '%', '%' || encode(uuid_send(tok), 'hex') || '%';
        total := total + n;
    END LOOP;
    RETURN total;
END
$$;

\c - app_writer
SELECT vault_store('{"name": "Erin Erased", "email": "erin@erase.example", "phone": "+1 415 555 2684", "login": "erin-erase", "note": "erin-secret-note"}') AS erin \gset
SELECT vault_store('{"name": "Bystander", "email": "bystander@erase.example"}') AS bystander \gset
SELECT vault_store('{"name": "Deleted Dan", "email": "dan@erase.example"}') AS dan \gset
SELECT vault_store('{"name": "Expiring Ed", "email": "ed@erase.example"}', clock_timestamp() + interval '1 second') AS ed \gset
-- Erin is read, updated, given an expiry, and shared: live shares and one
-- that expires.
SELECT vault_get(:'erin') ->> 'name' AS erin_read;
SELECT vault_update(:'erin', '{"note": "erin-secret-note-2"}') AS erin_updated;
SELECT vault_set_expiry(:'erin', now() + interval '30 days') AS erin_expiry_set;
SELECT vault_share(:'erin', ARRAY['name'], '1 hour') AS erin_share_name \gset
SELECT vault_share(:'erin', ARRAY['email', 'phone'], '1 hour') AS erin_share_contact \gset
SELECT vault_share(:'erin', ARRAY['note'], '1 second') AS erin_share_expired \gset
SELECT vault_share(:'bystander', ARRAY['name'], '1 hour') AS bystander_share \gset
SELECT vault_share(:'dan', ARRAY['name'], '1 hour') AS dan_share \gset
-- Everything else a subject can have: a session, an application's data,
-- a consent changed once (two history rows).
SELECT vault_session_store('{"cart": "erin-secret-cart"}', '1 hour', :'erin') IS NOT NULL AS erin_session;
SELECT vault_appdata_set(:'erin', 'shop', '{"points": 42}') AS erin_app_data;
SELECT vault_consent_set(:'erin', 'marketing', true), vault_consent_set(:'erin', 'marketing', false);
SELECT vault_get_shared(:'erin_share_name') AS erin_share_reads;
SELECT vault_delete(:'dan') AS dan_deleted;
SELECT pg_sleep(1.5);
SELECT vault_get_shared(:'erin_share_expired') IS NULL AS erin_share_expired_null,
       vault_get(:'ed') IS NULL AS ed_expired;

\c - postgres
-- Before: Erin's record and three shares, Dan's deleted row and share,
-- Ed's expired row.
SELECT * FROM rows_naming(:'erin');
SELECT (SELECT count(*) FROM pii_vault.records WHERE token = :'dan') AS dan_rows,
       (SELECT count(*) FROM pii_vault.records WHERE token = :'ed') AS ed_rows;

-- The application's roles cannot erase.
\c - app_writer
SELECT try_sql(format('SELECT vault_erase(%L)', :'erin')) AS writer_erases;
\c - app_reader
SELECT try_sql(format('SELECT vault_erase(%L)', :'erin')) AS reader_erases;

-- The admin erases Erin (live), Dan (soft-deleted) and Ed (expired).
\c - erasure_admin
SELECT vault_erase(:'erin') AS erin_erased, vault_erase(:'dan') AS dan_erased, vault_erase(:'ed') AS ed_erased;
SELECT vault_erase(:'erin') AS erin_erased_again;
SELECT vault_erase('00000000-0000-4000-8000-00000000e1a5') AS unknown_erased;
-- The API sees nothing of them, and nothing brings them back.
SELECT vault_get(:'erin') IS NULL AS get_null,
       vault_get(:'erin', ARRAY['name']) IS NULL AS get_fields_null,
       vault_lookup('email', 'erin@erase.example') IS NULL AS email_lookup_null,
       vault_lookup('phone', '+14155552684') IS NULL AS phone_lookup_null,
       vault_lookup('login', 'erin-erase') IS NULL AS login_lookup_null,
       vault_lookup('token', :'erin') IS NULL AS token_lookup_null;
SELECT vault_get_shared(:'erin_share_name') IS NULL AS share_name_null,
       vault_get_shared(:'erin_share_contact') IS NULL AS share_contact_null,
       vault_get_shared(:'erin_share_expired') IS NULL AS share_expired_null,
       vault_get_shared(:'dan_share') IS NULL AS dan_share_null;
SELECT vault_restore(:'erin') AS restore_erin, vault_restore(:'dan') AS restore_dan,
       vault_update(:'erin', '{"name": "back"}') AS update_erin,
       vault_set_expiry(:'erin', NULL) AS set_expiry_erin,
       vault_share(:'erin', ARRAY['name'], '1 hour') IS NULL AS share_erin_null;
-- Erin's values are free again.
SELECT vault_store('{"name": "New Erin", "email": "erin@erase.example", "phone": "+1 415 555 2684", "login": "erin-erase"}') AS new_erin \gset
SELECT vault_lookup('email', 'erin@erase.example') = :'new_erin' AS email_is_new_erins;
-- The bystander is untouched.
SELECT vault_get(:'bystander') ->> 'name' AS bystander_name,
       vault_get_shared(:'bystander_share') AS bystander_share_reads;

\c - postgres
-- After: no row of any table with a token column names them.
SELECT * FROM rows_naming(:'erin');
SELECT * FROM rows_naming(:'dan');
SELECT * FROM rows_naming(:'ed');
-- Nor does any other row of the storage outside the audit, in any form.
SELECT rows_holding(:'erin') AS erin_anywhere, rows_holding(:'dan') AS dan_anywhere, rows_holding(:'ed') AS ed_anywhere;
-- The check sees what it looks for: the bystander and the new Erin are there.
SELECT * FROM rows_naming(:'bystander');
SELECT rows_holding(:'new_erin') > 0 AS new_erin_found;

-- The audit: an 'erase' event naming Erin's token, with no field and no
-- value; no audit row or batch holds a value of hers.
SELECT pii_vault.audit_wait() AS audit_written;
SELECT operation, outcome, fields, session_role FROM pii_vault.audit_log
WHERE token = :'erin' AND operation = 'erase' ORDER BY id;
SELECT count(*) AS audit_rows_with_erins_values FROM pii_vault.audit_log AS a
WHERE a::text ILIKE ANY (ARRAY['%Erin Erased%', '%erin@erase%', '%415 555 2684%', '%erin-erase%', '%erin-secret%']);
SELECT count(*) AS audit_batches_with_erins_values FROM pii_vault.audit_batches AS b
WHERE position(convert_to('Erin Erased', 'UTF8') IN b.events) > 0
   OR position(convert_to('erin@erase', 'UTF8') IN b.events) > 0
   OR position(convert_to('erin-secret', 'UTF8') IN b.events) > 0
   OR position(convert_to('erin-erase', 'UTF8') IN b.events) > 0;
-- The erase of an unknown token: false, audited as not_found.
SELECT operation, outcome FROM pii_vault.audit_log
WHERE token = '00000000-0000-4000-8000-00000000e1a5' ORDER BY id;
SELECT operation, outcome, count(*) FROM pii_vault.audit_log
WHERE token IN (:'erin', :'dan', :'ed') AND operation IN ('erase', 'restore', 'purge')
GROUP BY 1, 2 ORDER BY 1, 2;
-- vault_audit(token) tells the same to an admin.
\c - erasure_admin
SELECT operation, outcome FROM vault_audit(:'erin') WHERE operation = 'erase';

\c - postgres
ALTER SYSTEM RESET pii_vault.purge_interval;
SELECT pg_reload_conf();

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP FUNCTION rows_naming(uuid), rows_holding(uuid);
DROP ROLE erasure_admin;
