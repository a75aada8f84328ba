//! One vault call, audited whatever happens to it.
//!
//! `audited` runs the body of a `#[pg_extern]` and then queues its audit
//! event: on success before the result is returned (and the result is
//! withheld if the event cannot be queued: fail closed), on error before
//! the error goes to the caller (replaced by 55000 if the event cannot be
//! queued). The body returns the vault's own errors as values, so the
//! event's outcome is the error's (`VaultError::outcome`) and the error is
//! raised only once its event is queued (`errors::raise`, with whatever it
//! names); an error PostgreSQL raised inside the body arrives as an unwind
//! and goes on as it came.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use super::errors::raise;
use crate::audit::event::{fields_fit, FIELD_BYTES};
use crate::audit::{self, Operation, Outcome};
use crate::error::VaultResult;
use crate::error::{ReadOnly, Unattributable, VaultError};
use crate::guc;
use crate::throttle::{self, Kind, Limit};
use pgrx::pg_sys;

/// What the audit will say about the call in progress.
pub struct Call {
    pub token: Option<[u8; 16]>,
    pub fields: Option<Vec<String>>,
    /// How a call that returns ends: ok, or what it did not find.
    pub outcome: Outcome,
    /// A call on many records: one event per element (its token and
    /// outcome, with the call's fields) in place of the call's own, queued
    /// in one reservation (`audit::record_many`). A call with no element
    /// is one event.
    pub elements: Option<Vec<Element>>,
    /// Whether a budget was charged: past that point a failing call may
    /// have read its record, so its failure is audited per token.
    charged: bool,
}

pub use crate::audit::Element;

/// How a call failed: with one of the vault's errors, or with an error
/// PostgreSQL raised inside it (an unwind, resumed as it came).
enum Failure {
    Vault(VaultError),
    Raised(Box<dyn std::any::Any + Send>),
}

/// Refuses a call that writes where nothing can be written: on a standby
/// (which a driver tells from damaged storage by 25006) and in a read-only
/// transaction.
fn read_write() -> VaultResult<()> {
    // SAFETY: plain reads of backend state.
    let (standby, read_only) = unsafe { (pg_sys::RecoveryInProgress(), pg_sys::XactReadOnly) };
    match (standby, read_only) {
        (true, _) => Err(VaultError::ReadOnly(ReadOnly::Standby)),
        (false, true) => Err(VaultError::ReadOnly(ReadOnly::Transaction)),
        (false, false) => Ok(()),
    }
}

/// Whether this is a standby set to refuse vault calls
/// (`pii_vault.standby_reads = refused`) and `operation` is not one the
/// operator runs there (health, audit verification, key versions, the
/// audit of a token).
fn refused_on_this_standby(operation: Operation) -> bool {
    use Operation::{AuditRead, AuditVerify, Health, KeyVersions};
    // SAFETY: a plain read of shared state.
    guc::standby_reads() == guc::StandbyReads::Refused
        && !matches!(operation, Health | AuditVerify | KeyVersions | AuditRead)
        && unsafe { pg_sys::RecoveryInProgress() }
}

