//! A unique violation turned into the vault's own error.
//!
//! The UNIQUE indexes of pii_vault.records decide whether a lookup value is
//! taken, so two concurrent stores of one email cannot both succeed.
//! PostgreSQL's error would show the conflicting key bytes in its DETAIL;
//! the vault's names the kind only. The statement has failed by then: the
//! `Duplicate` returned must travel straight up to the call's end, which
//! raises it (`api::call::audited`), with no storage touched on the way;
//! the transaction (or the caller's savepoint) is rolled back as it would
//! have been, so no subtransaction of our own is needed, and a plain
//! INSERT skips the extra index probes of ON CONFLICT.

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use super::catalog::RecordsIndex;
use crate::error::{VaultError, VaultResult};
use crate::normalize::LookupKind;

/// Runs `f`; a unique violation it raises is returned as `Duplicate` of
/// the kind whose index it names, any other error goes on up unchanged.
pub(super) fn caught_duplicates<R>(f: impl FnOnce() -> VaultResult<R>) -> VaultResult<R> {
    PgTryBuilder::new(std::panic::AssertUnwindSafe(f))
        .catch_when(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION, |error| match error {
            CaughtError::PostgresError(ref report) => Err(VaultError::Duplicate(kind_of_constraint(report.message()))),
            other => other.rethrow(),
        })
        .execute()
}

/// The kind whose UNIQUE index a violation message names; the token's
/// primary key otherwise.
fn kind_of_constraint(message: &str) -> LookupKind {
    RecordsIndex::ALL
        .into_iter()
        .find(|index| index.name().to_str().is_ok_and(|name| message.contains(name)))
        .map_or(LookupKind::Token, RecordsIndex::kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_index_is_read_back_as_its_kind() {
        for kind in [LookupKind::Token, LookupKind::Email, LookupKind::Phone, LookupKind::Login] {
            let name = RecordsIndex::of(kind).name().to_str().unwrap();
            assert_eq!(RecordsIndex::of(kind).kind(), kind);
            let message = format!("duplicate key value violates unique constraint \"{name}\"");
            assert_eq!(kind_of_constraint(&message), kind, "{name}");
        }
    }
}
