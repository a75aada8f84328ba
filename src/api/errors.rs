//! The one place where a core error becomes a PostgreSQL error.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::error::VaultError;

fn sqlstate(error: &VaultError) -> PgSqlErrorCode {
    use PgSqlErrorCode::*;
    use VaultError::*;
    match error {
        Unavailable(_) | UnknownKeyVersion(_) | AuditUnavailable => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        BulkExportDisabled | NotAdmin => ERRCODE_INSUFFICIENT_PRIVILEGE,
        ThrottledPerStatement(_) | ThrottledPerMinute(_) => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        NotAnObject | PatchNotAnObject | MalformedJson | UnknownLookupKind | FieldNotString(_)
        | InvalidValue(_) | NullFieldName => ERRCODE_INVALID_PARAMETER_VALUE,
        RecordTooLarge { .. } | TooDeep { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        Duplicate(_) => ERRCODE_UNIQUE_VIOLATION,
        DecryptFailed | AuditBatchUnreadable(_) => ERRCODE_DATA_CORRUPTED,
        RandomFailure => ERRCODE_INTERNAL_ERROR,
    }
}

/// Raises `error` as an ERROR. The message is the error's `Display`, which
/// is built from constants and kinds only (see `crate::error`).
pub fn raise(error: VaultError) -> ! {
    ErrorReport::new(sqlstate(&error), error.to_string(), "pii_vault").report(PgLogLevel::ERROR);
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
