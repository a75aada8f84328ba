//! The audit: every vault call, who made it, on what, and how it ended.
//! Never a record value.
//!
//! Backends queue events in shared memory (`queue`); one background worker
//! (`writer`) writes them in its own transactions, one row of
//! `pii_vault.audit_batches` per batch, and chains the batches' MACs. A read is audited before its data leaves the
//! vault, and refused if the event cannot be queued (fail closed).

pub mod event;
pub mod queue;
pub mod writer;

use std::time::Duration;

use pgrx::pg_sys;

pub use event::{AuditEvent, Operation, Outcome};

/// How long a call waits for room in a full queue before it is refused.
const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// Queues the event for this call; false if the queue stayed full for
/// `QUEUE_WAIT` (the writer is gone or far behind). For calls whose result
/// must not leave the vault unaudited.
pub fn record(operation: Operation, token: Option<&[u8; 16]>, fields: Option<&[String]>, outcome: Outcome) -> bool {
    queue_event(operation, token, fields, outcome, QUEUE_WAIT)
}

/// Queues the event if there is room now; for calls that fail anyway or
/// return nothing personal (no point making them wait for the writer).
pub fn record_if_room(operation: Operation, token: Option<&[u8; 16]>, fields: Option<&[String]>, outcome: Outcome) {
    queue_event(operation, token, fields, outcome, Duration::ZERO);
}

fn queue_event(
    operation: Operation,
    token: Option<&[u8; 16]>,
    fields: Option<&[String]>,
    outcome: Outcome,
    wait: Duration,
) -> bool {
    if !crate::shmem::ready() {
        // Not preloaded: the vault refuses every call before any data moves.
        return false;
    }
    // SAFETY: plain reads of this backend's globals; application_name is a
    // GUC string (NULL-checked).
    let event = unsafe {
        // PostgreSQL keeps application_name printable ASCII, so this never
        // falls back (and needs no copy).
        let app = if pg_sys::application_name.is_null() {
            ""
        } else {
            std::ffi::CStr::from_ptr(pg_sys::application_name).to_str().unwrap_or("?")
        };
        AuditEvent::new(
            pg_sys::GetCurrentTimestamp(),
            pg_sys::GetSessionUserId().into(),
            // The role in effect at the caller's top level (SET ROLE), which
            // SECURITY DEFINER hides from current_user inside the vault.
            pg_sys::GetOuterUserId().into(),
            app,
            crate::guc::purpose().unwrap_or(""),
            operation,
            token,
            fields,
            outcome,
        )
    };
    let deadline = std::time::Instant::now() + wait;
    loop {
        if queue::push(&event) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        nudge_writer_and_nap();
    }
}

/// Waits until the writer has committed every event queued before the call
/// (used by tests and by `vault_audit`, so an auditor sees the latest rows).
pub fn wait_until_written(timeout: Duration) -> bool {
    if !crate::shmem::ready() {
        return false;
    }
    let target = queue::queued_total();
    let deadline = std::time::Instant::now() + timeout;
    while queue::committed_total() < target {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        nudge_writer_and_nap();
    }
    true
}

/// Wakes the writer and sleeps a millisecond (cancellable) while waiting
/// for it to make room or catch up.
fn nudge_writer_and_nap() {
    queue::wake_writer();
    // SAFETY: sleeping in a backend; interrupts are checked right after.
    unsafe { pg_sys::pg_usleep(1000) };
    pgrx::check_for_interrupts!();
}
