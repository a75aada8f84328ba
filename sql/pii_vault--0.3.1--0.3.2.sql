-- pii_vault 0.3.1 -> 0.3.2: vault_stats() for monitoring. No storage
-- change (0.3.2 maps to the schema of 0.3.0 and 0.3.1); the audit writer
-- keeps what it cannot write at a shutdown in a file under PGDATA, which
-- needs nothing from SQL. Leaves exactly what a fresh install of 0.3.2
-- has (pg_test/day_two.sh compares the two).
\echo Use "ALTER EXTENSION pii_vault UPDATE TO '0.3.2'" to load this file. \quit

-- Counters and gauges from shared memory and the catalogs: no record, no
-- token, no XID, no audit event; for pg_monitor and the vault's auditors.
CREATE FUNCTION "vault_stats"() RETURNS TABLE (
	"metric" TEXT,  /* String */
	"labels" jsonb,  /* JsonB */
	"value" bigint  /* i64 */
)
STRICT VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_stats_wrapper';

REVOKE ALL ON FUNCTION vault_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_stats() TO pg_monitor, pii_vault_auditor, pii_vault_admin;
