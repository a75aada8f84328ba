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
    updated_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- When the record stops being visible (NULL: never); purged after.
    expires_at  timestamptz,
    -- When vault_delete made it invisible; kept for pii_vault.delete_grace
    -- (vault_restore), with its *_index columns NULL so its lookup values
    -- are free for other records meanwhile.
    deleted_at  timestamptz
);
-- Partial: most records lack one kind or another (few have a login), and a
-- NULL has nothing to look up or to collide with, so it gets no index entry
-- (one index insert and its WAL fewer per store). INCLUDE (token): a lookup
-- wants only the token, and reads it from the index entry without visiting
-- the heap where the visibility map allows (src/store/index_read.rs).
-- expires_at is included too, so a lookup tells an expired record from a
-- live one without the heap.
CREATE UNIQUE INDEX records_email_index_key ON pii_vault.records (email_index) INCLUDE (token, expires_at) WHERE email_index IS NOT NULL;
CREATE UNIQUE INDEX records_phone_index_key ON pii_vault.records (phone_index) INCLUDE (token, expires_at) WHERE phone_index IS NOT NULL;
CREATE UNIQUE INDEX records_login_index_key ON pii_vault.records (login_index) INCLUDE (token, expires_at) WHERE login_index IS NOT NULL;
-- What the purge worker looks for; partial, so records that never expire
-- and are not deleted cost nothing here.
CREATE INDEX records_expires_at ON pii_vault.records (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX records_deleted_at ON pii_vault.records (deleted_at) WHERE deleted_at IS NOT NULL;
-- Ciphertext does not compress: store it out of line without trying.
ALTER TABLE pii_vault.records ALTER COLUMN envelope SET STORAGE EXTERNAL;

-- The MAC of a fixed label under each key version the vault has seen,
-- stored by the first call (store::settle_key_checks). Not unique per
-- version on purpose: a dump restored into a vault that stored its own
-- values appends beside them, and under another key the two cannot both
-- match, so every call is refused (KeySet::verdict).
-- vault_id: a random id the first call gives the vault and every value
-- it stores carries, so values of two vaults (a dump restored into one
-- already in use) are told apart and refused.
CREATE TABLE pii_vault.key_check (
    key_version integer     NOT NULL,
    check_value bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    vault_id    uuid
);

-- Every vault call: who, what, outcome. Never a record value. Written only
-- by the audit writer (a background worker), one row per batch of events:
-- events first_id..last_id, encoded back to back in `events` (format in
-- src/crypto/audit_chain.rs; read them through the view pii_vault.audit_log
-- or vault_audit()). Each batch is chained to the previous one:
-- mac = HMAC(audit key, previous mac ‖ first_id ‖ last_id ‖ events), see
-- vault_audit_verify(). One row per event cost the writer a heap tuple and
-- a primary-key entry per read, most of its work; a batch costs one.
CREATE TABLE pii_vault.audit_batches (
    first_id bigint PRIMARY KEY,
    last_id  bigint NOT NULL,
    -- A Bloom filter of the tokens the events name, so vault_audit(token)
    -- decodes only the batches that may name it (src/crypto/token_filter.rs;
    -- vault_audit_verify checks it against the events). A GIN index on the
    -- token list cost the writer more than everything else it does.
    token_filter bytea NOT NULL,
    events   bytea  NOT NULL,
    mac      bytea  NOT NULL
);
-- At most ~1.3 kB (1024 events per batch): kept in the row, never
-- compressed (random bits) or moved out of line, so vault_audit's scan
-- reads the filters without touching TOAST.
ALTER TABLE pii_vault.audit_batches ALTER COLUMN token_filter SET STORAGE PLAIN;
-- Events repeat role and operation names, so they compress about 3:1; lz4
-- does that at a fraction of pglz's CPU (pglz was the writer's largest
-- cost after the batch rows themselves).
DO $$
BEGIN
    ALTER TABLE pii_vault.audit_batches ALTER COLUMN events SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL; -- a server built without lz4 keeps pglz
END
$$;

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

