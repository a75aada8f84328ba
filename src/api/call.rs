//! One vault call, audited whatever happens to it.
//!
//! `audited` runs the body of a `#[pg_extern]` and then queues its audit
//! event: on success before the result is returned (and the result is
//! withheld if the event cannot be queued: fail closed), on error before
//! the error continues to the caller (replaced by 55000 if the event cannot
//! be queued).

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use super::errors::raise;
use crate::audit::event::{fields_fit, FIELD_BYTES};
use crate::audit::{self, Operation, Outcome};
use crate::error::VaultError;
use crate::throttle::{self, Kind, Limit};

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
            // A failing call is audited like any other (a probe that fails
            // is still a probe): it waits for room as a successful one
            // does, and if its event cannot be queued its own error (a
            // duplicate says the value exists) is withheld too. Not when
            // the key is unusable: the writer writes nothing then, and the
            // call touched no data.
            if super::guard::key_usable() {
                if !audit::record(operation, call.token.as_ref(), call.fields.as_deref(), outcome) {
                    drop(error);
                    raise(VaultError::AuditUnavailable);
                }
            } else {
                audit::record_if_room(operation, call.token.as_ref(), call.fields.as_deref(), outcome);
            }
            resume_unwind(error)
        }
    }
}

impl Call {
    /// Counts a read against the read budgets; over one, the call is
    /// refused (54000), audited as throttled, and one WARNING is logged per
    /// statement or per role and minute.
    pub fn count_read(&mut self) {
        self.count(Kind::Reads);
    }

    /// Counts an update or delete against the write budgets, as above.
    pub fn count_write(&mut self) {
        self.count(Kind::Writes);
    }

    /// Counts a store or update that sets an email, phone or login as a
    /// read: its outcome (a new value, or 23505) tells whether the value is
    /// taken, and a rolled-back store costs nothing else, so existence
    /// probing costs what a lookup does, and needs a purpose where a
    /// lookup does (`pii_vault.require_purpose`).
    pub fn count_lookup_probe(&mut self) {
        self.check_purpose();
        self.count(Kind::Reads);
    }

    fn count(&mut self, kind: Kind) {
        let warn = |limit: Limit| {
            let (setting, value) = setting_of(limit);
            pgrx::warning!(
                "pii_vault: {setting} ({value}) exceeded; further calls are refused and audited as throttled"
            );
        };
        if let Err(limit) = throttle::count(kind, warn) {
            self.outcome = Outcome::Throttled;
            raise(error_of(limit));
        }
    }

    /// The field names the audit will name; refused (54000) when they do
    /// not all fit in the event, so no call hides which fields it took.
    pub fn name_fields(&mut self, fields: Vec<String>) {
        if !fields_fit(&fields) {
            raise(VaultError::TooManyFieldNames(FIELD_BYTES));
        }
        self.fields = Some(fields);
    }

    /// Refuses a call that returns personal data without a purpose while
    /// `pii_vault.require_purpose` is on (42501, audited as denied).
    pub fn check_purpose(&mut self) {
        if crate::guc::require_purpose() && crate::guc::purpose().is_none() {
            self.deny(VaultError::PurposeRequired);
        }
    }

    /// Marks the call refused by the vault's own policy, then raises.
    pub fn deny(&mut self, error: VaultError) -> ! {
        self.outcome = Outcome::Denied;
        raise(error)
    }
}

fn error_of(limit: Limit) -> VaultError {
    match limit {
        Limit::PerStatement(Kind::Reads, n) => VaultError::ReadsPerStatement(n),
        Limit::PerMinute(Kind::Reads, n) => VaultError::ReadsPerMinute(n),
        Limit::PerStatement(Kind::Writes, n) => VaultError::WritesPerStatement(n),
        Limit::PerMinute(Kind::Writes, n) => VaultError::WritesPerMinute(n),
    }
}

fn setting_of(limit: Limit) -> (&'static str, i32) {
    match limit {
        Limit::PerStatement(Kind::Reads, n) => ("pii_vault.max_reads_per_statement", n),
        Limit::PerMinute(Kind::Reads, n) => ("pii_vault.max_reads_per_minute", n),
        Limit::PerStatement(Kind::Writes, n) => ("pii_vault.max_writes_per_statement", n),
        Limit::PerMinute(Kind::Writes, n) => ("pii_vault.max_writes_per_minute", n),
    }
}
