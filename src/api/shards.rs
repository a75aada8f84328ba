//! Routing a vault split over shards (README, "Shards"): which shard holds
//! a token, which owns an identifier, and the proxy's charge for a routed
//! call.

use pgrx::prelude::*;
use pgrx::Uuid;

use super::call::audited;
use super::errors::OrRaise;
use super::guard;
use super::jsonb::{JsonbDatum, TopLevelField};
use crate::audit::Operation;
use crate::crypto::blind_index::blind_index;
use crate::error::{VaultError, VaultResult};
use crate::guc;
use crate::normalize::{normalize, parse_token, IndexedKind, LookupKind};
use crate::throttle::Kind;
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

/// What a routed call of `operation` costs where the proxy's statement
/// runs: as the vault call it routes is charged on its shard (README,
/// Settings: which calls are reads and which writes).
fn charge_of(operation: Operation) -> Option<Kind> {
    use Operation::*;
    match operation {
        Get | Lookup | Normalize | GetShared | SessionGet | Sessions | AppDataGet | Consents | ConsentHistory
        | SubjectExport | Detokenize => Some(Kind::Reads),
        Store | Update | Delete | SetExpiry | Restore | Erase | Share | Unshare | SessionStore | SessionDelete
        | AppDataSet | AppDataDelete | ConsentSet | Tokenize | TokenDelete | Patch => Some(Kind::Writes),
        Export | AuditRead | AuditVerify | Health | Rotate | AuditPrune | KeyVersions | Purge | Expire | Reindex
        | Route | Migrate => None,
    }
}

/// For a proxy's routing expression (`RUN ON vault_route(…)`): charges the
/// routed call of `operation` (a vault operation's audit name: get,
/// lookup, store, …) to the caller's budgets on this server, as its shard
/// charges it (a store or update also one read per email, phone or login
/// `record` sets; a call asked of every shard, one per shard), audits it
/// here (`route`, naming the operation, `token` and the proxy's login and
/// calling roles, which the shard, reached as the current role, does not
/// see), and returns `shard`, or every shard when it is NULL. One proxy
/// statement is one statement per routed call on the shards, where no
/// per-statement budget sees it whole: charged here, it is.
#[pg_extern(volatile)]
fn vault_route(
    shard: Option<i32>,
    operation: Option<&str>,
    token: default!(Option<Uuid>, "NULL"),
    record: default!(Option<JsonbDatum>, "NULL"),
) -> SetOfIterator<'static, i32> {
    let shards = guc::shards() as i32;
    let targets = audited(Operation::Route, |call| {
        call.token = token.map(|t| *t.as_bytes());
        let operation = operation
            .and_then(|name| Operation::ALL.iter().copied().find(|op| op.as_str() == name))
            .filter(|op| *op != Operation::Route)
            .ok_or(VaultError::BadRoutedOperation)?;
        call.fields = Some(vec![operation.as_str().to_string()]);
        let targets: Vec<i32> = match shard {
            None => (0..shards).collect(),
            Some(k) if (0..shards).contains(&k) => vec![k],
            Some(_) => return Err(VaultError::BadShard(shards as u32 - 1)),
        };
        match charge_of(operation) {
            Some(Kind::Reads) => targets.iter().try_for_each(|_| call.count_read())?,
            Some(Kind::Writes) => call.count_write()?,
            None => {}
        }
        if let (Some(record), Operation::Store | Operation::Update) = (record, operation) {
            let fields = record.top_level_fields(IndexedKind::ALL.map(IndexedKind::as_str))?;
            for _ in fields.iter().filter(|f| matches!(f, TopLevelField::String(_))) {
                call.count_lookup_probe()?;
            }
        }
        Ok(targets)
    });
    SetOfIterator::new(targets)
}
