//! Single-row reads of `pii_vault.records`, `pii_vault.shares` and
//! `pii_vault.sessions` straight through their unique indexes, without SPI.
//!
//! `vault_get`, `vault_lookup`, `vault_get_shared` and `vault_session_get`
//! run once per row of the caller's query, so their fixed cost matters:
//! through SPI each read paid for a connection, plan revalidation (which
//! recomputes the search path that SECURITY DEFINER has just changed) and
//! executor start-up and shut-down around a one-row index scan. Here the
//! same scan is an index probe and a heap fetch under the same snapshot
//! SPI would take (`ActiveSnapshot`). A lookup, which wants only the
//! token, reads it from the index entry itself (the blind indexes INCLUDE
//! the token) and skips the heap wherever the visibility map vouches for
//! the page, as PostgreSQL's index-only scan does. Writes still go through
//! SPI's prepared statements, where constraints, triggers and the WAL cost
//! dominate anyway.
//!
//! Every resource is owned by a value: `ActiveSnapshot` pops the snapshot
//! it pushed, `Probe` ends its scan, drops its slot, releases its buffer
//! and closes its relations, each in `Drop`. A value dropped while an
//! ERROR unwinds releases nothing: the transaction's (or subtransaction's)
//! abort pops the snapshot and its resource owner releases the rest, and
//! doing it twice would be the bug. Each step's PostgreSQL calls run in one
//! guarded block (`pg_guard_ffi_boundary`) that holds only plain values;
//! keys are made, and rows read, between the blocks, as any Rust code.
//! Whether a relation, index or entry is what the vault made is decided by
//! the pure checks of `pii_vault_core::schema`, on every probe.

use std::marker::PhantomData;

use pgrx::pg_sys::ffi::pg_guard_ffi_boundary;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

use super::catalog::{
    vault_oids, FieldTokenColumns, RecordColumns, RecordsIndex, SessionColumns, ShareColumns, VaultOids,
};
use crate::error::{StorageFault, VaultResult};
use pii_vault_core::schema::{self, Column, EntryTypes, HeapShape, IndexShape, Predicate, RelKind};

/// PostgreSQL's functions for one index probe, declared here without
/// pgrx's per-call guard. pgrx wraps every `pg_sys` function in a
/// sigsetjmp and a thread check (~7 ns a call); a probe makes 17 calls, so
/// each step of a probe (push a snapshot, open, read, close) runs its calls
/// in one guarded block instead. Signatures as in
/// PostgreSQL 15's headers (the same as pgrx's bindings).
mod unguarded {
    use pgrx::pg_sys::{AttrNumber, BlockNumber, Buffer, IndexTuple, ItemPointer, ScanDirection, StrategyNumber};
    use pgrx::pg_sys::{Datum, IndexScanDesc, List, Oid, RegProcedure, Relation, ScanKey, Snapshot, TupleTableSlot};
    use pgrx::pg_sys::{HeapTuple, TupleDesc, LOCKMODE};
    use std::ffi::c_int;

    crate::unguarded! {
        fn CommandCounterIncrement();
        fn GetTransactionSnapshot() -> Snapshot;
        fn PushActiveSnapshot(Snapshot);
        fn UpdateActiveSnapshotCommandId();
        fn GetActiveSnapshot() -> Snapshot;
        fn PopActiveSnapshot();
        fn table_open(Oid, LOCKMODE) -> Relation;
        fn table_close(Relation, LOCKMODE);
        fn index_open(Oid, LOCKMODE) -> Relation;
        fn index_close(Relation, LOCKMODE);
        fn index_beginscan(Relation, Relation, Snapshot, c_int, c_int) -> IndexScanDesc;
        fn ScanKeyInit(ScanKey, AttrNumber, StrategyNumber, RegProcedure, Datum);
        fn index_rescan(IndexScanDesc, ScanKey, c_int, ScanKey, c_int);
        fn index_getnext_slot(IndexScanDesc, ScanDirection::Type, *mut TupleTableSlot) -> bool;
        fn index_getnext_tid(IndexScanDesc, ScanDirection::Type) -> ItemPointer;
        fn index_fetch_heap(IndexScanDesc, *mut TupleTableSlot) -> bool;
        fn index_deform_tuple(IndexTuple, TupleDesc, *mut Datum, *mut bool);
        fn visibilitymap_get_status(Relation, BlockNumber, *mut Buffer) -> u8;
        fn ReleaseBuffer(Buffer);
        fn index_endscan(IndexScanDesc);
        fn table_slot_create(Relation, *mut *mut List) -> *mut TupleTableSlot;
        fn ExecDropSingleTupleTableSlot(*mut TupleTableSlot);
        fn heap_attisnull(HeapTuple, c_int, TupleDesc) -> bool;
        fn RelationGetIndexPredicate(Relation) -> *mut List;
    }

