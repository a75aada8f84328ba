-- pii_vault behind PL/Proxy: the proxy database's functions (README,
-- "Shards"). Run as a superuser after CREATE EXTENSION pii_vault (the
-- proxy preloads pii_vault with the shards' key and pii_vault.shards,
-- shard_key and routing_key_version; it stores no record) and cluster.sql.
--
-- Applications call the functions of schema vault, named and typed as the
-- vault's own. Each passes the session's application_name and
-- pii_vault.purpose to a PL/Proxy function of schema vault_remote, which
-- runs the call on one shard (routed by token, or by the identifier of
-- pii_vault.shard_key) or on all of them (lookups by another kind). The
-- routing expression is vault_route, named with the vault operation it
-- routes: it charges the call to the client's budgets here, where its
-- statement runs, as the shard will (one statement on the proxy is many
-- statements on the shards, and no shard's per-statement budget would
-- see it whole), and audits it here naming the client's login and calling
-- roles (the shard, reached as the client's current role, sees only
-- that). A client that calls vault_remote directly goes through the same
-- routing expression, and is charged and audited the same.

CREATE SCHEMA vault_remote;
CREATE SCHEMA vault;
REVOKE ALL ON SCHEMA vault_remote, vault FROM PUBLIC;
GRANT USAGE ON SCHEMA vault_remote, vault
    TO pii_vault_share_reader, pii_vault_reader, pii_vault_writer, pii_vault_auditor, pii_vault_admin;

-- ---- routing --------------------------------------------------------------
-- The shard a record goes to: the owner of its routing identifier, or any
-- shard when it has none (pii_vault.shard_key values are unique across
-- shards; records without one may live anywhere).
CREATE FUNCTION vault_remote.store_shard(record jsonb) RETURNS integer
LANGUAGE sql VOLATILE AS $$
    SELECT CASE WHEN jsonb_typeof(record -> k) = 'string' THEN public.vault_shard_for(k, record ->> k)
                ELSE floor(random() * current_setting('pii_vault.shards')::integer)::integer END
    FROM (SELECT current_setting('pii_vault.shard_key') AS k) AS s
$$;

-- The shard a lookup asks: the owner of a routing identifier or of a
-- token; NULL (every shard) for the other kinds, unique per shard only.
CREATE FUNCTION vault_remote.lookup_shard(kind text, value text) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN kind IN (current_setting('pii_vault.shard_key'), 'token') THEN public.vault_shard_for(kind, value) END
$$;

-- ---- PL/Proxy functions: the shard-side signature (shard.sql) ------------
CREATE FUNCTION vault_remote.vault_get(token uuid, _app text, _purpose text) RETURNS jsonb AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'get', token);
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_get(token uuid, fields text[], _app text, _purpose text) RETURNS jsonb AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'get', token);
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_lookup(kind text, value text, _app text, _purpose text) RETURNS SETOF uuid AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(vault_remote.lookup_shard(kind, value), 'lookup');
$$ LANGUAGE plproxy STRICT;
-- A lookup of the routing kind or of a token asks one shard, for one value.
CREATE FUNCTION vault_remote.vault_lookup_one(kind text, value text, _app text, _purpose text) RETURNS uuid AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(vault_remote.lookup_shard(kind, value), 'lookup');
    TARGET vault_remote.vault_lookup;
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_store(record jsonb, expires_at timestamptz, _app text, _purpose text) RETURNS uuid AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(vault_remote.store_shard(record), 'store', NULL, record);
$$ LANGUAGE plproxy;
CREATE FUNCTION vault_remote.vault_update(token uuid, patch jsonb, _app text, _purpose text) RETURNS boolean AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'update', token, patch);
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_delete(token uuid, _app text, _purpose text) RETURNS boolean AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'delete', token);
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_set_expiry(token uuid, expires_at timestamptz, _app text, _purpose text) RETURNS boolean AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'set_expiry', token);
$$ LANGUAGE plproxy;
CREATE FUNCTION vault_remote.vault_share(token uuid, fields text[], ttl interval, _app text, _purpose text) RETURNS uuid AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'share', token);
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_get_shared(share uuid, _app text, _purpose text) RETURNS jsonb AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(share), 'get_shared');
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_unshare(share uuid, _app text, _purpose text) RETURNS boolean AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(share), 'unshare');
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_session_store(data jsonb, ttl interval, token uuid, _app text, _purpose text)
RETURNS uuid AS $$
    CLUSTER 'vault_shards';
    RUN ON public.vault_route(coalesce(public.vault_shard_of(token),
                                       floor(random() * current_setting('pii_vault.shards')::integer)::integer), 'session_store', token);
