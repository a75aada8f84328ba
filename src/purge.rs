//! The purge worker: a background worker that removes, every
//! `pii_vault.purge_interval`, the rows the API no longer sees: records
//! past their `expires_at`, records deleted more than
//! `pii_vault.delete_grace` ago (with everything attached to them), and
//! expired shares. Each removal is audited as a `purge` event, queued in
//! the transaction that removes it (no event, no removal).
//!
//! It works in bounded batches, one transaction each, and skips rows a
//! call holds locked; every removal checks its condition again on the row
//! as locked (`store::purge_records`), so a record whose expiry was just
//! cleared, or that was just restored, stays.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;

use crate::audit::{self, Operation, Outcome};
use crate::error::VaultResult;
use crate::{guc, keys, store};
use pii_vault_core::schema::Schema;

/// Rows removed per transaction: a batch holds its locks and its WAL for
/// about this many rows, and the worker looks at SIGTERM in between.
pub const BATCH: i64 = 1000;

pub fn register() {
    BackgroundWorkerBuilder::new("pii_vault purge worker")
        .set_type("pii_vault purge worker")
        .set_library("pii_vault")
        .set_function("pii_vault_purge_worker_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pii_vault_purge_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // The audit writer serves the same database and says when it has
    // connected: purging waits for it. Its removals are audited anyway,
    // and connecting to a database that does not exist yet would end this
    // worker with a FATAL (the writer says so in the log, once).
    while crate::audit::queue::state().writer_pid == 0 {
        if !rest(Duration::from_secs(1)) {
            exit_to_be_restarted();
        }
    }
    BackgroundWorker::connect_worker_to_spi(Some(&guc::database()), None);
    if keys::key_set().is_err() {
        // Without keys the vault refuses every call and audits nothing:
        // nothing is purged either (the audit could not say so).
        log!("pii_vault purge worker: no usable key; not purging");
        while rest(Duration::from_secs(60)) {}
        return;
    }
    // Each batch is planned for its cutoffs (plan_cache_mode): a generic
    // plan cannot tell whether a cutoff leaves a few rows due or most of
    // the table, so it scanned all of it, every batch, however few were
    // due; planned with the values, the partial indexes on expires_at and
    // deleted_at answer a pass that finds little.
    BackgroundWorker::transaction(|| {
        Spi::run("SET search_path = pg_catalog, pg_temp; SET plan_cache_mode = force_custom_plan")
            .unwrap_or_else(|e| error!("pii_vault purge worker: {e}"));
    });
    // A pass at once, then one an interval after the last ended. A reload
    // (which wakes the worker) may change the interval; any other wake-up
    // (a catch-up interrupt, say) just waits out the rest of it.
    let mut last: Option<std::time::Instant> = None;
    let mut counted: Option<std::time::Instant> = None;
    loop {
        reload_if_asked();
        let interval = Duration::from_secs(guc::purge_interval_seconds().max(1) as u64);
        let now = std::time::Instant::now();
        let due = last.map_or(now, |last| last + interval);
        if now < due {
            if !rest(due - now) {
                break;
            }
            continue;
        }
        purge_all();
        if stopping() {
            break;
        }
        if counted.is_none_or(|c: std::time::Instant| c.elapsed() >= RECOUNT) {
            count_records_by_version();
            counted = Some(std::time::Instant::now());
        }
        last = Some(std::time::Instant::now());
    }
    exit_to_be_restarted();
}

/// Set once a wait saw SIGTERM: pgrx clears its own flag as it reports
/// it, so a later wait would sleep through the shutdown.
/// How often the worker counts records per key version for
/// `vault_stats()` (a scan of the records table: too slow to do per
/// scrape on a large vault).
const RECOUNT: Duration = Duration::from_secs(600);

fn count_records_by_version() {
    let counted = crate::worker_transaction(|| match store::installed_schema() {
        Ok(Some(_)) => store::versions_in_use().map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    });
    match counted {
        // SAFETY: a clock read.
        Ok(Some(versions)) => crate::stats::set_records_by_version(unsafe { pg_sys::GetCurrentTimestamp() }, &versions),
        Ok(None) => {}
        Err(e) => log!("pii_vault purge worker: could not count records per key version: {e}"),
    }
}

static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Waits `duration` (less if the latch is set); false once SIGTERM came.
fn rest(duration: Duration) -> bool {
    if !stopping() && !BackgroundWorker::wait_latch(Some(duration)) {
        STOPPING.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    !stopping()
}

fn reload_if_asked() {
    if BackgroundWorker::sighup_received() {
        // SAFETY: reloading the configuration as PostgreSQL's own workers
        // do on SIGHUP, outside any transaction.
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    }
}

/// Exit code 1, as the audit writer: the postmaster restarts a worker that
/// exits non-zero, so a SIGTERM that is not a shutdown
/// (pg_terminate_backend) does not end purging.
fn exit_to_be_restarted() -> ! {
    // SAFETY: ends this process the way PostgreSQL's own exits do.
    unsafe { pg_sys::proc_exit(1) }
}

/// The share of its time the purge worker works while a backlog lasts:
/// after each batch it rests `1 / DUTY - 1` times as long as the batch
/// took. At full speed it took a core of this 2-core VM and cost reads
/// 45 % of their throughput, resting at most a second 13 % (bench/run.sh
/// --life-cycle); purging is never urgent (what it removes is invisible
/// already).
const DUTY: f64 = 0.1;
/// The longest rest between two batches: a batch held up for seconds (by
/// row locks, or a full audit queue) mostly waited rather than worked, and
/// resting nine times that would leave a backlog for minutes.
const MAX_REST: Duration = Duration::from_secs(10);

/// Removes everything due, batch by batch, until a batch comes back short
/// or SIGTERM arrives.
fn purge_all() {
    loop {
        let started = std::time::Instant::now();
        let removed = crate::worker_transaction(purge_batch);
        if removed < BATCH {
            return;
        }
        if !rest(started.elapsed().mul_f64(1.0 / DUTY - 1.0).min(MAX_REST)) {
            return;
        }
    }
}

/// One batch, in one transaction: how many rows it removed (0 when the
/// vault is not installed here, or predates 0.3.0).
pub fn purge_batch() -> i64 {
    purge_once().unwrap_or_else(|e| error!("pii_vault purge worker: {e}"))
}

fn purge_once() -> VaultResult<i64> {
    match store::installed_schema()? {
        None | Some(Schema::V0_1 | Schema::V0_2) => return Ok(0),
        Some(Schema::V0_3 | Schema::V0_4 | Schema::V0_6) => {}
    }
    // A logical replica purges nothing: the publisher's purge arrives by
    // replication (and this worker's events could not be written anyway).
    if store::logical_replica()? {
        return Ok(0);
    }
    let grace = f64::from(guc::delete_grace_seconds());
    let records = store::purge_records(BATCH, grace)?;
    for token in &records {
        queue(Operation::Purge, Some(token), None);
    }
    let mut room = BATCH - records.len() as i64;
    let shares = if room > 0 { store::purge_shares(room)? } else { Vec::new() };
    let share = vec!["share".to_string()];
    for token in &shares {
        queue(Operation::Purge, Some(token), Some(&share));
    }
    room -= shares.len() as i64;
    let sessions = if room > 0 { store::purge_sessions(room)? } else { Vec::new() };
    // One event per session: of its record, or of none.
    let session = vec!["session".to_string()];
    for token in &sessions {
        queue(Operation::Purge, token.as_ref(), Some(&session));
    }
    room -= sessions.len() as i64;
    let field_tokens = if room > 0 { store::purge_field_tokens(room)? } else { Vec::new() };
    // One event per field token, naming its id and kind.
    for (token, kind) in &field_tokens {
        queue(Operation::Purge, crate::api::field_token_audit_id(token).as_ref(), Some(std::slice::from_ref(kind)));
    }
    Ok((records.len() + shares.len() + sessions.len() + field_tokens.len()) as i64)
}

/// Queues the purge event before the removal commits; if it cannot be
/// queued, the batch rolls back and waits for the next round.
fn queue(operation: Operation, token: Option<&store::Token>, fields: Option<&[String]>) {
    if !audit::record(operation, token, fields, Outcome::Ok) {
        error!("pii_vault purge worker: the audit queue stayed full; nothing purged this round");
    }
}
