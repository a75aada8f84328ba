-- A session id is a bearer credential that ends up in cookies, logs and
-- browser histories. Whoever replays it later, or reads the storage
-- (a dump, a superuser's SELECT), must get nothing once the session is
-- over: vault_session_get returns NULL once the session expired or was
-- deleted, or its record was deleted, expired or erased; vault_sessions
-- lists only a live record's live sessions, oldest first (also when they
-- were stored in one transaction); the storage holds neither the session
-- id (only a keyed hash of it) nor the document in clear; an envelope
-- moved to another session's row, or a row re-pointed to another record,
-- fails authentication (XX001) rather than answering; the purge worker
-- removes expired sessions, and a purged record's; a time-to-live over
-- pii_vault.max_session_ttl is refused (22023); and replaying many reads
-- in one statement is cut off by pii_vault.max_reads_per_statement
-- (writes by max_writes_per_statement). A read of a record's session is
-- audited as a read of that record, as a share's is (it names the token,
-- never the session id). Checked by what each call returns and what rows
-- are left.
\set ECHO none
\ir common/setup.sql
\set ECHO all
-- The purge worker stays away until the end of the suite (a reload wakes
-- it once, with nothing of ours due yet): what an expired session
-- returns is the API's doing, not the worker's.
\ir common/purge_worker_away.sql
CREATE ROLE session_app LOGIN IN ROLE pii_vault_writer;
CREATE ROLE session_eraser LOGIN IN ROLE pii_vault_admin;
CREATE ROLE session_reader LOGIN IN ROLE pii_vault_reader;
CREATE ROLE session_partner LOGIN IN ROLE pii_vault_share_reader;
-- A writer whose budgets a superuser set low (they apply at its login;
-- it cannot change them itself).
CREATE ROLE session_replayer LOGIN IN ROLE pii_vault_writer;
ALTER ROLE session_replayer SET pii_vault.max_reads_per_statement = 3;
ALTER ROLE session_replayer SET pii_vault.max_writes_per_statement = 3;
-- A writer that must say why it reads (pii_vault.require_purpose).
CREATE ROLE session_purposeful LOGIN IN ROLE pii_vault_writer;
ALTER ROLE session_purposeful SET pii_vault.require_purpose = on;

\c - session_app
SET application_name = 'session_suite';
SELECT vault_store('{"name": "Sam Session", "email": "sam@session-ends.example"}') AS sam \gset
SELECT vault_store('{"name": "Olga Other", "email": "olga@session-ends.example"}') AS olga \gset
SELECT vault_store('{"name": "Dave Deleted", "email": "dave@session-ends.example"}') AS dave \gset
SELECT vault_store('{"name": "Ella Expiring"}', clock_timestamp() + interval '2 seconds') AS ella \gset
SELECT vault_store('{"name": "Eric Erased", "email": "eric@session-ends.example"}') AS eric \gset

-- Sessions of Sam (four, one short-lived), of the others, and of no record.
SELECT vault_session_store('{"cart": [42, 7], "secret": "sess-canary-7f3a-cart"}', '1 hour', :'sam') AS sam_cart \gset
SELECT vault_session_store('{"step": 2, "secret": "sess-canary-7f3a-step"}', '1 second', :'sam') AS sam_short \gset
SELECT vault_session_store('{"csrf": "sess-canary-7f3a-csrf"}', '1 hour', :'sam') AS sam_csrf \gset
SELECT vault_session_store('{"doomed": true}', '1 hour', :'sam') AS sam_doomed \gset
SELECT vault_session_store('{"of": "olga"}', '1 hour', :'olga') AS olga_s \gset
SELECT vault_session_store('{"of": "dave"}', '1 hour', :'dave') AS dave_s \gset
SELECT vault_session_store('{"of": "ella"}', '1 hour', :'ella') AS ella_s \gset
SELECT vault_session_store('{"of": "eric"}', '1 hour', :'eric') AS eric_s \gset
SELECT vault_session_store('{"anonymous": "sess-canary-7f3a-anon"}', '1 hour') AS anon \gset
SELECT vault_session_store('{"anonymous": "short"}', '1 second') AS anon_short \gset
SELECT vault_session_store('{"anonymous": "left to the purge"}', '1 second') AS anon_purged \gset
-- Eleven distinct session ids, none of them a record's token.
SELECT count(DISTINCT s) AS distinct_session_ids,
       count(*) FILTER (WHERE s IN (:'sam', :'olga', :'dave', :'ella', :'eric')) AS session_ids_equal_to_tokens
