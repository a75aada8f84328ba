//! The vault's shared memory: the audit queue and the per-role read
//! windows. Only exists when the library is preloaded.

use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::pg_shmem_init;
use pgrx::prelude::*;
use pgrx::shmem::PgSharedMemoryInitialization;

use crate::audit::queue::{CHAIN, RING};
use crate::throttle::{RoleWindows, ROLE_WINDOWS};

static READY: AtomicBool = AtomicBool::new(false);

/// Requests the shared memory; from `_PG_init` at preload only.
pub fn init() {
    pg_shmem_init!(RING = ());
    pg_shmem_init!(CHAIN);
    pg_shmem_init!(ROLE_WINDOWS = RoleWindows::default());
    READY.store(true, Ordering::Relaxed);
}

/// Whether the shared memory exists in this process (inherited by fork).
pub fn ready() -> bool {
    READY.load(Ordering::Relaxed)
}

/// Types for which all-zero bytes are a valid value (integers, atomics,
/// bools, arrays and structs of them).
///
/// # Safety
///
/// Every field must accept the all-zero bit pattern.
pub unsafe trait ZeroIsValid {}

/// A value in shared memory that starts as zeroed bytes, so that a large
/// one (the audit queue is 640 KB) is never built on the postmaster's stack
/// first, as pgrx's `PgAtomic` and `PgLwLock` build their initial value.
pub struct ZeroedShmem<T> {
    name: &'static CStr,
    inner: UnsafeCell<*mut T>,
}

// SAFETY: the pointer is set once, at shared memory start-up (before any
// backend forks), and only read afterwards; T is shared across processes
// anyway and must synchronize itself (atomics).
unsafe impl<T: Sync> Sync for ZeroedShmem<T> {}

impl<T: ZeroIsValid> ZeroedShmem<T> {
    /// # Safety
    ///
    /// `name` must be unique among the server's shared memory structs.
    pub const unsafe fn new(name: &'static CStr) -> Self {
        ZeroedShmem { name, inner: UnsafeCell::new(std::ptr::null_mut()) }
    }

    pub fn get(&self) -> &T {
        // SAFETY: set at start-up (see `on_shmem_startup`), never freed.
        unsafe { (*self.inner.get()).as_ref().expect("pii_vault shared memory is not initialized") }
    }
}

impl<T: ZeroIsValid> PgSharedMemoryInitialization for ZeroedShmem<T> {
    type Value = ();

    unsafe fn on_shmem_request(&'static self) {
        // SAFETY: called from shmem_request_hook, as the trait requires.
        unsafe { pg_sys::RequestAddinShmemSpace(std::mem::size_of::<T>()) };
    }

    unsafe fn on_shmem_startup(&'static self, _: ()) {
        // SAFETY: called from shmem_startup_hook; AddinShmemInitLock
        // (MainLWLockArray[21]) serializes ShmemInitStruct as PostgreSQL's
        // own extensions do. Zeroed bytes are a valid T (ZeroIsValid).
        unsafe {
            let init_lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
            pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
            let mut found = false;
            let memory = pg_sys::ShmemInitStruct(self.name.as_ptr(), std::mem::size_of::<T>(), &mut found).cast::<T>();
            assert!(memory.is_aligned(), "pii_vault shared memory is not aligned");
            if !found {
                std::ptr::write_bytes(memory.cast::<u8>(), 0, std::mem::size_of::<T>());
            }
            *self.inner.get() = memory;
            pg_sys::LWLockRelease(init_lock);
        }
    }
}
