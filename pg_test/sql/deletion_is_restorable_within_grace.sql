-- A delete is soft, and only an admin can undo it. An attacker (or a bug)
-- holding the application's role deletes records: they vanish from the
-- API at once and free their email, phone and login for others, but an
-- admin can bring them back for pii_vault.delete_grace (the application
-- role cannot restore, so it cannot resurrect what a user had deleted
-- either). A restore never steals a value another record took meanwhile
-- (23505, the record stays deleted). Past the grace a restore gives
-- false and the purge worker removes the row; with a grace of 0 a delete
-- removes the row at once. Checked by what the calls return and by the
-- rows left in pii_vault.records.
\set ECHO none
\ir common/setup.sql
\set ECHO all
-- The purge worker stays away until the suite calls it in (a reload wakes
-- it once, with nothing due yet).
\ir common/purge_worker_away.sql
SHOW pii_vault.delete_grace;
CREATE ROLE restore_admin LOGIN IN ROLE pii_vault_admin;
-- What pii_vault.records holds for a token, for the roles below (which
-- cannot read the table): no row, or a row live or deleted, with or
-- without blind-index values.
CREATE FUNCTION storage_state(tok uuid) RETURNS text LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog AS $$
    SELECT coalesce((SELECT CASE WHEN deleted_at IS NULL THEN 'live' ELSE 'deleted' END
                            || CASE WHEN num_nonnulls(email_index, phone_index, login_index) > 0
                                    THEN ', indexed' ELSE ', unindexed' END
                     FROM pii_vault.records WHERE token = tok), 'no row')
$$;
GRANT EXECUTE ON FUNCTION storage_state(uuid) TO app_writer, restore_admin;
-- Polls (10 s at most) until no row of pii_vault.records has these tokens.
CREATE FUNCTION rows_gone(toks uuid[]) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..100 LOOP
        IF NOT EXISTS (SELECT 1 FROM pii_vault.records WHERE token = ANY (toks)) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.1);
    END LOOP;
    RETURN false;
END
$$;

\c - app_writer
SELECT vault_store('{"name": "Alice", "email": "alice@restore.example", "phone": "+1 415 555 2683", "login": "alice-r"}') AS alice \gset
SELECT vault_store('{"name": "Bob", "email": "bob@restore.example"}') AS bob \gset
SELECT vault_store('{"name": "Carol", "email": "carol@restore.example"}') AS carol \gset

-- 1. Deleted: invisible at once, to every call.
SELECT vault_delete(:'alice') AS alice_deleted, vault_delete(:'bob') AS bob_deleted;
SELECT vault_delete(:'alice') AS alice_deleted_again;
SELECT vault_get(:'alice') IS NULL AS get_null,
       vault_get(:'alice', ARRAY['name']) IS NULL AS get_fields_null,
       vault_lookup('email', 'alice@restore.example') IS NULL AS email_lookup_null,
       vault_lookup('phone', '+14155552683') IS NULL AS phone_lookup_null,
       vault_lookup('login', 'alice-r') IS NULL AS login_lookup_null,
       vault_lookup('token', :'alice') IS NULL AS token_lookup_null;
SELECT vault_update(:'alice', '{"name": "Mallory"}') AS update_of_deleted,
       vault_set_expiry(:'alice', now() + interval '1 day') AS set_expiry_of_deleted,
       vault_share(:'alice', ARRAY['name'], '1 hour') IS NULL AS share_of_deleted_null;
-- The rows stay, without their lookup values.
SELECT storage_state(:'alice') AS alice_row, storage_state(:'bob') AS bob_row, storage_state(:'carol') AS carol_row;

-- 2. Their lookup values are free: a new record takes Bob's email.
SELECT vault_store('{"name": "Bob II", "email": "BOB@restore.example"}') AS bob2 \gset
SELECT vault_lookup('email', 'bob@restore.example') = :'bob2' AS bobs_email_now_bob2;

-- 3. The application's roles cannot restore.
SELECT try_sql(format('SELECT vault_restore(%L)', :'alice')) AS writer_restores;
\c - app_reader
SELECT try_sql(format('SELECT vault_restore(%L)', :'alice')) AS reader_restores;

-- 4. An admin restores Alice: the record and its lookups are back.
\c - restore_admin
SELECT vault_restore(:'alice') AS alice_restored;
SELECT vault_get(:'alice') ->> 'name' AS alice_name,
       vault_lookup('email', 'ALICE@restore.example') = :'alice' AS email_lookup,
       vault_lookup('phone', '(415) 555-2683') = :'alice' AS phone_lookup,
       vault_lookup('login', 'ALICE-R') = :'alice' AS login_lookup,
       vault_lookup('token', :'alice') = :'alice' AS token_lookup;
SELECT storage_state(:'alice') AS alice_row;
SELECT vault_restore(:'alice') AS restore_of_live_record;
-- Its email is held again: nobody else can store it.
SELECT try_sql($$SELECT vault_store('{"email": "alice@restore.example"}')$$) AS store_alices_email;

-- 5. Bob's email was taken meanwhile: the restore is refused, and Bob
-- stays deleted, his email with Bob II.
SELECT try_sql(format('SELECT vault_restore(%L)', :'bob')) AS restore_bob;
SELECT vault_get(:'bob') IS NULL AS bob_still_invisible,
       vault_lookup('email', 'bob@restore.example') = :'bob2' AS email_still_bob2;