    // storage/predicate.h is not among pgrx's bindings, so this one cannot
    // be pinned: declared as PostgreSQL 15 declares it.
    unsafe extern "C-unwind" {
        pub fn PredicateLockPage(relation: Relation, blkno: BlockNumber, snapshot: Snapshot);
    }
}

/// A table and one of its unique indexes, as the vault made them.
struct Target {
    table: Oid,
    index: Oid,
    equality: Oid,
    /// The table's columns the index must hold, in order: its key, then
    /// for index-only reads exactly what it INCLUDEs (at most 3 used).
    columns: [i16; 3],
    /// How many of `columns` an index-only read needs.
    entry_columns: usize,
}

impl VaultOids {
    /// One of the records' unique indexes; an index-only read of a blind
    /// index wants the token and, where records expire, expires_at after
    /// the key.
    fn target(&self, index: RecordsIndex) -> Target {
        let expires_at = self.records.life_cycle.map(|c| c.expires_at as i16);
        Target {
            table: self.table,
            index: self.indexes[index as usize],
            equality: index.equality_proc(),
            columns: [self.keys[index as usize], self.token, expires_at.unwrap_or(0)],
            entry_columns: if expires_at.is_some() { 3 } else { 2 },
        }
    }
}

/// A share's or session's table and primary key (id_hash).
fn by_id_target(table: Oid, index: Oid, id_hash: i32) -> Target {
    let columns = [id_hash as i16, 0, 0];
    Target { table, index, equality: Oid::from(pg_sys::F_BYTEAEQ), columns, entry_columns: 1 }
}

impl Target {
    /// Whether `heap` and `index`, as opened and locked, are what this
    /// probe reads (`schema::probe_fits`). Checked on every probe, so DDL
    /// that commits after the OIDs were cached is caught before a scan
    /// starts.
    ///
    /// # Safety
    /// Both relations are open.
    unsafe fn fits(&self, heap: pg_sys::Relation, index: pg_sys::Relation, index_only: bool) -> bool {
        let wanted = if index_only { &self.columns[..self.entry_columns] } else { &self.columns[..1] };
        // SAFETY: per the function's contract.
        unsafe { shapes_fit(self.table, heap, index, wanted, index_only) }
    }
}

/// `schema::probe_fits` of `heap` and `index` as the relcache has them.
///
/// # Safety
/// Both relations are open; called inside a guarded block.
unsafe fn shapes_fit(
    table: Oid,
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    wanted: &[i16],
    index_only: bool,
) -> bool {
    // SAFETY: per the function's contract; rd_index, its indkey (indnatts
    // entries) and rd_indextuple (its pg_index row) belong to an open
    // index.
    unsafe {
        let (heap_rel, index_rel) = (&*(*heap).rd_rel, &*(*index).rd_rel);
        let form = (*index).rd_index;
        let heap = HeapShape { kind: RelKind::of(heap_rel.relkind as u8), has_table_am: !(*heap).rd_tableam.is_null() };
        if form.is_null() || (*index).rd_indextuple.is_null() {
            return false;
        }
        let form = &*form;
        let row = (*index).rd_indextuple;
        let index = IndexShape {
            kind: RelKind::of(index_rel.relkind as u8),
            is_btree: index_rel.relam == pg_sys::BTREE_AM_OID,
            of_table: form.indrelid == table,
            unique_at_once: form.indisunique && form.indimmediate,
            complete: form.indisvalid && form.indisready && form.indislive,
            predicate: predicate(index),
            expressions: !unguarded::heap_attisnull(row, pg_sys::Anum_pg_index_indexprs as i32, std::ptr::null_mut()),
            columns: form.indkey.values.as_slice(form.indnatts.max(0) as usize),
        };
        schema::probe_fits(&heap, &index, wanted, index_only)
    }
}

