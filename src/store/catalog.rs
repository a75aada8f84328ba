//! The vault's storage as the catalog describes it: the schema version
//! installed, the OIDs of the relations read without SPI and the columns
//! read from them. Read once per backend and kept until a relcache
//! invalidation names one of the relations (DROP and CREATE EXTENSION,
//! ALTER EXTENSION UPDATE, REINDEX, ALTER TABLE), so nothing stale is used.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::prelude::*;

use crate::error::{StorageFault, VaultError, VaultResult};
use crate::normalize::LookupKind;
use pii_vault_core::schema::Schema;

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
    pub(super) fn token_attnum(self) -> usize {
        match self {
            RecordsIndex::Token => 1,
            RecordsIndex::Email | RecordsIndex::Phone | RecordsIndex::Login => 2,
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
            RecordsIndex::Email | RecordsIndex::Phone | RecordsIndex::Login => pg_sys::BYTEAOID,
        }
    }

    /// The equality function of the indexed column's type.
    pub(super) fn equality_proc(self) -> Oid {
        Oid::from(match self {
            RecordsIndex::Token => pg_sys::F_UUID_EQ,
            RecordsIndex::Email | RecordsIndex::Phone | RecordsIndex::Login => pg_sys::F_BYTEAEQ,
        })
    }
}

/// The installed schema, the relations read without SPI, and the columns
/// read from them.
#[derive(Clone, Copy)]
pub(super) struct VaultOids {
    pub schema: Schema,
    pub table: Oid,
    pub indexes: [Oid; 4],
    /// The column each index of `indexes` must have as its key, and the
    /// token's (which the blind indexes INCLUDE).
    pub keys: [i16; 4],
    pub token: i16,
    pub records: RecordColumns,
    /// Named only so that ALTER EXTENSION UPDATE's change to it (0.2.0's
    /// `vault_id`) invalidates the cached schema.
    key_check: Oid,
    /// None where the schema has no shares or sessions.
    pub by_id: Option<ByIdRelations>,
    /// None where the schema has no field tokens: the table, its primary
    /// key (on `id`) and the columns read.
    pub field_tokens: Option<(Oid, Oid, FieldTokenColumns)>,
}

/// Attribute numbers of the columns read, found by name when the OIDs are
/// cached (a column dropped and added again moves; DDL invalidates the
/// cache). Their types are checked on every read, against the relation
/// as opened.
#[derive(Clone, Copy)]
pub(super) struct RecordColumns {
    pub envelope: i32,
    /// None where the schema has no expiry or soft deletion.
    pub life_cycle: Option<LifeCycleColumns>,
}

#[derive(Clone, Copy)]
pub(super) struct LifeCycleColumns {
    pub expires_at: i32,
    pub deleted_at: i32,
}

