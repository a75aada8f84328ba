//! The shared-memory queue between backends (producers) and the audit
//! writer (the one consumer). Events stay in the queue until the writer has
//! committed them, so a writer that fails retries them; what is lost in a
//! server crash is what was queued and not yet committed (the crash-loss
//! window, usually well under a second).
//!
//! The events sit in a lock-free ring (Vyukov's bounded queue, one
//! consumer): every slot carries a sequence number saying whose turn it is.
//! A producer claims position `p` with one compare-and-swap on `head` when
//! slot `p % CAPACITY` reads `p` (free), copies its event in, and publishes
//! it by setting the sequence to `p + 1`. The writer reads published slots
//! in place from `tail` and, once their batch is committed, hands each slot
//! to the next lap (`p + CAPACITY`). Why not a lock: every audited call
//! queues an event, and with an LWLock two busy backends bounced the lock's
//! cache line and paid for its release on every call.
//!
//! Between claiming and publishing a producer only copies bytes (nothing
//! can raise an error or be interrupted there), so a claimed slot is always
//! published; a crashed backend restarts the whole server, shared memory
//! included.
//!
//! The writer's identity and the head of the MAC chain change once per
//! batch and are read by the health and verify functions: they sit under
//! an ordinary LWLock (`WRITER`).

use std::cell::UnsafeCell;
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::shmem::PGRXSharedMemory;

use super::event::AuditEvent;

/// Events the ring holds (`Ring::SIZE` of shared memory: under 5 MB).
/// Room for several of the writer's naps at the highest audited rate two
/// cores reach, and for bursts beyond it (BENCHMARKS.md has the rates).
pub const CAPACITY: usize = 8192;

/// A cache line (two, for the adjacent-line prefetcher) of its own, so
/// producers claiming `head` do not slow the writer's reads of `tail`.
#[repr(C, align(128))]
struct OwnLine<T>(T);

#[repr(C, align(64))]
struct Slot {
    /// `p`: free for position `p`; `p + 1`: holds the event of position `p`.
    sequence: AtomicU64,
    event: UnsafeCell<AuditEvent>,
}

/// The ring, in shared memory (`ring()`).
#[repr(C)]
pub struct Ring {
    /// The next position a producer claims (events ever queued).
    head: OwnLine<AtomicU64>,
    /// The oldest position not yet committed (events ever committed).
    tail: OwnLine<AtomicU64>,
    writer: OwnLine<WriterWake>,
    slots: [Slot; CAPACITY],
}

struct WriterWake {
    /// The writer's latch (a pointer into shared PGPROC memory), 0 if none.
    latch: AtomicUsize,
    /// The writer found the queue empty and waits on its latch: the next
    /// producer wakes it (producers do not signal a busy writer).
    sleeping: AtomicBool,
}

impl Ring {
    pub const SIZE: usize = std::mem::size_of::<Ring>();

    /// Initializes a new ring in place: the ring is megabytes, too large to
    /// build as a value on a process's stack and copy in.
    ///
    /// # Safety
    /// `ring` points at `Ring::SIZE` writable bytes, aligned for `Ring`,
    /// that no other process uses yet.
    pub unsafe fn init_in_place(ring: *mut Ring) {
        // SAFETY: per the contract; all-zero bytes are a valid Ring (atomics
        // and plain old data), then each slot is marked free for its first lap.
        unsafe {
            std::ptr::write_bytes(ring.cast::<u8>(), 0, Ring::SIZE);
            for (i, slot) in (*ring).slots.iter().enumerate() {
                slot.sequence.store(i as u64, Ordering::Relaxed);
            }
        }
    }
}

// SAFETY: every field is reached through atomics, or (the events) through
// the slot protocol above, which gives each slot one writer at a time.
unsafe impl Sync for Ring {}

static RING: AtomicPtr<Ring> = AtomicPtr::new(std::ptr::null_mut());

