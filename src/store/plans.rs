//! The vault's SQL statements, prepared once per backend.

use std::cell::Cell;

use pgrx::pg_sys::PgOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};
use pii_vault_core::schema::Schema;

use crate::error::VaultResult;

pub(super) struct Plans {
    pub insert_record: OwnedPreparedStatement,
    pub fetch_envelope_for_update: OwnedPreparedStatement,
    pub update_record: OwnedPreparedStatement,
    pub delete_record: OwnedPreparedStatement,
    pub erase_record: OwnedPreparedStatement,
    pub life_cycle: Option<LifeCyclePlans>,
    pub field_tokens: Option<FieldTokenPlans>,
    pub records_under: OwnedPreparedStatement,
    pub count_under: OwnedPreparedStatement,
    pub count_not_under: OwnedPreparedStatement,
    pub rekey_record: OwnedPreparedStatement,
    pub indexed_records_after: OwnedPreparedStatement,
}

const UUID: PgOid = PgOid::BuiltIn(PgBuiltInOids::UUIDOID);
const BYTEA: PgOid = PgOid::BuiltIn(PgBuiltInOids::BYTEAOID);
const BYTEA_ARRAY: PgOid = PgOid::BuiltIn(PgBuiltInOids::BYTEAARRAYOID);
const INT8: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT8OID);
const BOOL: PgOid = PgOid::BuiltIn(PgBuiltInOids::BOOLOID);
const INT4: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT4OID);
const TEXT: PgOid = PgOid::BuiltIn(PgBuiltInOids::TEXTOID);
const TEXT_ARRAY: PgOid = PgOid::BuiltIn(PgBuiltInOids::TEXTARRAYOID);
const FLOAT8: PgOid = PgOid::BuiltIn(PgBuiltInOids::FLOAT8OID);
const TIMESTAMPTZ: PgOid = PgOid::BuiltIn(PgBuiltInOids::TIMESTAMPTZOID);

/// The key version an envelope's data key is wrapped under, as SQL over
/// the column `envelope` (`crypto::envelope::KEY_VERSION_BYTES`, 1-based).
pub(super) fn envelope_key_version() -> String {
    let bytes = crate::crypto::envelope::KEY_VERSION_BYTES;
    format!("pg_catalog.substring(envelope, {}, {})", bytes.start + 1, bytes.len())
}

/// A record the API may see: not soft-deleted, not expired (by the clock,
/// not the transaction's start: an expiry takes effect at once).
pub(super) const LIVE: &str =
    "deleted_at IS NULL AND (expires_at IS NULL OR expires_at > pg_catalog.clock_timestamp())";

