-- pii_vault.max_reads_per_statement (default 100) is one budget per
-- top-level statement whatever the path a client takes: a cursor across
-- all its FETCHes, a DO block or CALL across its COMMITs, a function's
-- SPI queries, AFTER triggers, a parallel plan. Measured by what the
-- thief actually walks away with. (The harness checks the protocol-level
-- portal with a row limit and psycopg's named cursor.)
-- The per-role budget is switched off here so only the statement's counts.
\set ECHO none
\ir common/setup.sql
\set ECHO all
\ir common/reads_per_minute_off.sql
CREATE ROLE cursor_thief LOGIN IN ROLE pii_vault_reader;
-- Stores are writes: a superuser lifts the budget to set up 400 at once.
SET pii_vault.max_writes_per_statement = 0;
CREATE TABLE victims AS SELECT n, vault_store(jsonb_build_object('n', n)) AS tok FROM generate_series(1, 400) AS n;
RESET pii_vault.max_writes_per_statement;
CREATE TABLE loot (n int, rec jsonb);
GRANT SELECT ON victims TO cursor_thief;
GRANT SELECT, INSERT, DELETE ON loot TO cursor_thief;
-- What an injected statement could run: a procedure and a function that
-- loop over the tokens, and a table whose trigger reads each new token.
CREATE PROCEDURE steal(commit_every int) LANGUAGE plpgsql AS $$
DECLARE t uuid; i int := 0;
BEGIN
    FOR t IN SELECT tok FROM victims ORDER BY n LOOP
        INSERT INTO loot SELECT i, vault_get(t);
        i := i + 1;
        IF i % commit_every = 0 THEN COMMIT; END IF;
    END LOOP;
END $$;
CREATE FUNCTION steal_all() RETURNS int LANGUAGE plpgsql AS $$
DECLARE t uuid; i int := 0;
BEGIN
    FOR t IN SELECT tok FROM victims ORDER BY n LOOP
        PERFORM vault_get(t);
        i := i + 1;
    END LOOP;
    RETURN i;
END $$;
CREATE TABLE drop_box (tok uuid);
CREATE FUNCTION read_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO loot SELECT 0, vault_get(NEW.tok);
    RETURN NULL;
END $$;
CREATE TRIGGER read_on_insert AFTER INSERT ON drop_box FOR EACH ROW EXECUTE FUNCTION read_on_insert();
GRANT INSERT ON drop_box TO cursor_thief;
GRANT EXECUTE ON PROCEDURE steal(int) TO cursor_thief;
GRANT EXECUTE ON FUNCTION steal_all() TO cursor_thief;

\c - cursor_thief
-- 1. A cursor is one statement across its fetches: 60 + 40 pass, the
-- 101st read is refused, in whichever FETCH it falls.
BEGIN;
DECLARE c CURSOR FOR SELECT (vault_get(tok) ->> 'n')::int AS got FROM victims ORDER BY n;
MOVE FORWARD 60 IN c;
MOVE FORWARD 40 IN c;
FETCH 1 FROM c;
ROLLBACK;
-- A cursor WITH HOLD is run to its end at COMMIT: the same budget.
BEGIN;
DECLARE h CURSOR WITH HOLD FOR SELECT vault_get(tok) FROM victims;
COMMIT;
-- 2. A DO block is one statement across its COMMITs: with a COMMIT every
-- 90 reads, 90 records are kept and the 101st read stops the block.
DO $$
DECLARE t uuid; i int := 0;
BEGIN
    FOR t IN SELECT tok FROM victims ORDER BY n LOOP
        INSERT INTO loot SELECT i, vault_get(t);
        i := i + 1;
        IF i % 90 = 0 THEN COMMIT; END IF;
    END LOOP;
END $$;
SELECT count(*) AS records_taken_by_do FROM loot;
DELETE FROM loot;
-- 3. So is a CALL of a procedure that commits.
CALL steal(90);
SELECT count(*) AS records_taken_by_call FROM loot;
DELETE FROM loot;
-- 4. A function's own queries count against the statement that called it.
SELECT steal_all();
-- 5. So do AFTER triggers (they run when the statement finishes).
INSERT INTO drop_box SELECT tok FROM victims;
SELECT count(*) AS records_taken_by_trigger FROM loot;
-- 6. Parallel workers never run the vault's functions (PARALLEL UNSAFE),
-- so a plan forced to be parallel still counts every read in one place.
SET force_parallel_mode = on;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SELECT count(vault_get(tok)) AS parallel_reads FROM victims;
RESET ALL;
-- 7. A new statement has a new budget.
SELECT count(vault_get(tok)) AS next_statement_reads FROM victims WHERE n <= 100;
SELECT count(vault_get(tok)) AS and_the_next FROM victims WHERE n <= 100;

\c - postgres
SELECT p.proname, p.proparallel FROM pg_proc p
WHERE p.proname LIKE 'vault\_%' AND p.pronamespace = 'public'::regnamespace
GROUP BY 1, 2 ORDER BY 1;
SELECT pii_vault.audit_wait() AS audit_written;
SELECT operation, outcome, count(*) FROM pii_vault.audit_log
WHERE session_role = 'cursor_thief' GROUP BY 1, 2 ORDER BY 1, 2;
ALTER SYSTEM RESET pii_vault.max_reads_per_minute;
SELECT pg_reload_conf();

-- Queries that run outside the client's own query count against the
-- message that caused them (each path below read 300 to 500 records in one
-- statement when budgets were kept per executor).
\ir common/reads_per_minute_off.sql
\c - cursor_thief
-- (The CONTEXT lines would name this session's temporary schema.)
\set SHOW_CONTEXT never
-- 8. A deferred constraint trigger fires at the commit of the statement.
CREATE TEMP TABLE trig (n int);
CREATE FUNCTION pg_temp.grab() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO loot SELECT NEW.n, vault_get(tok) FROM victims WHERE n = NEW.n;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER grab AFTER INSERT ON pg_temp.trig DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION pg_temp.grab();
INSERT INTO pg_temp.trig SELECT n FROM victims;
SELECT count(*) AS records_taken_by_deferred_trigger FROM loot;
DELETE FROM loot;
-- 9. COPY FROM runs row triggers without a query of the client's.
CREATE TEMP TABLE sink (n int);
CREATE FUNCTION pg_temp.grab_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO loot SELECT NEW.n, vault_get(tok) FROM victims WHERE n = NEW.n;
    RETURN NEW;
END $$;
CREATE TRIGGER grab_before BEFORE INSERT ON pg_temp.sink FOR EACH ROW EXECUTE FUNCTION pg_temp.grab_before();
\copy pg_temp.sink FROM PROGRAM 'seq 1 400'
SELECT count(*) AS records_taken_by_copy FROM loot;
DELETE FROM loot;
-- 10. A rule's actions are statements of their own.
CREATE TEMP TABLE r (x int);
CREATE RULE rr AS ON INSERT TO pg_temp.r DO INSTEAD (
    INSERT INTO loot SELECT n, vault_get(tok) FROM victims WHERE n BETWEEN 1 AND 80;
    INSERT INTO loot SELECT n, vault_get(tok) FROM victims WHERE n BETWEEN 81 AND 160;
    INSERT INTO loot SELECT n, vault_get(tok) FROM victims WHERE n BETWEEN 161 AND 240);
INSERT INTO pg_temp.r VALUES (1);
SELECT count(*) AS records_taken_by_rule FROM loot;
DELETE FROM loot;
-- 11. A refused read caught in a loop, inside a query that is itself run
-- outside any query of the client's (it crashed the server once: the
-- query's memory was freed while the vault still pointed at it).
CREATE TEMP TABLE trig2 (n int);
CREATE FUNCTION pg_temp.grab_retry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    FOR attempt IN 1..3 LOOP
        BEGIN
            INSERT INTO loot SELECT NEW.n, vault_get(tok) FROM victims WHERE n = NEW.n;
            RETURN NULL;
        EXCEPTION WHEN program_limit_exceeded THEN
            NULL;
        END;
    END LOOP;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER grab_retry AFTER INSERT ON pg_temp.trig2 DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION pg_temp.grab_retry();
INSERT INTO pg_temp.trig2 SELECT n FROM victims;
SELECT count(*) AS records_taken_with_retries FROM loot;
SELECT 1 AS server_still_up;
\c - postgres
ALTER SYSTEM RESET pii_vault.max_reads_per_minute;
SELECT pg_reload_conf();

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
-- (cursor_thief's last session drops its temporary tables, one with a
-- rule over victims, only after psql has left it.)
CALL wait_for_logout('cursor_thief', 10);
DROP TABLE victims, loot, drop_box;
DROP PROCEDURE steal(int);
DROP FUNCTION steal_all(), read_on_insert();
DROP ROLE cursor_thief;