/// Makes the ring at `ring` (in shared memory) this process's queue; from
/// the shared-memory start-up hook (children inherit it).
pub fn attach(ring: *mut Ring) {
    RING.store(ring, Ordering::Release);
}

fn ring() -> &'static Ring {
    let ring = RING.load(Ordering::Acquire);
    assert!(!ring.is_null(), "pii_vault: the audit queue is used before shared memory is attached");
    // SAFETY: set once to shared memory that lives as long as the server.
    unsafe { &*ring }
}

/// The writer's identity and the head of the MAC chain.
#[derive(Default)]
pub struct WriterState {
    writer_pid: i32,
    /// The writer found that the loaded key does not match the vault's key
    /// check, and writes nothing.
    key_mismatch: bool,
    /// A writer is connecting to its database: still set at the next
    /// start means that connection died (the database does not exist).
    connecting: bool,
    /// Checks in a row that found the database missing.
    missing_checks: u32,
    /// Events moved to the spill file since the server started.
    spilled: u64,
    /// When the last writer process exited (0: none has).
    exited_at: i64,
    /// The audit keeper of a standby is the queue's consumer.
    keeper: bool,
    /// The spill file as the consumer last wrote or read it (inode, size,
    /// modification time); `spill_seen` false: not since the start.
    spill_seen: bool,
    spill_inode: u64,
    spill_size: u64,
    spill_mtime_ns: i64,
    /// The number of the last frame appended (frames are numbered by the
    /// time they are kept, in microseconds, strictly increasing).
    last_frame: u64,
    /// A standby's forwarding: the spill file it stands for (by the number
    /// of its first frame), how far the primary has taken it, the number
    /// of the oldest frame not yet taken (0: none), whether the forwarder
    /// is connected, and the events forwarded since the start.
    forwarded: Forwarded,
    /// The last row the writer committed, in which audit table (by oid).
    chain_table: u32,
    chain_id: i64,
    chain_mac: [u8; 32],
}

// SAFETY: plain old data.
unsafe impl PGRXSharedMemory for WriterState {}

// SAFETY: a unique name; initialized by pg_shmem_init! at preload.
pub static WRITER: PgLwLock<WriterState> = unsafe { PgLwLock::new(c"pii_vault_audit_writer") };

/// What a push did. The ring itself never calls into PostgreSQL, so it can
/// be tested without a server; the caller sets the latch.
#[derive(Debug, PartialEq, Eq)]
enum Pushed {
    Full,
    Queued,
    /// Queued, and the writer was asleep: set this latch (0: no writer).
    QueuedWriterAsleep(usize),
}

impl Ring {
    /// Queues an event; full when the writer has not yet committed the
    /// event that last used the slot.
    fn push(&self, event: &AuditEvent) -> Pushed {
        let mut position = self.head.0.load(Ordering::Relaxed);
        let slot = loop {
            let slot = self.slot(position);
            let sequence = slot.sequence.load(Ordering::Acquire);
            if sequence == position {
                match self.head.0.compare_exchange_weak(position, position + 1, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => break slot,
                    Err(now) => position = now,
                }
            } else if sequence < position {
                // The writer has not committed this slot's event of the last lap.
                return Pushed::Full;
            } else {
                // Another producer took this position first.
                position = self.head.0.load(Ordering::Relaxed);
            }
        };
        // SAFETY: the claim above makes this process the slot's only user
        // until it publishes. Only the bytes in use are copied: one or two
        // cache lines instead of the event's five.
        event.copy_used_to(unsafe { &mut *slot.event.get() });
        slot.sequence.store(position + 1, Ordering::Release);
        self.published()
    }

