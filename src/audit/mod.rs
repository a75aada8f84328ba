//! The audit: every vault call, who made it, on what, and how it ended.
//! Never a record value.
//!
//! Backends queue events in shared memory (`queue`); one background worker
//! (`writer`) writes them in its own transactions, one row of
//! `pii_vault.audit_batches` per batch, and chains the batches' MACs. A read is audited before its data leaves the
//! vault, and refused if the event cannot be queued (fail closed).

pub use pii_vault_core::audit_event as event;
pub mod forwarder;
pub mod keeper;
mod libpq;
pub mod queue;
pub mod spill;
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
    let Some(event) = event_of(operation, token, fields, outcome) else {
        return false;
    };
    flush_folded(QUEUE_WAIT) && push(&event, QUEUE_WAIT)
}

/// What the audit says about one element of a call on many records: the
/// token it names and how it ended (the call's fields are every element's).
pub type Element = (Option<[u8; 16]>, Outcome);

/// Queues one event per element of a call on many records, each with the
/// call's operation and `fields`, in one reservation of the queue (all or
/// none, `QUEUE_WAIT` for room); false as `record`. So an investigation
/// sees every record such a call returned, and a call is never returned
/// half audited. The call's event is made once; each element's is a copy
/// with its own token and outcome.
pub fn record_many(operation: Operation, fields: Option<&[String]>, elements: &[Element]) -> bool {
    let Some(call) = event_of(operation, None, fields, Outcome::Ok) else {
        return false;
    };
    let events: Vec<AuditEvent> =
        elements.iter().map(|(token, outcome)| call.for_element(token.as_ref(), *outcome)).collect();
    if !flush_folded(QUEUE_WAIT) {
        return false;
    }
    // Calls are capped far below this (`api::many::MAX_ELEMENTS`), so a
    // reservation never waits for most of the queue.
    if events.is_empty() || events.len() > queue::CAPACITY / 4 {
        return false;
    }
    let deadline = std::time::Instant::now() + QUEUE_WAIT;
    while !queue::push_many(&events) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        nudge_writer_and_nap();
    }
    let backlog = queue::queued_total().saturating_sub(queue::committed_total());
    for event in &events {
        crate::stats::count(event, backlog);
    }
    true
}

/// Queues the event if there is room now; for calls that fail anyway or
/// return nothing personal (no point making them wait for the writer).
pub fn record_if_room(operation: Operation, token: Option<&[u8; 16]>, fields: Option<&[String]>, outcome: Outcome) {
    if let Some(event) = event_of(operation, token, fields, outcome) {
        let _ = flush_folded(Duration::ZERO) && push(&event, Duration::ZERO);
    }
}

/// How many failed calls of a session in one second are audited one
/// event each before the rest of that second are folded: more than a
/// batch's mistakes (the suites make up to 17 a second), far fewer than a
/// flood (57 000 a second from one session before folding).
const FOLD_AFTER: u32 = 30;

/// Audits a call that failed without returning anything (refused by a
/// budget or a policy, or in error, but not an error that answers a
/// question, such as a duplicate). A session's first `FOLD_AFTER` such
/// calls in each second are an event each, queued at once, as any call;
/// the rest of that second are folded by operation, outcome and roles
/// (and token, when `by_token`: a call that failed after its budget was
/// charged may have decrypted that record) into one event each, whose
/// `calls` counts them, queued when the session next audits anything
/// else, ends a transaction once that second has passed, or exits. So a
/// flood of refused calls (a loop catching each error, or a stream of
/// statements) adds at most `FOLD_AFTER` events a second per session, and
/// one more per kind of failure, while every call that returned something
/// stays one event of its own. False as `record`.
pub fn record_failure(
    operation: Operation,
    token: Option<&[u8; 16]>,
    fields: Option<&[String]>,
    outcome: Outcome,
    by_token: bool,
    wait: bool,
) -> bool {
    thread_local! {
        /// The second of the session's latest failed call, and how many
        /// failed calls of that second were audited one event each.
        static ALONE: std::cell::Cell<(i64, u32)> = const { std::cell::Cell::new((0, 0)) };
    }
    let Some(mut event) = event_of(operation, token, fields, outcome) else {
        return false;
    };
    let key = FoldKey::of(&event, by_token);
    let folded = FOLDED.with_borrow_mut(|folds| match folds.iter_mut().find(|f| f.key == key) {
        Some(f) => {
            f.event.calls = f.event.calls.saturating_add(1);
            true
        }
        None => false,
    });
    if folded {
        return true;
    }
    let wait = if wait { QUEUE_WAIT } else { Duration::ZERO };
    // The folds of earlier seconds are complete: queued before this event.
    if !flush_folded_before(key.second, wait) {
        return false;
    }
    let alone = match ALONE.get() {
        (second, n) if second == key.second => n,
        _ => 0,
    };
    if alone < FOLD_AFTER {
        ALONE.set((key.second, alone + 1));
        return push(&event, wait);
    }
    register_fold_flush();
    event.calls = 1;
    FOLDED.with_borrow_mut(|folds| folds.push(Folded { key, event: Box::new(event) }));
    true
}

