-- pii_vault 0.1.0 -> 0.2.0: versioned keys and rotation, audit pruning
-- and anchors, restore and drop guards, vault_normalize. Leaves exactly
-- what a fresh install of 0.2.0 has (pg_test/sql/upgrade_keeps_everything.sql
-- compares the two). Records and audit batches keep their format: 0.2.0
-- reads both formats of envelope and audit batch.
\echo Use "ALTER EXTENSION pii_vault UPDATE TO '0.2.0'" to load this file. \quit

-- Several key check values of one version may meet (see sql/storage.sql).
ALTER TABLE pii_vault.key_check DROP CONSTRAINT key_check_pkey;
ALTER TABLE pii_vault.key_check ALTER COLUMN key_version SET NOT NULL;
-- Values stored before carry none (NULL): this vault's id from then on.
ALTER TABLE pii_vault.key_check ADD COLUMN vault_id uuid;

-- Where the audit's chain starts once old batches are pruned, and a
-- digest vouching for the batches MACed under key versions since retired;
-- MACed under the version it names (src/crypto/audit_chain.rs). At most
-- one row.
CREATE TABLE pii_vault.audit_anchor (
    single        boolean     PRIMARY KEY DEFAULT true CHECK (single),
    start_id      bigint      NOT NULL,
    start_mac     bytea       NOT NULL,
    sealed_upto   bigint      NOT NULL,
    sealed_digest bytea       NOT NULL,
    key_version   integer     NOT NULL,
    mac           bytea       NOT NULL,
    written_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);

REVOKE ALL ON pii_vault.audit_anchor FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('pii_vault.key_check', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.audit_anchor', '');

-- Functions new in 0.2.0, as the 0.2.0 install script creates them.
CREATE  FUNCTION "vault_normalize"(
	"kind" TEXT, /* & str */
	"value" TEXT /* & str */
) RETURNS TEXT /* String */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_normalize_wrapper';

CREATE  FUNCTION "vault_key_versions"() RETURNS TABLE (
	"key_version" INT,  /* i32 */
	"loaded" bool,  /* bool */
	"active" bool,  /* bool */
	"records" bigint  /* i64 */
)
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_key_versions_wrapper';

CREATE  FUNCTION "vault_rotate_batch"(
	"batch_size" INT, /* i32 */
	"restart" bool /* bool */
) RETURNS TABLE (
	"rotated" bigint,  /* i64 */
	"remaining" bigint,  /* i64 */
	"done" bool  /* bool */
)
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_rotate_batch_wrapper';

CREATE  FUNCTION "vault_audit_prune"(
	"before" timestamp with time zone /* pgrx :: datum :: TimestampWithTimeZone */
) RETURNS bigint /* i64 */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_audit_prune_wrapper';

CREATE FUNCTION pii_vault."audit_append_only"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'audit_append_only_wrapper';

CREATE FUNCTION pii_vault."key_check_changed"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'key_check_changed_wrapper';

CREATE FUNCTION pii_vault."audit_batches_restore_guard"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'audit_batches_restore_guard_wrapper';

-- Added to 0.1.0's library after its release: grants as in a fresh install.
REVOKE ALL ON FUNCTION vault_normalize(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_normalize(text, text) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;

-- A dump's audit goes only into a vault that keeps none of its own.
REVOKE ALL ON FUNCTION pii_vault.audit_batches_restore_guard() FROM PUBLIC;
CREATE TRIGGER audit_batches_restore_guard BEFORE INSERT ON pii_vault.audit_batches
    FOR EACH ROW EXECUTE FUNCTION pii_vault.audit_batches_restore_guard();

-- The audit is append-only: only the audit writer adds batches, only
-- vault_audit_prune removes them (and re-anchors), whoever else tries.
REVOKE ALL ON FUNCTION pii_vault.audit_append_only() FROM PUBLIC;
CREATE TRIGGER audit_batches_append_only BEFORE UPDATE OR DELETE ON pii_vault.audit_batches
    FOR EACH ROW EXECUTE FUNCTION pii_vault.audit_append_only();
CREATE TRIGGER audit_batches_no_truncate BEFORE TRUNCATE ON pii_vault.audit_batches
    FOR EACH STATEMENT EXECUTE FUNCTION pii_vault.audit_append_only();
CREATE TRIGGER audit_anchor_append_only BEFORE UPDATE OR DELETE ON pii_vault.audit_anchor
    FOR EACH ROW EXECUTE FUNCTION pii_vault.audit_append_only();
CREATE TRIGGER audit_anchor_no_truncate BEFORE TRUNCATE ON pii_vault.audit_anchor
    FOR EACH STATEMENT EXECUTE FUNCTION pii_vault.audit_append_only();

-- Every session judges the loaded keys again once the key check values
-- change (a restore appends the dump's).
REVOKE ALL ON FUNCTION pii_vault.key_check_changed() FROM PUBLIC;
CREATE TRIGGER key_check_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pii_vault.key_check
    FOR EACH STATEMENT EXECUTE FUNCTION pii_vault.key_check_changed();

-- Keys over time (admin; the auditor may see which versions are in use).
REVOKE ALL ON FUNCTION vault_key_versions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_key_versions() TO pii_vault_auditor, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_rotate_batch(integer, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_rotate_batch(integer, boolean) TO pii_vault_admin;

-- Moves every record to the active key version, one committed batch at a
-- time, pausing after each so the application keeps most of the machine
-- (bench/run.sh --rotation; '0' rotates at full speed, for a maintenance
-- window). PostgreSQL refuses COMMIT in a SECURITY DEFINER procedure and in
-- one with a SET clause, so this runs as its caller and names everything
-- by schema; each batch is the SECURITY DEFINER vault_rotate_batch.
CREATE PROCEDURE vault_rotate(batch_size integer DEFAULT 1000, pause interval DEFAULT '250 milliseconds')
LANGUAGE plpgsql
AS $$
DECLARE
    step record;
    restart boolean := true;
BEGIN
    LOOP
        SELECT * INTO STRICT step FROM @extschema@.vault_rotate_batch(batch_size, restart);
        COMMIT;
        EXIT WHEN step.done;
        restart := false;
        PERFORM pg_catalog.pg_sleep(pg_catalog.date_part('epoch', pause));
    END LOOP;
END
$$;
REVOKE ALL ON PROCEDURE vault_rotate(integer, interval) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE vault_rotate(integer, interval) TO pii_vault_admin;

REVOKE ALL ON FUNCTION vault_audit_prune(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_audit_prune(timestamptz) TO pii_vault_admin;
