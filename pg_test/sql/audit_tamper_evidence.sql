-- The audit is stored in batches of events, each with a MAC under the audit
-- sub-key chained to the previous batch. A superuser who edits, deletes,
-- inserts or reorders batches, or edits the token list that vault_audit
-- searches, is caught by vault_audit_verify(). (A superuser is out of the
-- vault's threat model for reading, but the audit's tamper evidence holds
-- against one.)
\set ECHO none
\ir common/setup.sql
\set ECHO all
-- The attacker switches off the trigger that keeps a dump's audit out of a
-- vault with its own (audit_batches_restore_guard: a guard against a
-- DBA's mistake, which a superuser can always disable).
SET session_replication_role = replica;
-- Calls naming tokens, so there are batches to tamper with.
SELECT vault_store('{"name": "tamper target"}') AS target \gset
-- Five reads, each written before the next is made: five batches.
SELECT vault_get(:'target') IS NOT NULL AS read, pii_vault.audit_wait() AS written;
SELECT vault_get(:'target') IS NOT NULL AS read, pii_vault.audit_wait() AS written;
SELECT vault_get(:'target') IS NOT NULL AS read, pii_vault.audit_wait() AS written;
SELECT vault_get(:'target') IS NOT NULL AS read, pii_vault.audit_wait() AS written;
SELECT vault_get(:'target') IS NOT NULL AS read, pii_vault.audit_wait() AS written;
SELECT pii_vault.audit_wait() AS audit_written;
SELECT ok, rows_checked > 0 AS checked_rows, first_bad_id FROM vault_audit_verify();
SELECT pii_vault.audit_wait() AS audit_written;

-- Pick a batch in the middle, naming a token, and keep a copy to put back.
SELECT first_id AS victim_id FROM pii_vault.audit_batches
WHERE EXISTS (SELECT FROM pii_vault.audit_events(first_id, events) e WHERE e.token IS NOT NULL)
ORDER BY first_id OFFSET 3 LIMIT 1 \gset
CREATE TEMP TABLE saved AS SELECT * FROM pii_vault.audit_batches WHERE first_id = :victim_id;
CREATE FUNCTION pg_temp.restore_victim() RETURNS void LANGUAGE sql AS $$
    UPDATE pii_vault.audit_batches a SET last_id = s.last_id, token_filter = s.token_filter, events = s.events, mac = s.mac
    FROM saved s WHERE a.first_id = s.first_id
$$;

-- Edited: one bit of an event flipped (an outcome, a role, a token...).
UPDATE pii_vault.audit_batches SET events = set_byte(events, length(events) - 1, get_byte(events, length(events) - 1) # 1)
WHERE first_id = :victim_id;
SELECT ok, first_bad_id = :victim_id AS names_the_batch FROM vault_audit_verify();
SELECT pg_temp.restore_victim();
SELECT ok FROM vault_audit_verify();

-- Edited: an event's outcome rewritten in place ("ok" -> "no").
UPDATE pii_vault.audit_batches
SET events = overlay(events PLACING '\x6e6f'::bytea FROM position('\x00000002'::bytea || 'ok'::bytea IN events) + 4)
WHERE first_id = :victim_id AND position('\x00000002'::bytea || 'ok'::bytea IN events) > 0;
SELECT ok, first_bad_id = :victim_id AS names_the_batch FROM vault_audit_verify();
SELECT pg_temp.restore_victim();

-- Edited: the batch's token filter cleared, to hide the reads of a record
-- from an auditor (vault_audit skips the batches the filter rules out).
SELECT e.token AS hidden_token, s.last_id AS victim_last_id
FROM saved s CROSS JOIN LATERAL pii_vault.audit_events(s.first_id, s.events) e
WHERE e.token IS NOT NULL LIMIT 1 \gset
SELECT count(*) > 0 AS listed_before FROM vault_audit(:'hidden_token') WHERE id BETWEEN :victim_id AND :victim_last_id;
UPDATE pii_vault.audit_batches SET token_filter = '\x0700' WHERE first_id = :victim_id;
SELECT count(*) = 0 AS hidden_from_vault_audit FROM vault_audit(:'hidden_token') WHERE id BETWEEN :victim_id AND :victim_last_id;
SELECT ok, first_bad_id = :victim_id AS names_the_batch FROM vault_audit_verify();
SELECT pg_temp.restore_victim();
SELECT count(*) > 0 AS listed_again FROM vault_audit(:'hidden_token') WHERE id BETWEEN :victim_id AND :victim_last_id;

-- Deleted.
DELETE FROM pii_vault.audit_batches WHERE first_id = :victim_id;
SELECT ok, first_bad_id = :victim_id AS names_the_batch FROM vault_audit_verify();
INSERT INTO pii_vault.audit_batches SELECT * FROM saved;
SELECT ok FROM vault_audit_verify();

-- Inserted: a forged batch (no key, so no valid MAC), placed far beyond the
-- batches the writer is still appending.
INSERT INTO pii_vault.audit_batches (first_id, last_id, token_filter, events, mac)
VALUES (1000000000, 1000000000, '\x0700', '\x0100000000', '\x00');
SELECT ok, first_bad_id IS NOT NULL AS names_a_batch FROM vault_audit_verify();
DELETE FROM pii_vault.audit_batches WHERE first_id = 1000000000;
SELECT ok FROM vault_audit_verify();

-- Reordered: two consecutive batches swap their contents (ids stay).
CREATE TEMP TABLE pair AS SELECT * FROM pii_vault.audit_batches
WHERE first_id >= :victim_id ORDER BY first_id LIMIT 2;
UPDATE pii_vault.audit_batches a SET token_filter = p.token_filter, events = p.events, mac = p.mac
FROM pair p WHERE p.first_id <> a.first_id AND a.first_id IN (SELECT first_id FROM pair);
SELECT ok, first_bad_id = :victim_id AS names_the_batch FROM vault_audit_verify();
UPDATE pii_vault.audit_batches a SET token_filter = p.token_filter, events = p.events, mac = p.mac
FROM pair p WHERE p.first_id = a.first_id;
SELECT ok FROM vault_audit_verify();

-- The newest batch deleted: caught against the head the writer remembers.
SELECT pii_vault.audit_wait() AS audit_written;
CREATE TEMP TABLE tail AS SELECT * FROM pii_vault.audit_batches ORDER BY first_id DESC LIMIT 1;
DELETE FROM pii_vault.audit_batches WHERE first_id = (SELECT first_id FROM tail);
SELECT ok, first_bad_id = (SELECT first_id FROM tail) AS names_the_batch FROM vault_audit_verify();
INSERT INTO pii_vault.audit_batches SELECT * FROM tail;
SELECT ok FROM vault_audit_verify();

-- An altered batch cannot be read back as events either: loud, not silent.
UPDATE pii_vault.audit_batches SET events = substring(events FROM 1 FOR length(events) - 1) WHERE first_id = :victim_id;
SELECT regexp_replace(try_sql('SELECT count(*) FROM pii_vault.audit_log'), 'event [0-9]+', 'event N') AS reading_a_truncated_batch;
SELECT pg_temp.restore_victim();
SELECT ok FROM vault_audit_verify();

-- The verification calls themselves are audited.
SELECT pii_vault.audit_wait() AS audit_written;
SELECT count(*) >= 10 AS verify_calls_audited FROM pii_vault.audit_log WHERE operation = 'audit_verify';

-- The newest batches deleted and the audit writer restarted (so it has to
-- find where the chain goes on): it chains on from the last batch it
-- committed, not from the table's end, and the gap is reported.
SELECT pii_vault.audit_wait() AS audit_written;
SELECT max(first_id) AS newest FROM pii_vault.audit_batches \gset
CREATE TEMP TABLE newest AS SELECT * FROM pii_vault.audit_batches WHERE first_id = :newest;
DELETE FROM pii_vault.audit_batches WHERE first_id = :newest;
SELECT pid AS old_writer FROM pg_stat_activity WHERE backend_type = 'pii_vault audit writer' \gset
SELECT pg_terminate_backend(:old_writer) AS writer_terminated;
SELECT set_config('my.old_writer', :'old_writer', false) IS NOT NULL AS noted;
DO $$
BEGIN
    FOR i IN 1..200 LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'pii_vault audit writer'
                          AND pid <> current_setting('my.old_writer')::int);
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SELECT vault_get(:'target') IS NOT NULL AS read, pii_vault.audit_wait() AS written;
SELECT ok, first_bad_id = :newest AS names_the_gap FROM vault_audit_verify();
INSERT INTO pii_vault.audit_batches SELECT * FROM newest;
SELECT ok FROM vault_audit_verify();
RESET session_replication_role;
