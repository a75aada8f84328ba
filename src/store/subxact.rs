//! Running one statement in a subtransaction, so that a unique violation
//! can be turned into the vault's own error (which names the kind only)
//! instead of PostgreSQL's (whose DETAIL shows the conflicting key bytes).
//! The same dance as a PL/pgSQL EXCEPTION block.

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

/// Runs `f` in a subtransaction. A PostgreSQL error with SQLSTATE `code`
/// rolls the subtransaction back and is returned as `Err(message)`; any
/// other error is re-raised after the rollback.
pub(super) fn catching<R>(code: PgSqlErrorCode, f: impl FnOnce() -> R) -> Result<R, String> {
    // SAFETY: standard subtransaction handling (see PL/pgSQL's
    // exec_stmt_block): remember the caller's memory context and resource
    // owner, restore both after commit or rollback of the subtransaction.
    unsafe {
        let caller_context = pg_sys::CurrentMemoryContext;
        let caller_owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(caller_context);

        let restore = move || {
            pg_sys::MemoryContextSwitchTo(caller_context);
            pg_sys::CurrentResourceOwner = caller_owner;
        };
        let mut f = Some(f);
        let f = std::panic::AssertUnwindSafe(&mut f);
        PgTryBuilder::new(move || {
            let f = f;
            let result = (f.0.take().expect("runs once"))();
            pg_sys::ReleaseCurrentSubTransaction();
            restore();
            Ok(result)
        })
        .catch_others(|error| {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            restore();
            match error {
                CaughtError::PostgresError(ref report) if report.sql_error_code() == code => {
                    Err(report.message().to_string())
                }
                other => other.rethrow(),
            }
        })
        .execute()
    }
}
