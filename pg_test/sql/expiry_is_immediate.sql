-- A record stored with an expiry (a retention period) must be gone for
-- everyone the moment it expires, not when the purge worker next comes
-- by: an attacker holding the application's role, its token or its
-- email, phone or login gets what a missing record gives (NULL or false)
-- from every function, cannot push the expiry out to revive it, and the
-- audit says 'expired'. A store of a value an expired record still holds
-- succeeds (the expired record's lookup values are released inline; its
-- row stays for the delete grace, so a writer's expiry is no quicker
-- erasure than a delete). The purge worker then removes every expired row
-- past the grace and never a live one. Checked by what the calls return
-- and by the rows left.
\set ECHO none
\ir common/setup.sql
\set ECHO all
-- The purge worker stays away until part 4 calls it in: what an expired
-- record gives is the API's doing, not the worker's.
\ir common/purge_worker_away.sql
CREATE TABLE batch (n int PRIMARY KEY, tok uuid NOT NULL);
GRANT SELECT, INSERT ON batch TO app_writer;

\c - app_writer
-- 1. Setting and clearing an expiry.
SELECT vault_store('{"name": "Kept"}') AS kept \gset
SELECT vault_set_expiry(:'kept', now() + interval '1 hour') AS set_future;
SELECT vault_set_expiry(:'kept', NULL) AS cleared;
SELECT vault_set_expiry('00000000-0000-4000-8000-000000000000', now() + interval '1 hour') AS set_on_unknown;
SELECT vault_set_expiry(NULL, now() + interval '1 hour') IS NULL AS set_on_null_token;
-- An expiry in the past (or now) is refused, at store and at set.
SELECT try_sql(format('SELECT vault_set_expiry(%L, now() - interval ''1 second'')', :'kept')) AS set_past;
SELECT try_sql(format('SELECT vault_set_expiry(%L, clock_timestamp())', :'kept')) AS set_now;
SELECT try_sql(format('SELECT vault_set_expiry(%L, ''-infinity'')', :'kept')) AS set_minus_infinity;
SELECT try_sql($$SELECT vault_store('{"name": "Stillborn"}', now() - interval '1 day')$$) AS store_past;
-- A NULL expiry at store: never expires; a NULL record: NULL.
SELECT vault_store('{"name": "No expiry"}', NULL) IS NOT NULL AS store_null_expiry,
       vault_store(NULL, now() + interval '1 day') IS NULL AS store_null_record;
SELECT vault_get(:'kept') ->> 'name' AS kept_still_reads;

-- 2. Records about to expire: X at store, Y by set_expiry; Z's expiry is
-- set and then cleared; W expires in an hour. A share of X and of Y is
-- handed out meanwhile.
SELECT vault_store('{"name": "X", "email": "x@expiry.example", "phone": "+1 415 555 2685", "login": "x-login"}', clock_timestamp() + interval '1 second') AS x \gset
SELECT vault_store('{"name": "Y", "email": "y@expiry.example"}') AS y \gset
SELECT vault_store('{"name": "Z", "email": "z@expiry.example"}') AS z \gset
SELECT vault_store('{"name": "W", "email": "w@expiry.example"}', now() + interval '1 hour') AS w \gset
SELECT vault_set_expiry(:'y', clock_timestamp() + interval '1 second') AS y_expiry_set;
SELECT vault_set_expiry(:'z', clock_timestamp() + interval '1 second') AS z_expiry_set,
       vault_set_expiry(:'z', NULL) AS z_expiry_cleared;
SELECT vault_share(:'x', ARRAY['name'], '1 hour') AS x_share \gset
SELECT vault_share(:'y', ARRAY['name'], '1 hour') AS y_share \gset
SELECT vault_get(:'x') ->> 'name' AS x_before, vault_get(:'y') ->> 'name' AS y_before,
       vault_get_shared(:'x_share') AS x_share_before;
SELECT pg_sleep(1.5);

-- 3. Expired: every function gives what a missing record gives.
SET application_name = 'after_expiry';
SELECT vault_get(:'x') IS NULL AS get_null;
SELECT vault_get(:'x', ARRAY['name']) IS NULL AS get_fields_null;
SELECT vault_lookup('email', 'X@expiry.example') IS NULL AS email_lookup_null;
SELECT vault_lookup('phone', '(415) 555-2685') IS NULL AS phone_lookup_null;
SELECT vault_lookup('login', 'X-LOGIN') IS NULL AS login_lookup_null;
SELECT vault_lookup('token', :'x') IS NULL AS token_lookup_null;
SELECT vault_update(:'x', '{"name": "revived"}') AS update_false;
SELECT vault_delete(:'x') AS delete_false;
SELECT vault_share(:'x', ARRAY['name'], '1 hour') IS NULL AS share_null;
SELECT vault_get_shared(:'x_share') IS NULL AS get_shared_null;
-- Pushing the expiry out does not revive it.
SELECT vault_set_expiry(:'x', now() + interval '1 year') AS set_expiry_false,
       vault_set_expiry(:'x', NULL) AS clear_expiry_false;
