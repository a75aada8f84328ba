//! The vault's shared memory: the audit queue and the per-role read
//! windows. Only exists when the library is preloaded.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::pg_shmem_init;
use pgrx::prelude::*;

use crate::audit::queue::{AuditQueue, QUEUE};
use crate::throttle::{RoleWindows, ROLE_WINDOWS};

static READY: AtomicBool = AtomicBool::new(false);

/// Requests the shared memory; from `_PG_init` at preload only.
pub fn init() {
    pg_shmem_init!(QUEUE = AuditQueue::default());
    pg_shmem_init!(ROLE_WINDOWS = RoleWindows::default());
    READY.store(true, Ordering::Relaxed);
}

/// Whether the shared memory exists in this process (inherited by fork).
pub fn ready() -> bool {
    READY.load(Ordering::Relaxed)
}
