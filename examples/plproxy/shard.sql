-- pii_vault behind PL/Proxy: what every shard runs (README, "Shards").
--
-- Run as a superuser in each shard's vault database, after CREATE
-- EXTENSION pii_vault (in schema public). Each function here is what one
-- proxy function calls: the vault call, with two more arguments, the
-- application_name and pii_vault.purpose of the client's session on the
-- proxy, set for this call only (PL/Proxy runs every call in a transaction
-- of its own), so the shard's audit names them. Each is PL/pgSQL, whose
-- plans a session keeps (a SQL function's body is planned at every call);
-- sets the two by assignment (evaluated without the executor a PERFORM
-- starts); names the vault's functions with their schema; and sets no
-- search_path (a SET clause costs every call, and a role that altered
-- its own search_path would reach only its own functions, with its own
-- rights). Nothing here is SECURITY DEFINER: the shard sees the client's
-- own role (PL/Proxy connects as it), its grants and its budgets decide,
-- and its audit names it.

CREATE SCHEMA vault_remote;
REVOKE ALL ON SCHEMA vault_remote FROM PUBLIC;
GRANT USAGE ON SCHEMA vault_remote
    TO pii_vault_share_reader, pii_vault_reader, pii_vault_writer, pii_vault_auditor, pii_vault_admin;

-- Records.
CREATE FUNCTION vault_remote.vault_get(token uuid, _app text, _purpose text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_get(token);
END $$;

CREATE FUNCTION vault_remote.vault_get(token uuid, fields text[], _app text, _purpose text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_get(token, fields);
END $$;

-- A lookup asked of every shard returns the one row a PL/Proxy set needs.
CREATE FUNCTION vault_remote.vault_lookup(kind text, value text, _app text, _purpose text) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN NEXT public.vault_lookup(kind, value);
END $$;

CREATE FUNCTION vault_remote.vault_store(record jsonb, expires_at timestamptz, _app text, _purpose text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_store(record, expires_at);
END $$;

CREATE FUNCTION vault_remote.vault_update(token uuid, patch jsonb, _app text, _purpose text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_update(token, patch);
END $$;

CREATE FUNCTION vault_remote.vault_delete(token uuid, _app text, _purpose text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_delete(token);
END $$;

CREATE FUNCTION vault_remote.vault_set_expiry(token uuid, expires_at timestamptz, _app text, _purpose text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_set_expiry(token, expires_at);
END $$;

-- Shares: a share's id is minted on its record's shard.
CREATE FUNCTION vault_remote.vault_share(token uuid, fields text[], ttl interval, _app text, _purpose text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_share(token, fields, ttl);
END $$;

CREATE FUNCTION vault_remote.vault_get_shared(share uuid, _app text, _purpose text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_get_shared(share);
END $$;

CREATE FUNCTION vault_remote.vault_unshare(share uuid, _app text, _purpose text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_unshare(share);
END $$;

-- Sessions: a session's id is minted on the shard that stores it.
CREATE FUNCTION vault_remote.vault_session_store(data jsonb, ttl interval, token uuid, _app text, _purpose text)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_session_store(data, ttl, token);
END $$;

CREATE FUNCTION vault_remote.vault_session_get(session uuid, _app text, _purpose text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_session_get(session);
END $$;

CREATE FUNCTION vault_remote.vault_session_delete(session uuid, _app text, _purpose text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_session_delete(session);
END $$;

CREATE FUNCTION vault_remote.vault_sessions(token uuid, _app text, _purpose text) RETURNS SETOF uuid
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN QUERY SELECT * FROM public.vault_sessions(token);
END $$;

-- Applications' data of a record.
CREATE FUNCTION vault_remote.vault_appdata_set(token uuid, app text, data jsonb, _app text, _purpose text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_appdata_set(token, app, data);
END $$;

CREATE FUNCTION vault_remote.vault_appdata_get(token uuid, app text, _app text, _purpose text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_appdata_get(token, app);
END $$;

CREATE FUNCTION vault_remote.vault_appdata_delete(token uuid, app text, _app text, _purpose text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_appdata_delete(token, app);
END $$;

-- Consents.
CREATE FUNCTION vault_remote.vault_consent_set(token uuid, purpose text, granted boolean, legal_basis text,
                                               expires_at timestamptz, _app text, _purpose text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_consent_set(token, purpose, granted, legal_basis, expires_at);
END $$;

CREATE FUNCTION vault_remote.vault_consents(token uuid, _app text, _purpose text)
RETURNS TABLE (purpose text, granted boolean, legal_basis text, given_at timestamptz, expires_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN QUERY SELECT * FROM public.vault_consents(token);
END $$;

CREATE FUNCTION vault_remote.vault_consent_history(token uuid, _app text, _purpose text)
RETURNS TABLE (purpose text, granted boolean, legal_basis text, given_at timestamptz, expires_at timestamptz,
               changed_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN QUERY SELECT * FROM public.vault_consent_history(token);
END $$;

-- The rights of access and erasure, and the audit of one token: all of a
-- subject's data lives on its record's shard.
CREATE FUNCTION vault_remote.vault_subject_export(token uuid, _app text, _purpose text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_subject_export(token);
END $$;

CREATE FUNCTION vault_remote.vault_erase(token uuid, _app text, _purpose text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN public.vault_erase(token);
END $$;

CREATE FUNCTION vault_remote.vault_audit(for_token uuid, _app text, _purpose text)
RETURNS TABLE (id bigint, at timestamptz, session_role name, "current_role" name, application_name text,
               operation text, token uuid, fields text[], outcome text, purpose text, calling_role name,
               calls bigint, server text)
LANGUAGE plpgsql AS $$
DECLARE
    carried text;
BEGIN
    carried := pg_catalog.set_config('application_name', coalesce(_app, ''), true);
    carried := pg_catalog.set_config('pii_vault.purpose', coalesce(_purpose, ''), true);
    RETURN QUERY SELECT * FROM public.vault_audit(for_token);
END $$;

-- Who may call what: as the vault grants it.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA vault_remote FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_remote.vault_get(uuid, text, text), vault_remote.vault_get(uuid, text[], text, text),
    vault_remote.vault_lookup(text, text, text, text), vault_remote.vault_consents(uuid, text, text),
    vault_remote.vault_consent_history(uuid, text, text), vault_remote.vault_appdata_get(uuid, text, text, text)
    TO pii_vault_reader, pii_vault_writer, pii_vault_admin;
GRANT EXECUTE ON FUNCTION vault_remote.vault_get_shared(uuid, text, text)
    TO pii_vault_share_reader, pii_vault_reader, pii_vault_writer, pii_vault_admin;
GRANT EXECUTE ON FUNCTION vault_remote.vault_store(jsonb, timestamptz, text, text),
    vault_remote.vault_update(uuid, jsonb, text, text), vault_remote.vault_delete(uuid, text, text),
    vault_remote.vault_set_expiry(uuid, timestamptz, text, text),
    vault_remote.vault_share(uuid, text[], interval, text, text), vault_remote.vault_unshare(uuid, text, text),
    vault_remote.vault_session_store(jsonb, interval, uuid, text, text), vault_remote.vault_session_get(uuid, text, text),
    vault_remote.vault_session_delete(uuid, text, text), vault_remote.vault_sessions(uuid, text, text),
    vault_remote.vault_consent_set(uuid, text, boolean, text, timestamptz, text, text),
    vault_remote.vault_appdata_set(uuid, text, jsonb, text, text), vault_remote.vault_appdata_delete(uuid, text, text, text)
    TO pii_vault_writer, pii_vault_admin;
GRANT EXECUTE ON FUNCTION vault_remote.vault_subject_export(uuid, text, text), vault_remote.vault_erase(uuid, text, text)
    TO pii_vault_admin;
GRANT EXECUTE ON FUNCTION vault_remote.vault_audit(uuid, text, text) TO pii_vault_auditor, pii_vault_admin;