/// What makes two failed calls one event: the same second, operation,
/// outcome, roles, and token when it counts.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FoldKey {
    second: i64,
    operation: Option<Operation>,
    outcome: Option<Outcome>,
    roles: event::Roles,
    token: Option<[u8; 16]>,
}

impl FoldKey {
    fn of(event: &AuditEvent, by_token: bool) -> FoldKey {
        FoldKey {
            second: event.at.div_euclid(1_000_000),
            operation: event.operation(),
            outcome: event.outcome(),
            roles: event.roles,
            token: event.token().filter(|_| by_token),
        }
    }
}

struct Folded {
    key: FoldKey,
    /// The first folded call's event; `calls` counts the calls folded.
    event: Box<AuditEvent>,
}

thread_local! {
    /// The folds of the latest second with failed calls.
    static FOLDED: std::cell::RefCell<Vec<Folded>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Queues every fold of this session, waiting up to `wait` for room;
/// false if there was none (what is left stays folded, to be queued with
/// the next event).
fn flush_folded(wait: Duration) -> bool {
    flush_folded_before(i64::MAX, wait)
}

/// Queues the folds of seconds before `second`, as `flush_folded`.
fn flush_folded_before(second: i64, wait: Duration) -> bool {
    let Ok(done) = FOLDED.try_with(|f| {
        let mut folds = f.borrow_mut();
        let (done, open): (Vec<Folded>, Vec<Folded>) = folds.drain(..).partition(|f| f.key.second < second);
        *folds = open;
        done
    }) else {
        return true;
    };
    let mut left = done.into_iter().skip_while(|f| push(&f.event, wait)).peekable();
    if left.peek().is_none() {
        return true;
    }
    FOLDED.with_borrow_mut(|folds| folds.extend(left));
    false
}

/// Registers, once per backend (at its first fold), the flush of folded
/// calls at the end of each transaction after their second, and of the
/// session. They do not wait for room (a commit callback must not fail):
/// a full queue keeps them folded for the next event.
fn register_fold_flush() {
    thread_local! {
        static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if REGISTERED.replace(true) {
        return;
    }
    unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
        use pg_sys::XactEvent::{XACT_EVENT_ABORT, XACT_EVENT_COMMIT};
        if !matches!(event, XACT_EVENT_COMMIT | XACT_EVENT_ABORT) {
            return;
        }
        // SAFETY: a clock read.
        let second = unsafe { pg_sys::GetCurrentTimestamp() }.div_euclid(1_000_000);
        flush_folded_before(second, Duration::ZERO);
    }
    unsafe extern "C-unwind" fn at_exit(_code: i32, _arg: pg_sys::Datum) {
        flush_folded(Duration::ZERO);
    }
    // SAFETY: registered once per process; both callbacks live as long as
    // the library.
    unsafe {
        pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
        pg_sys::before_shmem_exit(Some(at_exit), pg_sys::Datum::from(0));
    }
}

/// The event of a call in this backend now; None when the vault's shared
/// memory is not there (not preloaded: the vault refuses every call
/// before any data moves).
fn event_of(
    operation: Operation,
    token: Option<&[u8; 16]>,
    fields: Option<&[String]>,
    outcome: Outcome,
) -> Option<AuditEvent> {
    if !crate::shmem::ready() {
        return None;
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
            event::Roles {
                session: pg_sys::GetSessionUserId().into(),
                // The role in effect at the caller's top level (SET ROLE),
                // which SECURITY DEFINER hides from current_user inside the
                // vault.
                acting: pg_sys::GetOuterUserId().into(),
                calling: crate::throttle::caller::calling_role().into(),
            },
            app,
            crate::guc::purpose().unwrap_or(""),
            operation,
            token,
            fields,
            outcome,
        )
    };
    let mut event = event;
    // SAFETY: a plain read of shared state (a local flag once false).
    if unsafe { pg_sys::RecoveryInProgress() } {
        event.set_server(&standby_name());
    }
    Some(event)
}

