//! Storage of what is attached to a record besides its envelope: sessions,
//! application data and consents (release 0.3.0's tables; every statement
//! here needs its schema, `with_life_cycle`).

use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use pgrx::Uuid;

use super::index_read;
use super::{hash_array, hash_datums, timestamp, uuid, with_life_cycle, IndexHash, Seen, Token};
use crate::error::VaultResult;
use pii_vault_core::schema::Schema;

/// Stores a session under `id_hash` (the id's hash under `key_version`),
/// of the live record `token` or of none, until `expires_at`; false when
/// `token` names no live record.
pub fn insert_session(
    id_hash: &IndexHash,
    key_version: u32,
    token: Option<&Token>,
    envelope: &[u8],
    expires_at: i64,
) -> VaultResult<bool> {
    let args = [
        id_hash.as_slice().into(),
        (key_version as i32).into(),
        DatumWithOid::from(token.map(|t| Uuid::from_bytes(*t))),
        envelope.into(),
        timestamp(Some(expires_at)),
    ];
    with_life_cycle(|client, lc| Ok(client.update(&lc.insert_session, None, &args)?.len() == 1))
}

/// A stored session: its envelope, and what the envelope is sealed for:
/// the id hash it is stored under, its record's token and its expiry.
pub struct StoredSession {
    pub envelope: Vec<u8>,
    pub id_hash: Vec<u8>,
    pub token: Option<Token>,
    pub expires_at: i64,
}

/// The session whose id hashes to one of `hashes`, with its record's token
/// (None for a session of no record); Expired when the session or its
/// record has expired, Missing when there is none or its record is gone.
/// Read through the primary key without SPI (`index_read`), as `vault_get`
/// reads a record: the session, then its record's state.
pub fn find_session(hashes: &[IndexHash]) -> VaultResult<Option<(Option<Token>, Seen<StoredSession>)>> {
    let found = index_read::read_session(hash_datums(hashes), |row, c| {
        let copy = |attnum| row.with_bytea(attnum, <[u8]>::to_vec);
        Ok((copy(c.envelope)?.zip(copy(c.id_hash)?), row.uuid(c.token)?, row.timestamp(c.expires_at)?))
    })?;
    let Some((stored, token, expires_at)) = found else {
        return Ok(None);
    };
    let (Some((envelope, id_hash)), Some(expires_at)) = (stored, expires_at) else {
        // The columns are NOT NULL.
        return Ok(Some((token, Seen::Missing)));
    };
    if super::expired(Some(expires_at)) {
        return Ok(Some((token, Seen::Expired)));
    }
    // The record's state, as vault_get would see it.
    let seen = match token.as_ref().map_or(Ok(Seen::Live(())), super::token_seen)? {
        Seen::Live(()) => Seen::Live(StoredSession { envelope, id_hash, token, expires_at }),
        Seen::Expired => Seen::Expired,
        Seen::Missing => Seen::Missing,
    };
    Ok(Some((token, seen)))
}

/// Removes the session whose id hashes to one of `hashes`: its record's
/// token (if any) and whether it had expired; None when there is none.
pub fn delete_session(hashes: &[IndexHash]) -> VaultResult<Option<(Option<Token>, bool)>> {
    with_life_cycle(|client, lc| {
        let table = client.update(&lc.delete_session, None, &[hash_array(hashes)])?;
        if table.is_empty() {
            return Ok(None);
        }
        let row = table.first();
        Ok(Some((row.get::<Uuid>(1)?.map(|t| *t.as_bytes()), row.get::<bool>(2)?.unwrap_or(false))))
    })
}

/// The live sessions of a record, oldest first.
pub fn sessions_of(token: &Token) -> VaultResult<Vec<StoredSession>> {
    with_life_cycle(|client, lc| {
        let table = client.select(&lc.sessions_of, None, &[uuid(token)])?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            if let (Some(id_hash), Some(envelope), Some(expires_at)) =
                (row.get::<Vec<u8>>(1)?, row.get::<Vec<u8>>(2)?, row.get::<TimestampWithTimeZone>(4)?)
            {
                let token = row.get::<Uuid>(3)?.map(|t| *t.as_bytes());
                out.push(StoredSession { envelope, id_hash, token, expires_at: expires_at.into() });
            }
        }
        Ok(out)
    })
}

