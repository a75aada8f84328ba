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
SET application_name = 'one_person_one_identity';
CREATE TABLE records_before AS SELECT count(*) AS n FROM pii_vault.records;
CREATE TABLE identities AS SELECT vault_store('{"login": "admin", "email": "admin@corp.example", "name": "the admin"}') AS tok;
GRANT SELECT ON identities TO app_reader;
SET ROLE app_writer;
-- Look-alikes of the admin: each a duplicate, none stored.
SELECT v AS look_alike, try_sql(format('SELECT vault_store(%L)', jsonb_build_object('login', v))) AS store_login
FROM unnest(ARRAY['ａｄｍｉｎ', 'ＡＤＭＩＮ', '𝐚𝐝𝐦𝐢𝐧', '𝔞𝔡𝔪𝔦𝔫', 'ⓐⓓⓜⓘⓝ', U&'ADM\0130N', U&'admi\0307n']) AS v;
SELECT v AS look_alike, try_sql(format('SELECT vault_store(%L)', jsonb_build_object('email', v))) AS store_email
FROM unnest(ARRAY['ａｄｍｉｎ@corp.example', '𝐚𝐝𝐦𝐢𝐧@CORP.example', 'ＡＤＭＩＮ@ｃｏｒｐ.example']) AS v;
-- Mixed scripts (Cyrillic а, Greek ο beside Latin letters): refused, and
-- the message does not carry the value.
SELECT try_sql(format('SELECT vault_store(%L)', '{"login": "\u0430dmin"}'::jsonb)) AS cyrillic_a_login;
SELECT try_sql(format('SELECT vault_store(%L)', '{"email": "\u0430dmin@corp.example"}'::jsonb)) AS cyrillic_a_email;
SELECT try_sql(format('SELECT vault_store(%L)', '{"login": "adm\u03bfn"}'::jsonb)) AS greek_o_login;
-- Marks that draw another letter without being it: an overlay (d and
-- U+0335 draw đ), a mark twice (é and U+0301), a mark first. Refused.
SELECT try_sql(format('SELECT vault_store(%L)', jsonb_build_object('login', v))) AS faked_letter
FROM unnest(ARRAY[U&'d\0335avid', U&'o\0338ystein', U&'jos\00E9\0301', U&'\0301admin']) AS v;
-- The domain is lowercased by IDNA alone: ΑΣ-b and ασ-b are one label.
SELECT vault_store('{"email": "x@ασ-b.example"}') IS NOT NULL AS sigma_domain;
SELECT try_sql('SELECT vault_store(''{"email": "x@ΑΣ-B.example"}'')') AS upper_sigma_domain;
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
-- Rows actually left: the admin, the sigma domain and the three above.
SELECT count(*) - (SELECT n FROM records_before) AS records_added FROM pii_vault.records;
-- The refused stores are audited as errors, the duplicates too (no value).
SELECT pii_vault.audit_wait();
SELECT operation, outcome, sum(calls) AS calls FROM pii_vault.audit_log
WHERE operation = 'store' AND application_name = 'one_person_one_identity' GROUP BY 1, 2 ORDER BY 1, 2;

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP TABLE records_before, identities;
