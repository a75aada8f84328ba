//! Budgets: bulk reading or writing through one statement, or through one
//! login role across sessions, is cut off and reported.
//!
//! - `pii_vault.max_reads_per_statement` / `max_writes_per_statement`:
//!   counted per statement as `statement` defines it (a cursor across its
//!   fetches, a `DO` or `CALL` across its commits, everything one protocol
//!   message runs);
//! - `pii_vault.max_reads_per_minute` / `max_writes_per_minute`: rolling
//!   budgets per login role (the session user, which `SET ROLE` does not
//!   change), across all sessions, in shared memory (`role`). Superusers
//!   are exempt: they can change the budgets anyway (and are outside the
//!   threat model), and a DBA's maintenance must not be refused for it.

pub mod role;
pub mod statement;

use pgrx::pg_sys;

use crate::guc;
pub use role::Kind;

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    PerStatement(Kind, i32),
    PerMinute(Kind, i32),
}

/// The login role and the time, when a per-role budget of `per_minute`
/// applies to this session (on, and the login role not a superuser).
fn role_budgeted(per_minute: i32) -> Option<(u32, i64)> {
    thread_local! {
        /// (session user, is superuser), looked up once per session user.
        static SUPERUSER: std::cell::Cell<Option<(pg_sys::Oid, bool)>> = const { std::cell::Cell::new(None) };
    }
    if per_minute <= 0 {
        return None;
    }
    // SAFETY: plain reads of this backend's globals; superuser_arg is a
    // catalog lookup, and every caller runs inside a transaction.
    let role = unsafe { pg_sys::GetSessionUserId() };
    let is_superuser = match SUPERUSER.get() {
        Some((r, s)) if r == role => s,
        _ => {
            // SAFETY: as above.
            let s = unsafe { pg_sys::superuser_arg(role) };
            SUPERUSER.set(Some((role, s)));
            s
        }
    };
    // SAFETY: a clock read.
    (!is_superuser).then(|| (u32::from(role), unsafe { pg_sys::GetCurrentTimestamp() }))
}

fn budgets(kind: Kind) -> (i32, i32) {
    match kind {
        Kind::Reads => (guc::max_reads_per_statement(), guc::max_reads_per_minute()),
        Kind::Writes => (guc::max_writes_per_statement(), guc::max_writes_per_minute()),
    }
}

/// Counts one call of `kind`; Err when it is over a budget. `warn` is
/// called once per statement, and once per role and minute, that goes over.
pub fn count(kind: Kind, warn: impl FnOnce(Limit)) -> Result<(), Limit> {
    let (per_statement, per_minute) = budgets(kind);
    if per_statement > 0 {
        let (message, portal) = statement::current();
        // Both counted, so that neither resets the other's budget.
        let over = [Some(&message), portal.as_ref()].into_iter().flatten().fold(false, |over, counts| {
            let used = match kind {
                Kind::Reads => &counts.reads,
                Kind::Writes => &counts.writes,
            };
            used.set(used.get() + 1);
            over | (used.get() > per_statement as u64)
        });
        if over {
            let limit = Limit::PerStatement(kind, per_statement);
            let warned = match kind {
                Kind::Reads => &message.warned_reads,
                Kind::Writes => &message.warned_writes,
            };
            if !warned.replace(true) {
                warn(limit);
            }
            return Err(limit);
        }
    }
    if let Some((role, now)) = role_budgeted(per_minute) {
        if let role::Verdict::Refused { warn: first } = role::charge(kind, role, now, per_minute) {
            let limit = Limit::PerMinute(kind, per_minute);
            if first {
                warn(limit);
            }
            return Err(limit);
        }
    }
    Ok(())
}