FROM unnest(ARRAY[:'sam_cart', :'sam_short', :'sam_csrf', :'sam_doomed', :'olga_s', :'dave_s', :'ella_s',
                  :'eric_s', :'anon', :'anon_short', :'anon_purged']::uuid[]) AS s;

-- Every session reads back while it lives.
SET application_name = 'session_read_live';
SELECT vault_session_get(:'sam_cart') AS sam_cart_while_live;
SELECT vault_session_get(:'sam_short') AS sam_short_while_live;
SELECT vault_session_get(:'anon') AS anon_while_live;
SELECT vault_session_get(:'dave_s') AS dave_while_live,
       vault_session_get(:'ella_s') AS ella_while_live,
       vault_session_get(:'eric_s') AS eric_while_live;
SET application_name = 'session_suite';

-- A record's live sessions, oldest first, and no one else's.
CREATE TEMP VIEW labels(id, label) AS
SELECT * FROM (VALUES (:'sam_cart'::uuid, 'sam_cart'), (:'sam_short', 'sam_short'), (:'sam_csrf', 'sam_csrf'),
                      (:'sam_doomed', 'sam_doomed'), (:'olga_s', 'olga_s'), (:'anon', 'anon')) AS v;
SELECT n, coalesce(l.label, '<unknown>') AS session
FROM vault_sessions(:'sam') WITH ORDINALITY AS s(id, n) LEFT JOIN labels AS l USING (id) ORDER BY n;
SELECT n, coalesce(l.label, '<unknown>') AS session
FROM vault_sessions(:'olga') WITH ORDINALITY AS s(id, n) LEFT JOIN labels AS l USING (id) ORDER BY n;
SELECT count(*) AS sessions_of_unknown_token FROM vault_sessions('00000000-0000-4000-8000-0000005e5510');
-- Oldest first holds for sessions stored in one transaction too (a web
-- framework's request often is one): the order they were stored in.
SELECT vault_store('{"name": "Tina Transaction"}') AS tina \gset
BEGIN;
SELECT vault_session_store('{"n": 1}', '1 hour', :'tina') AS tina_1 \gset
SELECT vault_session_store('{"n": 2}', '1 hour', :'tina') AS tina_2 \gset
SELECT vault_session_store('{"n": 3}', '1 hour', :'tina') AS tina_3 \gset
SELECT vault_session_store('{"n": 4}', '1 hour', :'tina') AS tina_4 \gset
SELECT vault_session_store('{"n": 5}', '1 hour', :'tina') AS tina_5 \gset
COMMIT;
SELECT array_agg(s.id ORDER BY s.n) = ARRAY[:'tina_1', :'tina_2', :'tina_3', :'tina_4', :'tina_5']::uuid[]
       AS one_transaction_listed_in_store_order
FROM vault_sessions(:'tina') WITH ORDINALITY AS s(id, n);

-- 1. Deleted: NULL at once, gone from the list; a second delete finds
-- nothing, nor does a delete of an unknown id.
SELECT vault_session_delete(:'sam_doomed') AS deleted;
SELECT vault_session_get(:'sam_doomed') IS NULL AS deleted_session_is_null;
SELECT vault_session_delete(:'sam_doomed') AS deleted_again;
SELECT vault_session_delete('00000000-0000-4000-8000-0000005e5511') AS unknown_deleted,
       vault_session_get('00000000-0000-4000-8000-0000005e5511') IS NULL AS unknown_is_null;
SELECT n, coalesce(l.label, '<unknown>') AS session
FROM vault_sessions(:'sam') WITH ORDINALITY AS s(id, n) LEFT JOIN labels AS l USING (id) ORDER BY n;

-- 2. The record deleted: its session is NULL at once, its list empty, and
-- no new session can be given to it.
SELECT vault_delete(:'dave') AS dave_deleted;
SET application_name = 'session_read_deleted_record';
SELECT vault_session_get(:'dave_s') IS NULL AS session_of_deleted_is_null,
       (SELECT count(*) FROM vault_sessions(:'dave')) AS sessions_of_deleted,
       vault_session_store('{"again": true}', '1 hour', :'dave') IS NULL AS store_for_deleted_is_null;
SET application_name = 'session_suite';

-- 3. The record erased (by an admin): its session is NULL, its row gone.
\c - session_eraser
SELECT vault_erase(:'eric') AS eric_erased;
\c - session_app
SET application_name = 'session_suite';
CREATE TEMP VIEW labels(id, label) AS
SELECT * FROM (VALUES (:'sam_cart'::uuid, 'sam_cart'), (:'sam_short', 'sam_short'), (:'sam_csrf', 'sam_csrf'),
                      (:'sam_doomed', 'sam_doomed'), (:'olga_s', 'olga_s'), (:'anon', 'anon')) AS v;
SET application_name = 'session_read_erased_record';
SELECT vault_session_get(:'eric_s') IS NULL AS session_of_erased_is_null,
       (SELECT count(*) FROM vault_sessions(:'eric')) AS sessions_of_erased,
       vault_session_store('{"again": true}', '1 hour', :'eric') IS NULL AS store_for_erased_is_null;
SET application_name = 'session_suite';

-- 4. and 5. The session's time-to-live ends; the record's expiry passes.
SELECT pg_sleep(2.2);
SET application_name = 'session_read_expired';
SELECT vault_session_get(:'sam_short') IS NULL AS expired_session_is_null,
       vault_session_get(:'anon_short') IS NULL AS expired_anonymous_session_is_null;
SET application_name = 'session_read_expired_record';
SELECT vault_session_get(:'ella_s') IS NULL AS session_of_expired_is_null,
       (SELECT count(*) FROM vault_sessions(:'ella')) AS sessions_of_expired,
       vault_session_store('{"again": true}', '1 hour', :'ella') IS NULL AS store_for_expired_is_null;
SET application_name = 'session_suite';
SELECT n, coalesce(l.label, '<unknown>') AS session
FROM vault_sessions(:'sam') WITH ORDINALITY AS s(id, n) LEFT JOIN labels AS l USING (id) ORDER BY n;
-- Deleting a session that already expired gives false.
SELECT vault_session_delete(:'anon_short') AS delete_of_expired;
-- The live ones still read: the NULLs above are the sessions' and records'
-- states, not a broken session mechanism.
SELECT vault_session_get(:'sam_cart') ->> 'secret' AS sam_cart_still_reads,
       vault_session_get(:'olga_s') ->> 'of' AS olga_still_reads,
       vault_session_get(:'anon') ->> 'anonymous' AS anon_still_reads;

-- The time-to-live: positive and at most pii_vault.max_session_ttl (1 day).
SELECT try_sql($$SELECT vault_session_store('{}', '1 day 1 second')$$) AS ttl_over_a_day;
SELECT try_sql($$SELECT vault_session_store('{}', '1 mon')$$) AS ttl_a_month;
SELECT try_sql($$SELECT vault_session_store('{}', '0')$$) AS ttl_zero;
SELECT try_sql($$SELECT vault_session_store('{}', '-1 hour')$$) AS ttl_negative;
SELECT vault_session_delete(vault_session_store('{}', '1 day')) AS ttl_of_exactly_a_day_deleted;
-- Nor can the application raise the cap.
SELECT try_sql('SET pii_vault.max_session_ttl = ''30d''') AS app_raises_cap;

-- Only writers and admins touch sessions.
\c - session_reader
SELECT try_sql(format('SELECT vault_session_get(%L)', :'sam_cart')) AS reader_gets;
SELECT try_sql(format('SELECT vault_sessions(%L)', :'sam')) AS reader_lists;
SELECT try_sql($$SELECT vault_session_store('{}', '1 hour')$$) AS reader_stores;
SELECT try_sql(format('SELECT vault_session_delete(%L)', :'sam_cart')) AS reader_deletes;
\c - session_partner
SELECT try_sql(format('SELECT vault_session_get(%L)', :'sam_cart')) AS share_reader_gets;

-- A read needs a purpose where one is required.
\c - session_purposeful
SHOW pii_vault.require_purpose;
SELECT try_sql(format('SELECT vault_session_get(%L)', :'sam_cart')) AS get_without_purpose;
SELECT try_sql(format('SELECT vault_sessions(%L)', :'sam')) AS list_without_purpose;
SET pii_vault.purpose = 'checkout';
SELECT vault_session_get(:'sam_cart') -> 'cart' AS get_with_purpose;

-- Replaying a session id many times in one statement: the budget a
-- superuser set cuts it off (54000), whatever the read.
\c - session_replayer
SHOW pii_vault.max_reads_per_statement;
SELECT try_sql('SET pii_vault.max_reads_per_statement = 0') AS replayer_lifts_budget;
SELECT vault_store('{"name": "Rita Replayed"}') AS rita \gset
SELECT vault_session_store('{"token": "sess-canary-7f3a-rita"}', '1 hour', :'rita') AS rita_s \gset
SELECT count(vault_session_get(:'rita_s')) AS reads_within_budget FROM generate_series(1, 3);
SELECT try_sql(format('SELECT count(vault_session_get(%L)) FROM generate_series(1, 4)', :'rita_s')) AS session_get_over_budget;
SELECT try_sql(format('SELECT count(vault_session_get(%L)) FROM generate_series(1, 4)', :'sam_cart')) AS others_session_over_budget;
SELECT try_sql(format('SELECT count(*) FROM (SELECT vault_sessions(%L) FROM generate_series(1, 4)) AS l', :'rita')) AS list_over_budget;
-- Writes too: a fourth store in one statement fails it, and none of its
-- sessions is kept.
SELECT try_sql(format($$SELECT count(vault_session_store('{}', '1 hour', %L)) FROM generate_series(1, 4)$$, :'rita')) AS store_over_budget;
SELECT count(*) AS sessions_of_rita FROM vault_sessions(:'rita');
SELECT count(vault_session_store('{}', '1 hour', :'rita')) AS stores_within_budget FROM generate_series(1, 3);
SELECT count(*) AS sessions_of_rita FROM vault_sessions(:'rita');

-- A superuser moves a session's envelope onto another session's row, and
-- re-points a session to another record: both fail authentication
-- (XX001) instead of answering with the other's document.
\c - session_app
SELECT vault_store('{"name": "Mover A"}') AS mover_a \gset
SELECT vault_store('{"name": "Mover B"}') AS mover_b \gset
SELECT vault_session_store('{"of": "mover a", "secret": "sess-canary-7f3a-mover"}', '1 hour', :'mover_a') AS mover_a_s \gset
SELECT vault_session_store('{"of": "mover b"}', '1 hour', :'mover_b') AS mover_b_s \gset
\c - postgres
UPDATE pii_vault.sessions SET envelope = (SELECT envelope FROM pii_vault.sessions WHERE token = :'mover_a')
WHERE token = :'mover_b';
UPDATE pii_vault.sessions SET token = :'olga' WHERE token = :'mover_a';
\c - session_app
SELECT try_sql(format('SELECT vault_session_get(%L)', :'mover_b_s')) AS other_sessions_envelope;
SELECT try_sql(format('SELECT vault_session_get(%L)', :'mover_a_s')) AS repointed_to_other_record;
SELECT try_sql(format('SELECT count(*) FROM vault_sessions(%L)', :'olga')) AS list_with_repointed_session;
-- Deleting them needs no decryption; afterwards Olga's list reads again.
SELECT vault_session_delete(:'mover_a_s') AS repointed_deleted, vault_session_delete(:'mover_b_s') AS moved_deleted;
SELECT count(*) AS olga_sessions FROM vault_sessions(:'olga');
-- The sessions table has no write guard, so a pg_write_all_data member
-- can move a session's expiry (here a superuser, on one row). The expiry
-- is sealed into the envelope: a session given a longer life no longer
-- opens (a shorter one is no more than the delete such a member can make).
SELECT vault_session_store('{"of": "stretched"}', '1 hour', :'mover_a') AS stretched_s \gset
SELECT vault_session_get(:'stretched_s') ->> 'of' AS stretched_before;
\c - postgres
UPDATE pii_vault.sessions SET expires_at = expires_at + interval '1 year' WHERE token = :'mover_a';
\c - session_app
SELECT try_sql(format('SELECT vault_session_get(%L)', :'stretched_s')) AS stretched_session;
SELECT vault_session_delete(:'stretched_s') AS stretched_deleted;

\c - postgres
-- The storage: the erased record's session row went with it, the deleted
-- one's is still there (unreadable), Sam's short one waits for the purge.
SELECT count(*) FILTER (WHERE token = :'sam') AS sam_session_rows,
       count(*) FILTER (WHERE token = :'sam' AND expires_at <= clock_timestamp()) AS sam_expired_rows,
       count(*) FILTER (WHERE token = :'dave') AS dave_session_rows,
       count(*) FILTER (WHERE token = :'ella') AS ella_session_rows,
       count(*) FILTER (WHERE token = :'eric') AS eric_session_rows
FROM pii_vault.sessions;
-- No column of any session row holds a session id: not as the uuid, not
-- as its 16 bytes (in the hash or the envelope), not as their hex.
CREATE TEMP TABLE session_ids(id) AS
SELECT unnest(ARRAY[:'sam_cart', :'sam_short', :'sam_csrf', :'sam_doomed', :'olga_s', :'dave_s', :'ella_s',
                    :'eric_s', :'anon', :'anon_short', :'anon_purged', :'tina_1', :'tina_2', :'tina_3',
                    :'tina_4', :'tina_5', :'rita_s', :'mover_a_s', :'mover_b_s']::uuid[]);
SELECT count(*) AS session_rows_holding_a_session_id
FROM pii_vault.sessions AS s, session_ids AS ids
WHERE s.id_hash = uuid_send(ids.id)
   OR position(uuid_send(ids.id) IN s.id_hash) > 0
   OR position(uuid_send(ids.id) IN s.envelope) > 0
   OR s.token = ids.id
   OR s::text ILIKE '%' || ids.id::text || '%'
   OR s::text ILIKE '%' || encode(uuid_send(ids.id), 'hex') || '%';
-- No envelope holds a document's text (its UTF-8 bytes, in the envelope
-- or its hex).
SELECT count(*) AS session_rows_holding_a_document
FROM pii_vault.sessions AS s
WHERE position(convert_to('sess-canary-7f3a', 'UTF8') IN s.envelope) > 0
   OR s::text ILIKE '%sess-canary-7f3a%'
   OR s::text ILIKE '%' || encode(convert_to('sess-canary-7f3a', 'UTF8'), 'hex') || '%';
