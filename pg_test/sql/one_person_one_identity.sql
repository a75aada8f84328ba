-- The attack: emails and logins were folded by NFC and lowercase only, so
-- a fullwidth (ａｄｍｉｎ), mathematical (𝐚𝐝𝐦𝐢𝐧) or mixed-script (Cyrillic
-- а in аdmin) look-alike of an existing login or address was stored as a
-- second person: an attacker registers the look-alike, and an operator who
-- reads it (or an application that shows it) takes it for the first.
-- Now a login and an email's local part are folded to their identity
-- (NFKC_Casefold): every look-alike that folds to an existing value is a
-- duplicate (23505), is found by lookups as that record, and a value that
-- mixes scripts is refused (22023).
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE TABLE identities AS SELECT vault_store('{"login": "admin", "email": "admin@corp.example", "name": "the admin"}') AS tok;
GRANT SELECT ON identities TO app_reader;
SET ROLE app_writer;
-- Look-alikes of the admin: each a duplicate, none stored.
SELECT v AS look_alike, try_sql(format('SELECT vault_store(%L)', jsonb_build_object('login', v))) AS store_login
FROM unnest(ARRAY['ａｄｍｉｎ', 'ＡＤＭＩＮ', '𝐚𝐝𝐦𝐢𝐧', '𝔞𝔡𝔪𝔦𝔫', 'ⓐⓓⓜⓘⓝ']) AS v;
SELECT v AS look_alike, try_sql(format('SELECT vault_store(%L)', jsonb_build_object('email', v))) AS store_email
FROM unnest(ARRAY['ａｄｍｉｎ@corp.example', '𝐚𝐝𝐦𝐢𝐧@CORP.example', 'ＡＤＭＩＮ@ｃｏｒｐ.example']) AS v;
-- Mixed scripts (Cyrillic а, Greek ο beside Latin letters): refused, and
-- the message does not carry the value.
SELECT try_sql(format('SELECT vault_store(%L)', '{"login": "\u0430dmin"}'::jsonb)) AS cyrillic_a_login;
SELECT try_sql(format('SELECT vault_store(%L)', '{"email": "\u0430dmin@corp.example"}'::jsonb)) AS cyrillic_a_email;
SELECT try_sql(format('SELECT vault_store(%L)', '{"login": "adm\u03bfn"}'::jsonb)) AS greek_o_login;
RESET ROLE;
SET ROLE app_reader;
-- Lookups of the look-alikes find the admin; the mixed one is refused.
SELECT v AS look_alike, vault_lookup('login', v) = (SELECT tok FROM identities) AS finds_the_admin
FROM unnest(ARRAY['ａｄｍｉｎ', '𝐚𝐝𝐦𝐢𝐧', 'Admin']) AS v;
SELECT vault_lookup('email', 'ＡＤＭＩＮ@corp.example') = (SELECT tok FROM identities) AS email_finds_the_admin;
SELECT try_sql('SELECT vault_lookup(''login'', ''' || U&'\0430' || 'dmin'')') AS mixed_lookup;
-- What the vault indexes, shown to an application before it stores.
SELECT vault_normalize('login', 'Straße') AS sharp_s, vault_normalize('login', 'ΣΊΣΥΦΟΣ') AS final_sigma,
       vault_normalize('email', 'ｊｏｓé@Bücher.example') AS email;
RESET ROLE;
-- One script beside shared characters, or Latin with Han and kana, stays.
SET ROLE app_writer;
SELECT vault_store('{"login": "админ"}') IS NOT NULL AS cyrillic_only,
       vault_store('{"login": "用户abc"}') IS NOT NULL AS han_with_latin,
       vault_store('{"login": "jean-luc o''neil"}') IS NOT NULL AS latin_with_punctuation;
RESET ROLE;
-- Rows actually left: the admin and the three stored just above.
SELECT count(*) AS records FROM pii_vault.records;
-- The refused stores are audited as errors, the duplicates too (no value).
SELECT pii_vault.audit_wait();
SELECT operation, outcome, sum(calls) AS calls FROM pii_vault.audit_log
WHERE operation = 'store' GROUP BY 1, 2 ORDER BY 1, 2;
