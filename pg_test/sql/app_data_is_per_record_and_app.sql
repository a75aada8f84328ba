-- Several applications keep their own data about one person in the vault
-- (vault_appdata_set/get/delete: one encrypted document per record and
-- application). One application, or one record, must never read another's
-- document: not through the API (the document is found by record and
-- application name, exactly), not by a superuser who moves envelopes
-- between rows (an envelope is bound to its record and application: moved,
-- it fails authentication, XX001, instead of answering with the other's
-- data), and not by reading the storage (no plaintext in the envelope). A
-- second set replaces the document; a deleted, expired or erased record's
-- documents read NULL and cannot be set; bad application names are refused
-- (22023) before anything is stored (the audit keeps the refusal, never
-- the name); readers may read but not write (42501). Checked by what
-- each call returns and what rows are left.
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE ROLE appdata_app LOGIN IN ROLE pii_vault_writer;
CREATE ROLE appdata_reader LOGIN IN ROLE pii_vault_reader;
CREATE ROLE appdata_partner LOGIN IN ROLE pii_vault_share_reader;
CREATE ROLE appdata_admin LOGIN IN ROLE pii_vault_admin;
-- A writer whose write budget a superuser set low.
CREATE ROLE appdata_bulk LOGIN IN ROLE pii_vault_writer;
ALTER ROLE appdata_bulk SET pii_vault.max_writes_per_statement = 2;
ALTER ROLE appdata_bulk SET pii_vault.max_reads_per_statement = 2;

\c - appdata_app
SET application_name = 'appdata_suite';
SELECT vault_store('{"name": "Anna Apps", "email": "anna@appdata.example"}') AS anna \gset
SELECT vault_store('{"name": "Bert Bystander", "email": "bert@appdata.example"}') AS bert \gset
SELECT vault_store('{"name": "Dora Deleted", "email": "dora@appdata.example"}') AS dora \gset
SELECT vault_store('{"name": "Erik Expiring"}', clock_timestamp() + interval '1 second') AS erik \gset
SELECT vault_store('{"name": "Eve Erased", "email": "eve@appdata.example"}') AS eve \gset

-- Two applications' documents of Anna, one of Bert.
SELECT vault_appdata_set(:'anna', 'crm', '{"tier": "gold", "note": "appdata-canary-anna-crm"}') AS anna_crm_set,
       vault_appdata_set(:'anna', 'shop', '{"cart": [1, 2], "note": "appdata-canary-anna-shop"}') AS anna_shop_set,
       vault_appdata_set(:'bert', 'crm', '{"tier": "bronze", "note": "appdata-canary-bert-crm"}') AS bert_crm_set;
-- Each reads back its own document, and nothing else.
SELECT vault_appdata_get(:'anna', 'crm') AS anna_crm;
SELECT vault_appdata_get(:'anna', 'shop') AS anna_shop;
SELECT vault_appdata_get(:'bert', 'crm') AS bert_crm;
SELECT vault_appdata_get(:'bert', 'shop') IS NULL AS bert_shop_is_null,
       vault_appdata_get(:'anna', 'newsletter') IS NULL AS anna_newsletter_is_null,
       vault_appdata_get(:'anna', 'CRM') IS NULL AS other_case_is_null,
       vault_appdata_get(:'anna', 'crm ') IS NULL AS trailing_space_is_null,
       vault_appdata_get(:'anna', 'cr') IS NULL AS prefix_is_null,
       vault_appdata_get('00000000-0000-4000-8000-0000000a9900', 'crm') IS NULL AS unknown_token_is_null;
-- Application data is not the record, nor the other way round.
SELECT vault_get(:'anna') AS anna_record;
SELECT vault_update(:'anna', '{"tier": "record-field"}') AS record_updated;
SELECT vault_appdata_get(:'anna', 'crm') ->> 'tier' AS crm_tier_after_record_update;

-- A second set replaces the document (no merge), for that application only.
SELECT vault_appdata_set(:'anna', 'crm', '{"tier": "platinum"}') AS anna_crm_replaced;
SELECT vault_appdata_get(:'anna', 'crm') AS anna_crm_after_replace;
SELECT vault_appdata_get(:'anna', 'shop') ->> 'note' AS anna_shop_untouched,
       vault_appdata_get(:'bert', 'crm') ->> 'tier' AS bert_crm_untouched;
