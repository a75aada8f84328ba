//! Storage: the only code that runs SQL against the vault's tables.
//!
//! Every statement is prepared once per backend (kept with SPI_keepplan)
//! and executed with parameters; no SQL text is ever built from values.
//! Callers run inside SECURITY DEFINER functions with a pinned search_path,
//! and every name here is schema-qualified as well. The hot one-row reads
//! (`with_envelope`, `find_token`, `token_exists`) skip SPI and probe the
//! unique indexes directly (`index_read`).

mod catalog;
mod documents;
mod field_tokens;
mod index_read;
mod plans;
mod unique;

pub use catalog::{installed_schema, schema};
pub use documents::*;
pub use field_tokens::*;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiResult, SpiTupleTable};
use pgrx::Uuid;

use crate::crypto::blind_index::BLIND_INDEX_LEN;
use crate::error::{StorageFault, VaultError, VaultResult};
use crate::normalize::{IndexedKind, LookupKind};
use catalog::{RecordColumns, RecordsIndex};
use index_read::{read_unique, token_by_index, Row};
use pii_vault_core::schema::Schema;
use plans::with_plans;
use unique::caught_duplicates;

/// The first column of a read-only query's first row, through SPI in
/// read-only mode, which takes no transaction id: pgrx's `Spi::get_one`
/// runs every query as a write and takes one, which a standby cannot give
/// ("cannot assign TransactionIds during recovery"). Read-only SPI runs
/// under the active snapshot. Where there is none (a utility hook: LOCK
/// runs without one) the query runs under a catalog snapshot, and such
/// queries read only catalogs: the transaction's snapshot (or the latest,
/// which becomes it when it is the first) would fix a REPEATABLE READ
/// transaction's snapshot before the LOCK it precedes, and "LOCK first,
/// then read" would no longer see what the lock waited for.
pub fn select_one<A: FromDatum + IntoDatum>(query: &str, args: &[DatumWithOid<'_>]) -> SpiResult<Option<A>> {
    // SAFETY: inside a transaction; a snapshot pushed here (a copy) is
    // popped below, or by the (sub)transaction's abort when the query
    // raises an ERROR.
    let pushed = unsafe { !pg_sys::ActiveSnapshotSet() };
    if pushed {
        // SAFETY: as above.
        unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetCatalogSnapshot(pg_sys::InvalidOid)) };
    }
    let value = Spi::connect(|client| client.select(query, Some(1), args)?.first().get_one());
    if pushed {
        // SAFETY: the snapshot pushed above is on top again.
        unsafe { pg_sys::PopActiveSnapshot() };
    }
    value
}

/// An SPI failure as the storage fault it is.
pub fn fault(error: pgrx::spi::SpiError) -> VaultError {
    VaultError::Storage(StorageFault::Spi(error.to_string()))
}

pub type Token = [u8; 16];
pub type IndexHash = [u8; BLIND_INDEX_LEN];

/// The blind-index hashes of one record, one slot per indexed kind.
#[derive(Debug, Default, Clone)]
pub struct IndexHashes {
    pub email: Option<IndexHash>,
    pub phone: Option<IndexHash>,
    pub login: Option<IndexHash>,
}

impl IndexHashes {
    pub fn get(&self, kind: IndexedKind) -> Option<&IndexHash> {
        match kind {
            IndexedKind::Email => self.email.as_ref(),
            IndexedKind::Phone => self.phone.as_ref(),
            IndexedKind::Login => self.login.as_ref(),
        }
    }

    pub fn set(&mut self, kind: IndexedKind, hash: IndexHash) {
        match kind {
            IndexedKind::Email => self.email = Some(hash),
            IndexedKind::Phone => self.phone = Some(hash),
            IndexedKind::Login => self.login = Some(hash),
        }
    }

    fn args(&self) -> [DatumWithOid<'_>; 3] {
        [
            DatumWithOid::from(self.email.as_ref().map(|h| h.as_slice())),
            DatumWithOid::from(self.phone.as_ref().map(|h| h.as_slice())),
            DatumWithOid::from(self.login.as_ref().map(|h| h.as_slice())),
        ]
    }
}

/// The first column of the first row, or None when there is no row.
fn first_value<T: FromDatum + IntoDatum>(table: SpiTupleTable<'_>) -> SpiResult<Option<T>> {
    if table.is_empty() {
        Ok(None)
    } else {
        table.first().get(1)
    }
}

