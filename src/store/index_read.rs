//! Single-row reads of `pii_vault.records` straight through its unique
//! indexes, without SPI.
//!
//! `vault_get` and `vault_lookup` run once per row of the caller's query, so
//! their fixed cost matters: through SPI each read paid for a connection,
//! plan revalidation (which recomputes the search path that SECURITY DEFINER
//! has just changed) and executor start-up and shut-down around a one-row
//! index scan. Here the same scan is an index probe and a heap fetch under
//! the same snapshot SPI would take (see `with_statement_snapshot`). Writes
//! still go through SPI's prepared statements, where constraints, triggers
//! and the WAL cost dominate anyway.
//!
//! Relations are found by name in schema `pii_vault` and their OIDs cached
//! per backend until a relcache invalidation names one of them (DROP and
//! CREATE EXTENSION, REINDEX, ALTER TABLE), so no stale OID is ever used.

use std::cell::Cell;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

/// The unique indexes of `pii_vault.records` (names from sql/storage.sql).
#[derive(Clone, Copy)]
pub(super) enum RecordsIndex {
    Token,
    Email,
    Phone,
    Login,
}

impl RecordsIndex {
    const ALL: [RecordsIndex; 4] = [RecordsIndex::Token, RecordsIndex::Email, RecordsIndex::Phone, RecordsIndex::Login];

    fn name(self) -> &'static std::ffi::CStr {
        match self {
            RecordsIndex::Token => c"records_pkey",
            RecordsIndex::Email => c"records_email_index_key",
            RecordsIndex::Phone => c"records_phone_index_key",
            RecordsIndex::Login => c"records_login_index_key",
        }
    }

    /// The equality function of the indexed column's type.
    fn equality_proc(self) -> Oid {
        Oid::from(match self {
            RecordsIndex::Token => pg_sys::F_UUID_EQ,
            _ => pg_sys::F_BYTEAEQ,
        })
    }
}

/// Columns of `pii_vault.records` read here (attribute numbers).
pub(super) const TOKEN_COLUMN: i32 = 1;
pub(super) const ENVELOPE_COLUMN: i32 = 2;

#[derive(Clone, Copy)]
struct RecordsOids {
    table: Oid,
    indexes: [Oid; 4],
}

impl RecordsOids {
    fn names(&self, relid: Oid) -> bool {
        self.table == relid || self.indexes.contains(&relid)
    }
}

thread_local! {
    static OIDS: Cell<Option<RecordsOids>> = const { Cell::new(None) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Forgets the cached OIDs when one of the relations (or every relation:
/// InvalidOid) is invalidated.
#[pg_guard]
unsafe extern "C-unwind" fn forget_oids(_arg: Datum, relid: Oid) {
    if let Some(oids) = OIDS.get() {
        if relid == pg_sys::InvalidOid || oids.names(relid) {
            OIDS.set(None);
        }
    }
}

fn records_oids() -> RecordsOids {
    if let Some(oids) = OIDS.get() {
        return oids;
    }
    if !CALLBACK_REGISTERED.get() {
        // SAFETY: registering a process-local callback; it only touches the
        // thread-local cache above.
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget_oids), Datum::from(0)) };
        CALLBACK_REGISTERED.set(true);
    }
    // SAFETY: catalog lookups inside a transaction.
    let oids = unsafe {
        let schema = pg_sys::get_namespace_oid(c"pii_vault".as_ptr(), false);
        let relid = |name: &std::ffi::CStr| {
            let oid = pg_sys::get_relname_relid(name.as_ptr(), schema);
            if oid == pg_sys::InvalidOid {
                error!("pii_vault: internal storage error: relation pii_vault.{} is missing", name.to_string_lossy());
            }
            oid
        };
        RecordsOids { table: relid(c"records"), indexes: RecordsIndex::ALL.map(|index| relid(index.name())) }
    };
    OIDS.set(Some(oids));
    oids
}

/// Runs `f` under the snapshot SPI would give a volatile function's query:
/// the command counter advanced (so the vault's own writes earlier in this
/// transaction, even in this statement, are visible), a fresh snapshot in
/// READ COMMITTED, the transaction's in REPEATABLE READ and SERIALIZABLE.
fn with_statement_snapshot<R>(f: impl FnOnce(pg_sys::Snapshot) -> R) -> R {
    // SAFETY: called inside a transaction from a function; the pushed
    // snapshot is popped below, and by transaction abort if `f` errors.
    unsafe {
        pg_sys::CommandCounterIncrement();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        pg_sys::UpdateActiveSnapshotCommandId();
        let result = f(pg_sys::GetActiveSnapshot());
        pg_sys::PopActiveSnapshot();
        result
    }
}

/// Finds the row whose `index` column equals `key` and returns `read(slot)`,
/// or None when no visible row matches. `key` must be a datum of the
/// column's type (uuid or bytea).
pub(super) fn read_unique<R>(
    index: RecordsIndex,
    key: Datum,
    read: impl FnOnce(*mut pg_sys::TupleTableSlot) -> R,
) -> Option<R> {
    let oids = records_oids();
    let index_oid = oids.indexes[index as usize];
    with_statement_snapshot(|snapshot| {
        // SAFETY: relations opened and closed here, locks held to the end of
        // the transaction as the executor does; the scan and slot are freed
        // before returning (or by the transaction's abort on error).
        unsafe {
            let heap = pg_sys::table_open(oids.table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            let index_rel = pg_sys::index_open(index_oid, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
            let scan = pg_sys::index_beginscan(heap, index_rel, snapshot, 1, 0);
            let mut scan_key: pg_sys::ScanKeyData = std::mem::zeroed();
            pg_sys::ScanKeyInit(
                &mut scan_key,
                1,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                index.equality_proc(),
                key,
            );
            pg_sys::index_rescan(scan, &mut scan_key, 1, std::ptr::null_mut(), 0);
            let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
            let found = pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
            let result = found.then(|| read(slot));
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            pg_sys::index_endscan(scan);
            pg_sys::index_close(index_rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            pg_sys::table_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
            result
        }
    })
}

/// Calls `f` with the bytes of bytea column `attnum` of the row in `slot`,
/// borrowed from the buffer when stored inline (no copy: the envelope is
/// decrypted straight from the page), detoasted when stored out of line.
/// None if NULL.
///
/// # Safety
/// `slot` holds a row of `pii_vault.records` and `attnum` is a bytea column.
pub(super) unsafe fn with_bytea_column<R>(
    slot: *mut pg_sys::TupleTableSlot,
    attnum: i32,
    f: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    let mut is_null = false;
    // SAFETY: the slot keeps its buffer pinned while `f` runs; a detoasted
    // copy is palloc'd in the current memory context.
    unsafe {
        let datum = pg_sys::slot_getattr(slot, attnum, &mut is_null);
        if is_null {
            return None;
        }
        let value = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
        Some(f(pgrx::varlena::varlena_to_byte_slice(value)))
    }
}

/// The token (uuid column 1) of the row in `slot`.
///
/// # Safety
/// `slot` holds a row of `pii_vault.records`.
pub(super) unsafe fn token_column(slot: *mut pg_sys::TupleTableSlot) -> Option<[u8; 16]> {
    let mut is_null = false;
    let datum = unsafe { pg_sys::slot_getattr(slot, TOKEN_COLUMN, &mut is_null) };
    // SAFETY: a uuid datum (a pointer to 16 bytes) of this row.
    unsafe { pgrx::Uuid::from_polymorphic_datum(datum, is_null, pg_sys::UUIDOID) }.map(|u| *u.as_bytes())
}
