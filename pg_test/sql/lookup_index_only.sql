-- vault_lookup reads the token from the blind index's own entry (the index
-- INCLUDEs it) and visits the heap only when the visibility map does not
-- mark the row's page all-visible, as PostgreSQL's index-only scans do.
-- Both paths must answer exactly as a heap read would: fresh, vacuumed,
-- updated and deleted records. The index's idx_tup_fetch counts the heap
-- visits (this backend's counts are flushed before each reading).
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE EXTENSION IF NOT EXISTS pg_visibility;
CREATE FUNCTION email_heap_fetches() RETURNS bigint LANGUAGE sql AS $$
    SELECT idx_tup_fetch FROM pg_stat_all_indexes
    WHERE indexrelid = 'pii_vault.records_email_index_key'::regclass $$;
-- VACUUM marks a page all-visible only when no transaction in this
-- database could still see an older version: wait until the others (an
-- autoanalyze, the audit writer mid-batch) hold no snapshot, ...
CREATE FUNCTION wait_for_no_other_snapshots() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..400 LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_stat_activity
                       WHERE datname = current_database() AND pid <> pg_backend_pid()
                         AND backend_xmin IS NOT NULL) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.05);
        -- pg_stat_activity is read once per transaction otherwise.
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
    RETURN false;
END $$;
SELECT vault_store('{"email": "io-a@example.com"}') AS a \gset
SELECT vault_store('{"email": "io-b@example.com"}') AS b \gset
SELECT vault_store('{"email": "io-c@example.com"}') AS c \gset

-- A row its own transaction wrote cannot be on an all-visible page: the
-- heap decides.
SELECT pg_stat_force_next_flush();
SELECT email_heap_fetches() AS before \gset
BEGIN;
SELECT vault_store('{"email": "io-new@example.com"}') AS new \gset
SELECT vault_lookup('email', 'io-new@example.com') = :'new' AS found_uncommitted;
COMMIT;
SELECT pg_stat_force_next_flush();
SELECT email_heap_fetches() - :before AS heap_fetches_uncommitted;

-- Vacuumed: every page all-visible, no heap visit, same answers.
SELECT pii_vault.audit_wait() AS audit_idle, wait_for_no_other_snapshots() AS quiet;
-- and only once the commits of its rows are known to be flushed (hint
-- bits): a CHECKPOINT flushes the WAL first.
CHECKPOINT;
VACUUM pii_vault.records;
SELECT pg_visibility_map_summary('pii_vault.records');
SELECT pg_stat_force_next_flush();
SELECT email_heap_fetches() AS before \gset
SELECT vault_lookup('email', 'io-a@example.com') = :'a' AS a,
       vault_lookup('email', ' IO-B@Example.COM ') = :'b' AS b,
       vault_lookup('email', 'io-c@example.com') = :'c' AS c,
       vault_lookup('email', 'io-nobody@example.com') IS NULL AS nobody,
       vault_lookup('token', :'a') = :'a' AS token_a;
SELECT pg_stat_force_next_flush();
SELECT email_heap_fetches() - :before AS heap_fetches_all_visible;

-- Deleted and updated: the old entries stay in the index until VACUUM, on
-- pages no longer all-visible, so the heap is asked and says no.
SELECT vault_delete(:'b') AS deleted;
SELECT vault_update(:'c', '{"email": "io-c2@example.com"}') AS updated;
SELECT vault_lookup('email', 'io-b@example.com') IS NULL AS deleted_gone,
       vault_lookup('token', :'b') IS NULL AS deleted_token_gone,
       vault_lookup('email', 'io-c@example.com') IS NULL AS old_email_gone,
       vault_lookup('email', 'io-c2@example.com') = :'c' AS new_email_found,
       vault_lookup('email', 'io-a@example.com') = :'a' AS untouched;

-- And once vacuumed again.
SELECT pii_vault.audit_wait() AS audit_idle, wait_for_no_other_snapshots() AS quiet;
CHECKPOINT;
VACUUM pii_vault.records;
SELECT vault_lookup('email', 'io-b@example.com') IS NULL AS deleted_gone,
       vault_lookup('token', :'b') IS NULL AS deleted_token_gone,
       vault_lookup('email', 'io-c@example.com') IS NULL AS old_email_gone,
       vault_lookup('email', 'io-c2@example.com') = :'c' AS new_email_found,
       vault_lookup('email', 'io-a@example.com') = :'a' AS untouched;
DROP FUNCTION email_heap_fetches();
DROP FUNCTION wait_for_no_other_snapshots();

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP EXTENSION pg_visibility;
