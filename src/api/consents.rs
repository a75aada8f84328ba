//! Consents: the current state per record and purpose, and every change,
//! with a GDPR art. 6(1) legal basis and an optional expiry (an expired
//! consent reads as not granted).

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::Uuid;

use super::call::audited;
use super::documents::check_name;
use super::guard;
use super::records::{outcome_of, timestamp_micros};
use crate::audit::Operation;
use crate::error::VaultError;
use crate::store::{self, ConsentRow};

/// GDPR art. 6(1)'s lawful bases of processing.
const LEGAL_BASES: [&str; 6] =
    ["consent", "contract", "legal_obligation", "vital_interests", "public_task", "legitimate_interests"];

/// Records a consent (or its withdrawal: `granted` false) of a record for
/// a purpose; false when there is no such record.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_consent_set(
    token: Option<Uuid>,
    purpose: Option<&str>,
    granted: Option<bool>,
    legal_basis: default!(Option<&str>, "'consent'"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Option<bool> {
    let (token, purpose, granted, legal_basis) = (*token?.as_bytes(), purpose?, granted?, legal_basis?);
    Some(audited(Operation::ConsentSet, |call| {
        call.token = Some(token);
        check_name(purpose, "consent purpose")?;
        call.fields = Some(vec![purpose.to_string()]);
        if !LEGAL_BASES.contains(&legal_basis) {
            return Err(VaultError::BadLegalBasis);
        }
        guard::ready()?;
        let expires_at = expires_at.map(timestamp_micros);
        if expires_at.is_some_and(|at| at <= store::now()) {
            return Err(VaultError::ExpiryInThePast);
        }
        call.count_write()?;
        let set = store::set_consent(&token, purpose, granted, legal_basis, expires_at)?;
        if !set {
            call.outcome = outcome_of(&store::token_seen(&token)?);
        }
        Ok(set)
    }))
}

/// The rows of a live record's consents (none otherwise), counted as one
/// read.
fn consent_rows(operation: Operation, token: Uuid, history: bool) -> Vec<ConsentRow> {
    audited(operation, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        guard::ready()?;
        call.check_purpose()?;
        call.count_read()?;
        let seen = store::token_seen(&token)?;
        call.outcome = outcome_of(&seen);
        if seen.live().is_none() {
            return Ok(Vec::new());
        }
        store::consents(&token, history)
    })
}

/// A record's consents as they stand: one row per purpose; an expired
/// consent reads as not granted.
// pgrx reads the column names from the name!() types of the signature
// itself, so they cannot move into a type alias.
#[allow(clippy::type_complexity)]
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_consents(
    token: Uuid,
) -> TableIterator<
    'static,
    (
        name!(purpose, String),
        name!(granted, bool),
        name!(legal_basis, String),
        name!(given_at, Option<TimestampWithTimeZone>),
        name!(expires_at, Option<TimestampWithTimeZone>),
    ),
> {
    let rows = consent_rows(Operation::Consents, token, false);
    TableIterator::new(rows.into_iter().map(|(p, g, l, given, expires, _)| (p, g, l, given, expires)))
}

/// Every change of a record's consents, oldest first (append-only).
#[allow(clippy::type_complexity)]
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_consent_history(
    token: Uuid,
) -> TableIterator<
    'static,
    (
        name!(purpose, String),
        name!(granted, bool),
        name!(legal_basis, String),
        name!(given_at, Option<TimestampWithTimeZone>),
        name!(expires_at, Option<TimestampWithTimeZone>),
        name!(changed_at, Option<TimestampWithTimeZone>),
    ),
> {
    TableIterator::new(consent_rows(Operation::ConsentHistory, token, true))
}
