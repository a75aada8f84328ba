//! Calls on many records at once: vault_get_many, vault_lookup_many,
//! vault_store_many, and the batches of `CALL vault_migrate`.
//!
//! Each element is what the single call would be: charged to the same
//! budgets, all before the first is read (past a budget, 54000 and
//! nothing read), and audited as its own event (an investigation sees
//! every record a call returned), the events queued in one reservation
//! when the call returns (`Call::elements`).

use std::collections::HashSet;

use pgrx::prelude::*;
use pgrx::Uuid;

use super::call::{audited, Call, Element};
use super::errors::sqlstate_text;
use super::guard;
use super::jsonb::JsonbDatum;
use super::lookup::{probe, wanted, Wanted};
use super::records::{open_record, outcome_of, project, seal_new, timestamp_micros};
use crate::audit::{Operation, Outcome};
use crate::crypto::KeySet;
use crate::error::{VaultError, VaultResult};
use crate::normalize::{IndexedKind, LookupKind};
use crate::store::{self, IndexHash, Seen, Token};
use crate::throttle::Kind;

/// The most elements one call takes, whatever the budgets: a page, a
/// batch, well under the audit queue's reservations.
pub(crate) const MAX_ELEMENTS: usize = 1000;

fn bounded<T>(elements: Vec<T>) -> VaultResult<Vec<T>> {
    match elements.len() > MAX_ELEMENTS {
        true => Err(VaultError::TooManyElements(MAX_ELEMENTS)),
        false => Ok(elements),
    }
}

/// The records of `tokens` (NULL elements skipped), each once per time it
/// is named, in the array's order; only `fields` of each when given. A
/// token with no live record returns no row (its event says why).
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_get_many(
    tokens: Option<Vec<Option<Uuid>>>,
    fields: default!(Option<Vec<Option<String>>>, "NULL"),
) -> TableIterator<'static, (name!(token, Uuid), name!(record, JsonbDatum))> {
    let rows = audited(Operation::Get, |call| {
        let tokens: Vec<Token> =
            bounded(tokens.unwrap_or_default().into_iter().flatten().map(|t| *t.as_bytes()).collect())?;
        let fields: Option<Vec<String>> = fields
            .map(|f| f.into_iter().map(|f| f.ok_or(VaultError::NullFieldName)).collect::<Result<_, _>>())
            .transpose()?;
        if let Some(fields) = &fields {
            call.name_fields(fields.clone())?;
        }
        let keys = guard::ready()?;
        call.check_purpose()?;
        call.count_many(Kind::Reads, tokens.len())?;
        let mut elements: Vec<Element> = Vec::with_capacity(tokens.len());
        let mut rows = Vec::with_capacity(tokens.len());
        for token in tokens {
            let found = store::with_envelope(&token, |sealed| open_record(keys, &token, sealed))?;
            elements.push((Some(token), outcome_of(&found)));
            if let Some(record) = found.live().transpose()? {
                let record = match &fields {
                    Some(fields) => project(&record, fields)?,
                    None => record,
                };
                rows.push((Uuid::from_bytes(token), record));
            }
        }
        call.elements = Some(elements);
        Ok(rows)
    });
    TableIterator::new(rows)
}

/// The token of each of `values` (NULL elements skipped) found as a
/// `kind`, with the value as given; a value with no live record returns no
/// row. A value that does not normalize refuses the call (22023) before
/// anything is read.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_lookup_many(
    kind: &str,
    values: Vec<Option<String>>,
) -> TableIterator<'static, (name!(value, String), name!(token, Uuid))> {
    let rows = audited(Operation::Lookup, |call| {
        let keys = guard::ready()?;
        let kind = LookupKind::parse(kind)?;
        call.fields = Some(vec![kind.as_str().to_string()]);
        let values: Vec<String> = bounded(values.into_iter().flatten().collect())?;
        // Every value normalized before any is charged or probed.
        let wanted: Vec<Wanted> = values.iter().map(|v| wanted(kind, v)).collect::<VaultResult<_>>()?;
        call.check_purpose()?;
        call.count_many(Kind::Reads, values.len())?;
        let mut elements: Vec<Element> = Vec::with_capacity(values.len());
        let mut rows = Vec::new();
        for (value, wanted) in values.into_iter().zip(&wanted) {
            let (token, seen) = probe(keys, wanted)?;
            let found = token.filter(|_| !matches!(seen, Seen::Missing));
            elements.push((found, outcome_of(&seen)));
            if let (Some(token), Seen::Live(())) = (token, seen) {
                rows.push((value, Uuid::from_bytes(token)));
            }
        }
        call.elements = Some(elements);
        Ok(rows)
    });
    TableIterator::new(rows)
}

