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
mod subxact;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult, SpiTupleTable};
use pgrx::Uuid;

use crate::crypto::blind_index::BLIND_INDEX_LEN;
use crate::normalize::LookupKind;
use index_read::{read_unique, RecordsIndex};
use plans::{with_plans, Plans};

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

/// What an insert did.
pub enum InsertOutcome {
    Inserted,
    /// Another record already has this lookup value.
    Duplicate(LookupKind),
}

/// Inserts a new record, or reports which lookup value is taken. The UNIQUE
/// constraints decide (ON CONFLICT DO NOTHING), so two concurrent stores of
/// one email cannot both succeed.
pub fn insert_record(token: &Token, envelope: &[u8], hashes: &IndexHashes) -> InsertOutcome {
    with_plans(|client, plans| {
        let [e, p, l] = hashes.args();
        let inserted = client
            .update(&plans.insert_record, None, &[uuid(token), envelope.into(), e, p, l])?
            .len();
        if inserted == 1 {
            return Ok(InsertOutcome::Inserted);
        }
        // Only on the error path: find which value collided.
        let kind = conflicting_kind(client, plans, None, hashes)?;
        Ok(InsertOutcome::Duplicate(kind.unwrap_or(LookupKind::Token)))
    })
}

fn conflicting_kind(
    client: &SpiClient<'_>,
    plans: &Plans,
    excluding: Option<&Token>,
    hashes: &IndexHashes,
) -> SpiResult<Option<LookupKind>> {
    let [e, p, l] = hashes.args();
    let excluding = DatumWithOid::from(excluding.map(|t| Uuid::from_bytes(*t)));
    let kind: Option<String> =
        first_value(client.select(&plans.find_conflict, Some(1), &[excluding, e, p, l])?)?;
    Ok(kind.as_deref().and_then(|k| LookupKind::parse(k).ok()))
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
    with_plans(|client, plans| {
        first_value(client.update(&plans.fetch_envelope_for_update, Some(1), &[uuid(token)])?)
    })
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
    // SAFETY: the slot holds a row of pii_vault.records.
    read_unique(index, key, |slot| unsafe { index_read::token_column(slot) }).flatten()
}

pub fn token_exists(token: &Token) -> bool {
    read_unique(RecordsIndex::Token, token_datum(token), |_slot| ()).is_some()
}

/// What an update did.
pub enum UpdateOutcome {
    Updated,
    NotFound,
    /// Another record already has this lookup value.
    Duplicate(LookupKind),
}

/// Replaces a record's envelope and blind indexes. The UNIQUE constraints
/// decide on duplicates, inside a subtransaction so the violation can be
/// reported by kind.
pub fn update_record(token: &Token, envelope: &[u8], hashes: &IndexHashes) -> UpdateOutcome {
    with_plans(|client, plans| {
        let [e, p, l] = hashes.args();
        let args = [uuid(token), envelope.into(), e, p, l];
        let updated = subxact::catching(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION, || {
            client.update(&plans.update_record, None, &args).map(|t| t.len())
        });
        Ok(match updated {
            Ok(rows) => if rows? == 1 { UpdateOutcome::Updated } else { UpdateOutcome::NotFound },
            Err(message) => UpdateOutcome::Duplicate(kind_of_constraint(&message)),
        })
    })
}

/// The kind whose UNIQUE constraint a violation message names
/// (`records_email_index_key` and so on, see sql/storage.sql).
fn kind_of_constraint(message: &str) -> LookupKind {
    LookupKind::INDEXED
        .into_iter()
        .find(|kind| message.contains(&format!("records_{}_index_key", kind.as_str())))
        .unwrap_or(LookupKind::Token)
}

pub fn delete_record(token: &Token) -> bool {
    with_plans(|client, plans| {
        Ok(client.update(&plans.delete_record, None, &[uuid(token)])?.len() == 1)
    })
}

/// Every (token, envelope), for the bulk export.
pub fn all_envelopes() -> Vec<(Token, Vec<u8>)> {
    with_plans(|client, _plans| {
        let table = client.select("SELECT token, envelope FROM pii_vault.records ORDER BY created_at, token", None, &[])?;
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
