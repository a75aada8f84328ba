//! The audit writer: a background worker, the single writer of
//! `pii_vault.audit_batches`. It drains the shared-memory queue in batches,
//! one row and one transaction per batch, and extends the MAC chain batch
//! by batch (format in src/crypto/audit_chain.rs). Because it
//! writes in its own transactions, an audited read stays audited when the
//! caller's transaction rolls back or its statement fails half-way.

use std::ffi::CStr;
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};

use super::event::AuditEvent;
use super::{queue, spill};
use crate::crypto::audit_chain::{batch_filter, batch_mac, encode_batch, AuditRecord, GENESIS};
use crate::store::{self, KeyCheck};
use crate::{guc, keys};

const BATCH: usize = 1024;
/// After a batch smaller than BATCH the writer naps for NAP, so events
/// gather into batches of ~NAP's worth instead of one transaction (and a
/// wake-up) per handful of events. It adds at most NAP to the crash-loss
/// window.
const NAP: Duration = Duration::from_millis(10);
/// How long an idle writer sleeps between checks (producers wake it sooner).
const IDLE: Duration = Duration::from_millis(250);

/// Registers the writer with the postmaster (from `_PG_init`, at preload).
pub fn register() {
    BackgroundWorkerBuilder::new("pii_vault audit writer")
        .set_type("pii_vault audit writer")
        .set_library("pii_vault")
        .set_function("pii_vault_audit_writer_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        // Restarted at once after it exits with an error or after a
        // SIGTERM that is not a shutdown (see the end of the main loop):
        // a shutdown in a gap between two writers would find no one to
        // keep the queue. The new writer waits out the rest of a second
        // itself (`space_out_restarts`).
        .set_restart_time(Some(Duration::ZERO))
        .load();
}

/// Set in the audit writer's process only (the restore guard on
/// `pii_vault.audit_batches` lets its inserts through).
static IS_WRITER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn is_writer() -> bool {
    IS_WRITER.load(std::sync::atomic::Ordering::Relaxed)
}

/// The chain as this writer continues it: the last row's id and MAC, and
/// the table they belong to (a re-created extension starts a new chain).
struct ChainHead {
    table: pg_sys::Oid,
    id: i64,
    mac: [u8; 32],
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pii_vault_audit_writer_main(_arg: pg_sys::Datum) {
    IS_WRITER.store(true, std::sync::atomic::Ordering::Relaxed);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    keep_freed_memory();
    // After a promotion, the standby's keeper consumes the queue until it
    // has kept what was left in the spill file (read once connected): the
    // writer becomes the consumer only then.
    while queue::keeper_running() {
        if !wait(NAP) {
            // SAFETY: ends this process the way PostgreSQL's own exits do.
            unsafe { pg_sys::proc_exit(1) };
        }
    }
    // From here on, a SIGTERM (a shutdown, pg_terminate_backend) or a
    // FATAL connecting ends this process only after what it leaves
    // queued is in the spill file (`spill_at_exit`).
    // SAFETY: registered once in this process; the callback lives as long
    // as the library.
    unsafe { pg_sys::before_shmem_exit(Some(spill_at_exit), pg_sys::Datum::from(0)) };
    let database = guc::database();
    if queue::set_connecting(true) {
        pause_before_reconnecting();
    } else {
        space_out_restarts();
    }
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    CONNECTED.store(true, std::sync::atomic::Ordering::Relaxed);
    queue::set_connecting(false);
    let Ok(keys) = keys::key_set() else {
        // Without a key the vault refuses every call, so nothing is queued.
        log!("pii_vault audit writer: no usable key; not writing the audit");
        while BackgroundWorker::wait_latch(Some(Duration::from_secs(60))) {}
        return;
    };

    // The writer's commits do not wait for the WAL flush: readers never wait
    // for the writer anyway, and the events are already at risk until they
    // are committed (see the crash-loss window in the README).
    BackgroundWorker::transaction(|| {
        // lock_timeout: a lock held on the audit table (even by a prepared
        // transaction, which no shutdown ends) makes the insert fail and
        // the writer retry, not wait where SIGTERM cannot reach it; at a
        // shutdown it then keeps the queue in the spill file.
        Spi::run("SET synchronous_commit = off; SET lock_timeout = '1s'; SET search_path = pg_catalog, pg_temp")
            .unwrap_or_else(|e| error!("pii_vault audit writer: {e}"));
    });
    let mut head: Option<ChainHead> = None;
    // SAFETY: MyProc and its latch live in shared memory for this process.
    let latch = unsafe { &raw mut (*pg_sys::MyProc).procLatch };
    // SAFETY: a plain global of this process.
    queue::register_writer(latch, unsafe { pg_sys::MyProcPid });
    let mut names = RoleNames::default();
    let mut spilled = spill::size().is_some();
    loop {
        if spilled {
            match replay_spill(keys, &mut head, &mut names) {
                Replay::Done => spilled = false,
                // The queue waits behind the file: what it holds is older.
                Replay::Blocked => {
                    if !wait(IDLE) {
                        break;
                    }
                    continue;
                }
            }
        }
        let pending = queue::peek(BATCH);
        let pause = if pending.is_empty() {
            if !queue::prepare_to_sleep() {
                continue; // an event arrived meanwhile
            }
            names.clear(); // idle: forget role names (a role may be renamed)
            IDLE
        } else {
            match write_batch(keys, &mut head, &mut names, &pending, Source::Queue) {
                // The events stay queued until there is a table, or a key
                // the vault's check values vouch for.
                Batch::NoTable | Batch::KeyMismatch | Batch::Replica => IDLE,
                // A backlog: keep writing (the zero wait still notices
                // SIGTERM and SIGHUP between batches).
                Batch::Written(BATCH) => Duration::ZERO,
                // Under load: nap so the next batch is bigger.
                Batch::Written(_) => NAP,
            }
        };
        if !wait(pause) {
            break;
        }
    }
    // SIGTERM: write what is queued before exiting, and what backends
    // still finishing their calls queue in the next moments (at a server
    // shutdown they receive SIGTERM at the same time as the writer). What
    // cannot be written goes to the spill file (spill_at_exit).
    let mut quiet = 0;
    while quiet < LINGER_NAPS && !spilled {
        let pending = queue::peek(BATCH);
        if pending.is_empty() {
            quiet += 1;
            std::thread::sleep(NAP);
        } else {
            match write_batch(keys, &mut head, &mut names, &pending, Source::Queue) {
                Batch::NoTable | Batch::KeyMismatch | Batch::Replica => break,
                Batch::Written(_) => quiet = 0,
            }
        }
    }
    queue::unregister_writer();
    log!("pii_vault audit writer: stopping; it is restarted unless the server is shutting down");
    // Exit code 1: the postmaster restarts a background worker that exits
    // with a non-zero code (after its restart time), and drops one that
    // exits with 0. A SIGTERM that is not a shutdown (pg_terminate_backend)
    // must not end the audit.
    // SAFETY: ends this process the way PostgreSQL's own exits do.
    unsafe { pg_sys::proc_exit(1) };
}

/// The previous start died connecting to the database of
/// pii_vault.database (PostgreSQL logged why, most likely that it does not
/// exist yet). The postmaster restarts the writer a second after it exits;
/// instead of a FATAL every second, say once what is going on and wait
/// before each new attempt, twice as long each time, up to a minute.
fn pause_before_reconnecting() {
    let attempts_before = queue::note_missing_database();
    if attempts_before == 0 {
        log!(
            "pii_vault audit writer: could not connect to the database named by pii_vault.database (does it exist?); retrying less and less often, at least once a minute"
        );
    }
    let pause = Duration::from_secs(1u64 << attempts_before.min(6)).min(Duration::from_secs(60));
    // Nothing is written while the database is missing: keep what is
    // queued in the spill file, so the queue does not fill and refuse
    // reads, and a shutdown during the pause loses nothing.
    spill_queue(Duration::ZERO, false);
    // The latch may already be set (a new process's is): wait out the
    // whole pause, leaving early only on SIGTERM.
    let until = std::time::Instant::now() + pause;
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()).filter(|d| !d.is_zero()) {
        if !wait(left) {
            // SAFETY: ends this process the way PostgreSQL's own exits do.
            unsafe { pg_sys::proc_exit(1) };
        }
    }
}

/// After SIGTERM the writer exits once the queue has stayed empty for this
/// many naps in a row.
const LINGER_NAPS: u32 = 5;

/// The writer's exit callback: moves the events still queued into the
/// spill file, including those backends queue in the next moments (as the
/// main loop lingers after SIGTERM).
///
/// Only when the writer is stopping (SIGTERM: a shutdown, or
/// pg_terminate_backend, after which it is restarted and writes the file
/// first). A writer that exits on an error while the server runs leaves
/// its events queued: the audit table refuses them, and reads must be
/// refused once the queue is full (fail closed), not go on into a file.
/// Also when it never connected (a FATAL connecting: its database does
/// not exist), where no audit table can refuse anything.
unsafe extern "C-unwind" fn spill_at_exit(_code: i32, _arg: pg_sys::Datum) {
    // Nothing may unwind out of an exit callback.
    let _ = std::panic::catch_unwind(|| {
        queue::note_writer_exit();
        let connected = CONNECTED.load(std::sync::atomic::Ordering::Relaxed);
        if stopping() || BackgroundWorker::sigterm_received() || !connected {
            spill_queue(NAP * LINGER_NAPS, true);
        }
    });
}

/// Set once this writer is connected to its database.
static CONNECTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A writer that exits on an error is restarted at once: it waits out the
/// rest of a second after the previous writer's exit, so a broken audit
/// table costs one attempt a second, not a busy loop.
fn space_out_restarts() {
    let since = queue::since_writer_exit();
    if let Some(left) = since.and_then(|s| Duration::from_secs(1).checked_sub(s)) {
        let until = std::time::Instant::now() + left;
        while let Some(left) = until.checked_duration_since(std::time::Instant::now()).filter(|d| !d.is_zero()) {
            if !wait(left) {
                // SAFETY: ends this process the way PostgreSQL's own exits do.
                unsafe { pg_sys::proc_exit(1) };
            }
        }
    }
}

/// Set once this writer has seen SIGTERM (pgrx's own flag is cleared by
/// the wait that reports it).
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::Relaxed)
}