impl Plans {
    /// The statements of `schema`: before 0.3.0 records neither expire nor
    /// are soft-deleted, and a delete removes the row.
    fn prepare(client: &SpiClient<'_>, schema: Schema) -> SpiResult<Plans> {
        let life_cycle = match schema {
            Schema::V0_1 | Schema::V0_2 => false,
            Schema::V0_3 | Schema::V0_4 | Schema::V0_6 => true,
        };
        let write = |sql: &str, args: &[PgOid]| client.prepare_mut(sql, args).map(|p| p.keep());
        let version = envelope_key_version();
        let index_args = [UUID, BYTEA, BYTEA, BYTEA, BYTEA];
        let delete = "DELETE FROM pii_vault.records WHERE token = $1 RETURNING 1";
        Ok(Plans {
            insert_record: if life_cycle {
                write(
                    "INSERT INTO pii_vault.records (token, envelope, email_index, phone_index, login_index, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[UUID, BYTEA, BYTEA, BYTEA, BYTEA, TIMESTAMPTZ],
                )?
            } else {
                write(
                    "INSERT INTO pii_vault.records (token, envelope, email_index, phone_index, login_index) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &index_args,
                )?
            },
            // The envelope, and whether the record has expired (NULL when
            // it has no expiry).
            fetch_envelope_for_update: if life_cycle {
                write(
                    "SELECT envelope, expires_at <= pg_catalog.clock_timestamp() FROM pii_vault.records \
                     WHERE token = $1 AND deleted_at IS NULL FOR UPDATE",
                    &[UUID],
                )?
            } else {
                write("SELECT envelope, NULL::boolean FROM pii_vault.records WHERE token = $1 FOR UPDATE", &[UUID])?
            },
            update_record: write(
                &format!(
                    "UPDATE pii_vault.records SET envelope = $2, email_index = $3, phone_index = $4, \
                     login_index = $5, updated_at = pg_catalog.now() WHERE token = $1{} RETURNING 1",
                    if life_cycle { format!(" AND {LIVE}") } else { String::new() }
                ),
                &index_args,
            )?,
            // Soft: the row stays for pii_vault.delete_grace without its
            // lookup values ($2: the grace is 0, the row goes at once).
            delete_record: if life_cycle {
                write(
                    &format!(
                        "WITH soft AS (UPDATE pii_vault.records SET deleted_at = pg_catalog.clock_timestamp(), \
                         email_index = NULL, phone_index = NULL, login_index = NULL \
                         WHERE token = $1 AND NOT $2 AND {LIVE} RETURNING 1), \
                         hard AS (DELETE FROM pii_vault.records WHERE token = $1 AND $2 AND {LIVE} RETURNING 1) \
                         SELECT 1 FROM soft UNION ALL SELECT 1 FROM hard"
                    ),
                    &[UUID, BOOL],
                )?
            } else {
                write(delete, &[UUID, BOOL])?
            },
            erase_record: write(delete, &[UUID])?,
            life_cycle: if life_cycle { Some(LifeCyclePlans::prepare(client)?) } else { None },
            field_tokens: if schema.has_field_tokens() { Some(FieldTokenPlans::prepare(client)?) } else { None },
            // The wrapping key's version is bytes 2..6 of every envelope
            // (crypto::envelope); a slice of an out-of-line value is
            // fetched without the rest of it.
            records_under: write(
                &format!(
                    "SELECT token, envelope, email_index, phone_index, login_index FROM pii_vault.records \
                     WHERE token > $1 AND {version} = ANY ($2) \
                     ORDER BY token LIMIT $3 FOR UPDATE SKIP LOCKED"
                ),
                &[UUID, BYTEA_ARRAY, INT8],
            )?,
            count_under: write(
                &format!(
                    "SELECT pg_catalog.count(*) FROM pii_vault.records \
                     WHERE {version} = ANY ($1)"
                ),
                &[BYTEA_ARRAY],
            )?,
            count_not_under: write(
                &format!(
                    "SELECT pg_catalog.count(*) FROM pii_vault.records \
                     WHERE {version} <> $1"
                ),
                &[BYTEA],
            )?,
            rekey_record: write(
                "UPDATE pii_vault.records SET envelope = $2, email_index = $3, phone_index = $4, login_index = $5 \
                 WHERE token = $1",
                &index_args,
            )?,
            indexed_records_after: write(
                "SELECT token, envelope, email_index, phone_index, login_index FROM pii_vault.records \
                 WHERE token > $1 AND (email_index IS NOT NULL OR login_index IS NOT NULL) \
                 ORDER BY token LIMIT $2 FOR UPDATE",
                &[UUID, INT8],
            )?,
        })
    }
}

/// Statements only a schema with a life cycle (0.3.0 on) has the tables
/// and columns for.
/// Statements on field tokens (0.6.0 on).
pub(super) struct FieldTokenPlans {
    pub insert: OwnedPreparedStatement,
    pub find_value: OwnedPreparedStatement,
    pub delete: OwnedPreparedStatement,
    pub purge: OwnedPreparedStatement,
    pub under: OwnedPreparedStatement,
    pub count_under: OwnedPreparedStatement,
    pub rekey: OwnedPreparedStatement,
    pub of_record: OwnedPreparedStatement,
}

