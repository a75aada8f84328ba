//! Single-row reads of `pii_vault.records`, `pii_vault.shares` and
//! `pii_vault.sessions` straight through their unique indexes, without SPI.
//!
//! `vault_get`, `vault_lookup`, `vault_get_shared` and `vault_session_get`
//! run once per row of the caller's query, so their fixed cost matters:
//! through SPI each read paid for a connection, plan revalidation (which
//! recomputes the search path that SECURITY DEFINER has just changed) and
//! executor start-up and shut-down around a one-row index scan. Here the same scan is an index probe and a heap fetch under
//! the same snapshot SPI would take (see `Probe::open`). A lookup, which
//! wants only the token, reads it from the index entry itself (the blind
//! indexes INCLUDE the token) and skips the heap wherever the visibility
//! map vouches for the page, as PostgreSQL's index-only scan does. Writes
//! still go through SPI's prepared statements, where constraints, triggers
//! and the WAL cost dominate anyway.
//!
//! Relations are found by name in schema `pii_vault` and their OIDs cached
//! per backend until a relcache invalidation names one of them (DROP and
//! CREATE EXTENSION, REINDEX, ALTER TABLE), so no stale OID is ever used.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

use crate::normalize::LookupKind;

/// The unique indexes of `pii_vault.records` (names from sql/storage.sql).
#[derive(Clone, Copy)]
pub(super) enum RecordsIndex {
    Token,
    Email,
    Phone,
    Login,
}

impl RecordsIndex {
    pub(super) const ALL: [RecordsIndex; 4] =
        [RecordsIndex::Token, RecordsIndex::Email, RecordsIndex::Phone, RecordsIndex::Login];

    /// The index that decides `kind`'s uniqueness: the one place a lookup
    /// kind meets an index name (the token's is the primary key).
    pub(super) fn of(kind: LookupKind) -> RecordsIndex {
        match kind {
            LookupKind::Token => RecordsIndex::Token,
            LookupKind::Email => RecordsIndex::Email,
            LookupKind::Phone => RecordsIndex::Phone,
            LookupKind::Login => RecordsIndex::Login,
        }
    }

    /// The lookup kind this index decides.
    pub(super) fn kind(self) -> LookupKind {
        match self {
            RecordsIndex::Token => LookupKind::Token,
            RecordsIndex::Email => LookupKind::Email,
            RecordsIndex::Phone => LookupKind::Phone,
            RecordsIndex::Login => LookupKind::Login,
        }
    }

