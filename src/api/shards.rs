//! Routing a vault split over shards (README, "Shards"): which shard holds
//! a token, which owns an identifier, and the proxy's charge for a routed
//! call.

use pgrx::prelude::*;
use pgrx::Uuid;

use super::call::audited;
use super::errors::OrRaise;
use super::guard;
use crate::audit::Operation;
use crate::crypto::blind_index::blind_index;
use crate::error::{VaultError, VaultResult};
use crate::guc;
use crate::normalize::{normalize, parse_token, IndexedKind, LookupKind};
use pii_vault_core::shard;

/// The shard `token` was minted on: pure arithmetic on the token's bits
/// and `pii_vault.shards` (fixed at server start), no key and no table, so
/// a proxy routes with it.
#[pg_extern(immutable, strict, parallel_safe)]
fn vault_shard_of(token: Uuid) -> i32 {
    shard::shard_of(token.as_bytes(), guc::shards()) as i32
}

/// The shard that owns the normalized `value` as a `kind` (email, phone,
/// login; token: the token's shard), from its blind index under
/// `pii_vault.routing_key_version`. The same answer whether or not any
/// record holds the value, and a few bits of a keyed hash at most: it
/// reads no record, so it is neither audited nor charged.
#[pg_extern(strict, stable, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_shard_for(kind: &str, value: &str) -> i32 {
    shard_for(kind, value).or_raise() as i32
}

fn shard_for(kind: &str, value: &str) -> VaultResult<u32> {
    match LookupKind::parse(kind)?.indexed() {
        None => Ok(shard::shard_of(&parse_token(value)?, guc::shards())),
        Some(kind) => {
            let normalized = normalize(kind, value, guard::region()?)?;
            owner(kind, &normalized)
        }
    }
}

/// The shard that owns an identifier already normalized. With one shard,
/// shard 0, without a key.
fn owner(kind: IndexedKind, normalized: &str) -> VaultResult<u32> {
    let shards = guc::shards();
    if shards == 1 {
        return Ok(0);
    }
    let keys = guard::ready()?;
    let version = guc::routing_key_version();
    let ring = keys.version(version).ok_or(VaultError::RoutingKeyNotLoaded(version))?;
    Ok(shard::shard_for_hash(&blind_index(ring, kind, normalized), shards))
}

/// Refuses to store the routing kind's value (`pii_vault.shard_key`) on a
/// shard that does not own it: each value lives on one shard only, so one
/// shard's unique index holds it against every other record.
pub(crate) fn check_owned(kind: IndexedKind, normalized: &str) -> VaultResult<()> {
    if guc::shards() == 1 || kind != guc::shard_key() {
        return Ok(());
    }
    let (owner, here) = (owner(kind, normalized)?, guc::shard());
    match owner == here {
        true => Ok(()),
        false => Err(VaultError::WrongShard { kind: kind.into(), owner, here }),
    }
}

/// A fresh token on this server's shard.
pub(crate) fn new_token() -> VaultResult<[u8; 16]> {
    shard::random_token_on(guc::shard(), guc::shards())
}

/// For a proxy's routing expression (`RUN ON vault_route(…)`): charges one
/// call of `charge` (read, write or none) to the caller's budgets on this
/// server, as a vault call of that kind would be, and returns `shard`, or
/// every shard when it is NULL. A proxy's one statement fans out into one
/// statement per routed call on the shards, where no per-statement budget
/// sees it whole: charged here, it is. A refusal is audited here
/// (`route`, throttled); the routed call itself is audited where it runs.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_route(shard: Option<i32>, charge: Option<&str>) -> SetOfIterator<'static, i32> {
    let shards = guc::shards();
    let targets = audited(Operation::Route, |call| {
        call.audit_only_failure();
        let targets: Vec<i32> = match shard {
            None => (0..shards as i32).collect(),
            Some(k) if (0..shards as i32).contains(&k) => vec![k],
            Some(_) => return Err(VaultError::BadShard(shards - 1)),
        };
        match charge {
            Some("read") => call.count_read()?,
            Some("write") => call.count_write()?,
            Some("none") => {}
            _ => return Err(VaultError::BadCharge),
        }
        Ok(targets)
    });
    SetOfIterator::new(targets)
}
