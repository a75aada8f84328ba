//! vault_store, vault_get, vault_update, vault_delete.

use pgrx::prelude::*;
use pgrx::Uuid;

use super::call::audited;
use super::guard;
use super::jsonb::{JsonbDatum, TopLevelField};
use crate::audit::{self, Operation, Outcome};
use crate::crypto::envelope::{self, PayloadEncoding};
use crate::crypto::{blind_index::blind_index, KeyRing, KeySet};
use crate::error::VaultError;
use crate::error::VaultResult;
use crate::guc;
use crate::json_patch::{self, PatchError};
use crate::normalize::{normalize, normalize_as, Fold, IndexedKind, LookupKind};
use crate::record;
use crate::store::{self, IndexHashes, Seen, Token};

/// Blind-index hashes of a record's indexed fields under the active key
/// version. A field that is absent or null has none; any other non-string
/// is refused, as is a string that does not normalize (either could never
/// be looked up).
///
/// The unique indexes compare hashes of one version only, so while other
/// versions are loaded (a rotation under way) a value is also looked up
/// under each of them, and a record other than `own` holding it is a
/// duplicate. (`vault_rotate` moves a record's hashes and its envelope in
/// one row update, so every snapshot sees each record under exactly one
/// version: the probe under the old one, or the unique index under the new
/// one, catches it.)
/// `on_value` runs with each value, normalized, before it is probed: the
/// answer (a duplicate, or a value free) is what existence probing wants,
/// so each value the call sets is charged there, as a lookup of it would
/// be, before it is given (a store setting an email, a phone and a login
/// tests three values), and refused there when it is the routing kind's
/// and another shard owns it (`Call::sets_lookup_value`).
pub(crate) fn index_hashes(
    keys: &KeySet,
    record: &JsonbDatum,
    own: Option<&Token>,
    mut on_value: impl FnMut(IndexedKind, &str) -> VaultResult<()>,
) -> VaultResult<IndexHashes> {
    // Every field's type is checked before any value is normalized, so a
    // record with both faults reports the non-string one, whichever kind.
    let fields = record.top_level_fields(IndexedKind::ALL.map(IndexedKind::as_str))?;
    if let Some((kind, _)) = IndexedKind::ALL.into_iter().zip(&fields).find(|(_, f)| **f == TopLevelField::Other) {
        return Err(VaultError::FieldNotString(kind.into()));
    }
    let mut hashes = IndexHashes::default();
    for (kind, field) in IndexedKind::ALL.into_iter().zip(fields) {
        // Absent and null fields have nothing to index.
        if let TopLevelField::String(value) = field {
            let normalized = normalize(kind, value, guard::region()?)?;
            on_value(kind, &normalized)?;
            let active = blind_index(keys.active(), kind, &normalized);
            hashes.set(kind, active);
            let older = keys.others().map(|ring| blind_index(ring, kind, &normalized));
            match store::find_token(kind, std::iter::once(active).chain(older))? {
                Some((holder, _)) if Some(&holder) == own => {}
                Some((_, Seen::Live(()))) => return Err(VaultError::Duplicate(kind.into())),
                // An expired record that still holds the value: for the
                // API it is gone, so its value is free. Its lookup values
                // are released now; the rest stays for the delete grace.
                Some((holder, Seen::Expired | Seen::Missing)) => release_lookups(&holder)?,
                None => {}
            }
        }
    }
    Ok(hashes)
}

/// Frees an expired record's lookup values in the caller's transaction
/// (audited as `expire`); the purge worker removes the record once the
/// delete grace has passed since it expired.
fn release_lookups(token: &Token) -> VaultResult<()> {
    match store::release_lookups(token)? && !audit::record(Operation::Expire, Some(token), None, Outcome::Ok) {
        true => Err(VaultError::AuditUnavailable),
        false => Ok(()),
    }
}

/// The audit outcome of a record the API did not find live.
pub(crate) fn outcome_of<R>(seen: &Seen<R>) -> Outcome {
    match seen {
        Seen::Live(_) => Outcome::Ok,
        Seen::Expired => Outcome::Expired,
        Seen::Missing => Outcome::NotFound,
    }
}

/// A stored record's blind indexes recomputed under `to` (the active
/// version for `vault_rotate`; the record's own for the upgrade's re-fold).
pub(crate) struct Reindexed {
    pub hashes: IndexHashes,
    /// The emails and logins indexed as releases before 0.3.1 folded them
    /// (NFC and lowercase) whose identity is now another value (a
    /// look-alike, `ａｄｍｉｎ`, is now `admin`): each kind with the value it
    /// is now indexed under (its hash in `hashes`). Another record may hold
    /// that value (`holder_of` tells).
    pub refolded: Vec<(IndexedKind, String)>,
}