pub fn audited<R>(operation: Operation, body: impl FnOnce(&mut Call) -> VaultResult<R>) -> R {
    let mut call = Call { token: None, fields: None, outcome: Outcome::Ok, elements: None, charged: false };
    let ended = catch_unwind(AssertUnwindSafe(|| {
        if let Some(context) = unattributable() {
            return Err(VaultError::Unattributable(context));
        }
        if !caller_may_execute() {
            return Err(VaultError::CallerMayNotExecute);
        }
        if operation.writes() {
            read_write()?;
        } else if refused_on_this_standby(operation) {
            return Err(VaultError::ReadOnly(ReadOnly::StandbyRefusesReads));
        }
        body(&mut call)
    }));
    let failure = match ended {
        Ok(Ok(result)) => {
            let recorded = match call.elements.as_deref() {
                Some(elements) if !elements.is_empty() => {
                    audit::record_many(operation, call.fields.as_deref(), elements)
                }
                _ => audit::record(operation, call.token.as_ref(), call.fields.as_deref(), call.outcome),
            };
            if !recorded {
                drop(result);
                raise(VaultError::AuditUnavailable);
            }
            return result;
        }
        Ok(Err(error)) => Failure::Vault(error),
        Err(unwind) => Failure::Raised(unwind),
    };
    let (outcome, answers) = match &failure {
        Failure::Vault(error) => (error.outcome(), error.answers_a_question()),
        Failure::Raised(unwind) => (Outcome::Error, raised_answers_a_question(unwind.as_ref())),
    };
    // A failing call is audited like any other (a probe that fails
    // is still a probe): it waits for room as a successful one
    // does, and if its event cannot be queued its own error (a
    // duplicate says the value exists) is withheld too. Not when
    // the key is unusable: the writer writes nothing then, and the
    // call touched no data. A failure that returned nothing and
    // answers nothing may be folded with the session's others of
    // its second into one counted event (`audit::record_failure`);
    // one that answers (a duplicate) is an event of its own.
    let by_token = outcome == Outcome::Error && call.charged;
    let (token, fields) = (call.token.as_ref(), call.fields.as_deref());
    let queue = |wait: bool| {
        if answers {
            if wait {
                audit::record(operation, token, fields, outcome)
            } else {
                audit::record_if_room(operation, token, fields, outcome);
                true
            }
        } else {
            audit::record_failure(operation, token, fields, outcome, by_token, wait)
        }
    };
    if super::guard::key_usable() {
        if !queue(true) {
            drop(failure);
            raise(VaultError::AuditUnavailable);
        }
    } else {
        queue(false);
    }
    match failure {
        Failure::Vault(error) => raise(error),
        Failure::Raised(unwind) => resume_unwind(unwind),
    }
}

/// Whether an error PostgreSQL raised inside a call answers a question, so
/// that its audit event must stand for that call alone: a unique
/// violation says the value is taken.
fn raised_answers_a_question(error: &(dyn std::any::Any + Send)) -> bool {
    use pgrx::pg_sys::panic::{CaughtError, ErrorReportWithLevel};
    let report = error.downcast_ref::<ErrorReportWithLevel>().or(match error.downcast_ref::<CaughtError>() {
        Some(CaughtError::PostgresError(report) | CaughtError::ErrorReport(report)) => Some(report),
        _ => None,
    });
    report.is_some_and(|r| r.sql_error_code() == pgrx::PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION)
}

/// Where a vault call would run without the role that set it off being
/// charged or named: PostgreSQL runs a table owner's expressions inside
/// security-restricted operations (ANALYZE, also in autovacuum as the
/// bootstrap superuser with a fresh statement per table; index builds;
/// materialized views) and keeps what they return in statistics, indexes
/// and materialized views; background workers (logical replication's
/// apply workers, other extensions' jobs) run as whoever registered them.
/// The vault's own workers never come through here.
fn unattributable() -> Option<Unattributable> {
    // SAFETY: plain reads of backend globals.
    unsafe {
        if pg_sys::InSecurityRestrictedOperation() {
            Some(Unattributable::RestrictedOperation)
        } else if pg_sys::MyBackendType == pg_sys::BackendType::B_AUTOVAC_WORKER {
            Some(Unattributable::Autovacuum)
        } else if pg_sys::MyBackendType == pg_sys::BackendType::B_BG_WORKER {
            Some(Unattributable::BackgroundWorker)
        } else {
            None
        }
    }
}

/// Whether the role that called the vault (`throttle::caller`) may itself
/// execute the vault function it reached. PostgreSQL checks EXECUTE when a
/// query is set up, as the role of that moment: a portal opened by a
/// SECURITY DEFINER function runs its vault calls when fetched, after the
/// function returned, with nobody's rights but the fetching session's, and
/// a foreign key's action runs as the table's owner without a function of
/// the owner's. Such a call would be charged to and named as a role that
/// could not have made it.
fn caller_may_execute() -> bool {
    let caller = crate::throttle::caller::caller();
    let Some(function) = caller.entered else {
        return true;
    };
    // SAFETY: a catalog lookup of a function that is running.
    let verdict = unsafe { pg_sys::pg_proc_aclcheck(function, caller.role, pg_sys::ACL_EXECUTE as pg_sys::AclMode) };
    verdict == pg_sys::AclResult::ACLCHECK_OK
}

