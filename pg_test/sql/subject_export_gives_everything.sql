-- A data subject exercises the right of access (GDPR art. 15): the
-- controller must hand over everything the vault holds about them, and
-- who read it and why. vault_subject_export(token) gives an admin one
-- JSON object: the record (in whatever state: live, deleted, expired)
-- with its dates, every application's document, the consents and their
-- history, the live shares (fields and dates, never a share id), the
-- number of live sessions (never a session id), and every audit event
-- naming the token with its roles, application and purpose. Nothing of
-- another subject is in it. Only admins may call it (42501 for writer,
-- reader, auditor); after vault_erase it is NULL. Checked through the
-- export's content (jsonb operators, counts, booleans).
\set ECHO none
\ir common/setup.sql
\set ECHO all
-- The purge worker stays away: the expired share and session must be
-- left out because they expired, not because they were removed.
\ir common/purge_worker_away.sql
CREATE ROLE export_app LOGIN IN ROLE pii_vault_writer;
CREATE ROLE export_reader LOGIN IN ROLE pii_vault_reader;
CREATE ROLE export_billing_job NOLOGIN IN ROLE pii_vault_reader;
GRANT export_billing_job TO export_reader;
CREATE ROLE export_dpo LOGIN IN ROLE pii_vault_admin;
CREATE ROLE export_auditor LOGIN IN ROLE pii_vault_auditor;

\c - export_app
SET application_name = 'signup-service';
SET pii_vault.purpose = 'account creation';
SELECT vault_store('{"name": "Sofia Subject", "email": "sofia@subject-export.example", "phone": "+1 415 555 2690", "note": "export-canary-note"}') AS sofia \gset
SELECT vault_store('{"name": "Otto Other", "email": "otto@subject-export.example", "note": "export-canary-otto"}') AS otto \gset
-- Two applications' documents.
SELECT vault_appdata_set(:'sofia', 'crm', '{"tier": "gold", "agent": "export-canary-crm"}') AS crm_set,
       vault_appdata_set(:'sofia', 'newsletter', '{"topics": ["science", "art"]}') AS newsletter_set;
-- Consents, one of them changed.
SELECT vault_consent_set(:'sofia', 'newsletter', true) AS newsletter_granted;
SELECT vault_consent_set(:'sofia', 'newsletter', false) AS newsletter_withdrawn;
SELECT vault_consent_set(:'sofia', 'fraud_checks', true, 'legitimate_interests') AS fraud_checks_granted;
-- One share that lives, one that expires.
SELECT vault_share(:'sofia', ARRAY['name'], '1 hour') AS live_share \gset
SELECT vault_share(:'sofia', ARRAY['email', 'phone'], '1 second') AS short_share \gset
-- Two live sessions and one that expires.
SELECT vault_session_store('{"cart": [1]}', '1 hour', :'sofia') AS session_1 \gset
SELECT vault_session_store('{"cart": [1, 2]}', '1 hour', :'sofia') AS session_2 \gset
SELECT vault_session_store('{"cart": []}', '1 second', :'sofia') AS short_session \gset
-- Otto has the same kinds of things, none of which may show up in Sofia's.
SELECT vault_appdata_set(:'otto', 'crm', '{"tier": "export-canary-otto-crm"}') AS otto_crm_set,
       vault_consent_set(:'otto', 'newsletter', true) AS otto_consent_set,
       vault_share(:'otto', ARRAY['name'], '1 hour') IS NOT NULL AS otto_shared,
       vault_session_store('{"otto": true}', '1 hour', :'otto') IS NOT NULL AS otto_session_stored;

-- Reads by different roles, applications and purposes.
SET application_name = 'support-desk';
SET pii_vault.purpose = 'support ticket 4711';
SELECT vault_get(:'sofia') ->> 'name' AS support_reads;
SET application_name = 'web-shop';
SET pii_vault.purpose = 'checkout';
SELECT vault_session_get(:'session_2') AS shop_reads_session;
\c - export_reader
SET application_name = 'billing';
SET pii_vault.purpose = 'invoice run';
SELECT vault_get(:'sofia', ARRAY['name', 'email']) AS billing_reads;
SELECT vault_appdata_get(:'sofia', 'crm') ->> 'tier' AS billing_reads_crm;
SET ROLE export_billing_job;
SET pii_vault.purpose = 'dunning';
SELECT count(*) AS billing_job_reads_consents FROM vault_consents(:'sofia');
RESET ROLE;
SET application_name = 'partner-portal';
SET pii_vault.purpose = 'delivery';
SELECT vault_get_shared(:'live_share') AS partner_reads_share;
SELECT pg_sleep(1.1);

