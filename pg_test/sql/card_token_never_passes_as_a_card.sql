-- A card number tokenized (PCI DSS tokenization): the token the
-- application keeps in its orders table has the card's length and last
-- four digits, so receipts and forms keep working, but it fails the Luhn
-- check, so no payment system, validator or scanner can take it for a
-- card; kind card_luhn is the legacy variant that passes. A token never
-- equals its card, never equals another token, and reveals nothing but
-- the last four: the other digits of tokens of one card are spread over
-- every digit. Checked on the tokens actually issued.
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE FUNCTION luhn_ok(digits text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT sum(CASE WHEN i % 2 = 1 THEN (d * 2) / 10 + (d * 2) % 10 ELSE d END) % 10 = 0
    FROM (SELECT substr(reverse(digits), i, 1)::int AS d, i - 1 AS i
          FROM generate_series(1, length(digits)) AS i) AS s
$$;
-- Test cards of each length the networks use, each Luhn-valid.
CREATE TABLE cards (card text PRIMARY KEY);
INSERT INTO cards VALUES ('4111111111111111'), ('5555555555554444'), ('378282246310005'),
    ('6011111111111117'), ('4222222222222'), ('3056930009020004'), ('6304000000000000'),
    ('123456789007'), ('4111111111111111003');
SELECT card, luhn_ok(card) FROM cards ORDER BY length(card), card;
SET pii_vault.max_writes_per_statement = 0;
SET pii_vault.max_reads_per_statement = 0;
CREATE TABLE issued AS
    SELECT card, kind, vault_tokenize(card, kind) AS token
    FROM cards, (VALUES ('card'), ('card_luhn')) AS k(kind), generate_series(1, 20);
-- Same length, last four kept, only digits; Luhn fails for card, passes
-- for card_luhn; never the card itself.
SELECT kind,
       bool_and(length(token) = length(card)) AS same_length,
       bool_and(right(token, 4) = right(card, 4)) AS last_four_kept,
       bool_and(token ~ '^[0-9]+$') AS digits_only,
       bool_and(luhn_ok(token) = (kind = 'card_luhn')) AS luhn_as_asked,
       bool_and(token <> card) AS never_the_card
FROM issued GROUP BY kind ORDER BY kind;
-- Spaces and dashes are accepted and give a token of the digits' length.
SELECT length(vault_tokenize('4111 1111-1111 1111', 'card')) AS length, luhn_ok(vault_tokenize('4111 1111-1111 1111', 'card')) AS passes;
-- No two tokens alike: 360 issued, 360 distinct (the primary key of the
-- storage would refuse a second one anyway).
SELECT count(*) AS issued, count(DISTINCT token) AS distinct_tokens FROM issued;
-- The leading digits tell nothing of the card: over 20 tokens of each
-- card, the first digit takes many values, not the card's first digit.
SELECT kind, bool_and(firsts >= 4) AS first_digit_spread, bool_and(same_first < 20) AS not_always_the_cards
FROM (SELECT kind, card, count(DISTINCT left(token, 1)) AS firsts,
             count(*) FILTER (WHERE left(token, 1) = left(card, 1)) AS same_first
      FROM issued GROUP BY kind, card) AS s GROUP BY kind ORDER BY kind;
-- Each token reads back its card's digits.
SELECT count(*) FILTER (WHERE vault_detokenize(token) = card) AS read_back, count(*) AS issued FROM issued;
-- Not a card: refused, the message naming the rule, never the digits.
SELECT try_sql($$SELECT vault_tokenize('4111 1111 1111 1112', 'card')$$);
SELECT try_sql($$SELECT vault_tokenize('4111-1111-1111-111x', 'card')$$);
SELECT try_sql($$SELECT vault_tokenize('41111111111', 'card')$$);
SELECT try_sql($$SELECT vault_tokenize('41111111111111111111', 'card_luhn')$$);
SELECT try_sql($$SELECT vault_tokenize('4111111111111111', 'iban')$$);
-- A card token given to a card-shaped check is no card either: it cannot
-- be tokenized as one.
SELECT try_sql(format('SELECT vault_tokenize(%L, %L)', token, 'card')) FROM issued WHERE kind = 'card' LIMIT 1;
RESET pii_vault.max_writes_per_statement;
RESET pii_vault.max_reads_per_statement;
DROP TABLE issued, cards;
DROP FUNCTION luhn_ok(text);
