//! Single-row reads of `pii_vault.records` straight through its unique
//! indexes, without SPI.
//!
//! `vault_get` and `vault_lookup` run once per row of the caller's query, so
//! their fixed cost matters: through SPI each read paid for a connection,
//! plan revalidation (which recomputes the search path that SECURITY DEFINER
//! has just changed) and executor start-up and shut-down around a one-row
//! index scan. Here the same scan is an index probe and a heap fetch under
//! the same snapshot SPI would take (see `Probe::open`). Writes
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

/// PostgreSQL's functions for one index probe, declared here without
/// pgrx's per-call guard. pgrx wraps every `pg_sys` function in a
/// sigsetjmp and a thread check (~7 ns a call); a probe makes 17 calls, so
/// `read_unique` runs them in two guarded blocks instead. Signatures as in
/// PostgreSQL 15's headers (the same as pgrx's bindings).
mod unguarded {
    use pgrx::pg_sys::{Datum, IndexScanDesc, List, Oid, RegProcedure, Relation, ScanKey, Snapshot, TupleTableSlot};
    use pgrx::pg_sys::{AttrNumber, ScanDirection, StrategyNumber, LOCKMODE};
    use std::ffi::c_int;

    unsafe extern "C-unwind" {
        pub fn CommandCounterIncrement();
        pub fn GetTransactionSnapshot() -> Snapshot;
        pub fn PushActiveSnapshot(snapshot: Snapshot);
        pub fn UpdateActiveSnapshotCommandId();
        pub fn GetActiveSnapshot() -> Snapshot;
        pub fn PopActiveSnapshot();
        pub fn table_open(relation: Oid, lockmode: LOCKMODE) -> Relation;
        pub fn table_close(relation: Relation, lockmode: LOCKMODE);
        pub fn index_open(relation: Oid, lockmode: LOCKMODE) -> Relation;
        pub fn index_close(relation: Relation, lockmode: LOCKMODE);
        pub fn index_beginscan(
            heap: Relation,
            index: Relation,
            snapshot: Snapshot,
            nkeys: c_int,
            norderbys: c_int,
        ) -> IndexScanDesc;
        pub fn ScanKeyInit(
            entry: ScanKey,
            attribute: AttrNumber,
            strategy: StrategyNumber,
            procedure: RegProcedure,
            argument: Datum,
        );
        pub fn index_rescan(scan: IndexScanDesc, keys: ScanKey, nkeys: c_int, orderbys: ScanKey, norderbys: c_int);
        pub fn index_getnext_slot(scan: IndexScanDesc, direction: ScanDirection::Type, slot: *mut TupleTableSlot)
            -> bool;
        pub fn index_endscan(scan: IndexScanDesc);
        pub fn table_slot_create(relation: Relation, reglist: *mut *mut List) -> *mut TupleTableSlot;
        pub fn ExecDropSingleTupleTableSlot(slot: *mut TupleTableSlot);
    }
}

/// An open probe: its relations, scan and slot (freed by `close`, or by the
/// transaction's abort when the caller errors in between).
struct Probe {
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    scan: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    found: bool,
}

impl Probe {
    /// Pushes the snapshot SPI would give a volatile function's query (the
    /// command counter advanced, so the vault's own writes earlier in this
    /// transaction, even in this statement, are visible; a fresh snapshot in
    /// READ COMMITTED, the transaction's in REPEATABLE READ and
    /// SERIALIZABLE), opens the relations as the executor does (locks held
    /// to the end of the transaction) and fetches the first matching row.
    ///
    /// # Safety
    /// Inside a transaction, with a guard (pg_guard_ffi_boundary) around it:
    /// the body holds only plain values, so an ERROR unwinds nothing.
    unsafe fn open(table: Oid, index: Oid, equality: Oid, key: Datum) -> Probe {
        use unguarded::*;
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        unsafe {
            CommandCounterIncrement();
            PushActiveSnapshot(GetTransactionSnapshot());
            UpdateActiveSnapshotCommandId();
            let heap = table_open(table, lock);
            let index = index_open(index, lock);
            let scan = index_beginscan(heap, index, GetActiveSnapshot(), 1, 0);
            let mut scan_key: pg_sys::ScanKeyData = std::mem::zeroed();
            ScanKeyInit(&mut scan_key, 1, pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber, equality, key);
            index_rescan(scan, &mut scan_key, 1, std::ptr::null_mut(), 0);
            let slot = table_slot_create(heap, std::ptr::null_mut());
            let found = index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
            Probe { heap, index, scan, slot, found }
        }
    }

    /// Frees what `open` made and pops its snapshot.
    ///
    /// # Safety
    /// As for `open`; `self` came from `open` in this transaction.
    unsafe fn close(&self) {
        use unguarded::*;
        unsafe {
            ExecDropSingleTupleTableSlot(self.slot);
            index_endscan(self.scan);
            index_close(self.index, pg_sys::NoLock as pg_sys::LOCKMODE);
            table_close(self.heap, pg_sys::NoLock as pg_sys::LOCKMODE);
            PopActiveSnapshot();
        }
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
    let (table, index_oid, equality) = (oids.table, oids.indexes[index as usize], index.equality_proc());
    // SAFETY: see Probe::open and Probe::close; `read` runs between them
    // with pgrx's guarded functions, as any Rust code.
    unsafe {
        let probe = pg_sys::ffi::pg_guard_ffi_boundary(|| Probe::open(table, index_oid, equality, key));
        let result = probe.found.then(|| read(probe.slot));
        pg_sys::ffi::pg_guard_ffi_boundary(|| probe.close());
        result
    }
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
