-- An application's users table moved into the vault with CALL
-- vault_migrate: each row's named columns become a record, its token goes
-- into the token column, the columns are emptied, batch by committed
-- batch. Cancelled part-way and called again, it finishes with every row
-- moved exactly once: one record per row, each holding that row's values,
-- found by its email and phone. Rows whose values are invalid or taken
-- are left as they were and named (ctid and error, never a value). The
-- budgets do not stop it (3000 rows, 100 writes per statement); only
-- admins may run it.
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE ROLE migrator LOGIN IN ROLE pii_vault_admin;
CREATE ROLE not_admin LOGIN IN ROLE pii_vault_writer;
CREATE TABLE users (id int PRIMARY KEY, email text, phone text, name text, born date, vault_token uuid);
INSERT INTO users (id, email, phone, name, born)
SELECT n, 'user' || n || '@migrate.example', CASE WHEN n % 2 = 0 THEN '+1 646 555 ' || lpad(n::text, 4, '0') END,
       'User ' || n, date '1980-01-01' + n
FROM generate_series(1, 3000) AS n;
-- Taken (another row's email in another spelling), invalid, and empty.
INSERT INTO users (id, email, name) VALUES (3001, 'USER7@migrate.example', 'Dup'), (3002, 'canary at nowhere', 'Bad'), (3003, NULL, NULL);
CREATE TABLE originals AS SELECT * FROM users;
ALTER TABLE users OWNER TO migrator;
CREATE TABLE records_before AS SELECT count(*) AS n FROM pii_vault.records;
-- Not an admin: refused.
SET ROLE not_admin;
SELECT try_sql($$CALL vault_migrate('users', 'vault_token', '{email,phone,name,born}')$$);
SELECT try_sql($$SELECT * FROM vault_migrate_batch(ARRAY['{"name": "x"}']::jsonb[])$$);
RESET ROLE;
-- Bad arguments.
SET ROLE migrator;
SELECT try_sql($$CALL vault_migrate('users', 'name', '{email}')$$);
SELECT try_sql($$CALL vault_migrate('users', 'vault_token', '{}')$$);
SELECT try_sql($$CALL vault_migrate('users', 'vault_token', '{email}', 0)$$);
RESET ROLE;
-- The procedure runs as its caller: a table the admin does not own, or
-- one with a trigger, a rule or forced row security, would run its
-- owner's code with the admin's rights. A trigger a writer set on its own
-- table calling vault_erase as the admin, refused:
CREATE TABLE writers_table (id int, email text, vault_token uuid);
ALTER TABLE writers_table OWNER TO not_admin;
INSERT INTO writers_table VALUES (1, 'w1@migrate.example');
GRANT SELECT, UPDATE ON writers_table TO migrator;
SET ROLE migrator;
SELECT try_sql($$CALL vault_migrate('writers_table', 'vault_token', '{email}')$$);
RESET ROLE;
ALTER TABLE writers_table OWNER TO migrator;
CREATE FUNCTION erase_as_caller() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM vault_erase(NEW.vault_token); RETURN NEW; END $$;
CREATE TRIGGER erase_as_caller BEFORE UPDATE ON writers_table FOR EACH ROW EXECUTE FUNCTION erase_as_caller();
SET ROLE migrator;
SELECT try_sql($$CALL vault_migrate('writers_table', 'vault_token', '{email}')$$);
RESET ROLE;
-- Partitions share ctids: a partitioned table is refused, each partition
-- is migrated on its own.
CREATE TABLE regions (region text, email text, vault_token uuid) PARTITION BY LIST (region);
CREATE TABLE regions_eu PARTITION OF regions FOR VALUES IN ('eu');
CREATE TABLE regions_us PARTITION OF regions FOR VALUES IN ('us');
INSERT INTO regions VALUES ('eu', 'eu1@migrate.example'), ('us', 'us1@migrate.example');
ALTER TABLE regions OWNER TO migrator;
ALTER TABLE regions_eu OWNER TO migrator;
ALTER TABLE regions_us OWNER TO migrator;
SET ROLE migrator;
SELECT try_sql($$CALL vault_migrate('regions', 'vault_token', '{email}')$$);
RESET ROLE;
SELECT count(*) AS untouched FROM writers_table WHERE vault_token IS NULL;
-- Cancelled part-way (statement_timeout), in batches of 10.
\c - migrator
SET client_min_messages = warning;
SET statement_timeout = '700ms';
\set VERBOSITY terse
CALL vault_migrate('users', 'vault_token', '{email,phone,name,born}', 10);
\set VERBOSITY default
RESET statement_timeout;
SELECT count(vault_token) BETWEEN 1 AND 2999 AS partly_moved,
       count(*) FILTER (WHERE vault_token IS NOT NULL AND email IS NULL AND name IS NULL) = count(vault_token) AS moved_rows_emptied
FROM users;
-- Called again: it moves the rest.
CALL vault_migrate('users', 'vault_token', '{email,phone,name,born}');
RESET client_min_messages;
\c - postgres
SET client_min_messages = warning;
SELECT count(vault_token) AS moved, count(DISTINCT vault_token) AS distinct_tokens,
       (SELECT count(*) FROM pii_vault.records) - (SELECT n FROM records_before) AS records_added
FROM users;
-- Each record holds its row's values (nulls left out), and is found by
-- its email and phone.
SET pii_vault.max_reads_per_statement = 0;
SELECT count(*) FILTER (WHERE vault_get(u.vault_token) = jsonb_strip_nulls(jsonb_build_object('email', o.email, 'phone', o.phone, 'name', o.name, 'born', o.born)))
           AS records_right,
       count(*) FILTER (WHERE vault_lookup('email', o.email) = u.vault_token) AS found_by_email,
       count(*) FILTER (WHERE o.phone IS NOT NULL AND vault_lookup('phone', o.phone) = u.vault_token) AS found_by_phone
FROM users AS u JOIN originals AS o USING (id) WHERE u.vault_token IS NOT NULL;
RESET pii_vault.max_reads_per_statement;
-- The rows left are as they were.
SELECT u.id, u.email = o.email AS email_kept, u.name AS name_kept, u.vault_token IS NULL AS no_token
FROM users AS u JOIN originals AS o USING (id) WHERE u.vault_token IS NULL ORDER BY u.id;
RESET client_min_messages;
-- Run again: nothing more to move; the rows left are named again, each
-- by its ctid and error, and no value.
\c - migrator
CALL vault_migrate('users', 'vault_token', '{email,phone,name,born}');
\c - postgres
-- Audited as migrate, one event per record, by the admin.
SELECT pii_vault.audit_wait();
SELECT count(*) FILTER (WHERE outcome = 'ok') >= 3000 AS each_record_audited,
       count(*) FILTER (WHERE outcome = 'error') >= 4 AS refusals_audited,
       bool_and(acting_role = 'migrator') AS by_the_admin
FROM pii_vault.audit_log WHERE operation = 'migrate';
-- Each partition on its own: every row its own record.
\c - migrator
SET client_min_messages = warning;
CALL vault_migrate('regions_eu', 'vault_token', '{email}');
CALL vault_migrate('regions_us', 'vault_token', '{email}');
RESET client_min_messages;
\c - postgres
SELECT region, vault_get(vault_token) ->> 'email' AS email FROM regions ORDER BY region;
DROP TABLE users, originals, records_before, writers_table, regions;
DROP FUNCTION erase_as_caller();
DROP OWNED BY migrator, not_admin;
DROP ROLE migrator, not_admin;
