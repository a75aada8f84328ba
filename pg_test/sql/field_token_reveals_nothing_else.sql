-- A field token in the application's table stands for one value sealed in
-- the vault. Whoever reads the storage finds neither the value nor
-- anything derived from it but the card's last four (a card token is its
-- own row key); the audit names the token's id and kind, never the value;
-- a bad input's error never repeats it. Detokenize is a read: charged to
-- the read budgets, refused without a purpose where one is required, and
-- refused to the share-reader role. A deduplicated tokenize answers
-- "was this value tokenized before?", so it is charged as a read too.
\set ECHO none
\ir common/setup.sql
\set ECHO all
\ir common/reads_per_minute_off.sql
-- Only the statement's budgets count here: the per-role write budget off.
ALTER SYSTEM SET pii_vault.max_writes_per_minute = 0;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
CREATE ROLE ft_app LOGIN IN ROLE pii_vault_writer;
CREATE ROLE ft_analyst LOGIN IN ROLE pii_vault_reader;
CREATE ROLE ft_share LOGIN IN ROLE pii_vault_share_reader;
CREATE TABLE orders (id int, card_token text, iban_token text, email_token text);
GRANT SELECT, INSERT ON orders TO ft_app, ft_analyst, ft_share;
SET ROLE ft_app;
INSERT INTO orders VALUES
    (1, vault_tokenize('4111 1111 1111 1111', 'card'), vault_tokenize('GB33BUKB20201555555555'),
        vault_tokenize('Canary.Field@Example.org', 'email'));
RESET ROLE;
-- The storage: no value, in any column, in any spelling.
SELECT count(*) AS rows_holding_a_value FROM pii_vault.field_tokens AS f
WHERE f::text ILIKE '%4111111111111111%' OR f::text ILIKE '%41111111%'
   OR f::text ILIKE '%GB33BUKB%' OR f::text ILIKE '%20201555555555%' OR f::text ILIKE '%canary.field%'
   OR encode(f.envelope, 'escape') ILIKE '%GB33BUKB%' OR encode(f.envelope, 'escape') LIKE '%41111111%';
-- The rows hold the token, its kind and ciphertext; no record, no hash.
SELECT kind, length(field_token) AS token_length, token IS NULL AS no_record, value_hash IS NULL AS no_hash,
       length(envelope) > 16 AS sealed
FROM pii_vault.field_tokens
WHERE field_token IN (SELECT card_token FROM orders UNION ALL SELECT iban_token FROM orders UNION ALL SELECT email_token FROM orders)
ORDER BY kind;
-- The application reads its values back (as sealed: digits, the email
-- as lookups index it).
SET ROLE ft_analyst;
SET pii_vault.purpose = 'refund';
SELECT vault_detokenize(card_token) AS card, vault_detokenize(iban_token) AS iban, vault_detokenize(email_token) AS email FROM orders;
RESET pii_vault.purpose;
RESET ROLE;
-- The audit names ids and kinds: a UUID token is its own id; a card
-- token's is vault_field_token_id(token), computable by an auditor who
-- has the token. No event anywhere carries a value.
SELECT pii_vault.audit_wait();
SELECT e.operation, e.fields, e.outcome, e.purpose,
       e.token = (SELECT vault_field_token_id(card_token) FROM orders) AS card_id,
       e.token = (SELECT iban_token::uuid FROM orders) AS iban_id
