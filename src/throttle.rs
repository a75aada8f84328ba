//! Read throttling: bulk reading through one statement, or through one
//! login role across sessions, is cut off and reported.
//!
//! - `pii_vault.max_reads_per_statement`: counted per backend, per
//!   top-level statement (identified by local transaction id and statement
//!   start time).
//! - `pii_vault.max_reads_per_minute`: counted per login role in shared
//!   memory, in fixed one-minute windows, across all sessions.

use std::cell::Cell;

use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys;
use pgrx::shmem::PGRXSharedMemory;

use crate::guc;

/// Why a read was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    PerStatement(i32),
    PerMinute(i32),
}

/// Counts one read; Err when it is over a limit. `warn` is called once per
/// statement or per role-minute that goes over, for the server log.
pub fn count_read(warn: impl FnOnce(Limit)) -> Result<(), Limit> {
    let per_statement = guc::max_reads_per_statement();
    if per_statement > 0 {
        let (count, first_over) = count_in_statement(per_statement);
        if count > per_statement as u64 {
            if first_over {
                warn(Limit::PerStatement(per_statement));
            }
            return Err(Limit::PerStatement(per_statement));
        }
    }
    let per_minute = guc::max_reads_per_minute();
    if per_minute > 0 && crate::shmem::ready() {
        // SAFETY: plain reads of this backend's globals.
        let (role, now) = unsafe { (u32::from(pg_sys::GetSessionUserId()), pg_sys::GetCurrentTimestamp()) };
        let minute = now.div_euclid(60_000_000);
        let (count, first_over) = count_in_minute(role, minute, per_minute as u32);
        if count > per_minute as u32 {
            if first_over {
                warn(Limit::PerMinute(per_minute));
            }
            return Err(Limit::PerMinute(per_minute));
        }
    }
    Ok(())
}

thread_local! {
    /// (local xid, statement start, reads, warned) of the current statement.
    static STATEMENT: Cell<(u32, i64, u64, bool)> = const { Cell::new((0, 0, 0, false)) };
}

fn count_in_statement(limit: i32) -> (u64, bool) {
    // SAFETY: MyProc is set in every backend; these are plain reads.
    let (lxid, started) = unsafe { ((*pg_sys::MyProc).lxid, pg_sys::GetCurrentStatementStartTimestamp()) };
    let (l, s, mut n, mut warned) = STATEMENT.get();
    if (l, s) != (lxid, started) {
        n = 0;
        warned = false;
    }
    n += 1;
    let first_over = n > limit as u64 && !warned;
    STATEMENT.set((lxid, started, n, warned || first_over));
    (n, first_over)
}

const ROLE_SLOTS: usize = 1024;

#[derive(Clone, Copy, Default)]
struct Window {
    role: u32,
    minute: i64,
    reads: u32,
    warned: bool,
}

pub struct RoleWindows {
    slots: [Window; ROLE_SLOTS],
}

impl Default for RoleWindows {
    fn default() -> Self {
        RoleWindows { slots: [Window::default(); ROLE_SLOTS] }
    }
}

// SAFETY: plain old data.
unsafe impl PGRXSharedMemory for RoleWindows {}

// SAFETY: a unique name; initialized by pg_shmem_init! at preload.
pub static ROLE_WINDOWS: PgLwLock<RoleWindows> = unsafe { PgLwLock::new(c"pii_vault_read_windows") };

fn count_in_minute(role: u32, minute: i64, limit: u32) -> (u32, bool) {
    let mut table = ROLE_WINDOWS.exclusive();
    let start = (role as usize).wrapping_mul(2654435761) % ROLE_SLOTS;
    // Open addressing: the role's slot, or a free or stale one to take.
    let mut chosen = None;
    for i in 0..ROLE_SLOTS {
        let idx = (start + i) % ROLE_SLOTS;
        let w = table.slots[idx];
        if w.role == role {
            chosen = Some(idx);
            break;
        }
        if chosen.is_none() && (w.role == 0 || w.minute < minute) {
            chosen = Some(idx);
        }
    }
    // Every slot busy this minute with other roles: reuse the home slot.
    let idx = chosen.unwrap_or(start);
    let w = &mut table.slots[idx];
    if w.role != role || w.minute != minute {
        *w = Window { role, minute, reads: 0, warned: false };
    }
    w.reads = w.reads.saturating_add(1);
    let first_over = w.reads > limit && !w.warned;
    w.warned |= first_over;
    (w.reads, first_over)
}
