-- vault_audit_prune(before) lets the audit stop growing: it removes whole
-- batches older than `before` and leaves an anchor MACed under the active
-- key, so vault_audit_verify() stays ok; a batch removed from the middle
-- later, or an edited anchor, is still caught, and an audit that does not
-- verify is not pruned (that would erase the evidence).
\set ECHO none
\ir common/setup.sql
\set ECHO all
SELECT vault_store('{"name": "prune target"}') AS target \gset
-- Events younger than pii_vault.audit_retention_days (30) are never
-- pruned, and only a superuser can lower it: an admin cannot erase the
-- audit of their own recent calls.
CREATE ROLE prune_admin IN ROLE pii_vault_admin;
SET ROLE prune_admin;
SELECT try_sql('SET pii_vault.audit_retention_days = 0') AS admin_lowers_retention;
SELECT vault_audit_prune(now() + interval '1 hour') AS admin_removed;
RESET ROLE;
DROP ROLE prune_admin;
-- This suite prunes what it has just written: no floor.
SET pii_vault.audit_retention_days = 0;
SELECT vault_get(:'target') IS NOT NULL AS read, pii_vault.audit_wait() AS written;
SELECT vault_get(:'target') IS NOT NULL AS read, pii_vault.audit_wait() AS written;
SELECT vault_get(:'target') IS NOT NULL AS read, pii_vault.audit_wait() AS written;
SELECT count(*) >= 4 AS batches_before FROM pii_vault.audit_batches;
SELECT ok FROM vault_audit_verify();

-- Only admins prune.
SET ROLE app_writer;
SELECT try_sql('SELECT vault_audit_prune(now())') AS writer_prunes;
RESET ROLE;

-- An audit that does not verify is not pruned: nothing is removed.
SELECT pii_vault.audit_wait() AS written;
SET session_replication_role = replica; -- the attacker's edits (see audit_tamper_evidence)
CREATE TEMP TABLE second AS SELECT * FROM pii_vault.audit_batches ORDER BY first_id OFFSET 1 LIMIT 1;
UPDATE pii_vault.audit_batches SET mac = '\x00' WHERE first_id = (SELECT first_id FROM second);
SELECT count(*) AS batches, min(first_id) AS first_batch FROM pii_vault.audit_batches \gset
SELECT regexp_replace(try_sql('SELECT vault_audit_prune(now() + interval ''1 hour'')'), 'event [0-9]+', 'event N') AS prune_tampered;
SELECT count(*) >= :batches AND min(first_id) = :first_batch AS nothing_removed FROM pii_vault.audit_batches;
UPDATE pii_vault.audit_batches a SET mac = s.mac FROM second s WHERE a.first_id = s.first_id;
SELECT ok FROM vault_audit_verify();
-- Pruning itself runs with every trigger on, as it does for a DBA.
RESET session_replication_role;

-- Prune everything older than an hour from now: every batch but the newest.
SELECT pii_vault.audit_wait() AS written;
SELECT count(*) AS events_before FROM pii_vault.audit_log \gset
SELECT vault_audit_prune(now() + interval '1 hour') AS removed \gset
SELECT :removed > 0 AS removed_some, :removed <= :events_before AS removed_at_most_all;
SELECT count(*) FILTER (WHERE last_id <= (SELECT start_id FROM pii_vault.audit_anchor)) AS pruned_batches_left,
       min(first_id) = (SELECT start_id + 1 FROM pii_vault.audit_anchor) AS chain_starts_after_the_anchor
FROM pii_vault.audit_batches;
SELECT start_id > 0 AS anchored, key_version FROM pii_vault.audit_anchor;
SELECT ok, rows_checked > 0 AS checked FROM vault_audit_verify();
-- Pruning again right away removes nothing more (the newest batch stays).
SELECT vault_audit_prune(now() - interval '1 hour') AS removed_again;
-- The prune itself is audited.
SELECT pii_vault.audit_wait() AS written;
SELECT count(*) > 0 AS prune_audited FROM pii_vault.audit_log WHERE operation = 'audit_prune' AND outcome = 'ok';

-- New batches chain on from the anchor. (From here on the attacker's
-- edits again, with the append-only triggers switched off.)
SET session_replication_role = replica;
SELECT vault_get(:'target') IS NOT NULL AS read, pii_vault.audit_wait() AS written;
SELECT vault_get(:'target') IS NOT NULL AS read, pii_vault.audit_wait() AS written;
SELECT vault_get(:'target') IS NOT NULL AS read, pii_vault.audit_wait() AS written;
SELECT ok FROM vault_audit_verify();

-- A batch removed from the middle after pruning: caught.
CREATE TEMP TABLE middle AS SELECT * FROM pii_vault.audit_batches ORDER BY first_id OFFSET 1 LIMIT 1;
DELETE FROM pii_vault.audit_batches WHERE first_id = (SELECT first_id FROM middle);
SELECT ok, first_bad_id = (SELECT first_id FROM middle) AS names_the_batch FROM vault_audit_verify();
INSERT INTO pii_vault.audit_batches SELECT * FROM middle;
SELECT ok FROM vault_audit_verify();

-- The first batch after the anchor removed (the anchor then points past
-- a gap): caught.
CREATE TEMP TABLE first_kept AS SELECT * FROM pii_vault.audit_batches ORDER BY first_id LIMIT 1;
DELETE FROM pii_vault.audit_batches WHERE first_id = (SELECT first_id FROM first_kept);
SELECT ok FROM vault_audit_verify();
INSERT INTO pii_vault.audit_batches SELECT * FROM first_kept;

-- The anchor edited (moved forward to hide the next batch) or removed:
-- caught.
CREATE TEMP TABLE anchor AS SELECT * FROM pii_vault.audit_anchor;
UPDATE pii_vault.audit_anchor SET start_id = start_id + 1;
SELECT ok FROM vault_audit_verify();
DELETE FROM pii_vault.audit_anchor;
SELECT ok, first_bad_id AS first_bad FROM vault_audit_verify();
INSERT INTO pii_vault.audit_anchor SELECT * FROM anchor;
SELECT ok FROM vault_audit_verify();

-- The audit is append-only for everyone but the audit writer and
-- vault_audit_prune: a member of pg_write_all_data cannot delete, edit,
-- renumber or truncate batches, nor touch the anchor.
RESET session_replication_role;
CREATE ROLE audit_editor IN ROLE pg_write_all_data, pg_read_all_data;
SET ROLE audit_editor;
SELECT try_sql('DELETE FROM pii_vault.audit_batches') AS delete_batches;
SELECT try_sql('UPDATE pii_vault.audit_batches SET first_id = first_id + 1000000') AS renumber_batches;
SELECT try_sql('TRUNCATE pii_vault.audit_batches') AS truncate_batches;
SELECT try_sql('DELETE FROM pii_vault.audit_anchor') AS delete_anchor;
SELECT try_sql('TRUNCATE pii_vault.audit_anchor') AS truncate_anchor;
RESET ROLE;
DROP ROLE audit_editor;
SELECT ok FROM vault_audit_verify();
