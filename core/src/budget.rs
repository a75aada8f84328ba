//! Rolling per-login-role budgets, shared by every backend.
//!
//! Each (role, budget) pair has a GCRA cell (the "generic cell rate
//! algorithm", a token bucket kept as one number): its theoretical arrival
//! time `tat`. With a budget of `B` per minute a call costs `T = 60 s / B`
//! and is allowed while `tat - now <= BURST * T`; allowed, it moves `tat` to
//! `max(tat, now) + T`. So a role calling at `B` per minute or slower is
//! never refused, a burst of `BURST + 1` calls passes at once, and in any
//! 60-second span a role makes at most `B + BURST + 1` calls, whatever the
//! minute boundaries (a fixed window allowed `2 B` across its edge).
//!
//! A cell whose `tat` is in the past is indistinguishable from a new one,
//! so only such a cell may be taken over by another role: no role's count
//! is ever reset by another's. When all `PROBE` cells a role may use are
//! held by roles with calls in flight, the role shares one overflow cell
//! with every other such role (stricter, never looser).
//!
//! Lock-free on the hot path: a role finds its cell by its oid and charges
//! it with one compare-and-swap. Taking a cell over is serialized by a
//! spin lock (rare: once per role per idle period).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU32, Ordering};

/// Cells per budget; a power of two.
const CELLS: usize = 1024;
/// How many consecutive cells a role may use (its home cell and the next).
const PROBE: usize = 16;
const MINUTE_US: i64 = 60_000_000;

/// The burst a budget allows at once beyond its steady rate: a tenth of
/// the budget (at least one call).
pub fn burst(budget: i32) -> i64 {
    (i64::from(budget) / 10).max(1)
}

#[repr(C, align(64))]
#[derive(Default)]
struct Cell {
    /// The role owning the cell; 0 when never used.
    role: AtomicU32,
    /// Theoretical arrival time (µs, PostgreSQL timestamp).
    tat: AtomicI64,
    /// Until when this cell's refusals are not warned about again.
    quiet_until: AtomicI64,
}

#[repr(C)]
struct Table {
    claim: AtomicBool,
    cells: [Cell; CELLS],
    overflow: Cell,
}

/// The two budgets, in shared memory.
#[repr(C)]
pub struct Budgets {
    reads: Table,
    writes: Table,
}

impl Budgets {
    pub const SIZE: usize = std::mem::size_of::<Budgets>();

    /// # Safety
    /// `at` points at `Budgets::SIZE` writable bytes, aligned for
    /// `Budgets`, that no other process uses yet.
    #[allow(unsafe_code)] // laid out in shared memory the extension allocates
    pub unsafe fn init_in_place(at: *mut Budgets) {
        // SAFETY: per the contract; all-zero bytes are a valid Budgets
        // (atomics only): every cell unused.
        unsafe { std::ptr::write_bytes(at.cast::<u8>(), 0, Budgets::SIZE) };
    }
}

static BUDGETS: AtomicPtr<Budgets> = AtomicPtr::new(std::ptr::null_mut());

/// From the shared-memory start-up hook (children inherit it).
pub fn attach(at: *mut Budgets) {
    BUDGETS.store(at, Ordering::Release);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Reads,
    Writes,
}

/// The verdict on one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; `warn` is true for the first refusal of this role's cell in
    /// a minute (one WARNING, not one per call).
    Refused {
        warn: bool,
    },
}

/// Charges one call of `role` at `now` (µs) against a budget of `budget`
/// per minute. Allowed when shared memory is not there (not preloaded: the
/// vault refuses every call anyway).
#[allow(unsafe_code)] // reads the cells in shared memory
pub fn charge(kind: Kind, role: u32, now: i64, budget: i32) -> Verdict {
    let ptr = BUDGETS.load(Ordering::Acquire);
    if ptr.is_null() || budget <= 0 {
        return Verdict::Allowed;
    }
    // SAFETY: set once to shared memory that lives as long as the server.
    let budgets = unsafe { &*ptr };
    let table = match kind {
        Kind::Reads => &budgets.reads,
        Kind::Writes => &budgets.writes,
    };
    table.charge(role, now, budget)
}

impl Table {
    fn charge(&self, role: u32, now: i64, budget: i32) -> Verdict {
        let cost = (MINUTE_US / i64::from(budget)).max(1);
        let tolerance = burst(budget) * cost;
        loop {
            let (cell, owned) = self.cell_of(role, now);
            let mut stored = cell.tat.load(Ordering::Acquire);
            let verdict = loop {
                // Under a fixed budget `tat` never gets past
                // `now + tolerance + cost`; past it, the budget was raised
                // since: the debt left from the lower one is capped, so a
                // raise takes effect at once.
                let tat = stored.min(now + tolerance + cost);
                if tat - now > tolerance {
                    if tat < stored {
                        // Keep the capped debt, so it runs out from now.
                        let _ = cell.tat.compare_exchange(stored, tat, Ordering::AcqRel, Ordering::Acquire);
                    }
                    break Verdict::Refused { warn: cell.first_refusal(now) };
                }
                let next = tat.max(now) + cost;
                match cell.tat.compare_exchange_weak(stored, next, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break Verdict::Allowed,
                    Err(seen) => stored = seen,
                }
            };
            // The cell was taken over meanwhile (only possible once its tat
            // was in the past): the charge went to its new owner, which is
            // stricter for it; charge our own cell again.
            if !owned || cell.role.load(Ordering::Acquire) == role {
                return verdict;
            }
        }
    }