/// An open index's predicate: none, `WHERE column IS NOT NULL`, or other.
///
/// # Safety
/// `index` is open; called inside a guarded block.
unsafe fn predicate(index: pg_sys::Relation) -> Predicate {
    // SAFETY: per the function's contract. The relcache parses the
    // predicate once and keeps it (rd_indpred, an implicit AND).
    unsafe {
        let row = (*index).rd_indextuple;
        if unguarded::heap_attisnull(row, pg_sys::Anum_pg_index_indpred as i32, std::ptr::null_mut()) {
            return Predicate::None;
        }
        if (*index).rd_indpred.is_null() {
            unguarded::RelationGetIndexPredicate(index);
        }
        let terms = (*index).rd_indpred;
        if terms.is_null() || (*terms).length != 1 {
            return Predicate::Other;
        }
        let term = (*(*terms).elements).ptr_value as *const pg_sys::Node;
        if (*term).type_ != pg_sys::NodeTag::T_NullTest {
            return Predicate::Other;
        }
        let test = &*(term as *const pg_sys::NullTest);
        let arg = test.arg as *const pg_sys::Node;
        if test.nulltesttype != pg_sys::NullTestType::IS_NOT_NULL || test.argisrow || arg.is_null() {
            return Predicate::Other;
        }
        match (*arg).type_ == pg_sys::NodeTag::T_Var {
            true => Predicate::NotNull((*(arg as *const pg_sys::Var)).varattno),
            false => Predicate::Other,
        }
    }
}

/// Whether `index` is one the vault may read and rely on for uniqueness:
/// a complete, unique, whole btree of the plain table `table` keyed on
/// column `key` (checked where the catalog is read, so a write, which
/// relies on the index to refuse a duplicate, never runs beside one that
/// would not).
pub(super) fn index_fits(table: Oid, index: Oid, key: i16) -> bool {
    use unguarded::*;
    let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
    // SAFETY: inside a transaction; relations opened here are closed here,
    // their locks kept as the executor keeps them.
    unsafe {
        pg_guard_ffi_boundary(|| {
            let (heap, opened) = (table_open(table, lock), index_open(index, lock));
            let fits = shapes_fit(table, heap, opened, &[key], false);
            index_close(opened, pg_sys::NoLock as pg_sys::LOCKMODE);
            table_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
            fits
        })
    }
}

/// The snapshot SPI would give a volatile function's query (the command
/// counter advanced, so the vault's own writes earlier in this
/// transaction, even in this statement, are visible; a fresh snapshot in
/// READ COMMITTED, the transaction's in REPEATABLE READ and SERIALIZABLE),
/// active while the value lives. Every probe of one call runs under it, so
/// a row that a concurrent transaction moves from one index entry to
/// another (key rotation) is seen at one place or the other, never at
/// neither.
struct ActiveSnapshot {
    /// Bound to the backend that pushed it.
    _local: PhantomData<*const ()>,
}

impl ActiveSnapshot {
    fn push() -> ActiveSnapshot {
        use unguarded::*;
        // SAFETY: inside a transaction; popped by Drop.
        unsafe {
            pg_guard_ffi_boundary(|| {
                CommandCounterIncrement();
                PushActiveSnapshot(GetTransactionSnapshot());
                UpdateActiveSnapshotCommandId();
            })
        };
        ActiveSnapshot { _local: PhantomData }
    }
}