-- Shares: read access to some top-level fields of one record until
-- expires_at (vault_share, vault_get_shared). The share id itself, which
-- reads the fields, is only ever in the caller's hands: stored is
-- id_hash = HMAC(blind-index key of key_version, id), so a dump cannot be
-- used to read through a live share. Field names are stored as given:
-- they are the record's schema, named in the audit too, never its values.
-- Gone with their record (erasure, purge).
CREATE TABLE pii_vault.shares (
    id_hash     bytea       PRIMARY KEY,
    key_version integer     NOT NULL,
    token       uuid        NOT NULL REFERENCES pii_vault.records (token) ON DELETE CASCADE,
    fields      text[]      NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX shares_token ON pii_vault.shares (token);
CREATE INDEX shares_expires_at ON pii_vault.shares (expires_at);

-- Sessions: an encrypted document with a time-to-live, optionally of a
-- record (vault_session_store). Stored under the HMAC of the session id,
-- as shares are; the envelope holds the id and the document, so
-- vault_sessions(token) can list a record's session ids. Purged when
-- expired, gone with their record.
CREATE TABLE pii_vault.sessions (
    id_hash     bytea       PRIMARY KEY,
    key_version integer     NOT NULL,
    token       uuid        REFERENCES pii_vault.records (token) ON DELETE CASCADE,
    envelope    bytea       NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX sessions_token ON pii_vault.sessions (token) WHERE token IS NOT NULL;
CREATE INDEX sessions_expires_at ON pii_vault.sessions (expires_at);
ALTER TABLE pii_vault.sessions ALTER COLUMN envelope SET STORAGE EXTERNAL;

-- App data: one encrypted document per record and application
-- (vault_appdata_set). The application's name is stored as given: it
-- names a consumer of the record, never a value of it.
CREATE TABLE pii_vault.app_data (
    token      uuid        NOT NULL REFERENCES pii_vault.records (token) ON DELETE CASCADE,
    app        text        NOT NULL,
    envelope   bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (token, app)
);
ALTER TABLE pii_vault.app_data ALTER COLUMN envelope SET STORAGE EXTERNAL;

-- Consents: the current state per record and purpose, and every change
-- (append-only: a trigger refuses UPDATE, TRUNCATE, and a DELETE while
-- the record exists, so history goes only with its record). Purposes and
-- legal bases are the controller's own vocabulary, not the subject's
-- data.
CREATE TABLE pii_vault.consents (
    token       uuid        NOT NULL REFERENCES pii_vault.records (token) ON DELETE CASCADE,
    purpose     text        NOT NULL,
    granted     boolean     NOT NULL,
    legal_basis text        NOT NULL,
    given_at    timestamptz NOT NULL,
    expires_at  timestamptz,
    PRIMARY KEY (token, purpose)
);
-- Ids come from the clock (microseconds since 1970, shifted left 10 bits,
-- and 10 random bits), in the order of the changes: not from a sequence,
-- which a member of pg_write_all_data could setval to its end and stop
-- every consent change (no trigger sees sequence functions).
CREATE TABLE pii_vault.consent_history (
    id          bigint      PRIMARY KEY
                            DEFAULT (pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) * 1000000)::bigint << 10
                                     | pg_catalog.floor(pg_catalog.random() * 1024)::bigint),
    token       uuid        NOT NULL REFERENCES pii_vault.records (token) ON DELETE CASCADE,
    purpose     text        NOT NULL,
    granted     boolean     NOT NULL,
    legal_basis text        NOT NULL,
    expires_at  timestamptz,
    changed_at  timestamptz NOT NULL
);
CREATE INDEX consent_history_token ON pii_vault.consent_history (token);

-- Standbys' audit events: the last frame the primary took from each
-- standby (frames are numbered by the time the standby kept them), so a
-- batch forwarded twice is taken once, and a promoted standby does not
-- write again what its old primary took (src/api/forward.rs).
CREATE TABLE pii_vault.forwarded (
    origin      uuid        PRIMARY KEY,
    server      text        NOT NULL,
    last_frame  bigint      NOT NULL,
    events      bigint      NOT NULL,
    received_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

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

REVOKE ALL ON ALL TABLES IN SCHEMA pii_vault FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pii_vault FROM PUBLIC;

-- pg_dump carries the ciphertext, the audit and the key check values
-- (never a key), so a restore under another key is refused.
SELECT pg_catalog.pg_extension_config_dump('pii_vault.records', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.audit_batches', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.key_check', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.audit_anchor', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.shares', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.sessions', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.app_data', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.consents', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.consent_history', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.forwarded', '');
SELECT pg_catalog.pg_extension_config_dump('pii_vault.field_tokens', '');
