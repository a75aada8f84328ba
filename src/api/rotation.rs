//! Keys over time: `vault_rotate_batch` (one committed step of `CALL
//! vault_rotate()`) and `vault_key_versions()`.

use std::cell::Cell;

use pgrx::prelude::*;

use super::audit_functions::anchor_older_batches;
use super::call::audited;
use super::documents::{app_data_binding, session_binding};
use super::field_tokens::{field_binding, open_value, token_id};
use super::guard;
use super::records::{holder_of, open_record, reindexed};
use crate::audit::Operation;
use crate::crypto::blind_index::field_value_hash;
use crate::crypto::envelope;
use crate::error::{VaultError, VaultResult};
use crate::keys;
use crate::store::{self, Document, Token};

/// Largest `batch_size`: a batch holds its rows locked until it commits.
const MAX_BATCH_SIZE: i32 = 100_000;

/// Where this backend's rotation pass stands: the last token it moved and
/// how many records remained when the pass began, less those moved since.
/// A pass walks the tokens in order (each batch an index range scan, never
/// a scan of what is done already); a new CALL starts a new pass.
#[derive(Clone, Copy)]
struct Pass {
    after: Token,
    remaining: i64,
    version: u32,
    /// Records this pass could not move (see `reindexed`).
    stuck: i64,
}

impl Pass {
    fn start(version: u32, from: &[u32]) -> VaultResult<Pass> {
        Ok(Pass { after: [0; 16], remaining: store::count_under(from)?, version, stuck: 0 })
    }
}

thread_local! {
    static PASS: Cell<Option<Pass>> = const { Cell::new(None) };
}

