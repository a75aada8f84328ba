-- pii_vault 0.5.0 -> 0.6.0: field tokens (single values tokenized in the
-- application's own tables: vault_tokenize, vault_detokenize,
-- vault_token_delete, vault_field_token_id), calls on many records
-- (vault_get_many, vault_lookup_many, vault_store_many), RFC 6902 JSON
-- Patch (vault_patch), and moving a table in (CALL vault_migrate). One
-- new table, pii_vault.field_tokens; no stored row changes. Leaves
-- exactly what a fresh install of 0.6.0 has (pg_test/day_two.sh compares
-- the two).
\echo Use "ALTER EXTENSION pii_vault UPDATE TO '0.6.0'" to load this file. \quit

-- Field tokens: single values (a card number, an IBAN, an email) sealed on
-- their own, the token kept in the application's table in the value's
-- place (vault_tokenize). field_token: as issued (a UUID's text, or a
-- card token's digits: its last four are the card's, the rest random,
-- failing the Luhn check); id: the token's id (vault_field_token_id: a
-- UUID token itself, a card token's digits encoded), one to one with it,
-- by which the vault finds the row and the audit names it; token: the
-- record (subject) it belongs to, if any. The envelope is bound to the field token, kind, record and expiry
-- (src/api/field_tokens.rs). value_hash: only for tokens issued
-- with dedup, the keyed hash of kind, record and normalized value under
-- key_version, so the same value gets the same token. Gone with their
-- record (erasure, purge); purged once expired.
CREATE TABLE pii_vault.field_tokens (
    id          uuid        PRIMARY KEY,
    field_token text        NOT NULL,
    kind        text        NOT NULL,
    envelope    bytea       NOT NULL,
    value_hash  bytea,
    key_version integer,
    token       uuid        REFERENCES pii_vault.records (token) ON DELETE CASCADE,
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE UNIQUE INDEX field_tokens_value_hash_key ON pii_vault.field_tokens (value_hash) WHERE value_hash IS NOT NULL;
CREATE INDEX field_tokens_token ON pii_vault.field_tokens (token) WHERE token IS NOT NULL;
CREATE INDEX field_tokens_expires_at ON pii_vault.field_tokens (expires_at) WHERE expires_at IS NOT NULL;
ALTER TABLE pii_vault.field_tokens ALTER COLUMN envelope SET STORAGE EXTERNAL;
REVOKE ALL ON pii_vault.field_tokens FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pii_vault.field_tokens', '');
-- Written only by the vault's own code, as every table of the vault.
CREATE TRIGGER field_tokens_storage_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pii_vault.field_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION pii_vault.storage_guard();

CREATE FUNCTION "vault_tokenize"(
	"value" TEXT, /* Option < & str > */
	"kind" TEXT DEFAULT 'text', /* Option < & str > */
	"record" uuid DEFAULT NULL, /* Option < Uuid > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"dedup" bool DEFAULT false /* Option < bool > */
) RETURNS TEXT /* Option < String > */
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_tokenize_wrapper';

CREATE FUNCTION "vault_detokenize"(
	"token" TEXT /* & str */
) RETURNS TEXT /* Option < String > */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_detokenize_wrapper';

CREATE FUNCTION "vault_token_delete"(
	"token" TEXT /* & str */
) RETURNS bool /* bool */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_token_delete_wrapper';

CREATE FUNCTION "vault_field_token_id"(
	"token" TEXT /* & str */
) RETURNS uuid /* Option < Uuid > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_field_token_id_wrapper';

CREATE FUNCTION "vault_get_many"(
	"tokens" uuid[], /* :: std :: option :: Option < Vec < Option < Uuid > > > */
	"fields" TEXT[] DEFAULT NULL /* :: std :: option :: Option < Vec < Option < String > > > */
) RETURNS TABLE (
	"token" uuid,  /* Uuid */
	"record" jsonb  /* JsonbDatum */
)
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_get_many_wrapper';

CREATE FUNCTION "vault_lookup_many"(
	"kind" TEXT, /* & str */
	"values" TEXT[] /* Vec < Option < String > > */
) RETURNS TABLE (
	"value" TEXT,  /* String */
	"token" uuid  /* Uuid */
)
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_lookup_many_wrapper';

CREATE FUNCTION "vault_store_many"(
	"records" jsonb[], /* :: std :: option :: Option < Vec < Option < JsonbDatum > > > */
	"expires_at" timestamp with time zone DEFAULT NULL /* Option < TimestampWithTimeZone > */
) RETURNS TABLE (
	"ord" INT,  /* i32 */
	"token" uuid,  /* Option < Uuid > */
	"error" TEXT  /* Option < String > */
)
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_store_many_wrapper';

