//! vault_store, vault_get, vault_update, vault_delete.

use pgrx::prelude::*;
use pgrx::Uuid;

use super::audit::{self, Outcome};
use super::errors::{raise, OrRaise};
use super::guard;
use super::jsonb::JsonbDatum;
use crate::crypto::envelope::{self, PayloadEncoding};
use crate::crypto::{blind_index::blind_index, random_token, KeyRing};
use crate::error::VaultError;
use crate::normalize::normalize;
use crate::record;
use crate::store::{self, IndexHashes, InsertOutcome, Token, UpdateOutcome};

/// Blind-index hashes of a record's indexed fields; refuses values that do
/// not normalize (they could never be looked up).
fn index_hashes(ring: &KeyRing, record_text: &str) -> IndexHashes {
    let mut hashes = IndexHashes::default();
    for (kind, value) in record::lookup_values(record_text).or_raise() {
        if let Some(value) = value {
            let normalized = normalize(kind, &value, guard::region()).or_raise();
            hashes.set(kind, blind_index(ring, kind, &normalized));
        }
    }
    hashes
}

/// The decrypted record of `token` as a jsonb datum.
fn open_record(ring: &KeyRing, token: &Token, envelope_bytes: &[u8]) -> JsonbDatum {
    let (encoding, plaintext) = envelope::open(ring, token, envelope_bytes).or_raise();
    match encoding {
        PayloadEncoding::JsonbBinary => JsonbDatum::from_payload(&plaintext),
        PayloadEncoding::JsonText => {
            let text = std::str::from_utf8(&plaintext).map_err(|_| VaultError::MalformedJson).or_raise();
            JsonbDatum::from_text(text).or_raise()
        }
    }
}

/// Stores a record and returns its new token.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_store(record: JsonbDatum) -> Uuid {
    let ring = guard::ready();
    guard::check_size(record.payload().len());
    let text = record.to_text().or_raise();
    let hashes = index_hashes(ring, &text);
    let token = random_token().or_raise();
    let sealed = envelope::seal(ring, &token, PayloadEncoding::JsonbBinary, record.payload()).or_raise();
    match store::insert_record(&token, &sealed, &hashes) {
        InsertOutcome::Inserted => {}
        InsertOutcome::Duplicate(kind) => raise(VaultError::Duplicate(kind)),
    }
    audit::record("store", Some(&token), None, Outcome::Ok);
    Uuid::from_bytes(token)
}

/// The whole record, or NULL when there is no such token.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_get(token: Uuid) -> Option<JsonbDatum> {
    let ring = guard::ready();
    let token = *token.as_bytes();
    let Some(sealed) = store::fetch_envelope(&token) else {
        audit::record("get", Some(&token), None, Outcome::NotFound);
        return None;
    };
    let record = open_record(ring, &token, &sealed);
    audit::record("get", Some(&token), None, Outcome::Ok);
    Some(record)
}

/// Only the named top-level fields of the record (absent ones are skipped).
#[pg_extern(name = "vault_get", strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_get_fields(token: Uuid, fields: Vec<Option<String>>) -> Option<JsonbDatum> {
    let ring = guard::ready();
    let token = *token.as_bytes();
    let fields: Vec<String> = fields
        .into_iter()
        .map(|f| f.ok_or(VaultError::NullFieldName))
        .collect::<Result<_, _>>()
        .or_raise();
    let Some(sealed) = store::fetch_envelope(&token) else {
        audit::record("get", Some(&token), Some(fields), Outcome::NotFound);
        return None;
    };
    let full_text = open_record(ring, &token, &sealed).to_text().or_raise();
    let projected = JsonbDatum::from_text(&record::project(&full_text, &fields).or_raise()).or_raise();
    audit::record("get", Some(&token), Some(fields), Outcome::Ok);
    Some(projected)
}

/// Applies an RFC 7386 merge patch; false when there is no such token.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_update(token: Uuid, patch: JsonbDatum) -> bool {
    let ring = guard::ready();
    let token = *token.as_bytes();
    guard::check_size(patch.payload().len());
    let patch_text = patch.to_text().or_raise();
    let patched_fields = record::top_level_names(&patch_text).or_raise();
    let Some(sealed) = store::fetch_envelope_for_update(&token) else {
        audit::record("update", Some(&token), Some(patched_fields), Outcome::NotFound);
        return false;
    };
    let current_text = open_record(ring, &token, &sealed).to_text().or_raise();
    let new_text = record::merge_patch_text(&current_text, &patch_text).or_raise();
    let new_record = JsonbDatum::from_text(&new_text).or_raise();
    guard::check_size(new_record.payload().len());
    let hashes = index_hashes(ring, &new_text);
    let resealed = envelope::seal(ring, &token, PayloadEncoding::JsonbBinary, new_record.payload()).or_raise();
    let outcome = match store::update_record(&token, &resealed, &hashes) {
        UpdateOutcome::Updated => Outcome::Ok,
        UpdateOutcome::NotFound => Outcome::NotFound,
        UpdateOutcome::Duplicate(kind) => raise(VaultError::Duplicate(kind)),
    };
    audit::record("update", Some(&token), Some(patched_fields), outcome);
    matches!(outcome, Outcome::Ok)
}

/// Deletes a record and its blind indexes; false when there is no such token.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_delete(token: Uuid) -> bool {
    guard::ready();
    let token = *token.as_bytes();
    let deleted = store::delete_record(&token);
    audit::record("delete", Some(&token), None, if deleted { Outcome::Ok } else { Outcome::NotFound });
    deleted
}