    /// Queues `events` in consecutive positions claimed at once, or none
    /// of them: a call on many records is audited whole or refused whole.
    /// Full when the last of those slots still holds an event of the last
    /// lap (the writer releases slots in order, so then the others are
    /// free too).
    fn push_many(&self, events: &[AuditEvent]) -> Pushed {
        let n = events.len() as u64;
        assert!((1..=CAPACITY as u64).contains(&n), "a reservation of 1 to CAPACITY events");
        let mut position = self.head.0.load(Ordering::Relaxed);
        loop {
            let (first, last) = (self.slot(position), self.slot(position + n - 1));
            let (first_seq, last_seq) = (first.sequence.load(Ordering::Acquire), last.sequence.load(Ordering::Acquire));
            if first_seq == position && last_seq == position + n - 1 {
                match self.head.0.compare_exchange_weak(position, position + n, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => break,
                    Err(now) => position = now,
                }
            } else if first_seq < position || last_seq < position + n - 1 {
                return Pushed::Full;
            } else {
                position = self.head.0.load(Ordering::Relaxed);
            }
        }
        for (i, event) in events.iter().enumerate() {
            let slot = self.slot(position + i as u64);
            // SAFETY: as in push: every slot of the claimed range is this
            // process's alone until it publishes it.
            event.copy_used_to(unsafe { &mut *slot.event.get() });
            slot.sequence.store(position + i as u64 + 1, Ordering::Release);
        }
        self.published()
    }

    /// After publishing: whether the writer must be woken.
    fn published(&self) -> Pushed {
        // Pairs with the fence in prepare_to_sleep: either the writer sees
        // this event, or this producer sees the writer asleep and wakes it.
        fence(Ordering::SeqCst);
        let writer = &self.writer.0;
        if writer.sleeping.load(Ordering::Relaxed) && writer.sleeping.swap(false, Ordering::Relaxed) {
            return Pushed::QueuedWriterAsleep(writer.latch.load(Ordering::Relaxed));
        }
        Pushed::Queued
    }

    /// True (and marked asleep) when no event is ready, false when there is
    /// more to write.
    fn prepare_to_sleep(&self) -> bool {
        let writer = &self.writer.0;
        writer.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let tail = self.tail.0.load(Ordering::Relaxed);
        let ready = self.slot(tail).sequence.load(Ordering::Acquire) == tail + 1;
        if ready {
            writer.sleeping.store(false, Ordering::Relaxed);
        }
        !ready
    }

    /// Up to `max` of the oldest uncommitted events, in place (the one
    /// consumer only); valid until `release` hands their slots on.
    fn peek(&self, max: usize) -> Vec<&AuditEvent> {
        let tail = self.tail.0.load(Ordering::Relaxed);
        let max = max.min(CAPACITY) as u64;
        let mut events = Vec::with_capacity(max as usize);
        for position in tail..tail + max {
            let slot = self.slot(position);
            if slot.sequence.load(Ordering::Acquire) != position + 1 {
                break; // not published yet (or never claimed)
            }
            // SAFETY: published and not released: no producer writes it
            // until release hands the slot on.
            events.push(unsafe { &*slot.event.get() });
        }
        events
    }

    /// When the oldest uncommitted event was made (µs since the PostgreSQL
    /// epoch), None when none is published. Any process may ask: the
    /// slot is read as a seqlock, and a read the writer raced past (the
    /// slot released meanwhile) is not trusted.
    fn oldest_at(&self) -> Option<i64> {
        let tail = self.tail.0.load(Ordering::Acquire);
        let slot = self.slot(tail);
        if slot.sequence.load(Ordering::Acquire) != tail + 1 {
            return None;
        }
        // SAFETY: a volatile read of a plain i64 inside a published slot;
        // a producer may overwrite it only after the writer releases the
        // slot, which the check below detects (the value is then dropped).
        let at = unsafe { std::ptr::read_volatile(&raw const (*slot.event.get()).at) };
        fence(Ordering::Acquire);
        (slot.sequence.load(Ordering::Relaxed) == tail + 1).then_some(at)
    }

    /// Frees the slots of the `n` oldest events for the next lap.
    fn release(&self, n: usize) {
        let tail = self.tail.0.load(Ordering::Relaxed);
        for position in tail..tail + n as u64 {
            self.slot(position).sequence.store(position + CAPACITY as u64, Ordering::Release);
        }
        self.tail.0.store(tail + n as u64, Ordering::Release);
    }

