-- An ERROR leaves the per-statement budget's state where the statement
-- left it: a statement that fails after 60 reads, a cursor closed by an
-- error, an ERROR caught inside a DO block, a DO block whose COMMIT fails.
-- Whatever path failed, the next statement gets exactly its budget of 100
-- reads (the 101st is refused), and inside one message the reads a caught
-- ERROR already made still count. The per-role budget is off here, so
-- only the statement's counts.
\set ECHO none
\ir common/setup.sql
\set ECHO all
\ir common/reads_per_minute_off.sql
CREATE ROLE error_reader LOGIN IN ROLE pii_vault_reader;
SET pii_vault.max_writes_per_statement = 0;
CREATE TABLE error_victims AS SELECT n, vault_store(jsonb_build_object('n', n)) AS tok FROM generate_series(1, 150) AS n;
RESET pii_vault.max_writes_per_statement;
GRANT SELECT ON error_victims TO error_reader;
-- A deferred unique constraint: a COMMIT that fails.
CREATE TABLE error_commit_fails (k int UNIQUE DEFERRABLE INITIALLY DEFERRED);
GRANT INSERT ON error_commit_fails TO error_reader;
SET ROLE error_reader;
-- After each, the next statement may read exactly 100: the 101st is refused.
-- Each failing expression divides by what vault_get returned, so it runs
-- after that row's read (an expression of n alone would be evaluated
-- below the sort, before any read).

-- 1. A statement that fails after 60 reads.
SELECT n, (vault_get(tok)->>'n')::int / (60 - n) FROM error_victims WHERE n <= 60;
SELECT count(vault_get(tok)) AS reads_after_a_failed_statement FROM error_victims WHERE n <= 100;
SELECT try_sql('SELECT count(vault_get(tok)) FROM error_victims WHERE n <= 101') AS the_101st;

-- 2. A cursor closed by an error after 60 reads.
BEGIN;
DECLARE error_cursor CURSOR FOR SELECT vault_get(tok) FROM error_victims;
MOVE 60 IN error_cursor;
SELECT 1 / 0;
ROLLBACK;
SELECT count(vault_get(tok)) AS reads_after_a_failed_cursor FROM error_victims WHERE n <= 100;
SELECT try_sql('SELECT count(vault_get(tok)) FROM error_victims WHERE n <= 101') AS the_101st;

-- 3. An ERROR caught in a DO block after 60 reads: the message keeps
-- them (40 left in it); the next statement has its 100.
DO $$
DECLARE got int;
BEGIN
    BEGIN
        PERFORM (vault_get(tok)->>'n')::int / (60 - n) FROM error_victims WHERE n <= 60;
    EXCEPTION WHEN division_by_zero THEN
        RAISE NOTICE 'caught after 60 reads';
    END;
    SELECT count(vault_get(tok)) INTO got FROM error_victims WHERE n <= 40;
    RAISE NOTICE 'then % more in the same block', got;
    BEGIN
        PERFORM vault_get(tok) FROM error_victims WHERE n = 41;
        RAISE NOTICE 'a 101st read in the block was served';
    EXCEPTION WHEN program_limit_exceeded THEN
        RAISE NOTICE 'the 101st read in the block is refused';
    END;
END $$;
SELECT count(vault_get(tok)) AS reads_after_a_caught_error FROM error_victims WHERE n <= 100;
SELECT try_sql('SELECT count(vault_get(tok)) FROM error_victims WHERE n <= 101') AS the_101st;

-- 4. A DO block whose COMMIT fails (a deferred unique violation) after 60 reads.
DO $$
BEGIN
    PERFORM vault_get(tok) FROM error_victims WHERE n <= 60;
    INSERT INTO error_commit_fails VALUES (1), (1);
    COMMIT;
END $$;
SELECT count(vault_get(tok)) AS reads_after_a_failed_commit FROM error_victims WHERE n <= 100;
SELECT try_sql('SELECT count(vault_get(tok)) FROM error_victims WHERE n <= 101') AS the_101st;

-- 5. A cursor keeps one count across messages, even when an ERROR caught
-- earlier in the message that fetches from it ran an executor first: 90
-- moved, then 10 more and the 11th refused (the caught ERROR leaves no
-- query behind that would make the fetches count against the message
-- alone, which would allow 50).
BEGIN;
DECLARE held CURSOR FOR SELECT vault_get(tok) FROM error_victims;
MOVE 90 IN held;
DO $$
DECLARE r refcursor := 'held'; x jsonb; served int := 0;
BEGIN
    BEGIN
        PERFORM 1 / (n - 1) FROM error_victims WHERE n = 1;
    EXCEPTION WHEN division_by_zero THEN NULL;
    END;
    BEGIN
        FOR i IN 1..50 LOOP
            FETCH r INTO x;
            served := served + 1;
        END LOOP;
    EXCEPTION WHEN program_limit_exceeded THEN NULL;
    END;
    RAISE NOTICE 'the cursor served % more', served;
END $$;
ROLLBACK;

-- 6. Every FETCH of a cursor counts against it, also one made inside a
-- function called by a later statement: 90 moved, then 10 more and the
-- 11th refused (the fresh statement around the FETCH does not give the
-- cursor a fresh budget, which would allow 50). The refused FETCH leaves
-- the cursor failed, as any ERROR inside a FETCH does.
CREATE FUNCTION pg_temp.fetch_from(c refcursor, k int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE x jsonb; served int := 0;
BEGIN
    FOR i IN 1..k LOOP
        FETCH c INTO x;
        served := served + 1;
    END LOOP;
    RETURN served;
EXCEPTION WHEN program_limit_exceeded THEN
    RETURN served;
END $$;
BEGIN;
DECLARE fetched CURSOR FOR SELECT vault_get(tok) FROM error_victims;
MOVE 90 IN fetched;
SELECT pg_temp.fetch_from('fetched', 50) AS served;
ROLLBACK;
RESET ROLE;
-- What was actually read, by the audit: in each of the first four cases
-- 60, then 100, then 100 and a refused 101st; 40 more and a refused one
-- in the block; 90 and 10 from each cursor and a refused one: 1 280
-- served, 7 throttled.
SELECT pii_vault.audit_wait();
SELECT outcome, sum(calls) AS calls FROM pii_vault.audit_log
WHERE acting_role = 'error_reader' AND operation = 'get' GROUP BY 1 ORDER BY 1;

DROP TABLE error_victims, error_commit_fails;
DROP OWNED BY error_reader;
DROP ROLE error_reader;
ALTER SYSTEM RESET pii_vault.max_reads_per_minute;
SELECT pg_reload_conf();