-- Any JSON value is a document.
SELECT vault_appdata_set(:'anna', 'flags', '[true, false]') AS array_set,
       vault_appdata_get(:'anna', 'flags') AS array_document;

-- Deleted: NULL at once; a second delete finds nothing; the others stay.
SELECT vault_appdata_delete(:'anna', 'shop') AS anna_shop_deleted;
SELECT vault_appdata_delete(:'anna', 'shop') AS anna_shop_deleted_again,
       vault_appdata_get(:'anna', 'shop') IS NULL AS anna_shop_is_null,
       vault_appdata_get(:'anna', 'crm') ->> 'tier' AS anna_crm_still_reads,
       vault_appdata_delete(:'bert', 'newsletter') AS never_set_deleted,
       vault_appdata_delete('00000000-0000-4000-8000-0000000a9900', 'crm') AS unknown_token_deleted;

-- No such record: nothing is set.
SELECT vault_appdata_set('00000000-0000-4000-8000-0000000a9900', 'crm', '{"x": 1}') AS set_for_unknown_token;

-- The record deleted, expired or erased: its documents read NULL, and
-- none can be set or deleted.
SELECT vault_appdata_set(:'dora', 'crm', '{"note": "appdata-canary-dora"}') AS dora_set,
       vault_appdata_set(:'erik', 'crm', '{"note": "appdata-canary-erik"}') AS erik_set,
       vault_appdata_set(:'eve', 'crm', '{"note": "appdata-canary-eve"}') AS eve_set;
SELECT vault_appdata_get(:'dora', 'crm') ->> 'note' AS dora_while_live,
       vault_appdata_get(:'erik', 'crm') ->> 'note' AS erik_while_live,
       vault_appdata_get(:'eve', 'crm') ->> 'note' AS eve_while_live;
SELECT vault_delete(:'dora') AS dora_deleted;
\c - appdata_admin
SELECT vault_erase(:'eve') AS eve_erased;
\c - appdata_app
SET application_name = 'appdata_suite';
SELECT pg_sleep(1.1);
SELECT vault_appdata_get(:'dora', 'crm') IS NULL AS deleted_record_is_null,
       vault_appdata_get(:'erik', 'crm') IS NULL AS expired_record_is_null,
       vault_appdata_get(:'eve', 'crm') IS NULL AS erased_record_is_null;
SELECT vault_appdata_set(:'dora', 'crm', '{"x": 1}') AS set_for_deleted,
       vault_appdata_set(:'erik', 'crm', '{"x": 1}') AS set_for_expired,
       vault_appdata_set(:'eve', 'crm', '{"x": 1}') AS set_for_erased,
       vault_appdata_delete(:'dora', 'crm') AS delete_for_deleted,
       vault_appdata_delete(:'erik', 'crm') AS delete_for_expired;

-- Application names: 1 to 64 characters without control, invisible or
-- format characters (a name that looks like another would be another
-- application, reading none of its data and hiding its own).
SELECT try_sql(format('SELECT vault_appdata_set(%L, %L, ''{}'')', :'anna', '')) AS empty_name;
SELECT try_sql(format('SELECT vault_appdata_set(%L, %L, ''{}'')', :'anna', repeat('a', 65))) AS name_65_chars;
SELECT try_sql(format('SELECT vault_appdata_set(%L, %L, ''{}'')', :'anna', repeat('é', 65))) AS name_65_multibyte_chars;
SELECT try_sql(format('SELECT vault_appdata_set(%L, %L, ''{}'')', :'anna', E'crm\nFORGED AUDIT LINE')) AS name_newline;
SELECT try_sql(format('SELECT vault_appdata_set(%L, %L, ''{}'')', :'anna', E'crm\t')) AS name_tab;
SELECT try_sql(format('SELECT vault_appdata_set(%L, %L, ''{}'')', :'anna', E'esc\u001b[2J')) AS name_escape;
SELECT try_sql(format('SELECT vault_appdata_set(%L, %L, ''{}'')', :'anna', E'del\u007f')) AS name_delete_char;
SELECT try_sql(format('SELECT vault_appdata_set(%L, %L, ''{}'')', :'anna', E'nel\u0085')) AS name_c1_control;
SELECT try_sql(format('SELECT vault_appdata_set(%L, %L, ''{}'')', :'anna', E'crm\u200b')) AS name_zero_width_space;
SELECT try_sql(format('SELECT vault_appdata_set(%L, %L, ''{}'')', :'anna', E'\u202ecrm')) AS name_bidi_override;
SELECT try_sql(format('SELECT vault_appdata_set(%L, %L, ''{}'')', :'anna', E'cr\u00adm')) AS name_soft_hyphen;
-- The same for a read and a delete.
SELECT try_sql(format('SELECT vault_appdata_get(%L, %L)', :'anna', E'crm\n')) AS get_name_newline;
SELECT try_sql(format('SELECT vault_appdata_get(%L, %L)', :'anna', repeat('a', 65))) AS get_name_65_chars;
SELECT try_sql(format('SELECT vault_appdata_delete(%L, %L)', :'anna', '')) AS delete_empty_name;
-- Exactly 64 characters, multibyte or not, are fine; NULL gives NULL.
SELECT vault_appdata_set(:'anna', repeat('é', 64), '{"long": "name"}') AS name_64_multibyte_chars,
       vault_appdata_get(:'anna', repeat('é', 64)) ->> 'long' AS read_back,
       vault_appdata_delete(:'anna', repeat('é', 64)) AS deleted;
