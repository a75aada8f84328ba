-- The attack: a role that owns a schema (as an application running its
-- own migrations does) puts a vault call into an expression PostgreSQL
-- evaluates for it in maintenance: expression statistics (ANALYZE, and
-- autovacuum as the bootstrap superuser with a fresh statement per table),
-- an expression index, a partial index predicate, a materialized view.
-- There the call would be charged to nobody, and what it returned would
-- be kept in plaintext in pg_statistic_ext_data, an index or a
-- materialized view. Every such call is refused (42501) and audited as
-- denied; nothing decrypted reaches a catalog, an index or a view through
-- maintenance. (An expression index made on an empty table is evaluated
-- by the role's own INSERTs: charged and audited as its reads, as if it
-- had copied the values into its table itself.)
\set ECHO none
\ir common/setup.sql
\set ECHO all
CREATE ROLE migrator LOGIN IN ROLE pii_vault_writer;
CREATE SCHEMA mig AUTHORIZATION migrator;
CREATE TABLE launder_victims AS SELECT n, vault_store(jsonb_build_object('name', 'launder-' || n)) AS tok
FROM generate_series(1, 20) AS n;
GRANT SELECT ON launder_victims TO migrator;

SET ROLE migrator;
-- PL/pgSQL, so PostgreSQL cannot inline it and see the volatile call;
-- the vault named by schema, as autovacuum runs with an empty search_path.
CREATE FUNCTION mig.name_of(t uuid) RETURNS text LANGUAGE plpgsql IMMUTABLE
AS $$ BEGIN RETURN public.vault_get(t) ->> 'name'; END $$;
CREATE FUNCTION mig.expire(t uuid) RETURNS boolean LANGUAGE plpgsql IMMUTABLE
AS $$ BEGIN RETURN public.vault_set_expiry(t, clock_timestamp() + interval '1 second'); END $$;
CREATE TABLE mig.stolen AS SELECT tok FROM launder_victims;
-- Called directly, in the role's own statement, a read is fine (and charged).
SELECT count(mig.name_of(tok)) AS read_in_own_statement FROM mig.stolen;

-- 1. ANALYZE with expression statistics.
CREATE STATISTICS mig.by_name ON (mig.name_of(tok)) FROM mig.stolen;
SELECT try_sql('ANALYZE mig.stolen') AS analyze_by_owner;
RESET ROLE;
-- A DBA's ANALYZE runs the owner's expression as the owner: refused too.
SELECT try_sql('ANALYZE mig.stolen') AS analyze_by_superuser;
SELECT count(d.*) AS statistics_kept
FROM pg_statistic_ext s LEFT JOIN pg_statistic_ext_data d ON d.stxoid = s.oid WHERE s.stxname = 'by_name'
  AND d.stxdexpr IS NOT NULL;
SET ROLE migrator;
DROP STATISTICS mig.by_name;

-- 2. An expression index, and a partial index's predicate.
SELECT try_sql('CREATE INDEX stolen_names ON mig.stolen (mig.name_of(tok))') AS expression_index;
SELECT try_sql('CREATE INDEX stolen_some ON mig.stolen (tok) WHERE mig.name_of(tok) IS NOT NULL') AS partial_index;
SELECT count(*) AS indexes_built FROM pg_indexes WHERE schemaname = 'mig';
-- An index made while the table is empty evaluates nothing; a REINDEX
-- would, and is refused as well.
CREATE TABLE mig.empty (tok uuid);
CREATE INDEX empty_names ON mig.empty (mig.name_of(tok));
SELECT try_sql('INSERT INTO mig.empty SELECT tok FROM launder_victims LIMIT 1') AS insert_through_index;
SELECT try_sql('REINDEX TABLE mig.empty') AS reindex;

-- 3. A materialized view: made without data, then refreshed.
CREATE MATERIALIZED VIEW mig.names AS SELECT mig.name_of(tok) AS name FROM mig.stolen WITH NO DATA;
SELECT try_sql('REFRESH MATERIALIZED VIEW mig.names') AS refresh;
SELECT try_sql('CREATE MATERIALIZED VIEW mig.names2 AS SELECT mig.name_of(tok) AS name FROM mig.stolen') AS create_with_data;
SELECT relispopulated AS view_populated FROM pg_class WHERE oid = 'mig.names'::regclass;

-- 4. Destruction through maintenance: an expression index that would
-- expire every record as it is built.
SELECT try_sql('CREATE INDEX stolen_expired ON mig.stolen (mig.expire(tok))') AS expiring_index;
RESET ROLE;
SELECT count(*) FILTER (WHERE vault_get(tok) IS NOT NULL) AS records_still_live FROM launder_victims;

-- 5. Autovacuum: expression statistics on a table it analyzes every
-- second. The worker's calls are refused and audited as denied, with the
-- bootstrap superuser as session role and no application name.
ALTER SYSTEM SET autovacuum_naptime = 1;
SELECT pg_reload_conf();
SET ROLE migrator;
CREATE TABLE mig.auto_stolen (tok uuid) WITH (autovacuum_analyze_threshold = 0, autovacuum_analyze_scale_factor = 0);
CREATE STATISTICS mig.auto_by_name ON (mig.name_of(tok)) FROM mig.auto_stolen;
INSERT INTO mig.auto_stolen SELECT tok FROM launder_victims;
RESET ROLE;
-- The table's insert counts reach the statistics autovacuum reads.
SELECT pg_stat_force_next_flush();
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
    WHILE clock_timestamp() < deadline AND NOT EXISTS (
        SELECT FROM pii_vault.audit_log
        WHERE operation = 'get' AND outcome = 'denied' AND application_name = '' AND session_role = 'postgres') LOOP
        PERFORM pg_sleep(0.2);
        PERFORM pii_vault.audit_wait(1000);
    END LOOP;
END
$$;
ALTER SYSTEM RESET autovacuum_naptime;
SELECT pg_reload_conf();
SELECT count(*) > 0 AS autovacuum_calls_denied,
       count(*) FILTER (WHERE outcome = 'ok') AS autovacuum_reads_served
FROM pii_vault.audit_log WHERE operation = 'get' AND application_name = '' AND session_role = 'postgres';
SELECT count(d.*) AS autovacuum_statistics_kept
FROM pg_statistic_ext s LEFT JOIN pg_statistic_ext_data d ON d.stxoid = s.oid WHERE s.stxname = 'auto_by_name'
  AND d.stxdexpr IS NOT NULL;

-- What the audit says: every call in maintenance denied; the only reads
-- served to migrator are the 20 + 1 + 20 it made in its own statements
-- (the last through its index on an empty table, and its INSERT).
SELECT pii_vault.audit_wait();
SELECT session_role, acting_role, application_name <> '' AS from_a_client, operation, outcome, sum(calls) > 0 AS some,
       sum(calls) FILTER (WHERE outcome = 'ok') AS served
FROM pii_vault.audit_log WHERE acting_role = 'migrator' OR (session_role = 'postgres' AND outcome = 'denied')
GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5;
SELECT count(*) AS plaintext_in_catalog FROM pg_statistic_ext_data d WHERE d::text LIKE '%launder-%';
DROP SCHEMA mig CASCADE;
DROP TABLE launder_victims;
DROP ROLE migrator;
