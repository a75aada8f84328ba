//! The shared-memory queue between backends (producers) and the audit
//! writer (the one consumer). Events stay in the queue until the writer has
//! committed them, so a writer that fails retries them; what is lost in a
//! server crash is what was queued and not yet committed (the crash-loss
//! window, usually well under a second).
//!
//! Producers take no lock. A push claims the next position with one
//! compare-and-swap on `head`, writes its event into that position's slot,
//! and publishes it with a plain store of the slot's `published` number.
//! The writer reads published slots in position order and frees them by
//! advancing `tail` once their batch has committed. Under the LWLock this
//! replaced, every push made two atomic operations on a lock word that the
//! clients bounced between them, and the release waited until the event's
//! cache lines were owned. The chain head, which the writer sets once per
//! batch and the audit functions read as a whole, stays under an LWLock.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::shmem::PGRXSharedMemory;

use super::event::AuditEvent;
use crate::shmem::{ZeroIsValid, ZeroedShmem};

/// Events the queue holds (a 320-byte slot each).
pub const CAPACITY: usize = 2048;

/// Keeps what it holds on a cache line of its own, so that a counter one
/// side writes does not slow down reads of its neighbours on the other.
#[repr(C, align(64))]
struct Line<T>(T);

#[repr(C, align(64))]
struct Slot {
    /// Position + 1 once the event for that position is written (positions
    /// only grow, so a stale number from an earlier lap never matches).
    published: AtomicU64,
    event: UnsafeCell<AuditEvent>,
}

struct WriterState {
    /// The writer's latch (a pointer into shared PGPROC memory), 0 if none.
    latch: AtomicUsize,
    pid: AtomicI32,
    /// The writer found the queue empty and is waiting on its latch: the
    /// next producer wakes it (producers do not signal a busy writer).
    sleeping: AtomicBool,
}

/// The ring of event slots. Its methods are the whole protocol, free of
/// PostgreSQL so the unit tests below can run it between threads.
pub struct EventRing {
    /// Positions ever claimed by producers; the queue holds [tail, head).
    head: Line<AtomicU64>,
    /// Positions ever committed by the writer.
    tail: Line<AtomicU64>,
    writer: Line<WriterState>,
    slots: [Slot; CAPACITY],
}

// SAFETY: atomics and plain old data, no pointers into process-local memory
// (the latch lives in shared memory). Each slot's event is written only by
// the producer that claimed its position and read only by the writer after
// `published`, which orders the two.
unsafe impl Sync for EventRing {}
// SAFETY: all-zero is the empty queue: counters at 0, no slot published
// (positions start at 0, so `published` 0 never matches), EMPTY events.
unsafe impl ZeroIsValid for EventRing {}

/// What a push found.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued, and the writer was asleep: wake it.
    QueuedWriterAsleep,
    Full,
}

impl EventRing {
    fn slot(&self, position: u64) -> &Slot {
        &self.slots[(position % CAPACITY as u64) as usize]
    }

    pub fn push(&self, event: &AuditEvent) -> Pushed {
        let mut position = self.head.0.load(Ordering::Relaxed);
        loop {
            let tail = self.tail.0.load(Ordering::Acquire);
            // A stale `position` below `tail` fails the exchange and retries.
            if position >= tail && position - tail >= CAPACITY as u64 {
                return Pushed::Full;
            }
            // SeqCst: this claim and the `sleeping` check below pair with
            // the writer's store of `sleeping` and its check of `head`
            // (`prepare_to_sleep`), so one of the two sides sees the other.
            match self.head.0.compare_exchange_weak(position, position + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => position = now,
            }
        }
        let slot = self.slot(position);
        // SAFETY: this position is ours alone until it is published, and its
        // slot's previous event was committed (position - tail < CAPACITY).
        event.copy_used_to(unsafe { &mut *slot.event.get() });
        slot.published.store(position + 1, Ordering::Release);
        let writer = &self.writer.0;
        if writer.sleeping.load(Ordering::SeqCst) && writer.sleeping.swap(false, Ordering::SeqCst) {
            Pushed::QueuedWriterAsleep
        } else {
            Pushed::Queued
        }
    }