SELECT vault_appdata_set(:'anna', NULL, '{}') IS NULL AS null_name_is_null,
       vault_appdata_set(:'anna', 'crm', NULL) IS NULL AS null_document_is_null,
       vault_appdata_get(:'anna', NULL) IS NULL AS null_name_get_is_null;
SELECT vault_appdata_get(:'anna', 'crm') AS anna_crm_unchanged_by_refusals;

-- Readers may read, not write; a share reader may do neither.
\c - appdata_reader
SELECT vault_appdata_get(:'anna', 'crm') AS reader_reads;
SELECT try_sql(format($$SELECT vault_appdata_set(%L, 'crm', '{"tier": "reader"}')$$, :'anna')) AS reader_sets;
SELECT try_sql(format($$SELECT vault_appdata_delete(%L, 'crm')$$, :'anna')) AS reader_deletes;
\c - appdata_partner
SELECT try_sql(format($$SELECT vault_appdata_get(%L, 'crm')$$, :'anna')) AS share_reader_reads;
\c - appdata_app
SELECT vault_appdata_get(:'anna', 'crm') AS anna_crm_unchanged_by_reader;

-- Budgets: a set is a write, a get a read; over the statement's budget
-- the statement fails and nothing of it is kept.
\c - appdata_bulk
SELECT vault_store('{"name": "Bulk Bob"}') AS bob \gset
SELECT try_sql(format($$SELECT count(vault_appdata_set(%L, 'app' || n, '{}')) FROM generate_series(1, 3) AS n$$, :'bob')) AS three_sets;
SELECT vault_appdata_get(:'bob', 'app1') IS NULL AS first_set_not_kept;
SELECT count(vault_appdata_set(:'bob', 'app' || n, '{}')) AS two_sets FROM generate_series(1, 2) AS n;
SELECT try_sql(format($$SELECT count(vault_appdata_get(%L, 'app1')) FROM generate_series(1, 3)$$, :'bob')) AS three_gets;

\c - postgres
-- The storage: one row per record and application; the names in clear
-- (the schema of the applications, not the person), the documents not.
SELECT CASE token WHEN :'anna' THEN 'anna' WHEN :'bert' THEN 'bert' WHEN :'dora' THEN 'dora'
                  WHEN :'erik' THEN 'erik' WHEN :'eve' THEN 'eve' END AS owner, app
FROM pii_vault.app_data WHERE token IN (:'anna', :'bert', :'dora', :'erik', :'eve') ORDER BY owner, app;
SELECT count(*) AS rows_holding_a_document
FROM pii_vault.app_data AS a
WHERE position(convert_to('appdata-canary', 'UTF8') IN a.envelope) > 0
   OR position(convert_to('platinum', 'UTF8') IN a.envelope) > 0
   OR position(convert_to('bronze', 'UTF8') IN a.envelope) > 0
   OR a::text ILIKE '%appdata-canary%'
   OR a::text ILIKE '%' || encode(convert_to('appdata-canary', 'UTF8'), 'hex') || '%';
-- The search sees what it looks for: the same bytes in a plain jsonb.
SELECT position(convert_to('appdata-canary', 'UTF8') IN jsonb_send('{"note": "appdata-canary-x"}')) > 0
       AS search_finds_plaintext;
