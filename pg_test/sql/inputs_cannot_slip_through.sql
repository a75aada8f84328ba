-- Lookup values that look like another person's cannot become a second
-- account: emails and logins refuse every default-ignorable and format
-- character (Unicode properties, not a hand list); phones are accepted
-- only when valid where they are said to be, and every common spelling
-- of a valid number finds the same record. vault_normalize shows the
-- indexed form, or the error a store would raise.
\set ECHO none
\ir common/setup.sql
\set ECHO all
SELECT vault_store('{"email": "victim@bank.example", "login": "victim", "phone": "+1 415 555 2671"}') AS victim \gset
SELECT count(*) AS records_before FROM pii_vault.records \gset
-- Invisible characters: tag characters, interlinear annotation, musical
-- formatting, variation selector, grapheme joiner, Hangul fillers,
-- Braille blank; each would make a look-alike second account.
SELECT c AS code_point,
       try_sql(format($$SELECT vault_store('{"email": "victim%s@bank.example"}')$$, chr(c))) AS email,
       try_sql(format($$SELECT vault_store('{"login": "vic%stim"}')$$, chr(c))) AS login
FROM unnest(ARRAY[917569, 917536, 65529, 119155, 65039, 847, 12644, 4447, 10240, 8203, 8238, 173]) AS c;
SELECT count(*) - :records_before AS look_alike_records_created FROM pii_vault.records;

-- Phones: the default region (US) reads national numbers; others need +.
SELECT v AS spelling, try_sql(format($$SELECT vault_normalize('phone', %L)$$, v)) AS result
FROM unnest(ARRAY[
    '090-1234-5678',            -- a Japanese mobile written nationally: not valid in the US
    '020 7946 0958',            -- a London number written nationally
    '01174960000',              -- the same, not read through 011 as Russian
    '12345abc',                 -- letters
    '1-800-FLOWERS',            -- a vanity number
    '(555) 123-4567 x890',      -- an extension is refused, never dropped
    '+1 415-555-2671 ext. 12',
    '+1 555 0100'               -- too short
]) AS v;
SELECT v AS spelling, vault_normalize('phone', v) AS indexed_as
FROM unnest(ARRAY[
    '+81 90-1234-5678', '+81 (90) 1234 5678', '+819012345678',
    '+44 20 7946 0958', '+44 (0)20 7946 0958', '+44.20.7946.0958',
    '+55 48 5397-5080', '+55485397-5080',
    '+49 30 123456', '+49-30-123456',
    '(415) 555-2671', '415.555.2671', '+1 (415) 555-2671', '011 44 20 7946 0958',
    '+1 800 275 2273'
]) AS v;
-- Each spelling of a stored number finds the same record.
SELECT bool_and(vault_lookup('phone', v) = :'victim') AS every_spelling_finds_the_record
FROM unnest(ARRAY['+1 415 555 2671', '(415) 555-2671', '415-555-2671', '415.555.2671', '+14155552671', '+1 (415) 555-2671']) AS v;
SELECT try_sql($$SELECT vault_store('{"phone": "(415) 555 2671"}')$$) AS same_number_again;
-- vault_normalize for the other kinds, and its errors
SELECT vault_normalize('email', '  Victim@BANK.example ') AS email,
       vault_normalize('login', ' VICTIM ') AS login,
       vault_normalize('token', upper(:'victim')) = :'victim' AS token;
SELECT try_sql($$SELECT vault_normalize('email', 'victim@bank.example' || chr(917569))$$);
SELECT try_sql($$SELECT vault_normalize('ssn', '1')$$);
-- Every call is audited, errors too (this session's failures past the
-- 30th in a second are folded into counted events, queued at the latest
-- when it ends: a new session sees them all, once the old one is gone).
\c
CALL wait_for_logout(current_user, 10);
SELECT pii_vault.audit_wait() AS audit_written;
SELECT operation, outcome, sum(calls) AS calls FROM pii_vault.audit_log
WHERE operation = 'normalize' GROUP BY 1, 2 ORDER BY 1, 2;
