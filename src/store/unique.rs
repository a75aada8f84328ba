//! A unique violation turned into the vault's own error.
//!
//! The UNIQUE indexes of pii_vault.records decide whether a lookup value is
//! taken, so two concurrent stores of one email cannot both succeed.
//! PostgreSQL's error would show the conflicting key bytes in its DETAIL;
//! the vault's names the kind only. The statement has failed by then and
//! the handler raises at once, which is a re-throw with another message:
//! the transaction (or the caller's savepoint) is rolled back as it would
//! have been, so no subtransaction of our own is needed, and a plain INSERT
//! skips the extra index probes of ON CONFLICT.

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use crate::normalize::LookupKind;

/// Runs `f`; a unique violation it raises goes to `duplicate` (which
/// raises in turn, the type says so), any other error on up unchanged.
pub(super) fn duplicates_raised_as<R>(f: impl FnOnce() -> R, duplicate: fn(LookupKind) -> !) -> R {
    PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .catch_when(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION, |error| match error {
            CaughtError::PostgresError(ref report) => duplicate(kind_of_constraint(report.message())),
            other => other.rethrow(),
        })
        .execute()
}

/// The kind whose UNIQUE index a violation message names
/// (`records_email_index_key` and so on, see sql/storage.sql); the token's
/// primary key otherwise.
fn kind_of_constraint(message: &str) -> LookupKind {
    LookupKind::INDEXED
        .into_iter()
        .find(|kind| message.contains(&format!("records_{}_index_key", kind.as_str())))
        .unwrap_or(LookupKind::Token)
}