    /// Copies of up to `max` of the oldest uncommitted events, as far as
    /// they are published (writer only).
    pub fn peek(&self, max: usize) -> Vec<AuditEvent> {
        let tail = self.tail.0.load(Ordering::Relaxed);
        let mut events = Vec::new();
        for position in tail..tail + max as u64 {
            let slot = self.slot(position);
            if slot.published.load(Ordering::Acquire) != position + 1 {
                break;
            }
            // SAFETY: published, and no producer writes this slot again
            // before `commit` moves the tail past it.
            events.push(unsafe { *slot.event.get() });
        }
        events
    }

    /// Frees the `n` oldest events (writer only, once they are committed).
    pub fn commit(&self, n: usize) {
        self.tail.0.fetch_add(n as u64, Ordering::Release);
    }

    /// The writer is about to wait: true (and marked asleep) when the queue
    /// is empty. False when an event was claimed meanwhile, published or
    /// about to be.
    pub fn prepare_to_sleep(&self) -> bool {
        let writer = &self.writer.0;
        writer.sleeping.store(true, Ordering::SeqCst);
        if self.head.0.load(Ordering::SeqCst) != self.tail.0.load(Ordering::Relaxed) {
            writer.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    pub fn queued_total(&self) -> u64 {
        self.head.0.load(Ordering::Acquire)
    }

    pub fn committed_total(&self) -> u64 {
        self.tail.0.load(Ordering::Acquire)
    }
}

/// The last row the writer committed, in which audit table (by oid): the
/// head of the MAC chain.
#[derive(Clone, Copy, Default)]
pub struct ChainHead {
    table: u32,
    id: i64,
    mac: [u8; 32],
}

// SAFETY: plain old data.
unsafe impl PGRXSharedMemory for ChainHead {}

// SAFETY: unique names; initialized by pg_shmem_init! at preload.
pub static RING: ZeroedShmem<EventRing> = unsafe { ZeroedShmem::new(c"pii_vault_audit_ring") };
pub static CHAIN: PgLwLock<ChainHead> = unsafe { PgLwLock::new(c"pii_vault_audit_chain") };

/// Queues an event and wakes the writer if it sleeps. False when the queue
/// is full.
pub fn push(event: &AuditEvent) -> bool {
    match RING.get().push(event) {
        Pushed::Queued => true,
        Pushed::QueuedWriterAsleep => {
            wake_writer();
            true
        }
        Pushed::Full => false,
    }
}

/// The writer is about to wait: true (and marked asleep) when the queue is
/// empty, false when there is more to write.
pub fn prepare_to_sleep() -> bool {
    RING.get().prepare_to_sleep()
}

/// Wakes the writer (also used while waiting for room in a full queue).
pub fn wake_writer() {
    let latch = RING.get().writer.0.latch.load(Ordering::Acquire);
    if latch != 0 {
        // SAFETY: the writer published its own PGPROC latch, which lives in
        // shared memory for the life of the server.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

/// A copy of up to `max` of the oldest uncommitted events.
pub fn peek(max: usize) -> Vec<AuditEvent> {
    RING.get().peek(max)
}

/// Marks `n` events committed, as rows up to `chain_id` with `chain_mac`
/// in the audit table `chain_table`.
pub fn commit(n: usize, chain_table: u32, chain_id: i64, chain_mac: [u8; 32]) {
    *CHAIN.exclusive() = ChainHead { table: chain_table, id: chain_id, mac: chain_mac };
    RING.get().commit(n);
}

/// Called by the writer once it is connected and ready.
pub fn register_writer(latch: *mut pg_sys::Latch, pid: i32) {
    let writer = &RING.get().writer.0;
    writer.pid.store(pid, Ordering::Release);
    writer.latch.store(latch as usize, Ordering::Release);
}

pub fn unregister_writer() {
    let writer = &RING.get().writer.0;
    writer.latch.store(0, Ordering::Release);
    writer.pid.store(0, Ordering::Release);
    writer.sleeping.store(false, Ordering::SeqCst);
}

/// Events ever queued (since server start).
pub fn queued_total() -> u64 {
    RING.get().queued_total()
}

/// Events ever committed by the writer (since server start).
pub fn committed_total() -> u64 {
    RING.get().committed_total()
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
    let chain = *CHAIN.share();
    let ring = RING.get();
    // Tail first: head read after it is never behind it.
    let committed = ring.committed_total();
    QueueState {
        writer_pid: ring.writer.0.pid.load(Ordering::Acquire),
        pending: ring.queued_total() - committed,
        chain_table: chain.table,
        chain_id: chain.id,
        chain_mac: chain.mac,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Operation, Outcome};

    /// An empty queue on the heap, zeroed as in shared memory.
    fn new_ring() -> Box<EventRing> {
        let layout = std::alloc::Layout::new::<EventRing>();
        // SAFETY: zeroed bytes are a valid EventRing (ZeroIsValid), and
        // the allocation has EventRing's layout, as Box requires.
        unsafe { Box::from_raw(std::alloc::alloc_zeroed(layout).cast::<EventRing>()) }
    }

    fn event(n: u32) -> AuditEvent {
        AuditEvent::new(i64::from(n), n, n, "test", Operation::Get, None, None, Outcome::Ok)
    }

    #[test]
    fn events_come_out_in_order_until_committed() {
        let ring = new_ring();
        for n in 0..10 {
            assert_eq!(ring.push(&event(n)), Pushed::Queued);
        }
        let first: Vec<i64> = ring.peek(4).iter().map(|e| e.at).collect();
        assert_eq!(first, [0, 1, 2, 3]);
        // Not committed yet: the same events again (a failed batch retries).
        assert_eq!(ring.peek(4).len(), 4);
        assert_eq!(ring.peek(4)[0].at, 0);
        ring.commit(4);
        let rest: Vec<i64> = ring.peek(100).iter().map(|e| e.at).collect();
        assert_eq!(rest, [4, 5, 6, 7, 8, 9]);
        assert_eq!((ring.queued_total(), ring.committed_total()), (10, 4));
    }

    #[test]
    fn a_full_queue_refuses_until_the_writer_commits() {
        let ring = new_ring();
        for n in 0..CAPACITY as u32 {
            assert_eq!(ring.push(&event(n)), Pushed::Queued);
        }
        assert_eq!(ring.push(&event(9999)), Pushed::Full);
        ring.commit(1);
        assert_eq!(ring.push(&event(9999)), Pushed::Queued);
        // The slot it reused now holds position CAPACITY, after the others.
        ring.commit(CAPACITY - 1);
        assert_eq!(ring.peek(10).iter().map(|e| e.at).collect::<Vec<_>>(), [9999]);
    }

    #[test]
    fn a_sleeping_writer_is_woken_once() {
        let ring = new_ring();
        assert!(ring.prepare_to_sleep());
        assert_eq!(ring.push(&event(1)), Pushed::QueuedWriterAsleep);
        assert_eq!(ring.push(&event(2)), Pushed::Queued);
        // Not empty: the writer stays awake.
        assert!(!ring.prepare_to_sleep());
        assert_eq!(ring.push(&event(3)), Pushed::Queued);
    }

    /// Two producer threads and a consumer over a small number of laps of
    /// the ring: every event arrives exactly once, each producer's in the
    /// order it pushed them.
    #[test]
    fn concurrent_producers_lose_and_repeat_nothing() {
        const PER_PRODUCER: u32 = 50_000;
        let ring: &'static EventRing = Box::leak(new_ring());
        let producers: Vec<_> = (0..2u32)
            .map(|p| {
                std::thread::spawn(move || {
                    for n in 0..PER_PRODUCER {
                        let e = AuditEvent::new(i64::from(n), p, p, "t", Operation::Get, None, None, Outcome::Ok);
                        while ring.push(&e) == Pushed::Full {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut next = [0i64; 2];
        while next.iter().any(|&n| n < i64::from(PER_PRODUCER)) {
            let batch = ring.peek(300);
            for e in &batch {
                let p = e.session_role as usize;
                assert_eq!(e.at, next[p], "producer {p} out of order");
                next[p] += 1;
            }
            ring.commit(batch.len());
            if batch.is_empty() {
                std::thread::yield_now();
            }
        }
        for t in producers {
            t.join().unwrap();
        }
        assert!(ring.peek(10).is_empty());
        assert_eq!(ring.committed_total(), 2 * u64::from(PER_PRODUCER));
    }
}
