//! The audit keeper: on a hot standby, where the audit writer does not run
//! (it starts when recovery ends), the one consumer of the audit queue. It
//! moves the events of the calls served here into the spill file under
//! PGDATA, a frame every few milliseconds, fsynced, so the queue never
//! fills and a restart of the standby loses nothing. When the standby is
//! promoted it keeps what is left and exits; the new primary's writer,
//! which waits for it, writes the file into the audit first.
//!
//! The audit forwarder (`forwarder`) sends the file to the primary; the
//! keeper removes it once the primary has taken all of it.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;

use super::{queue, spill};

/// Events per frame.
const BATCH: usize = 1024;
/// How long the keeper sleeps when the queue is empty (producers wake it
/// sooner), and after a frame smaller than BATCH, so events gather into
/// frames of ~NAP's worth instead of an fsync per handful.
const NAP: Duration = Duration::from_millis(10);
const IDLE: Duration = Duration::from_millis(250);

/// Registers the keeper with the postmaster (from `_PG_init`, at preload).
/// It starts once a standby is consistent (and on a primary exits at once,
/// never to be restarted: exit code 0).
pub fn register() {
    BackgroundWorkerBuilder::new("pii_vault audit keeper")
        .set_type("pii_vault audit keeper")
        .set_library("pii_vault")
        .set_function("pii_vault_audit_keeper_main")
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

/// Nothing this keeper's events are vouched for: it never connects to the
/// vault's database to compare its key with the vault's check values.
fn unvouched() -> bool {
    false
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pii_vault_audit_keeper_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // SAFETY: a plain read of shared state.
    if !unsafe { pg_sys::RecoveryInProgress() } || crate::keys::key_set().is_err() {
        // A primary (its writer is the consumer), or no key (nothing is
        // queued: every call is refused).
        // SAFETY: ends this process the way PostgreSQL's own exits do.
        unsafe { pg_sys::proc_exit(0) };
    }
    let origin = match spill::standby_origin() {
        Ok(origin) => origin,
        Err(e) => error!("pii_vault audit keeper: could not read or make this standby's id in PGDATA: {e}"),
    };
    ORIGIN.set(origin);
    // The chain of frames goes on after the file's last frame, or the last
    // the primary took (the file is gone once it took all of it).
    let in_file = spill::last_frame_number().unwrap_or_else(|e| {
        log!("pii_vault audit keeper: could not read the spill file: {e}");
        None
    });
    let taken = spill::forwarded_mark().map(|m| m.last);
    queue::continue_frames_after(in_file.unwrap_or(0).max(taken.unwrap_or(0)));
    // SAFETY: registered once in this process; the callback lives as long
    // as the library.
    unsafe { pg_sys::before_shmem_exit(Some(keep_at_exit), pg_sys::Datum::from(0)) };
    queue::set_keeper(true);
    // SAFETY: MyProc and its latch live in shared memory for this process.
    let latch = unsafe { &raw mut (*pg_sys::MyProc).procLatch };
    // SAFETY: a plain global of this process.
    queue::register_writer(latch, unsafe { pg_sys::MyProcPid });
    // SAFETY: a plain read of shared state, each turn.
    while unsafe { pg_sys::RecoveryInProgress() } {
        let pending = queue::peek(BATCH).len();
        let pause = if pending == 0 {
            if !queue::prepare_to_sleep() {
                continue;
            }
            IDLE
        } else {
            spill::keep_queue(unvouched, &origin, BATCH, Duration::ZERO, false);
            if pending == BATCH {
                Duration::ZERO
            } else {
                NAP
            }
        };
        // Once the primary has taken all of it (the forwarder), the file
        // goes; the next frame begins a new one.
        if let Err(e) = spill::remove_if_forwarded() {
            log!("pii_vault audit keeper: could not remove the forwarded spill file: {e}");
        }
        if !BackgroundWorker::wait_latch(Some(pause)) {
            // SIGTERM: keep_at_exit keeps the rest; restarted unless the
            // server is shutting down.
            // SAFETY: ends this process the way PostgreSQL's own exits do.
            unsafe { pg_sys::proc_exit(1) };
        }
    }
    // Promoted: keep what is left; the writer takes over once this process
    // is gone, and writes the file first.
    log!("pii_vault audit keeper: this server was promoted; its audit writer writes the events kept here");
    // SAFETY: ends this process the way PostgreSQL's own exits do (0: not
    // restarted).
    unsafe { pg_sys::proc_exit(0) };
}

thread_local! {
    /// This standby's id (`spill::standby_origin`).
    static ORIGIN: std::cell::Cell<[u8; 16]> = const { std::cell::Cell::new([0; 16]) };
}

/// Keeps what is queued, and what backends queue in the next 50 ms, then
/// lets the writer (after a promotion) take over the queue.
unsafe extern "C-unwind" fn keep_at_exit(_code: i32, _arg: pg_sys::Datum) {
    // Nothing may unwind out of an exit callback.
    let _ = std::panic::catch_unwind(|| {
        spill::keep_queue(unvouched, &ORIGIN.get(), BATCH, NAP * 5, true);
        queue::unregister_writer();
        queue::set_keeper(false);
    });
}