/// Hashes (of an id under each loaded version) as a bytea[] argument.
fn hash_array(hashes: &[IndexHash]) -> DatumWithOid<'static> {
    DatumWithOid::from(hashes.iter().map(|h| h.to_vec()).collect::<Vec<Vec<u8>>>())
}

fn uuid(token: &Token) -> DatumWithOid<'static> {
    DatumWithOid::from(Uuid::from_bytes(*token))
}

/// What the API finds under a token or a lookup value.
pub enum Seen<R> {
    Live(R),
    /// There, but past its `expires_at`: for the API as if missing (and
    /// audited as expired) until the purge worker removes it.
    Expired,
    /// No such record, or one soft-deleted.
    Missing,
}

impl<R> Seen<R> {
    pub fn live(self) -> Option<R> {
        match self {
            Seen::Live(r) => Some(r),
            _ => None,
        }
    }
}

/// The current time as a timestamptz (microseconds since 2000-01-01), the
/// clock expiries are judged by.
pub fn now() -> i64 {
    // SAFETY: reads the system clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

fn expired(expires_at: Option<i64>) -> bool {
    expires_at.is_some_and(|at| at <= now())
}

/// Inserts a new record. A lookup value another record has (or, with
/// odds of 2^-122, its token) is a `Duplicate`.
pub fn insert_record(token: &Token, envelope: &[u8], hashes: &IndexHashes, expires_at: Option<i64>) -> VaultResult<()> {
    let [e, p, l] = hashes.args();
    let args = [uuid(token), envelope.into(), e, p, l, timestamp(expires_at)];
    let args = match catalog::schema()? {
        Schema::V0_1 | Schema::V0_2 if expires_at.is_some() => return Err(StorageFault::NeedsUpdate.into()),
        Schema::V0_1 | Schema::V0_2 => &args[..5],
        Schema::V0_3 | Schema::V0_4 | Schema::V0_6 => &args[..],
    };
    caught_duplicates(|| with_plans(|client, plans| client.update(&plans.insert_record, None, args).map(drop)))
}

fn timestamp(at: Option<i64>) -> DatumWithOid<'static> {
    // SAFETY: a timestamptz datum is its microseconds, by value.
    DatumWithOid::from(
        at.and_then(|at| unsafe { pgrx::datum::TimestampWithTimeZone::from_datum(pg_sys::Datum::from(at), false) }),
    )
}

/// Calls `f` with the stored envelope of a live record (borrowed, not
/// copied).
pub fn with_envelope<R>(token: &Token, f: impl FnOnce(&[u8]) -> R) -> VaultResult<Seen<R>> {
    Ok(match read_live(token, |row, c| row.with_bytea(c.envelope, f))? {
        Seen::Live(Some(r)) => Seen::Live(r),
        Seen::Expired => Seen::Expired,
        // The envelope is NOT NULL.
        Seen::Live(None) | Seen::Missing => Seen::Missing,
    })
}

/// Whether a record exists under `token`, as the API sees it (its
/// envelope is not read).
pub fn token_seen(token: &Token) -> VaultResult<Seen<()>> {
    read_live(token, |_, _| Ok(()))
}

/// `read(row, columns)` of the row under `token` when it is live.
fn read_live<R>(token: &Token, read: impl FnOnce(&Row<'_>, RecordColumns) -> VaultResult<R>) -> VaultResult<Seen<R>> {
    let seen = read_unique(RecordsIndex::Token, token_datum(token), |row, columns| {
        if let Some(c) = columns.life_cycle {
            if row.timestamp(c.deleted_at)?.is_some() {
                return Ok(Seen::Missing);
            }
            if expired(row.timestamp(c.expires_at)?) {
                return Ok(Seen::Expired);
            }
        }
        Ok(Seen::Live(read(row, columns)?))
    })?;
    Ok(seen.unwrap_or(Seen::Missing))
}

fn hash_datum(hash: &IndexHash) -> pg_sys::Datum {
    hash.as_slice().into_datum().expect("a hash is never NULL")
}

/// Datums of `hashes`, made as they are probed.
fn hash_datums(hashes: &[IndexHash]) -> impl Iterator<Item = pg_sys::Datum> + '_ {
    hashes.iter().map(hash_datum)
}

fn token_datum(token: &Token) -> pg_sys::Datum {
    Uuid::from_bytes(*token).into_datum().expect("a uuid is never NULL")
}

