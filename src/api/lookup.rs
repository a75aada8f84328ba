//! vault_lookup: a token from an email, phone, login or token text;
//! vault_normalize: the form the vault indexes a value under.

use pgrx::prelude::*;
use pgrx::Uuid;

use super::call::audited;
use super::errors::OrRaise;
use super::guard;
use crate::audit::{Operation, Outcome};
use crate::crypto::blind_index::blind_index;
use crate::normalize::{format_token, normalize, parse_token, LookupKind};
use crate::store;

/// The token of the record whose `kind` field matches `value` after
/// normalization, or NULL.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_lookup(kind: &str, value: &str) -> Option<Uuid> {
    audited(Operation::Lookup, |call| {
        let keys = guard::ready();
        let kind = LookupKind::parse(kind).or_raise();
        call.fields = Some(vec![kind.as_str().to_string()]);
        call.count_read();
        let found = match kind {
            LookupKind::Token => {
                let token = parse_token(value).or_raise();
                store::token_exists(&token).then_some(token)
            }
            _ => {
                // The active version first: after a rotation every record
                // is found by the first probe.
                let normalized = normalize(kind, value, guard::region()).or_raise();
                let rings = std::iter::once(keys.active()).chain(keys.others());
                store::find_token(kind, rings.map(|ring| blind_index(ring, kind, &normalized)))
            }
        };
        call.token = found;
        if found.is_none() {
            call.outcome = Outcome::NotFound;
        }
        found.map(Uuid::from_bytes)
    })
}

/// The form the vault indexes `value` under as a `kind` (email, phone or
/// login), or the error a store of it would raise, so an application can
/// show its user what will be stored. Touches no record, so it counts
/// against no budget; audited like a lookup.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_normalize(kind: &str, value: &str) -> String {
    audited(Operation::Normalize, |call| {
        guard::ready();
        let kind = LookupKind::parse(kind).or_raise();
        call.fields = Some(vec![kind.as_str().to_string()]);
        match kind {
            LookupKind::Token => format_token(&parse_token(value).or_raise()),
            _ => normalize(kind, value, guard::region()).or_raise(),
        }
    })
}