$$ LANGUAGE plproxy;
CREATE FUNCTION vault_remote.vault_session_get(session uuid, _app text, _purpose text) RETURNS jsonb AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(session), 'session_get');
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_session_delete(session uuid, _app text, _purpose text) RETURNS boolean AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(session), 'session_delete');
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_sessions(token uuid, _app text, _purpose text) RETURNS SETOF uuid AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'sessions', token);
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_appdata_set(token uuid, app text, data jsonb, _app text, _purpose text) RETURNS boolean AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'appdata_set', token);
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_appdata_get(token uuid, app text, _app text, _purpose text) RETURNS jsonb AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'appdata_get', token);
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_appdata_delete(token uuid, app text, _app text, _purpose text) RETURNS boolean AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'appdata_delete', token);
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_consent_set(token uuid, purpose text, granted boolean, legal_basis text,
                                               expires_at timestamptz, _app text, _purpose text) RETURNS boolean AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'consent_set', token);
$$ LANGUAGE plproxy;
CREATE FUNCTION vault_remote.vault_consents(token uuid, _app text, _purpose text)
RETURNS TABLE (purpose text, granted boolean, legal_basis text, given_at timestamptz, expires_at timestamptz) AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'consents', token);
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_consent_history(token uuid, _app text, _purpose text)
RETURNS TABLE (purpose text, granted boolean, legal_basis text, given_at timestamptz, expires_at timestamptz,
               changed_at timestamptz) AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'consent_history', token);
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_subject_export(token uuid, _app text, _purpose text) RETURNS jsonb AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'subject_export', token);
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_erase(token uuid, _app text, _purpose text) RETURNS boolean AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(token), 'erase', token);
$$ LANGUAGE plproxy STRICT;
CREATE FUNCTION vault_remote.vault_audit(for_token uuid, _app text, _purpose text)
RETURNS TABLE (id bigint, at timestamptz, session_role name, "current_role" name, application_name text,
               operation text, token uuid, fields text[], outcome text, purpose text, calling_role name,
               calls bigint, server text) AS $$
    CLUSTER 'vault_shards'; RUN ON public.vault_route(public.vault_shard_of(for_token), 'audit_read', for_token);
$$ LANGUAGE plproxy STRICT;

-- ---- what applications call ----------------------------------------------
-- The session's application_name and purpose, carried to the shard. The
-- one-expression SQL functions below are inlined into the caller's query
-- (so planned with it, once for a prepared statement): they are not
-- STRICT, their PL/Proxy function is, and a NULL id routes nowhere.
CREATE FUNCTION vault_remote.app() RETURNS text LANGUAGE sql STABLE AS
$$ SELECT coalesce(pg_catalog.current_setting('application_name'), '') $$;
CREATE FUNCTION vault_remote.purpose() RETURNS text LANGUAGE sql STABLE AS
$$ SELECT coalesce(pg_catalog.current_setting('pii_vault.purpose', true), '') $$;

