-- pii_vault roles and grants: run after every function exists.

-- A vault cannot be created without a key, nor outside pii_vault.database.
-- Its key check values are stored by its first call, not here, so a
-- restore (CREATE EXTENSION, then the dump's data) finds only the dump's.
SELECT pii_vault.install_key_check();

-- Group roles (NOLOGIN). Created when missing, never dropped by the
-- extension: they are cluster-wide and the DBA grants them to login roles.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pii_vault_reader', 'pii_vault_writer', 'pii_vault_auditor', 'pii_vault_admin',
                             'pii_vault_share_reader', 'pii_vault_forwarder'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;

-- Internal functions: nobody but the owner.
REVOKE ALL ON FUNCTION pii_vault.install_key_check() FROM PUBLIC;
REVOKE ALL ON FUNCTION pii_vault.audit_read_note(uuid) FROM PUBLIC;
REVOKE ALL ON FUNCTION pii_vault.audit_wait(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION pii_vault.refold_lookup_values() FROM PUBLIC;

-- The audit, one row per event, decoded from the writer's batches. Like
-- the tables, granted to nobody: auditors read it through vault_audit().
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
REVOKE ALL ON FUNCTION pii_vault.audit_batch_may_name(bytea, uuid) FROM PUBLIC;

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

-- The audit of one token, for auditors and admins (no PII in it).
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

REVOKE ALL ON FUNCTION vault_audit_verify() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_audit_verify() TO pii_vault_auditor, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_health() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_health() TO pii_vault_auditor, pii_vault_admin;

-- A standby's audit forwarder hands its kept events to the primary, and
-- may do nothing else: the group role its login role is a member of.
REVOKE ALL ON FUNCTION vault_audit_forward(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_audit_forward(bytea) TO pii_vault_forwarder;

-- Monitoring: counters and gauges, no vault data; PostgreSQL's own
-- monitoring role too, so an exporter needs no vault role.
REVOKE ALL ON FUNCTION vault_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_stats() TO pg_monitor, pii_vault_auditor, pii_vault_admin;

-- Bulk export: admins only, and only while pii_vault.allow_bulk_export is on.
REVOKE ALL ON FUNCTION vault_export_all() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_export_all() TO pii_vault_admin;

-- Reading: one record at a time, by token or by lookup value.
REVOKE ALL ON FUNCTION vault_get(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_get(uuid) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_get(uuid, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_get(uuid, text[]) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_lookup(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_lookup(text, text) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_normalize(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_normalize(text, text) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;

-- Writing.
REVOKE ALL ON FUNCTION vault_store(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_store(jsonb) TO pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_update(uuid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_update(uuid, jsonb) TO pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_delete(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_delete(uuid) TO pii_vault_writer, pii_vault_admin;

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

-- Shards (README, "Shards"): every role that reaches records through a
-- proxy routes by token; readers route identifiers; vault_route charges
-- and audits the caller's own calls, so any vault role may call it.
REVOKE ALL ON FUNCTION vault_shard_of(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_shard_of(uuid)
    TO pii_vault_share_reader, pii_vault_reader, pii_vault_writer, pii_vault_auditor, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_shard_for(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_shard_for(text, text) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_route(integer, text, uuid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_route(integer, text, uuid, jsonb)
    TO pii_vault_share_reader, pii_vault_reader, pii_vault_writer, pii_vault_auditor, pii_vault_admin;

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

-- Every table of the vault is written only by the vault's own code (its
-- functions run as the extension's owner, a superuser; so do its workers
-- and a restore): one check per statement (src/api/storage_guards.rs). A
-- member of pg_write_all_data could otherwise stop the vault with one
-- UPDATE of key_check, widen every share's fields or lifetime, forge a
-- consent, or undo a delete, without reading a row.
REVOKE ALL ON FUNCTION pii_vault.storage_guard() FROM PUBLIC;
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['records', 'key_check', 'audit_batches', 'audit_anchor', 'shares', 'sessions',
                             'app_data', 'consents', 'consent_history', 'forwarded', 'field_tokens'] LOOP
        EXECUTE pg_catalog.format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON pii_vault.%I '
                                  'FOR EACH STATEMENT EXECUTE FUNCTION pii_vault.storage_guard()',
                                  t || '_storage_guard', t);
    END LOOP;
END
$$;

-- The right of access: everything about one subject (admin).
REVOKE ALL ON FUNCTION vault_subject_export(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_subject_export(uuid) TO pii_vault_admin;

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

REVOKE ALL ON FUNCTION vault_audit_prune(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_audit_prune(timestamptz) TO pii_vault_admin;