impl FieldTokenPlans {
    fn prepare(client: &SpiClient<'_>) -> SpiResult<FieldTokenPlans> {
        let write = |sql: &str, args: &[PgOid]| client.prepare_mut(sql, args).map(|p| p.keep());
        let version = envelope_key_version();
        Ok(FieldTokenPlans {
            // A token or value hash taken already inserts nothing (the
            // caller draws or looks again): no error, no subtransaction.
            insert: write(
                "INSERT INTO pii_vault.field_tokens (id, field_token, kind, envelope, value_hash, key_version, token, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING 1",
                &[UUID, TEXT, TEXT, BYTEA, BYTEA, INT4, UUID, TIMESTAMPTZ],
            )?,
            find_value: write(
                "SELECT id, field_token, expires_at <= pg_catalog.clock_timestamp() FROM pii_vault.field_tokens \
                 WHERE value_hash = ANY ($1)",
                &[BYTEA_ARRAY],
            )?,
            delete: write(
                "DELETE FROM pii_vault.field_tokens WHERE id = $1 \
                 RETURNING token, expires_at <= pg_catalog.clock_timestamp()",
                &[UUID],
            )?,
            purge: write(
                "DELETE FROM pii_vault.field_tokens WHERE ctid = ANY (ARRAY(SELECT ctid FROM pii_vault.field_tokens \
                     WHERE expires_at <= $2 LIMIT $1 FOR UPDATE SKIP LOCKED)) AND expires_at <= $2 \
                 RETURNING field_token, kind",
                &[INT8, TIMESTAMPTZ],
            )?,
            under: write(
                &format!(
                    "SELECT field_token, kind, envelope, token, expires_at, value_hash IS NOT NULL \
                     FROM pii_vault.field_tokens WHERE {version} = ANY ($1) LIMIT $2 FOR UPDATE SKIP LOCKED"
                ),
                &[BYTEA_ARRAY, INT8],
            )?,
            count_under: write(
                &format!("SELECT pg_catalog.count(*) FROM pii_vault.field_tokens WHERE {version} = ANY ($1)"),
                &[BYTEA_ARRAY],
            )?,
            rekey: write(
                "UPDATE pii_vault.field_tokens SET envelope = $2, value_hash = $3, key_version = $4 WHERE id = $1",
                &[UUID, BYTEA, BYTEA, INT4],
            )?,
            of_record: write(
                "SELECT field_token, kind, envelope, expires_at FROM pii_vault.field_tokens WHERE token = $1 ORDER BY created_at",
                &[UUID],
            )?,
        })
    }
}

pub(super) struct LifeCyclePlans {
    pub set_expiry: OwnedPreparedStatement,
    pub fetch_deleted_for_update: OwnedPreparedStatement,
    pub restore_record: OwnedPreparedStatement,
    pub release_lookups: OwnedPreparedStatement,
    pub purge_records: OwnedPreparedStatement,
    pub purge_shares: OwnedPreparedStatement,
    pub insert_share: OwnedPreparedStatement,
    pub delete_share: OwnedPreparedStatement,
    pub insert_session: OwnedPreparedStatement,
    pub delete_session: OwnedPreparedStatement,
    pub sessions_of: OwnedPreparedStatement,
    pub purge_sessions: OwnedPreparedStatement,
    pub set_app_data: OwnedPreparedStatement,
    pub get_app_data: OwnedPreparedStatement,
    pub delete_app_data: OwnedPreparedStatement,
    pub set_consent: OwnedPreparedStatement,
    pub consents: OwnedPreparedStatement,
    pub consent_history: OwnedPreparedStatement,
    pub documents_under: OwnedPreparedStatement,
    pub count_documents_under: OwnedPreparedStatement,
}