impl Drop for ActiveSnapshot {
    fn drop(&mut self) {
        // While an ERROR unwinds, the abort pops it (see the module).
        if std::thread::panicking() {
            return;
        }
        // SAFETY: the snapshot `push` made active is on top: the probes
        // made under it push none of their own, and are dropped first.
        unsafe { pg_guard_ffi_boundary(|| unguarded::PopActiveSnapshot()) }
    }
}

/// An open probe under an active snapshot: its relations (locked as the
/// executor locks them, until the transaction ends), scan, and the slot
/// and visibility-map buffer once used, all released in `Drop`.
struct Probe<'s> {
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    scan: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    vm_buffer: pg_sys::Buffer,
    _snapshot: PhantomData<&'s ActiveSnapshot>,
}

impl<'s> Probe<'s> {
    /// Opens the target's relations and starts the scan for `key` (a datum
    /// of the key column's type). `index_only`: the entries themselves are
    /// wanted (`entry`). A shape error when the relations, as opened, are
    /// not what the vault reads (`Target::fits`); they are closed again.
    fn open(_snapshot: &'s ActiveSnapshot, target: &Target, key: Datum, index_only: bool) -> VaultResult<Probe<'s>> {
        use unguarded::*;
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        // SAFETY: inside a transaction under the active snapshot; the
        // block holds only plain values.
        let opened = unsafe {
            pg_guard_ffi_boundary(|| {
                let heap = table_open(target.table, lock);
                let index = index_open(target.index, lock);
                if !target.fits(heap, index, index_only) {
                    index_close(index, pg_sys::NoLock as pg_sys::LOCKMODE);
                    table_close(heap, pg_sys::NoLock as pg_sys::LOCKMODE);
                    return None;
                }
                let scan = index_beginscan(heap, index, GetActiveSnapshot(), 1, 0);
                (*scan).xs_want_itup = index_only;
                let mut scan_key: pg_sys::ScanKeyData = std::mem::zeroed();
                let strategy = pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber;
                ScanKeyInit(&mut scan_key, 1, strategy, target.equality, key);
                index_rescan(scan, &mut scan_key, 1, std::ptr::null_mut(), 0);
                Some((heap, index, scan))
            })
        };
        let (heap, index, scan) = opened.ok_or(StorageFault::Shape)?;
        let vm_buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
        Ok(Probe { heap, index, scan, slot: std::ptr::null_mut(), vm_buffer, _snapshot: PhantomData })
    }

    /// The first visible matching row; at most once per probe.
    fn next_row(&mut self) -> Option<Row<'_>> {
        use unguarded::*;
        debug_assert!(self.slot.is_null());
        // SAFETY: the probe is open; the slot is dropped with it.
        let found = unsafe {
            pg_guard_ffi_boundary(|| {
                self.slot = table_slot_create(self.heap, std::ptr::null_mut());
                index_getnext_slot(self.scan, pg_sys::ScanDirection::ForwardScanDirection, self.slot)
            })
        };
        found.then_some(Row { slot: self.slot, _probe: PhantomData })
    }