SELECT vault_get(:'x') IS NULL AS still_null_after_set_expiry;
-- Y, expired by vault_set_expiry, the same.
SELECT vault_get(:'y') IS NULL AS y_get_null,
       vault_lookup('email', 'y@expiry.example') IS NULL AS y_lookup_null,
       vault_get_shared(:'y_share') IS NULL AS y_share_null;
RESET application_name;
-- Z (expiry cleared) and W (an hour to go) live on.
SELECT vault_get(:'z') ->> 'name' AS z_reads, vault_lookup('email', 'z@expiry.example') = :'z' AS z_found,
       vault_get(:'w') ->> 'name' AS w_reads, vault_lookup('email', 'w@expiry.example') = :'w' AS w_found;

-- A store of the email X still holds succeeds: X's lookup values are
-- released on the spot, its phone and login with its email.
SELECT vault_store('{"name": "New X", "email": "x@expiry.example"}') AS new_x \gset
SELECT vault_lookup('email', 'x@expiry.example') = :'new_x' AS email_is_new_xs,
       vault_lookup('phone', '+14155552685') IS NULL AS xs_phone_gone;
SELECT vault_store('{"name": "Other", "phone": "+1 415 555 2685", "login": "x-login"}') IS NOT NULL AS xs_phone_and_login_free;
-- An update that takes the email expired Y holds succeeds the same way.
SELECT vault_update(:'w', '{"email": "y@expiry.example"}') AS w_takes_ys_email;
SELECT vault_lookup('email', 'y@expiry.example') = :'w' AS ys_email_is_ws;

\c - postgres
-- Both keep their rows for the delete grace (an expiry is no quicker
-- way to remove a record than a delete), without lookup values.
SELECT count(*) AS x_rows, bool_and(email_index IS NULL AND phone_index IS NULL AND login_index IS NULL) AS x_released,
       (SELECT count(*) FROM pii_vault.records WHERE token = :'y' AND email_index IS NULL) AS y_rows_released
FROM pii_vault.records WHERE token = :'x';
SELECT pii_vault.audit_wait() AS audit_written;
-- Each call on the expired records, as the audit has it: 'expired', and
-- naming the record (lookups by value too).
SELECT operation, fields, outcome, CASE token WHEN :'x' THEN 'x' WHEN :'y' THEN 'y' END AS record
FROM pii_vault.audit_log WHERE application_name = 'after_expiry' ORDER BY id;
-- X's values released by the store and Y's by the update: an expire
-- event each.
SELECT CASE token WHEN :'x' THEN 'x' WHEN :'y' THEN 'y' END AS record, operation, outcome, session_role
FROM pii_vault.audit_log WHERE token IN (:'x', :'y') AND operation = 'expire' ORDER BY id;

-- 4. The purge worker: 200 records, 100 expiring in a second, 50 that
-- never expire, 50 that expire in ten years (stored by a superuser, who
-- lifts the write budget a store counts against).
\c - postgres
SET pii_vault.max_writes_per_statement = 0;
INSERT INTO batch
SELECT n, vault_store(jsonb_build_object('n', n),
                      CASE WHEN n % 2 = 0 THEN clock_timestamp() + interval '1 second'
                           WHEN n % 4 = 1 THEN NULL
                           ELSE now() + interval '10 years' END)
FROM generate_series(1, 200) AS n;
SELECT pg_sleep(1.2);
\c - postgres
SELECT count(*) AS batch_rows_before_purge FROM pii_vault.records AS r JOIN batch AS b ON b.tok = r.token;
-- The purge worker connects once the database exists (pg_regress creates
-- it after the server started, and the postmaster restarts the worker 10 s
-- after its failed first try): wait for it, 15 s at most.
CALL wait_for_worker('pii_vault purge worker', 15);
-- What pg_stat_all_tables says the vault's tables have had so far (the
-- workers' share must show up as they commit, for autovacuum to act).
SELECT pii_vault.audit_wait() AS audit_written;
CREATE TEMP TABLE stats_before AS
SELECT relid, n_tup_ins, n_tup_del FROM pg_stat_all_tables
WHERE relid IN ('pii_vault.records'::regclass, 'pii_vault.audit_batches'::regclass);
-- Expired records go once the delete grace has passed since they
-- expired: no grace here.
ALTER SYSTEM SET pii_vault.delete_grace = 0;
ALTER SYSTEM SET pii_vault.purge_interval = 1;
SELECT pg_reload_conf();
-- Polls (10 s at most) until the purge has left only the live ones.
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN (SELECT count(*) FROM pii_vault.records AS r JOIN batch AS b ON b.tok = r.token) <= 100;
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
-- Exactly the 100 live ones remain, and they read back.
SELECT count(*) AS batch_rows_after_purge,
       count(*) FILTER (WHERE b.n % 2 = 1) AS live_ones_left