/// The blind indexes of a stored record as they stand now, or the first
/// kind whose value does not normalize to what it was indexed under
/// (`stored`, computed under `from`, the record's version): a value an
/// earlier release's laxer normalizer accepted (since 0.3.1 a login or
/// local part that mixes scripts), or a national phone number after
/// `pii_vault.default_region` changed (no longer valid, or valid as
/// another country's number). Such a record keeps its index entries:
/// moving them would hide it from lookups of the value it was stored under
/// and let a duplicate in. An unchanged value needs no duplicate probe
/// (the unique indexes saw to that when it was stored); a refolded one
/// does.
pub(crate) fn reindexed(
    from: &KeyRing,
    to: &KeyRing,
    record: &JsonbDatum,
    stored: &IndexHashes,
) -> VaultResult<Result<Reindexed, IndexedKind>> {
    let fields = record.top_level_fields(IndexedKind::ALL.map(IndexedKind::as_str))?;
    let mut out = Reindexed { hashes: IndexHashes::default(), refolded: Vec::new() };
    for (kind, field) in IndexedKind::ALL.into_iter().zip(fields) {
        match field {
            TopLevelField::String(value) => {
                let region = guard::region()?;
                let indexed_as = |normalized: &str| stored.get(kind) == Some(&blind_index(from, kind, normalized));
                let Ok(now) = normalize(kind, value, region) else {
                    return Ok(Err(kind));
                };
                if !indexed_as(&now) {
                    let before = normalize_as(kind, value, region, Fold::Legacy).ok();
                    if before.as_ref().is_none_or(|before| *before == now || !indexed_as(before)) {
                        return Ok(Err(kind));
                    }
                    out.refolded.push((kind, now.clone()));
                }
                out.hashes.set(kind, blind_index(to, kind, &now));
            }
            TopLevelField::Other => return Ok(Err(kind)),
            TopLevelField::Absent | TopLevelField::Null => {}
        }
    }
    Ok(Ok(out))
}

/// The record other than `own` that holds one of `values` under any loaded
/// key version (live or expired: an expired one still holds it until the
/// purge), with that value's kind.
pub(crate) fn holder_of(
    keys: &KeySet,
    own: &Token,
    values: &[(IndexedKind, String)],
) -> VaultResult<Option<(IndexedKind, Token)>> {
    for (kind, normalized) in values {
        let rings = std::iter::once(keys.active()).chain(keys.others());
        match store::find_token(*kind, rings.map(|ring| blind_index(ring, *kind, normalized)))? {
            Some((holder, _)) if holder != *own => return Ok(Some((*kind, holder))),
            Some(_) | None => {}
        }
    }
    Ok(None)
}

/// The decrypted record of `token` as a jsonb datum, decrypted straight
/// into the datum's memory.
pub(crate) fn open_record(keys: &KeySet, token: &Token, envelope_bytes: &[u8]) -> VaultResult<JsonbDatum> {
    let len = envelope::plaintext_len(envelope_bytes).ok_or(VaultError::DecryptFailed)?;
    // Every envelope holds jsonb's binary form (the one encoding there is).
    let (datum, opened) = JsonbDatum::filled_by(len, |bytes| envelope::open_into(keys, token, envelope_bytes, bytes));
    match opened? {
        PayloadEncoding::JsonbBinary => Ok(datum),
        PayloadEncoding::Utf8Text => Err(VaultError::DecryptFailed),
    }
}

/// Stores a record and returns its new token.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_store(record: JsonbDatum) -> Uuid {
    store_record(record, None)
}

/// Stores a record that expires at `expires_at` (NULL: never).
#[pg_extern(name = "vault_store", volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_store_expiring(record: Option<JsonbDatum>, expires_at: Option<TimestampWithTimeZone>) -> Option<Uuid> {
    Some(store_record(record?, expires_at.map(timestamp_micros)))
}

pub(crate) fn timestamp_micros(at: TimestampWithTimeZone) -> i64 {
    let datum = at.into_datum().expect("a timestamptz is never NULL");
    datum.value() as i64
}

fn store_record(record: JsonbDatum, expires_at: Option<i64>) -> Uuid {
    audited(Operation::Store, |call| {
        let keys = guard::ready()?;
        // Every store adds a row, its WAL and an audit event, whatever it
        // holds: it counts against the write budgets.
        call.count_write()?;
        if expires_at.is_some_and(|at| at <= store::now()) {
            return Err(VaultError::ExpiryInThePast);
        }
        let token = insert_new(keys, &record, expires_at, |kind, normalized| call.sets_lookup_value(kind, normalized))?;
        // Only a token that exists is named in the audit.
        call.token = Some(token);
        Ok(Uuid::from_bytes(token))
    })
}