impl LifeCyclePlans {
    fn prepare(client: &SpiClient<'_>) -> SpiResult<LifeCyclePlans> {
        let write = |sql: &str, args: &[PgOid]| client.prepare_mut(sql, args).map(|p| p.keep());
        let version = envelope_key_version();
        Ok(LifeCyclePlans {
            set_expiry: write(
                &format!(
                    "UPDATE pii_vault.records SET expires_at = $2 WHERE token = $1 AND {LIVE} RETURNING 1"
                ),
                &[UUID, TIMESTAMPTZ],
            )?,
            // The envelope of a record deleted or expired less than the
            // grace ($2) ago: every way a record becomes invisible keeps
            // it restorable for the grace (an expiry set 10 ms ahead is no
            // quicker way to destroy a record than a delete). Exactly the
            // records purge_records would not remove yet.
            fetch_deleted_for_update: write(
                "SELECT envelope FROM pii_vault.records \
                 WHERE token = $1 AND (deleted_at IS NOT NULL OR expires_at <= pg_catalog.clock_timestamp()) \
                   AND COALESCE(deleted_at > pg_catalog.clock_timestamp() - pg_catalog.make_interval(secs => $2), true) \
                   AND COALESCE(expires_at > pg_catalog.clock_timestamp() - pg_catalog.make_interval(secs => $2), true) \
                 FOR UPDATE",
                &[UUID, FLOAT8],
            )?,
            // Live again: not deleted, and without an expiry that has passed.
            restore_record: write(
                "UPDATE pii_vault.records SET deleted_at = NULL, \
                     expires_at = CASE WHEN expires_at > pg_catalog.clock_timestamp() THEN expires_at END, \
                     email_index = $2, phone_index = $3, login_index = $4, updated_at = pg_catalog.now() \
                 WHERE token = $1 AND (deleted_at IS NOT NULL OR expires_at <= pg_catalog.clock_timestamp()) \
                 RETURNING 1",
                &[UUID, BYTEA, BYTEA, BYTEA],
            )?,
            // An expired record's lookup values, freed for a new record;
            // the rest stays for the grace, as a deleted record's does.
            release_lookups: write(
                "UPDATE pii_vault.records SET email_index = NULL, phone_index = NULL, login_index = NULL, \
                     deleted_at = COALESCE(deleted_at, pg_catalog.clock_timestamp()) \
                 WHERE token = $1 AND expires_at <= pg_catalog.clock_timestamp() RETURNING 1",
                &[UUID],
            )?,
            // Up to $1 records that expired or were deleted before $2 (now
            // less pii_vault.delete_grace): an expiry a writer set is no
            // quicker way to remove a record, and its consent history, than
            // a delete. $2 is a parameter, not clock_timestamp() in the
            // query, so the partial indexes on both columns can serve it
            // (the purge worker plans each run for its values). Rows a call
            // holds locked are skipped (the next round takes them), and the
            // condition is checked again on the row as locked, so a record
            // whose expiry was just cleared or that was just restored is
            // never removed. The rows are deleted by the ctids their locks
            // returned, not joined back by token: a join of the batch to
            // the table builds a hash of every due row, whole, for each
            // batch. The shares, sessions and other rows attached go with
            // it (ON DELETE CASCADE).
            purge_records: write(
                "DELETE FROM pii_vault.records WHERE ctid = ANY (ARRAY(SELECT ctid FROM pii_vault.records \
                     WHERE expires_at <= $2 OR deleted_at <= $2 LIMIT $1 FOR UPDATE SKIP LOCKED)) \
                   AND (expires_at <= $2 OR deleted_at <= $2) \
                 RETURNING token",
                &[INT8, TIMESTAMPTZ],
            )?,
            // Expired shares, as purge_records.
            purge_shares: write(
                "DELETE FROM pii_vault.shares WHERE ctid = ANY (ARRAY(SELECT ctid FROM pii_vault.shares \
                     WHERE expires_at <= $2 LIMIT $1 FOR UPDATE SKIP LOCKED)) AND expires_at <= $2 \
                 RETURNING token",
                &[INT8, TIMESTAMPTZ],
            )?,
            // Only of a live record, which stays locked (FOR KEY SHARE, as
            // the foreign key's check takes it) until the transaction ends.
            insert_share: write(
                &format!(
                    "INSERT INTO pii_vault.shares (id_hash, key_version, token, fields, expires_at) \
                     SELECT $1, $2, token, $4, pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => $5) \
                     FROM pii_vault.records WHERE token = $3 AND {LIVE} FOR KEY SHARE \
                     RETURNING 1"
                ),
                &[BYTEA, INT4, UUID, TEXT_ARRAY, FLOAT8],
            )?,
            // Of a live record, or of none ($3 NULL).
            insert_session: write(
                &format!(
                    "INSERT INTO pii_vault.sessions (id_hash, key_version, token, envelope, expires_at, created_at) \
                     SELECT $1, $2, $3, $4, $5, pg_catalog.clock_timestamp() \
                     WHERE $3 IS NULL OR EXISTS (SELECT FROM pii_vault.records WHERE token = $3 AND {LIVE}) \
                     RETURNING 1"
                ),
                &[BYTEA, INT4, UUID, BYTEA, TIMESTAMPTZ],
            )?,
            // Only a session of a live record, or of none: a deleted
            // record's sessions come back with it (vault_restore).
            delete_session: write(
                "DELETE FROM pii_vault.sessions s WHERE s.id_hash = ANY ($1) \
                   AND (s.token IS NULL OR EXISTS (SELECT FROM pii_vault.records r WHERE r.token = s.token \
                        AND r.deleted_at IS NULL AND (r.expires_at IS NULL OR r.expires_at > pg_catalog.clock_timestamp()))) \
                 RETURNING s.token, s.expires_at <= pg_catalog.clock_timestamp()",
                &[BYTEA_ARRAY],
            )?,
            sessions_of: write(
                "SELECT id_hash, envelope, token, expires_at FROM pii_vault.sessions \
                 WHERE token = $1 AND expires_at > pg_catalog.clock_timestamp() ORDER BY created_at, id_hash",
                &[UUID],
            )?,
            // Expired sessions, as purge_records.
            purge_sessions: write(
                "DELETE FROM pii_vault.sessions WHERE ctid = ANY (ARRAY(SELECT ctid FROM pii_vault.sessions \
                     WHERE expires_at <= $2 LIMIT $1 FOR UPDATE SKIP LOCKED)) AND expires_at <= $2 \
                 RETURNING token",
                &[INT8, TIMESTAMPTZ],
            )?,
            // Only for a live record (which the foreign key's check keeps
            // locked until the transaction ends).
            set_app_data: write(
                &format!(
                    "INSERT INTO pii_vault.app_data (token, app, envelope) \
                     SELECT token, $2, $3 FROM pii_vault.records WHERE token = $1 AND {LIVE} \
                     ON CONFLICT (token, app) DO UPDATE SET envelope = EXCLUDED.envelope, updated_at = pg_catalog.now() \
                     RETURNING 1"
                ),
                &[UUID, TEXT, BYTEA],
            )?,
            get_app_data: write("SELECT envelope FROM pii_vault.app_data WHERE token = $1 AND app = $2", &[UUID, TEXT])?,
            delete_app_data: write(
                "DELETE FROM pii_vault.app_data WHERE token = $1 AND app = $2 RETURNING 1",
                &[UUID, TEXT],
            )?,
            // The current state and a history row, for a live record only.
            set_consent: write(
                &format!(
                    "WITH live AS (SELECT token FROM pii_vault.records WHERE token = $1 AND {LIVE}), \
                     current AS (INSERT INTO pii_vault.consents (token, purpose, granted, legal_basis, given_at, expires_at) \
                         SELECT token, $2, $3, $4, pg_catalog.clock_timestamp(), $5 FROM live \
                         ON CONFLICT (token, purpose) DO UPDATE SET granted = EXCLUDED.granted, \
                             legal_basis = EXCLUDED.legal_basis, given_at = EXCLUDED.given_at, expires_at = EXCLUDED.expires_at \
                         RETURNING token, given_at) \
                     INSERT INTO pii_vault.consent_history (token, purpose, granted, legal_basis, expires_at, changed_at) \
                     SELECT token, $2, $3, $4, $5, given_at FROM current RETURNING 1"
                ),
                &[UUID, TEXT, BOOL, TEXT, TIMESTAMPTZ],
            )?,
            // An expired consent reads as not granted.
            consents: write(
                "SELECT purpose, granted AND (expires_at IS NULL OR expires_at > pg_catalog.clock_timestamp()), \
                        legal_basis, given_at, expires_at \
                 FROM pii_vault.consents WHERE token = $1 ORDER BY purpose",
                &[UUID],
            )?,
            consent_history: write(
                "SELECT purpose, granted, legal_basis, changed_at, expires_at, changed_at \
                 FROM pii_vault.consent_history WHERE token = $1 ORDER BY id",
                &[UUID],
            )?,
            // Documents (sessions, application data) whose data keys are
            // under one of $1, with what their binding is made of: 's' and
            // the id hash, or 'a', the token and the application.
            documents_under: write(
                &format!("WITH s AS (SELECT id_hash, token, envelope, expires_at FROM pii_vault.sessions \
                     WHERE {version} = ANY ($1) LIMIT $2 FOR UPDATE SKIP LOCKED), \
                 a AS (SELECT token, app, envelope FROM pii_vault.app_data \
                     WHERE {version} = ANY ($1) LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 SELECT 's', id_hash, token, NULL::text, envelope, expires_at FROM s \
                 UNION ALL SELECT 'a', NULL::bytea, token, app, envelope, NULL::timestamptz FROM a"),
                &[BYTEA_ARRAY, INT8],
            )?,
            count_documents_under: write(
                &format!("SELECT (SELECT pg_catalog.count(*) FROM pii_vault.sessions WHERE {version} = ANY ($1)) \
                      + (SELECT pg_catalog.count(*) FROM pii_vault.app_data WHERE {version} = ANY ($1))"),
                &[BYTEA_ARRAY],
            )?,
            delete_share: write(
                "DELETE FROM pii_vault.shares WHERE id_hash = ANY ($1) RETURNING token, \
                 expires_at <= pg_catalog.clock_timestamp()",
                &[BYTEA_ARRAY],
            )?,
        })
    }
}

thread_local! {
    // Leaked on purpose: kept plans live as long as the backend, and a
    // destructor running SPI_freeplan during process exit would be unsafe.
    // One set per schema, so a backend that saw the schema before ALTER
    // EXTENSION UPDATE moves on to the new statements at its next call.
    static PLANS: [Cell<Option<&'static Plans>>; Schema::ALL.len()] =
        const { [const { Cell::new(None) }; Schema::ALL.len()] };
}

/// Runs `f` inside an SPI connection with this backend's prepared plans
/// for the schema in place. An SPI failure here is a bug or a broken
/// installation, not bad input: a storage fault.
pub(super) fn with_plans<R>(f: impl FnOnce(&mut SpiClient<'_>, &Plans) -> SpiResult<R>) -> VaultResult<R> {
    let schema = super::catalog::schema()?;
    let slot = schema as usize;
    Spi::connect_mut(|client| {
        let plans = match PLANS.with(|p| p[slot].get()) {
            Some(plans) => plans,
            None => {
                let plans: &'static Plans = Box::leak(Box::new(Plans::prepare(client, schema)?));
                PLANS.with(|p| p[slot].set(Some(plans)));
                plans
            }
        };
        f(client, plans)
    })
    .map_err(super::fault)
}