impl Call {
    /// Counts a read against the read budgets; over one, the call is
    /// refused (54000, audited as throttled), and one WARNING is logged per
    /// statement or per role and minute.
    pub fn count_read(&mut self) -> VaultResult<()> {
        self.count(Kind::Reads)
    }

    /// Counts an update or delete against the write budgets, as above.
    pub fn count_write(&mut self) -> VaultResult<()> {
        self.count(Kind::Writes)
    }

    /// Counts a store or update that sets an email, phone or login as a
    /// read: its outcome (a new value, or 23505) tells whether the value is
    /// taken, and a rolled-back store costs nothing else, so existence
    /// probing costs what a lookup does, and needs a purpose where a
    /// lookup does (`pii_vault.require_purpose`).
    pub fn count_lookup_probe(&mut self) -> VaultResult<()> {
        self.check_purpose()?;
        self.count(Kind::Reads)
    }

    /// A lookup value this call sets: refused when it is the routing
    /// kind's and another shard owns it (22023, before it is probed, so
    /// a misrouted call learns nothing of this shard's records), then
    /// charged as a probe.
    pub fn sets_lookup_value(&mut self, kind: crate::normalize::IndexedKind, normalized: &str) -> VaultResult<()> {
        super::shards::check_owned(kind, normalized)?;
        self.count_lookup_probe()
    }

    /// Counts `n` reads or writes at once, before any is done: past a
    /// budget the whole call is refused (54000) with nothing read.
    pub fn count_many(&mut self, kind: Kind, n: usize) -> VaultResult<()> {
        throttle::fits_in_statement(kind, n, warn_once).map_err(error_of)?;
        (0..n).try_for_each(|_| self.count(kind))
    }

    fn count(&mut self, kind: Kind) -> VaultResult<()> {
        throttle::count(kind, warn_once).map_err(error_of)?;
        self.charged = true;
        Ok(())
    }

    /// The field names the audit will name; refused (54000) when they do
    /// not all fit in the event, so no call hides which fields it took.
    pub fn name_fields(&mut self, fields: Vec<String>) -> VaultResult<()> {
        if !fields_fit(&fields) {
            return Err(VaultError::TooManyFieldNames(FIELD_BYTES));
        }
        self.fields = Some(fields);
        Ok(())
    }

    /// Refuses a call that returns personal data without a purpose while
    /// `pii_vault.require_purpose` is on (42501, audited as denied).
    pub fn check_purpose(&mut self) -> VaultResult<()> {
        match crate::guc::require_purpose() && crate::guc::purpose().is_none() {
            true => Err(VaultError::PurposeRequired),
            false => Ok(()),
        }
    }
}

/// The WARNING of a budget's first refusal (per statement, or per role
/// and minute).
fn warn_once(limit: Limit) {
    let (setting, value) = setting_of(limit);
    pgrx::warning!("pii_vault: {setting} ({value}) exceeded; further calls are refused and audited as throttled");
}

fn error_of(limit: Limit) -> VaultError {
    match limit {
        Limit::PerStatement(Kind::Reads, n) => VaultError::ReadsPerStatement(n),
        Limit::PerMinute(Kind::Reads, n, payer) => VaultError::ReadsPerMinute(n, payer),
        Limit::PerStatement(Kind::Writes, n) => VaultError::WritesPerStatement(n),
        Limit::PerMinute(Kind::Writes, n, payer) => VaultError::WritesPerMinute(n, payer),
    }
}

fn setting_of(limit: Limit) -> (&'static str, i32) {
    match limit {
        Limit::PerStatement(Kind::Reads, n) => ("pii_vault.max_reads_per_statement", n),
        Limit::PerMinute(Kind::Reads, n, _) => ("pii_vault.max_reads_per_minute", n),
        Limit::PerStatement(Kind::Writes, n) => ("pii_vault.max_writes_per_statement", n),
        Limit::PerMinute(Kind::Writes, n, _) => ("pii_vault.max_writes_per_minute", n),
    }
}
