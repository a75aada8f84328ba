-- Each audit row carries a MAC under the audit sub-key, chained to the
-- previous row. A superuser who edits, deletes, inserts or reorders rows is
-- caught by vault_audit_verify(). (A superuser is out of the vault's threat
-- model for reading, but the audit's tamper evidence holds against one.)
SELECT pii_vault.audit_wait() AS audit_written;
SELECT ok, rows_checked > 0 AS checked_rows, first_bad_id FROM vault_audit_verify();

-- Pick a row in the middle and keep a copy to put back.
SELECT id AS victim_id FROM pii_vault.audit_log ORDER BY id OFFSET 5 LIMIT 1 \gset
CREATE TEMP TABLE saved AS SELECT * FROM pii_vault.audit_log WHERE id = :victim_id;

-- Edited: the outcome of a read changed to hide it.
UPDATE pii_vault.audit_log SET outcome = 'not_found' WHERE id = :victim_id;
SELECT ok, first_bad_id = :victim_id AS names_the_row FROM vault_audit_verify();
UPDATE pii_vault.audit_log a SET outcome = s.outcome FROM saved s WHERE a.id = s.id;
SELECT ok FROM vault_audit_verify();

-- Edited: the acting role.
UPDATE pii_vault.audit_log SET acting_role = 'someone_else' WHERE id = :victim_id;
SELECT ok, first_bad_id = :victim_id AS names_the_row FROM vault_audit_verify();
UPDATE pii_vault.audit_log a SET acting_role = s.acting_role FROM saved s WHERE a.id = s.id;

-- Deleted.
DELETE FROM pii_vault.audit_log WHERE id = :victim_id;
SELECT ok, first_bad_id = :victim_id AS names_the_row FROM vault_audit_verify();
INSERT INTO pii_vault.audit_log SELECT * FROM saved;
SELECT ok FROM vault_audit_verify();

-- Inserted: a forged row (no key, so no valid MAC), placed far beyond the
-- rows the writer is still appending.
INSERT INTO pii_vault.audit_log (id, at, session_role, acting_role, application_name, operation, token, fields, outcome, mac)
VALUES (1000000000, now(), 'postgres', 'postgres', 'x', 'get', NULL, NULL, 'ok', '\x00');
SELECT ok, first_bad_id IS NOT NULL AS names_a_row FROM vault_audit_verify();
DELETE FROM pii_vault.audit_log WHERE id = 1000000000;
SELECT ok FROM vault_audit_verify();

-- Reordered: two rows swap their contents (ids stay in sequence).
CREATE TEMP TABLE pair AS SELECT * FROM pii_vault.audit_log WHERE id IN (:victim_id, :victim_id + 1);
UPDATE pii_vault.audit_log a SET at = p.at, operation = p.operation, token = p.token, fields = p.fields,
       outcome = p.outcome, session_role = p.session_role, acting_role = p.acting_role, mac = p.mac
FROM pair p WHERE p.id = CASE WHEN a.id = :victim_id THEN :victim_id + 1 ELSE :victim_id END
  AND a.id IN (:victim_id, :victim_id + 1);
SELECT ok, first_bad_id = :victim_id AS names_the_row FROM vault_audit_verify();
UPDATE pii_vault.audit_log a SET at = p.at, operation = p.operation, token = p.token, fields = p.fields,
       outcome = p.outcome, session_role = p.session_role, acting_role = p.acting_role, mac = p.mac
FROM pair p WHERE p.id = a.id;
SELECT ok FROM vault_audit_verify();

-- The newest rows deleted: caught against the head the writer remembers.
SELECT pii_vault.audit_wait() AS audit_written;
CREATE TEMP TABLE tail AS SELECT * FROM pii_vault.audit_log ORDER BY id DESC LIMIT 1;
DELETE FROM pii_vault.audit_log WHERE id = (SELECT id FROM tail);
SELECT ok, first_bad_id = (SELECT id FROM tail) AS names_the_row FROM vault_audit_verify();
INSERT INTO pii_vault.audit_log SELECT * FROM tail;
SELECT ok FROM vault_audit_verify();

-- The verification calls themselves are audited.
SELECT pii_vault.audit_wait() AS audit_written;
SELECT count(*) >= 10 AS verify_calls_audited FROM pii_vault.audit_log WHERE operation = 'audit_verify';