FROM pii_vault.records AS r JOIN batch AS b ON b.tok = r.token;
-- The purge worker's deletes and the audit writer's batches (the purge
-- events) are in pg_stat_all_tables while both workers keep running:
-- reported as each commits, not when the worker exits (polled 5 s at
-- most: a report follows its commit by a moment).
SELECT pii_vault.audit_wait() AS audit_written;
DO $$
BEGIN
    FOR i IN 1..50 LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN (SELECT bool_and(s.n_tup_del - b.n_tup_del >= 100 OR s.relid <> 'pii_vault.records'::regclass)
                          AND bool_and(s.n_tup_ins > b.n_tup_ins OR s.relid <> 'pii_vault.audit_batches'::regclass)
                   FROM pg_stat_all_tables AS s JOIN stats_before AS b USING (relid));
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT s.relid::regclass AS workers_table, s.n_tup_ins > b.n_tup_ins AS inserts_reported,
       s.n_tup_del - b.n_tup_del >= 100 AS purged_deletes_reported
FROM pg_stat_all_tables AS s JOIN stats_before AS b USING (relid) ORDER BY s.relid::regclass::text;
DROP TABLE stats_before;
SELECT count(*) AS live_ones_read_back
FROM (SELECT n, vault_get(tok) AS rec FROM batch WHERE n % 2 = 1) AS s
WHERE (rec ->> 'n')::int = n;
SELECT count(vault_get(tok)) AS expired_ones_read_back FROM batch WHERE n % 2 = 0;
-- Z, W and the records without expiry stayed.
SELECT count(*) AS z_w_kept_new_x_rows FROM pii_vault.records WHERE token IN (:'z', :'w', :'kept', :'new_x');
-- One purge event per removed record, none for a live one.
SELECT pii_vault.audit_wait() AS audit_written;
SELECT b.n % 2 = 0 AS expired, count(*) AS purge_events
FROM pii_vault.audit_log AS a JOIN batch AS b ON b.tok = a.token
WHERE a.operation = 'purge' GROUP BY 1 ORDER BY 1;

ALTER SYSTEM RESET pii_vault.purge_interval;
ALTER SYSTEM RESET pii_vault.delete_grace;
SELECT pg_reload_conf();

-- A superuser rebuilds the email index without expires_at, in a
-- transaction rolled back after: a lookup of an expired record's email
-- is an error rather than an answer from that index, and NULL again after.
SELECT vault_store('{"name": "V", "email": "v@expiry.example"}', clock_timestamp() + interval '0.3 seconds') AS v \gset
SELECT pg_sleep(0.5);
BEGIN;
DROP INDEX pii_vault.records_email_index_key;
CREATE UNIQUE INDEX records_email_index_key ON pii_vault.records (email_index) INCLUDE (token)
    WHERE email_index IS NOT NULL;
SELECT try_sql($$SELECT vault_lookup('email', 'v@expiry.example')$$) AS index_without_expiry;
ROLLBACK;
SELECT vault_lookup('email', 'v@expiry.example') IS NULL AS expired_lookup_is_null;
-- Nor may a rebuilt email index leave rows out (a predicate of its own)
-- or let a duplicate in (not unique): a lookup and a store are errors,
-- never "no such record" or a second record with that email.
SELECT vault_store('{"name": "P", "email": "p@expiry.example"}') AS p \gset
BEGIN;
DROP INDEX pii_vault.records_email_index_key;
CREATE UNIQUE INDEX records_email_index_key ON pii_vault.records (email_index) INCLUDE (token, expires_at)
    WHERE false;
SELECT try_sql($$SELECT vault_lookup('email', 'p@expiry.example')$$) AS lookup_in_partial_index;
SELECT try_sql($$SELECT vault_store('{"email": "p@expiry.example"}')$$) AS store_beside_partial_index;
ROLLBACK;
BEGIN;
DROP INDEX pii_vault.records_email_index_key;
CREATE INDEX records_email_index_key ON pii_vault.records (email_index) INCLUDE (token, expires_at)
    WHERE email_index IS NOT NULL;
SELECT try_sql($$SELECT vault_lookup('email', 'p@expiry.example')$$) AS lookup_in_index_not_unique;
SELECT try_sql($$SELECT vault_store('{"email": "p@expiry.example"}')$$) AS store_beside_index_not_unique;
ROLLBACK;
SELECT vault_lookup('email', 'p@expiry.example') = :'p' AS lookup_after_rollback_p,
    try_sql($$SELECT vault_store('{"email": "p@expiry.example"}')$$) AS store_after_rollback_p;
-- Nor may a token made NULL (the primary key rebuilt without NOT NULL)
-- be read from the index entry as a pointer.
SELECT vault_store('{"name": "N", "email": "n@expiry.example"}') AS n \gset
BEGIN;
ALTER TABLE pii_vault.records DROP CONSTRAINT records_pkey CASCADE;
CREATE UNIQUE INDEX records_pkey ON pii_vault.records (token);
ALTER TABLE pii_vault.records ALTER COLUMN token DROP NOT NULL;
UPDATE pii_vault.records SET token = NULL WHERE token = :'n';
SELECT try_sql($$SELECT vault_lookup('email', 'n@expiry.example')$$) AS lookup_of_null_token;
ROLLBACK;
SELECT vault_lookup('email', 'n@expiry.example') = :'n' AS lookup_after_rollback;

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP TABLE batch;
