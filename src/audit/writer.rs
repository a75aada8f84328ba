//! The audit writer: a background worker, the single writer of
//! `pii_vault.audit_log`. It drains the shared-memory queue in batches, one
//! transaction per batch, and extends the MAC chain row by row. Because it
//! writes in its own transactions, an audited read stays audited when the
//! caller's transaction rolls back or its statement fails half-way.

use std::ffi::CStr;
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use pgrx::Uuid;

use super::event::AuditEvent;
use super::queue;
use crate::crypto::audit_chain::{chain_mac, AuditRecord, GENESIS};
use crate::{guc, keys};

const BATCH: usize = 256;

/// Registers the writer with the postmaster (from `_PG_init`, at preload).
pub fn register() {
    BackgroundWorkerBuilder::new("pii_vault audit writer")
        .set_type("pii_vault audit writer")
        .set_library("pii_vault")
        .set_function("pii_vault_audit_writer_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

/// The chain as this writer continues it: the last row's id and MAC, and
/// the table they belong to (a re-created extension starts a new chain).
struct ChainHead {
    table: pg_sys::Oid,
    id: i64,
    mac: [u8; 32],
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pii_vault_audit_writer_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = guc::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    let Ok(ring) = keys::key_ring() else {
        // Without a key the vault refuses every call, so nothing is queued.
        log!("pii_vault audit writer: no usable key; not writing the audit");
        while BackgroundWorker::wait_latch(Some(Duration::from_secs(60))) {}
        return;
    };

    let mut head: Option<ChainHead> = None;
    // SAFETY: MyProc and its latch live in shared memory for this process.
    let latch = unsafe { &raw mut (*pg_sys::MyProc).procLatch };
    queue::register_writer(latch, unsafe { pg_sys::MyProcPid });
    loop {
        // Drain before waiting, and once more after SIGTERM.
        while let Some(n) = write_one_batch(ring, &mut head) {
            if let Some(h) = &head {
                queue::commit(n, h.table.into(), h.id, h.mac);
            }
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(250))) {
            while let Some(n) = write_one_batch(ring, &mut head) {
                if let Some(h) = &head {
                    queue::commit(n, h.table.into(), h.id, h.mac);
                }
            }
            break;
        }
    }
    queue::unregister_writer();
}

/// Writes the oldest queued events; the number written, or None when there
/// is nothing to write or no audit table yet (events then stay queued).
fn write_one_batch(ring: &crate::crypto::KeyRing, head: &mut Option<ChainHead>) -> Option<usize> {
    let batch = queue::peek(BATCH);
    if batch.is_empty() {
        return None;
    }
    let written = BackgroundWorker::transaction(std::panic::AssertUnwindSafe(|| {
        Spi::connect_mut(|client| -> SpiResult<Option<usize>> {
            let table: Option<pg_sys::Oid> =
                client.select("SELECT to_regclass('pii_vault.audit_log')::oid", None, &[])?.first().get(1)?;
            let Some(table) = table else { return Ok(None) };
            if head.as_ref().is_none_or(|h| h.table != table) {
                let last = client.select(
                    "SELECT id, mac FROM pii_vault.audit_log ORDER BY id DESC LIMIT 1",
                    None,
                    &[],
                )?;
                let (id, mac) = if last.is_empty() {
                    (0, GENESIS)
                } else {
                    let row = last.first();
                    let mac: Vec<u8> = row.get(2)?.unwrap_or_default();
                    (row.get(1)?.unwrap_or(0), mac.try_into().unwrap_or(GENESIS))
                };
                *head = Some(ChainHead { table, id, mac });
            }
            let h = head.as_mut().expect("set above");
            let insert = client.prepare_mut(
                "INSERT INTO pii_vault.audit_log \
                 (id, at, session_role, acting_role, application_name, operation, token, fields, outcome, mac) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    PgBuiltInOids::INT8OID.oid(),
                    PgBuiltInOids::TIMESTAMPTZOID.oid(),
                    PgBuiltInOids::TEXTOID.oid(),
                    PgBuiltInOids::TEXTOID.oid(),
                    PgBuiltInOids::TEXTOID.oid(),
                    PgBuiltInOids::TEXTOID.oid(),
                    PgBuiltInOids::UUIDOID.oid(),
                    PgBuiltInOids::TEXTARRAYOID.oid(),
                    PgBuiltInOids::TEXTOID.oid(),
                    PgBuiltInOids::BYTEAOID.oid(),
                ],
            )?;
            for event in &batch {
                let record = to_record(h.id + 1, event);
                let mac = chain_mac(ring, &h.mac, &record);
                // Always valid: the backend took it from GetCurrentTimestamp().
                let at = TimestampWithTimeZone::try_from(record.at).ok();
                client.update(
                    &insert,
                    None,
                    &[
                        record.id.into(),
                        at.into(),
                        record.session_role.into(),
                        record.acting_role.into(),
                        record.application_name.into(),
                        record.operation.into(),
                        record.token.map(Uuid::from_bytes).into(),
                        record.fields.into(),
                        record.outcome.into(),
                        mac.as_slice().into(),
                    ],
                )?;
                h.id += 1;
                h.mac = mac;
            }
            Ok(Some(batch.len()))
        })
    }));
    match written {
        Ok(n) => n,
        Err(e) => {
            // A broken audit table: the events stay queued; the writer
            // exits and the postmaster restarts it, so readers fail closed
            // once the queue is full.
            error!("pii_vault audit writer: could not write the audit: {e}");
        }
    }
}

fn role_name(oid: u32) -> String {
    // SAFETY: inside a transaction; noerr = true returns NULL for a dropped role.
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::Oid::from(oid), true);
        if name.is_null() {
            format!("(dropped role {oid})")
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}

fn to_record(id: i64, event: &AuditEvent) -> AuditRecord {
    AuditRecord {
        id,
        at: event.at,
        session_role: role_name(event.session_role),
        acting_role: role_name(event.acting_role),
        application_name: event.application_name(),
        operation: event.operation().map_or("?", |o| o.as_str()).to_string(),
        token: event.token(),
        fields: event.fields(),
        outcome: event.outcome().map_or("?", |o| o.as_str()).to_string(),
    }
}