    /// The index entry of the first visible matching row (valid until the
    /// probe moves or is dropped). The heap is read only for an entry on a
    /// page the visibility map does not mark all-visible, as in
    /// PostgreSQL's IndexOnlyNext; otherwise the page is predicate-locked
    /// as if it had been read (SERIALIZABLE). At most once per probe,
    /// opened with `index_only`.
    fn next_entry(&mut self) -> Option<pg_sys::IndexTuple> {
        use unguarded::*;
        // SAFETY: the probe is open; the slot and buffer are released with
        // it.
        unsafe {
            pg_guard_ffi_boundary(|| loop {
                let tid = index_getnext_tid(self.scan, pg_sys::ScanDirection::ForwardScanDirection);
                if tid.is_null() {
                    return None;
                }
                let block = ((*tid).ip_blkid.bi_hi as u32) << 16 | (*tid).ip_blkid.bi_lo as u32;
                let all_visible = visibilitymap_get_status(self.heap, block, &mut self.vm_buffer) as u32
                    & pg_sys::VISIBILITYMAP_ALL_VISIBLE
                    != 0;
                if all_visible {
                    PredicateLockPage(self.heap, block, GetActiveSnapshot());
                } else {
                    if self.slot.is_null() {
                        self.slot = table_slot_create(self.heap, std::ptr::null_mut());
                    }
                    if !index_fetch_heap(self.scan, self.slot) {
                        continue; // a dead or invisible version: the next entry
                    }
                }
                // btree returns its entries when asked (xs_want_itup).
                debug_assert!(!(*self.scan).xs_itup.is_null());
                return Some((*self.scan).xs_itup);
            })
        }
    }

    /// The token (at `token_attnum`) and expiry of the first visible
    /// matching entry, copied out of it; a shape error when the entry is
    /// not laid out as the vault's indexes are (`schema::entry_layout`) or
    /// holds a NULL token.
    fn entry(&mut self, token_attnum: usize) -> VaultResult<Option<IndexEntry>> {
        // SAFETY: the scan's entry descriptor lives as long as the scan.
        let desc = unsafe { (*self.scan).xs_itupdesc };
        let types = EntryTypes { token: pg_sys::UUIDOID.to_u32(), expires_at: pg_sys::TIMESTAMPTZOID.to_u32() };
        // SAFETY: a valid descriptor.
        let layout = unsafe { with_columns(desc, |columns| schema::entry_layout(columns, token_attnum, types)) }
            .ok_or(StorageFault::Shape)?;
        let Some(entry) = self.next_entry() else {
            return Ok(None);
        };
        let mut values = [Datum::from(0); pg_sys::INDEX_MAX_KEYS as usize];
        let mut nulls = [true; pg_sys::INDEX_MAX_KEYS as usize];
        // SAFETY: `entry` is the scan's current entry, of `desc`, which
        // has at most INDEX_MAX_KEYS columns.
        unsafe {
            pg_guard_ffi_boundary(|| {
                unguarded::index_deform_tuple(entry, desc, values.as_mut_ptr(), nulls.as_mut_ptr())
            })
        };
        let (token, expires_at) = layout.read(&nulls).ok_or(StorageFault::Shape)?;
        // SAFETY: the layout checked the token is a uuid, whose datum points
        // at its 16 bytes in the entry (copied out here), and the expiry a
        // timestamptz, which is by value.
        let token = unsafe { *values[token].cast_mut_ptr::<[u8; 16]>() };
        Ok(Some((token, expires_at.map(|at| values[at].value() as i64))))
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        // While an ERROR unwinds, the abort releases all of it (see the
        // module).
        if std::thread::panicking() {
            return;
        }
        use unguarded::*;
        // SAFETY: everything here was made by `open`, `next_row` or
        // `next_entry` in this transaction and is released once.
        unsafe {
            pg_guard_ffi_boundary(|| {
                if !self.slot.is_null() {
                    ExecDropSingleTupleTableSlot(self.slot);
                }
                if self.vm_buffer != pg_sys::InvalidBuffer as pg_sys::Buffer {
                    ReleaseBuffer(self.vm_buffer);
                }
                index_endscan(self.scan);
                index_close(self.index, pg_sys::NoLock as pg_sys::LOCKMODE);
                table_close(self.heap, pg_sys::NoLock as pg_sys::LOCKMODE);
            })
        }
    }
}

