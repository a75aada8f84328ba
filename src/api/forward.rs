//! The primary's side of standby reads: `vault_audit_forward(frames)`,
//! called by a standby's audit keeper over libpq as a member of
//! `pii_vault_forwarder`. The frames are the standby's spill file as it
//! kept them (`pii_vault_core::audit_spill`): each MACed under the vault's
//! audit key, so a forwarder can hand over only what a server holding the
//! vault key kept, never invent or alter an event. The events join the
//! primary's queue and its one MAC chain, naming the standby they were
//! served on; the function returns once they are committed and their WAL
//! flushed, so the standby may let them go once it has replayed that far.
//! Frames are numbered by time on their standby and each names the one
//! before it: the primary takes them in order, none missing, and records
//! the last it took from each standby (`pii_vault.forwarded`) in the
//! writer's transaction with the events, so a batch sent twice (a lost
//! reply, a cut-off call, a restart) is taken once.

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
    // Every frame MACed under a loaded key: the unvouched exception of a
    // writer's own spill file (its events marked) has no place here.
    if spilled.frames.iter().any(|f| !f.verified) {
        return Err(VaultError::ForwardRefused("a frame does not verify"));
    }
    let origin = spilled.frames[0].origin;
    if origin == PRIMARY || spilled.frames.iter().any(|f| f.origin != origin) {
        return Err(VaultError::ForwardRefused("not one standby's frames"));
    }
    if spilled.frames.iter().any(|f| f.number > i64::MAX as u64) || spilled.events().any(|e| e.server().is_empty()) {
        return Err(VaultError::ForwardRefused("not a standby's frames"));
    }
    // One forward at a time, and none before what an earlier one queued is
    // committed (a call cut off after queueing): the last frame taken,
    // read below, then counts everything queued so far.
    store::lock_forwards()?;
    if !audit::wait_until_written(WRITTEN_WAIT) {
        return Err(VaultError::AuditUnavailable);
    }
    let mut last = store::forwarded_last(&origin)?;
    let mut events = Vec::new();
    for frame in &spilled.frames {
        if frame.number <= last {
            continue; // taken before (a batch sent again)
        }
        // The standby's frames form a chain: taken in order, none missing.
        if frame.previous != last {
            return Err(VaultError::ForwardRefused("frames out of order or missing"));
        }
        for event in &frame.events {
            let mut event = *event;
            event.set_forwarded(origin, frame.number);
            events.push(event);
        }
        last = frame.number;
    }
    if !events.is_empty() {
        let refs: Vec<&audit::AuditEvent> = events.iter().collect();
        if !audit::forward(&refs) || !audit::wait_until_written(WRITTEN_WAIT) {
            return Err(VaultError::AuditUnavailable);
        }
    }
    // The writer commits without waiting for its WAL (synchronous_commit
    // off): flush it before the standby is told it may let the events go,
    // and tell it where, so it keeps them until it has replayed that far.
    // SAFETY: reading and flushing WAL written so far, in a backend.
    let lsn = unsafe {
        let lsn = pg_sys::GetXLogInsertRecPtr();
        pg_sys::XLogFlush(lsn);
        lsn
    };
    Ok(lsn as i64)
}

/// Takes a standby's kept audit events (whole spill-file frames) into this
/// primary's audit; the primary's WAL position once they are committed. For members of
/// pii_vault_forwarder (a standby's forwarder), never an application.
#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_audit_forward(frames: &[u8]) -> i64 {
    take(frames).or_raise()
}
