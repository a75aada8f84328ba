//! Sessions (encrypted documents with a time-to-live, optionally of a
//! record) and application data (one encrypted document per record and
//! application). Each envelope is sealed like a record's, bound to the
//! stored columns that name it (`crypto::document_binding`), so an
//! envelope moved to another row or table fails authentication.

use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::Uuid;

use super::call::audited;
use super::guard;
use super::jsonb::JsonbDatum;
use super::records::{open_record, outcome_of};
use super::shares::ttl_seconds;
use crate::audit::{Operation, Outcome};
use crate::crypto::envelope::{self, PayloadEncoding};
use crate::crypto::{blind_index::id_hash, document_binding, KeySet};
use crate::error::{VaultError, VaultResult};
use crate::guc;
use crate::store::{self, IndexHash, Token};

const SESSION: &str = "session";
const APP_DATA: &str = "app_data";

/// What a session's envelope is bound to: its stored id hash, its record
/// (none: no bytes) and its expiry, so none can be changed under it (the
/// sessions table takes writes a `pg_write_all_data` member could make:
/// a session extended that way no longer opens).
pub(crate) fn session_binding(id_hash: &[u8], token: Option<&Token>, expires_at: i64) -> [u8; 16] {
    document_binding(SESSION, &[id_hash, token.map_or(&[][..], |t| &t[..]), &expires_at.to_be_bytes()])
}

/// What an application's document is bound to: its record and the
/// application's name.
pub(crate) fn app_data_binding(token: &Token, app: &str) -> [u8; 16] {
    document_binding(APP_DATA, &[token, app.as_bytes()])
}

/// A session id's hash under every loaded version, the active one first.
fn session_hashes(keys: &KeySet, id: &[u8; 16]) -> Vec<IndexHash> {
    std::iter::once(keys.active()).chain(keys.others()).map(|ring| id_hash(ring, SESSION, id)).collect()
}

/// Refuses a name (an application's, a consent's purpose) that is blank,
/// longer than 64 characters, or holds a control, invisible or format
/// character (two names that look alike would be two names).
pub(crate) fn check_name(name: &str, what: &'static str) -> VaultResult<()> {
    match name.chars().count() > 64 || !crate::normalize::is_visible_text(name) {
        true => Err(VaultError::BadName(what)),
        false => Ok(()),
    }
}

/// Stores a session document for `ttl` (at most `pii_vault.max_session_ttl`),
/// of the record `token` when given; its id, or NULL when `token` names no
/// record.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_session_store(
    data: Option<JsonbDatum>,
    ttl: Option<Interval>,
    token: default!(Option<Uuid>, "NULL"),
) -> Option<Uuid> {
    let (data, ttl) = (data?, ttl?);
    let token = token.map(|t| *t.as_bytes());
    audited(Operation::SessionStore, |call| {
        call.token = token;
        let keys = guard::ready()?;
        guard::check_size(data.payload().len())?;
        let ttl = ttl_seconds(&ttl, "pii_vault.max_session_ttl", guc::max_session_ttl_seconds())?;
        let expires_at = store::now() + (ttl * 1e6).round() as i64;
        call.count_write()?;
        let id = super::shards::new_token()?;
        let hash = id_hash(keys.active(), SESSION, &id);
        // The id is sealed with the document, so vault_sessions can list
        // a record's sessions; the row itself holds only its hash.
        let mut plaintext = zeroize::Zeroizing::new(Vec::with_capacity(16 + data.payload().len()));
        plaintext.extend_from_slice(&id);
        plaintext.extend_from_slice(data.payload());
        let sealed = envelope::seal(
            keys.active(),
            &session_binding(&hash, token.as_ref(), expires_at),
            PayloadEncoding::JsonbBinary,
            &plaintext,
        )?;
        if store::insert_session(&hash, keys.active().key_version(), token.as_ref(), &sealed, expires_at)? {
            Ok(Some(Uuid::from_bytes(id)))
        } else {
            call.outcome = match token {
                Some(token) => outcome_of(&store::token_seen(&token)?),
                None => Outcome::NotFound,
            };
            Ok(None)
        }
    })
}

/// The session id and document a stored session holds.
fn open_session(keys: &KeySet, stored: &store::StoredSession) -> VaultResult<([u8; 16], JsonbDatum)> {
    let binding = session_binding(&stored.id_hash, stored.token.as_ref(), stored.expires_at);
    let (encoding, plaintext) = envelope::open(keys, &binding, &stored.envelope)?;
    if encoding != PayloadEncoding::JsonbBinary || plaintext.len() < 16 {
        return Err(VaultError::DecryptFailed);
    }
    let (id, document) = plaintext.split_at(16);
    let (datum, ()) = JsonbDatum::filled_by(document.len(), |bytes| bytes.copy_from_slice(document));
    Ok((id.try_into().expect("16 bytes"), datum))
}