    fn slot(&self, position: u64) -> &Slot {
        &self.slots[(position % CAPACITY as u64) as usize]
    }
}

/// Queues an event and wakes the writer if it sleeps. False when the queue
/// is full.
pub fn push(event: &AuditEvent) -> bool {
    match ring().push(event) {
        Pushed::Full => false,
        Pushed::Queued => true,
        Pushed::QueuedWriterAsleep(latch) => {
            wake(latch);
            true
        }
    }
}

/// Queues `events` (1 to `CAPACITY`) in one reservation, or none; wakes
/// the writer as `push`. False when the queue lacks room for all of them.
pub fn push_many(events: &[AuditEvent]) -> bool {
    match ring().push_many(events) {
        Pushed::Full => false,
        Pushed::Queued => true,
        Pushed::QueuedWriterAsleep(latch) => {
            wake(latch);
            true
        }
    }
}

/// The writer is about to wait: true (and marked asleep) when no event is
/// ready, false when there is more to write.
pub fn prepare_to_sleep() -> bool {
    ring().prepare_to_sleep()
}

fn wake(latch: usize) {
    if latch != 0 {
        // SAFETY: the writer published its own PGPROC latch, which lives in
        // shared memory for the life of the server.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

/// Wakes the writer (used while waiting for room in a full queue).
pub fn wake_writer() {
    wake(ring().writer.0.latch.load(Ordering::Relaxed));
}

/// Up to `max` of the oldest uncommitted events, read in place; the writer
/// only (the one consumer). They stay valid until `commit` releases them.
pub fn peek(max: usize) -> Vec<&'static AuditEvent> {
    ring().peek(max)
}

/// Records a committed batch: rows up to `chain_id` with `chain_mac` in
/// the audit table `chain_table`. A committed batch means the key matched:
/// any earlier mismatch is over. The writer only.
pub fn commit(chain_table: u32, chain_id: i64, chain_mac: [u8; 32]) {
    let mut w = WRITER.exclusive();
    w.chain_table = chain_table;
    w.chain_id = chain_id;
    w.chain_mac = chain_mac;
    w.key_mismatch = false;
}

/// Frees the slots of the `n` oldest events (committed to the audit table
/// or kept in the spill file). The writer only, after it is done with
/// what `peek` returned.
pub fn release(n: usize) {
    ring().release(n);
}

/// Records when a writer process exits (its exit callback).
pub fn note_writer_exit() {
    // SAFETY: a clock read.
    WRITER.exclusive().exited_at = unsafe { pg_sys::GetCurrentTimestamp() };
}

/// How long ago the last writer process exited, None if none has.
pub fn since_writer_exit() -> Option<std::time::Duration> {
    let exited_at = WRITER.share().exited_at;
    // SAFETY: a clock read.
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    (exited_at != 0).then(|| std::time::Duration::from_micros((now - exited_at).max(0) as u64))
}

/// Where a standby's forwarding stands (`forwarder`).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// The spill file, named by the number of its first frame.
    pub file: u64,
    /// Bytes of it the primary has taken.
    pub offset: u64,
    /// The number of the last frame the primary took.
    pub last: u64,
    /// The primary's WAL position once it had committed them: the file
    /// may go only once this standby has replayed up to it (else a
    /// promotion would find the events neither in the file nor in the
    /// replicated audit).
    pub lsn: u64,
    /// The number (a time in µs) of the oldest frame not taken; 0: none.
    pub oldest: u64,
    pub connected: bool,
    pub events: u64,
}

pub fn forwarded() -> Forwarded {
    WRITER.share().forwarded
}

pub fn set_forwarded(f: impl FnOnce(&mut Forwarded)) {
    f(&mut WRITER.exclusive().forwarded);
}

/// Marks the standby's audit keeper as the queue's consumer (true), or
/// gone (false).
pub fn set_keeper(running: bool) {
    WRITER.exclusive().keeper = running;
}