/// The stored envelope of a live record, row-locked until the transaction
/// ends.
pub fn fetch_envelope_for_update(token: &Token) -> VaultResult<Seen<Vec<u8>>> {
    with_plans(|client, plans| {
        let table = client.update(&plans.fetch_envelope_for_update, Some(1), &[uuid(token)])?;
        if table.is_empty() {
            return Ok(Seen::Missing);
        }
        let row = table.first();
        Ok(match (row.get::<Vec<u8>>(1)?, row.get::<bool>(2)?) {
            (_, Some(true)) => Seen::Expired,
            (Some(envelope), _) => Seen::Live(envelope),
            (None, _) => Seen::Missing,
        })
    })
}

/// The name of the UNIQUE index that decides `kind` (sql/storage.sql), for
/// the constraint field of a duplicate's error.
pub fn unique_index_name(kind: LookupKind) -> &'static std::ffi::CStr {
    RecordsIndex::of(kind).name()
}

/// The record whose `kind` blind index equals one of `hashes` (the value's
/// hash under each loaded key version, tried in order under one snapshot,
/// each computed only if the ones before it found nothing), with its
/// token whether live or expired.
pub fn find_token(
    kind: IndexedKind,
    hashes: impl IntoIterator<Item = IndexHash>,
) -> VaultResult<Option<(Token, Seen<()>)>> {
    let index = RecordsIndex::of(kind.into());
    // A soft-deleted record has no blind-index values, so it is never found.
    Ok(token_by_index(index, hashes.into_iter().map(|hash| hash_datum(&hash)))?
        .map(|(token, expires_at)| (token, if expired(expires_at) { Seen::Expired } else { Seen::Live(()) })))
}

/// Replaces a live record's envelope and blind indexes; false when there
/// is none. A lookup value another record has is a `Duplicate`.
pub fn update_record(token: &Token, envelope: &[u8], hashes: &IndexHashes) -> VaultResult<bool> {
    let [e, p, l] = hashes.args();
    let args = [uuid(token), envelope.into(), e, p, l];
    caught_duplicates(|| with_plans(|client, plans| Ok(client.update(&plans.update_record, None, &args)?.len() == 1)))
}

/// Deletes a live record: soft (kept for the grace, without its lookup
/// values) unless `at_once`; false when there is no live record.
pub fn delete_record(token: &Token, at_once: bool) -> VaultResult<bool> {
    with_plans(|client, plans| {
        Ok(client.update(&plans.delete_record, None, &[uuid(token), DatumWithOid::from(at_once)])?.len() == 1)
    })
}

/// Removes a record's row, whatever its state, with everything attached
/// (ON DELETE CASCADE); false when there is none.
pub fn erase_record(token: &Token) -> VaultResult<bool> {
    with_plans(|client, plans| Ok(client.update(&plans.erase_record, None, &[uuid(token)])?.len() == 1))
}

