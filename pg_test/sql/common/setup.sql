-- Shared by every suite (\ir common/setup.sql), so each runs alone or in
-- any order: the extension, try_sql, the application roles, and the
-- waits wait_for_worker and wait_for_logout. Safe to run again. Each suite
-- drops at its end whatever else it made outside the vault (roles, tables,
-- functions...), leaving the cluster as this file leaves it. The other
-- files here are preambles of server settings, which only ALTER SYSTEM
-- changes and so no procedure can: a suite includes them with \ir.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pii_vault;

-- Runs a statement; returns 'ok', or its SQLSTATE and message with the
-- DETAIL and HINT lines, as a client would see them.
CREATE OR REPLACE FUNCTION try_sql(statement text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    detail text;
    hint text;
BEGIN
    EXECUTE statement;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RETURN SQLSTATE || ' ' || SQLERRM
        || coalesce(E'\nDETAIL:  ' || nullif(detail, ''), '')
        || coalesce(E'\nHINT:  ' || nullif(hint, ''), '');
END
$$;
GRANT EXECUTE ON FUNCTION try_sql(text) TO PUBLIC;

-- The application's login roles (roles are per cluster: created once).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_writer') THEN
        CREATE ROLE app_writer LOGIN IN ROLE pii_vault_writer;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_reader') THEN
        CREATE ROLE app_reader LOGIN IN ROLE pii_vault_reader;
    END IF;
END
$$;
-- Waits, `seconds` at most, for the vault's background worker `kind`
-- ('pii_vault audit writer', 'pii_vault purge worker') to connect to this
-- database.
CREATE OR REPLACE PROCEDURE wait_for_worker(kind text, seconds numeric) LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => seconds);
BEGIN
    WHILE clock_timestamp() < deadline AND NOT EXISTS (
        SELECT 1 FROM pg_stat_activity WHERE backend_type = kind AND datname = current_database()) LOOP
        PERFORM pg_sleep(0.05);
        -- pg_stat_activity is read once per transaction otherwise.
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
END
$$;
GRANT EXECUTE ON PROCEDURE wait_for_worker(text, numeric) TO PUBLIC;
-- Waits, `seconds` at most, until no session of the login role `who` is
-- left. A session drops its temporary objects only after its client has
-- gone (psql's \c returns before that): a suite calls this before it
-- drops what such objects depend on, or the role that owns them.
CREATE OR REPLACE PROCEDURE wait_for_logout(who name, seconds numeric) LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + make_interval(secs => seconds);
BEGIN
    WHILE clock_timestamp() < deadline AND EXISTS (
        SELECT 1 FROM pg_stat_activity WHERE usename = who AND pid <> pg_backend_pid()) LOOP
        PERFORM pg_sleep(0.05);
        -- pg_stat_activity is read once per transaction otherwise.
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
END
$$;
-- A fresh database: wait (10 s at most) for the audit writer to connect
-- to it, so a suite run alone sees the vault as a suite run after others.
DO $$
BEGIN
    IF current_setting('shared_preload_libraries') LIKE '%pii_vault%' THEN
        CALL wait_for_worker('pii_vault audit writer', 10);
    END IF;
END
$$;
RESET client_min_messages;