/// Whether a standby's audit keeper still consumes the queue (a promoted
/// server's writer waits until it has kept what was left and exited).
pub fn keeper_running() -> bool {
    WRITER.share().keeper
}

/// The spill file as the consumer last left it, if it has seen it since
/// the server started.
pub fn spill_file_seen() -> Option<super::spill::Identity> {
    let w = WRITER.share();
    w.spill_seen.then_some(super::spill::Identity {
        inode: w.spill_inode,
        size: w.spill_size,
        mtime_ns: w.spill_mtime_ns,
    })
}

/// Records the spill file as the consumer leaves it.
pub fn saw_spill_file(identity: super::spill::Identity) {
    let mut w = WRITER.exclusive();
    w.spill_seen = true;
    w.spill_inode = identity.inode;
    w.spill_size = identity.size;
    w.spill_mtime_ns = identity.mtime_ns;
}

/// The spill file is gone (removed or set aside).
pub fn forget_spill_file() {
    WRITER.exclusive().spill_seen = false;
}

/// The number of the last frame appended and one for the next: the time
/// now in microseconds, past the last one given.
pub fn next_frame_numbers() -> (u64, u64) {
    // SAFETY: a clock read.
    let now = unsafe { pg_sys::GetCurrentTimestamp() }.max(0) as u64;
    let mut w = WRITER.exclusive();
    let previous = w.last_frame;
    w.last_frame = now.max(previous + 1);
    (previous, w.last_frame)
}

/// Where the chain of frames goes on after a restart (the keeper's start:
/// the last frame of the file, or the last the primary took).
pub fn continue_frames_after(number: u64) {
    let mut w = WRITER.exclusive();
    w.last_frame = w.last_frame.max(number);
}

/// Counts events moved to the spill file.
pub fn note_spilled(n: u64) {
    let mut w = WRITER.exclusive();
    w.spilled = w.spilled.saturating_add(n);
}

/// Called by the writer once it is connected and ready.
pub fn register_writer(latch: *mut pg_sys::Latch, pid: i32) {
    WRITER.exclusive().writer_pid = pid;
    ring().writer.0.latch.store(latch as usize, Ordering::Relaxed);
}

pub fn unregister_writer() {
    WRITER.exclusive().writer_pid = 0;
    let wake = &ring().writer.0;
    wake.latch.store(0, Ordering::Relaxed);
    wake.sleeping.store(false, Ordering::Relaxed);
}

/// Marks the writer as connecting to its database (true), or connected
/// (false, which also forgets the checks that found it missing). Returns
/// whether the previous start left the mark: its connection died.
pub fn set_connecting(connecting: bool) -> bool {
    let mut w = WRITER.exclusive();
    let died = w.connecting;
    w.connecting = connecting;
    if !connecting {
        w.missing_checks = 0;
    }
    died
}

/// Counts a check that found the database missing; how many came before.
pub fn note_missing_database() -> u32 {
    let mut w = WRITER.exclusive();
    w.missing_checks = w.missing_checks.saturating_add(1);
    w.missing_checks - 1
}

/// Records that the writer refuses to write under a mismatched key; true
/// the first time (to log it once). `commit` clears it.
pub fn note_key_mismatch() -> bool {
    let mut w = WRITER.exclusive();
    !std::mem::replace(&mut w.key_mismatch, true)
}

/// When the oldest event not yet committed was made, if any.
pub fn oldest_unwritten_at() -> Option<i64> {
    ring().oldest_at()
}

/// Events ever queued (since server start), counting those being copied in.
pub fn queued_total() -> u64 {
    ring().head.0.load(Ordering::Acquire)
}

/// Events ever committed by the writer (since server start).
pub fn committed_total() -> u64 {
    ring().tail.0.load(Ordering::Acquire)
}