SELECT storage_state(:'bob') AS bob_row, storage_state(:'bob2') AS bob2_row;
-- A restore of what was never deleted, or never existed: false.
SELECT vault_restore(:'carol') AS restore_of_live_carol,
       vault_restore('00000000-0000-4000-8000-000000000000') AS restore_of_unknown;
SELECT vault_get(:'carol') ->> 'name' AS carol_untouched;

-- 6. A grace of 2 seconds: once it has passed, restore gives false, and
-- the purge worker removes the rows.
\c - postgres
ALTER SYSTEM SET pii_vault.delete_grace = '2s';
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
\c - app_writer
SHOW pii_vault.delete_grace;
SELECT try_sql('SET pii_vault.delete_grace = 0') AS writer_sets_grace;
SELECT vault_delete(:'carol') AS carol_deleted;
SELECT pg_sleep(2.5);
\c - restore_admin
SELECT vault_restore(:'carol') AS restore_past_grace, vault_restore(:'bob') AS restore_bob_past_grace;
SELECT vault_get(:'carol') IS NULL AS carol_invisible;
SELECT storage_state(:'carol') AS carol_row_before_purge;
\c - postgres
-- The purge worker connects once the database exists (pg_regress creates
-- it after the server started, and the postmaster restarts the worker 10 s
-- after its failed first try): wait for it, 15 s at most.
CALL wait_for_worker('pii_vault purge worker', 15);
ALTER SYSTEM SET pii_vault.purge_interval = 1;
SELECT pg_reload_conf();
SELECT rows_gone(ARRAY[:'carol', :'bob']::uuid[]) AS purged;
SELECT count(*) AS carol_rows FROM pii_vault.records WHERE token = :'carol';
SELECT count(*) AS bob_rows FROM pii_vault.records WHERE token = :'bob';
-- The live records stay.
SELECT count(*) AS alice_and_bob2_rows FROM pii_vault.records WHERE token IN (:'alice', :'bob2');
SELECT vault_get(:'alice') ->> 'name' AS alice_after_purge, vault_get(:'bob2') ->> 'name' AS bob2_after_purge;

-- 7. An expiry is no quicker way to destroy a record than a delete: the
-- application's role sets one 10 ms ahead; the record is invisible at
-- once, but the purge (running every second now) leaves its row for the
-- grace (an hour here), and an admin restores it, expiry cleared,
-- lookups back.
ALTER SYSTEM SET pii_vault.delete_grace = '1h';
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
\c - app_writer
SELECT vault_store('{"name": "Erin", "email": "erin@restore.example"}') AS erin \gset
SELECT vault_set_expiry(:'erin', clock_timestamp() + interval '10 milliseconds') AS erin_expiring;
SELECT pg_sleep(0.05);
SELECT vault_get(:'erin') IS NULL AS erin_invisible, vault_lookup('email', 'erin@restore.example') IS NULL AS erin_not_found;
SELECT vault_set_expiry(:'erin', NULL) AS writer_clears_expiry;
\c - postgres
SELECT pg_sleep(2);
SELECT storage_state(:'erin') AS erin_row_after_purge_rounds;
\c - restore_admin
SELECT vault_restore(:'erin') AS erin_restored;
SELECT vault_get(:'erin') ->> 'name' AS erin_name, vault_lookup('email', 'erin@restore.example') = :'erin' AS erin_found;
SELECT vault_restore(:'erin') AS erin_restored_twice;

-- 8. A grace of 0: the delete removes the row at once (checked in the
-- deleting transaction, before any purge could run; the worker is sent
-- away again first).
\c - postgres
ALTER SYSTEM SET pii_vault.purge_interval = '1d';
ALTER SYSTEM SET pii_vault.delete_grace = 0;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
\c - app_writer
SHOW pii_vault.delete_grace;
SELECT vault_store('{"name": "Dave", "email": "dave@restore.example"}') AS dave \gset
BEGIN;
SELECT vault_delete(:'dave') AS dave_deleted;
SELECT storage_state(:'dave') AS dave_row_in_deleting_transaction;
COMMIT;
SELECT storage_state(:'dave') AS dave_row;
\c - restore_admin
SELECT vault_restore(:'dave') AS restore_with_zero_grace;

\c - postgres
SELECT pii_vault.audit_wait() AS audit_written;
SELECT CASE token WHEN :'alice' THEN 'alice' WHEN :'bob' THEN 'bob' WHEN :'carol' THEN 'carol' WHEN :'dave' THEN 'dave' WHEN :'erin' THEN 'erin' END AS who,
       operation, outcome, count(*)
FROM pii_vault.audit_log
WHERE token IN (:'alice', :'bob', :'carol', :'dave', :'erin') AND operation IN ('delete', 'restore', 'purge', 'set_expiry')
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
ALTER SYSTEM RESET pii_vault.purge_interval;
ALTER SYSTEM RESET pii_vault.delete_grace;
SELECT pg_reload_conf();

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP FUNCTION storage_state(uuid), rows_gone(uuid[]);
DROP ROLE restore_admin;
