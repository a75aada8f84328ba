-- pii_vault 0.3.2 -> 0.4.0: replicas. A hot standby's audit keeper keeps
-- the events of the reads it serves and its forwarder sends them to the
-- primary (vault_audit_forward, for members of the new group role
-- pii_vault_forwarder), which writes them into its one audit chain naming
-- the standby (the audit's new server column) and remembers the last
-- frame it took from each standby (pii_vault.forwarded). Leaves exactly
-- what a fresh install of 0.4.0 has (pg_test/day_two.sh compares the
-- two). No stored row changes format: 0.4.0 reads the audit batches of
-- every earlier release (their server is NULL: the primary's).
\echo Use "ALTER EXTENSION pii_vault UPDATE TO '0.4.0'" to load this file. \quit

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pii_vault_forwarder') THEN
        CREATE ROLE pii_vault_forwarder NOLOGIN;
    END IF;
END
$$;

CREATE TABLE pii_vault.forwarded (
    origin      uuid        PRIMARY KEY,
    server      text        NOT NULL,
    last_frame  bigint      NOT NULL,
    events      bigint      NOT NULL,
    received_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
REVOKE ALL ON pii_vault.forwarded FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pii_vault.forwarded', '');
CREATE TRIGGER forwarded_storage_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pii_vault.forwarded
    FOR EACH STATEMENT EXECUTE FUNCTION pii_vault.storage_guard();

-- The audit's rows gain server (at the end, so a backend still running
-- 0.3.2's declaration reads them as before).
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
	"purpose" TEXT,  /* Option < String > */
	"calling_role" TEXT,  /* String */
	"calls" bigint,  /* i64 */
	"server" TEXT  /* Option < String > */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_events_wrapper';

-- calling_role is the role whose rights called the vault: the owner of a
-- SECURITY DEFINER function around the call, else acting_role. calls is
-- how many calls the event stands for: 1, or more for failed calls of one
-- statement and second folded into one event (src/audit/mod.rs). server
-- is the standby that served the call (its events forwarded here), NULL
-- for calls this primary served.
CREATE VIEW pii_vault.audit_log AS
SELECT e.id, e.at, e.session_role::name AS session_role, e.acting_role::name AS acting_role,
       e.application_name, e.operation, e.token, e.fields, e.outcome, e.purpose,
       e.calling_role::name AS calling_role, e.calls, e.server
FROM pii_vault.audit_batches AS b
CROSS JOIN LATERAL pii_vault.audit_events(b.first_id, b.events) AS e;
REVOKE ALL ON pii_vault.audit_log FROM PUBLIC;
REVOKE ALL ON FUNCTION pii_vault.audit_events(bigint, bytea) FROM PUBLIC;

CREATE FUNCTION vault_audit(for_token uuid)
RETURNS TABLE (id bigint, at timestamptz, session_role name, "current_role" name, application_name text,
               operation text, token uuid, fields text[], outcome text, purpose text, calling_role name,
               calls bigint, server text)
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
               e.operation, e.token, e.fields, e.outcome, e.purpose, e.calling_role::name, e.calls, e.server
        FROM pii_vault.audit_batches AS b
        CROSS JOIN LATERAL pii_vault.audit_events(b.first_id, b.events) AS e
        WHERE pii_vault.audit_batch_may_name(b.token_filter, for_token) AND e.token = for_token
        ORDER BY e.id;
END
$$;
REVOKE ALL ON FUNCTION vault_audit(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_audit(uuid) TO pii_vault_auditor, pii_vault_admin;

-- A standby's forwarder hands its kept events to the primary, and may do
-- nothing else.
CREATE  FUNCTION "vault_audit_forward"(
	"frames" bytea /* & [u8] */
) RETURNS bigint /* i64 */
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_audit_forward_wrapper';
REVOKE ALL ON FUNCTION vault_audit_forward(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_audit_forward(bytea) TO pii_vault_forwarder;

-- Sessions open across the update read the new release (and with it the
-- forwarded table) when a relcache invalidation names one of the vault's
-- relations: this changes nothing else.
ALTER TABLE pii_vault.records ALTER COLUMN token SET STATISTICS -1;
