//! The vault's shared memory: the audit queue, the per-role budgets and
//! the monitoring counters.
//! Only exists when the library is preloaded.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PgAtomic};

use crate::audit::queue::{self, Ring, WriterState, WRITER};
use crate::stats::Stats;
use crate::throttle::role::{self, Budgets};

static READY: AtomicBool = AtomicBool::new(false);

/// Bumped after every transaction that changed `pii_vault.key_check`
/// commits (a trigger there): each backend, and the audit writer, judge
/// the loaded keys again before their next call or batch. A restore that
/// appends the dump's key check values so reaches sessions already open.
// SAFETY: a unique name; initialized by pg_shmem_init! at preload.
static KEY_CHECK_GENERATION: PgAtomic<AtomicU64> = unsafe { PgAtomic::new(c"pii_vault_key_check_generation") };

pub fn key_check_generation() -> u64 {
    if ready() {
        KEY_CHECK_GENERATION.get().load(Ordering::Acquire)
    } else {
        0
    }
}

pub fn bump_key_check_generation() {
    if ready() {
        KEY_CHECK_GENERATION.get().fetch_add(1, Ordering::AcqRel);
    }
}

/// Requests the shared memory; from `_PG_init` at preload only.
pub fn init() {
    request_ring();
    pg_shmem_init!(WRITER = WriterState::default());
    pg_shmem_init!(KEY_CHECK_GENERATION);
    READY.store(true, Ordering::Relaxed);
}

/// Whether the shared memory exists in this process (inherited by fork).
pub fn ready() -> bool {
    READY.load(Ordering::Relaxed)
}

// The audit ring and the role budgets are set up by hand rather than with
// pg_shmem_init!, which builds the initial value on the stack and copies it
// in: megabytes through the postmaster's stack (a debug build overflowed
// it). The budgets are lock-free, so they need no LWLock either.

const RING_NAME: &std::ffi::CStr = c"pii_vault audit queue";
const BUDGETS_NAME: &std::ffi::CStr = c"pii_vault role budgets";
const STATS_NAME: &std::ffi::CStr = c"pii_vault stats";

/// PostgreSQL's AddinShmemInitLock (a macro in C: its slot in the main
/// LWLock array, fixed in lwlocknames.txt).
const ADDIN_SHMEM_INIT_LOCK: usize = 21;

static mut PREVIOUS_REQUEST_HOOK: Option<unsafe extern "C-unwind" fn()> = None;
static mut PREVIOUS_STARTUP_HOOK: Option<unsafe extern "C-unwind" fn()> = None;

fn request_ring() {
    // SAFETY: _PG_init runs once, single-threaded, in the postmaster; the
    // previous hooks are kept and called first.
    unsafe {
        PREVIOUS_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(on_shmem_request);
        PREVIOUS_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(on_shmem_startup);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_shmem_request() {
    // SAFETY: called by the postmaster while shared memory is requested.
    unsafe {
        if let Some(previous) = PREVIOUS_REQUEST_HOOK {
            previous();
        }
        pg_sys::RequestAddinShmemSpace(Ring::SIZE);
        pg_sys::RequestAddinShmemSpace(Budgets::SIZE);
        pg_sys::RequestAddinShmemSpace(Stats::SIZE);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_shmem_startup() {
    // SAFETY: called once per shared-memory set-up (server start and each
    // crash restart); AddinShmemInitLock serializes the first
    // initialization, as PostgreSQL requires of add-ins.
    unsafe {
        if let Some(previous) = PREVIOUS_STARTUP_HOOK {
            previous();
        }
        let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(ADDIN_SHMEM_INIT_LOCK)).lock;
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let ring = pg_sys::ShmemInitStruct(RING_NAME.as_ptr(), Ring::SIZE, &mut found).cast::<Ring>();
        assert!(ring.is_aligned(), "pii_vault: the audit queue's shared memory is not aligned");
        if !found {
            Ring::init_in_place(ring);
        }
        let budgets = pg_sys::ShmemInitStruct(BUDGETS_NAME.as_ptr(), Budgets::SIZE, &mut found).cast::<Budgets>();
        assert!(budgets.is_aligned(), "pii_vault: the role budgets' shared memory is not aligned");
        if !found {
            Budgets::init_in_place(budgets);
        }
        let stats = pg_sys::ShmemInitStruct(STATS_NAME.as_ptr(), Stats::SIZE, &mut found).cast::<Stats>();
        assert!(stats.is_aligned(), "pii_vault: the stats' shared memory is not aligned");
        if !found {
            Stats::init_in_place(stats);
        }
        pg_sys::LWLockRelease(init_lock);
        queue::attach(ring);
        role::attach(budgets);
        crate::stats::attach(stats);
    }
}
