//! Field tokens: single values (a card number, an IBAN, an email) sealed on
//! their own, whose tokens stay in the application's tables in the values'
//! place: vault_tokenize, vault_detokenize, vault_token_delete.
//!
//! Each value is sealed like a record, under its own data key, bound to
//! the stored columns that name it (`field_binding`): its token, kind,
//! record and expiry, so an envelope moved to another row, or a row whose
//! record or expiry was changed under it, does not open. The audit names
//! a field token by its id (`audit_id`), never its value.

use pgrx::prelude::*;
use pgrx::Uuid;
use zeroize::Zeroizing;

use super::call::audited;
use super::guard;
use super::records::{outcome_of, timestamp_micros};
use crate::audit::{Operation, Outcome};
use crate::crypto::blind_index::field_value_hash;
use crate::crypto::envelope::{self, PayloadEncoding};
use crate::crypto::{document_binding, fill_random, KeySet};
use crate::error::{VaultError, VaultResult};
use crate::normalize::{format_token, normalize, parse_token, IndexedKind};
use crate::store::{self, IndexHash, Seen, StoredFieldToken, Token};
use pii_vault_core::field_token::{self as field, CardProblem, FieldKind};

/// How many card tokens are drawn before giving up: a draw is taken only
/// when the same card's length and last four leave few tokens unused
/// (12 digits, Luhn-valid: 10^7), far beyond any vault's use.
const CARD_DRAWS: usize = 16;

/// What a field token's envelope is bound to.
pub(crate) fn field_binding(token: &str, kind: &str, record: Option<&Token>, expires_at: Option<i64>) -> [u8; 16] {
    let expiry = expires_at.map(i64::to_be_bytes);
    document_binding(
        "field_token",
        &[
            token.as_bytes(),
            kind.as_bytes(),
            record.map_or(&[][..], |t| &t[..]),
            expiry.as_ref().map_or(&[][..], |e| &e[..]),
        ],
    )
}

/// The id the audit names a field token by: a UUID token is its own id; a
/// card token's is a version 8 UUID encoding its digits, which anyone
/// holding the token computes with `vault_field_token_id` (the token is
/// in the application's table; the card number is not).
pub(crate) fn audit_id(token: &str) -> Option<[u8; 16]> {
    match field::card_token_id(token) {
        Some(id) => Some(id),
        None => parse_token(token).ok(),
    }
}

/// A token's id (in the form `stored_form` gives), by which its row is
/// found and the audit names it.
pub(crate) fn token_id(token: &str) -> VaultResult<Token> {
    audit_id(token).ok_or(VaultError::NotAFieldToken)
}

/// A token as a call is given it: its stored form (a UUID in any spelling
/// PostgreSQL accepts, stored lowercase and hyphenated, or a card token's
/// digits) and its id. 22023 otherwise, without the text.
struct GivenToken {
    text: String,
    id: Token,
    card: bool,
}

impl GivenToken {
    fn parse(token: &str) -> VaultResult<GivenToken> {
        let card = field::is_card_token_shape(token);
        let text = match card {
            true => token.to_string(),
            false => parse_token(token).map(|t| format_token(&t)).map_err(|_| VaultError::NotAFieldToken)?,
        };
        Ok(GivenToken { id: token_id(&text)?, text, card })
    }

    /// The id a call names before it knows whether the token exists: a
    /// UUID token's, never a card-shaped one's. A card token's id encodes
    /// its digits, and the digits a caller passes may be a real card
    /// number, not a token: its id is named only once the token is found.
    fn named_before_found(&self) -> Option<Token> {
        (!self.card).then_some(self.id)
    }
}

fn card_problem(problem: CardProblem) -> VaultError {
    VaultError::BadCard(match problem {
        CardProblem::NotDigits => "may hold only digits, spaces and dashes",
        CardProblem::Length => "must have 12 to 19 digits",
        CardProblem::Luhn => "fails the Luhn check",
    })
}

/// The value as it is sealed (and deduplicated): a card's digits, an email
/// or phone number in the form lookups index, text as given.
fn normalized(kind: FieldKind, value: &str) -> VaultResult<Zeroizing<String>> {
    Ok(Zeroizing::new(match kind {
        FieldKind::Text => {
            if value.is_empty() || value.len() > field::MAX_TEXT_BYTES {
                return Err(VaultError::BadText(field::MAX_TEXT_BYTES));
            }
            value.to_string()
        }
        FieldKind::Card | FieldKind::CardLuhn => field::card_digits(value).map_err(card_problem)?,
        FieldKind::Email => normalize(IndexedKind::Email, value, guard::region()?)?,
        FieldKind::Phone => normalize(IndexedKind::Phone, value, guard::region()?)?,
    }))
}

/// The value's dedup hash under every loaded key version, the active one
/// first.
fn value_hashes(keys: &KeySet, kind: FieldKind, record: Option<&Token>, value: &str) -> Vec<IndexHash> {
    std::iter::once(keys.active())
        .chain(keys.others())
        .map(|ring| field_value_hash(ring, kind.as_str(), record, value))
        .collect()
}

