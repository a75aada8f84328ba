//! The primary's side of standby reads: `vault_audit_forward(frames)`,
//! called by a standby's audit keeper over libpq as a member of
//! `pii_vault_forwarder`. The frames are the standby's spill file as it
//! kept them (`pii_vault_core::audit_spill`): each MACed under the vault's
//! audit key, so a forwarder can hand over only what a server holding the
//! vault key kept, never invent or alter an event. The events join the
//! primary's queue and its one MAC chain, naming the standby they were
//! served on; the function returns once they are committed and their WAL
//! flushed, so the standby may let them go. Frames are numbered by time on
//! their standby: the primary remembers the last it took from each
//! (`pii_vault.forwarded`), so a batch sent twice (a lost reply, a
//! restart) is taken once.

use pgrx::prelude::*;

use super::errors::OrRaise;
use super::guard;
use crate::audit;
use crate::error::{ReadOnly, StorageFault, VaultError, VaultResult};
use crate::store;
use pii_vault_core::audit_spill::{decode, PRIMARY};

/// How long a forwarded batch may wait for the writer to commit it.
const WRITTEN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

fn take(frames: &[u8]) -> VaultResult<i64> {
    let keys = guard::ready()?;
    // SAFETY: a plain read of shared state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        return Err(VaultError::ReadOnly(ReadOnly::Standby));
    }
    if !store::schema()?.has_forwarding() {
        return Err(StorageFault::NeedsUpdate.into());
    }
    let spilled = decode(keys, frames).map_err(|_| VaultError::ForwardRefused("a frame does not verify"))?;
    if spilled.torn || spilled.frames.is_empty() {
        return Err(VaultError::ForwardRefused("not whole frames"));
    }
    if spilled.unverified() > 0 {
        return Err(VaultError::ForwardRefused("a frame does not verify"));
    }
    let origin = spilled.frames[0].origin;
    if origin == PRIMARY || spilled.frames.iter().any(|f| f.origin != origin) {
        return Err(VaultError::ForwardRefused("not one standby's frames"));
    }
    if spilled.events().any(|e| e.server().is_empty()) {
        return Err(VaultError::ForwardRefused("an event names no standby"));
    }
    let server = spilled.events().next().map(|e| e.server().into_owned()).unwrap_or_default();
    let last = store::forwarded_lock(&origin, &server)?;
    let mut newest = last;
    let mut events = Vec::new();
    for frame in &spilled.frames {
        // Frames the primary took before (a batch sent again) are skipped.
        if frame.number > newest {
            newest = frame.number;
            events.extend(frame.events.iter());
        }
    }
    if events.is_empty() {
        return Ok(0);
    }
    if !audit::forward(&events) || !audit::wait_until_written(WRITTEN_WAIT) {
        return Err(VaultError::AuditUnavailable);
    }
    // The writer commits without waiting for its WAL (synchronous_commit
    // off): flush it before the standby is told it may let the events go.
    // SAFETY: flushing WAL written so far, from a backend in a transaction.
    unsafe { pg_sys::XLogFlush(pg_sys::GetXLogInsertRecPtr()) };
    store::forwarded_advance(&origin, &server, newest, events.len() as i64)?;
    Ok(events.len() as i64)
}

/// Takes a standby's kept audit events (whole spill-file frames) into this
/// primary's audit; the number of events new to it. For members of
/// pii_vault_forwarder (a standby's forwarder), never an application.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_audit_forward(frames: &[u8]) -> i64 {
    take(frames).or_raise()
}