#[derive(Clone, Copy)]
pub(super) struct ShareColumns {
    pub id_hash: i32,
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

#[derive(Clone, Copy)]
pub(super) struct FieldTokenColumns {
    pub id: i32,
    pub kind: i32,
    pub envelope: i32,
    pub token: i32,
    pub expires_at: i32,
}

/// The tables whose rows are found by the keyed hash of an id their holder
/// keeps (their primary key, `id_hash`): table, primary key, columns.
#[derive(Clone, Copy)]
pub(super) struct ByIdRelations {
    pub shares: (Oid, Oid, ShareColumns),
    pub sessions: (Oid, Oid, SessionColumns),
}

impl VaultOids {
    fn names(&self, relid: Oid) -> bool {
        self.table == relid
            || self.key_check == relid
            || self.indexes.contains(&relid)
            || self.by_id.is_some_and(|r| [r.shares.0, r.shares.1, r.sessions.0, r.sessions.1].contains(&relid))
            || self.field_tokens.is_some_and(|(table, pkey, _)| table == relid || pkey == relid)
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

/// The schema version of the vault in this database.
pub fn schema() -> VaultResult<Schema> {
    Ok(vault_oids()?.schema)
}

/// The schema version of the vault in this database, None when the
/// extension is not created here (the purge worker's precondition).
pub fn installed_schema() -> VaultResult<Option<Schema>> {
    // SAFETY: a catalog lookup inside a transaction.
    if unsafe { pg_sys::get_extension_oid(c"pii_vault".as_ptr(), true) } == pg_sys::InvalidOid {
        return Ok(None);
    }
    schema().map(Some)
}

/// The release pg_extension names for the vault, read as the OIDs are,
/// under the catalog snapshot (the latest committed catalog): a query
/// under a REPEATABLE READ transaction's snapshot would see the release of
/// before an ALTER EXTENSION UPDATE beside the relations of after it, and
/// the cache would keep the pair for the backend's life.
fn installed_release() -> VaultResult<String> {
    // SAFETY: a scan of pg_extension by its name index inside a
    // transaction, as PostgreSQL's get_extension_oid does; extversion is
    // copied out (text) before the scan ends.
    let release = unsafe {
        let lock = pg_sys::AccessShareLock as pg_sys::LOCKMODE;
        let catalog = pg_sys::table_open(pg_sys::ExtensionRelationId, lock);
        let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyInit(
            &mut key,
            pg_sys::Anum_pg_extension_extname as pg_sys::AttrNumber,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::F_NAMEEQ.into(),
            Datum::from(c"pii_vault".as_ptr()),
        );
        let index = Oid::from(pg_sys::ExtensionNameIndexId);
        let scan = pg_sys::systable_beginscan(catalog, index, true, std::ptr::null_mut(), 1, &mut key);
        let row = pg_sys::systable_getnext(scan);
        let mut null = true;
        let datum = match row.is_null() {
            true => Datum::from(0),
            false => {
                pg_sys::heap_getattr(row, pg_sys::Anum_pg_extension_extversion as i32, (*catalog).rd_att, &mut null)
            }
        };
        let release = String::from_datum(datum, null);
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(catalog, lock);
        release
    };
    release.ok_or(VaultError::Storage(StorageFault::UnknownSchema))
}

pub(super) fn vault_oids() -> VaultResult<VaultOids> {
    // Invalidations are otherwise taken in when a relation is first locked
    // in a transaction: a transaction begun before ALTER EXTENSION UPDATE
    // that has not touched the vault since would read a cache of the old
    // schema here. Taking them in now is a check of a shared counter when
    // there are none.
    // SAFETY: inside a transaction; may run the relcache callback above.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    if let Some(oids) = OIDS.get() {
        return Ok(oids);
    }
    if !CALLBACK_REGISTERED.get() {
        // SAFETY: registering a process-local callback; it only touches the
        // thread-local cache above.
        unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(forget_oids), Datum::from(0)) };
        CALLBACK_REGISTERED.set(true);
    }
    let schema = Schema::of_release(&installed_release()?).ok_or(StorageFault::UnknownSchema)?;
    let oids = read_oids(schema)?;
    OIDS.set(Some(oids));
    Ok(oids)
}