/// Runs `f` with the statements of a schema with a life cycle; before
/// ALTER EXTENSION UPDATE, the functions that need them do not exist in
/// SQL, so this is only reached through one called by hand: refused.
fn with_life_cycle<R>(
    f: impl FnOnce(&mut pgrx::spi::SpiClient<'_>, &plans::LifeCyclePlans) -> SpiResult<R>,
) -> VaultResult<R> {
    with_plans(|client, plans| plans.life_cycle.as_ref().map(|lc| f(client, lc)).transpose())?
        .ok_or(StorageFault::NeedsUpdate.into())
}

/// Sets or clears a live record's expiry; false when there is none.
pub fn set_expiry(token: &Token, expires_at: Option<i64>) -> VaultResult<bool> {
    with_life_cycle(|client, lc| {
        Ok(client.update(&lc.set_expiry, None, &[uuid(token), timestamp(expires_at)])?.len() == 1)
    })
}

/// The envelope of a record deleted or expired less than `grace_seconds`
/// ago, row-locked until the transaction ends.
pub fn fetch_deleted_for_update(token: &Token, grace_seconds: f64) -> VaultResult<Seen<Vec<u8>>> {
    with_life_cycle(|client, lc| {
        let table = client.update(&lc.fetch_deleted_for_update, Some(1), &[uuid(token), grace_seconds.into()])?;
        if table.is_empty() {
            return Ok(Seen::Missing);
        }
        Ok(table.first().get::<Vec<u8>>(1)?.map_or(Seen::Missing, Seen::Live))
    })
}

/// Frees an expired record's lookup values (and marks it deleted, so it
/// goes once the grace has passed); false when it is not expired.
pub fn release_lookups(token: &Token) -> VaultResult<bool> {
    with_life_cycle(|client, lc| Ok(client.update(&lc.release_lookups, None, &[uuid(token)])?.len() == 1))
}

/// Brings a soft-deleted record back with its blind indexes. A lookup
/// value another record took meanwhile is a `Duplicate`.
pub fn restore_record(token: &Token, hashes: &IndexHashes) -> VaultResult<bool> {
    let [e, p, l] = hashes.args();
    let args = [uuid(token), e, p, l];
    caught_duplicates(|| with_life_cycle(|client, lc| Ok(client.update(&lc.restore_record, None, &args)?.len() == 1)))
}

/// A share as stored: the record's token and the fields it gives.
pub struct Share {
    pub token: Token,
    pub fields: Vec<String>,
}

/// Stores a share of a live record, its id stored as `id_hash` (under key
/// `key_version`); false when the record is not live.
pub fn insert_share(
    id_hash: &IndexHash,
    key_version: u32,
    token: &Token,
    fields: &[String],
    ttl_seconds: f64,
) -> VaultResult<bool> {
    let args = [
        id_hash.as_slice().into(),
        (key_version as i32).into(),
        uuid(token),
        DatumWithOid::from(fields.to_vec()),
        ttl_seconds.into(),
    ];
    with_life_cycle(|client, lc| Ok(client.update(&lc.insert_share, None, &args)?.len() == 1))
}

/// The share whose id hashes to one of `hashes` (one per loaded version),
/// read through its primary key without SPI (`index_read`).
pub fn find_share(hashes: &[IndexHash]) -> VaultResult<Seen<Share>> {
    let found = index_read::read_share(hash_datums(hashes), |row, c| {
        Ok((row.uuid(c.token)?, row.text_array(c.fields)?, row.timestamp(c.expires_at)?))
    })?;
    Ok(match found {
        Some((_, _, expires_at)) if expired(expires_at) => Seen::Expired,
        Some((Some(token), Some(fields), _)) => Seen::Live(Share { token, fields }),
        // The columns are NOT NULL.
        Some(_) | None => Seen::Missing,
    })
}

/// Removes the share whose id hashes to one of `hashes`: the token it was
/// of, and whether it had expired; None when there is none.
pub fn delete_share(hashes: &[IndexHash]) -> VaultResult<Option<(Token, bool)>> {
    let hashes = hash_array(hashes);
    with_life_cycle(|client, lc| {
        let table = client.update(&lc.delete_share, None, &[hashes])?;
        if table.is_empty() {
            return Ok(None);
        }
        let row = table.first();
        Ok(row.get::<Uuid>(1)?.map(|t| (*t.as_bytes(), row.get::<bool>(2).ok().flatten().unwrap_or(false))))
    })
}

/// How many live shares and sessions have their id hashed under a version
/// other than `version` (none on a schema without them).
pub fn live_ids_not_under(version: u32) -> VaultResult<(i64, i64)> {
    match catalog::schema()? {
        Schema::V0_1 | Schema::V0_2 => return Ok((0, 0)),
        Schema::V0_3 | Schema::V0_4 | Schema::V0_6 => {}
    }
    let count = |table: &str| {
        Spi::connect(|client| {
            first_value(client.select(
                &format!(
                    "SELECT pg_catalog.count(*) FROM pii_vault.{table} \
                     WHERE key_version <> $1 AND expires_at > pg_catalog.clock_timestamp()"
                ),
                None,
                &[(version as i32).into()],
            )?)
        })
        .map_err(fault)
        .map(|n| n.unwrap_or(0))
    };
    Ok((count("shares")?, count("sessions")?))
}

/// Removes up to `limit` expired shares; the tokens they were of.
pub fn purge_shares(limit: i64) -> VaultResult<Vec<Token>> {
    with_life_cycle(|client, lc| {
        tokens(client.update(&lc.purge_shares, None, &[limit.into(), timestamp(Some(now()))])?)
    })
}

fn tokens(table: SpiTupleTable<'_>) -> SpiResult<Vec<Token>> {
    let mut out = Vec::with_capacity(table.len());
    for row in table {
        if let Some(token) = row.get::<Uuid>(1)? {
            out.push(*token.as_bytes());
        }
    }
    Ok(out)
}

/// Removes up to `limit` records that expired or were deleted more than
/// `grace_seconds` ago; their tokens.
pub fn purge_records(limit: i64, grace_seconds: f64) -> VaultResult<Vec<Token>> {
    let cutoff = now().saturating_sub((grace_seconds * 1e6) as i64);
    with_life_cycle(|client, lc| {
        tokens(client.update(&lc.purge_records, None, &[limit.into(), timestamp(Some(cutoff))])?)
    })
}

/// Records the purge worker would remove now (expired, or deleted more
/// than `grace_seconds` ago), counted up to `cap` through the partial
/// indexes on expires_at and deleted_at; None before 0.3.0's life cycle.
pub fn purge_backlog(grace_seconds: f64, cap: i64) -> VaultResult<Option<i64>> {
    match catalog::schema()? {
        Schema::V0_1 | Schema::V0_2 => return Ok(None),
        Schema::V0_3 | Schema::V0_4 | Schema::V0_6 => {}
    }
    let cutoff = now().saturating_sub((grace_seconds * 1e6) as i64);
    select_one::<i64>(
        "SELECT pg_catalog.count(*) FROM (SELECT 1 FROM pii_vault.records WHERE expires_at <= $1 \
         UNION ALL SELECT 1 FROM pii_vault.records WHERE deleted_at <= $1 AND NOT (expires_at <= $1) \
         UNION ALL SELECT 1 FROM pii_vault.records WHERE deleted_at <= $1 AND expires_at IS NULL LIMIT $2) s",
        &[timestamp(Some(cutoff)), cap.into()],
    )
    .map_err(fault)
}

/// Every (token, envelope), for the bulk export.
pub fn all_envelopes() -> VaultResult<Vec<(Token, Vec<u8>)>> {
    let live = match catalog::schema()? {
        Schema::V0_1 | Schema::V0_2 => "true",
        Schema::V0_3 | Schema::V0_4 | Schema::V0_6 => plans::LIVE,
    };
    with_plans(|client, _plans| {
        let table = client.select(
            &format!("SELECT token, envelope FROM pii_vault.records WHERE {live} ORDER BY created_at, token"),
            None,
            &[],
        )?;
        let mut out = Vec::with_capacity(table.len());
        for row in table {
            if let (Some(token), Some(envelope)) = (row.get::<Uuid>(1)?, row.get::<Vec<u8>>(2)?) {
                out.push((*token.as_bytes(), envelope));
            }
        }
        Ok(out)
    })
}

/// Every stored key check value: (key version, value), a version possibly
/// more than once (see `KeySet::verdict`).
pub fn key_checks() -> VaultResult<Vec<(u32, Vec<u8>)>> {
    Spi::connect(key_checks_with).map_err(fault)
}

/// `key_checks` inside an SPI connection the caller holds (the audit
/// writer's).
pub fn key_checks_with(client: &pgrx::spi::SpiClient<'_>) -> SpiResult<Vec<(u32, Vec<u8>)>> {
    let rows = client.select("SELECT key_version, check_value FROM pii_vault.key_check", None, &[])?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if let (Some(version), Some(value)) = (row.get::<i32>(1)?, row.get::<Vec<u8>>(2)?) {
            out.push((version as u32, value));
        }
    }
    Ok(out)
}