-- The application's roles may not export (nor may the auditor, who sees
-- no personal data).
\c - export_app
SELECT try_sql(format('SELECT vault_subject_export(%L)', :'sofia')) AS writer_exports;
\c - export_reader
SELECT try_sql(format('SELECT vault_subject_export(%L)', :'sofia')) AS reader_exports;
\c - export_auditor
SELECT try_sql(format('SELECT vault_subject_export(%L)', :'sofia')) AS auditor_exports;

-- The admin exports, for the subject's request.
\c - export_dpo
SET application_name = 'dsar-tool';
SET pii_vault.purpose = 'art. 15 request 2291';
CREATE TEMP TABLE export AS SELECT vault_subject_export(:'sofia') AS x;
SELECT array_agg(k ORDER BY k) AS export_keys FROM export, jsonb_object_keys(x) AS k;
-- The record as stored, live, with its dates.
SELECT x ->> 'state' AS state,
       x ->> 'token' = :'sofia' AS names_the_token,
       x -> 'record' AS record
FROM export;
SELECT x -> 'record' = vault_get(:'sofia') AS record_is_the_stored_one,
       (x ->> 'created_at')::timestamptz <= (x ->> 'updated_at')::timestamptz AS created_then_updated,
       jsonb_typeof(x -> 'created_at') AS created_at_type,
       x -> 'expires_at' = 'null' AS no_expiry,
       x -> 'deleted_at' = 'null' AS not_deleted
FROM export;
-- Every application's document, by application.
SELECT x -> 'app_data' AS app_data FROM export;
-- The consents as they stand, and every change in order.
SELECT c ->> 'purpose' AS purpose, c ->> 'granted' AS granted, c ->> 'legal_basis' AS legal_basis,
       jsonb_typeof(c -> 'given_at') AS given_at_type
FROM export, jsonb_array_elements(x -> 'consents') WITH ORDINALITY AS e(c, n) ORDER BY n;
SELECT n, h ->> 'purpose' AS purpose, h ->> 'granted' AS granted, h ->> 'legal_basis' AS legal_basis,
       jsonb_typeof(h -> 'changed_at') AS changed_at_type
FROM export, jsonb_array_elements(x -> 'consent_history') WITH ORDINALITY AS e(h, n) ORDER BY n;
-- The live share only (its fields and dates), and the live sessions' count.
SELECT jsonb_array_length(x -> 'shares') AS live_shares,
       x -> 'shares' -> 0 -> 'fields' AS live_share_fields,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(x -> 'shares' -> 0) AS k) AS share_keys,
       (x -> 'shares' -> 0 ->> 'expires_at')::timestamptz > now() AS share_expiry_ahead,
       x -> 'sessions' AS live_sessions
FROM export;
-- No share id and no session id, in any form, anywhere in the export;
-- nothing of Otto.
SELECT count(*) FILTER (WHERE x::text ILIKE '%' || id::text || '%'
                           OR x::text ILIKE '%' || encode(uuid_send(id), 'hex') || '%'
                           OR x::text ILIKE '%' || replace(id::text, '-', '') || '%') AS ids_in_export
FROM export, unnest(ARRAY[:'live_share', :'short_share', :'session_1', :'session_2', :'short_session']::uuid[]) AS id;
SELECT x::text ILIKE '%' || :'otto' || '%' AS names_otto,
       x::text ILIKE '%export-canary-otto%' AS holds_ottos_data,
       x::text ILIKE '%export-canary-note%' AS holds_sofias_note
FROM export;

-- The audit part: every event naming Sofia, in order, with who, through
-- which application, and why. First what was done to the record...
SELECT e ->> 'operation' AS operation, count(*) AS events, bool_and(e ->> 'outcome' = 'ok') AS all_ok
FROM export, jsonb_array_elements(x -> 'audit') AS e
GROUP BY 1 ORDER BY 1;
-- ...then who read it, and why.
SELECT e ->> 'operation' AS operation, e ->> 'session_role' AS session_role, e ->> 'current_role' AS "current_role",
       e ->> 'application_name' AS application_name, e ->> 'purpose' AS purpose, e -> 'fields' AS fields