/// What `vault_health` and `vault_audit_verify` need to know.
pub struct QueueState {
    pub writer_pid: i32,
    pub key_mismatch: bool,
    /// Events moved to the spill file since the server started.
    pub spilled: u64,
    pub pending: u64,
    /// The last committed row and its table (0 before the writer committed
    /// anything since the server started).
    pub chain_table: u32,
    pub chain_id: i64,
    pub chain_mac: [u8; 32],
}

pub fn state() -> QueueState {
    let w = WRITER.share();
    // Tail first: head only grows, so the difference is never negative.
    let tail = committed_total();
    QueueState {
        writer_pid: w.writer_pid,
        key_mismatch: w.key_mismatch,
        spilled: w.spilled,
        pending: queued_total() - tail,
        chain_table: w.chain_table,
        chain_id: w.chain_id,
        chain_mac: w.chain_mac,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::{Operation, Outcome};

    #[test]
    fn a_slot_is_the_size_contributing_md_gives() {
        // 15 cache lines: the event (905 bytes, 256 of them the purpose,
        // 64 a standby's name, 24 the standby and frame a forwarded event
        // came in) and its sequence. CAPACITY of them is the queue's
        // shared memory.
        assert_eq!(std::mem::size_of::<Slot>(), 960);
    }

    /// A ring on the heap, as the start-up hook makes one in shared memory.
    struct TestRing(*mut Ring);

    impl TestRing {
        fn new() -> TestRing {
            let layout = std::alloc::Layout::new::<Ring>();
            // SAFETY: a fresh allocation of the ring's layout, freed in drop.
            unsafe {
                let ring = std::alloc::alloc(layout).cast::<Ring>();
                assert!(!ring.is_null());
                Ring::init_in_place(ring);
                TestRing(ring)
            }
        }
    }

    impl std::ops::Deref for TestRing {
        type Target = Ring;
        fn deref(&self) -> &Ring {
            // SAFETY: initialized in new, alive until drop.
            unsafe { &*self.0 }
        }
    }

    impl Drop for TestRing {
        fn drop(&mut self) {
            // SAFETY: allocated in new with this layout.
            unsafe { std::alloc::dealloc(self.0.cast(), std::alloc::Layout::new::<Ring>()) }
        }
    }

    // SAFETY: Ring is Sync; the pointer is owned by the TestRing.
    unsafe impl Send for TestRing {}
    // SAFETY: as above.
    unsafe impl Sync for TestRing {}

    fn event(producer: u32, n: i64) -> AuditEvent {
        let fields = vec![format!("f{n}")];
        AuditEvent::new(
            n,
            crate::audit::event::Roles { session: producer, acting: producer, calling: producer },
            "app",
            "",
            Operation::Lookup,
            None,
            Some(&fields),
            Outcome::Ok,
        )
    }

    #[test]
    fn holds_capacity_events_in_order_and_refuses_more() {
        let ring = TestRing::new();
        for n in 0..CAPACITY as i64 {
            assert_eq!(ring.push(&event(1, n)), Pushed::Queued);
        }
        assert_eq!(ring.push(&event(1, -1)), Pushed::Full);
        let events = ring.peek(usize::MAX);
        assert_eq!(events.len(), CAPACITY);
        assert!(events.iter().enumerate().all(|(i, e)| e.at == i as i64));
        ring.release(10);
        for n in 0..10 {
            assert_eq!(ring.push(&event(1, CAPACITY as i64 + n)), Pushed::Queued);
        }
        assert_eq!(ring.push(&event(1, -1)), Pushed::Full);
        let events = ring.peek(usize::MAX);
        assert_eq!(events.len(), CAPACITY);
        assert_eq!(events[0].at, 10);
        assert_eq!(events[CAPACITY - 1].at, CAPACITY as i64 + 9);
        assert_eq!(events[CAPACITY - 1].fields().unwrap(), [format!("f{}", CAPACITY + 9)]);
    }

    #[test]
    fn a_reservation_queues_all_its_events_or_none() {
        let ring = TestRing::new();
        let many: Vec<AuditEvent> = (0..100).map(|n| event(2, n)).collect();
        for n in 0..CAPACITY as i64 - 150 {
            assert_eq!(ring.push(&event(1, n)), Pushed::Queued);
        }
        assert_eq!(ring.push_many(&many), Pushed::Queued);
        // 50 slots left: a reservation of 100 takes none of them.
        assert_eq!(ring.push_many(&many), Pushed::Full);
        assert_eq!(ring.head.0.load(Ordering::Relaxed), CAPACITY as u64 - 50);
        let events = ring.peek(usize::MAX);
        assert_eq!(events.len(), CAPACITY - 50);
        assert!(events[CAPACITY - 150..].iter().enumerate().all(|(i, e)| e.at == i as i64 && e.roles.session == 2));
        // Once the writer frees the oldest, a reservation across the lap
        // boundary fits.
        ring.release(100);
        assert_eq!(ring.push_many(&many), Pushed::Queued);
        let events = ring.peek(usize::MAX);
        assert_eq!(events.len(), CAPACITY - 50);
        assert!(events[CAPACITY - 150..].iter().enumerate().all(|(i, e)| e.at == (i % 100) as i64));
        assert_eq!(ring.head.0.load(Ordering::Relaxed), CAPACITY as u64 + 50);
    }

    #[test]
    fn the_writer_sleeps_only_on_an_empty_ring_and_a_push_clears_it() {
        let ring = TestRing::new();
        assert!(ring.prepare_to_sleep());
        assert!(ring.writer.0.sleeping.load(Ordering::Relaxed));
        ring.writer.0.latch.store(42, Ordering::Relaxed);
        assert_eq!(ring.push(&event(1, 0)), Pushed::QueuedWriterAsleep(42), "the producer takes the wake-up");
        assert!(!ring.writer.0.sleeping.load(Ordering::Relaxed));
        assert_eq!(ring.push(&event(1, 1)), Pushed::Queued, "only one producer wakes the writer");
        assert!(!ring.prepare_to_sleep(), "an event is ready");
        assert!(!ring.writer.0.sleeping.load(Ordering::Relaxed));
        ring.release(ring.peek(8).len());
        assert!(ring.prepare_to_sleep());
    }

    #[test]
    fn concurrent_producers_lose_and_repeat_nothing() {
        const PRODUCERS: u32 = 4;
        const EACH: i64 = 100_000;
        let ring = TestRing::new();
        std::thread::scope(|scope| {
            for producer in 0..PRODUCERS {
                let ring = &ring;
                scope.spawn(move || {
                    for n in 0..EACH {
                        let e = event(producer, n);
                        let since = std::time::Instant::now();
                        while ring.push(&e) == Pushed::Full {
                            assert!(since.elapsed().as_secs() < 20, "the ring stayed full");
                            std::thread::yield_now();
                        }
                    }
                });
            }
            // The one consumer: each producer's events arrive whole, once,
            // in the order it queued them.
            let mut next = [0i64; PRODUCERS as usize];
            let mut received = 0;
            let mut progress = std::time::Instant::now();
            while received < PRODUCERS as i64 * EACH {
                let batch = ring.peek(1024);
                if !batch.is_empty() {
                    progress = std::time::Instant::now();
                }
                // A lost event would leave the consumer waiting for ever.
                assert!(progress.elapsed().as_secs() < 10, "no event for 10 s after {received}: {next:?}");
                for e in &batch {
                    let p = e.roles.session as usize;
                    assert_eq!(e.at, next[p], "producer {p}");
                    assert_eq!(e.fields().unwrap(), [format!("f{}", e.at)]);
                    next[p] += 1;
                }
                received += batch.len() as i64;
                ring.release(batch.len());
            }
            assert!(next.iter().all(|n| *n == EACH));
        });
        assert!(ring.peek(1).is_empty());
        assert_eq!(ring.head.0.load(Ordering::Relaxed), PRODUCERS as u64 * EACH as u64);
    }
}
