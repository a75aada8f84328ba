//! Reading and verifying the audit; bulk export behind its switch.

use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use pgrx::Uuid;

use super::call::audited;
use super::guard;
use super::jsonb::JsonbDatum;
use super::records::open_record;
use crate::audit::{queue, Operation};
use crate::crypto::audit_chain::{Anchor, ChainVerifier, StoredBatch};
use crate::crypto::KeySet;
use crate::error::{VaultError, VaultResult};
use crate::store::fault;
use crate::{guc, store};
use pii_vault_core::schema::Schema;

/// Checks the MAC chain of the whole audit, from its anchor when it has one
/// (after pruning or a key rotation): an edited, deleted, inserted or
/// reordered batch of events, or an edited anchor, makes `ok` false and
/// names the first event of the first bad batch.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_audit_verify(
) -> TableIterator<'static, (name!(ok, bool), name!(rows_checked, i64), name!(first_bad_id, Option<i64>))> {
    let verdict = audited(Operation::AuditVerify, |_call| {
        let keys = guard::ready()?;
        // The writer's last committed batch (when it committed any since the
        // server started), read before the batches so the snapshot holds
        // it: catches batches deleted from the end of the chain.
        let state = queue::state();
        let table = crate::store::select_one::<pg_sys::Oid>("SELECT 'pii_vault.audit_batches'::regclass::oid", &[])
            .ok()
            .flatten();
        let same_table = table.is_some_and(|t| u32::from(t) == state.chain_table);
        let head = (state.chain_id > 0 && same_table).then_some((state.chain_id, state.chain_mac));
        let anchor = read_anchor()?;
        let anchor = anchor.as_ref().map(|(a, mac)| (a, mac.as_slice()));
        let mut verifier = ChainVerifier::new(keys, head, anchor);
        each_audit_batch(|batch| verifier.check(batch)).map_err(fault)?;
        let mut verdict = verifier.finish();
        if let Some(unwritten) = unwritten_events() {
            // Not ok over events that were queued and are not in the
            // chain: the chain may be whole, the audit is not.
            pgrx::warning!("pii_vault: {unwritten}");
            verdict.ok = false;
        }
        Ok(verdict)
    });
    TableIterator::once((verdict.ok, verdict.rows_checked, verdict.first_bad_id))
}

/// How long `vault_audit_verify` waits for the writer to commit the
/// events queued before it.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Says what audit events this server holds and has not written, if any:
/// files of kept events (a writer could not write them before it stopped), or
/// events still queued after `WRITER_WAIT`. None on a standby.
fn unwritten_events() -> Option<String> {
    // SAFETY: a plain read of shared state.
    if unsafe { pg_sys::RecoveryInProgress() } {
        // A standby verifies the chain it replays; the events of its own
        // calls are kept by its keeper (`vault_health`, `vault_stats`).
        return None;
    }
    if let Some(kept) = super::health::kept_events() {
        return Some(kept);
    }
    if crate::audit::wait_until_written(WRITER_WAIT) {
        return None;
    }
    Some(format!("{} queued audit events are not written yet (vault_health() says why)", queue::state().pending))
}

/// The audit's anchor and its stored MAC; None when there is none (or no
/// anchor table: a vault of 0.1.0, whose library is this one until
/// `ALTER EXTENSION pii_vault UPDATE`). Read under the calling statement's
/// snapshot, as the batches are (read-only SPI takes no new one).
pub(crate) fn read_anchor() -> VaultResult<Option<(Anchor, Vec<u8>)>> {
    match store::schema()? {
        Schema::V0_1 => return Ok(None),
        Schema::V0_2 | Schema::V0_3 | Schema::V0_4 | Schema::V0_6 => {}
    }
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT start_id, start_mac, sealed_upto, sealed_digest, key_version, mac FROM pii_vault.audit_anchor",
            None,
            &[],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        let row = rows.first();
        let bytes32 = |v: Option<Vec<u8>>| -> [u8; 32] { v.and_then(|v| v.try_into().ok()).unwrap_or([0xff; 32]) };
        let anchor = Anchor {
            start_id: row.get(1)?.unwrap_or(-1),
            start_mac: bytes32(row.get(2)?),
            sealed_upto: row.get(3)?.unwrap_or(-1),
            sealed_digest: bytes32(row.get(4)?),
            key_version: row.get::<i32>(5)?.unwrap_or(0) as u32,
        };
        Ok(Some((anchor, row.get(6)?.unwrap_or_default())))
    })
    .map_err(fault)
}

