//! vault_lookup: a token from an email, phone, login or token text;
//! vault_normalize: the form the vault indexes a value under.

use pgrx::prelude::*;
use pgrx::Uuid;

use super::call::audited;
use super::guard;
use super::records::outcome_of;
use crate::audit::Operation;
use crate::crypto::blind_index::blind_index;
use crate::crypto::KeySet;
use crate::error::VaultResult;
use crate::normalize::{format_token, normalize, parse_token, IndexedKind, LookupKind};
use crate::store::{self, Seen, Token};

/// The token of the record whose `kind` field matches `value` after
/// normalization, or NULL.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_lookup(kind: &str, value: &str) -> Option<Uuid> {
    audited(Operation::Lookup, |call| {
        let keys = guard::ready()?;
        let kind = LookupKind::parse(kind)?;
        call.fields = Some(vec![kind.as_str().to_string()]);
        call.check_purpose()?;
        call.count_read()?;
        let (token, seen) = probe(keys, &wanted(kind, value)?)?;
        call.outcome = outcome_of(&seen);
        // The audit names a token that exists (an expired record's too:
        // the auditor sees which record an expired lookup hit).
        call.token = token.filter(|_| !matches!(seen, Seen::Missing));
        Ok(seen.live().and(token).map(Uuid::from_bytes))
    })
}

/// A lookup value as it is probed for: a token, or a value normalized as
/// its kind.
pub(crate) enum Wanted {
    Token(Token),
    Value(IndexedKind, String),
}

/// `value` as a lookup of `kind` probes for it; 22023 when it does not
/// parse or normalize.
pub(crate) fn wanted(kind: LookupKind, value: &str) -> VaultResult<Wanted> {
    Ok(match kind.indexed() {
        None => Wanted::Token(parse_token(value)?),
        Some(kind) => Wanted::Value(kind, normalize(kind, value, guard::region()?)?),
    })
}

/// What a lookup finds: the token it names or the record holding the value
/// (the active version probed first: after a rotation every record is
/// found by the first probe), and that record's state.
pub(crate) fn probe(keys: &KeySet, wanted: &Wanted) -> VaultResult<(Option<Token>, Seen<()>)> {
    match wanted {
        Wanted::Token(token) => Ok((Some(*token), store::token_seen(token)?)),
        Wanted::Value(kind, normalized) => {
            let rings = std::iter::once(keys.active()).chain(keys.others());
            Ok(match store::find_token(*kind, rings.map(|ring| blind_index(ring, *kind, normalized)))? {
                Some((token, seen)) => (Some(token), seen),
                None => (None, Seen::Missing),
            })
        }
    }
}

/// The form the vault indexes `value` under as a `kind` (email, phone or
/// login), or the error a store of it would raise, so an application can
/// show its user what will be stored. Touches no record, so it counts
/// against no budget; audited like a lookup.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_normalize(kind: &str, value: &str) -> String {
    audited(Operation::Normalize, |call| {
        guard::ready()?;
        // Costs nothing to read, but each call is an audit event: counted
        // as a read, so no role grows the audit faster than it may read.
        call.count_read()?;
        let kind = LookupKind::parse(kind)?;
        call.fields = Some(vec![kind.as_str().to_string()]);
        match kind.indexed() {
            None => Ok(format_token(&parse_token(value)?)),
            Some(kind) => normalize(kind, value, guard::region()?),
        }
    })
}
