//! vault_store, vault_get, vault_update, vault_delete.

use pgrx::prelude::*;
use pgrx::Uuid;

use super::call::audited;
use super::errors::{raise, OrRaise};
use super::guard;
use super::jsonb::{JsonbDatum, TopLevelField};
use crate::audit::{Operation, Outcome};
use crate::crypto::envelope::{self, PayloadEncoding};
use crate::crypto::{blind_index::blind_index, random_token, KeyRing, KeySet};
use crate::error::VaultError;
use crate::normalize::{normalize, LookupKind};
use crate::record;
use crate::store::{self, IndexHashes, Token};

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
pub(crate) fn index_hashes(keys: &KeySet, record: &JsonbDatum, own: Option<&Token>) -> IndexHashes {
    // Every field's type is checked before any value is normalized, so a
    // record with both faults reports the non-string one, whichever kind.
    let fields = record.top_level_fields(LookupKind::INDEXED.map(|kind| kind.as_str())).or_raise();
    if let Some((kind, _)) = LookupKind::INDEXED.into_iter().zip(&fields).find(|(_, f)| **f == TopLevelField::Other) {
        raise(VaultError::FieldNotString(kind));
    }
    let mut hashes = IndexHashes::default();
    for (kind, field) in LookupKind::INDEXED.into_iter().zip(fields) {
        // Absent and null fields have nothing to index.
        if let TopLevelField::String(value) = field {
            let normalized = normalize(kind, value, guard::region()).or_raise();
            hashes.set(kind, blind_index(keys.active(), kind, &normalized));
            let older = keys.others().map(|ring| blind_index(ring, kind, &normalized));
            if store::find_token(kind, older).is_some_and(|t| Some(&t) != own) {
                raise_duplicate(kind);
            }
        }
    }
    hashes
}

/// The blind-index hashes `vault_rotate` gives a stored record under the
/// active version, or the first kind whose value does not normalize to
/// what it was indexed under (`stored`, computed under `from`, the version
/// the record is moving from): a value an earlier release's laxer
/// normalizer accepted, or a national phone number after
/// `pii_vault.default_region` changed (no longer valid, or valid as
/// another country's number). Such a record is not moved: re-indexing it
/// would hide it from lookups of the value it was stored under and let a
/// duplicate in. No other record can hold a value this one holds (the
/// unique indexes saw to that when it was stored), so no duplicate probe
/// is needed.
pub(crate) fn rotated_index_hashes(
    keys: &KeySet,
    from: &KeyRing,
    record: &JsonbDatum,
    stored: &IndexHashes,
) -> Result<IndexHashes, LookupKind> {
    let fields = record.top_level_fields(LookupKind::INDEXED.map(|kind| kind.as_str())).or_raise();
    let mut hashes = IndexHashes::default();
    for (kind, field) in LookupKind::INDEXED.into_iter().zip(fields) {
        match field {
            TopLevelField::String(value) => {
                let normalized = normalize(kind, value, guard::region()).map_err(|_| kind)?;
                if stored.get(kind) != Some(&blind_index(from, kind, &normalized)) {
                    return Err(kind);
                }
                hashes.set(kind, blind_index(keys.active(), kind, &normalized));
            }
            TopLevelField::Other => return Err(kind),
            TopLevelField::Absent | TopLevelField::Null => {}
        }
    }
    Ok(hashes)
}

/// Another record has this lookup value (the store reports it mid-statement,
/// so this must not return).
fn raise_duplicate(kind: LookupKind) -> ! {
    raise(VaultError::Duplicate(kind))
}