/// The loaded keys judged against the vault's key check values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    /// The keys are the vault's, and every loaded version's check value is
    /// stored: the verdict holds until the values change.
    Settled,
    /// The keys are the vault's for this transaction, but a loaded
    /// version's check value is still to be stored (or was stored by this
    /// uncommitted transaction): judged again by the next call.
    Pending,
    /// The keys are not the vault's: every call is refused.
    Refused(crate::error::KeyProblem),
}

/// Judges the loaded keys against the vault's key check values
/// (`KeySet::verdict`) and, when `can_write`, stores the check value of
/// every loaded version the vault has none for.
///
/// A vault with no check values at all (just created, or restored from a
/// dump of 0.1.0, which did not carry them) is vouched for by its data:
/// none, or a record whose data key opens under a loaded version. CREATE
/// EXTENSION stores nothing, so a restore, whose dump brings the vault's
/// own values, never finds values of the restoring server's keys beside
/// them: under keys that share no version with the dump every call is
/// refused.
pub fn settle_key_checks(
    client: &mut pgrx::spi::SpiClient<'_>,
    keys: &crate::crypto::KeySet,
    can_write: bool,
) -> VaultResult<KeyCheck> {
    let schema = catalog::schema()?;
    // The id of a vault storing its first values, made before any is read.
    let fresh_id = Uuid::from_bytes(crate::crypto::random_token()?);
    settle(client, keys, can_write, schema, fresh_id).map_err(fault)
}