CREATE FUNCTION vault.vault_get(token uuid) RETURNS jsonb LANGUAGE sql AS
$$ SELECT vault_remote.vault_get(token, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_get(token uuid, fields text[]) RETURNS jsonb LANGUAGE sql AS
$$ SELECT vault_remote.vault_get(token, fields, vault_remote.app(), vault_remote.purpose()) $$;
-- One token, or NULL; a kind unique per shard only (not pii_vault.shard_key)
-- may match one record on each shard: then 21000, and vault_lookup_all
-- lists them.
CREATE FUNCTION vault_remote.more_than_one(kind text) RETURNS uuid LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = '21000',
        MESSAGE = 'pii_vault: more than one shard holds a record with this ' || kind,
        HINT = 'Only pii_vault.shard_key is unique across shards; vault.vault_lookup_all(kind, value) lists every match.';
END $$;
CREATE FUNCTION vault_remote.vault_lookup_every(kind text, value text, _app text, _purpose text) RETURNS uuid
LANGUAGE plpgsql STRICT AS $$
DECLARE
    found uuid[];
BEGIN
    SELECT array_agg(t) INTO found FROM vault_remote.vault_lookup(kind, value, _app, _purpose) AS t WHERE t IS NOT NULL;
    IF cardinality(found) > 1 THEN
        RETURN vault_remote.more_than_one(kind);
    END IF;
    RETURN found[1];
END $$;
CREATE FUNCTION vault.vault_lookup(kind text, value text) RETURNS uuid LANGUAGE sql AS $$
    SELECT CASE WHEN kind IN (pg_catalog.current_setting('pii_vault.shard_key'), 'token')
                THEN vault_remote.vault_lookup_one(kind, value, vault_remote.app(), vault_remote.purpose())
                ELSE vault_remote.vault_lookup_every(kind, value, vault_remote.app(), vault_remote.purpose()) END
$$;
CREATE FUNCTION vault.vault_lookup_all(kind text, value text) RETURNS SETOF uuid LANGUAGE sql AS
$$ SELECT t FROM vault_remote.vault_lookup(kind, value, vault_remote.app(), vault_remote.purpose()) AS t WHERE t IS NOT NULL $$;
CREATE FUNCTION vault.vault_store(record jsonb, expires_at timestamptz DEFAULT NULL) RETURNS uuid LANGUAGE sql AS
$$ SELECT vault_remote.vault_store(record, expires_at, vault_remote.app(), vault_remote.purpose()) WHERE record IS NOT NULL $$;
CREATE FUNCTION vault.vault_update(token uuid, patch jsonb) RETURNS boolean LANGUAGE sql AS
$$ SELECT vault_remote.vault_update(token, patch, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_delete(token uuid) RETURNS boolean LANGUAGE sql AS
$$ SELECT vault_remote.vault_delete(token, vault_remote.app(), vault_remote.purpose()) $$;
-- A NULL expires_at clears the expiry.
CREATE FUNCTION vault.vault_set_expiry(token uuid, expires_at timestamptz) RETURNS boolean LANGUAGE sql AS
$$ SELECT vault_remote.vault_set_expiry(token, expires_at, vault_remote.app(), vault_remote.purpose()) WHERE token IS NOT NULL $$;
CREATE FUNCTION vault.vault_share(token uuid, fields text[], ttl interval) RETURNS uuid LANGUAGE sql AS
$$ SELECT vault_remote.vault_share(token, fields, ttl, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_get_shared(share uuid) RETURNS jsonb LANGUAGE sql AS
$$ SELECT vault_remote.vault_get_shared(share, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_unshare(share uuid) RETURNS boolean LANGUAGE sql AS
$$ SELECT vault_remote.vault_unshare(share, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_session_store(data jsonb, ttl interval, token uuid DEFAULT NULL) RETURNS uuid LANGUAGE sql AS
$$ SELECT vault_remote.vault_session_store(data, ttl, token, vault_remote.app(), vault_remote.purpose())
   WHERE data IS NOT NULL AND ttl IS NOT NULL $$;
CREATE FUNCTION vault.vault_session_get(session uuid) RETURNS jsonb LANGUAGE sql AS
$$ SELECT vault_remote.vault_session_get(session, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_session_delete(session uuid) RETURNS boolean LANGUAGE sql AS
$$ SELECT vault_remote.vault_session_delete(session, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_sessions(token uuid) RETURNS SETOF uuid LANGUAGE sql AS
$$ SELECT vault_remote.vault_sessions(token, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_appdata_set(token uuid, app text, data jsonb) RETURNS boolean LANGUAGE sql AS
$$ SELECT vault_remote.vault_appdata_set(token, app, data, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_appdata_get(token uuid, app text) RETURNS jsonb LANGUAGE sql AS
$$ SELECT vault_remote.vault_appdata_get(token, app, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_appdata_delete(token uuid, app text) RETURNS boolean LANGUAGE sql AS
$$ SELECT vault_remote.vault_appdata_delete(token, app, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_consent_set(token uuid, purpose text, granted boolean, legal_basis text DEFAULT 'consent',
                                        expires_at timestamptz DEFAULT NULL) RETURNS boolean LANGUAGE sql AS
$$ SELECT vault_remote.vault_consent_set(token, purpose, granted, legal_basis, expires_at, vault_remote.app(), vault_remote.purpose())
   WHERE token IS NOT NULL AND purpose IS NOT NULL AND granted IS NOT NULL $$;
CREATE FUNCTION vault.vault_consents(token uuid)
RETURNS TABLE (purpose text, granted boolean, legal_basis text, given_at timestamptz, expires_at timestamptz)
LANGUAGE sql AS
$$ SELECT * FROM vault_remote.vault_consents(token, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_consent_history(token uuid)
RETURNS TABLE (purpose text, granted boolean, legal_basis text, given_at timestamptz, expires_at timestamptz,
               changed_at timestamptz)
LANGUAGE sql AS
$$ SELECT * FROM vault_remote.vault_consent_history(token, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_subject_export(token uuid) RETURNS jsonb LANGUAGE sql AS
$$ SELECT vault_remote.vault_subject_export(token, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_erase(token uuid) RETURNS boolean LANGUAGE sql AS
$$ SELECT vault_remote.vault_erase(token, vault_remote.app(), vault_remote.purpose()) $$;
CREATE FUNCTION vault.vault_audit(for_token uuid)
RETURNS TABLE (id bigint, at timestamptz, session_role name, "current_role" name, application_name text,
               operation text, token uuid, fields text[], outcome text, purpose text, calling_role name,
               calls bigint, server text)
LANGUAGE sql AS
$$ SELECT * FROM vault_remote.vault_audit(for_token, vault_remote.app(), vault_remote.purpose()) $$;

-- Who may call what: as the vault grants it.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA vault_remote, vault FROM PUBLIC;
-- Readers: each app-facing function and the PL/Proxy function under it.
GRANT EXECUTE ON FUNCTION
    vault.vault_get(uuid), vault_remote.vault_get(uuid, text, text),
    vault.vault_get(uuid, text[]), vault_remote.vault_get(uuid, text[], text, text),
    vault.vault_lookup(text, text), vault.vault_lookup_all(text, text),
    vault_remote.vault_lookup_one(text, text, text, text), vault_remote.vault_lookup_every(text, text, text, text),
    vault_remote.vault_lookup(text, text, text, text), vault_remote.lookup_shard(text, text),
    vault.vault_consents(uuid), vault_remote.vault_consents(uuid, text, text),
    vault.vault_consent_history(uuid), vault_remote.vault_consent_history(uuid, text, text),
    vault.vault_appdata_get(uuid, text), vault_remote.vault_appdata_get(uuid, text, text, text)
    TO pii_vault_reader, pii_vault_writer, pii_vault_admin;
GRANT EXECUTE ON FUNCTION vault.vault_get_shared(uuid), vault_remote.vault_get_shared(uuid, text, text)
    TO pii_vault_share_reader, pii_vault_reader, pii_vault_writer, pii_vault_admin;
-- Writers.
GRANT EXECUTE ON FUNCTION
    vault.vault_store(jsonb, timestamptz), vault_remote.vault_store(jsonb, timestamptz, text, text),
    vault_remote.store_shard(jsonb),
    vault.vault_update(uuid, jsonb), vault_remote.vault_update(uuid, jsonb, text, text),
    vault.vault_delete(uuid), vault_remote.vault_delete(uuid, text, text),
    vault.vault_set_expiry(uuid, timestamptz), vault_remote.vault_set_expiry(uuid, timestamptz, text, text),
    vault.vault_share(uuid, text[], interval), vault_remote.vault_share(uuid, text[], interval, text, text),
    vault.vault_unshare(uuid), vault_remote.vault_unshare(uuid, text, text),
    vault.vault_session_store(jsonb, interval, uuid), vault_remote.vault_session_store(jsonb, interval, uuid, text, text),
    vault.vault_session_get(uuid), vault_remote.vault_session_get(uuid, text, text),
    vault.vault_session_delete(uuid), vault_remote.vault_session_delete(uuid, text, text),
    vault.vault_sessions(uuid), vault_remote.vault_sessions(uuid, text, text),
    vault.vault_appdata_set(uuid, text, jsonb), vault_remote.vault_appdata_set(uuid, text, jsonb, text, text),
    vault.vault_appdata_delete(uuid, text), vault_remote.vault_appdata_delete(uuid, text, text, text),
    vault.vault_consent_set(uuid, text, boolean, text, timestamptz),
    vault_remote.vault_consent_set(uuid, text, boolean, text, timestamptz, text, text)
    TO pii_vault_writer, pii_vault_admin;
-- Admins; auditors.
GRANT EXECUTE ON FUNCTION
    vault.vault_subject_export(uuid), vault_remote.vault_subject_export(uuid, text, text),
    vault.vault_erase(uuid), vault_remote.vault_erase(uuid, text, text)
    TO pii_vault_admin;
GRANT EXECUTE ON FUNCTION vault.vault_audit(uuid), vault_remote.vault_audit(uuid, text, text)
    TO pii_vault_auditor, pii_vault_admin;
GRANT EXECUTE ON FUNCTION vault_remote.app(), vault_remote.purpose(), vault_remote.more_than_one(text)
    TO pii_vault_share_reader, pii_vault_reader, pii_vault_writer, pii_vault_auditor, pii_vault_admin;
