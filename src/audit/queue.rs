//! The shared-memory queue between backends (producers) and the audit
//! writer (the one consumer). Events stay in the queue until the writer has
//! committed them, so a writer that fails retries them; what is lost in a
//! server crash is what was queued and not yet committed (the crash-loss
//! window, usually well under a second).

use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::shmem::PGRXSharedMemory;

use super::event::AuditEvent;

/// Events the queue holds (about 330 bytes each).
pub const CAPACITY: usize = 2048;

pub struct AuditQueue {
    /// Events ever queued / ever committed; the queue holds [tail, head).
    head: u64,
    tail: u64,
    /// The writer's latch (a pointer into shared PGPROC memory), 0 if none.
    writer_latch: usize,
    writer_pid: i32,
    /// The writer found the queue empty and is waiting on its latch: the
    /// next producer wakes it (producers do not signal a busy writer).
    writer_sleeping: bool,
    /// The last row the writer committed, in which audit table (by oid): the
    /// head of the MAC chain.
    chain_table: u32,
    chain_id: i64,
    chain_mac: [u8; 32],
    events: [AuditEvent; CAPACITY],
}

// SAFETY: plain old data, no pointers into process-local memory (the latch
// lives in shared memory).
unsafe impl PGRXSharedMemory for AuditQueue {}

impl Default for AuditQueue {
    fn default() -> Self {
        AuditQueue {
            head: 0,
            tail: 0,
            writer_latch: 0,
            writer_pid: 0,
            writer_sleeping: false,
            chain_table: 0,
            chain_id: 0,
            chain_mac: [0; 32],
            events: [AuditEvent::EMPTY; CAPACITY],
        }
    }
}

// SAFETY: a unique name; initialized by pg_shmem_init! at preload.
pub static QUEUE: PgLwLock<AuditQueue> = unsafe { PgLwLock::new(c"pii_vault_audit_queue") };

/// Queues an event and wakes the writer. False when the queue is full.
pub fn push(event: &AuditEvent) -> bool {
    let latch = {
        let mut q = QUEUE.exclusive();
        if q.head - q.tail >= CAPACITY as u64 {
            return false;
        }
        let slot = (q.head % CAPACITY as u64) as usize;
        // Only the bytes in use: a shorter hold of the lock, and one or two
        // cache lines to claim instead of the struct's five.
        event.copy_used_to(&mut q.events[slot]);
        q.head += 1;
        if !q.writer_sleeping {
            return true;
        }
        q.writer_sleeping = false;
        q.writer_latch
    };
    wake(latch);
    true
}

/// The writer is about to wait: true (and marked asleep) when the queue is
/// empty, false when there is more to write.
pub fn prepare_to_sleep() -> bool {
    let mut q = QUEUE.exclusive();
    q.writer_sleeping = q.head == q.tail;
    q.writer_sleeping
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
    let latch = QUEUE.share().writer_latch;
    wake(latch);
}

/// A copy of up to `max` of the oldest uncommitted events.
pub fn peek(max: usize) -> Vec<AuditEvent> {
    let q = QUEUE.share();
    let n = ((q.head - q.tail) as usize).min(max);
    (0..n).map(|i| q.events[((q.tail + i as u64) % CAPACITY as u64) as usize]).collect()
}

/// Marks `n` events committed, as rows up to `chain_id` with `chain_mac`
/// in the audit table `chain_table`.
pub fn commit(n: usize, chain_table: u32, chain_id: i64, chain_mac: [u8; 32]) {
    let mut q = QUEUE.exclusive();
    q.tail += n as u64;
    q.chain_table = chain_table;
    q.chain_id = chain_id;
    q.chain_mac = chain_mac;
}

/// Called by the writer once it is connected and ready.
pub fn register_writer(latch: *mut pg_sys::Latch, pid: i32) {
    let mut q = QUEUE.exclusive();
    q.writer_latch = latch as usize;
    q.writer_pid = pid;
}

pub fn unregister_writer() {
    let mut q = QUEUE.exclusive();
    q.writer_latch = 0;
    q.writer_pid = 0;
    q.writer_sleeping = false;
}

/// Events ever queued (since server start).
pub fn queued_total() -> u64 {
    QUEUE.share().head
}

/// Events ever committed by the writer (since server start).
pub fn committed_total() -> u64 {
    QUEUE.share().tail
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
    let q = QUEUE.share();
    QueueState {
        writer_pid: q.writer_pid,
        pending: q.head - q.tail,
        chain_table: q.chain_table,
        chain_id: q.chain_id,
        chain_mac: q.chain_mac,
    }
}