fn read_oids(schema: Schema) -> VaultResult<VaultOids> {
    // SAFETY: catalog lookups inside a transaction.
    let namespace = unsafe { pg_sys::get_namespace_oid(c"pii_vault".as_ptr(), false) };
    let relid = |name: &'static CStr| {
        // SAFETY: as above.
        match unsafe { pg_sys::get_relname_relid(name.as_ptr(), namespace) } {
            oid if oid == pg_sys::InvalidOid => Err(StorageFault::MissingRelation(text(name))),
            oid => Ok(oid),
        }
    };
    // An index whose key is not of the type probed with would compare a
    // datum of one type as another.
    let index = |name: &'static CStr, key_type: Oid| {
        let oid = relid(name)?;
        // SAFETY: as above.
        match unsafe { pg_sys::get_atttype(oid, 1) } == key_type {
            true => Ok(oid),
            false => Err(StorageFault::ForeignIndex(text(name))),
        }
    };
    let column = |table: Oid, name: &'static CStr| {
        // SAFETY: as above.
        match i32::from(unsafe { pg_sys::get_attnum(table, name.as_ptr()) }) {
            n if n > 0 => Ok(n),
            _ => Err(StorageFault::MissingColumn(text(name))),
        }
    };
    let table = relid(c"records")?;
    let (life_cycle, by_id) = match schema {
        Schema::V0_1 | Schema::V0_2 => (None, None),
        Schema::V0_3 | Schema::V0_4 | Schema::V0_6 => {
            let life_cycle = LifeCycleColumns {
                expires_at: column(table, c"expires_at")?,
                deleted_at: column(table, c"deleted_at")?,
            };
            let (shares, sessions) = (relid(c"shares")?, relid(c"sessions")?);
            let by_id = ByIdRelations {
                shares: (
                    shares,
                    index(c"shares_pkey", pg_sys::BYTEAOID)?,
                    ShareColumns {
                        id_hash: column(shares, c"id_hash")?,
                        token: column(shares, c"token")?,
                        fields: column(shares, c"fields")?,
                        expires_at: column(shares, c"expires_at")?,
                    },
                ),
                sessions: (
                    sessions,
                    index(c"sessions_pkey", pg_sys::BYTEAOID)?,
                    SessionColumns {
                        id_hash: column(sessions, c"id_hash")?,
                        token: column(sessions, c"token")?,
                        envelope: column(sessions, c"envelope")?,
                        expires_at: column(sessions, c"expires_at")?,
                    },
                ),
            };
            (Some(life_cycle), Some(by_id))
        }
    };
    // Each index the vault reads or relies on for uniqueness, as it is now
    // (any DDL on its table invalidates this cache, so a write never runs
    // beside an index that would not refuse a duplicate).
    let relied_on = |name: &'static CStr, table: Oid, index: Oid, key: i32| match super::index_read::index_fits(
        table, index, key as i16,
    ) {
        true => Ok(()),
        false => Err(StorageFault::ForeignIndex(text(name))),
    };
    let mut indexes = [pg_sys::InvalidOid; 4];
    let mut keys = [0; 4];
    for i in RecordsIndex::ALL {
        indexes[i as usize] = index(i.name(), i.key_type())?;
        keys[i as usize] = column(table, i.column())? as i16;
        relied_on(i.name(), table, indexes[i as usize], keys[i as usize].into())?;
    }
    if let Some(ByIdRelations { shares, sessions }) = by_id {
        relied_on(c"shares_pkey", shares.0, shares.1, shares.2.id_hash)?;
        relied_on(c"sessions_pkey", sessions.0, sessions.1, sessions.2.id_hash)?;
    }
    let field_tokens = match schema.has_field_tokens() {
        false => None,
        true => {
            let table = relid(c"field_tokens")?;
            let pkey = index(c"field_tokens_pkey", pg_sys::UUIDOID)?;
            let columns = FieldTokenColumns {
                id: column(table, c"id")?,
                kind: column(table, c"kind")?,
                envelope: column(table, c"envelope")?,
                token: column(table, c"token")?,
                expires_at: column(table, c"expires_at")?,
            };
            relied_on(c"field_tokens_pkey", table, pkey, columns.id)?;
            Some((table, pkey, columns))
        }
    };
    Ok(VaultOids {
        schema,
        table,
        indexes,
        keys,
        token: column(table, c"token")? as i16,
        records: RecordColumns { envelope: column(table, c"envelope")?, life_cycle },
        key_check: relid(c"key_check")?,
        by_id,
        field_tokens,
    })
}

/// A name of the vault's own, as text for an error.
fn text(name: &'static CStr) -> &'static str {
    name.to_str().expect("the vault's names are ASCII")
}