fn settle(
    client: &mut pgrx::spi::SpiClient<'_>,
    keys: &crate::crypto::KeySet,
    can_write: bool,
    schema: Schema,
    fresh_id: Uuid,
) -> SpiResult<KeyCheck> {
    match judge_key_checks(client, keys, schema)? {
        Err(problem) => return Ok(KeyCheck::Refused(problem)),
        Ok((unregistered, _)) if unregistered.is_empty() => return Ok(KeyCheck::Settled),
        Ok(_) if !can_write => return Ok(KeyCheck::Pending),
        Ok(_) => {}
    }
    // Storing: one session at a time (a backend's first call and the audit
    // writer race for it), under a transaction-scoped advisory lock, then
    // judged again (READ COMMITTED: a fresh snapshot), so a later session
    // finds an earlier one's values and their vault id instead of adding a
    // second vault. Never waited for: a session that does not get the lock
    // goes on without storing (the keys are vouched for already), and the
    // holder, or a later call, stores them.
    let locked = client
        .update("SELECT pg_catalog.pg_try_advisory_xact_lock($1, $2)", None, &KEY_CHECK_LOCK.map(DatumWithOid::from))?
        .first()
        .get::<bool>(1)?
        .unwrap_or(false);
    if !locked {
        return Ok(KeyCheck::Pending);
    }
    let (unregistered, vault) = match judge_key_checks(client, keys, schema)? {
        Err(problem) => return Ok(KeyCheck::Refused(problem)),
        Ok(judged) => judged,
    };
    // This vault's id: the one its values carry, or a new one.
    let vault_id = vault.unwrap_or(Some(fresh_id));
    for version in unregistered {
        let ring = keys.version(version).expect("a loaded version");
        insert_key_check_with(client, schema, version, ring.check_value(), vault_id)?;
    }
    Ok(KeyCheck::Pending)
}

/// The advisory lock (two int4 keys) under which key check values are
/// stored: "piiv", 1.
const KEY_CHECK_LOCK: [i32; 2] = [0x7069_6976, 1];

/// The loaded versions still to be stored, and the vault id the stored
/// values carry (None when there are none), or why the keys are refused.
#[allow(clippy::type_complexity)]
fn judge_key_checks(
    client: &pgrx::spi::SpiClient<'_>,
    keys: &crate::crypto::KeySet,
    schema: Schema,
) -> SpiResult<Result<(Vec<u32>, Option<Option<Uuid>>), crate::error::KeyProblem>> {
    use crate::error::KeyProblem;
    let stored = key_checks_with(client)?;
    // Values stored by two vaults: a dump's restored into a vault that had
    // stored its own (a call reached it first). Under the same keys or
    // not, two vaults' data now meet in one: refused.
    let vaults = vault_ids_with(client, schema)?;
    if vaults.len() > 1 {
        return Ok(Err(KeyProblem::TwoVaults));
    }
    let unregistered: Vec<u32> = if stored.is_empty() {
        let sample = client.select("SELECT token, envelope FROM pii_vault.records LIMIT 1", None, &[])?;
        if !sample.is_empty() {
            let row = sample.first();
            let (token, envelope) = (row.get::<Uuid>(1)?, row.get::<Vec<u8>>(2)?);
            let token = token.map(|t| *t.as_bytes()).unwrap_or_default();
            let envelope = envelope.unwrap_or_default();
            let version = crate::crypto::envelope::key_version(&envelope).unwrap_or(0);
            if let Err(e) = crate::crypto::envelope::data_key_opens(keys, &token, &envelope) {
                return Ok(Err(match e {
                    crate::error::VaultError::UnknownKeyVersion(v) => KeyProblem::NoKnownVersion(vec![v]),
                    _ => KeyProblem::WrongKey(version),
                }));
            }
        }
        keys.rings().iter().map(|r| r.key_version()).collect()
    } else {
        match keys.verdict(&stored) {
            Ok(verdict) => verdict.unregistered,
            Err(problem) => return Ok(Err(problem)),
        }
    };
    Ok(Ok((unregistered, vaults.into_iter().next())))
}