/// `f` of the columns of `desc` (up to the first 64: a relation of the
/// vault's has fewer, and a column past them reads as missing).
///
/// # Safety
/// `desc` is a valid tuple descriptor.
unsafe fn with_columns<R>(desc: pg_sys::TupleDesc, f: impl FnOnce(&[Column]) -> R) -> R {
    let mut columns = [Column { dropped: true, type_oid: 0 }; 64];
    // SAFETY: per the function's contract; attrs holds natts entries.
    let natts = unsafe {
        let natts = ((*desc).natts.max(0) as usize).min(columns.len());
        for (column, att) in columns.iter_mut().zip((*desc).attrs.as_slice(natts)) {
            *column = Column { dropped: att.attisdropped, type_oid: att.atttypid.to_u32() };
        }
        natts
    };
    f(&columns[..natts])
}

/// A row a probe found, read while the probe holds it.
pub(super) struct Row<'p> {
    slot: *mut pg_sys::TupleTableSlot,
    _probe: PhantomData<&'p ()>,
}

impl Row<'_> {
    /// Column `attnum`, None if NULL; a shape error unless it is a column
    /// of type `type_oid` in the relation as opened (a concurrent ALTER
    /// TABLE that outran the cached attribute numbers is caught here,
    /// before a datum is read as the wrong type).
    fn datum(&self, attnum: i32, type_oid: Oid) -> VaultResult<Option<Datum>> {
        // SAFETY: the slot holds a row while the probe lives.
        unsafe {
            let fits = with_columns((*self.slot).tts_tupleDescriptor, |columns| {
                schema::column_is(columns, attnum as usize, type_oid.to_u32())
            });
            if !fits {
                return Err(StorageFault::Shape.into());
            }
            let mut is_null = false;
            let datum = pg_sys::slot_getattr(self.slot, attnum, &mut is_null);
            Ok((!is_null).then_some(datum))
        }
    }

    /// The timestamptz in column `attnum`.
    pub(super) fn timestamp(&self, attnum: i32) -> VaultResult<Option<i64>> {
        // A timestamptz is by value.
        Ok(self.datum(attnum, pg_sys::TIMESTAMPTZOID)?.map(|datum| datum.value() as i64))
    }

    /// The uuid in column `attnum`, copied.
    pub(super) fn uuid(&self, attnum: i32) -> VaultResult<Option<[u8; 16]>> {
        // SAFETY: a uuid datum points at its 16 bytes, copied out while the
        // slot holds the row.
        Ok(self.datum(attnum, pg_sys::UUIDOID)?.map(|datum| unsafe { *datum.cast_mut_ptr::<[u8; 16]>() }))
    }

    /// The text in column `attnum`, copied.
    pub(super) fn text(&self, attnum: i32) -> VaultResult<Option<String>> {
        // SAFETY: a datum of a text column of the row.
        Ok(self.datum(attnum, pg_sys::TEXTOID)?.and_then(|datum| unsafe { String::from_datum(datum, false) }))
    }

    /// The text[] in column `attnum`, copied (an element that is NULL is
    /// an error).
    pub(super) fn text_array(&self, attnum: i32) -> VaultResult<Option<Vec<String>>> {
        // SAFETY: a datum of a text[] column of the row.
        Ok(self
            .datum(attnum, pg_sys::TEXTARRAYOID)?
            .and_then(|datum| unsafe { Vec::<String>::from_datum(datum, false) }))
    }

    /// `f` of the bytes of bytea column `attnum`, borrowed from the buffer
    /// when stored inline (no copy: the envelope is decrypted straight from
    /// the page), detoasted when stored out of line.
    pub(super) fn with_bytea<R>(&self, attnum: i32, f: impl FnOnce(&[u8]) -> R) -> VaultResult<Option<R>> {
        let Some(datum) = self.datum(attnum, pg_sys::BYTEAOID)? else {
            return Ok(None);
        };
        // SAFETY: the slot keeps its buffer pinned while `f` runs; a
        // detoasted copy is palloc'd in the current memory context.
        unsafe {
            let value = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
            Ok(Some(f(pgrx::varlena::varlena_to_byte_slice(value))))
        }
    }
}

