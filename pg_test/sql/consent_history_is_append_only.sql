-- A controller must be able to prove what a person consented to, on
-- which legal basis, and when they withdrew (GDPR art. 7(1)). Someone
-- who later wants to cover up processing without consent (a DBA, or
-- anyone holding pg_write_all_data) must not be able to rewrite that
-- proof: the consent history is append-only. UPDATE, DELETE and TRUNCATE
-- of pii_vault.consent_history fail with 42501 while the record exists,
-- even for a superuser, and leave every row as it was; pg_write_all_data
-- cannot forge an entry or a consent either (INSERT, UPDATE, DELETE only
-- through the vault's functions); the history goes only with its record
-- (vault_erase). Through the API: vault_consent_set
-- records each change (granted or withdrawn, with one of GDPR art. 6(1)'s
-- legal bases, else 22023, and an expiry that must be in the future);
-- vault_consents gives the current state (an expired consent reads as
-- not granted); vault_consent_history every change, oldest first.
-- Checked by the rows the functions return and the rows left.
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE ROLE consent_app LOGIN IN ROLE pii_vault_writer;
CREATE ROLE consent_reader LOGIN IN ROLE pii_vault_reader;
CREATE ROLE consent_partner LOGIN IN ROLE pii_vault_share_reader;
CREATE ROLE consent_admin LOGIN IN ROLE pii_vault_admin;
CREATE ROLE consent_data_writer LOGIN IN ROLE pg_write_all_data;
-- A writer whose budgets a superuser set low.
CREATE ROLE consent_bulk LOGIN IN ROLE pii_vault_writer;
ALTER ROLE consent_bulk SET pii_vault.max_writes_per_statement = 2;
ALTER ROLE consent_bulk SET pii_vault.max_reads_per_statement = 2;

\c - consent_app
SET application_name = 'consent_suite';
SELECT vault_store('{"name": "Carla Consent", "email": "carla@consent-history.example"}') AS carla \gset
SELECT vault_store('{"name": "Bea Bystander", "email": "bea@consent-history.example"}') AS bea \gset
SELECT vault_store('{"name": "Dan Deleted", "email": "dan@consent-history.example"}') AS dan \gset
SELECT vault_store('{"name": "Ed Expired"}', clock_timestamp() + interval '1 second') AS ed \gset

-- Carla grants, withdraws and grants again; each change is recorded.
SELECT vault_consent_set(:'carla', 'newsletter', true) AS newsletter_granted;
SELECT vault_consent_set(:'carla', 'profiling', true, 'legitimate_interests') AS profiling_granted;
SELECT vault_consent_set(:'carla', 'analytics', true, 'consent', clock_timestamp() + interval '1 second') AS analytics_granted_for_a_second;
SELECT vault_consent_set(:'carla', 'newsletter', false) AS newsletter_withdrawn;
SELECT vault_consent_set(:'carla', 'profiling', false, 'legitimate_interests') AS profiling_objected;
SELECT vault_consent_set(:'carla', 'newsletter', true, 'contract', now() + interval '1 year') AS newsletter_granted_again;
-- Every legal basis of GDPR art. 6(1) is accepted, as given.
SELECT basis, vault_consent_set(:'carla', 'bases', true, basis) AS recorded
FROM unnest(ARRAY['consent', 'contract', 'legal_obligation', 'vital_interests', 'public_task', 'legitimate_interests'])
     WITH ORDINALITY AS b(basis, n) ORDER BY n;
SELECT vault_consent_set(:'bea', 'newsletter', true) AS bea_granted,
       vault_consent_set(:'dan', 'newsletter', true) AS dan_granted;

-- The current state: one row per purpose; the analytics consent still
-- runs.
SELECT purpose, granted, legal_basis, given_at IS NOT NULL AS has_given_at, expires_at IS NOT NULL AS has_expiry
FROM vault_consents(:'carla') ORDER BY purpose;
-- Once its expiry passed, it reads as not granted (the record and the
-- other consents are untouched).
SELECT pg_sleep(1.1);
SELECT purpose, granted, legal_basis, expires_at IS NOT NULL AS has_expiry
FROM vault_consents(:'carla') ORDER BY purpose;
SELECT purpose, granted, legal_basis FROM vault_consents(:'bea');

-- The history: every change, oldest first, each with when it was made.
SELECT n, purpose, granted, legal_basis, expires_at IS NOT NULL AS has_expiry, changed_at IS NOT NULL AS has_changed_at
FROM vault_consent_history(:'carla') WITH ORDINALITY AS h(purpose, granted, legal_basis, given_at, expires_at, changed_at, n)
ORDER BY n;
SELECT bool_and(changed_at >= prev) AS changes_in_time_order,
       count(*) FILTER (WHERE expired_but_listed) AS expired_changes_still_listed
FROM (SELECT changed_at, lag(changed_at, 1, '-infinity') OVER (ORDER BY n) AS prev,
             expires_at <= clock_timestamp() AS expired_but_listed
      FROM vault_consent_history(:'carla') WITH ORDINALITY AS h(purpose, granted, legal_basis, given_at, expires_at, changed_at, n)) AS h;
-- The current state is the latest change of each purpose (expiry aside).
SELECT count(*) AS purposes_whose_state_is_not_the_latest_change
FROM vault_consents(:'carla') AS c
JOIN LATERAL (SELECT h.granted, h.legal_basis, h.changed_at
              FROM vault_consent_history(:'carla') WITH ORDINALITY AS h(purpose, granted, legal_basis, given_at, expires_at, changed_at, n)
              WHERE h.purpose = c.purpose ORDER BY n DESC LIMIT 1) AS last ON true
WHERE c.granted <> (last.granted AND (c.expires_at IS NULL OR c.expires_at > clock_timestamp()))
   OR c.legal_basis <> last.legal_basis OR c.given_at <> last.changed_at;

-- Refused: an unknown legal basis, an expiry not in the future, a bad
-- purpose. None of them changes anything.
SELECT try_sql(format($$SELECT vault_consent_set(%L, 'newsletter', true, 'Consent')$$, :'carla')) AS basis_other_case;
SELECT try_sql(format($$SELECT vault_consent_set(%L, 'newsletter', true, 'consent ')$$, :'carla')) AS basis_trailing_space;
SELECT try_sql(format($$SELECT vault_consent_set(%L, 'newsletter', true, 'legitimate_interest')$$, :'carla')) AS basis_misspelt;
SELECT try_sql(format($$SELECT vault_consent_set(%L, 'newsletter', true, '')$$, :'carla')) AS basis_empty;
SELECT try_sql(format($$SELECT vault_consent_set(%L, 'newsletter', true, 'implied')$$, :'carla')) AS basis_not_in_art_6;
SELECT try_sql(format($$SELECT vault_consent_set(%L, 'newsletter', true, 'consent', now() - interval '1 second')$$, :'carla')) AS expiry_in_the_past;
SELECT try_sql(format($$SELECT vault_consent_set(%L, 'newsletter', true, 'consent', '-infinity')$$, :'carla')) AS expiry_minus_infinity;
SELECT try_sql(format($$SELECT vault_consent_set(%L, '', true)$$, :'carla')) AS purpose_empty;
SELECT try_sql(format($$SELECT vault_consent_set(%L, %L, true)$$, :'carla', repeat('p', 65))) AS purpose_65_chars;
SELECT try_sql(format($$SELECT vault_consent_set(%L, %L, true)$$, :'carla', E'newsletter\nFORGED')) AS purpose_newline;
SELECT try_sql(format($$SELECT vault_consent_set(%L, %L, true)$$, :'carla', E'news\u200bletter')) AS purpose_look_alike;
SELECT vault_consent_set(:'carla', 'newsletter', true, NULL) IS NULL AS null_basis_is_null,
       vault_consent_set(:'carla', 'newsletter', NULL) IS NULL AS null_granted_is_null;
SELECT count(*) AS history_rows_after_refusals FROM vault_consent_history(:'carla');

-- No live record: nothing is recorded, nothing is listed.
SELECT vault_delete(:'dan') AS dan_deleted;
SELECT vault_consent_set('00000000-0000-4000-8000-0000000c0500', 'newsletter', true) AS unknown_token_set,
       vault_consent_set(:'dan', 'newsletter', true) AS deleted_record_set,
       vault_consent_set(:'ed', 'newsletter', true) AS expired_record_set;
SELECT (SELECT count(*) FROM vault_consents('00000000-0000-4000-8000-0000000c0500')) AS unknown_token_consents,
       (SELECT count(*) FROM vault_consent_history(:'dan')) AS deleted_record_history,
       (SELECT count(*) FROM vault_consents(:'ed')) AS expired_record_consents;

-- Readers read the consents but cannot change them; a share reader
-- sees nothing.
\c - consent_reader
SELECT purpose, granted FROM vault_consents(:'carla') ORDER BY purpose;
SELECT count(*) AS history_rows_for_reader FROM vault_consent_history(:'carla');
SELECT try_sql(format($$SELECT vault_consent_set(%L, 'newsletter', false)$$, :'carla')) AS reader_sets;
\c - consent_partner
SELECT try_sql(format($$SELECT * FROM vault_consents(%L)$$, :'carla')) AS share_reader_reads;
SELECT try_sql(format($$SELECT * FROM vault_consent_history(%L)$$, :'carla')) AS share_reader_reads_history;

-- Budgets: a change is a write, a look a read; a statement over its budget
-- fails and leaves no history row behind.
\c - consent_bulk
SELECT vault_store('{"name": "Bulk Bo"}') AS bo \gset
SELECT try_sql(format($$SELECT count(vault_consent_set(%L, 'p' || n, true)) FROM generate_series(1, 3) AS n$$, :'bo')) AS three_changes;
SELECT count(*) AS history_rows_after_refused_statement FROM vault_consent_history(:'bo');
SELECT try_sql(format($$SELECT count(*) FROM generate_series(1, 3) AS n, LATERAL vault_consents(CASE WHEN n > 0 THEN %L::uuid END)$$, :'bo')) AS three_looks;
SELECT try_sql(format($$SELECT count(*) FROM generate_series(1, 3) AS n, LATERAL vault_consent_history(CASE WHEN n > 0 THEN %L::uuid END)$$, :'bo')) AS three_history_looks;

-- The attacker with write access to every table (pg_write_all_data):
-- every change to the history is refused, whatever the statement, and so
-- is forging an entry or a consent.
\c - postgres
CREATE TABLE consent_history_before AS
SELECT h.* FROM pii_vault.consent_history AS h WHERE token IN (:'carla', :'bea', :'dan');
SELECT count(*) AS history_rows_before FROM consent_history_before;
\c - consent_data_writer
SELECT left(try_sql('DELETE FROM pii_vault.consent_history'), 5) AS data_writer_deletes;
SELECT left(try_sql('UPDATE pii_vault.consent_history SET granted = true'), 5) AS data_writer_updates;
SELECT left(try_sql('TRUNCATE pii_vault.consent_history'), 5) AS data_writer_truncates;
SELECT try_sql(format($$INSERT INTO pii_vault.consent_history (token, purpose, granted, legal_basis, changed_at)
                        VALUES (%L, 'profiling', true, 'consent', '2020-01-01')$$, :'carla')) AS data_writer_forges_history;
SELECT try_sql(format($$INSERT INTO pii_vault.consents (token, purpose, granted, legal_basis, given_at)
                        VALUES (%L, 'forged', true, 'consent', '2020-01-01')$$, :'carla')) AS data_writer_forges_consent;
SELECT try_sql('UPDATE pii_vault.consents SET granted = true') AS data_writer_grants_all;
SELECT try_sql('DELETE FROM pii_vault.consents') AS data_writer_deletes_consents;

-- A superuser, while the record exists (live or soft-deleted), is refused
-- the same way: no rewrite, no backdating, no removal.
\c - postgres
SELECT try_sql(format($$UPDATE pii_vault.consent_history SET granted = true WHERE token = %L AND NOT granted$$, :'carla')) AS flip_withdrawal_to_grant;
SELECT try_sql(format($$UPDATE pii_vault.consent_history SET changed_at = changed_at - interval '1 year' WHERE token = %L$$, :'carla')) AS backdate;
SELECT try_sql(format($$UPDATE pii_vault.consent_history SET legal_basis = 'consent' WHERE token = %L AND legal_basis <> 'consent'$$, :'carla')) AS change_basis;
SELECT try_sql(format($$UPDATE pii_vault.consent_history SET token = %L WHERE token = %L$$, :'bea', :'carla')) AS move_to_other_record;
SELECT try_sql(format($$DELETE FROM pii_vault.consent_history WHERE token = %L AND NOT granted$$, :'carla')) AS delete_withdrawals;
SELECT try_sql(format($$DELETE FROM pii_vault.consent_history WHERE id = (SELECT max(id) FROM pii_vault.consent_history WHERE token = %L)$$, :'carla')) AS delete_latest;
SELECT try_sql(format($$DELETE FROM pii_vault.consent_history WHERE token = %L$$, :'dan')) AS delete_soft_deleted_records_history;
SELECT try_sql('DELETE FROM pii_vault.consent_history') AS delete_all;
SELECT try_sql('TRUNCATE pii_vault.consent_history') AS truncate_history;
SELECT try_sql('TRUNCATE pii_vault.consent_history CASCADE') AS truncate_history_cascade;
-- Every row is still there, unchanged.
SELECT (SELECT count(*) FROM pii_vault.consent_history WHERE token IN (:'carla', :'bea', :'dan')) AS history_rows_after,
       (SELECT count(*) FROM consent_history_before AS b JOIN pii_vault.consent_history AS h ON h.id = b.id
        WHERE (h.token, h.purpose, h.granted, h.legal_basis, h.expires_at, h.changed_at)
            IS NOT DISTINCT FROM (b.token, b.purpose, b.granted, b.legal_basis, b.expires_at, b.changed_at)) AS rows_unchanged;
SELECT count(*) AS dan_history_rows FROM pii_vault.consent_history WHERE token = :'dan';
-- Nor was anything forged: the stored state is what Carla set.
SELECT purpose, granted, legal_basis FROM pii_vault.consents WHERE token = :'carla' ORDER BY purpose;
DROP TABLE consent_history_before;

-- Erasure takes the history with the record (and only that record's).
\c - consent_admin
SELECT vault_erase(:'carla') AS carla_erased, vault_erase(:'dan') AS dan_erased;
SELECT (SELECT count(*) FROM vault_consent_history(:'carla')) AS carla_history_after_erase,
       (SELECT count(*) FROM vault_consents(:'carla')) AS carla_consents_after_erase,
       (SELECT count(*) FROM vault_consent_history(:'bea')) AS bea_history_after_erase;
SELECT vault_consent_set(:'carla', 'newsletter', true) AS set_after_erase;
\c - postgres
SELECT (SELECT count(*) FROM pii_vault.consent_history WHERE token IN (:'carla', :'dan')) AS history_rows_left,
       (SELECT count(*) FROM pii_vault.consents WHERE token IN (:'carla', :'dan')) AS consent_rows_left,
       (SELECT count(*) FROM pii_vault.consent_history WHERE token = :'bea') AS bea_history_rows;
-- What is left of Bea's history is still append-only.
SELECT try_sql(format($$DELETE FROM pii_vault.consent_history WHERE token = %L$$, :'bea')) AS delete_bystanders_history;

-- The audit: each change and look names the record and the purpose set
-- (never a basis or any value); refusals are errors.
SELECT pii_vault.audit_wait() AS audit_written;
SELECT operation, outcome, fields, count(*) FROM pii_vault.audit_log
WHERE token = :'carla' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP ROLE consent_app, consent_reader, consent_partner, consent_admin, consent_data_writer, consent_bulk;