FROM export, jsonb_array_elements(x -> 'audit') WITH ORDINALITY AS a(e, n)
WHERE e ->> 'operation' IN ('get', 'get_shared', 'session_get', 'appdata_get', 'consents')
ORDER BY n;
-- Each event carries every field the subject is owed.
SELECT count(*) AS audit_events,
       count(*) FILTER (WHERE NOT e ?& ARRAY['at', 'operation', 'outcome', 'session_role', 'current_role',
                                            'application_name', 'purpose', 'fields']) AS events_missing_a_field,
       bool_and((e ->> 'at')::timestamptz <= now()) AS all_dated
FROM export, jsonb_array_elements(x -> 'audit') AS e;
-- The export agrees with the vault's own audit of the token.
SELECT (SELECT count(*) FROM vault_audit(:'sofia') WHERE operation NOT IN ('subject_export', 'audit_read', 'get'))
     = (SELECT count(*) FROM export, jsonb_array_elements(x -> 'audit') AS e
        WHERE e ->> 'operation' NOT IN ('subject_export', 'audit_read', 'get')) AS export_matches_vault_audit;

-- The export itself is audited: the next export names it, with its
-- purpose.
SELECT e ->> 'session_role' AS session_role, e ->> 'application_name' AS application_name,
       e ->> 'purpose' AS purpose, e ->> 'outcome' AS outcome
FROM jsonb_array_elements(vault_subject_export(:'sofia') -> 'audit') AS e
WHERE e ->> 'operation' = 'subject_export';
DROP TABLE export;

-- Soft-deleted: the export says so, and still gives everything (the
-- subject is owed it while the vault keeps it).
\c - export_app
SELECT vault_delete(:'sofia') AS sofia_deleted;
SELECT vault_store('{"name": "Ernst Expiring", "email": "ernst@subject-export.example"}', clock_timestamp() + interval '1 second') AS ernst \gset
SELECT vault_appdata_set(:'ernst', 'crm', '{"tier": "silver"}') AS ernst_crm_set;
SELECT pg_sleep(1.1);
\c - export_dpo
SET application_name = 'dsar-tool';
SET pii_vault.purpose = 'art. 15 request 2291';
SELECT x ->> 'state' AS state,
       x -> 'deleted_at' <> 'null' AS has_deleted_at,
       x -> 'record' ->> 'name' AS record_name,
       x -> 'app_data' -> 'crm' ->> 'tier' AS crm_tier,
       jsonb_array_length(x -> 'consent_history') AS consent_changes
FROM (SELECT vault_subject_export(:'sofia') AS x) AS e;
-- Expired: the export says so.
SELECT x ->> 'state' AS state,
       x -> 'expires_at' <> 'null' AS has_expires_at,
       x -> 'deleted_at' = 'null' AS not_deleted,
       x -> 'record' ->> 'name' AS record_name,
       x -> 'app_data' AS app_data
FROM (SELECT vault_subject_export(:'ernst') AS x) AS e;
-- Erased: nothing is left to export; an unknown token gives nothing either.
SELECT vault_erase(:'sofia') AS sofia_erased, vault_erase(:'ernst') AS ernst_erased;
SELECT vault_subject_export(:'sofia') IS NULL AS export_after_erase_is_null,
       vault_subject_export(:'ernst') IS NULL AS expired_export_after_erase_is_null,
       vault_subject_export('00000000-0000-4000-8000-0000000e4907') IS NULL AS unknown_export_is_null;
-- Otto's is untouched by all of it.
SELECT x ->> 'state' AS otto_state, x -> 'app_data' -> 'crm' ->> 'tier' AS otto_crm_tier,
       jsonb_array_length(x -> 'consents') AS otto_consents, jsonb_array_length(x -> 'shares') AS otto_shares,
       x -> 'sessions' AS otto_sessions
FROM (SELECT vault_subject_export(:'otto') AS x) AS e;

-- Every export is in the audit, outcome and all.
\c - postgres
SELECT pii_vault.audit_wait() AS audit_written;
SELECT CASE token WHEN :'sofia' THEN 'sofia' WHEN :'ernst' THEN 'ernst' WHEN :'otto' THEN 'otto'
                  WHEN '00000000-0000-4000-8000-0000000e4907' THEN 'unknown' ELSE CASE WHEN token IS NULL THEN '<none>' ELSE '<other>' END END AS names,
       outcome, session_role, purpose, count(*)
FROM pii_vault.audit_log WHERE operation = 'subject_export' AND application_name = 'dsar-tool'
GROUP BY 1, 2, 3, 4 ORDER BY 1, 2;

ALTER SYSTEM RESET pii_vault.purge_interval;
SELECT pg_reload_conf();

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP ROLE export_app, export_reader, export_billing_job, export_dpo, export_auditor;
