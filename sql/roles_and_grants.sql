-- pii_vault roles and grants: run after every function exists.

-- Store the key check value now: a vault cannot be created without a key,
-- and a server later started with another key refuses to use it.
SELECT pii_vault.install_key_check();

-- Group roles (NOLOGIN). Created when missing, never dropped by the
-- extension: they are cluster-wide and the DBA grants them to login roles.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pii_vault_reader', 'pii_vault_writer', 'pii_vault_auditor', 'pii_vault_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END
$$;

-- Internal functions: nobody but the owner.
REVOKE ALL ON FUNCTION pii_vault.install_key_check() FROM PUBLIC;

-- Reading: one record at a time, by token or by lookup value.
REVOKE ALL ON FUNCTION vault_get(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_get(uuid) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_get(uuid, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_get(uuid, text[]) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_lookup(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_lookup(text, text) TO pii_vault_reader, pii_vault_writer, pii_vault_admin;

-- Writing.
REVOKE ALL ON FUNCTION vault_store(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_store(jsonb) TO pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_update(uuid, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_update(uuid, jsonb) TO pii_vault_writer, pii_vault_admin;

REVOKE ALL ON FUNCTION vault_delete(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION vault_delete(uuid) TO pii_vault_writer, pii_vault_admin;