/// Removes up to `limit` expired sessions; for each, its record's token
/// (None for a session of no record).
pub fn purge_sessions(limit: i64) -> VaultResult<Vec<Option<Token>>> {
    with_life_cycle(|client, lc| {
        let table = client.update(&lc.purge_sessions, None, &[limit.into(), timestamp(Some(super::now()))])?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            out.push(row.get::<Uuid>(1)?.map(|t| *t.as_bytes()));
        }
        Ok(out)
    })
}

/// Sets an application's document of a live record; false when there is
/// no live record.
pub fn set_app_data(token: &Token, app: &str, envelope: &[u8]) -> VaultResult<bool> {
    with_life_cycle(|client, lc| {
        Ok(client.update(&lc.set_app_data, None, &[uuid(token), app.into(), envelope.into()])?.len() == 1)
    })
}

/// An application's stored document of a record (whatever the record's
/// state: the caller checks it first).
pub fn get_app_data(token: &Token, app: &str) -> VaultResult<Option<Vec<u8>>> {
    with_life_cycle(|client, lc| {
        let table = client.select(&lc.get_app_data, Some(1), &[uuid(token), app.into()])?;
        if table.is_empty() {
            return Ok(None);
        }
        table.first().get::<Vec<u8>>(1)
    })
}

pub fn delete_app_data(token: &Token, app: &str) -> VaultResult<bool> {
    with_life_cycle(|client, lc| Ok(client.update(&lc.delete_app_data, None, &[uuid(token), app.into()])?.len() == 1))
}

/// Sets a consent of a live record (its current state and a history row);
/// false when there is no live record.
pub fn set_consent(
    token: &Token,
    purpose: &str,
    granted: bool,
    legal_basis: &str,
    expires_at: Option<i64>,
) -> VaultResult<bool> {
    let args = [uuid(token), purpose.into(), granted.into(), legal_basis.into(), timestamp(expires_at)];
    with_life_cycle(|client, lc| Ok(client.update(&lc.set_consent, None, &args)?.len() == 1))
}

/// One consent as `vault_consents` and `vault_consent_history` return it.
pub type ConsentRow =
    (String, bool, String, Option<TimestampWithTimeZone>, Option<TimestampWithTimeZone>, Option<TimestampWithTimeZone>);

/// The current consents of a record (an expired one not granted), or
/// every change (`history`), with `changed_at`.
pub fn consents(token: &Token, history: bool) -> VaultResult<Vec<ConsentRow>> {
    with_life_cycle(|client, lc| {
        let plan = if history { &lc.consent_history } else { &lc.consents };
        let table = client.select(plan, None, &[uuid(token)])?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            let changed_at = if history { row.get::<TimestampWithTimeZone>(6)? } else { None };
            out.push((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<bool>(2)?.unwrap_or(false),
                row.get::<String>(3)?.unwrap_or_default(),
                row.get::<TimestampWithTimeZone>(4)?,
                row.get::<TimestampWithTimeZone>(5)?,
                changed_at,
            ));
        }
        SpiResult::Ok(out)
    })
}

/// A document (session or application data) whose data key is to be
/// re-wrapped, with what its binding is made of.
pub enum Document {
    Session { id_hash: Vec<u8>, token: Option<Token>, expires_at: i64 },
    AppData { token: Token, app: String },
}