/// One row per element of a batch store: its position (from 1), and its
/// new token, or the SQLSTATE and message of why it was not stored.
type StoredRow = (i32, Option<Uuid>, Option<String>);

/// Whether an element's error is the element's own (its value is invalid,
/// too large, taken, or another shard's), so the batch goes on without it;
/// any other (a budget, the audit, the key, storage) ends the call.
fn element_error(error: &VaultError) -> bool {
    use VaultError::*;
    matches!(
        error,
        NotAnObject
            | MalformedJson
            | FieldNotString(_)
            | InvalidValue(_)
            | Duplicate(_)
            | RecordTooLarge { .. }
            | TooDeep { .. }
            | WrongShard { .. }
    )
}

/// Stores each of `records` as `vault_store` would, each in the caller's
/// transaction. An element that is not stored (NULL, invalid, a duplicate
/// of a stored record or of an earlier element) has its error in its row
/// and its event, and the others go on. `charged`: each element is a write
/// and each lookup value it sets a read (vault_store_many); a migration
/// (admin maintenance) is charged to no budget.
fn store_each(
    call: &mut Call,
    keys: &KeySet,
    records: Vec<Option<JsonbDatum>>,
    expires_at: Option<i64>,
    charged: bool,
) -> VaultResult<Vec<StoredRow>> {
    let records = bounded(records)?;
    if expires_at.is_some_and(|at| at <= store::now()) {
        return Err(VaultError::ExpiryInThePast);
    }
    if charged {
        call.count_many(Kind::Writes, records.len())?;
    }
    // Lookup values set by earlier elements: not yet visible to the
    // probes, and an insert meeting one fails the whole statement.
    let mut taken: HashSet<(IndexedKind, IndexHash)> = HashSet::new();
    let mut elements: Vec<Element> = Vec::with_capacity(records.len());
    let mut rows = Vec::with_capacity(records.len());
    for (i, record) in records.into_iter().enumerate() {
        let ord = i as i32 + 1;
        let prepared = record.ok_or(VaultError::NotAnObject).and_then(|record| {
            let new = seal_new(keys, &record, |kind, normalized| match charged {
                true => call.sets_lookup_value(kind, normalized),
                false => super::shards::check_owned(kind, normalized),
            })?;
            match IndexedKind::ALL.into_iter().find(|k| new.hashes.get(*k).is_some_and(|h| taken.contains(&(*k, *h)))) {
                Some(kind) => Err(VaultError::Duplicate(kind.into())),
                None => Ok(new),
            }
        });
        match prepared {
            Ok(new) => {
                store::insert_record(&new.token, &new.sealed, &new.hashes, expires_at)?;
                taken.extend(IndexedKind::ALL.into_iter().filter_map(|k| new.hashes.get(k).map(|h| (k, *h))));
                elements.push((Some(new.token), Outcome::Ok));
                rows.push((ord, Some(Uuid::from_bytes(new.token)), None));
            }
            Err(error) if element_error(&error) => {
                elements.push((None, error.outcome()));
                rows.push((ord, None, Some(format!("{}: {error}", sqlstate_text(&error)))));
            }
            Err(error) => return Err(error),
        }
    }
    call.elements = Some(elements);
    Ok(rows)
}

/// Stores many records in one call; see `store_each`. A duplicate that
/// only a concurrent transaction's commit reveals (the insert meets it)
/// fails the whole statement with 23505, as any statement error does.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_store_many(
    records: Option<Vec<Option<JsonbDatum>>>,
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> TableIterator<'static, (name!(ord, i32), name!(token, Option<Uuid>), name!(error, Option<String>))> {
    let rows = audited(Operation::Store, |call| {
        let keys = guard::ready()?;
        store_each(call, keys, records.unwrap_or_default(), expires_at.map(timestamp_micros), true)
    });
    TableIterator::new(rows)
}

/// One batch of `CALL vault_migrate` (admins only): stores each record as
/// `vault_store_many` does, charged to no budget (it is the admin's
/// maintenance), each audited as `migrate`.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_migrate_batch(
    records: Option<Vec<Option<JsonbDatum>>>,
) -> TableIterator<'static, (name!(ord, i32), name!(token, Option<Uuid>), name!(error, Option<String>))> {
    let rows = audited(Operation::Migrate, |call| {
        let keys = guard::ready()?;
        if !super::audit_functions::caller_is_admin() {
            return Err(VaultError::NotAdmin);
        }
        store_each(call, keys, records.unwrap_or_default(), None, false)
    });
    TableIterator::new(rows)
}
