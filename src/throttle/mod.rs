//! Budgets: bulk reading or writing through one statement, or through one
//! login role across sessions, is cut off and reported.
//!
//! - `pii_vault.max_reads_per_statement` / `max_writes_per_statement`:
//!   counted per statement as `statement` defines it (a cursor across its
//!   fetches, a `DO` or `CALL` across its commits, everything one protocol
//!   message runs);
//! - `pii_vault.max_reads_per_minute` / `max_writes_per_minute`: rolling
//!   budgets per role across all sessions, in shared memory (`role`),
//!   charged to the login role (the session user, which `SET ROLE` does
//!   not change) and to the role that called the vault (`caller`: a
//!   SECURITY DEFINER wrapper's owner). Superusers are exempt: they can
//!   change the budgets anyway (and are outside the threat model), and a
//!   DBA's maintenance must not be refused for it; a call is exempt only
//!   when both roles are.

pub mod caller;
pub use pii_vault_core::budget as role;
pub mod statement;

use pgrx::pg_sys;

pub use crate::error::Payer;
use crate::guc;
pub use role::Kind;

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    PerStatement(Kind, i32),
    PerMinute(Kind, i32, Payer),
}

/// Whether `role` is a superuser (PostgreSQL remembers the last answer,
/// and forgets it when roles change).
fn is_superuser(role: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup; every caller runs inside a transaction.
    unsafe { pg_sys::superuser_arg(role) }
}

/// Up to two roles a call is charged to, and which each is.
type Payers = [Option<(u32, Payer)>; 2];

/// The roles a call is charged to, with the time, when a per-role budget
/// of `per_minute` is on: the login role and the role that called the
/// vault (once when they are the same), each unless a superuser. So a
/// call is exempt only when both are superusers, and a SECURITY DEFINER
/// wrapper's owner pays for every call made through it, whoever calls it.
fn roles_budgeted(per_minute: i32) -> Option<(Payers, i64)> {
    if per_minute <= 0 {
        return None;
    }
    // SAFETY: a plain read of this backend's session user.
    let login = unsafe { pg_sys::GetSessionUserId() };
    let caller = caller::calling_role();
    let login_pays = (!is_superuser(login)).then(|| (u32::from(login), Payer::Login));
    let caller_pays = (caller != login && !is_superuser(caller)).then(|| (u32::from(caller), Payer::Caller));
    // SAFETY: a clock read.
    (login_pays.is_some() || caller_pays.is_some())
        .then(|| ([login_pays, caller_pays], unsafe { pg_sys::GetCurrentTimestamp() }))
}

fn budgets(kind: Kind) -> (i32, i32) {
    match kind {
        Kind::Reads => (guc::max_reads_per_statement(), guc::max_reads_per_minute()),
        Kind::Writes => (guc::max_writes_per_statement(), guc::max_writes_per_minute()),
    }
}

/// Refuses `n` calls of `kind` at once, counting none of them, when they
/// would take this statement past its budget (a call on many records is
/// refused whole, before anything is read); `warn` as `count`.
pub fn fits_in_statement(kind: Kind, n: usize, warn: impl FnOnce(Limit)) -> Result<(), Limit> {
    let (per_statement, _) = budgets(kind);
    if per_statement <= 0 {
        return Ok(());
    }
    let (message, portals) = statement::current();
    let over = std::iter::once(&message).chain(&portals).any(|counts| {
        let used = match kind {
            Kind::Reads => counts.reads.get(),
            Kind::Writes => counts.writes.get(),
        };
        used + n as u64 > per_statement as u64
    });
    match over {
        true => Err(over_statement(kind, per_statement, &message, warn)),
        false => Ok(()),
    }
}

/// The statement's budget of `kind` refused: `warn` once per statement.
fn over_statement(kind: Kind, per_statement: i32, message: &statement::Counts, warn: impl FnOnce(Limit)) -> Limit {
    let limit = Limit::PerStatement(kind, per_statement);
    let warned = match kind {
        Kind::Reads => &message.warned_reads,
        Kind::Writes => &message.warned_writes,
    };
    if !warned.replace(true) {
        warn(limit);
    }
    limit
}

/// Counts one call of `kind`; Err when it is over a budget. `warn` is
/// called once per statement, and once per role and minute, that goes over.
pub fn count(kind: Kind, warn: impl FnOnce(Limit)) -> Result<(), Limit> {
    let (per_statement, per_minute) = budgets(kind);
    if per_statement > 0 {
        let (message, portals) = statement::current();
        // Every one counted, so that none resets another's budget.
        let over = std::iter::once(&message).chain(&portals).fold(false, |over, counts| {
            let used = match kind {
                Kind::Reads => &counts.reads,
                Kind::Writes => &counts.writes,
            };
            used.set(used.get() + 1);
            over | (used.get() > per_statement as u64)
        });
        if over {
            return Err(over_statement(kind, per_statement, &message, warn));
        }
    }
    if let Some((payers, now)) = roles_budgeted(per_minute) {
        for (role, payer) in payers.into_iter().flatten() {
            if let role::Verdict::Refused { warn: first } = role::charge(kind, role, now, per_minute) {
                let limit = Limit::PerMinute(kind, per_minute, payer);
                if first {
                    warn(limit);
                }
                return Err(limit);
            }
        }
    }
    Ok(())
}