/// Moves up to `batch_size` records to the active key version: re-wraps
/// each one's data key (its ciphertext is not re-encrypted) and recomputes
/// its blind indexes, in the caller's transaction. Called in a loop by the
/// procedure `vault_rotate`, which commits after each call; `restart`
/// starts a new pass from the first token. When no record is left under an
/// older version, anchors the audit batches MACed under older versions
/// (so they still verify once those keys are retired) and says `done`.
/// Charged to no budget: it is the admin's maintenance, audited once per
/// batch.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_rotate_batch(
    batch_size: i32,
    restart: bool,
) -> TableIterator<'static, (name!(rotated, i64), name!(remaining, i64), name!(done, bool))> {
    let row = audited(Operation::Rotate, |_call| {
        let keys = guard::ready()?;
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return Err(VaultError::BadBatchSize(MAX_BATCH_SIZE));
        }
        let active = keys.active();
        let version = active.key_version();
        // Only records under a loaded version can move; any others stay
        // where they are, and are named once the pass ends.
        let from: Vec<u32> = keys.others().map(|ring| ring.key_version()).collect();
        // Sessions and applications' documents first: they need only a
        // re-wrap (no blind index); up to a batch of each per call.
        let documents = store::documents_under(&from, batch_size as i64)?;
        for (document, sealed) in &documents {
            let binding = match document {
                Document::Session { id_hash, token, expires_at } => {
                    session_binding(id_hash, token.as_ref(), *expires_at)
                }
                Document::AppData { token, app } => app_data_binding(token, app),
            };
            let moved = envelope::rewrap(keys, active, &binding, sealed)?;
            store::rewrap_document(document, &moved)?;
        }
        if !documents.is_empty() {
            notice!("pii_vault: {} sessions and application documents moved to key version {version}", documents.len());
        }
        // Field tokens: a re-wrap, and a deduplicated one's value hash
        // recomputed from its value (so it is found once the old version
        // is retired).
        let field_tokens = store::field_tokens_under(&from, batch_size as i64)?;
        for (token, stored, dedup) in &field_tokens {
            let binding = field_binding(token, &stored.kind, stored.record.as_ref(), stored.expires_at);
            let moved = envelope::rewrap(keys, active, &binding, &stored.envelope)?;
            let hash = match dedup {
                true => Some(field_value_hash(
                    active,
                    &stored.kind,
                    stored.record.as_ref(),
                    &open_value(keys, token, stored)?,
                )),
                false => None,
            };
            store::rekey_field_token(&token_id(token)?, &moved, hash.as_ref().map(|h| (h, version)))?;
        }
        if !field_tokens.is_empty() {
            notice!("pii_vault: {} field tokens moved to key version {version}", field_tokens.len());
        }
        let pass = match PASS.get() {
            Some(pass) if !restart && pass.version == version => pass,
            _ => Pass::start(version, &from)?,
        };
        let batch = store::records_under(&from, &pass.after, batch_size as i64)?;
        let mut stuck = 0;
        for (token, sealed, stored) in &batch {
            let record = open_record(keys, token, sealed)?;
            // Loaded: only records under loaded versions were selected.
            let from_ring =
                envelope::key_version(sealed).and_then(|v| keys.version(v)).ok_or(VaultError::DecryptFailed)?;
            let stuck_because = match reindexed(from_ring, active, &record, stored)? {
                Err(kind) => Some(format!(
                    "its {kind} no longer normalizes to what it was indexed under (pii_vault.default_region changed, or stored by an earlier release)"
                )),
                Ok(moved) => match holder_of(keys, token, &moved.refolded)? {
                    Some((kind, holder)) => Some(format!(
                        "its {kind} now folds to the value record {} holds (one person, one identity: see the README)",
                        pgrx::Uuid::from_bytes(holder)
                    )),
                    None => {
                        let sealed = envelope::rewrap(keys, active, token, sealed)?;
                        store::rekey_record(token, &sealed, &moved.hashes)?;
                        None
                    }
                },
            };
            if let Some(why) = stuck_because {
                warning!("pii_vault: record {} was not moved: {why}", pgrx::Uuid::from_bytes(*token));
                stuck += 1;
            }
        }
        let rotated = batch.len() as i64 - stuck;
        let mut next = Pass {
            after: batch.last().map_or(pass.after, |(token, _, _)| *token),
            remaining: (pass.remaining - rotated).max(0),
            version,
            stuck: pass.stuck + stuck,
        };
        let end_of_pass = (batch.len() as i64) < batch_size as i64;
        let mut done = false;
        if end_of_pass {
            // Records skipped because they were locked, or stored under an
            // older version by a server still running with it: another
            // pass, unless all that remain are records it cannot move.
            let left = Pass::start(version, &from)?;
            // Documents a call held locked are moved by a later batch.
            done = left.remaining <= next.stuck
                && store::count_documents_under(&from)? == 0
                && store::count_field_tokens_under(&from)? == 0;
            if done && next.stuck > 0 {
                warning!(
                    "pii_vault: {} records stay under older key versions (see the warnings above): correct their values with vault_update, or restore the setting they were stored under, and CALL vault_rotate() again",
                    next.stuck
                );
            }
            next = left;
        }
        PASS.set(Some(next));
        if done {
            PASS.set(None);
            let stranded = store::count_not_under(version)? - store::count_under(&from)?;
            if stranded > 0 {
                warning!(
                    "pii_vault: {stranded} records are under key versions that are not loaded and were not moved; see vault_key_versions()"
                );
            }
            let (shares, sessions) = store::live_ids_not_under(version)?;
            if shares + sessions > 0 {
                // A share's or session's keyed id hash cannot be recomputed
                // without the id, which only its holder has.
                notice!(
                    "pii_vault: {shares} live shares and {sessions} live sessions were made under older key versions; they are found while those versions are loaded (at most pii_vault.max_share_ttl, pii_vault.max_session_ttl)"
                );
            }
            anchor_older_batches(keys)?;
        } else if end_of_pass && rotated == 0 {
            // Every remaining record is locked by another transaction: wait
            // a little rather than spin.
            std::thread::sleep(std::time::Duration::from_millis(100));
            check_for_interrupts!();
        }
        notice!(
            "pii_vault: {rotated} records moved to key version {version}; {} remain under other versions",
            next.remaining
        );
        Ok((rotated, next.remaining, done))
    });
    TableIterator::once(row)
}

/// Which key versions exist where: loaded in this server, active, and the
/// number of records whose data keys are under each (a version the vault
/// has a key check for, or records under, appears even when not loaded).
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_key_versions(
) -> TableIterator<'static, (name!(key_version, i32), name!(loaded, bool), name!(active, bool), name!(records, i64))> {
    let rows = audited(Operation::KeyVersions, |_call| {
        // Works under a wrong or partial key set too: it is how an admin
        // finds out which versions are needed.
        let loaded_keys = keys::key_set().ok();
        let loaded: Vec<u32> =
            loaded_keys.map_or_else(Vec::new, |k| k.rings().iter().map(|r| r.key_version()).collect());
        let active = loaded_keys.map(|k| k.active().key_version());
        let in_use = store::versions_in_use()?;
        let mut versions: Vec<u32> = in_use.iter().map(|(v, _)| *v).collect();
        versions.extend(store::key_checks()?.into_iter().map(|(v, _)| v));
        versions.extend(&loaded);
        versions.sort_unstable();
        versions.dedup();
        Ok(versions
            .into_iter()
            .map(|v| {
                let records = in_use.iter().find(|(u, _)| *u == v).map_or(0, |(_, n)| *n);
                let is_loaded = loaded.contains(&v);
                (v as i32, is_loaded, active == Some(v), records)
            })
            .collect::<Vec<_>>())
    });
    TableIterator::new(rows)
}