/// Waits on the latch as `BackgroundWorker::wait_latch`, remembering a
/// SIGTERM for the exit callback; false once SIGTERM arrived.
fn wait(timeout: Duration) -> bool {
    let going = BackgroundWorker::wait_latch(Some(timeout));
    if !going {
        STOPPING.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    going
}

/// Keeps what is queued in the spill file (`spill::keep_queue`), as
/// vouched for when this writer found its key to be the vault's.
fn spill_queue(linger: Duration, exiting: bool) {
    spill::keep_queue(
        || KEYS_CHECKED.get().is_some() && !queue::state().key_mismatch,
        &spill::PRIMARY,
        BATCH,
        linger,
        exiting,
    );
}

/// What became of the spill file this time.
enum Replay {
    /// Written to the audit and removed, set aside, or there was none.
    Done,
    /// Not written now (no table, or a refused key): left as it is.
    Blocked,
}

/// Writes the spill file's events to the audit, in order, and removes the
/// file once all are committed. A file that does not verify is set aside
/// for an operator (`vault_health` names it, `vault_audit_verify` is not
/// ok while it is there); a writer that dies between a commit and the
/// removal (a crash, an error) writes the file's events again: twice,
/// never lost.
fn replay_spill(keys: &crate::crypto::KeySet, head: &mut Option<ChainHead>, names: &mut RoleNames) -> Replay {
    let spilled = match spill::read(keys) {
        Ok(None) => return Replay::Done,
        Ok(Some(Ok(spilled))) => {
            if spilled.torn {
                log!("pii_vault audit writer: the spill file ends with an incomplete frame (a process died writing it); it is not replayed");
            }
            if spilled.unverified() > 0 {
                log!(
                    "pii_vault audit writer: {} events of the spill file were kept by a writer whose key the vault had not vouched for and do not verify under the loaded keys; they are written with their application name marked \"unverified:\"",
                    spilled.unverified()
                );
            }
            spilled
        }
        Ok(Some(Err(refused))) => {
            // Not written, not in the way: the queue's events go on being
            // written, and vault_health and vault_audit_verify report the
            // file until an operator deals with it.
            match spill::set_aside() {
                Ok(name) => log!(
                    "pii_vault audit writer: {} is not replayed ({refused}); it is kept, unwritten, as {name}",
                    spill::FILE_NAME
                ),
                Err(e) => error!("pii_vault audit writer: could not set {} aside: {e}", spill::FILE_NAME),
            }
            return Replay::Done;
        }
        Err(e) => error!("pii_vault audit writer: could not read {}: {e}", spill::path().display()),
    };
    // Frames a standby kept (before its promotion made it this primary)
    // that the old primary had taken are in the chain already, replicated
    // here with their mark in pii_vault.forwarded: not written twice.
    let taken = crate::worker_transaction(store::forwarded_frames).unwrap_or_default();
    let events: Vec<&AuditEvent> = spilled
        .frames
        .iter()
        .filter(|f| {
            f.origin == spill::PRIMARY
                || taken.iter().find(|(origin, _)| *origin == f.origin).is_none_or(|(_, last)| f.number > *last)
        })
        .flat_map(|f| f.events.iter())
        .collect();
    // Chunks this process wrote in an earlier attempt that was blocked
    // part-way (the file cannot have changed since: only a writer appends).
    let mut done = REPLAYED.get();
    for chunk in events[done.min(events.len())..].chunks(BATCH) {
        match write_batch(keys, head, names, chunk, Source::Spill) {
            Batch::Written(n) => {
                done += n;
                REPLAYED.set(done);
            }
            Batch::NoTable | Batch::KeyMismatch | Batch::Replica => return Replay::Blocked,
        }
    }
    // A failed removal: the next writer would replay the file again.
    if let Err(e) = spill::remove() {
        error!("pii_vault audit writer: could not remove {} after writing it: {e}", spill::path().display());
    }
    REPLAYED.set(0);
    log!("pii_vault audit writer: wrote {} events kept in the spill file to the audit", events.len());
    Replay::Done
}

thread_local! {
    /// Events of the spill file this process has written (a replay
    /// blocked part-way resumes after them).
    static REPLAYED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Where the events of a batch come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The queue: their slots are freed once the batch commits.
    Queue,
    /// The spill file: the queue is not touched.
    Spill,
}

/// Each batch allocates and frees the same memory (the events, the
/// transaction's contexts). With glibc's defaults, large blocks are mmap()ed
/// and returned to the kernel on free, so every batch page-faulted them in
/// again. Keep them in the heap.
fn keep_freed_memory() {
    const KEEP: i32 = 64 << 20;
    // SAFETY: mallopt only tunes this process's allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, KEEP);
        libc::mallopt(libc::M_TRIM_THRESHOLD, KEEP);
    }
}