/// `read` of the row of `pii_vault.records` whose `index` column equals
/// `key` (a datum of the column's type: uuid or bytea), or None when no
/// visible row matches.
pub(super) fn read_unique<R>(
    index: RecordsIndex,
    key: Datum,
    read: impl FnOnce(&Row<'_>, RecordColumns) -> VaultResult<R>,
) -> VaultResult<Option<R>> {
    let oids = vault_oids()?;
    read_first(&oids.target(index), [key], |row| read(row, oids.records))
}

/// `read` of the share whose id hash is one of `keys` (tried in order
/// under one snapshot), or None when no visible row matches or the schema
/// has no shares.
pub(super) fn read_share<R>(
    keys: impl IntoIterator<Item = Datum>,
    read: impl FnOnce(&Row<'_>, ShareColumns) -> VaultResult<R>,
) -> VaultResult<Option<R>> {
    let Some(by_id) = vault_oids()?.by_id else {
        return Ok(None);
    };
    let (heap, pkey, columns) = by_id.shares;
    read_first(&by_id_target(heap, pkey, columns.id_hash), keys, |row| read(row, columns))
}

/// The session whose id hash is one of `keys`, as `read_share`.
pub(super) fn read_session<R>(
    keys: impl IntoIterator<Item = Datum>,
    read: impl FnOnce(&Row<'_>, SessionColumns) -> VaultResult<R>,
) -> VaultResult<Option<R>> {
    let Some(by_id) = vault_oids()?.by_id else {
        return Ok(None);
    };
    let (heap, pkey, columns) = by_id.sessions;
    read_first(&by_id_target(heap, pkey, columns.id_hash), keys, |row| read(row, columns))
}

/// The field token whose id is `key` (a uuid datum), as `read_share`.
pub(super) fn read_field_token<R>(
    key: Datum,
    read: impl FnOnce(&Row<'_>, FieldTokenColumns) -> VaultResult<R>,
) -> VaultResult<Option<R>> {
    let Some((heap, pkey, columns)) = vault_oids()?.field_tokens else {
        return Ok(None);
    };
    let target = Target {
        table: heap,
        index: pkey,
        equality: Oid::from(pg_sys::F_UUID_EQ),
        columns: [columns.id as i16, 0, 0],
        entry_columns: 1,
    };
    read_first(&target, [key], |row| read(row, columns))
}

/// `read` of the first visible row of the target's table whose key in the
/// target's unique index equals one of `keys`, tried in order under one
/// snapshot.
fn read_first<R>(
    target: &Target,
    keys: impl IntoIterator<Item = Datum>,
    read: impl FnOnce(&Row<'_>) -> VaultResult<R>,
) -> VaultResult<Option<R>> {
    let snapshot = ActiveSnapshot::push();
    for key in keys {
        let mut probe = Probe::open(&snapshot, target, key, false)?;
        if let Some(row) = probe.next_row() {
            return read(&row).map(Some);
        }
    }
    Ok(None)
}

/// A row found through a blind index: its token and, when the index
/// includes it, its `expires_at` (microseconds since 2000).
pub(super) type IndexEntry = ([u8; 16], Option<i64>);

/// The entry of the row whose `index` column equals one of `keys` (tried in
/// order, under one snapshot; a key is made only if the ones before it
/// found nothing), read from the index entry (`Probe::entry`); None when
/// no visible row matches any.
pub(super) fn token_by_index(
    index: RecordsIndex,
    keys: impl IntoIterator<Item = Datum>,
) -> VaultResult<Option<IndexEntry>> {
    // No key (a store while one key version is loaded): no snapshot, no scan.
    let mut keys = keys.into_iter().peekable();
    if keys.peek().is_none() {
        return Ok(None);
    }
    let target = vault_oids()?.target(index);
    let snapshot = ActiveSnapshot::push();
    for key in keys {
        if let Some(entry) = Probe::open(&snapshot, &target, key, true)?.entry(index.token_attnum())? {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}