/// The decrypted record of `token` as a jsonb datum, decrypted straight
/// into the datum's memory.
pub(crate) fn open_record(keys: &KeySet, token: &Token, envelope_bytes: &[u8]) -> JsonbDatum {
    let len = envelope::plaintext_len(envelope_bytes).ok_or(VaultError::DecryptFailed).or_raise();
    let (datum, encoding) =
        JsonbDatum::filled_by(len, |bytes| envelope::open_into(keys, token, envelope_bytes, bytes).or_raise());
    match encoding {
        PayloadEncoding::JsonbBinary => datum,
        PayloadEncoding::JsonText => {
            let text = std::str::from_utf8(datum.payload()).map_err(|_| VaultError::MalformedJson).or_raise();
            JsonbDatum::from_text(text).or_raise()
        }
    }
}

/// Stores a record and returns its new token.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_store(record: JsonbDatum) -> Uuid {
    audited(Operation::Store, |call| {
        let keys = guard::ready();
        guard::check_size(record.payload().len());
        let hashes = index_hashes(keys, &record, None);
        if !hashes.is_empty() {
            call.count_probe();
        }
        let token = random_token().or_raise();
        let sealed = envelope::seal(keys.active(), &token, PayloadEncoding::JsonbBinary, record.payload()).or_raise();
        store::insert_record(&token, &sealed, &hashes, raise_duplicate);
        // Only a token that exists is named in the audit.
        call.token = Some(token);
        Uuid::from_bytes(token)
    })
}

/// The whole record, or NULL when there is no such token.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_get(token: Uuid) -> Option<JsonbDatum> {
    audited(Operation::Get, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        let keys = guard::ready();
        call.count_read();
        let record = store::with_envelope(&token, |sealed| open_record(keys, &token, sealed));
        if record.is_none() {
            call.outcome = Outcome::NotFound;
        }
        record
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
            fields.into_iter().map(|f| f.ok_or(VaultError::NullFieldName)).collect::<Result<_, _>>().or_raise();
        call.name_fields(fields);
        let keys = guard::ready();
        call.count_read();
        let Some(full) = store::with_envelope(&token, |sealed| open_record(keys, &token, sealed)) else {
            call.outcome = Outcome::NotFound;
            return None;
        };
        guard::check_text_size(&full);
        let full_text = full.to_text().or_raise();
        let fields = call.fields.as_deref().unwrap_or_default();
        Some(JsonbDatum::from_text(&record::project(&full_text, fields).or_raise()).or_raise())
    })
}

/// Applies an RFC 7386 merge patch; false when there is no such token.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_update(token: Uuid, patch: JsonbDatum) -> bool {
    audited(Operation::Update, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        let keys = guard::ready();
        call.count_write();
        guard::check_size(patch.payload().len());
        guard::check_text_size(&patch);
        let patch_text = patch.to_text().or_raise();
        let names = record::top_level_names(&patch_text).or_raise();
        call.name_fields(names);
        let Some(sealed) = store::fetch_envelope_for_update(&token) else {
            call.outcome = Outcome::NotFound;
            return false;
        };
        let current = open_record(keys, &token, &sealed);
        guard::check_text_size(&current);
        let current_text = current.to_text().or_raise();
        let new_text = record::merge_patch_text(&current_text, &patch_text).or_raise();
        let new_record = JsonbDatum::from_text(&new_text).or_raise();
        guard::check_size(new_record.payload().len());
        let hashes = index_hashes(keys, &new_record, Some(&token));
        let sets_lookup_value = call
            .fields
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|name| LookupKind::parse(name).is_ok_and(|k| k != LookupKind::Token));
        if sets_lookup_value {
            call.count_probe();
        }
        let resealed =
            envelope::seal(keys.active(), &token, PayloadEncoding::JsonbBinary, new_record.payload()).or_raise();
        let updated = store::update_record(&token, &resealed, &hashes, raise_duplicate);
        if !updated {
            call.outcome = Outcome::NotFound;
        }
        updated
    })
}

/// Deletes a record and its blind indexes; false when there is no such token.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_delete(token: Uuid) -> bool {
    audited(Operation::Delete, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        guard::ready();
        call.count_write();
        let deleted = store::delete_record(&token);
        if !deleted {
            call.outcome = Outcome::NotFound;
        }
        deleted
    })
}