/// Streams the batches in chain order through a cursor, a thousand at a
/// time, freeing each chunk before the next (memory stays flat however
/// long the audit is), until `each` returns false.
pub(crate) fn each_audit_batch(mut each: impl FnMut(StoredBatch<'_>) -> bool) -> SpiResult<()> {
    Spi::connect(|client| {
        let mut cursor = client.try_open_cursor(
            "SELECT first_id, last_id, token_filter, events, mac FROM pii_vault.audit_batches ORDER BY first_id",
            &[],
        )?;
        loop {
            let chunk = cursor.fetch(1000)?;
            if chunk.is_empty() {
                break;
            }
            let mut going = true;
            for row in chunk {
                let token_filter: Vec<u8> = row.get(3)?.unwrap_or_default();
                let events: Vec<u8> = row.get(4)?.unwrap_or_default();
                let mac: Vec<u8> = row.get(5)?.unwrap_or_default();
                going = each(StoredBatch {
                    first_id: row.get(1)?.unwrap_or(0),
                    last_id: row.get(2)?.unwrap_or(0),
                    token_filter: &token_filter,
                    events: &events,
                    mac: &mac,
                });
                if !going {
                    break;
                }
            }
            // SAFETY: the chunk's rows were copied out above and the chunk
            // dropped; this frees its tuples instead of keeping every chunk
            // until the SPI connection ends.
            unsafe { pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable) };
            if !going {
                break;
            }
        }
        Ok(())
    })
}

#[pg_schema]
mod pii_vault {
    use pgrx::prelude::*;
    use pgrx::Uuid;

    use pgrx::datum::TimestampWithTimeZone;

    use crate::api::call::audited;
    use crate::api::errors::OrRaise;
    use crate::api::guard;
    use crate::audit::Operation;
    use crate::crypto::audit_chain::decode_batch;
    use crate::error::VaultError;

    /// Waits until every audit event queued so far is committed by the
    /// writer; false after `timeout_ms`. For tests and maintenance scripts.
    #[pg_extern(volatile)]
    #[search_path(pg_catalog, pii_vault, pg_temp)]
    fn audit_wait(timeout_ms: default!(i32, 10000)) -> bool {
        crate::audit::wait_until_written(std::time::Duration::from_millis(timeout_ms.max(0) as u64))
    }

    /// The events of one stored audit batch, one row each (behind the view
    /// pii_vault.audit_log and vault_audit). Decoding only: the MACs are
    /// checked by vault_audit_verify(). A batch that does not decode was
    /// altered, and reading it is an error (XX001). Columns are only ever
    /// added at the end: a backend runs an earlier release's declaration
    /// of this function until ALTER EXTENSION UPDATE, and PostgreSQL forms
    /// its rows from the declared columns only. No pinned search_path: it
    /// is not SECURITY DEFINER and resolves no names, and a `SET` clause
    /// would cost PostgreSQL's GUC save and restore on every batch row.
    // pgrx reads the column names from the name!() types of the signature
    // itself, so they cannot move into a type alias.
    #[allow(clippy::type_complexity)]
    #[pg_extern(immutable, strict, parallel_safe)]
    fn audit_events(
        first_id: i64,
        events: &[u8],
    ) -> TableIterator<
        'static,
        (
            name!(id, i64),
            name!(at, Option<TimestampWithTimeZone>),
            name!(session_role, String),
            name!(acting_role, String),
            name!(application_name, String),
            name!(operation, String),
            name!(token, Option<Uuid>),
            name!(fields, Option<Vec<String>>),
            name!(outcome, String),
            name!(purpose, Option<String>),
            name!(calling_role, String),
            name!(calls, i64),
            name!(server, Option<String>),
        ),
    > {
        let records = decode_batch(first_id, events).map_err(|_| VaultError::AuditBatchUnreadable(first_id)).or_raise();
        TableIterator::new(records.into_iter().map(|r| {
            (
                r.id,
                TimestampWithTimeZone::try_from(r.at).ok(),
                r.session_role.into_owned(),
                r.acting_role.into_owned(),
                r.application_name.into_owned(),
                r.operation.into_owned(),
                r.token.map(Uuid::from_bytes),
                r.fields.map(|names| names.into_iter().map(std::borrow::Cow::into_owned).collect()),
                r.outcome.into_owned(),
                Some(r.purpose.into_owned()).filter(|p| !p.is_empty()),
                r.calling_role.into_owned(),
                i64::from(r.calls),
                Some(r.server.into_owned()).filter(|s| !s.is_empty()),
            )
        }))
    }

