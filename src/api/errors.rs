//! The one place where a core error becomes a PostgreSQL error.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::error::VaultError;
use crate::normalize::LookupKind;

fn sqlstate(error: &VaultError) -> PgSqlErrorCode {
    use PgSqlErrorCode::*;
    use VaultError::*;
    match error {
        Unavailable(_) | UnknownKeyVersion(_) | AuditUnavailable => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        BulkExportDisabled | NotAdmin => ERRCODE_INSUFFICIENT_PRIVILEGE,
        ReadsPerStatement(_) | ReadsPerMinute(_) | WritesPerStatement(_) | WritesPerMinute(_) => {
            ERRCODE_PROGRAM_LIMIT_EXCEEDED
        }
        InParallelWorker => ERRCODE_FEATURE_NOT_SUPPORTED,
        NotAnObject | PatchNotAnObject | MalformedJson | UnknownLookupKind | FieldNotString(_) | InvalidValue(_)
        | NullFieldName => ERRCODE_INVALID_PARAMETER_VALUE,
        RecordTooLarge { .. } | TooDeep { .. } | TooManyFieldNames(_) => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        Duplicate(_) => ERRCODE_UNIQUE_VIOLATION,
        DecryptFailed | AuditBatchUnreadable(_) => ERRCODE_DATA_CORRUPTED,
        RandomFailure => ERRCODE_INTERNAL_ERROR,
    }
}

/// What the caller can do about `error`, when there is something to say.
fn hint(error: &VaultError) -> Option<&'static str> {
    use VaultError::*;
    match error {
        InvalidValue(LookupKind::Phone) => Some(
            "Give the number with + and its country code (for example +44 20 7946 0958); a number without + is read in pii_vault.default_region. Extensions and letters are not accepted.",
        ),
        ReadsPerStatement(_) | WritesPerStatement(_) => {
            Some("One statement (a cursor across its fetches, a DO block or CALL across its commits) may reach only so many records; read or write in separate statements, or ask a superuser to raise the budget.")
        }
        ReadsPerMinute(_) | WritesPerMinute(_) => {
            Some("The budget refills continuously at its rate per minute; retry later, or ask a superuser to raise it in postgresql.conf.")
        }
        _ => None,
    }
}

/// Raises `error` as an ERROR. The message is the error's `Display`, which
/// is built from constants and kinds only (see `crate::error`), as is the
/// hint.
pub fn raise(error: VaultError) -> ! {
    let mut report = ErrorReport::new(sqlstate(&error), error.to_string(), "pii_vault");
    if let Some(hint) = hint(&error) {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Unwraps a core result or raises its error.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, VaultError> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| raise(e))
    }
}
