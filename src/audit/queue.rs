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

/// Events the ring holds (about 384 bytes a slot: 3 MB of shared memory).
/// Room for a few of the writer's naps at the highest rate measured
/// (~110 000 audited calls/s on two cores) and for bursts beyond it.
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
    /// The last row the writer committed, in which audit table (by oid).
    chain_table: u32,
    chain_id: i64,
    chain_mac: [u8; 32],
}

// SAFETY: plain old data.
unsafe impl PGRXSharedMemory for WriterState {}

// SAFETY: a unique name; initialized by pg_shmem_init! at preload.
pub static WRITER: PgLwLock<WriterState> = unsafe { PgLwLock::new(c"pii_vault_audit_writer") };

/// Queues an event and wakes the writer if it sleeps. False when the queue
/// is full.
pub fn push(event: &AuditEvent) -> bool {
    let ring = ring();
    let mut position = ring.head.0.load(Ordering::Relaxed);
    let slot = loop {
        let slot = &ring.slots[(position % CAPACITY as u64) as usize];
        let sequence = slot.sequence.load(Ordering::Acquire);
        if sequence == position {
            match ring.head.0.compare_exchange_weak(position, position + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break slot,
                Err(now) => position = now,
            }
        } else if sequence < position {
            // The writer has not committed this slot's event of the last lap.
            return false;
        } else {
            // Another producer took this position first.
            position = ring.head.0.load(Ordering::Relaxed);
        }
    };
    // SAFETY: the claim above makes this process the slot's only user until
    // it publishes. Only the bytes in use are copied: one or two cache lines
    // instead of the event's six.
    event.copy_used_to(unsafe { &mut *slot.event.get() });
    slot.sequence.store(position + 1, Ordering::Release);
    // Pairs with the fence in prepare_to_sleep: either the writer sees this
    // event, or this producer sees the writer asleep and wakes it.
    fence(Ordering::SeqCst);
    if ring.writer.0.sleeping.load(Ordering::Relaxed) && ring.writer.0.sleeping.swap(false, Ordering::Relaxed) {
        wake(ring.writer.0.latch.load(Ordering::Relaxed));
    }
    true
}

/// The writer is about to wait: true (and marked asleep) when no event is
/// ready, false when there is more to write.
pub fn prepare_to_sleep() -> bool {
    let ring = ring();
    ring.writer.0.sleeping.store(true, Ordering::Relaxed);
    fence(Ordering::SeqCst);
    let tail = ring.tail.0.load(Ordering::Relaxed);
    let ready = ring.slots[(tail % CAPACITY as u64) as usize].sequence.load(Ordering::Acquire) == tail + 1;
    if ready {
        ring.writer.0.sleeping.store(false, Ordering::Relaxed);
    }
    !ready
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
    let ring = ring();
    let tail = ring.tail.0.load(Ordering::Relaxed);
    let mut events = Vec::with_capacity(max.min(CAPACITY));
    for position in tail..tail + max.min(CAPACITY) as u64 {
        let slot = &ring.slots[(position % CAPACITY as u64) as usize];
        if slot.sequence.load(Ordering::Acquire) != position + 1 {
            break; // not published yet (or never claimed)
        }
        // SAFETY: published and not released: no producer writes it until
        // commit hands the slot on.
        events.push(unsafe { &*slot.event.get() });
    }
    events
}

/// Marks the `n` oldest events committed, as rows up to `chain_id` with
/// `chain_mac` in the audit table `chain_table`, and frees their slots.
/// The writer only, after it is done with what `peek` returned.
pub fn commit(n: usize, chain_table: u32, chain_id: i64, chain_mac: [u8; 32]) {
    {
        let mut w = WRITER.exclusive();
        w.chain_table = chain_table;
        w.chain_id = chain_id;
        w.chain_mac = chain_mac;
    }
    let ring = ring();
    let tail = ring.tail.0.load(Ordering::Relaxed);
    for position in tail..tail + n as u64 {
        let slot = &ring.slots[(position % CAPACITY as u64) as usize];
        slot.sequence.store(position + CAPACITY as u64, Ordering::Release);
    }
    ring.tail.0.store(tail + n as u64, Ordering::Release);
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
        pending: queued_total() - tail,
        chain_table: w.chain_table,
        chain_id: w.chain_id,
        chain_mac: w.chain_mac,
    }
}