/// Up to `limit` sessions and as many application documents whose data
/// keys are under one of `versions`, row-locked (locked ones skipped).
pub fn documents_under(versions: &[u32], limit: i64) -> VaultResult<Vec<(Document, Vec<u8>)>> {
    with_life_cycle(|client, lc| {
        let table = client.update(&lc.documents_under, None, &[super::version_bytes(versions), limit.into()])?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            let document = match row.get::<String>(1)?.as_deref() {
                Some("s") => Document::Session {
                    id_hash: row.get::<Vec<u8>>(2)?.unwrap_or_default(),
                    token: row.get::<Uuid>(3)?.map(|t| *t.as_bytes()),
                    expires_at: row.get::<TimestampWithTimeZone>(6)?.map_or(0, i64::from),
                },
                _ => Document::AppData {
                    token: row.get::<Uuid>(3)?.map(|t| *t.as_bytes()).unwrap_or_default(),
                    app: row.get::<String>(4)?.unwrap_or_default(),
                },
            };
            if let Some(envelope) = row.get::<Vec<u8>>(5)? {
                out.push((document, envelope));
            }
        }
        Ok(out)
    })
}

/// How many documents have their data keys under one of `versions` (0 on
/// a schema without them).
pub fn count_documents_under(versions: &[u32]) -> VaultResult<i64> {
    match super::catalog::schema()? {
        Schema::V0_1 | Schema::V0_2 => return Ok(0),
        Schema::V0_3 | Schema::V0_4 | Schema::V0_6 => {}
    }
    with_life_cycle(|client, lc| {
        Ok(super::first_value(client.select(&lc.count_documents_under, None, &[super::version_bytes(versions)])?)?
            .unwrap_or(0))
    })
}

/// Replaces a document's envelope (a rotation).
pub fn rewrap_document(document: &Document, envelope: &[u8]) -> VaultResult<()> {
    let (sql, args): (&str, Vec<DatumWithOid<'_>>) = match document {
        Document::Session { id_hash, .. } => (
            "UPDATE pii_vault.sessions SET envelope = $2 WHERE id_hash = $1",
            vec![id_hash.as_slice().into(), envelope.into()],
        ),
        Document::AppData { token, app } => (
            "UPDATE pii_vault.app_data SET envelope = $3 WHERE token = $1 AND app = $2",
            vec![uuid(token), app.as_str().into(), envelope.into()],
        ),
    };
    Spi::connect_mut(|client| client.update(sql, None, &args).map(drop)).map_err(super::fault)
}

/// A record in whatever state, for the subject's export: its state
/// ("expired", else "deleted", else "live") and envelope; None when there
/// is no row.
pub fn subject_record(token: &Token) -> VaultResult<Option<(&'static str, Vec<u8>)>> {
    with_life_cycle(|client, _| {
        let table = client.select(
            "SELECT envelope, CASE WHEN expires_at <= pg_catalog.clock_timestamp() THEN 'expired' \
                                   WHEN deleted_at IS NOT NULL THEN 'deleted' ELSE 'live' END \
             FROM pii_vault.records WHERE token = $1",
            Some(1),
            &[uuid(token)],
        )?;
        if table.is_empty() {
            return Ok(None);
        }
        let row = table.first();
        let state = match row.get::<String>(2)?.as_deref() {
            Some("deleted") => "deleted",
            Some("expired") => "expired",
            _ => "live",
        };
        Ok(row.get::<Vec<u8>>(1)?.map(|envelope| (state, envelope)))
    })
}

/// Every application's document of a record: (application, envelope).
pub fn app_data_of(token: &Token) -> VaultResult<Vec<(String, Vec<u8>)>> {
    with_life_cycle(|client, _| {
        let table = client.select(
            "SELECT app, envelope FROM pii_vault.app_data WHERE token = $1 ORDER BY app",
            None,
            &[uuid(token)],
        )?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            if let (Some(app), Some(envelope)) = (row.get::<String>(1)?, row.get::<Vec<u8>>(2)?) {
                out.push((app, envelope));
            }
        }
        Ok(out)
    })
}