/// A new record sealed and indexed, not yet inserted.
pub(crate) struct Sealed {
    pub token: Token,
    pub sealed: Vec<u8>,
    pub hashes: IndexHashes,
}

/// Seals a new record (its size checked, its lookup values indexed with
/// `on_value` as `index_hashes` says) under a new token. Nothing is
/// written yet: an error here leaves the transaction as it was.
pub(crate) fn seal_new(
    keys: &KeySet,
    record: &JsonbDatum,
    on_value: impl FnMut(IndexedKind, &str) -> VaultResult<()>,
) -> VaultResult<Sealed> {
    guard::check_size(record.payload().len())?;
    let hashes = index_hashes(keys, record, None, on_value)?;
    let token = super::shards::new_token()?;
    let sealed = envelope::seal(keys.active(), &token, PayloadEncoding::JsonbBinary, record.payload())?;
    Ok(Sealed { token, sealed, hashes })
}

/// Seals and inserts a new record; its token. A duplicate the insert
/// itself meets (a concurrent store committed first) has failed the
/// statement (`store::insert_record`).
pub(crate) fn insert_new(
    keys: &KeySet,
    record: &JsonbDatum,
    expires_at: Option<i64>,
    on_value: impl FnMut(IndexedKind, &str) -> VaultResult<()>,
) -> VaultResult<Token> {
    let new = seal_new(keys, record, on_value)?;
    store::insert_record(&new.token, &new.sealed, &new.hashes, expires_at)?;
    Ok(new.token)
}

/// The whole record, or NULL when there is no such token.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_get(token: Uuid) -> Option<JsonbDatum> {
    audited(Operation::Get, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        let keys = guard::ready()?;
        call.check_purpose()?;
        call.count_read()?;
        let record = store::with_envelope(&token, |sealed| open_record(keys, &token, sealed))?;
        call.outcome = outcome_of(&record);
        record.live().transpose()
    })
}

/// Only the named top-level fields of the record (absent ones are skipped).
#[pg_extern(name = "vault_get", strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_get_fields(token: Uuid, fields: Vec<Option<String>>) -> Option<JsonbDatum> {
    audited(Operation::Get, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        let fields: Vec<String> =
            fields.into_iter().map(|f| f.ok_or(VaultError::NullFieldName)).collect::<Result<_, _>>()?;
        call.name_fields(fields)?;
        let keys = guard::ready()?;
        call.check_purpose()?;
        call.count_read()?;
        let found = store::with_envelope(&token, |sealed| open_record(keys, &token, sealed))?;
        call.outcome = outcome_of(&found);
        let Some(full) = found.live().transpose()? else {
            return Ok(None);
        };
        project(&full, call.fields.as_deref().unwrap_or_default()).map(Some)
    })
}

/// The named top-level fields of a record (absent ones skipped).
pub(crate) fn project(full: &JsonbDatum, fields: &[String]) -> VaultResult<JsonbDatum> {
    guard::check_text_size(full)?;
    let full_text = full.to_text()?;
    JsonbDatum::from_text(&record::project(&full_text, fields)?)
}

/// Applies an RFC 7386 merge patch; false when there is no such token.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_update(token: Uuid, patch: JsonbDatum) -> bool {
    audited(Operation::Update, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        let keys = guard::ready()?;
        call.count_write()?;
        guard::check_size(patch.payload().len())?;
        guard::check_text_size(&patch)?;
        let patch_text = patch.to_text()?;
        let names = record::top_level_names(&patch_text)?;
        call.name_fields(names)?;
        let found = store::fetch_envelope_for_update(&token)?;
        call.outcome = outcome_of(&found);
        let Some(sealed) = found.live() else {
            return Ok(false);
        };
        let current = open_record(keys, &token, &sealed)?;
        guard::check_text_size(&current)?;
        let current_text = current.to_text()?;
        let new_text = record::merge_patch_text(&current_text, &patch_text)?;
        replace_record(call, keys, &token, &new_text)
    })
}