/// A session's document, or NULL once it expired, was deleted, or its
/// record is gone (deleted, expired, erased). Counts as a read.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_session_get(session: Uuid) -> Option<JsonbDatum> {
    audited(Operation::SessionGet, |call| {
        let keys = guard::ready()?;
        call.check_purpose()?;
        call.count_read()?;
        let Some((token, found)) = store::find_session(&session_hashes(keys, session.as_bytes()))? else {
            call.outcome = Outcome::NotFound;
            return Ok(None);
        };
        // The audit names the record whose session this is, read or not.
        call.token = token;
        call.outcome = outcome_of(&found);
        let Some(stored) = found.live() else {
            return Ok(None);
        };
        let (id, document) = open_session(keys, &stored)?;
        if &id != session.as_bytes() {
            return Err(VaultError::DecryptFailed);
        }
        Ok(Some(document))
    })
}

/// Deletes a session at once; false when there is no such (live) session,
/// or its record is deleted or expired (a deleted record's sessions come
/// back with it).
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_session_delete(session: Uuid) -> bool {
    audited(Operation::SessionDelete, |call| {
        let keys = guard::ready()?;
        call.count_write()?;
        match store::delete_session(&session_hashes(keys, session.as_bytes()))? {
            Some((token, expired)) => {
                call.token = token;
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

/// The ids of a live record's live sessions, oldest first. Counts as one
/// read.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_sessions(token: Uuid) -> SetOfIterator<'static, Uuid> {
    let ids = audited(Operation::Sessions, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        let keys = guard::ready()?;
        call.check_purpose()?;
        call.count_read()?;
        let seen = store::token_seen(&token)?;
        call.outcome = outcome_of(&seen);
        if seen.live().is_none() {
            return Ok(Vec::new());
        }
        store::sessions_of(&token)?
            .iter()
            .map(|stored| Ok(Uuid::from_bytes(open_session(keys, stored)?.0)))
            .collect::<VaultResult<Vec<_>>>()
    });
    SetOfIterator::new(ids)
}

/// Sets the application's document of a record; false when there is no
/// such record.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_appdata_set(token: Uuid, app: &str, data: JsonbDatum) -> bool {
    audited(Operation::AppDataSet, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        check_name(app, "application name")?;
        call.fields = Some(vec![app.to_string()]);
        let keys = guard::ready()?;
        guard::check_size(data.payload().len())?;
        call.count_write()?;
        let sealed = envelope::seal(
            keys.active(),
            &app_data_binding(&token, app),
            PayloadEncoding::JsonbBinary,
            data.payload(),
        )?;
        let set = store::set_app_data(&token, app, &sealed)?;
        if !set {
            call.outcome = outcome_of(&store::token_seen(&token)?);
        }
        Ok(set)
    })
}

/// The application's document of a record; NULL when there is none, or
/// no such (live) record. Counts as a read.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_appdata_get(token: Uuid, app: &str) -> Option<JsonbDatum> {
    audited(Operation::AppDataGet, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        check_name(app, "application name")?;
        call.fields = Some(vec![app.to_string()]);
        let keys = guard::ready()?;
        call.check_purpose()?;
        call.count_read()?;
        let seen = store::token_seen(&token)?;
        call.outcome = outcome_of(&seen);
        if seen.live().is_none() {
            return Ok(None);
        }
        let Some(sealed) = store::get_app_data(&token, app)? else {
            call.outcome = Outcome::NotFound;
            return Ok(None);
        };
        open_record(keys, &app_data_binding(&token, app), &sealed).map(Some)
    })
}

/// Deletes the application's document of a record; false when there is
/// none.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_appdata_delete(token: Uuid, app: &str) -> bool {
    audited(Operation::AppDataDelete, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        check_name(app, "application name")?;
        call.fields = Some(vec![app.to_string()]);
        guard::ready()?;
        call.count_write()?;
        let seen = store::token_seen(&token)?;
        call.outcome = outcome_of(&seen);
        if seen.live().is_none() {
            return Ok(false);
        }
        let deleted = store::delete_app_data(&token, app)?;
        if !deleted {
            call.outcome = Outcome::NotFound;
        }
        Ok(deleted)
    })
}