CREATE FUNCTION "vault_migrate_batch"(
	"records" jsonb[] /* :: std :: option :: Option < Vec < Option < JsonbDatum > > > */
) RETURNS TABLE (
	"ord" INT,  /* i32 */
	"token" uuid,  /* Option < Uuid > */
	"error" TEXT  /* Option < String > */
)
VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_migrate_batch_wrapper';

CREATE FUNCTION "vault_patch"(
	"token" uuid, /* Uuid */
	"ops" jsonb /* JsonbDatum */
) RETURNS bool /* bool */
STRICT VOLATILE SECURITY DEFINER
SET search_path TO pg_catalog, pii_vault, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'vault_patch_wrapper';

-- Field tokens: single values tokenized in the application's tables.
REVOKE ALL ON FUNCTION vault_tokenize(text, text, uuid, timestamptz, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_tokenize(text, text, uuid, timestamptz, boolean) TO pii_vault_writer, pii_vault_admin;
REVOKE ALL ON FUNCTION vault_detokenize(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_detokenize(text) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;
REVOKE ALL ON FUNCTION vault_token_delete(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_token_delete(text) TO pii_vault_writer, pii_vault_admin;
-- Pure (no key, no table): the id the audit names a field token by.
REVOKE ALL ON FUNCTION vault_field_token_id(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_field_token_id(text)
    TO pii_vault_reader, pii_vault_writer, pii_vault_auditor, pii_vault_admin;

-- Calls on many records: each element charged and audited as one call.
REVOKE ALL ON FUNCTION vault_get_many(uuid[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_get_many(uuid[], text[]) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;
REVOKE ALL ON FUNCTION vault_lookup_many(text, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_lookup_many(text, text[]) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;
REVOKE ALL ON FUNCTION vault_store_many(jsonb[], timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_store_many(jsonb[], timestamptz) TO pii_vault_writer, pii_vault_admin;
REVOKE ALL ON FUNCTION vault_patch(uuid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_patch(uuid, jsonb) TO pii_vault_writer, pii_vault_admin;
REVOKE ALL ON FUNCTION vault_migrate_batch(jsonb[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_migrate_batch(jsonb[]) TO pii_vault_admin;

-- Moves an application's table into the vault: the named columns of each
-- row become a record (its NULL columns left out), whose token is written
-- to token_column (a uuid column) as the columns are set to NULL, in
-- committed batches (each one SELECT ... FOR UPDATE of up to batch_size
-- rows, one vault_migrate_batch, one UPDATE, COMMIT), pausing after each
-- for half again as long as it took, so the application keeps most of the
-- machine. Resumable: a row whose token is set is done, so a CALL
-- cancelled or failed part-way is run again and moves the rest, each row
-- once. A row whose values are invalid, or taken by another record, is
-- left as it was and named in a NOTICE (its ctid and the error, never a
-- value). Runs as its caller (who must be able to read and update the
-- table), for the reason vault_rotate does.
CREATE PROCEDURE vault_migrate(tab regclass, token_column name, columns name[], batch_size integer DEFAULT 1000)
LANGUAGE plpgsql
AS $$
DECLARE
    after tid := '(0,0)';
    upto tid;
    span bigint;
    ids tid[];
    docs jsonb[];
    tokens uuid[];
    errors text[];
    moved bigint := 0;
    left_rows bigint := 0;
    started timestamptz;
    select_sql text;
    update_sql text;
    i integer;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 OR batch_size > 1000 THEN
        RAISE EXCEPTION 'pii_vault: batch_size must be between 1 and 1000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF columns IS NULL OR pg_catalog.cardinality(columns) = 0 OR token_column = ANY (columns) THEN
        RAISE EXCEPTION 'pii_vault: name the columns to move, other than the token column'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The procedure runs as its caller, an admin, and so would the table's
    -- triggers, rules, policies, defaults, constraints and index
    -- expressions: only its owner may migrate it, and only without enabled
    -- triggers, rules or forced row security (a writer's trigger would
    -- otherwise call the vault with the admin's rights). A partitioned table's
    -- partitions share ctids: each is migrated on its own.
    IF (SELECT c.relkind FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) tab) <> 'r' THEN
        RAISE EXCEPTION 'pii_vault: % is not a plain table (migrate each partition of a partitioned table on its own)', tab
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF (SELECT c.relowner FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) tab)
       OPERATOR(pg_catalog.<>) (CURRENT_USER::pg_catalog.text)::pg_catalog.regrole::pg_catalog.oid THEN
        RAISE EXCEPTION 'pii_vault: only the owner of % may migrate it', tab
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'vault_migrate runs the table''s triggers, defaults, constraints and index expressions with its caller''s rights: ALTER TABLE ... OWNER TO the admin who migrates it.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger AS t
               WHERE t.tgrelid OPERATOR(pg_catalog.=) tab AND NOT t.tgisinternal AND t.tgenabled <> 'D')
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_rewrite AS r WHERE r.ev_class OPERATOR(pg_catalog.=) tab)
       OR (SELECT c.relforcerowsecurity FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) tab) THEN
        RAISE EXCEPTION 'pii_vault: % has triggers, rules or row security, which vault_migrate would run with its caller''s rights', tab
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Drop or disable them (ALTER TABLE ... DISABLE TRIGGER USER, NO FORCE ROW LEVEL SECURITY) for the migration.';
    END IF;
    IF (SELECT a.atttypid FROM pg_catalog.pg_attribute AS a
        WHERE a.attrelid = tab AND a.attname = token_column AND a.attnum > 0 AND NOT a.attisdropped)
       IS DISTINCT FROM 'pg_catalog.uuid'::pg_catalog.regtype THEN
        RAISE EXCEPTION 'pii_vault: % must be a uuid column of %', token_column, tab
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    select_sql := pg_catalog.format(
        'SELECT pg_catalog.array_agg(b.ctid ORDER BY b.ctid), '
        '       pg_catalog.array_agg((SELECT pg_catalog.jsonb_object_agg(e.key, e.value) '
        '                             FROM pg_catalog.jsonb_each(b.doc) AS e '
        '                             WHERE e.value OPERATOR(pg_catalog.<>) ''null''::pg_catalog.jsonb) ORDER BY b.ctid) '
        'FROM (SELECT t.ctid, pg_catalog.jsonb_build_object(%s) AS doc FROM ONLY %s AS t '
        '      WHERE t.%I IS NULL AND (%s) AND t.ctid OPERATOR(pg_catalog.>) $1 AND t.ctid OPERATOR(pg_catalog.<) $3 '
        '      ORDER BY t.ctid LIMIT $2 FOR UPDATE OF t) AS b',
        (SELECT pg_catalog.string_agg(pg_catalog.format('%L, t.%I', c, c), ', ') FROM pg_catalog.unnest(columns) AS c),
        tab, token_column,
        (SELECT pg_catalog.string_agg(pg_catalog.format('t.%I IS NOT NULL', c), ' OR ') FROM pg_catalog.unnest(columns) AS c));
    update_sql := pg_catalog.format(
        'UPDATE ONLY %s AS t SET %I = m.token, %s '
        'FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.tid[]), pg_catalog.unnest($2::pg_catalog.uuid[])) AS m(id, token) '
        'WHERE t.ctid OPERATOR(pg_catalog.=) m.id AND m.token IS NOT NULL',
        tab, token_column,
        (SELECT pg_catalog.string_agg(pg_catalog.format('%I = NULL', c), ', ') FROM pg_catalog.unnest(columns) AS c));
    -- Each batch reads a range of pages (a TID range scan: never the whole
    -- table), about batch_size rows' worth; an empty range moves on to
    -- the next, until past the table's last page.
    span := pg_catalog.ceil(batch_size / GREATEST(1.0, (SELECT c.reltuples / GREATEST(c.relpages, 1)
                                                         FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) tab)))::bigint + 1;
    LOOP
        started := pg_catalog.clock_timestamp();
        upto := pg_catalog.format('(%s,0)', (after::pg_catalog.text::pg_catalog.point)[0]::bigint + span)::pg_catalog.tid;
        EXECUTE select_sql INTO ids, docs USING after, batch_size, upto;
        IF ids IS NULL THEN
            EXIT WHEN (upto::pg_catalog.text::pg_catalog.point)[0]
                      >= pg_catalog.pg_relation_size(tab) / pg_catalog.current_setting('block_size')::bigint;
            after := upto;
            CONTINUE;
        END IF;
        SELECT pg_catalog.array_agg(s.token ORDER BY s.ord), pg_catalog.array_agg(s.error ORDER BY s.ord)
          INTO tokens, errors
          FROM @extschema@.vault_migrate_batch(docs) AS s;
        EXECUTE update_sql USING ids, tokens;
        FOR i IN 1 .. pg_catalog.cardinality(ids) LOOP
            IF tokens[i] IS NULL THEN
                left_rows := left_rows + 1;
                RAISE NOTICE 'pii_vault: row % of % left as it was: %', ids[i], tab, errors[i];
            ELSE
                moved := moved + 1;
            END IF;
        END LOOP;
        after := ids[pg_catalog.cardinality(ids)];
        RAISE NOTICE 'pii_vault: % rows of % moved into the vault, % left', moved, tab, left_rows;
        COMMIT;
        PERFORM pg_catalog.pg_sleep(1.5 * pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - started));
    END LOOP;
END
$$;
REVOKE ALL ON PROCEDURE vault_migrate(regclass, name, name[], integer) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE vault_migrate(regclass, name, name[], integer) TO pii_vault_admin;
