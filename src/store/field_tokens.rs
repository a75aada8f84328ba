//! Storage of field tokens (release 0.6.0's `field_tokens`; every
//! statement here needs that table, `with_field_tokens`).

use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::Uuid;

use super::index_read;
use super::plans::with_plans;
use super::{hash_array, timestamp, IndexHash, Seen, Token};
use crate::error::{StorageFault, VaultResult};
use pgrx::IntoDatum;

/// A stored field token, with what its envelope is bound to.
pub struct StoredFieldToken {
    pub kind: String,
    pub envelope: Vec<u8>,
    pub record: Option<Token>,
    pub expires_at: Option<i64>,
}

fn with_field_tokens<R>(
    f: impl FnOnce(&mut pgrx::spi::SpiClient<'_>, &super::plans::FieldTokenPlans) -> pgrx::spi::SpiResult<R>,
) -> VaultResult<R> {
    with_plans(|client, plans| plans.field_tokens.as_ref().map(|ft| f(client, ft)).transpose())?
        .ok_or(StorageFault::NeedsUpdate.into())
}

fn optional_uuid(token: Option<&Token>) -> DatumWithOid<'static> {
    DatumWithOid::from(token.map(|t| Uuid::from_bytes(*t)))
}

/// A new field token, stored under `id` (its id, one to one with the
/// token). False when its id or its value hash is taken already (a card
/// token drawn twice; the same value deduplicated by a concurrent call):
/// the caller draws again or looks again.
#[allow(clippy::too_many_arguments)]
pub fn insert_field_token(
    id: &Token,
    token: &str,
    kind: &str,
    envelope: &[u8],
    value_hash: Option<(&IndexHash, u32)>,
    record: Option<&Token>,
    expires_at: Option<i64>,
) -> VaultResult<bool> {
    let args = [
        super::uuid(id),
        token.into(),
        kind.into(),
        envelope.into(),
        DatumWithOid::from(value_hash.map(|(h, _)| h.as_slice())),
        DatumWithOid::from(value_hash.map(|(_, v)| v as i32)),
        optional_uuid(record),
        timestamp(expires_at),
    ];
    with_field_tokens(|client, p| Ok(client.update(&p.insert, None, &args)?.len() == 1))
}

/// The field token whose id is `id`, read through the primary key without
/// SPI (`index_read`), as `vault_get` reads a record: Expired once it or
/// its record expired, Missing when there is none or its record is
/// deleted.
pub fn find_field_token(id: &Token) -> VaultResult<Seen<StoredFieldToken>> {
    let found = index_read::read_field_token(Uuid::from_bytes(*id).into_datum().expect("a uuid"), |row, c| {
        let envelope = row.with_bytea(c.envelope, <[u8]>::to_vec)?;
        Ok((row.text(c.kind)?, envelope, row.uuid(c.token)?, row.timestamp(c.expires_at)?))
    })?;
    let Some((Some(kind), Some(envelope), record, expires_at)) = found else {
        return Ok(Seen::Missing);
    };
    if super::expired(expires_at) {
        return Ok(Seen::Expired);
    }
    Ok(match record.as_ref().map_or(Ok(Seen::Live(())), super::token_seen)? {
        Seen::Live(()) => Seen::Live(StoredFieldToken { kind, envelope, record, expires_at }),
        Seen::Expired => Seen::Expired,
        Seen::Missing => Seen::Missing,
    })
}

/// The token deduplicated under one of `hashes` (a value's hash under each
/// loaded key version). An expired one is removed here, in the caller's
/// transaction, so its value can be tokenized again (the purge would
/// remove it anyway): None then.
pub fn find_field_value(hashes: &[IndexHash]) -> VaultResult<Option<String>> {
    with_field_tokens(|client, p| {
        let table = client.select(&p.find_value, Some(1), &[hash_array(hashes)])?;
        if table.is_empty() {
            return Ok(None);
        }
        let row = table.first();
        let (id, token, expired) = (row.get::<Uuid>(1)?, row.get::<String>(2)?, row.get::<bool>(3)?.unwrap_or(false));
        match (id, expired) {
            (Some(id), true) => {
                client.update(&p.delete, None, &[DatumWithOid::from(id)])?;
                Ok(None)
            }
            _ => Ok(token),
        }
    })
}

