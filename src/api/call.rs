//! One vault call, audited whatever happens to it.
//!
//! `audited` runs the body of a `#[pg_extern]` and then queues its audit
//! event: on success before the result is returned (and the result is
//! withheld if the event cannot be queued: fail closed), on error before
//! the error continues to the caller (best effort and without waiting for
//! room: the call fails anyway).

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use super::errors::raise;
use crate::audit::{self, Operation, Outcome};
use crate::error::VaultError;
use crate::throttle::{self, Limit};

/// What the audit will say about the call in progress.
pub struct Call {
    pub token: Option<[u8; 16]>,
    pub fields: Option<Vec<String>>,
    pub outcome: Outcome,
}

pub fn audited<R>(operation: Operation, body: impl FnOnce(&mut Call) -> R) -> R {
    let mut call = Call { token: None, fields: None, outcome: Outcome::Ok };
    match catch_unwind(AssertUnwindSafe(|| body(&mut call))) {
        Ok(result) => {
            if !audit::record(operation, call.token.as_ref(), call.fields.as_deref(), call.outcome) {
                raise(VaultError::AuditUnavailable);
            }
            result
        }
        Err(error) => {
            let outcome = match call.outcome {
                Outcome::Throttled | Outcome::Denied => call.outcome,
                _ => Outcome::Error,
            };
            // Best effort, without waiting: the call fails either way.
            audit::record_if_room(operation, call.token.as_ref(), call.fields.as_deref(), outcome);
            resume_unwind(error)
        }
    }
}

impl Call {
    /// Counts a read against the throttles; over a limit, the call is
    /// refused (54000), audited as throttled, and one WARNING is logged per
    /// statement or role-minute.
    pub fn count_read(&mut self) {
        let warn = |limit: Limit| {
            let (setting, value) = match limit {
                Limit::PerStatement(n) => ("pii_vault.max_reads_per_statement", n),
                Limit::PerMinute(n) => ("pii_vault.max_reads_per_minute", n),
            };
            pgrx::warning!("pii_vault: read throttle: {setting} ({value}) exceeded; further reads are refused and audited");
        };
        if let Err(limit) = throttle::count_read(warn) {
            self.outcome = Outcome::Throttled;
            raise(match limit {
                Limit::PerStatement(n) => VaultError::ThrottledPerStatement(n),
                Limit::PerMinute(n) => VaultError::ThrottledPerMinute(n),
            });
        }
    }

    /// Marks the call refused by the vault's own policy, then raises.
    pub fn deny(&mut self, error: VaultError) -> ! {
        self.outcome = Outcome::Denied;
        raise(error)
    }
}
