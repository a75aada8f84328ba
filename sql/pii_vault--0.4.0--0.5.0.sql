-- pii_vault 0.4.0 -> 0.5.0: shards. Tokens carry the shard they were
-- minted on (vault_shard_of, pure), identifiers are routed by their blind
-- index (vault_shard_for), and a proxy charges and audits routed calls
-- where its statement runs (vault_route). The settings
-- pii_vault.shards, shard, shard_key and routing_key_version are read at
-- server start; with shards = 1 (the default) the vault behaves as 0.4.0
-- did. No stored row changes: a 0.4.0 vault's tokens are all shard 0's.
-- Leaves exactly what a fresh install of 0.5.0 has (pg_test/day_two.sh
-- compares the two).
\echo Use "ALTER EXTENSION pii_vault UPDATE TO '0.5.0'" to load this file. \quit

CREATE FUNCTION "vault_shard_of"(
	"token" uuid /* Uuid */
) RETURNS INT /* i32 */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_shard_of_wrapper';

CREATE FUNCTION "vault_shard_for"(
	"kind" TEXT, /* & str */
	"value" TEXT /* & str */
) RETURNS INT /* i32 */
STRICT STABLE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_shard_for_wrapper';

CREATE FUNCTION "vault_route"(
	"shard" INT, /* Option < i32 > */
	"operation" TEXT, /* Option < & str > */
	"token" uuid DEFAULT NULL, /* Option < Uuid > */
	"record" jsonb DEFAULT NULL /* Option < JsonbDatum > */
) RETURNS SETOF INT /* i32 */
VOLATILE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_route_wrapper';

REVOKE ALL ON FUNCTION vault_shard_of(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_shard_of(uuid)
    TO pii_vault_share_reader, pii_vault_reader, pii_vault_writer, pii_vault_auditor, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_shard_for(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_shard_for(text, text) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_route(integer, text, uuid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_route(integer, text, uuid, jsonb)
    TO pii_vault_share_reader, pii_vault_reader, pii_vault_writer, pii_vault_auditor, pii_vault_admin;