-- The checks see what they look for: the token is stored in clear.
SELECT count(*) FILTER (WHERE s::text ILIKE '%' || :'sam' || '%') AS rows_found_by_sams_token
FROM pii_vault.sessions AS s;

-- The audit: never a session id; every read or delete of a record's
-- session names its record, as a share's read does: while it lives, and
-- when its record is gone but its row still says which record it was
-- (a deleted record: 'not_found'; an expired one: 'expired'). A session
-- that expired, was deleted or erased names none (as an expired or
-- revoked share).
SELECT pii_vault.audit_wait() AS audit_written;
SELECT count(*) AS audit_events_naming_a_session_id
FROM pii_vault.audit_log AS a, session_ids AS ids
WHERE a.token = ids.id OR a::text ILIKE '%' || ids.id::text || '%';
SELECT application_name, outcome,
       CASE token WHEN :'sam' THEN 'sam' WHEN :'olga' THEN 'olga' WHEN :'dave' THEN 'dave'
                  WHEN :'ella' THEN 'ella' WHEN :'eric' THEN 'eric'
                  ELSE CASE WHEN token IS NULL THEN '<none>' ELSE '<other>' END END AS names
FROM pii_vault.audit_log
WHERE application_name LIKE 'session\_read\_%' AND operation = 'session_get'
ORDER BY id;
SELECT operation, outcome,
       CASE token WHEN :'sam' THEN 'sam' ELSE CASE WHEN token IS NULL THEN '<none>' ELSE '<other>' END END AS names
