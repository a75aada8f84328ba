-- pii_vault 0.2.0 -> 0.3.0: the record's life cycle (expiry, soft delete,
-- restore, erasure, the purge worker), shares, sessions, applications'
-- data, consents, the subject's export, and the purpose of access in the
-- audit. Leaves exactly what a fresh install of 0.3.0 has
-- (pg_test/day_two.sh compares the two). No stored row changes format:
-- 0.3.0 reads the audit batches and envelopes of every earlier release.
\echo Use "ALTER EXTENSION pii_vault UPDATE TO '0.3.0'" to load this file. \quit

-- Expiry and soft delete (see sql/storage.sql).
ALTER TABLE pii_vault.records ADD COLUMN expires_at timestamptz, ADD COLUMN deleted_at timestamptz;
-- The blind indexes include expires_at, so a lookup tells an expired
-- record from a live one without the heap. Rebuilt under the table's
-- exclusive lock, so no duplicate can slip in meanwhile.
DROP INDEX pii_vault.records_email_index_key;
DROP INDEX pii_vault.records_phone_index_key;
DROP INDEX pii_vault.records_login_index_key;
CREATE UNIQUE INDEX records_email_index_key ON pii_vault.records (email_index) INCLUDE (token, expires_at) WHERE email_index IS NOT NULL;
CREATE UNIQUE INDEX records_phone_index_key ON pii_vault.records (phone_index) INCLUDE (token, expires_at) WHERE phone_index IS NOT NULL;
CREATE UNIQUE INDEX records_login_index_key ON pii_vault.records (login_index) INCLUDE (token, expires_at) WHERE login_index IS NOT NULL;
CREATE INDEX records_expires_at ON pii_vault.records (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX records_deleted_at ON pii_vault.records (deleted_at) WHERE deleted_at IS NOT NULL;

-- Shares, sessions, applications' data and consents (see sql/storage.sql).
CREATE TABLE pii_vault.shares (
    id_hash     bytea       PRIMARY KEY,
    key_version integer     NOT NULL,
    token       uuid        NOT NULL REFERENCES pii_vault.records (token) ON DELETE CASCADE,
    fields      text[]      NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX shares_token ON pii_vault.shares (token);
CREATE INDEX shares_expires_at ON pii_vault.shares (expires_at);

-- Sessions: an encrypted document with a time-to-live, optionally of a
-- record (vault_session_store). Stored under the HMAC of the session id,
-- as shares are; the envelope holds the id and the document, so
-- vault_sessions(token) can list a record's session ids. Purged when
-- expired, gone with their record.
CREATE TABLE pii_vault.sessions (
    id_hash     bytea       PRIMARY KEY,
    key_version integer     NOT NULL,
    token       uuid        REFERENCES pii_vault.records (token) ON DELETE CASCADE,
    envelope    bytea       NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX sessions_token ON pii_vault.sessions (token) WHERE token IS NOT NULL;
CREATE INDEX sessions_expires_at ON pii_vault.sessions (expires_at);
ALTER TABLE pii_vault.sessions ALTER COLUMN envelope SET STORAGE EXTERNAL;

-- App data: one encrypted document per record and application
-- (vault_appdata_set). The application's name is stored as given: it
-- names a consumer of the record, never a value of it.
CREATE TABLE pii_vault.app_data (
    token      uuid        NOT NULL REFERENCES pii_vault.records (token) ON DELETE CASCADE,
    app        text        NOT NULL,
    envelope   bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (token, app)
);
ALTER TABLE pii_vault.app_data ALTER COLUMN envelope SET STORAGE EXTERNAL;

-- Consents: the current state per record and purpose, and every change
-- (append-only: a trigger refuses UPDATE, TRUNCATE, and a DELETE while
-- the record exists, so history goes only with its record). Purposes and
-- legal bases are the controller's own vocabulary, not the subject's
-- data.
CREATE TABLE pii_vault.consents (
    token       uuid        NOT NULL REFERENCES pii_vault.records (token) ON DELETE CASCADE,
    purpose     text        NOT NULL,
    granted     boolean     NOT NULL,
    legal_basis text        NOT NULL,
    given_at    timestamptz NOT NULL,
    expires_at  timestamptz,
    PRIMARY KEY (token, purpose)
);
CREATE TABLE pii_vault.consent_history (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token       uuid        NOT NULL REFERENCES pii_vault.records (token) ON DELETE CASCADE,
    purpose     text        NOT NULL,
    granted     boolean     NOT NULL,
    legal_basis text        NOT NULL,
    expires_at  timestamptz,
    changed_at  timestamptz NOT NULL
);
CREATE INDEX consent_history_token ON pii_vault.consent_history (token);
REVOKE ALL ON pii_vault.shares, pii_vault.sessions, pii_vault.app_data, pii_vault.consents,
    pii_vault.consent_history FROM PUBLIC;
REVOKE ALL ON SEQUENCE pii_vault.consent_history_id_seq FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pii_vault.shares', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.sessions', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.app_data', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.consents', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.consent_history', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.consent_history_id_seq', '');

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pii_vault_share_reader') THEN
        CREATE ROLE pii_vault_share_reader NOLOGIN;
    END IF;
END
$$;

-- The audit's events carry the purpose of access: the decoding function,
-- the view over it and vault_audit() gain a column.
DROP VIEW pii_vault.audit_log;
DROP FUNCTION vault_audit(uuid);
DROP FUNCTION pii_vault.audit_events(bigint, bytea);
CREATE  FUNCTION pii_vault."audit_events"(
	"first_id" bigint, /* i64 */
	"events" bytea /* & [u8] */
) RETURNS TABLE (
	"id" bigint,  /* i64 */
	"at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"session_role" TEXT,  /* String */
	"acting_role" TEXT,  /* String */
	"application_name" TEXT,  /* String */
	"operation" TEXT,  /* String */
	"token" uuid,  /* Option < Uuid > */
	"fields" TEXT[],  /* :: std :: option :: Option < Vec < String > > */
	"outcome" TEXT,  /* String */
	"purpose" TEXT  /* Option < String > */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_events_wrapper';

CREATE VIEW pii_vault.audit_log AS
SELECT e.id, e.at, e.session_role::name AS session_role, e.acting_role::name AS acting_role,
       e.application_name, e.operation, e.token, e.fields, e.outcome, e.purpose
FROM pii_vault.audit_batches AS b
CROSS JOIN LATERAL pii_vault.audit_events(b.first_id, b.events) AS e;
REVOKE ALL ON pii_vault.audit_log FROM PUBLIC;
REVOKE ALL ON FUNCTION pii_vault.audit_events(bigint, bytea) FROM PUBLIC;

-- The audit of one token, for auditors and admins (no PII in it).
CREATE FUNCTION vault_audit(for_token uuid)
RETURNS TABLE (id bigint, at timestamptz, session_role name, "current_role" name, application_name text,
               operation text, token uuid, fields text[], outcome text, purpose text)
LANGUAGE plpgsql STRICT VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pii_vault, pg_temp
AS $$
BEGIN
    -- Audited (and refused if the audit cannot be written) before any row;
    -- then wait briefly for queued events so the answer is current.
    PERFORM pii_vault.audit_read_note(for_token);
    PERFORM pii_vault.audit_wait(2000);
    -- Each batch's token filter skips the batches that cannot name it.
    RETURN QUERY
        SELECT e.id, e.at, e.session_role::name, e.acting_role::name, e.application_name,
               e.operation, e.token, e.fields, e.outcome, e.purpose
        FROM pii_vault.audit_batches AS b
        CROSS JOIN LATERAL pii_vault.audit_events(b.first_id, b.events) AS e
        WHERE pii_vault.audit_batch_may_name(b.token_filter, for_token) AND e.token = for_token
        ORDER BY e.id;
END
$$;
REVOKE ALL ON FUNCTION vault_audit(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_audit(uuid) TO pii_vault_auditor, pii_vault_admin;

-- Functions new in 0.3.0, as the 0.3.0 install script creates them.
CREATE  FUNCTION "vault_store"(
	"record" jsonb, /* Option < JsonbDatum > */
	"expires_at" timestamp with time zone /* Option < TimestampWithTimeZone > */
) RETURNS uuid /* Option < Uuid > */
VOLATILE SECURITY DEFINER 
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_store_expiring_wrapper';

CREATE  FUNCTION "vault_set_expiry"(
	"token" uuid, /* Option < Uuid > */
	"expires_at" timestamp with time zone /* Option < TimestampWithTimeZone > */
) RETURNS bool /* Option < bool > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_set_expiry_wrapper';

CREATE  FUNCTION "vault_restore"(
	"token" uuid /* Uuid */
) RETURNS bool /* bool */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_restore_wrapper';

CREATE  FUNCTION "vault_erase"(
	"token" uuid /* Uuid */
) RETURNS bool /* bool */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_erase_wrapper';

CREATE  FUNCTION "vault_share"(
	"token" uuid, /* Uuid */
	"fields" TEXT[], /* Vec < Option < String > > */
	"ttl" interval /* Interval */
) RETURNS uuid /* Option < Uuid > */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_share_wrapper';

CREATE  FUNCTION "vault_get_shared"(
	"share" uuid /* Uuid */
) RETURNS jsonb /* Option < JsonbDatum > */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_get_shared_wrapper';

CREATE  FUNCTION "vault_unshare"(
	"share" uuid /* Uuid */
) RETURNS bool /* bool */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_unshare_wrapper';

CREATE  FUNCTION "vault_session_store"(
	"data" jsonb, /* Option < JsonbDatum > */
	"ttl" interval, /* Option < Interval > */
	"token" uuid DEFAULT NULL /* Option < Uuid > */
) RETURNS uuid /* Option < Uuid > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_session_store_wrapper';

CREATE  FUNCTION "vault_session_get"(
	"session" uuid /* Uuid */
) RETURNS jsonb /* Option < JsonbDatum > */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_session_get_wrapper';

CREATE  FUNCTION "vault_session_delete"(
	"session" uuid /* Uuid */
) RETURNS bool /* bool */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_session_delete_wrapper';

CREATE  FUNCTION "vault_sessions"(
	"token" uuid /* Uuid */
) RETURNS SETOF uuid /* Uuid */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_sessions_wrapper';

CREATE  FUNCTION "vault_appdata_set"(
	"token" uuid, /* Uuid */
	"app" TEXT, /* & str */
	"data" jsonb /* JsonbDatum */
) RETURNS bool /* bool */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_appdata_set_wrapper';

CREATE  FUNCTION "vault_appdata_get"(
	"token" uuid, /* Uuid */
	"app" TEXT /* & str */
) RETURNS jsonb /* Option < JsonbDatum > */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_appdata_get_wrapper';

CREATE  FUNCTION "vault_appdata_delete"(
	"token" uuid, /* Uuid */
	"app" TEXT /* & str */
) RETURNS bool /* bool */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_appdata_delete_wrapper';

CREATE  FUNCTION "vault_consent_set"(
	"token" uuid, /* Option < Uuid > */
	"purpose" TEXT, /* Option < & str > */
	"granted" bool, /* Option < bool > */
	"legal_basis" TEXT DEFAULT 'consent', /* Option < & str > */
	"expires_at" timestamp with time zone DEFAULT NULL /* Option < TimestampWithTimeZone > */
) RETURNS bool /* Option < bool > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_consent_set_wrapper';

CREATE  FUNCTION "vault_consents"(
	"token" uuid /* Uuid */
) RETURNS TABLE (
	"purpose" TEXT,  /* String */
	"granted" bool,  /* bool */
	"legal_basis" TEXT,  /* String */
	"given_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"expires_at" timestamp with time zone  /* Option < TimestampWithTimeZone > */
)
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_consents_wrapper';

CREATE  FUNCTION "vault_consent_history"(
	"token" uuid /* Uuid */
) RETURNS TABLE (
	"purpose" TEXT,  /* String */
	"granted" bool,  /* bool */
	"legal_basis" TEXT,  /* String */
	"given_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"expires_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"changed_at" timestamp with time zone  /* Option < TimestampWithTimeZone > */
)
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_consent_history_wrapper';

CREATE  FUNCTION "vault_subject_export"(
	"token" uuid /* Uuid */
) RETURNS jsonb /* Option < JsonbDatum > */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_subject_export_wrapper';

-- The record's life cycle: expiry (writer); restore and erasure (admin).
REVOKE ALL ON FUNCTION vault_store(jsonb, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_store(jsonb, timestamptz) TO pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_set_expiry(uuid, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_set_expiry(uuid, timestamptz) TO pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_restore(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_restore(uuid) TO pii_vault_admin;

REVOKE ALL ON FUNCTION vault_erase(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_erase(uuid) TO pii_vault_admin;

-- Shares: made and revoked by writers, read by a partner-facing service
-- holding pii_vault_share_reader (which may call nothing else) and by
-- every role that may read records.
REVOKE ALL ON FUNCTION vault_share(uuid, text[], interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_share(uuid, text[], interval) TO pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_get_shared(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_get_shared(uuid)
    TO pii_vault_share_reader, pii_vault_reader, pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_unshare(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_unshare(uuid) TO pii_vault_writer, pii_vault_admin;

-- Sessions and applications' data (writers; reading app data, readers too).
REVOKE ALL ON FUNCTION vault_session_store(jsonb, interval, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_session_store(jsonb, interval, uuid) TO pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_session_get(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_session_get(uuid) TO pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_session_delete(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_session_delete(uuid) TO pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_sessions(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_sessions(uuid) TO pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_appdata_set(uuid, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_appdata_set(uuid, text, jsonb) TO pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_appdata_get(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_appdata_get(uuid, text) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_appdata_delete(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_appdata_delete(uuid, text) TO pii_vault_writer, pii_vault_admin;

-- Consents: set by writers, read by readers.
REVOKE ALL ON FUNCTION vault_consent_set(uuid, text, boolean, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_consent_set(uuid, text, boolean, text, timestamptz) TO pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_consents(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_consents(uuid) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_consent_history(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_consent_history(uuid) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;

-- The history of consents goes only with its record (erasure, purge).
CREATE FUNCTION pii_vault.consent_history_append_only() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT FROM pii_vault.records WHERE token = OLD.token) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'pii_vault: the consent history is append-only; it goes only with its record'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
REVOKE ALL ON FUNCTION pii_vault.consent_history_append_only() FROM PUBLIC;
CREATE TRIGGER consent_history_append_only BEFORE UPDATE OR DELETE ON pii_vault.consent_history
    FOR EACH ROW EXECUTE FUNCTION pii_vault.consent_history_append_only();
CREATE TRIGGER consent_history_no_truncate BEFORE TRUNCATE ON pii_vault.consent_history
    FOR EACH STATEMENT EXECUTE FUNCTION pii_vault.consent_history_append_only();

-- Shares and consents are written only through the vault's functions
-- (which run as the extension's owner): a member of pg_write_all_data
-- could otherwise widen every share's fields or lifetime, or forge a
-- consent or its history, without reading a row. Superusers (a restore,
-- the purge worker) pass; they are out of the vault's reach anyway.
CREATE FUNCTION pii_vault.guard_vault_writes() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_user <> (SELECT pg_catalog.pg_get_userbyid(e.extowner) FROM pg_catalog.pg_extension e
                        WHERE e.extname = 'pii_vault')
       AND NOT (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'pii_vault: % of %.% only through the vault''s functions', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END
$$;
REVOKE ALL ON FUNCTION pii_vault.guard_vault_writes() FROM PUBLIC;
CREATE TRIGGER shares_guard_vault_writes BEFORE INSERT OR UPDATE OR DELETE ON pii_vault.shares
    FOR EACH ROW EXECUTE FUNCTION pii_vault.guard_vault_writes();
CREATE TRIGGER consents_guard_vault_writes BEFORE INSERT OR UPDATE OR DELETE ON pii_vault.consents
    FOR EACH ROW EXECUTE FUNCTION pii_vault.guard_vault_writes();
CREATE TRIGGER consent_history_guard_vault_writes BEFORE INSERT ON pii_vault.consent_history
    FOR EACH ROW EXECUTE FUNCTION pii_vault.guard_vault_writes();

-- The right of access: everything about one subject (admin).
REVOKE ALL ON FUNCTION vault_subject_export(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_subject_export(uuid) TO pii_vault_admin;