-- Nor is a document in the audit: its events name the application only.
SELECT pii_vault.audit_wait() AS audit_written;
SELECT count(*) AS audit_events_with_a_document FROM pii_vault.audit_log AS a
WHERE a::text ILIKE ANY (ARRAY['%appdata-canary%', '%platinum%', '%bronze%', '%FORGED%']);
SELECT operation, outcome, fields, count(*) FROM pii_vault.audit_log
WHERE token = :'anna' AND operation LIKE 'appdata%' AND coalesce(fields, '{}') <> ARRAY[repeat('é', 64)]
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

-- A superuser moves envelopes between rows: each fails authentication
-- (XX001) instead of giving the other row's document.
-- 1. Anna's crm document onto Bert's crm row.
UPDATE pii_vault.app_data SET envelope = (SELECT envelope FROM pii_vault.app_data WHERE token = :'anna' AND app = 'crm')
WHERE token = :'bert' AND app = 'crm';
-- 2. Anna's flags document onto her own mail row (same record, another application).
SELECT vault_appdata_set(:'anna', 'mail', '{"note": "appdata-canary-anna-mail"}') AS anna_mail_set;
UPDATE pii_vault.app_data SET envelope = (SELECT envelope FROM pii_vault.app_data WHERE token = :'anna' AND app = 'flags')
WHERE token = :'anna' AND app = 'mail';
-- 3. Anna's crm row renamed to another application.
UPDATE pii_vault.app_data SET app = 'renamed' WHERE token = :'anna' AND app = 'crm';
\c - appdata_app
SELECT try_sql(format($$SELECT vault_appdata_get(%L, 'crm')$$, :'bert')) AS other_records_envelope;
SELECT try_sql(format($$SELECT vault_appdata_get(%L, 'mail')$$, :'anna')) AS other_apps_envelope;
SELECT try_sql(format($$SELECT vault_appdata_get(%L, 'renamed')$$, :'anna')) AS renamed_row;
SELECT vault_appdata_get(:'anna', 'crm') IS NULL AS old_name_is_null,
       vault_appdata_get(:'anna', 'flags') AS unmoved_document_still_reads;
-- 4. An application's envelope onto a record's row, and a record's onto
-- an application's row (another table).
\c - postgres
SELECT vault_store('{"name": "Table Victim"}') AS victim \gset
UPDATE pii_vault.records SET envelope = (SELECT envelope FROM pii_vault.app_data WHERE token = :'anna' AND app = 'flags')
WHERE token = :'victim';
SELECT vault_appdata_set(:'bert', 'shop', '{"cart": []}') AS bert_shop_set;
UPDATE pii_vault.app_data SET envelope = (SELECT envelope FROM pii_vault.records WHERE token = :'bert')
WHERE token = :'bert' AND app = 'shop';
\c - appdata_app
SELECT try_sql(format('SELECT vault_get(%L)', :'victim')) AS documents_envelope_as_record;
SELECT try_sql(format($$SELECT vault_appdata_get(%L, 'shop')$$, :'bert')) AS records_envelope_as_document;
-- The subject's export refuses the same way, rather than hand out
-- another's document.
\c - appdata_admin
SELECT try_sql(format('SELECT vault_subject_export(%L)', :'bert')) AS export_with_moved_envelope;
-- The failed reads are in the audit as errors, naming the application
-- (the refused names above are errors naming none).
\c - postgres
SELECT pii_vault.audit_wait() AS audit_written;
SELECT CASE token WHEN :'anna' THEN 'anna' WHEN :'bert' THEN 'bert' END AS owner, operation, outcome, fields
FROM pii_vault.audit_log
WHERE token IN (:'anna', :'bert') AND operation = 'appdata_get' AND outcome = 'error' ORDER BY id;

-- Clean up so later suites see only intact envelopes.
\c - appdata_admin
SELECT vault_erase(:'anna') AS anna_erased, vault_erase(:'bert') AS bert_erased,
       vault_erase(:'victim') AS victim_erased, vault_erase(:'dora') AS dora_erased,
       vault_erase(:'erik') AS erik_erased, vault_erase(:'bob') AS bob_erased;
\c - postgres
SELECT count(*) AS app_rows_left FROM pii_vault.app_data
WHERE token IN (:'anna', :'bert', :'dora', :'erik', :'eve', :'bob');

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP ROLE appdata_app, appdata_reader, appdata_partner, appdata_admin, appdata_bulk;