    pub(super) fn name(self) -> &'static CStr {
        match self {
            RecordsIndex::Token => c"records_pkey",
            RecordsIndex::Email => c"records_email_index_key",
            RecordsIndex::Phone => c"records_phone_index_key",
            RecordsIndex::Login => c"records_login_index_key",
        }
    }

    /// Where the token is in this index's entries (the key of the primary
    /// key, the INCLUDE column of the blind indexes: sql/storage.sql).
    fn token_attnum(self) -> usize {
        match self {
            RecordsIndex::Token => 1,
            _ => 2,
        }
    }

    /// The indexed column (sql/storage.sql).
    fn column(self) -> &'static CStr {
        match self {
            RecordsIndex::Token => c"token",
            RecordsIndex::Email => c"email_index",
            RecordsIndex::Phone => c"phone_index",
            RecordsIndex::Login => c"login_index",
        }
    }

    /// The indexed column's type.
    fn key_type(self) -> Oid {
        match self {
            RecordsIndex::Token => pg_sys::UUIDOID,
            _ => pg_sys::BYTEAOID,
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

/// The relations read here, and the columns read from them.
#[derive(Clone, Copy)]
struct VaultOids {
    table: Oid,
    indexes: [Oid; 4],
    /// The column each index of `indexes` must have as its key, and the
    /// token's (which the blind indexes INCLUDE).
    keys: [i16; 4],
    token: i16,
    records: RecordColumns,
    /// None on a schema from before 0.3.0 (this library runs one until
    /// ALTER EXTENSION UPDATE), where there are no shares or sessions.
    by_id: Option<ByIdRelations>,
}

/// Attribute numbers of the columns read, found by name when the OIDs are
/// cached (a column dropped and added again moves; DDL invalidates the
/// cache). Their types are checked on every read, against the relation
/// as opened (`slot_datum`).
#[derive(Clone, Copy)]
pub(super) struct RecordColumns {
    pub envelope: i32,
    /// None on a schema from before 0.3.0, where no record expires or is
    /// soft-deleted.
    pub life_cycle: Option<LifeCycleColumns>,
}

#[derive(Clone, Copy)]
pub(super) struct LifeCycleColumns {
    pub expires_at: i32,
    pub deleted_at: i32,
}

#[derive(Clone, Copy)]
pub(super) struct ShareColumns {
    id_hash: i32,
    pub token: i32,
    pub fields: i32,
    pub expires_at: i32,
}

#[derive(Clone, Copy)]
pub(super) struct SessionColumns {
    pub id_hash: i32,
    pub token: i32,
    pub envelope: i32,
    pub expires_at: i32,
}

/// The tables whose rows are found by the keyed hash of an id their holder
/// keeps (their primary key, `id_hash`): table, primary key, columns.
#[derive(Clone, Copy)]
struct ByIdRelations {
    shares: (Oid, Oid, ShareColumns),
    sessions: (Oid, Oid, SessionColumns),
}

/// A share's or session's table and primary key (id_hash).
fn by_id_target(table: Oid, index: Oid, id_hash: i32) -> Target {
    let columns = [id_hash as i16, 0, 0];
    Target { table, index, equality: Oid::from(pg_sys::F_BYTEAEQ), columns, entry_columns: 1 }
}

impl VaultOids {
    /// One of the records' unique indexes; an index-only read of a blind
    /// index wants the token and, from 0.3.0 on, expires_at after the key.
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

    fn names(&self, relid: Oid) -> bool {
        self.table == relid
            || self.indexes.contains(&relid)
            || self.by_id.is_some_and(|r| [r.shares.0, r.shares.1, r.sessions.0, r.sessions.1].contains(&relid))
    }
}

thread_local! {
    static OIDS: Cell<Option<VaultOids>> = const { Cell::new(None) };
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

/// The life-cycle columns of `pii_vault.records`, None on a schema from
/// before 0.3.0.
pub(super) fn life_cycle_columns() -> Option<LifeCycleColumns> {
    vault_oids().records.life_cycle
}

fn vault_oids() -> VaultOids {
    // Invalidations are otherwise taken in when a relation is first locked
    // in a transaction: a transaction begun before ALTER EXTENSION UPDATE
    // that has not touched the vault since would read a cache of the old
    // schema here (0.2.0's statements, no life-cycle checks). Taking them
    // in now is a check of a shared counter when there are none.
    // SAFETY: inside a transaction; may run the relcache callback above.
    unsafe { pg_sys::AcceptInvalidationMessages() };
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
        let relid = |name: &CStr| {
            let oid = pg_sys::get_relname_relid(name.as_ptr(), schema);
            if oid == pg_sys::InvalidOid {
                error!("pii_vault: internal storage error: relation pii_vault.{} is missing", name.to_string_lossy());
            }
            oid
        };
        // An index whose key is not of the type probed with would compare
        // a datum of one type as another.
        let index = |name: &CStr, key_type: Oid| {
            let oid = relid(name);
            if pg_sys::get_atttype(oid, 1) != key_type {
                error!(
                    "pii_vault: internal storage error: index pii_vault.{} is not the vault's",
                    name.to_string_lossy()
                );
            }
            oid
        };
        let column = |table: Oid, name: &CStr| i32::from(pg_sys::get_attnum(table, name.as_ptr()));
        let required = |table: Oid, name: &CStr| match column(table, name) {
            n if n > 0 => n,
            _ => error!(
                "pii_vault: internal storage error: a column of the vault's storage is missing: {}",
                name.to_string_lossy()
            ),
        };
        let table = relid(c"records");
        let (expires_at, deleted_at) = (column(table, c"expires_at"), column(table, c"deleted_at"));
        let life_cycle = (expires_at > 0 && deleted_at > 0).then_some(LifeCycleColumns { expires_at, deleted_at });
        let by_id = life_cycle.map(|_| {
            let (shares, sessions) = (relid(c"shares"), relid(c"sessions"));
            ByIdRelations {
                shares: (
                    shares,
                    index(c"shares_pkey", pg_sys::BYTEAOID),
                    ShareColumns {
                        id_hash: required(shares, c"id_hash"),
                        token: required(shares, c"token"),
                        fields: required(shares, c"fields"),
                        expires_at: required(shares, c"expires_at"),
                    },
                ),
                sessions: (
                    sessions,
                    index(c"sessions_pkey", pg_sys::BYTEAOID),
                    SessionColumns {
                        id_hash: required(sessions, c"id_hash"),
                        token: required(sessions, c"token"),
                        envelope: required(sessions, c"envelope"),
                        expires_at: required(sessions, c"expires_at"),
                    },
                ),
            }
        });
        VaultOids {
            table,
            indexes: RecordsIndex::ALL.map(|i| index(i.name(), i.key_type())),
            keys: RecordsIndex::ALL.map(|i| required(table, i.column()) as i16),
            token: required(table, c"token") as i16,
            records: RecordColumns { envelope: required(table, c"envelope"), life_cycle },
            by_id,
        }
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
    use pgrx::pg_sys::{AttrNumber, BlockNumber, Buffer, IndexTuple, ItemPointer, ScanDirection, StrategyNumber};
    use pgrx::pg_sys::{Datum, IndexScanDesc, List, Oid, RegProcedure, Relation, ScanKey, Snapshot, TupleTableSlot};
    use pgrx::pg_sys::{TupleDesc, LOCKMODE};
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

impl Target {
    /// Whether `heap` and `index`, as opened and locked, are what this
    /// probe reads: a plain table (a partitioned one has no table access
    /// method to scan), a btree index of it keyed on the expected column
    /// and, for an index-only read, holding exactly the expected columns.
    /// Checked on every probe, so DDL that commits after the OIDs were
    /// cached is caught before a scan starts.
    ///
    /// # Safety
    /// Both relations are open.
    unsafe fn fits(&self, heap: pg_sys::Relation, index: pg_sys::Relation, index_only: bool) -> bool {
        // SAFETY: per the function's contract; rd_index and its indkey
        // (indnatts entries) belong to an open index.
        unsafe {
            let (heap_rel, index_rel) = (&*(*heap).rd_rel, &*(*index).rd_rel);
            if heap_rel.relkind as u8 != pg_sys::RELKIND_RELATION || (*heap).rd_tableam.is_null() {
                return false;
            }
            if index_rel.relkind as u8 != pg_sys::RELKIND_INDEX || index_rel.relam != pg_sys::BTREE_AM_OID {
                return false;
            }
            let form = (*index).rd_index;
            if form.is_null() || (*form).indrelid != self.table || (*form).indnatts < 1 {
                return false;
            }
            let natts = (*form).indnatts as usize;
            let held = (*form).indkey.values.as_slice(natts);
            let wanted = if index_only { &self.columns[..self.entry_columns] } else { &self.columns[..1] };
            held.starts_with(wanted) && (!index_only || natts == wanted.len())
        }
    }
}

/// An open probe: its relations, scan, and the slot and visibility-map
/// buffer once used (freed by `close`, or by the transaction's abort when
/// the caller errors in between).
struct Probe {
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    scan: pg_sys::IndexScanDesc,
    slot: *mut pg_sys::TupleTableSlot,
    vm_buffer: pg_sys::Buffer,
}

impl Probe {
    /// Opens the relations as the executor does (locks held to the end of
    /// the transaction) and starts the scan for `key` under the active
    /// snapshot (pushed by `push_snapshot`). `index_only`: the entries
    /// themselves are wanted (`next_entry`). None when the relations, as
    /// opened, are not what the vault reads (`Target::fits`).
    ///
    /// # Safety
    /// Inside a transaction, after `push_snapshot`, with a guard
    /// (pg_guard_ffi_boundary) around it: the body holds only plain values,
    /// so an ERROR unwinds nothing.
    unsafe fn open(target: &Target, key: Datum, index_only: bool) -> Option<Probe> {
        use unguarded::*;
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        // SAFETY: per the function's contract.
        unsafe {
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
            let vm_buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
            Some(Probe { heap, index, scan, slot: std::ptr::null_mut(), vm_buffer })
        }
    }

    /// The first visible matching row, in `self.slot`.
    ///
    /// # Safety
    /// As for `open`; at most once per probe.
    unsafe fn next_row(&mut self) -> bool {
        use unguarded::*;
        // SAFETY: per the function's contract.
        unsafe {
            self.slot = table_slot_create(self.heap, std::ptr::null_mut());
            index_getnext_slot(self.scan, pg_sys::ScanDirection::ForwardScanDirection, self.slot)
        }
    }

    /// The index entry of the first visible matching row (valid until the
    /// probe moves or closes). The heap is read only for an entry on a page
    /// the visibility map does not mark all-visible, as in PostgreSQL's
    /// IndexOnlyNext; otherwise the page is predicate-locked as if it had
    /// been read (SERIALIZABLE).
    ///
    /// # Safety
    /// As for `open`, which was called with `index_only`; at most once.
    unsafe fn next_entry(&mut self) -> Option<pg_sys::IndexTuple> {
        use unguarded::*;
        // SAFETY: per the function's contract.
        unsafe {
            loop {
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
            }
        }
    }

    /// Frees what the probe made.
    ///
    /// # Safety
    /// As for `open`; `self` came from `open` in this transaction.
    unsafe fn close(&self) {
        use unguarded::*;
        // SAFETY: per the function's contract.
        unsafe {
            if !self.slot.is_null() {
                ExecDropSingleTupleTableSlot(self.slot);
            }
            if self.vm_buffer != pg_sys::InvalidBuffer as pg_sys::Buffer {
                ReleaseBuffer(self.vm_buffer);
            }
            index_endscan(self.scan);
            index_close(self.index, pg_sys::NoLock as pg_sys::LOCKMODE);
            table_close(self.heap, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
    }
}

/// Pushes the snapshot SPI would give a volatile function's query (the
/// command counter advanced, so the vault's own writes earlier in this
/// transaction, even in this statement, are visible; a fresh snapshot in
/// READ COMMITTED, the transaction's in REPEATABLE READ and SERIALIZABLE).
/// Every probe of one call runs under it, so a row that a concurrent
/// transaction moves from one index entry to another (key rotation) is
/// seen at one place or the other, never at neither.
///
/// # Safety
/// As for `Probe::open`; `pop_snapshot` follows.
unsafe fn push_snapshot() {
    use unguarded::*;
    // SAFETY: per the function's contract.
    unsafe {
        CommandCounterIncrement();
        PushActiveSnapshot(GetTransactionSnapshot());
        UpdateActiveSnapshotCommandId();
    }
}

/// # Safety
/// After `push_snapshot`, in the same guarded block or a later one.
unsafe fn pop_snapshot() {
    // SAFETY: per the function's contract.
    unsafe { unguarded::PopActiveSnapshot() }
}

/// Finds the row of `pii_vault.records` whose `index` column equals `key`
/// and returns `read(slot, columns)`, or None when no visible row matches.
/// `key` must be a datum of the column's type (uuid or bytea).
pub(super) fn read_unique<R>(
    index: RecordsIndex,
    key: Datum,
    read: impl FnOnce(*mut pg_sys::TupleTableSlot, RecordColumns) -> R,
) -> Option<R> {
    let oids = vault_oids();
    read_first(&oids.target(index), [key], |slot| read(slot, oids.records))
}

/// The share whose id hash is one of `keys` (tried in order under one
/// snapshot): `read(slot, columns)` of its row, or None when no visible
/// row matches. On a schema from before 0.3.0 there are none.
pub(super) fn read_share<R>(
    keys: impl IntoIterator<Item = Datum>,
    read: impl FnOnce(*mut pg_sys::TupleTableSlot, ShareColumns) -> R,
) -> Option<R> {
    let (heap, pkey, columns) = vault_oids().by_id?.shares;
    read_first(&by_id_target(heap, pkey, columns.id_hash), keys, |slot| read(slot, columns))
}

/// The session whose id hash is one of `keys`, as `read_share`.
pub(super) fn read_session<R>(
    keys: impl IntoIterator<Item = Datum>,
    read: impl FnOnce(*mut pg_sys::TupleTableSlot, SessionColumns) -> R,
) -> Option<R> {
    let (heap, pkey, columns) = vault_oids().by_id?.sessions;
    read_first(&by_id_target(heap, pkey, columns.id_hash), keys, |slot| read(slot, columns))
}

/// `read(slot)` of the first visible row of the target's table whose key
/// in the target's unique index equals one of `keys`, tried in order under
/// one snapshot; an error when the relations are not of the target's
/// shape (`Target::fits`).
fn read_first<R>(
    target: &Target,
    keys: impl IntoIterator<Item = Datum>,
    read: impl FnOnce(*mut pg_sys::TupleTableSlot) -> R,
) -> Option<R> {
    // SAFETY: see Probe::open and Probe::close; `read` runs between them
    // with pgrx's guarded functions, as any Rust code.
    unsafe {
        let found = pg_sys::ffi::pg_guard_ffi_boundary(|| {
            push_snapshot();
            let mut found = Ok(None);
            for key in keys {
                let Some(mut probe) = Probe::open(target, key, false) else {
                    found = Err(ShapeMismatch);
                    break;
                };
                if probe.next_row() {
                    found = Ok(Some(probe));
                    break;
                }
                probe.close();
            }
            if !matches!(found, Ok(Some(_))) {
                pop_snapshot();
            }
            found
        });
        // Raised out of the guarded block, where an ERROR unwinds nothing.
        let found = found.unwrap_or_else(|ShapeMismatch| error!("{SHAPE_ERROR}"))?;
        let result = read(found.slot);
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            found.close();
            pop_snapshot();
        });
        Some(result)
    }
}

/// A row found through a blind index: its token and, when the index
/// includes it (0.3.0 on), its `expires_at` (microseconds since 2000).
pub(super) type IndexEntry = ([u8; 16], Option<i64>);

/// The entry of the row whose `index` column equals one of `keys` (tried in
/// order, under one snapshot; a key is made only if the ones before it
/// found nothing), read from the index entry (see `Probe::next_entry`);
/// None when no visible row matches any.
pub(super) fn token_by_index(index: RecordsIndex, keys: impl IntoIterator<Item = Datum>) -> Option<IndexEntry> {
    // No key (a store while one key version is loaded): no snapshot, no scan.
    let mut keys = keys.into_iter().peekable();
    keys.peek()?;
    let target = vault_oids().target(index);
    let attnum = index.token_attnum();
    // SAFETY: see Probe and token_by_entry; one guarded block.
    let found = unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            push_snapshot();
            let mut found = Ok(None);
            for key in keys {
                found = token_by_entry(&target, key, attnum);
                if !matches!(found, Ok(None)) {
                    break;
                }
            }
            pop_snapshot();
            found
        })
    };
    // Raised out of the guarded block, where an ERROR unwinds nothing.
    found.unwrap_or_else(|ShapeMismatch| error!("{SHAPE_ERROR}"))
}

/// An index entry whose columns are not of the types the vault reads.
struct ShapeMismatch;

/// One index-only probe of `token_by_index`.
///
/// # Safety
/// As for `Probe::open`.
unsafe fn token_by_entry(target: &Target, key: Datum, attnum: usize) -> Result<Option<IndexEntry>, ShapeMismatch> {
    // SAFETY: the body handles only plain values, and the token is copied
    // out of the entry before the probe closes.
    unsafe {
        let mut probe = Probe::open(target, key, true).ok_or(ShapeMismatch)?;
        // The token, then (the blind indexes from 0.3.0 on: sql/storage.sql)
        // expires_at, checked against the index as opened.
        let desc = (*probe.scan).xs_itupdesc;
        let natts = (*desc).natts as usize;
        if !(column_is(desc, attnum, pg_sys::UUIDOID)
            && (natts == attnum || column_is(desc, attnum + 1, pg_sys::TIMESTAMPTZOID)))
        {
            probe.close();
            return Err(ShapeMismatch);
        }
        let found = match probe.next_entry() {
            None => Ok(None),
            Some(entry) => {
                let mut values = [Datum::from(0); pg_sys::INDEX_MAX_KEYS as usize];
                let mut nulls = [true; pg_sys::INDEX_MAX_KEYS as usize];
                unguarded::index_deform_tuple(entry, desc, values.as_mut_ptr(), nulls.as_mut_ptr());
                if nulls[attnum - 1] {
                    // The schema's token is NOT NULL; a table altered to
                    // hold none has no pointer to read here.
                    Err(ShapeMismatch)
                } else {
                    // A uuid datum points at its 16 bytes; a timestamptz
                    // is by value.
                    let token = *values[attnum - 1].cast_mut_ptr::<[u8; 16]>();
                    let expires_at = (attnum < natts && !nulls[attnum]).then(|| values[attnum].value() as i64);
                    Ok(Some((token, expires_at)))
                }
            }
        };
        probe.close();
        found
    }
}

/// Whether column `attnum` of `desc` is a live column of type `type_oid`.
///
/// # Safety
/// `desc` is a valid tuple descriptor.
unsafe fn column_is(desc: pg_sys::TupleDesc, attnum: usize, type_oid: Oid) -> bool {
    // SAFETY: per the function's contract; attrs holds natts entries.
    unsafe {
        let natts = (*desc).natts as usize;
        (1..=natts).contains(&attnum) && {
            let att = &(*desc).attrs.as_slice(natts)[attnum - 1];
            !att.attisdropped && att.atttypid == type_oid
        }
    }
}

const SHAPE_ERROR: &str = "pii_vault: internal storage error: the vault's storage is not of the shape the vault reads";

/// Column `attnum` of the row in `slot`, None if NULL; an error unless it
/// is a column of type `type_oid` in the relation as opened (a concurrent
/// ALTER TABLE that outran the cached attribute numbers is caught here,
/// before a datum is read as the wrong type).
///
/// # Safety
/// `slot` holds a row.
unsafe fn slot_datum(slot: *mut pg_sys::TupleTableSlot, attnum: i32, type_oid: Oid) -> Option<Datum> {
    // SAFETY: per the function's contract.
    unsafe {
        if !column_is((*slot).tts_tupleDescriptor, attnum as usize, type_oid) {
            error!("{SHAPE_ERROR}");
        }
        let mut is_null = false;
        let datum = pg_sys::slot_getattr(slot, attnum, &mut is_null);
        (!is_null).then_some(datum)
    }
}

/// The timestamptz in column `attnum` of the row in `slot`; None if NULL.
///
/// # Safety
/// `slot` holds a row.
pub(super) unsafe fn timestamp_column(slot: *mut pg_sys::TupleTableSlot, attnum: i32) -> Option<i64> {
    // SAFETY: per the function's contract; a timestamptz is by value.
    unsafe { slot_datum(slot, attnum, pg_sys::TIMESTAMPTZOID).map(|datum| datum.value() as i64) }
}

/// The uuid in column `attnum` of the row in `slot`; None if NULL.
///
/// # Safety
/// `slot` holds a row.
pub(super) unsafe fn uuid_column(slot: *mut pg_sys::TupleTableSlot, attnum: i32) -> Option<[u8; 16]> {
    // SAFETY: per the function's contract; a uuid datum points at its 16
    // bytes, copied out while the slot holds the row.
    unsafe { slot_datum(slot, attnum, pg_sys::UUIDOID).map(|datum| *datum.cast_mut_ptr::<[u8; 16]>()) }
}

/// The text[] in column `attnum` of the row in `slot`, copied; None if
/// NULL. An element that is NULL is an error.
///
/// # Safety
/// `slot` holds a row.
pub(super) unsafe fn text_array_column(slot: *mut pg_sys::TupleTableSlot, attnum: i32) -> Option<Vec<String>> {
    // SAFETY: per the function's contract.
    unsafe {
        let datum = slot_datum(slot, attnum, pg_sys::TEXTARRAYOID)?;
        Vec::<String>::from_datum(datum, false)
    }
}

/// Calls `f` with the bytes of bytea column `attnum` of the row in `slot`,
/// borrowed from the buffer when stored inline (no copy: the envelope is
/// decrypted straight from the page), detoasted when stored out of line.
/// None if NULL.
///
/// # Safety
/// `slot` holds a row.
pub(super) unsafe fn with_bytea_column<R>(
    slot: *mut pg_sys::TupleTableSlot,
    attnum: i32,
    f: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    // SAFETY: the slot keeps its buffer pinned while `f` runs; a detoasted
    // copy is palloc'd in the current memory context.
    unsafe {
        let datum = slot_datum(slot, attnum, pg_sys::BYTEAOID)?;
        let value = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
        Some(f(pgrx::varlena::varlena_to_byte_slice(value)))
    }
}