/// Applies an RFC 6902 JSON Patch (add, remove, replace, move, copy,
/// test) as one change: any operation that fails (a `test` that does not
/// hold, a path that is not there) changes nothing (22023). The audit
/// names the top-level fields the operations touched; lookup values, budgets
/// and the audit go as for `vault_update`. False when there is no such
/// token.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_patch(token: Uuid, ops: JsonbDatum) -> bool {
    audited(Operation::Patch, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        let keys = guard::ready()?;
        call.count_write()?;
        guard::check_size(ops.payload().len())?;
        guard::check_text_size(&ops)?;
        let ops_text = ops.to_text()?;
        let found = store::fetch_envelope_for_update(&token)?;
        call.outcome = outcome_of(&found);
        let Some(sealed) = found.live() else {
            return Ok(false);
        };
        let current = open_record(keys, &token, &sealed)?;
        guard::check_text_size(&current)?;
        let (new_text, touched) = json_patch::apply_text(&current.to_text()?, &ops_text).map_err(|e| match e {
            PatchError::MalformedJson => VaultError::MalformedJson,
            PatchError::TooDeep => VaultError::TooDeep { limit: record::MAX_PATCH_DEPTH },
            other => VaultError::Patch(other),
        })?;
        call.name_fields(touched)?;
        replace_record(call, keys, &token, &new_text)
    })
}

/// Replaces a live record (row-locked by the caller) with `new_text`: each
/// lookup value among the fields the call names is probed and charged (the
/// record's other values are its own already), then the record is resealed.
/// False when it is gone meanwhile.
fn replace_record(call: &mut super::call::Call, keys: &KeySet, token: &Token, new_text: &str) -> VaultResult<bool> {
    let new_record = JsonbDatum::from_text(new_text)?;
    guard::check_size(new_record.payload().len())?;
    let changed: Vec<IndexedKind> = call
        .fields
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|name| LookupKind::parse(name).ok().and_then(LookupKind::indexed))
        .collect();
    let hashes = index_hashes(keys, &new_record, Some(token), |kind, normalized| match changed.contains(&kind) {
        true => call.sets_lookup_value(kind, normalized),
        false => Ok(()),
    })?;
    let resealed = envelope::seal(keys.active(), token, PayloadEncoding::JsonbBinary, new_record.payload())?;
    let updated = store::update_record(token, &resealed, &hashes)?;
    if !updated {
        call.outcome = Outcome::NotFound;
    }
    Ok(updated)
}

/// Deletes a record: invisible at once, restorable by `vault_restore` for
/// `pii_vault.delete_grace`, removed by the purge worker after (at once
/// when the grace is 0). False when there is no such record.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_delete(token: Uuid) -> bool {
    audited(Operation::Delete, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        guard::ready()?;
        call.count_write()?;
        let deleted = store::delete_record(&token, guc::delete_grace_seconds() == 0)?;
        if !deleted {
            call.outcome = outcome_of(&store::token_seen(&token)?);
        }
        Ok(deleted)
    })
}

/// Sets (or, with NULL, clears) a record's expiry; false when there is no
/// such record.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_set_expiry(token: Option<Uuid>, expires_at: Option<TimestampWithTimeZone>) -> Option<bool> {
    let token = *token?.as_bytes();
    Some(audited(Operation::SetExpiry, |call| {
        call.token = Some(token);
        guard::ready()?;
        call.count_write()?;
        let expires_at = expires_at.map(timestamp_micros);
        if expires_at.is_some_and(|at| at <= store::now()) {
            return Err(VaultError::ExpiryInThePast);
        }
        let set = store::set_expiry(&token, expires_at)?;
        if !set {
            call.outcome = outcome_of(&store::token_seen(&token)?);
        }
        Ok(set)
    }))
}

/// Brings back a record deleted or expired less than
/// `pii_vault.delete_grace` ago, with its lookup values (23505 when another
/// record took one of them meanwhile) and without its passed expiry;
/// false when there is no such record.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_restore(token: Uuid) -> bool {
    audited(Operation::Restore, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        let keys = guard::ready()?;
        call.count_write()?;
        let found = store::fetch_deleted_for_update(&token, f64::from(guc::delete_grace_seconds()))?;
        call.outcome = outcome_of(&found);
        let Some(sealed) = found.live() else {
            return Ok(false);
        };
        let record = open_record(keys, &token, &sealed)?;
        // Its values were this shard's when they were set.
        let hashes = index_hashes(keys, &record, Some(&token), |_, _| call.count_lookup_probe())?;
        store::restore_record(&token, &hashes)
    })
}

/// Erases a subject at once: the record (live, expired or deleted) and
/// everything attached to it. The audit keeps an `erase` event naming the
/// token, no value. False when there is no such record.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_erase(token: Uuid) -> bool {
    audited(Operation::Erase, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        guard::ready()?;
        call.count_write()?;
        let erased = store::erase_record(&token)?;
        if !erased {
            call.outcome = Outcome::NotFound;
        }
        Ok(erased)
    })
}
