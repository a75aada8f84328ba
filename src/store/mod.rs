//! Storage: the only code that runs SQL against the vault's tables.
//!
//! Every statement is prepared once per backend (kept with SPI_keepplan)
//! and executed with parameters; no SQL text is ever built from values.
//! Callers run inside SECURITY DEFINER functions with a pinned search_path,
//! and every name here is schema-qualified as well. The hot one-row reads
//! (`with_envelope`, `find_token`, `token_exists`) skip SPI and probe the
//! unique indexes directly (`index_read`).

mod index_read;
mod plans;
mod unique;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiResult, SpiTupleTable};
use pgrx::Uuid;

use crate::crypto::blind_index::BLIND_INDEX_LEN;
use crate::normalize::LookupKind;
use index_read::{read_unique, token_by_index, RecordsIndex};
use plans::with_plans;

pub type Token = [u8; 16];
pub type IndexHash = [u8; BLIND_INDEX_LEN];

/// The blind-index hashes of one record, one slot per indexed kind.
#[derive(Debug, Default, Clone)]
pub struct IndexHashes {
    pub email: Option<IndexHash>,
    pub phone: Option<IndexHash>,
    pub login: Option<IndexHash>,
}

impl IndexHashes {
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.phone.is_none() && self.login.is_none()
    }

    pub fn set(&mut self, kind: LookupKind, hash: IndexHash) {
        match kind {
            LookupKind::Email => self.email = Some(hash),
            LookupKind::Phone => self.phone = Some(hash),
            LookupKind::Login => self.login = Some(hash),
            LookupKind::Token => {}
        }
    }

    fn args(&self) -> [DatumWithOid<'_>; 3] {
        [
            DatumWithOid::from(self.email.as_ref().map(|h| h.as_slice())),
            DatumWithOid::from(self.phone.as_ref().map(|h| h.as_slice())),
            DatumWithOid::from(self.login.as_ref().map(|h| h.as_slice())),
        ]
    }
}

/// The first column of the first row, or None when there is no row.
fn first_value<T: FromDatum + IntoDatum>(table: SpiTupleTable<'_>) -> SpiResult<Option<T>> {
    if table.is_empty() {
        Ok(None)
    } else {
        table.first().get(1)
    }
}

fn uuid(token: &Token) -> DatumWithOid<'static> {
    DatumWithOid::from(Uuid::from_bytes(*token))
}

/// Inserts a new record. A lookup value another record has (or, with
/// odds of 2^-122, its token) goes to `duplicate`, which raises.
pub fn insert_record(token: &Token, envelope: &[u8], hashes: &IndexHashes, duplicate: fn(LookupKind) -> !) {
    let [e, p, l] = hashes.args();
    let args = [uuid(token), envelope.into(), e, p, l];
    unique::duplicates_raised_as(
        || with_plans(|client, plans| client.update(&plans.insert_record, None, &args).map(drop)),
        duplicate,
    )
}

/// Calls `f` with the stored envelope of a record (borrowed, not copied);
/// None when there is no such record.
pub fn with_envelope<R>(token: &Token, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    // SAFETY: the slot holds a row of pii_vault.records; envelope is bytea.
    read_unique(RecordsIndex::Token, token_datum(token), |slot| unsafe {
        index_read::with_bytea_column(slot, index_read::ENVELOPE_COLUMN, f)
    })
    .flatten()
}

fn token_datum(token: &Token) -> pg_sys::Datum {
    Uuid::from_bytes(*token).into_datum().expect("a uuid is never NULL")
}

/// The stored envelope of a record, row-locked until the transaction ends.
pub fn fetch_envelope_for_update(token: &Token) -> Option<Vec<u8>> {
    with_plans(|client, plans| first_value(client.update(&plans.fetch_envelope_for_update, Some(1), &[uuid(token)])?))
}

/// The token whose `kind` blind index equals `hash`.
pub fn find_token(kind: LookupKind, hash: &IndexHash) -> Option<Token> {
    let index = match kind {
        LookupKind::Email => RecordsIndex::Email,
        LookupKind::Phone => RecordsIndex::Phone,
        LookupKind::Login => RecordsIndex::Login,
        LookupKind::Token => unreachable!("tokens are not blind-indexed"),
    };
    let key = hash.as_slice().into_datum().expect("a hash is never NULL");
    token_by_index(index, key)
}

pub fn token_exists(token: &Token) -> bool {
    token_by_index(RecordsIndex::Token, token_datum(token)).is_some()
}

/// Replaces a record's envelope and blind indexes; false when there is no
/// such record. A lookup value another record has goes to `duplicate`,
/// which raises.
pub fn update_record(token: &Token, envelope: &[u8], hashes: &IndexHashes, duplicate: fn(LookupKind) -> !) -> bool {
    let [e, p, l] = hashes.args();
    let args = [uuid(token), envelope.into(), e, p, l];
    unique::duplicates_raised_as(
        || with_plans(|client, plans| Ok(client.update(&plans.update_record, None, &args)?.len() == 1)),
        duplicate,
    )
}

pub fn delete_record(token: &Token) -> bool {
    with_plans(|client, plans| Ok(client.update(&plans.delete_record, None, &[uuid(token)])?.len() == 1))
}

/// Every (token, envelope), for the bulk export.
pub fn all_envelopes() -> Vec<(Token, Vec<u8>)> {
    with_plans(|client, _plans| {
        let table =
            client.select("SELECT token, envelope FROM pii_vault.records ORDER BY created_at, token", None, &[])?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            if let (Some(token), Some(envelope)) = (row.get::<Uuid>(1)?, row.get::<Vec<u8>>(2)?) {
                out.push((*token.as_bytes(), envelope));
            }
        }
        Ok(out)
    })
}

/// The key check value stored at CREATE EXTENSION for `key_version`.
pub fn key_check_value(key_version: u32) -> Option<Vec<u8>> {
    with_plans(|client, plans| {
        first_value(client.select(&plans.key_check_value, Some(1), &[(key_version as i32).into()])?)
    })
}

/// Stores the key check value (install time only).
pub fn insert_key_check(key_version: u32, check_value: &[u8]) {
    Spi::connect_mut(|client| {
        client.update(
            "INSERT INTO pii_vault.key_check (key_version, check_value) VALUES ($1, $2)",
            None,
            &[(key_version as i32).into(), check_value.into()],
        )?;
        SpiResult::Ok(())
    })
    .unwrap_or_else(|e| error!("pii_vault: could not store the key check value: {e}"))
}
