-- Who read a record is in the audit; why must be too. A session states
-- its purpose (SET pii_vault.purpose) and every audit event of its calls
-- carries it, so a read without a business reason stands out. A purpose
-- cannot be used to smuggle text into the audit (at most 64 characters,
-- no control characters: SET refuses it with 22023, and the previous
-- purpose stays). With pii_vault.require_purpose on (superuser only), a
-- read without a purpose (vault_get, vault_lookup, vault_get_shared) is
-- refused with 42501 and audited as denied. Checked by the audit rows.
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE ROLE purpose_auditor LOGIN IN ROLE pii_vault_auditor;
CREATE ROLE purpose_partner LOGIN IN ROLE pii_vault_share_reader;

\c - app_writer
SHOW pii_vault.purpose;
SHOW pii_vault.require_purpose;
SELECT vault_store('{"name": "Purpose Subject", "email": "subject@purpose.example"}') AS subject \gset
SET pii_vault.purpose = 'support ticket 4711';
SELECT vault_get(:'subject') ->> 'name' AS read_for_ticket;
SELECT vault_lookup('email', 'subject@purpose.example') = :'subject' AS lookup_for_ticket;
SELECT vault_update(:'subject', '{"note": "called back"}') AS update_for_ticket;
SELECT vault_share(:'subject', ARRAY['name'], '1 hour') AS share \gset
SET pii_vault.purpose = 'billing run – März "Q1"';
SELECT vault_get(:'subject', ARRAY['name']) AS read_for_billing;
RESET pii_vault.purpose;
SELECT vault_get(:'subject') ->> 'note' AS read_without_purpose;

-- Too long, or with control characters: refused by SET (22023); the
-- purpose set before stays.
SET pii_vault.purpose = 'fraud review';
SELECT try_sql(format('SET pii_vault.purpose = %L', repeat('x', 65))) AS set_65_chars;
SELECT try_sql(format('SET pii_vault.purpose = %L', repeat('é', 65))) AS set_65_multibyte_chars;
SELECT try_sql($$SELECT set_config('pii_vault.purpose', repeat('y', 100), false)$$) AS set_config_100_chars;
SELECT try_sql(format('SET pii_vault.purpose = %L', E'fraud review\nFORGED AUDIT LINE')) AS set_newline;
SELECT try_sql(format('SET pii_vault.purpose = %L', E'tab\there')) AS set_tab;
SELECT try_sql(format('SET pii_vault.purpose = %L', E'bell\u0007')) AS set_bell;
SELECT try_sql(format('SET pii_vault.purpose = %L', E'esc\u001b[2J')) AS set_escape;
SHOW pii_vault.purpose;
SELECT vault_get(:'subject') ->> 'name' AS read_for_fraud_review;
-- Exactly 64 characters, multibyte or not, are fine.
SELECT try_sql(format('SET pii_vault.purpose = %L', repeat('é', 64))) AS set_64_multibyte_chars;
SELECT length(current_setting('pii_vault.purpose')) AS purpose_length;
SELECT vault_get(:'subject') IS NOT NULL AS read_with_64_chars;
RESET pii_vault.purpose;

\c - postgres
SELECT pii_vault.audit_wait() AS audit_written;
-- Each event carries the purpose its call was made under.
SELECT operation, outcome, coalesce(nullif(purpose, ''), '<none>') AS purpose
FROM pii_vault.audit_log WHERE token = :'subject' ORDER BY id;
-- The auditor sees the same through vault_audit.
\c - purpose_auditor
SELECT operation, coalesce(nullif(purpose, ''), '<none>') AS purpose
FROM vault_audit(:'subject') WHERE operation <> 'audit_read' ORDER BY id;

-- require_purpose: only a superuser turns it on or off.
\c - app_writer
SELECT try_sql('SET pii_vault.require_purpose = off') AS writer_sets_require_purpose;
\c - postgres
ALTER SYSTEM SET pii_vault.require_purpose = on;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);

-- Without a purpose (none set, or an empty one), reads are refused.
\c - app_reader
SHOW pii_vault.require_purpose;
SET application_name = 'require_purpose';
SELECT try_sql(format('SELECT vault_get(%L)', :'subject')) AS get_without_purpose;
SELECT try_sql(format('SELECT vault_get(%L, ARRAY[''name''])', :'subject')) AS get_fields_without_purpose;
SELECT try_sql($$SELECT vault_lookup('email', 'subject@purpose.example')$$) AS lookup_without_purpose;
SELECT try_sql(format('SELECT vault_lookup(''token'', %L)', :'subject')) AS lookup_token_without_purpose;
SELECT try_sql(format('SELECT vault_get_shared(%L)', :'share')) AS get_shared_without_purpose;
SET pii_vault.purpose = '';
SELECT try_sql(format('SELECT vault_get(%L)', :'subject')) AS get_with_empty_purpose;
-- With one, they pass.
SET pii_vault.purpose = 'chargeback 99';
SELECT vault_get(:'subject') ->> 'name' AS get_with_purpose,
       vault_lookup('email', 'subject@purpose.example') = :'subject' AS lookup_with_purpose,
       vault_get_shared(:'share') AS get_shared_with_purpose;
\c - purpose_partner
SET application_name = 'require_purpose';
SELECT try_sql(format('SELECT vault_get_shared(%L)', :'share')) AS partner_without_purpose;
SET pii_vault.purpose = 'parcel delivery';
SELECT vault_get_shared(:'share') AS partner_with_purpose;

\c - postgres
SELECT pii_vault.audit_wait() AS audit_written;
-- Refused reads are audited as denied, with no purpose; allowed ones
-- with theirs.
SELECT session_role, operation, fields, outcome, coalesce(nullif(purpose, ''), '<none>') AS purpose
FROM pii_vault.audit_log WHERE application_name = 'require_purpose' ORDER BY id;
ALTER SYSTEM RESET pii_vault.require_purpose;
SELECT pg_reload_conf();

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP ROLE purpose_auditor, purpose_partner;