/// A fresh token of `kind` for `value` (normalized).
fn draw(kind: FieldKind, value: &str) -> VaultResult<String> {
    match kind {
        FieldKind::Card | FieldKind::CardLuhn => {
            field::card_token(value, kind == FieldKind::CardLuhn, &mut |bytes| fill_random(bytes))
        }
        FieldKind::Text | FieldKind::Email | FieldKind::Phone => Ok(format_token(&super::shards::new_token()?)),
    }
}

/// Tokenizes one value: its token, which the application keeps in the
/// value's place. `record`: the subject it belongs to (erased with it; the
/// token reads nothing while the record is deleted or expired).
/// `dedup`: the same value (and record) gets the same token, which tells
/// whoever may tokenize whether a value was tokenized before, so it is
/// charged as a read too.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_tokenize(
    value: Option<&str>,
    kind: default!(Option<&str>, "'text'"),
    record: default!(Option<Uuid>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    dedup: default!(Option<bool>, "false"),
) -> Option<String> {
    let (value, kind) = (value?, kind?);
    let record = record.map(|r| *r.as_bytes());
    let expires_at = expires_at.map(timestamp_micros);
    let dedup = dedup.unwrap_or(false);
    audited(Operation::Tokenize, |call| {
        let keys = guard::ready()?;
        let kind = FieldKind::parse(kind).ok_or(VaultError::UnknownFieldKind)?;
        call.fields = Some(vec![kind.as_str().to_string()]);
        call.count_write()?;
        if dedup {
            call.count_lookup_probe()?;
        }
        if expires_at.is_some_and(|at| at <= store::now()) {
            return Err(VaultError::ExpiryInThePast);
        }
        let value = normalized(kind, value)?;
        if let Some(record) = &record {
            if !matches!(store::token_seen(record)?, Seen::Live(())) {
                return Err(VaultError::NoSuchRecord);
            }
        }
        let hashes = if dedup { value_hashes(keys, kind, record.as_ref(), &value) } else { Vec::new() };
        for _ in 0..CARD_DRAWS {
            if dedup {
                if let Some(existing) = store::find_field_value(&hashes)? {
                    call.token = audit_id(&existing);
                    return Ok(Some(existing));
                }
            }
            let token = draw(kind, &value)?;
            let binding = field_binding(&token, kind.as_str(), record.as_ref(), expires_at);
            let sealed = envelope::seal(keys.active(), &binding, PayloadEncoding::Utf8Text, value.as_bytes())?;
            let hash = hashes.first().map(|h| (h, keys.active().key_version()));
            let id = token_id(&token)?;
            if store::insert_field_token(&id, &token, kind.as_str(), &sealed, hash, record.as_ref(), expires_at)? {
                call.token = Some(id);
                return Ok(Some(token));
            }
        }
        Err(VaultError::RandomFailure)
    })
}

/// The value a field token stands for (as sealed: a card's digits, an email
/// or phone number normalized), or NULL when there is no such live token.
/// Audited (the token's id, never the value) and charged as a read.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_detokenize(token: &str) -> Option<String> {
    audited(Operation::Detokenize, |call| {
        let keys = guard::ready()?;
        let token = GivenToken::parse(token)?;
        call.token = token.named_before_found();
        call.check_purpose()?;
        call.count_read()?;
        let found = store::find_field_token(&token.id)?;
        call.outcome = outcome_of(&found);
        if !matches!(found, Seen::Missing) {
            call.token = Some(token.id);
        }
        let Some(stored) = found.live() else {
            return Ok(None);
        };
        call.fields = Some(vec![stored.kind.clone()]);
        open_value(keys, &token.text, &stored).map(|v| Some(v.to_string()))
    })
}

/// A stored field token's value.
pub(crate) fn open_value(keys: &KeySet, token: &str, stored: &StoredFieldToken) -> VaultResult<Zeroizing<String>> {
    let binding = field_binding(token, &stored.kind, stored.record.as_ref(), stored.expires_at);
    let (encoding, plaintext) = envelope::open(keys, &binding, &stored.envelope)?;
    if encoding != PayloadEncoding::Utf8Text {
        return Err(VaultError::DecryptFailed);
    }
    let text = std::str::from_utf8(&plaintext).map_err(|_| VaultError::DecryptFailed)?;
    Ok(Zeroizing::new(text.to_string()))
}

/// Removes a field token at once (not restorable); false when there is no
/// such live token.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_token_delete(token: &str) -> bool {
    audited(Operation::TokenDelete, |call| {
        guard::ready()?;
        let token = GivenToken::parse(token)?;
        call.token = token.named_before_found();
        call.count_write()?;
        match store::delete_field_token(&token.id)? {
            Some(live) => {
                call.token = Some(token.id);
                call.outcome = if live { Outcome::Ok } else { Outcome::Expired };
                Ok(live)
            }
            None => {
                call.outcome = Outcome::NotFound;
                Ok(false)
            }
        }
    })
}

/// The id the audit names a field token by (`vault_audit(id)` lists its
/// events): a UUID token is its own; a card token's encodes its digits.
/// Pure: no key, no table, no audit.
#[pg_extern(immutable, strict, parallel_safe)]
fn vault_field_token_id(token: &str) -> Option<Uuid> {
    GivenToken::parse(token).ok().map(|token| Uuid::from_bytes(token.id))
}