FROM pii_vault.audit_log
WHERE application_name = 'session_suite' AND session_role = 'session_app' AND operation = 'session_delete'
ORDER BY id;
SELECT operation, outcome, count(*) FROM pii_vault.audit_log
WHERE session_role IN ('session_replayer', 'session_purposeful', 'session_reader', 'session_partner')
GROUP BY 1, 2 ORDER BY 1, 2;

-- The purge worker, once it comes by, removes the expired sessions; and
-- a record it purges (here with no delete grace: the deleted and the
-- expired one) takes its sessions along. The live ones stay.
-- The purge worker connects once the database exists (pg_regress creates
-- it after the server started, and the postmaster restarts the worker 10 s
-- after its failed first try): wait for it, 15 s at most.
CALL wait_for_worker('pii_vault purge worker', 15);
CREATE TEMP TABLE purged_records(token) AS SELECT unnest(ARRAY[:'dave', :'ella']::uuid[]);
ALTER SYSTEM SET pii_vault.delete_grace = 0;
ALTER SYSTEM SET pii_vault.purge_interval = 1;
SELECT pg_reload_conf();
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pii_vault.sessions WHERE expires_at <= clock_timestamp())
              AND NOT EXISTS (SELECT 1 FROM pii_vault.records JOIN purged_records USING (token));
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT count(*) AS expired_session_rows FROM pii_vault.sessions WHERE expires_at <= clock_timestamp();
SELECT count(*) FILTER (WHERE token = :'sam') AS sam_session_rows,
       count(*) FILTER (WHERE token = :'dave') AS dave_session_rows,
       count(*) FILTER (WHERE token = :'ella') AS ella_session_rows,
       count(*) FILTER (WHERE token = :'olga') AS olga_session_rows,
       (SELECT count(*) FROM pii_vault.records WHERE token IN (:'dave', :'ella')) AS purged_record_rows