fn insert_key_check_with(
    client: &mut pgrx::spi::SpiClient<'_>,
    schema: Schema,
    key_version: u32,
    check_value: &[u8],
    vault_id: Option<Uuid>,
) -> SpiResult<()> {
    let mut args = vec![(key_version as i32).into(), check_value.into()];
    let sql = match schema {
        Schema::V0_1 => {
            "INSERT INTO pii_vault.key_check (key_version, check_value) SELECT $1, $2 \
             WHERE NOT EXISTS (SELECT FROM pii_vault.key_check WHERE key_version = $1)"
        }
        Schema::V0_2 | Schema::V0_3 | Schema::V0_4 | Schema::V0_6 => {
            args.push(DatumWithOid::from(vault_id));
            "INSERT INTO pii_vault.key_check (key_version, check_value, vault_id) SELECT $1, $2, $3 \
             WHERE NOT EXISTS (SELECT FROM pii_vault.key_check WHERE key_version = $1)"
        }
    };
    client.update(sql, None, &args)?;
    Ok(())
}

/// The distinct vault ids the key check values carry (NULL for values
/// stored before 0.2.0, and on a schema without the column).
fn vault_ids_with(client: &pgrx::spi::SpiClient<'_>, schema: Schema) -> SpiResult<Vec<Option<Uuid>>> {
    let sql = match schema {
        Schema::V0_1 => "SELECT DISTINCT NULL::uuid FROM pii_vault.key_check",
        Schema::V0_2 | Schema::V0_3 | Schema::V0_4 | Schema::V0_6 => {
            "SELECT DISTINCT vault_id FROM pii_vault.key_check"
        }
    };
    let rows = client.select(sql, None, &[])?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(row.get::<Uuid>(1)?);
    }
    Ok(out)
}

/// The key version of every record's data key (bytes 2..6 of the envelope
/// in both formats, `crypto::envelope`), with the number of records under
/// each, ascending.
pub fn versions_in_use() -> VaultResult<Vec<(u32, i64)>> {
    Spi::connect(|client| {
        let rows = client.select(
            &format!(
                "SELECT ('x' || pg_catalog.encode({}, 'hex'))::bit(32)::integer, pg_catalog.count(*) \
                 FROM pii_vault.records GROUP BY 1 ORDER BY 1",
                plans::envelope_key_version()
            ),
            None,
            &[],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if let (Some(version), Some(n)) = (row.get::<i32>(1)?, row.get::<i64>(2)?) {
                out.push((version as u32, n));
            }
        }
        SpiResult::Ok(out)
    })
    .map_err(fault)
}

/// Up to `limit` records after `after` (in token order) whose data keys are
/// under one of `versions`, with their blind-index hashes, row-locked until
/// the transaction ends; records
/// a concurrent call holds locked are skipped (a later pass takes them), so
/// rotation never waits on an application's transaction.
pub fn records_under(versions: &[u32], after: &Token, limit: i64) -> VaultResult<Vec<(Token, Vec<u8>, IndexHashes)>> {
    with_plans(|client, plans| {
        let table = client.update(&plans.records_under, None, &[uuid(after), version_bytes(versions), limit.into()])?;
        records_with_hashes(table)
    })
}

/// Up to `limit` records after `after` (in token order), of any key
/// version, that have an email or a login indexed, with their blind-index
/// hashes, row-locked until the transaction ends (waiting for a call that
/// holds one: every such record must be seen).
pub fn indexed_records_after(after: &Token, limit: i64) -> VaultResult<Vec<(Token, Vec<u8>, IndexHashes)>> {
    with_plans(|client, plans| {
        records_with_hashes(client.update(&plans.indexed_records_after, None, &[uuid(after), limit.into()])?)
    })
}

fn records_with_hashes(table: pgrx::spi::SpiTupleTable<'_>) -> SpiResult<Vec<(Token, Vec<u8>, IndexHashes)>> {
    let mut out = Vec::with_capacity(table.len());
    let hash = |v: Option<Vec<u8>>| v.and_then(|v| IndexHash::try_from(v.as_slice()).ok());
    for row in table {
        if let (Some(token), Some(envelope)) = (row.get::<Uuid>(1)?, row.get::<Vec<u8>>(2)?) {
            let hashes = IndexHashes {
                email: hash(row.get::<Vec<u8>>(3)?),
                phone: hash(row.get::<Vec<u8>>(4)?),
                login: hash(row.get::<Vec<u8>>(5)?),
            };
            out.push((*token.as_bytes(), envelope, hashes));
        }
    }
    Ok(out)
}