/// Removes the field token whose id is `id` at once; None when there is
/// none, else whether it was live (not expired itself).
pub fn delete_field_token(id: &Token) -> VaultResult<Option<bool>> {
    with_field_tokens(|client, p| {
        let table = client.update(&p.delete, None, &[super::uuid(id)])?;
        if table.is_empty() {
            return Ok(None);
        }
        Ok(Some(!table.first().get::<bool>(2)?.unwrap_or(false)))
    })
}

/// Removes up to `limit` expired field tokens: each one's token and kind
/// (none on a schema without them).
pub fn purge_field_tokens(limit: i64) -> VaultResult<Vec<(String, String)>> {
    if !super::catalog::schema()?.has_field_tokens() {
        return Ok(Vec::new());
    }
    with_field_tokens(|client, p| {
        let table = client.update(&p.purge, None, &[limit.into(), timestamp(Some(super::now()))])?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            if let (Some(token), Some(kind)) = (row.get::<String>(1)?, row.get::<String>(2)?) {
                out.push((token, kind));
            }
        }
        Ok(out)
    })
}

/// Up to `limit` field tokens whose data keys are under one of
/// `versions`, row-locked (locked ones skipped), with whether each is
/// deduplicated (its value hash is recomputed under the new version).
pub fn field_tokens_under(versions: &[u32], limit: i64) -> VaultResult<Vec<(String, StoredFieldToken, bool)>> {
    if !super::catalog::schema()?.has_field_tokens() {
        return Ok(Vec::new());
    }
    with_field_tokens(|client, p| {
        let table = client.update(&p.under, None, &[super::version_bytes(versions), limit.into()])?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            if let (Some(token), Some(kind), Some(envelope)) =
                (row.get::<String>(1)?, row.get::<String>(2)?, row.get::<Vec<u8>>(3)?)
            {
                let record = row.get::<Uuid>(4)?.map(|t| *t.as_bytes());
                let expires_at = row.get::<TimestampWithTimeZone>(5)?.map(i64::from);
                let dedup = row.get::<bool>(6)?.unwrap_or(false);
                out.push((token, StoredFieldToken { kind, envelope, record, expires_at }, dedup));
            }
        }
        Ok(out)
    })
}

/// How many field tokens have their data keys under one of `versions` (0
/// on a schema without them).
pub fn count_field_tokens_under(versions: &[u32]) -> VaultResult<i64> {
    if !super::catalog::schema()?.has_field_tokens() {
        return Ok(0);
    }
    with_field_tokens(|client, p| {
        Ok(super::first_value(client.select(&p.count_under, None, &[super::version_bytes(versions)])?)?.unwrap_or(0))
    })
}

/// Replaces a field token's envelope and, when deduplicated, its value
/// hash (a rotation).
pub fn rekey_field_token(id: &Token, envelope: &[u8], value_hash: Option<(&IndexHash, u32)>) -> VaultResult<()> {
    let args = [
        super::uuid(id),
        envelope.into(),
        DatumWithOid::from(value_hash.map(|(h, _)| h.as_slice())),
        DatumWithOid::from(value_hash.map(|(_, v)| v as i32)),
    ];
    with_field_tokens(|client, p| client.update(&p.rekey, None, &args).map(drop))
}

/// A record's field tokens (for its subject's export): token, kind,
/// envelope, expiry.
pub fn field_tokens_of(record: &Token) -> VaultResult<Vec<(String, StoredFieldToken)>> {
    if !super::catalog::schema()?.has_field_tokens() {
        return Ok(Vec::new());
    }
    with_field_tokens(|client, p| {
        let table = client.select(&p.of_record, None, &[super::uuid(record)])?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            if let (Some(token), Some(kind), Some(envelope)) =
                (row.get::<String>(1)?, row.get::<String>(2)?, row.get::<Vec<u8>>(3)?)
            {
                let expires_at = row.get::<TimestampWithTimeZone>(4)?.map(i64::from);
                out.push((token, StoredFieldToken { kind, envelope, record: Some(*record), expires_at }));
            }
        }
        Ok(out)
    })
}
