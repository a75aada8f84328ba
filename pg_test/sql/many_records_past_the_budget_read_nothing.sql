-- A page of records in one call: vault_get_many, vault_lookup_many and
-- vault_store_many. Each element is what a single call would be: charged
-- to the budgets (so one statement still reaches at most
-- max_reads_per_statement records, and an array past the budget is
-- refused whole with 54000 before any record is read), and audited as its
-- own event (an investigation sees every record a call returned). A
-- batch store stores what it can: an element that is invalid or a
-- duplicate has its SQLSTATE and message in its row, never a value, and
-- the others are stored, in the caller's transaction.
\set ECHO none
\ir common/setup.sql
\set ECHO all
\ir common/reads_per_minute_off.sql
-- Only the statement's budgets count here: the per-role write budget off.
ALTER SYSTEM SET pii_vault.max_writes_per_minute = 0;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
CREATE ROLE page_reader LOGIN IN ROLE pii_vault_reader;
CREATE ROLE batch_writer LOGIN IN ROLE pii_vault_writer;
SET pii_vault.max_writes_per_statement = 0;
SET pii_vault.max_reads_per_statement = 0;
CREATE TABLE customers AS
    SELECT n, vault_store(jsonb_build_object('email', 'c' || n || '@page.example', 'name', 'Customer ' || n, 'tier', n % 3)) AS tok
    FROM generate_series(1, 150) AS n;
RESET pii_vault.max_writes_per_statement;
RESET pii_vault.max_reads_per_statement;
GRANT SELECT ON customers TO page_reader, batch_writer;
SELECT pii_vault.audit_wait();
CREATE TABLE mark AS SELECT max(id) AS id FROM pii_vault.audit_log;
SET ROLE page_reader;
-- A page of 50: every record, in the array's order, each one event.
SELECT count(*) AS returned, bool_and(g.record ->> 'name' = 'Customer ' || c.n) AS right_records
FROM vault_get_many((SELECT array_agg(tok ORDER BY n) FROM customers WHERE n <= 50)) AS g JOIN customers AS c ON c.tok = g.token;
-- Only the fields asked for; an unknown token returns no row.
SELECT g.record FROM vault_get_many(ARRAY[(SELECT tok FROM customers WHERE n = 7), '00000000-0000-4000-8000-000000000000'::uuid],
                                    ARRAY['name']) AS g;
-- 101 tokens, past the statement's 100 reads: refused whole, nothing
-- read, and the budget is not spent by the refusal.
SELECT try_sql('SELECT count(*) FROM vault_get_many((SELECT array_agg(tok) FROM customers WHERE n <= 101))');
SELECT count(*) AS after_refusal FROM vault_get_many((SELECT array_agg(tok) FROM customers WHERE n <= 100));
-- Two calls of 60 in one statement: the second is refused whole.
SELECT try_sql('SELECT (SELECT count(*) FROM vault_get_many((SELECT array_agg(tok) FROM customers WHERE n <= 60)))
                     + (SELECT count(*) FROM vault_get_many((SELECT array_agg(tok) FROM customers WHERE n > 60 AND n <= 120)))');
-- The statement is the cursor across its fetches, and a DO block across
-- its commits: a second call of 60 is refused there too.
BEGIN;
DECLARE pages CURSOR FOR
    SELECT token FROM vault_get_many((SELECT array_agg(tok) FROM customers WHERE n <= 60))
    UNION ALL SELECT token FROM vault_get_many((SELECT array_agg(tok) FROM customers WHERE n > 60 AND n <= 120));
MOVE 5 FROM pages;
MOVE ALL FROM pages;
ROLLBACK;
DO $$ BEGIN
    PERFORM count(*) FROM vault_get_many((SELECT array_agg(tok) FROM customers WHERE n <= 60));
    COMMIT;
    PERFORM count(*) FROM vault_get_many((SELECT array_agg(tok) FROM customers WHERE n > 60 AND n <= 120));
END $$;
-- More than 1000 elements: refused whatever the budgets.
SELECT try_sql('SELECT count(*) FROM vault_get_many(array_fill(''00000000-0000-4000-8000-000000000000''::uuid, ARRAY[1001]))');
-- Lookups by the page: found ones only, with the value as given.
SELECT value, token = (SELECT tok FROM customers WHERE n = 3) AS right_token
FROM vault_lookup_many('email', ARRAY['C3@Page.example', 'nobody@page.example']);
SELECT try_sql($$SELECT count(*) FROM vault_lookup_many('email', ARRAY['c1@page.example', 'not an email'])$$);
SELECT try_sql($$SELECT count(*) FROM vault_lookup_many('email', (SELECT array_agg('c' || n || '@page.example') FROM generate_series(1, 101) AS n))$$);
-- A reader cannot store.
SELECT try_sql($$SELECT * FROM vault_store_many(ARRAY['{"name": "x"}']::jsonb[])$$);
RESET ROLE;
-- The audit: one event per element of the calls that returned (50, 2
-- and 100 gets; 60 of the first call of each of the three statements
-- refused at their second, which had returned them; 2 lookups), none for
-- the refused calls' records.
SELECT pii_vault.audit_wait();
SELECT operation, outcome, count(*) AS events, count(token) AS naming_a_token
FROM pii_vault.audit_log WHERE id > (SELECT id FROM mark) AND acting_role = 'page_reader'
GROUP BY operation, outcome ORDER BY operation, outcome;
-- Batch stores: element errors in their rows, the rest stored.
SET ROLE batch_writer;
SELECT ord, token IS NOT NULL AS stored, error
FROM vault_store_many(ARRAY['{"email": "b1@page.example", "name": "B1"}',
                            '{"email": "c1@page.example"}',
                            '{"email": "B1@page.example"}',
                            NULL,
                            '{"email": "canary-not-an-email"}',
                            '[1, 2]',
                            '{"phone": 12}',
                            '{"name": "B2"}']::jsonb[]);
-- Stored in the caller's transaction: rolled back with it.
BEGIN;
SELECT count(token) AS stored_in_tx FROM vault_store_many(ARRAY['{"email": "rolled@page.example"}']::jsonb[]);
ROLLBACK;
SELECT vault_lookup('email', 'rolled@page.example') IS NULL AS rolled_back;
-- Past the write budget: refused whole, nothing stored.
SELECT try_sql($$SELECT count(*) FROM vault_store_many((SELECT array_agg(jsonb_build_object('name', n)) FROM generate_series(1, 101) AS n))$$);
-- Each element with a lookup value is also a read: 60 records with an
-- email and a phone are 60 writes but 120 reads, refused at the 101st
-- read, and the statement's error leaves none of them stored.
SELECT try_sql($$SELECT count(*) FROM vault_store_many((SELECT array_agg(jsonb_build_object('email', 'probe' || n || '@page.example', 'phone', '+1 646 555 ' || lpad(n::text, 4, '0'))) FROM generate_series(1, 60) AS n))$$);
SELECT vault_lookup('email', 'probe1@page.example') IS NULL AS none_stored;
RESET ROLE;
SELECT pii_vault.audit_wait();
SELECT operation, outcome, count(*) AS events FROM pii_vault.audit_log
WHERE id > (SELECT id FROM mark) AND acting_role = 'batch_writer' GROUP BY operation, outcome ORDER BY operation, outcome;
ALTER SYSTEM RESET pii_vault.max_writes_per_minute;
SELECT pg_reload_conf();
DROP TABLE customers, mark;
DROP OWNED BY page_reader, batch_writer;
DROP ROLE page_reader, batch_writer;