    /// The cell of `role`, taking one over if it has none; false with the
    /// shared overflow cell.
    fn cell_of(&self, role: u32, now: i64) -> (&Cell, bool) {
        let home = (role as usize).wrapping_mul(0x9E37_79B9) % CELLS;
        let probe = || (0..PROBE).map(move |i| &self.cells[(home + i) % CELLS]);
        if let Some(cell) = probe().find(|c| c.role.load(Ordering::Acquire) == role) {
            return (cell, true);
        }
        while self.claim.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            std::hint::spin_loop();
        }
        let found = probe().find(|c| c.role.load(Ordering::Acquire) == role).or_else(|| {
            let free = probe().find(|c| {
                let r = c.role.load(Ordering::Acquire);
                r == 0 || c.tat.load(Ordering::Acquire) <= now
            })?;
            free.quiet_until.store(0, Ordering::Relaxed);
            free.role.store(role, Ordering::Release);
            Some(free)
        });
        self.claim.store(false, Ordering::Release);
        match found {
            Some(cell) => (cell, true),
            None => (&self.overflow, false),
        }
    }
}

impl Cell {
    fn first_refusal(&self, now: i64) -> bool {
        let quiet = self.quiet_until.load(Ordering::Acquire);
        now >= quiet
            && self.quiet_until.compare_exchange(quiet, now + MINUTE_US, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)] // an all-zero Table, as shared memory starts
    fn table() -> Box<Table> {
        // SAFETY: all-zero bytes are a valid Table (atomics only).
        unsafe { Box::new(std::mem::zeroed()) }
    }

    fn allowed(t: &Table, role: u32, now: i64, budget: i32) -> bool {
        t.charge(role, now, budget) == Verdict::Allowed
    }

    #[test]
    fn any_minute_holds_at_most_budget_plus_burst() {
        let t = table();
        let budget = 40;
        // Calls every 10 ms for five minutes, refused ones included.
        let mut admitted = Vec::new();
        for step in 0..30_000i64 {
            let now = 1_000_000_000 + step * 10_000;
            if allowed(&t, 7, now, budget) {
                admitted.push(now);
            }
        }
        let most = admitted
            .iter()
            .map(|&start| admitted.iter().filter(|&&a| a >= start && a < start + MINUTE_US).count())
            .max()
            .unwrap();
        assert!(most as i64 <= i64::from(budget) + burst(budget) + 1, "{most}");
        // And the steady rate is the budget: over five minutes about 5 B.
        assert!(admitted.len() as i64 >= 5 * i64::from(budget), "{}", admitted.len());
    }

    #[test]
    fn a_steady_caller_at_the_budget_is_never_refused() {
        let t = table();
        for i in 0..1000i64 {
            assert!(allowed(&t, 9, i * (MINUTE_US / 100), 100), "call {i}");
        }
    }

    #[test]
    fn a_raised_budget_takes_effect_at_once() {
        let t = table();
        let now = 1_000_000_000;
        while allowed(&t, 4, now, 6) {}
        // 6 a minute left a debt of ten seconds; at 6 000 a minute (one
        // call costs 10 ms) the debt is capped to what that budget allows,
        // so a call passes one call's cost later.
        let _ = t.charge(4, now + 1, 6000);
        assert!(allowed(&t, 4, now + 20_000, 6000));
    }

    #[test]
    fn one_warning_per_minute() {
        let t = table();
        let now = 5_000_000_000;
        while allowed(&t, 3, now, 10) {}
        assert_eq!(t.charge(3, now + 1, 10), Verdict::Refused { warn: false });
        let later = now + MINUTE_US;
        // Past the quiet minute the next refusal warns again.
        let mut warned = 0;
        for i in 0..100 {
            if t.charge(3, later + i, 10) == (Verdict::Refused { warn: true }) {
                warned += 1;
            }
        }
        assert_eq!(warned, 1);
    }

    #[test]
    fn other_roles_never_reset_a_busy_role() {
        let t = table();
        let now = 1_000_000_000;
        // Role 1 exhausts its budget.
        while allowed(&t, 1, now, 10) {}
        // Thousands of other roles come and go.
        for role in 2..5000u32 {
            let _ = t.charge(role, now + i64::from(role), 10);
        }
        assert!(!allowed(&t, 1, now + 10_000, 10), "role 1 must still be over its budget");
    }

    #[test]
    fn an_idle_role_cell_is_reused() {
        let t = table();
        let now = 1_000_000_000;
        for role in 1..=(CELLS as u32 * 4) {
            assert!(allowed(&t, role, now + i64::from(role) * MINUTE_US, 10));
        }
    }

    #[test]
    fn roles_beyond_the_table_share_the_overflow_cell() {
        let t = table();
        let now = 1_000_000_000;
        // Fill every cell with a role that has calls in flight.
        let mut role = 1u32;
        while t.cells.iter().any(|c| c.role.load(Ordering::Relaxed) == 0) {
            let _ = t.charge(role, now, 1);
            role += 1;
        }
        let a = role + 1;
        let b = role + 2;
        assert!(allowed(&t, a, now, 1));
        assert!(allowed(&t, a, now, 1), "burst of one plus one");
        assert!(!allowed(&t, b, now, 1), "b shares the overflow cell with a");
    }

    #[test]
    fn concurrent_charges_are_all_counted() {
        let t = table();
        let now = 1_000_000_000;
        // Smaller under Miri, which checks the compare-and-swaps for races
        // at a few thousand steps a second; still 20 tries per allowed one.
        let (budget, tries) = if cfg!(miri) { (1_000, 500) } else { (100_000, 50_000) };
        // Scoped threads borrow the table, which is freed after them (Miri
        // reports a leaked one).
        let total: usize = std::thread::scope(|scope| {
            let handles: Vec<_> =
                (0..4).map(|_| scope.spawn(|| (0..tries).filter(|_| allowed(&t, 11, now, budget)).count())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(total as i64, burst(budget) + 1);
    }
}