/// This standby's name in the audit events of the calls it serves:
/// `cluster_name@host:port`, or `host:port` without a cluster name.
fn standby_name() -> String {
    thread_local! {
        static NAME: std::cell::OnceCell<String> = const { std::cell::OnceCell::new() };
    }
    NAME.with(|name| {
        name.get_or_init(|| {
            let mut host = [0u8; 256];
            // SAFETY: gethostname writes at most the buffer's length.
            let host = if unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len()) } == 0 {
                let end = host.iter().position(|b| *b == 0).unwrap_or(host.len());
                String::from_utf8_lossy(&host[..end]).into_owned()
            } else {
                "localhost".to_string()
            };
            // SAFETY: plain reads of GUC globals; cluster_name is NULL-checked.
            let (port, cluster) = unsafe {
                let cluster = if pg_sys::cluster_name.is_null() {
                    String::new()
                } else {
                    std::ffi::CStr::from_ptr(pg_sys::cluster_name).to_string_lossy().into_owned()
                };
                (pg_sys::PostPortNumber, cluster)
            };
            if cluster.is_empty() {
                format!("{host}:{port}")
            } else {
                format!("{cluster}@{host}:{port}")
            }
        })
        .clone()
    })
}

/// Pushes `event`, waiting up to `wait` for room; false if there was none.
fn push(event: &AuditEvent, wait: Duration) -> bool {
    let pushed = push_uncounted(event, wait);
    if pushed {
        crate::stats::count(event, queue::queued_total().saturating_sub(queue::committed_total()));
    }
    pushed
}

/// As `push`, without counting the call in the stats (a standby counted it).
fn push_uncounted(event: &AuditEvent, wait: Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    loop {
        if queue::push(event) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        nudge_writer_and_nap();
    }
}

/// Queues events a standby kept (`api::forward`), each waiting up to
/// `QUEUE_WAIT` for room; false if one found none. Those queued before it
/// are written with their frame's mark, so when the caller's error makes
/// the standby send the batch again, the next forward skips them.
pub fn forward(events: &[&AuditEvent]) -> bool {
    events.iter().all(|event| {
        let pushed = push_uncounted(event, QUEUE_WAIT);
        if pushed {
            crate::stats::count_forwarded(1);
        }
        pushed
    })
}

/// Waits until the writer has committed every event queued before the call
/// (used by tests and by `vault_audit`, so an auditor sees the latest rows).
pub fn wait_until_written(timeout: Duration) -> bool {
    if !crate::shmem::ready() {
        return false;
    }
    let target = queue::queued_total();
    let deadline = std::time::Instant::now() + timeout;
    // Events kept in the spill file are older than the queue's: written
    // (and the file removed) first. Not on a standby, whose keeper keeps
    // its file until the primary has taken it: there the queue is done
    // once kept.
    // SAFETY: a plain read of shared state.
    let standby = unsafe { pg_sys::RecoveryInProgress() };
    while queue::committed_total() < target || (!standby && spill::size().is_some()) {
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
