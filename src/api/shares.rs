//! Shares: a temporary identity for some fields of one record.
//! `vault_share` gives a share id that reads those fields through
//! `vault_get_shared` until its time-to-live ends or `vault_unshare`
//! revokes it. Only a keyed hash of the id is stored (`crypto::blind_index::
//! id_hash`), under every loaded key version's index key in turn.

use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::Uuid;

use super::call::audited;
use super::guard;
use super::jsonb::JsonbDatum;
use super::records::{open_record, outcome_of, project};
use crate::audit::{Operation, Outcome};
use crate::crypto::{blind_index::id_hash, KeySet};
use crate::error::{VaultError, VaultResult};
use crate::guc;
use crate::store::{self, IndexHash, Seen};

const SHARE: &str = "share";

/// A time-to-live in seconds, refused (22023) unless positive and at most
/// `max` seconds (the setting named). `as_micros` counts a day as 24
/// hours and a month as 30 days, as PostgreSQL's epoch of an interval does.
pub(crate) fn ttl_seconds(ttl: &Interval, setting: &'static str, max: i32) -> VaultResult<f64> {
    let seconds = ttl.as_micros() as f64 / 1e6;
    match seconds > 0.0 && seconds <= f64::from(max) {
        true => Ok(seconds),
        false => Err(VaultError::BadTtl { setting, seconds: max }),
    }
}

/// The id's hash under every loaded version, the active one first.
fn hashes(keys: &KeySet, id: &[u8; 16]) -> Vec<IndexHash> {
    std::iter::once(keys.active()).chain(keys.others()).map(|ring| id_hash(ring, SHARE, id)).collect()
}

/// A new share of `fields` of the record, readable for `ttl`; NULL when
/// there is no such record.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_share(token: Uuid, fields: Vec<Option<String>>, ttl: Interval) -> Option<Uuid> {
    audited(Operation::Share, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        let fields: Vec<String> =
            fields.into_iter().map(|f| f.ok_or(VaultError::NullFieldName)).collect::<Result<_, _>>()?;
        if fields.is_empty() {
            return Err(VaultError::NoFields);
        }
        call.name_fields(fields)?;
        let keys = guard::ready()?;
        let ttl = ttl_seconds(&ttl, "pii_vault.max_share_ttl", guc::max_share_ttl_seconds())?;
        call.count_write()?;
        let id = super::shards::new_token()?;
        let hash = id_hash(keys.active(), SHARE, &id);
        let fields = call.fields.as_deref().unwrap_or_default();
        if store::insert_share(&hash, keys.active().key_version(), &token, fields, ttl)? {
            Ok(Some(Uuid::from_bytes(id)))
        } else {
            call.outcome = outcome_of(&store::token_seen(&token)?);
            Ok(None)
        }
    })
}

/// The shared fields of the record, or NULL once the share expired, was
/// revoked, or its record is gone (deleted, expired, erased). Counts as a
/// read of the record.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_get_shared(share: Uuid) -> Option<JsonbDatum> {
    audited(Operation::GetShared, |call| {
        let keys = guard::ready()?;
        call.check_purpose()?;
        call.count_read()?;
        let found = store::find_share(&hashes(keys, share.as_bytes()))?;
        call.outcome = outcome_of(&found);
        let Some(share) = found.live() else {
            return Ok(None);
        };
        // The audit names the record read and the fields it gave, never
        // the share id (whoever reads the audit could use it).
        call.token = Some(share.token);
        call.fields = Some(share.fields);
        let record = store::with_envelope(&share.token, |sealed| open_record(keys, &share.token, sealed))?;
        if !matches!(record, Seen::Live(_)) {
            call.outcome = outcome_of(&record);
        }
        let Some(full) = record.live().transpose()? else {
            return Ok(None);
        };
        project(&full, call.fields.as_deref().unwrap_or_default()).map(Some)
    })
}

/// Revokes a share at once; false when there is no such share.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_unshare(share: Uuid) -> bool {
    audited(Operation::Unshare, |call| {
        let keys = guard::ready()?;
        call.count_write()?;
        match store::delete_share(&hashes(keys, share.as_bytes()))? {
            Some((token, expired)) => {
                call.token = Some(token);
                if expired {
                    call.outcome = Outcome::Expired;
                }
                Ok(!expired)
            }
            None => {
                call.outcome = Outcome::NotFound;
                Ok(false)
            }
        }
    })
}
