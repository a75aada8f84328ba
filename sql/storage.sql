-- pii_vault storage: created before any function.
--
-- Nothing here is granted to anyone. Only the vault's SECURITY DEFINER
-- functions (owned by the extension's owner) read or write these tables.

DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() <> 'UTF8' THEN
        RAISE EXCEPTION 'pii_vault: the database encoding must be UTF8 (it is %)',
            pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;

CREATE SCHEMA pii_vault;
REVOKE ALL ON SCHEMA pii_vault FROM PUBLIC;
COMMENT ON SCHEMA pii_vault IS 'pii_vault storage: ciphertext and keyed hashes only; no role is granted anything here';

-- One row per record. envelope = wrapped data key + AES-256-GCM ciphertext
-- (format in src/crypto/envelope.rs). *_index = HMAC-SHA256 blind indexes of
-- the normalized lookup values; unique indexes make concurrent duplicates
-- fail.
CREATE TABLE pii_vault.records (
    token       uuid        PRIMARY KEY,
    envelope    bytea       NOT NULL,
    email_index bytea,
    phone_index bytea,
    login_index bytea,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
-- Partial: most records lack one kind or another (few have a login), and a
-- NULL has nothing to look up or to collide with, so it gets no index entry
-- (one index insert and its WAL fewer per store).
CREATE UNIQUE INDEX records_email_index_key ON pii_vault.records (email_index) WHERE email_index IS NOT NULL;
CREATE UNIQUE INDEX records_phone_index_key ON pii_vault.records (phone_index) WHERE phone_index IS NOT NULL;
CREATE UNIQUE INDEX records_login_index_key ON pii_vault.records (login_index) WHERE login_index IS NOT NULL;
-- Ciphertext does not compress: store it out of line without trying.
ALTER TABLE pii_vault.records ALTER COLUMN envelope SET STORAGE EXTERNAL;

-- The MAC of a fixed label under the key this vault was created with.
CREATE TABLE pii_vault.key_check (
    key_version integer     PRIMARY KEY,
    check_value bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Every vault call: who, what, outcome. Never a record value. Written only
-- by the audit writer (a background worker), which numbers the rows and
-- chains them: mac = HMAC(audit key, previous mac ‖ row), see
-- src/crypto/audit_chain.rs and vault_audit_verify().
CREATE TABLE pii_vault.audit_log (
    id               bigint      PRIMARY KEY,
    at               timestamptz NOT NULL,
    session_role     name        NOT NULL,
    acting_role      name        NOT NULL,
    application_name text,
    operation        text        NOT NULL,
    token            uuid,
    fields           text[],
    outcome          text        NOT NULL,
    mac              bytea       NOT NULL
);
-- A btree, not a hash index: a hash index inserts a third cheaper while
-- tokens are new, but a token read thousands of times fills one bucket's
-- overflow chain, which every later insert walks (measured: the writer's
-- largest cost under a read-heavy load). Btree deduplication absorbs it.
CREATE INDEX audit_log_token ON pii_vault.audit_log (token);

REVOKE ALL ON ALL TABLES IN SCHEMA pii_vault FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pii_vault FROM PUBLIC;

-- pg_dump carries the ciphertext and the audit (never the key).
SELECT pg_catalog.pg_extension_config_dump('pii_vault.records', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.audit_log', '');