FROM pii_vault.sessions;
SELECT vault_session_get(:'sam_short') IS NULL AS purged_session_is_null,
       vault_session_get(:'anon_purged') IS NULL AS purged_anonymous_session_is_null,
       vault_session_get(:'sam_cart') ->> 'secret' AS live_session_after_purge;
-- Each removal is audited as a purge naming the record: with the field
-- 'session' for Sam's expired session, without for the records removed.
SELECT pii_vault.audit_wait() AS audit_written;
SELECT CASE token WHEN :'sam' THEN 'sam' WHEN :'dave' THEN 'dave' WHEN :'ella' THEN 'ella' END AS names, fields, outcome
FROM pii_vault.audit_log WHERE operation = 'purge' AND token IN (:'sam', :'dave', :'ella')
ORDER BY names, fields;

ALTER SYSTEM RESET pii_vault.delete_grace;
ALTER SYSTEM RESET pii_vault.purge_interval;
SELECT pg_reload_conf();

-- A superuser reshapes the storage, each time in a transaction rolled
-- back after. The vault finds its columns by name, so a column dropped and
-- added again is read where it now is (here a past expiry: the live
-- session reads as expired); a column of another type is an error, never
-- a datum read as the wrong type.
BEGIN;
ALTER TABLE pii_vault.sessions DROP COLUMN expires_at;
ALTER TABLE pii_vault.sessions ADD COLUMN expires_at timestamptz NOT NULL DEFAULT '2000-01-01';
SELECT vault_session_get(:'sam_cart') IS NULL AS readded_past_expiry_is_read;
ROLLBACK;
BEGIN;
ALTER TABLE pii_vault.sessions DROP CONSTRAINT sessions_token_fkey;
ALTER TABLE pii_vault.sessions ALTER COLUMN token TYPE text;
SELECT try_sql(format('SELECT vault_session_get(%L)', :'sam_cart')) AS token_of_another_type;
ROLLBACK;
-- A partitioned table and index in the sessions' place (no table access
-- method to scan): an error, not a crash.
BEGIN;
ALTER TABLE pii_vault.sessions RENAME TO sessions_old;
ALTER INDEX pii_vault.sessions_pkey RENAME TO sessions_pkey_old;
CREATE TABLE pii_vault.sessions (LIKE pii_vault.sessions_old) PARTITION BY HASH (id_hash);
CREATE TABLE pii_vault.sessions_p0 PARTITION OF pii_vault.sessions FOR VALUES WITH (MODULUS 1, REMAINDER 0);
CREATE INDEX sessions_pkey ON pii_vault.sessions (id_hash);
SELECT try_sql(format('SELECT vault_session_get(%L)', :'sam_cart')) AS partitioned_sessions;
ROLLBACK;
SELECT vault_session_get(:'sam_cart') ->> 'secret' AS live_session_after_rollback;

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
-- (session_app's sessions made temporary views: they go as each ends.)
CALL wait_for_logout('session_app', 10);
DROP ROLE session_app, session_eraser, session_reader, session_partner, session_replayer, session_purposeful;