    /// False when the audit batch whose token filter this is names no event
    /// of `token` (vault_audit's scan reads only the other batches). Called
    /// once per batch row; no pinned search_path, as for `audit_events`
    /// (the `SET` clause would cost a third of the scan's time).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn audit_batch_may_name(token_filter: &[u8], token: Uuid) -> bool {
        crate::crypto::token_filter::may_contain(token_filter, token.as_bytes())
    }

    /// Audits a read of the audit (called by the SQL function vault_audit).
    #[pg_extern(volatile)]
    #[search_path(pg_catalog, pii_vault, pg_temp)]
    fn audit_read_note(token: Option<Uuid>) {
        audited(Operation::AuditRead, |call| {
            call.token = token.map(|t| *t.as_bytes());
            guard::ready().map(drop)
        })
    }
}

/// Every record, for a member of pii_vault_admin, when a superuser has set
/// `pii_vault.allow_bulk_export = on`. Otherwise 42501, audited as denied.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_export_all() -> TableIterator<'static, (name!(token, Uuid), name!(record, JsonbDatum))> {
    let rows = audited(Operation::Export, |_call| {
        let keys = guard::ready()?;
        if !guc::allow_bulk_export() {
            return Err(VaultError::BulkExportDisabled);
        }
        if !caller_is_admin() {
            return Err(VaultError::NotAdmin);
        }
        store::all_envelopes()?
            .into_iter()
            .map(|(token, sealed)| Ok((Uuid::from_bytes(token), open_record(keys, &token, &sealed)?)))
            .collect::<VaultResult<Vec<_>>>()
    });
    TableIterator::new(rows)
}

pub(crate) fn caller_is_admin() -> bool {
    // SAFETY: catalog lookups inside a transaction.
    unsafe {
        let admin = pg_sys::get_role_oid(c"pii_vault_admin".as_ptr(), true);
        admin != pg_sys::InvalidOid && pg_sys::is_member_of_role(pg_sys::GetOuterUserId(), admin)
    }
}

/// What a pass over the audit found: whether it verifies, where the chain
/// would start once the batches entirely before a time are removed, and
/// the digest sealing every batch after that start, up to the last one
/// MACed under a version other than the active one.
struct AnchorPlan {
    verdict: crate::crypto::audit_chain::Verdict,
    anchor: Anchor,
    existing: Option<Anchor>,
    removed_events: i64,
}

/// One pass over the audit under `keys`, with pruning up to `before`
/// (PostgreSQL microseconds) when given. Never plans to remove the newest
/// batch: the writer chains its next batch to it.
fn plan_anchor(keys: &KeySet, before: Option<i64>) -> VaultResult<AnchorPlan> {
    use crate::crypto::audit_chain::{batch_key_version, decode_batch, SealDigest, GENESIS};
    let existing = read_anchor()?;
    let newest: i64 = crate::store::select_one("SELECT pg_catalog.max(last_id) FROM pii_vault.audit_batches", &[])
        .map_err(fault)?
        .unwrap_or(0);
    let mut verifier = ChainVerifier::new(keys, None, existing.as_ref().map(|(a, mac)| (a, mac.as_slice())));
    let (mut start_id, mut start_mac) = existing.as_ref().map_or((0, GENESIS), |(a, _)| (a.start_id, a.start_mac));
    let mut pruning = before.is_some();
    let mut removed_events = 0;
    let mut digest = SealDigest::default();
    let mut sealed: Option<(i64, [u8; 32])> = None;
    let active = keys.active().key_version();
    each_audit_batch(|batch| {
        if !verifier.check(batch) {
            return false;
        }
        if pruning {
            let events = decode_batch(batch.first_id, batch.events).unwrap_or_default();
            let latest = events.iter().map(|e| e.at).max().unwrap_or(i64::MAX);
            if batch.last_id < newest && before.is_some_and(|b| latest < b) {
                start_id = batch.last_id;
                start_mac = batch.mac.try_into().unwrap_or(GENESIS);
                removed_events += events.len() as i64;
                return true;
            }
            pruning = false;
        }
        digest.add(&batch);
        if batch_key_version(batch.events) != Ok(active) {
            sealed = Some((batch.last_id, digest.clone().finish()));
        }
        true
    })
    .map_err(fault)?;
    let (sealed_upto, sealed_digest) = sealed.unwrap_or((0, [0; 32]));
    Ok(AnchorPlan {
        verdict: verifier.finish(),
        anchor: Anchor { start_id, start_mac, sealed_upto, sealed_digest, key_version: active },
        existing: existing.map(|(a, _)| a),
        removed_events,
    })
}

