-- pii_vault 0.3.0 -> 0.3.1: containment II. The audit names the role
-- whose rights called the vault (a SECURITY DEFINER wrapper's owner) and
-- folds a statement's failed calls of one second into one event with a
-- count; every table of the vault refuses changes but the vault's own;
-- the consent history's ids no longer come from a sequence; emails and
-- logins are folded to one identity (NFKC_Casefold, mixed scripts
-- refused), and the records stored before are re-indexed (the last step).
-- Leaves exactly what a fresh install of 0.3.1 has (pg_test/day_two.sh
-- compares the two). No stored row changes format: 0.3.1 reads the audit
-- batches of every earlier release (their calling role is their acting
-- role, their count 1).
\echo Use "ALTER EXTENSION pii_vault UPDATE TO '0.3.1'" to load this file. \quit

-- The audit's rows gain calling_role and calls (at the end, so a backend
-- still running 0.3.0's declaration reads them as before).
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
	"calls" bigint  /* i64 */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'audit_events_wrapper';

-- calling_role is the role whose rights called the vault: the owner of a
-- SECURITY DEFINER function around the call, else acting_role. calls is
-- how many calls the event stands for: 1, or more for failed calls of one
-- statement and second folded into one event (src/audit/mod.rs).
CREATE VIEW pii_vault.audit_log AS
SELECT e.id, e.at, e.session_role::name AS session_role, e.acting_role::name AS acting_role,
       e.application_name, e.operation, e.token, e.fields, e.outcome, e.purpose,
       e.calling_role::name AS calling_role, e.calls
FROM pii_vault.audit_batches AS b
CROSS JOIN LATERAL pii_vault.audit_events(b.first_id, b.events) AS e;
REVOKE ALL ON pii_vault.audit_log FROM PUBLIC;
REVOKE ALL ON FUNCTION pii_vault.audit_events(bigint, bytea) FROM PUBLIC;

CREATE FUNCTION vault_audit(for_token uuid)
RETURNS TABLE (id bigint, at timestamptz, session_role name, "current_role" name, application_name text,
               operation text, token uuid, fields text[], outcome text, purpose text, calling_role name,
               calls bigint)
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
               e.operation, e.token, e.fields, e.outcome, e.purpose, e.calling_role::name, e.calls
        FROM pii_vault.audit_batches AS b
        CROSS JOIN LATERAL pii_vault.audit_events(b.first_id, b.events) AS e
        WHERE pii_vault.audit_batch_may_name(b.token_filter, for_token) AND e.token = for_token
        ORDER BY e.id;
END
$$;
REVOKE ALL ON FUNCTION vault_audit(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_audit(uuid) TO pii_vault_auditor, pii_vault_admin;

-- Every table is written only by the vault's own code: one check per
-- statement, replacing 0.3.0's row triggers on shares and consents.
DROP TRIGGER shares_guard_vault_writes ON pii_vault.shares;
DROP TRIGGER consents_guard_vault_writes ON pii_vault.consents;
DROP TRIGGER consent_history_guard_vault_writes ON pii_vault.consent_history;
DROP FUNCTION pii_vault.guard_vault_writes();
CREATE FUNCTION pii_vault."storage_guard"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'storage_guard_wrapper';
REVOKE ALL ON FUNCTION pii_vault.storage_guard() FROM PUBLIC;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['records', 'key_check', 'audit_batches', 'audit_anchor', 'shares', 'sessions',
                             'app_data', 'consents', 'consent_history'] LOOP
        EXECUTE pg_catalog.format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pii_vault.%I '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION pii_vault.storage_guard()',
                                  t || '_storage_guard', t);
    END LOOP;
END
$$;

-- The consent history's ids come from the clock (see sql/storage.sql), not
-- from a sequence a member of pg_write_all_data could setval to its end;
-- the ids already given are all smaller, so the order of changes holds.
-- Out of the extension first, so it leaves the list pg_dump reads too.
ALTER EXTENSION pii_vault DROP SEQUENCE pii_vault.consent_history_id_seq;
ALTER TABLE pii_vault.consent_history ALTER COLUMN id DROP IDENTITY;
ALTER TABLE pii_vault.consent_history ALTER COLUMN id
    SET DEFAULT (pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) * 1000000)::bigint << 10
                 | pg_catalog.floor(pg_catalog.random() * 1024)::bigint);

-- Emails' local parts and logins index under their identity from 0.3.1
-- on: a look-alike stored before (`ａｄｍｉｎ`) is re-indexed as what it
-- looks like (`admin`), in this transaction, with the vault's key (which
-- every upgrade has: the extension is loaded at server start). A record
-- that cannot be (its value mixes scripts, or another record holds its
-- new identity) keeps its index entries and is named by token in a
-- WARNING. Decrypts each record with an email or login once: about as
-- long as a vault_rotate pass over them.
CREATE  FUNCTION pii_vault."refold_lookup_values"() RETURNS bigint /* i64 */
STRICT VOLATILE
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'refold_lookup_values_wrapper';
REVOKE ALL ON FUNCTION pii_vault.refold_lookup_values() FROM PUBLIC;
SELECT pii_vault.refold_lookup_values();