/// Role names by oid, looked up once per busy period.
#[derive(Default)]
struct RoleNames(std::collections::HashMap<u32, String>);

impl RoleNames {
    /// Looks up the roles of `events` not known yet.
    fn learn(&mut self, events: &[&AuditEvent]) {
        for event in events {
            for oid in [event.roles.session, event.roles.acting, event.roles.calling] {
                self.0.entry(oid).or_insert_with(|| role_name(oid));
            }
        }
    }

    /// A role's name, once `learn` has seen it.
    fn get(&self, oid: u32) -> &str {
        self.0.get(&oid).map_or("?", String::as_str)
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// What became of one batch of queued events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// Written as one row and committed in the queue: this many events.
    Written(usize),
    /// No audit table (the vault's database has no pii_vault yet): the
    /// events stay queued.
    NoTable,
    /// The loaded key is not the vault's: nothing is MACed under it, and
    /// the events stay queued.
    KeyMismatch,
    /// The database is a logical replica of another vault: the events stay
    /// queued until its subscription is disabled.
    Replica,
}

/// Writes `batch` (the oldest queued events) as one batch row and marks
/// them committed in the queue.
fn write_batch(
    keys: &crate::crypto::KeySet,
    head: &mut Option<ChainHead>,
    names: &mut RoleNames,
    batch: &[&AuditEvent],
    from: Source,
) -> Batch {
    let written = crate::worker_transaction(std::panic::AssertUnwindSafe(|| {
        Spi::connect_mut(|client| -> SpiResult<Batch> {
            let plans = writer_plans(client)?;
            let table: Option<pg_sys::Oid> = client.select(&plans.audit_table, None, &[])?.first().get(1)?;
            let Some(table) = table else { return Ok(Batch::NoTable) };
            // A logical replica (an enabled subscription replicates the
            // audit into this database, say for a major-version upgrade):
            // its batches arrive from the publisher, and one of this
            // writer's would collide with them and stop the subscription.
            // The events wait until the subscription is disabled.
            let subscribed: Option<bool> = client.select(&plans.subscribed, None, &[table.into()])?.first().get(1)?;
            if subscribed == Some(true) {
                return Ok(Batch::Replica);
            }
            // The loaded keys must be the vault's before anything is MACed
            // under them, or vault_audit_verify() rejects the batch forever
            // (the events stay queued; calls are refused under a wrong key
            // anyway). Judged again whenever the key check values change.
            let generation = crate::shmem::key_check_generation();
            if KEYS_CHECKED.get() != Some(generation) {
                match crate::store::settle_key_checks(client, keys, true) {
                    Ok(KeyCheck::Settled | KeyCheck::Pending) => KEYS_CHECKED.set(Some(generation)),
                    Ok(KeyCheck::Refused(_)) => return Ok(Batch::KeyMismatch),
                    Err(e) => error!("pii_vault audit writer: {e}"),
                }
            }
            if head.as_ref().is_none_or(|h| h.table != table) {
                *head = Some(chain_head(client, table)?);
            }
            let h = head.as_mut().expect("set above");
            let first_id = h.id + 1;
            names.learn(batch);
            let records: Vec<AuditRecord> =
                batch.iter().enumerate().map(|(i, event)| to_record(first_id + i as i64, event, names)).collect();
            let last_id = first_id + records.len() as i64 - 1;
            // MACed under the active version, which the batch names.
            let ring = keys.active();
            let events = encode_batch(ring.key_version(), &records);
            let mac = batch_mac(ring, &h.mac, first_id, last_id, &events);
            let token_filter = batch_filter(&records);
            client.update(
                &plans.insert_batch,
                None,
                &[
                    first_id.into(),
                    last_id.into(),
                    token_filter.as_slice().into(),
                    events.as_slice().into(),
                    mac.as_slice().into(),
                ],
            )?;
            // Events a standby forwarded: the last frame taken from each
            // standby is committed with them, so a forward sent again after
            // a lost reply skips exactly what this transaction wrote.
            let mut taken: Vec<([u8; 16], u64, i64, String)> = Vec::new();
            for event in batch {
                if let Some((origin, frame)) = event.forwarded() {
                    match taken.iter_mut().find(|t| t.0 == origin) {
                        Some(t) => {
                            t.1 = t.1.max(frame);
                            t.2 += 1;
                        }
                        None => taken.push((origin, frame, 1, event.server().into_owned())),
                    }
                }
            }
            for (origin, frame, events, server) in taken {
                // Not prepared with the others: the table exists from 0.4.0
                // on, and only a 0.4.0 vault takes forwarded events.
                client.update(
                    "INSERT INTO pii_vault.forwarded AS f (origin, server, last_frame, events) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (origin) DO UPDATE SET last_frame = GREATEST(f.last_frame, excluded.last_frame), \
                     events = f.events + excluded.events, server = excluded.server, received_at = pg_catalog.now()",
                    None,
                    &[
                        pgrx::Uuid::from_bytes(origin).into(),
                        server.into(),
                        (frame as i64).into(),
                        events.into(),
                    ],
                )?;
            }
            h.id = last_id;
            h.mac = mac;
            Ok(Batch::Written(batch.len()))
        })
    }));
    match written {
        Ok(Batch::KeyMismatch) => {
            if queue::note_key_mismatch() {
                log!("pii_vault audit writer: the loaded master key is not the key this vault was created with; not writing the audit under it");
            }
            Batch::KeyMismatch
        }
        Ok(Batch::Written(n)) => {
            let h = head.as_ref().expect("set by the batch");
            queue::commit(h.table.into(), h.id, h.mac);
            if from == Source::Queue {
                queue::release(n);
            }
            Batch::Written(n)
        }
        Ok(Batch::NoTable) => Batch::NoTable,
        Ok(Batch::Replica) => Batch::Replica,
        Err(e) => {
            // A broken audit table: the events stay queued; the writer
            // exits and the postmaster restarts it, so readers fail closed
            // once the queue is full.
            error!("pii_vault audit writer: could not write the audit: {e}");
        }
    }
}

thread_local! {
    /// The key check generation (`shmem::key_check_generation`) under which
    /// this writer last found the loaded keys to be the vault's.
    static KEYS_CHECKED: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Where the next batch chains on in `table`: after the last batch this
/// server's writers committed there (kept in shared memory across writer
/// restarts), or, when none has since the server started, after the
/// table's last row. Never after a later row: continuing from whatever
/// the table ends with would let batches deleted from its end (and a
/// writer made to restart, by pg_terminate_backend or a planted row
/// colliding with its next id) go unnoticed; chaining on from the
/// remembered head leaves a gap `vault_audit_verify()` reports instead.
fn chain_head(client: &SpiClient<'_>, table: pg_sys::Oid) -> SpiResult<ChainHead> {
    let remembered = queue::state();
    if remembered.chain_id > 0 && remembered.chain_table == u32::from(table) {
        return Ok(ChainHead { table, id: remembered.chain_id, mac: remembered.chain_mac });
    }
    let last =
        client.select("SELECT last_id, mac FROM pii_vault.audit_batches ORDER BY first_id DESC LIMIT 1", None, &[])?;
    let (id, mac) = if last.is_empty() {
        (0, GENESIS)
    } else {
        let row = last.first();
        let mac: Vec<u8> = row.get(2)?.unwrap_or_default();
        (row.get(1)?.unwrap_or(0), mac.try_into().unwrap_or(GENESIS))
    };
    Ok(ChainHead { table, id, mac })
}

/// The writer's statements, prepared once per writer process (parsing
/// and planning them per batch was most of its work under load).
struct WriterPlans {
    audit_table: OwnedPreparedStatement,
    subscribed: OwnedPreparedStatement,
    insert_batch: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: std::cell::Cell<Option<&'static WriterPlans>> = const { std::cell::Cell::new(None) };
}

fn writer_plans(client: &SpiClient<'_>) -> SpiResult<&'static WriterPlans> {
    if let Some(plans) = PLANS.get() {
        return Ok(plans);
    }
    let plans = WriterPlans {
        audit_table: client.prepare("SELECT pg_catalog.to_regclass('pii_vault.audit_batches')::oid", &[])?.keep(),
        subscribed: client
            .prepare(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_subscription_rel r \
                 JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid WHERE s.subenabled AND r.srrelid = $1)",
                &[PgBuiltInOids::OIDOID.oid()],
            )?
            .keep(),
        insert_batch: client
            .prepare_mut(
                "INSERT INTO pii_vault.audit_batches (first_id, last_id, token_filter, events, mac) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    PgBuiltInOids::INT8OID.oid(),
                    PgBuiltInOids::INT8OID.oid(),
                    PgBuiltInOids::BYTEAOID.oid(),
                    PgBuiltInOids::BYTEAOID.oid(),
                    PgBuiltInOids::BYTEAOID.oid(),
                ],
            )?
            .keep(),
    };
    // Leaked on purpose: kept plans live as long as the writer process.
    let plans: &'static WriterPlans = Box::leak(Box::new(plans));
    PLANS.set(Some(plans));
    Ok(plans)
}

fn role_name(oid: u32) -> String {
    // SAFETY: inside a transaction; noerr = true returns NULL for a dropped role.
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::Oid::from(oid), true);
        if name.is_null() {
            format!("(dropped role {oid})")
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}

fn to_record<'a>(id: i64, event: &'a AuditEvent, names: &'a RoleNames) -> AuditRecord<'a> {
    AuditRecord {
        id,
        at: event.at,
        session_role: names.get(event.roles.session).into(),
        acting_role: names.get(event.roles.acting).into(),
        calling_role: names.get(event.roles.calling).into(),
        calls: event.calls,
        application_name: event.application_name(),
        operation: event.operation().map_or("?", |o| o.as_str()).into(),
        token: event.token(),
        fields: event.fields(),
        outcome: event.outcome().map_or("?", |o| o.as_str()).into(),
        purpose: event.purpose(),
        server: event.server(),
    }
}