/// The subject export as JSON text: the decrypted record and application
/// documents (given, as JSON text) with everything else the vault keeps
/// about the token, read here.
pub fn subject_export(
    token: &Token,
    state: &str,
    record: &str,
    apps: Vec<String>,
    documents: Vec<String>,
    field_tokens: Vec<(String, String)>,
) -> VaultResult<String> {
    let (ids, values): (Vec<String>, Vec<String>) = field_tokens.into_iter().unzip();
    let args = [
        uuid(token),
        state.into(),
        record.into(),
        DatumWithOid::from(apps),
        DatumWithOid::from(documents),
        DatumWithOid::from(ids),
        DatumWithOid::from(values),
    ];
    // Field tokens ($6, their values decrypted in $7), where the schema
    // has them.
    let field_tokens = match super::catalog::schema()?.has_field_tokens() {
        false => "'[]'::pg_catalog.jsonb",
        true => {
            "(SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(\
                 'token', f.field_token, 'kind', f.kind, 'value', v.value, 'expires_at', f.expires_at) \
                 ORDER BY f.created_at), '[]') \
             FROM pii_vault.field_tokens f \
             JOIN ROWS FROM (pg_catalog.unnest($6::text[]), pg_catalog.unnest($7::text[])) AS v(token, value) \
               ON v.token = f.field_token \
             WHERE f.token = $1)"
        }
    };
    with_life_cycle(|client, _| {
        let table = client.select(
            &format!("SELECT pg_catalog.jsonb_build_object(\
                'token', $1, 'state', $2, 'record', $3::pg_catalog.jsonb, \
                'created_at', r.created_at, 'updated_at', r.updated_at, \
                'expires_at', r.expires_at, 'deleted_at', r.deleted_at, \
                'app_data', (SELECT COALESCE(pg_catalog.jsonb_object_agg(a, d::pg_catalog.jsonb), '{{}}') \
                             FROM ROWS FROM (pg_catalog.unnest($4::text[]), pg_catalog.unnest($5::text[])) AS u(a, d)), \
                'consents', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(\
                                 'purpose', c.purpose, \
                                 'granted', c.granted AND (c.expires_at IS NULL OR c.expires_at > pg_catalog.clock_timestamp()), \
                                 'legal_basis', c.legal_basis, 'given_at', c.given_at, 'expires_at', c.expires_at) \
                                 ORDER BY c.purpose), '[]') \
                             FROM pii_vault.consents c WHERE c.token = $1), \
                'consent_history', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(\
                                 'purpose', h.purpose, 'granted', h.granted, 'legal_basis', h.legal_basis, \
                                 'expires_at', h.expires_at, 'changed_at', h.changed_at) ORDER BY h.id), '[]') \
                             FROM pii_vault.consent_history h WHERE h.token = $1), \
                'shares', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(\
                                 'fields', s.fields, 'created_at', s.created_at, 'expires_at', s.expires_at) \
                                 ORDER BY s.created_at), '[]') \
                           FROM pii_vault.shares s WHERE s.token = $1 AND s.expires_at > pg_catalog.clock_timestamp()), \
                'sessions', (SELECT pg_catalog.count(*) FROM pii_vault.sessions s \
                             WHERE s.token = $1 AND s.expires_at > pg_catalog.clock_timestamp()), \
                'field_tokens', {field_tokens}, \
                'audit', (SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(\
                                 'id', e.id, 'at', e.at, 'session_role', e.session_role, 'current_role', e.acting_role, \
                                 'application_name', e.application_name, 'operation', e.operation, \
                                 'fields', e.fields, 'outcome', e.outcome, 'purpose', e.purpose) ORDER BY e.id), '[]') \
                          FROM pii_vault.audit_batches b \
                          CROSS JOIN LATERAL pii_vault.audit_events(b.first_id, b.events) AS e \
                          WHERE pii_vault.audit_batch_may_name(b.token_filter, $1) AND e.token = $1))::pg_catalog.text \
             FROM pii_vault.records r WHERE r.token = $1"),
            Some(1),
            &args,
        )?;
        Ok(super::first_value::<String>(table)?.unwrap_or_default())
    })
}