thread_local! {
    static EDITING_AUDIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this backend is pruning or re-anchoring the audit (the
/// append-only trigger lets only that, and the audit writer, through).
pub(crate) fn editing_audit() -> bool {
    EDITING_AUDIT.get()
}

/// Runs `f` with the audit open to pruning and re-anchoring; closed again
/// however `f` ends (an ERROR unwinds through here as a Rust panic).
fn while_editing_audit<R>(f: impl FnOnce() -> R) -> R {
    struct Close;
    impl Drop for Close {
        fn drop(&mut self) {
            EDITING_AUDIT.set(false);
        }
    }
    EDITING_AUDIT.set(true);
    let _close = Close;
    f()
}

/// Serializes the two writers of the anchor (pruning and rotation) for the
/// rest of the transaction; the audit writer only appends batches and is
/// not held up. Taken before anything is read, so what is read afterwards
/// (in READ COMMITTED, each statement's own snapshot) includes whatever
/// the previous holder committed.
fn lock_anchor() -> SpiResult<()> {
    Spi::run("LOCK TABLE pii_vault.audit_anchor IN SHARE ROW EXCLUSIVE MODE")
}

fn write_anchor(keys: &KeySet, plan: &AnchorPlan) -> SpiResult<()> {
    if plan.existing.as_ref() == Some(&plan.anchor)
        || (plan.existing.is_none() && plan.anchor.start_id == 0 && plan.anchor.sealed_upto == 0)
    {
        return Ok(());
    }
    let a = &plan.anchor;
    let mac = a.mac(keys.active());
    Spi::connect_mut(|client| {
        client.update("DELETE FROM pii_vault.audit_anchor", None, &[])?;
        client.update(
            "INSERT INTO pii_vault.audit_anchor (start_id, start_mac, sealed_upto, sealed_digest, key_version, mac) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            None,
            &[
                a.start_id.into(),
                a.start_mac.as_slice().into(),
                a.sealed_upto.into(),
                a.sealed_digest.as_slice().into(),
                (a.key_version as i32).into(),
                mac.as_slice().into(),
            ],
        )?;
        Ok(())
    })
}

/// After a rotation: seals the batches MACed under older versions with a
/// digest MACed under the active one, so `vault_audit_verify()` still
/// checks them once those versions leave the key source. An audit that
/// does not verify is left as it is (with a WARNING): sealing it would
/// vouch for the tampering.
pub(crate) fn anchor_older_batches(keys: &KeySet) -> VaultResult<()> {
    lock_anchor().map_err(fault)?;
    let plan = plan_anchor(keys, None)?;
    if !plan.verdict.ok {
        warning!(
            "pii_vault: the audit does not verify from event {}; its batches under older key versions were not sealed",
            plan.verdict.first_bad_id.unwrap_or(0)
        );
        return Ok(());
    }
    while_editing_audit(|| write_anchor(keys, &plan)).map_err(fault)
}

/// Removes the audit batches whose events are all older than `before` and
/// than `pii_vault.audit_retention_days` (from the oldest on, never the
/// newest batch), after checking the whole
/// chain, and leaves an anchor MACed under the active key version from
/// which `vault_audit_verify()` goes on: a batch removed later from the
/// middle, or an edited anchor, is still caught. Returns the number of
/// events removed. Refused (XX001) when the audit does not verify: pruning
/// would erase the evidence.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_audit_prune(before: pgrx::datum::TimestampWithTimeZone) -> i64 {
    audited(Operation::AuditPrune, |_call| {
        let keys = guard::ready()?;
        let floor = crate::store::select_one::<pgrx::datum::TimestampWithTimeZone>(
            "SELECT pg_catalog.now() - pg_catalog.make_interval(days => $1)",
            &[guc::audit_retention_days().into()],
        )
        .ok()
        .flatten()
        .map_or(i64::MIN, |t| t.into_inner());
        lock_anchor().map_err(fault)?;
        let plan = plan_anchor(keys, Some(before.into_inner().min(floor)))?;
        if !plan.verdict.ok {
            return Err(VaultError::AuditDoesNotVerify(plan.verdict.first_bad_id.unwrap_or(0)));
        }
        while_editing_audit(|| {
            Spi::run_with_args(
                "DELETE FROM pii_vault.audit_batches WHERE last_id <= $1",
                &[plan.anchor.start_id.into()],
            )
            .and_then(|()| write_anchor(keys, &plan))
        })
        .map_err(fault)?;
        Ok(plan.removed_events)
    })
}
