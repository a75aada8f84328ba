-- Field tokens given a record belong to its subject: erasing the subject
-- (GDPR art. 17) takes every one of its tokens with it, leaving no row;
-- while the record is deleted (within its grace) or expired its tokens
-- read nothing, and a restore brings them back. A token with an expiry
-- reads nothing once it passed, and the purge removes it. A token cannot
-- name a record that is not live. The subject's export lists its tokens.
\set ECHO none
\ir common/setup.sql
\set ECHO all
\ir common/purge_worker_away.sql
SET pii_vault.purpose = 'erasure test';
CREATE TABLE subject AS SELECT vault_store('{"name": "Erin", "email": "erin@field-token-erasure.example"}') AS tok;
CREATE TABLE tokens AS
    SELECT vault_tokenize('4012888888881881', 'card', (SELECT tok FROM subject)) AS card,
           vault_tokenize('DE89370400440532013000', 'text', (SELECT tok FROM subject), dedup => true) AS iban,
           vault_tokenize('+44 20 7946 0958', 'phone', (SELECT tok FROM subject)) AS phone,
           vault_tokenize('not the subject''s', 'text') AS other;
SELECT count(*) AS field_tokens_of_the_subject FROM pii_vault.field_tokens WHERE token = (SELECT tok FROM subject);
SELECT vault_detokenize(card) AS card, vault_detokenize(iban) AS iban, vault_detokenize(phone) AS phone FROM tokens;
-- The export gives the subject its tokens with their values.
SELECT jsonb_array_length(e -> 'field_tokens') AS tokens,
       (SELECT string_agg(t ->> 'kind' || '=' || (t ->> 'value'), ' ' ORDER BY t ->> 'kind')
        FROM jsonb_array_elements(e -> 'field_tokens') AS t) AS values
FROM (SELECT vault_subject_export(tok) AS e FROM subject) AS s;
-- Deleted: the tokens read nothing; restored: they read again.
SELECT vault_delete(tok) FROM subject;
SELECT vault_detokenize(card) IS NULL AS card_hidden, vault_detokenize(iban) IS NULL AS iban_hidden FROM tokens;
SELECT try_sql(format('SELECT vault_tokenize(%L, %L, %L)', 'x', 'text', tok)) FROM subject;
SELECT vault_restore(tok) FROM subject;
SELECT vault_detokenize(card) AS card_back FROM tokens;
-- Erased: every token of the subject goes, and nothing of it is left in
-- the table; the other token stays.
SELECT vault_erase(tok) FROM subject;
SELECT count(*) AS rows_left FROM pii_vault.field_tokens AS f
WHERE f.token = (SELECT tok FROM subject) OR f.field_token IN (SELECT card FROM tokens UNION ALL SELECT iban FROM tokens UNION ALL SELECT phone FROM tokens);
SELECT vault_detokenize(card) IS NULL AS card_gone, vault_detokenize(iban) IS NULL AS iban_gone,
       vault_detokenize(phone) IS NULL AS phone_gone, vault_detokenize(other) AS other_stays FROM tokens;
-- A token may not name a record that does not exist.
SELECT try_sql($$SELECT vault_tokenize('x', 'text', '00000000-0000-4000-8000-000000000000')$$);
-- An expiring token: read before, nothing after; the purge removes it.
CREATE TABLE brief AS SELECT vault_tokenize('brief value', expires_at => clock_timestamp() + interval '1 second') AS t;
SELECT vault_detokenize(t) AS before_expiry FROM brief;
SELECT pg_sleep(1.2);
SELECT vault_detokenize(t) IS NULL AS after_expiry FROM brief;
SELECT try_sql($$SELECT vault_tokenize('x', expires_at => now() - interval '1 minute')$$);
-- The purge worker comes by every second (polled 10 s at most).
CALL wait_for_worker('pii_vault purge worker', 15);
ALTER SYSTEM SET pii_vault.purge_interval = 1;
SELECT pg_reload_conf();
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pii_vault.field_tokens WHERE field_token IN (SELECT t FROM brief));
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT count(*) AS expired_rows_left FROM pii_vault.field_tokens WHERE field_token IN (SELECT t FROM brief);
SELECT pii_vault.audit_wait();
SELECT operation, fields, outcome FROM pii_vault.audit_log
WHERE token = (SELECT t::uuid FROM brief) ORDER BY id;
RESET pii_vault.purpose;
ALTER SYSTEM RESET pii_vault.purge_interval;
SELECT pg_reload_conf();
DROP TABLE subject, tokens, brief;