/// How many records' data keys are under one of `versions`.
pub fn count_under(versions: &[u32]) -> VaultResult<i64> {
    with_plans(|client, plans| {
        Ok(first_value(client.select(&plans.count_under, None, &[version_bytes(versions)])?)?.unwrap_or(0))
    })
}

/// Key versions as the envelope stores them (4 bytes, big-endian), for
/// `= ANY($n)` against bytes 2..6 of the envelope.
fn version_bytes(versions: &[u32]) -> DatumWithOid<'static> {
    DatumWithOid::from(versions.iter().map(|v| v.to_be_bytes().to_vec()).collect::<Vec<Vec<u8>>>())
}

/// How many records' data keys are not under `version`.
pub fn count_not_under(version: u32) -> VaultResult<i64> {
    with_plans(|client, plans| {
        Ok(first_value(client.select(
            &plans.count_not_under,
            None,
            &[(version as i32).to_be_bytes().as_slice().into()],
        )?)?
        .unwrap_or(0))
    })
}

/// Replaces a record's envelope and blind indexes for a key rotation (its
/// content and `updated_at` unchanged). A lookup value another record
/// holds is a `Duplicate`.
pub fn rekey_record(token: &Token, envelope: &[u8], hashes: &IndexHashes) -> VaultResult<()> {
    let [e, p, l] = hashes.args();
    let args = [uuid(token), envelope.into(), e, p, l];
    caught_duplicates(|| with_plans(|client, plans| client.update(&plans.rekey_record, None, &args).map(drop)))
}

/// Serializes forwards until the transaction ends: SHARE UPDATE EXCLUSIVE
/// on `pii_vault.forwarded` conflicts with itself and not with the
/// writer's inserts there (ROW EXCLUSIVE), so the writer can commit the
/// forwarded events meanwhile. No application role can take it (no
/// privilege on the table; the vault's LOCK guard): an advisory lock keyed
/// on the standby could be held by any role that saw the key in pg_locks.
pub fn lock_forwards() -> VaultResult<()> {
    Spi::connect_mut(|client| {
        client.update("LOCK TABLE pii_vault.forwarded IN SHARE UPDATE EXCLUSIVE MODE", None, &[]).map(drop)
    })
    .map_err(fault)
}

/// The last frame the primary took from the standby `origin` (0: none),
/// as committed now: read-write SPI takes a new snapshot, so the writer's
/// commits since the calling statement began are seen.
pub fn forwarded_last(origin: &Token) -> VaultResult<u64> {
    Spi::connect_mut(|client| {
        let rows =
            client.update("SELECT last_frame FROM pii_vault.forwarded WHERE origin = $1", Some(1), &[uuid(origin)])?;
        let last: Option<i64> = if rows.is_empty() { None } else { rows.first().get(1)? };
        SpiResult::Ok(last.unwrap_or(0).max(0) as u64)
    })
    .map_err(fault)
}

/// The last frame the primary took from each standby, as replicated here
/// (empty before 0.4.0's storage); read-only.
pub fn forwarded_frames() -> VaultResult<Vec<(Token, u64)>> {
    if !catalog::schema()?.has_forwarding() {
        return Ok(Vec::new());
    }
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select("SELECT origin, last_frame FROM pii_vault.forwarded", None, &[])? {
            if let (Some(origin), Some(last)) = (row.get::<Uuid>(1)?, row.get::<i64>(2)?) {
                out.push((*origin.as_bytes(), last.max(0) as u64));
            }
        }
        SpiResult::Ok(out)
    })
    .map_err(fault)
}

/// Whether an enabled subscription replicates the vault's audit into this
/// database (a logical replica of another vault).
pub fn logical_replica() -> VaultResult<bool> {
    select_one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_subscription_rel r \
         JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid \
         WHERE s.subenabled AND r.srrelid = 'pii_vault.audit_batches'::pg_catalog.regclass)",
        &[],
    )
    .map(|found| found.unwrap_or(false))
    .map_err(fault)
}
