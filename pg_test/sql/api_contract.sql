-- The SQL API of DESIGN.md, call by call: results, NULLs, re-indexing.
\set ECHO none
\ir common/setup.sql
\set ECHO all

-- store → token
SELECT vault_store('{"email": " Alice@Example.COM ", "phone": "(415) 555-2671", "login": "Alice", "name": "Alice Liddell", "address": {"city": "Oxford", "zip": "OX1"}}') AS alice \gset
SELECT :'alice'::uuid IS NOT NULL AS stored;

-- get → the record exactly as given (values not normalized)
SELECT vault_get(:'alice') = '{"email": " Alice@Example.COM ", "phone": "(415) 555-2671", "login": "Alice", "name": "Alice Liddell", "address": {"city": "Oxford", "zip": "OX1"}}'::jsonb AS get_returns_record;
SELECT vault_get(:'alice') -> 'address' ->> 'city' AS city;

-- get with fields → only those top-level fields; unknown fields are skipped
SELECT vault_get(:'alice', ARRAY['name', 'address', 'no_such_field']);
SELECT vault_get(:'alice', ARRAY[]::text[]);

-- lookup by each kind, normalized the same way as at store
SELECT vault_lookup('email', 'alice@example.com') = :'alice' AS by_email;
SELECT vault_lookup('email', '  ALICE@example.COM') = :'alice' AS by_email_other_case;
SELECT vault_lookup('phone', '+1 415 555 2671') = :'alice' AS by_phone_e164;
SELECT vault_lookup('phone', '415.555.2671') = :'alice' AS by_phone_default_region;
SELECT vault_lookup('login', 'ALICE ') = :'alice' AS by_login;
SELECT vault_lookup('token', :'alice') = :'alice' AS by_token;
SELECT vault_lookup('token', upper(:'alice')) = :'alice' AS by_token_upper;

-- no match → NULL
SELECT vault_lookup('email', 'nobody@example.com') IS NULL AS unknown_email_is_null;
SELECT vault_lookup('token', '00000000-0000-4000-8000-000000000000') IS NULL AS unknown_token_is_null;
SELECT vault_get('00000000-0000-4000-8000-000000000000') IS NULL AS get_unknown_is_null;
SELECT vault_get('00000000-0000-4000-8000-000000000000', ARRAY['name']) IS NULL AS get_fields_unknown_is_null;

-- STRICT: NULL in, NULL out
SELECT vault_store(NULL) IS NULL AS store_null,
       vault_get(NULL) IS NULL AS get_null,
       vault_get(:'alice', NULL) IS NULL AS get_fields_null,
       vault_lookup(NULL, 'x') IS NULL AS lookup_null_kind,
       vault_lookup('email', NULL) IS NULL AS lookup_null_value,
       vault_update(NULL, '{}') IS NULL AS update_null,
       vault_delete(NULL) IS NULL AS delete_null;

-- a record without any indexed field is fine; JSON null in an indexed field is "absent"
SELECT vault_store('{"name": "Anonymous", "email": null}') AS anon \gset
SELECT vault_get(:'anon');

-- update: RFC 7386 merge patch
SELECT vault_update(:'alice', '{"name": "Alice L.", "address": {"zip": null, "country": "UK"}, "email": "alice@new.example"}');
SELECT vault_get(:'alice', ARRAY['name', 'address', 'email']);
-- re-indexed: the new email finds the record, the old one no longer does
SELECT vault_lookup('email', 'alice@new.example') = :'alice' AS new_email_indexed;
SELECT vault_lookup('email', 'alice@example.com') IS NULL AS old_email_unindexed;
-- a field set to null is removed, and so is its index
SELECT vault_update(:'alice', '{"phone": null}');
SELECT vault_get(:'alice') ? 'phone' AS still_has_phone;
SELECT vault_lookup('phone', '+14155552671') IS NULL AS phone_unindexed;
-- the freed phone can now be used by another record
SELECT vault_store('{"phone": "+1 415 555 2671", "name": "Bob"}') AS bob \gset
SELECT vault_lookup('phone', '(415) 555-2671') = :'bob' AS phone_reused;
-- update of an unknown token → false
SELECT vault_update('00000000-0000-4000-8000-000000000000', '{"a": 1}') AS update_unknown;
-- an empty patch changes nothing
SELECT vault_update(:'bob', '{}') AS empty_patch, vault_get(:'bob') = '{"phone": "+1 415 555 2671", "name": "Bob"}' AS unchanged;

-- delete → true, then false; the record and its indexes are gone
SELECT vault_delete(:'bob') AS deleted;
SELECT vault_delete(:'bob') AS deleted_again;
SELECT vault_get(:'bob') IS NULL AS gone, vault_lookup('phone', '+14155552671') IS NULL AS index_gone;

-- values keep their JSON types and odd characters through the vault
SELECT vault_store($$ {"login": "o'brien; DROP TABLE users; --", "n": 1.50, "big": 123456789012345678901234567890, "t": true, "arr": [1, "two", null], "uni": "zoë 😀 \u00e9", "rtl": "\u202eevil"} $$) AS odd \gset
SELECT vault_get(:'odd');
SELECT vault_lookup('login', $$O'BRIEN; drop table users; --$$) = :'odd' AS metachar_login_found;
SELECT vault_update(:'odd', '{"n": 2, "big": 1e3}');
SELECT vault_get(:'odd', ARRAY['n', 'big', 'uni']);

-- the audit: one row per call, with the operation, token and outcome
-- (written by the audit writer in its own transactions: wait for it)
SELECT pii_vault.audit_wait() AS audit_written;
SELECT operation, outcome, fields
FROM pii_vault.audit_log WHERE token = :'alice' ORDER BY id;
SELECT count(*) AS audit_rows_for_unknown_token
FROM pii_vault.audit_log WHERE token IS NULL AND operation = 'lookup' AND outcome = 'not_found';
SELECT session_role, acting_role, application_name = current_setting('application_name') AS app_name_recorded
FROM pii_vault.audit_log ORDER BY id DESC LIMIT 1;

-- field names reach the audit as given, whatever characters they hold
SELECT vault_get(:'odd', ARRAY['we"ird', 'back\slash', 'a,b', '{x}', 'NULL', '']) AS odd_field_names_absent;
SELECT pii_vault.audit_wait() AS audit_written;
SELECT fields FROM pii_vault.audit_log WHERE token = :'odd' AND operation = 'get' ORDER BY id DESC LIMIT 1;

-- reads see the vault's own writes: in the same statement, and later in a
-- REPEATABLE READ transaction whose snapshot predates the write
SELECT vault_get(vault_store('{"note": "same statement"}')) ->> 'note' AS read_in_same_statement;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) >= 0 AS snapshot_taken FROM pg_catalog.pg_class WHERE false;
SELECT vault_store('{"note": "repeatable read", "email": "rr@example.com"}') AS rr_tok \gset
SELECT vault_get(:'rr_tok') ->> 'note' AS own_write_read_by_token;
SELECT vault_lookup('email', 'RR@example.com') = :'rr_tok' AS own_write_found_by_email;
SELECT vault_lookup('token', :'rr_tok') = :'rr_tok' AS own_write_found_by_token;
ROLLBACK;
SELECT vault_lookup('email', 'rr@example.com') IS NULL AS rolled_back_write_gone;