FROM pii_vault.audit_log AS e WHERE e.operation IN ('tokenize', 'detokenize') AND e.acting_role LIKE 'ft\_%' ORDER BY e.id;
SELECT count(*) AS events_with_a_value FROM pii_vault.audit_log AS e
WHERE e::text ILIKE '%4111111111111111%' OR e::text ILIKE '%GB33BUKB%' OR e::text ILIKE '%canary.field%';
SELECT vault_field_token_id('not a token') IS NULL AS not_a_token;
-- Bad input never repeats the value.
SELECT try_sql($$SELECT vault_tokenize('not-an-email-canary', 'email')$$);
SELECT try_sql($$SELECT vault_tokenize('+1 555 CANARY', 'phone')$$);
SELECT try_sql($$SELECT vault_tokenize('')$$);
SELECT try_sql(format('SELECT vault_tokenize(%L)', repeat('x', 4097)));
SELECT try_sql($$SELECT vault_detokenize('canary-not-a-token')$$);
-- An unknown token reads nothing. Card-shaped digits that are no token
-- (a real card number passed by mistake or by a probe) are not named in
-- the audit: a card token's id encodes its digits.
SELECT vault_detokenize('00000000-0000-4000-8000-000000000000') IS NULL AS unknown_is_null;
SET ROLE ft_analyst;
SELECT vault_detokenize('4539578763621486') IS NULL AS real_card_reads_nothing;
RESET ROLE;
SELECT pii_vault.audit_wait();
SELECT count(*) AS events_naming_the_card FROM pii_vault.audit_log
WHERE token = vault_field_token_id('4539578763621486');
SELECT outcome, token IS NULL AS unnamed FROM pii_vault.audit_log
WHERE operation = 'detokenize' AND acting_role = 'ft_analyst' ORDER BY id DESC LIMIT 1;
-- The share reader cannot detokenize, tokenize or delete a token.
SET ROLE ft_share;
SELECT try_sql('SELECT vault_detokenize(card_token) FROM orders');
SELECT try_sql($$SELECT vault_tokenize('4111111111111111', 'card')$$);
SELECT try_sql('SELECT vault_token_delete(card_token) FROM orders');
RESET ROLE;
-- The analyst (a reader) may read but not issue or delete tokens.
SET ROLE ft_analyst;
SELECT try_sql($$SELECT vault_tokenize('x')$$);
SELECT try_sql('SELECT vault_token_delete(card_token) FROM orders');
RESET ROLE;
-- Detokenize is a read: 101 in one statement are refused at the 101st.
SET pii_vault.max_writes_per_statement = 0;
CREATE TABLE many_tokens AS SELECT n, vault_tokenize('value ' || n) AS t FROM generate_series(1, 101) AS n;
RESET pii_vault.max_writes_per_statement;
GRANT SELECT ON many_tokens TO ft_app, ft_analyst;
SET ROLE ft_analyst;
SELECT try_sql('SELECT count(vault_detokenize(t)) FROM many_tokens');
SELECT count(vault_detokenize(t)) AS within_budget FROM many_tokens WHERE n <= 100;
RESET ROLE;
-- Maintenance PostgreSQL runs for a table's owner does not detokenize: a
-- materialized view would keep the values in plaintext, and its refresh
-- runs as its owner, charged to nobody.
SELECT try_sql('CREATE MATERIALIZED VIEW values_kept AS SELECT n, vault_detokenize(t) AS v FROM many_tokens');
-- A deduplicated tokenize is a write and a read: 60 of them and 50
-- detokenizes are 110 reads in one statement, refused; without dedup the
-- same statement is 50 reads, and passes.
SET ROLE ft_app;
SELECT try_sql($$SELECT (SELECT count(vault_tokenize('dedup ' || n, dedup => true)) FROM generate_series(1, 60) AS n)
                      + (SELECT count(vault_detokenize(t)) FROM many_tokens WHERE n <= 50)$$);
SELECT (SELECT count(vault_tokenize('plain ' || n)) FROM generate_series(1, 60) AS n)
     + (SELECT count(vault_detokenize(t)) FROM many_tokens WHERE n <= 50) AS without_dedup;
-- Within budget: the same value gets the same token, another value
-- another, and without dedup every call is a new token.
SELECT count(DISTINCT vault_tokenize('same iban', dedup => true)) AS dedup_tokens,
       count(DISTINCT vault_tokenize('same iban')) AS plain_tokens
FROM generate_series(1, 5);
-- A deduplicated value is normalized first: the same email in another
-- spelling is the same token.
SELECT vault_tokenize('Dedup@Example.org', 'email', dedup => true) = vault_tokenize('dedup@EXAMPLE.org', 'email', dedup => true) AS same_email;
-- The token is deleted at once: it reads nothing after, and a second
-- delete is false.
SELECT vault_token_delete(iban_token) AS deleted, vault_detokenize(iban_token) IS NULL AS gone, vault_token_delete(iban_token) AS again
FROM orders;
RESET ROLE;
-- Where a purpose is required, detokenize needs one (42501, audited).
SET pii_vault.require_purpose = on;
SET ROLE ft_analyst;
SELECT try_sql('SELECT vault_detokenize(card_token) FROM orders');
RESET ROLE;
RESET pii_vault.require_purpose;
ALTER SYSTEM RESET pii_vault.max_writes_per_minute;
SELECT pg_reload_conf();
DROP TABLE orders, many_tokens;
DROP OWNED BY ft_app, ft_analyst, ft_share;
DROP ROLE ft_app, ft_analyst, ft_share;
