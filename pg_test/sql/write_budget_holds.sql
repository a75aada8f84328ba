-- Writes are bounded like reads: pii_vault.max_writes_per_statement
-- (default 100) and pii_vault.max_writes_per_minute (a rolling budget per
-- login role) cap vault_update and vault_delete, whatever the path. A
-- store or update refused as a duplicate counts as a read, so probing
-- whether an email exists is throttled like a lookup, and once the read
-- budget is spent such a store is refused whatever the answer would be.
-- Measured by the records actually left.
\set ECHO none
\ir common/setup.sql
\set ECHO all
ALTER SYSTEM SET pii_vault.max_reads_per_minute = 0;
ALTER SYSTEM SET pii_vault.max_writes_per_minute = 0;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
SHOW pii_vault.max_writes_per_statement;
CREATE ROLE wiper LOGIN IN ROLE pii_vault_writer;
-- A store is a write, and storing an email also a read: a superuser
-- lifts the statement's budgets to set up 300 customers in one statement.
SET pii_vault.max_reads_per_statement = 0;
SET pii_vault.max_writes_per_statement = 0;
CREATE TABLE customers AS
SELECT n, vault_store(jsonb_build_object('n', n, 'email', 'customer' || n || '@shop.example')) AS tok
FROM generate_series(1, 300) AS n;
RESET pii_vault.max_reads_per_statement;
RESET pii_vault.max_writes_per_statement;
GRANT SELECT ON customers TO wiper;
-- Live records: a deleted one is invisible at once (its row stays for
-- pii_vault.delete_grace, restorable by an admin).
CREATE FUNCTION records_left() RETURNS bigint LANGUAGE sql AS
$$ SELECT count(*) FROM pii_vault.records r JOIN customers c ON c.tok = r.token WHERE r.deleted_at IS NULL $$;
GRANT EXECUTE ON FUNCTION records_left() TO wiper;
ALTER FUNCTION records_left() SECURITY DEFINER;

\c - wiper
-- 1. One statement deletes at most 100: the 101st delete fails the
-- statement, and nothing of it is kept.
SELECT count(vault_delete(tok)) FROM customers;
SELECT records_left();
-- Overwriting every record is refused the same way.
SELECT count(vault_update(tok, '{"email": null, "n": null}')) FROM customers;
-- 2. A DO block that commits every 50 deletes keeps 100 and is stopped.
DO $$
DECLARE t uuid; i int := 0;
BEGIN
    FOR t IN SELECT tok FROM customers ORDER BY n LOOP
        PERFORM vault_delete(t);
        i := i + 1;
        IF i % 50 = 0 THEN COMMIT; END IF;
    END LOOP;
END $$;
SELECT records_left();

-- 3. Probing emails through stores: a writer stores addresses, alternately
-- known and unknown, catching each error (and could roll the new records
-- back). Every store of an email counts as a read, as a lookup would: 100
-- answers (50 taken, 50 free), then every probe is refused, known address
-- or not.
DO $$
DECLARE
    outcome text;
    tally jsonb := '{}';
BEGIN
    FOR i IN 1..250 LOOP
        BEGIN
            -- odd i: an address that exists; even i: one that does not
            PERFORM vault_store(jsonb_build_object('email',
                CASE WHEN i % 2 = 1 THEN 'customer' || (101 + i / 2) || '@shop.example' ELSE 'nobody' || i || '@shop.example' END));
            outcome := 'stored';
        EXCEPTION WHEN OTHERS THEN
            outcome := SQLSTATE;
        END;
        tally := jsonb_set(tally, ARRAY[CASE WHEN i % 2 = 1 THEN 'exists' ELSE 'free' END || ':' || outcome],
                           to_jsonb(coalesce((tally ->> (CASE WHEN i % 2 = 1 THEN 'exists' ELSE 'free' END || ':' || outcome))::int, 0) + 1));
    END LOOP;
    RAISE NOTICE 'probe outcomes: %', tally;
END $$;

-- 3b. Everything that adds to the disk or answers counts. A store is a
-- write whatever it holds: 200 records of 1 MB without an email, phone
-- or login in one statement stop at the 101st. The 100 before it were
-- written (rolled back, their rows dead until vacuumed): the table and
-- the WAL grow by 100 records' worth, not 200.
\c - postgres
CREATE FUNCTION vault_bytes() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS
$$ SELECT pg_total_relation_size('pii_vault.records') $$;
GRANT EXECUTE ON FUNCTION vault_bytes() TO wiper;
\c - wiper
SELECT vault_bytes() AS bytes_before, pg_current_wal_lsn() AS wal_before \gset
SELECT try_sql($$SELECT count(vault_store(jsonb_build_object('blob', repeat(md5(n::text), 32000))))
                 FROM generate_series(1, 200) AS n$$) AS big_stores;
SELECT (vault_bytes() - :bytes_before) / 1024000 BETWEEN 100 AND 110 AS table_grew_by_100_records,
       pg_wal_lsn_diff(pg_current_wal_lsn(), :'wal_before') / 1024000 BETWEEN 100 AND 110 AS wal_grew_by_100_records;
-- vault_normalize answers and is audited: it counts as a read.
SELECT try_sql($$SELECT count(vault_normalize('email', 'n' || n || '@shop.example')) FROM generate_series(1, 101) AS n$$)
    AS normalize_flood;
-- Each lookup value a store sets is tested, and counts as one read: 34
-- stores with an email, a phone and a login are 102 reads.
SELECT try_sql($$SELECT count(vault_store(jsonb_build_object('email', 'three' || n || '@shop.example',
                                                                'phone', '+1 415 555 ' || (1000 + n),
                                                                'login', 'three' || n)))
                 FROM generate_series(1, 34) AS n$$) AS three_values_each;
SELECT count(vault_store(jsonb_build_object('email', 'three' || n || '@shop.example',
                                            'phone', '+1 415 555 ' || (1000 + n),
                                            'login', 'three' || n))) AS three_values_33
FROM generate_series(1, 33) AS n;

-- 4. Per minute, across sessions: at 30 writes a minute (2 s each, a
-- burst of 3), four deletes pass at once and the fifth is refused.
\c - postgres
ALTER SYSTEM SET pii_vault.max_writes_per_minute = 30;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
\c - wiper
SELECT vault_delete(tok) FROM customers WHERE n = 201;
SELECT vault_delete(tok) FROM customers WHERE n = 202;
\c - wiper
SELECT vault_update(tok, '{"n": 0}') FROM customers WHERE n = 203;
SELECT vault_delete(tok) FROM customers WHERE n = 204;
SELECT try_sql($$SELECT vault_delete(tok) FROM customers WHERE n = 205$$);
\c - wiper
SELECT try_sql($$SELECT vault_delete(tok) FROM customers WHERE n = 206$$);
SELECT records_left();

\c - postgres
SELECT pii_vault.audit_wait() AS audit_written;
-- Calls, not events: a session's failed calls past the 30th in a second
-- are folded into counted events.
SELECT operation, outcome, sum(calls) AS calls FROM pii_vault.audit_log
WHERE session_role = 'wiper' GROUP BY 1, 2 ORDER BY 1, 2;
ALTER SYSTEM RESET pii_vault.max_reads_per_minute;
ALTER SYSTEM RESET pii_vault.max_writes_per_minute;
SELECT pg_reload_conf();

-- Leave the cluster as common/setup.sql left it (the vault's records stay).
DROP FUNCTION records_left(), vault_bytes();
DROP TABLE customers;
DROP ROLE wiper;
