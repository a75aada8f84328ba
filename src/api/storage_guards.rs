//! Guards on the storage itself, whatever SQL reaches it: no drop of the
//! records while any exist, and no restore of a dump's audit into a vault
//! that already keeps its own.

use std::ffi::c_void;

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

use super::errors::raise;
use crate::error::VaultError;
use crate::guc;

static mut PREV_OBJECT_ACCESS: pg_sys::object_access_hook_type = None;

/// Installs the drop guard (from `_PG_init`, in every process that loads
/// the library).
pub fn install_hook() {
    // SAFETY: _PG_init runs once per process, single-threaded; the previous
    // hook is kept and called first.
    unsafe {
        PREV_OBJECT_ACCESS = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(object_access);
    }
}

/// Refuses (55006) to drop `pii_vault.records` while it holds a row,
/// unless `pii_vault.allow_drop` is on (a superuser-only setting). Every
/// way of dropping the vault drops this table first (DROP EXTENSION, with
/// or without CASCADE; DROP SCHEMA … CASCADE on the extension's schema;
/// DROP OWNED), and PostgreSQL announces each object it drops here before
/// removing anything, so a refusal rolls the whole statement back.
#[pg_guard]
unsafe extern "C-unwind" fn object_access(
    access: pg_sys::ObjectAccessType::Type,
    class_id: Oid,
    object_id: Oid,
    sub_id: i32,
    arg: *mut c_void,
) {
    // SAFETY: the previous hook, called with PostgreSQL's own arguments.
    unsafe {
        if let Some(prev) = PREV_OBJECT_ACCESS {
            prev(access, class_id, object_id, sub_id, arg);
        }
    }
    if access != pg_sys::ObjectAccessType::OAT_DROP
        || class_id != pg_sys::RelationRelationId
        || sub_id != 0
        || guc::allow_drop()
        || object_id != records_table()
    {
        return;
    }
    if records_exist() {
        raise(VaultError::DropRefused);
    }
}

/// The OID of `pii_vault.records` in this database (InvalidOid when it has
/// no vault).
fn records_table() -> Oid {
    // SAFETY: catalog lookups inside a transaction; missing_ok.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"pii_vault".as_ptr(), true);
        if schema == pg_sys::InvalidOid {
            return pg_sys::InvalidOid;
        }
        pg_sys::get_relname_relid(c"records".as_ptr(), schema)
    }
}

fn records_exist() -> bool {
    Spi::get_one::<bool>("SELECT EXISTS (SELECT FROM pii_vault.records)").ok().flatten().unwrap_or(true)
}

#[pg_schema]
mod pii_vault {
    use pgrx::prelude::*;

    use crate::api::errors::raise;
    use crate::error::VaultError;

    /// BEFORE INSERT on `pii_vault.audit_batches`. The audit writer inserts
    /// freely; anyone else is a restore (a superuser's COPY or INSERT), and
    /// may insert only into an audit that holds no batch but those this
    /// transaction restored: two chains in one table could never verify,
    /// and the first one's batch ids collide with the dump's.
    #[pg_trigger]
    fn audit_batches_restore_guard<'a>(
        trigger: &'a pgrx::PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, PgHeapTupleError> {
        if !crate::audit::writer::is_writer() && audit_held_before_this_transaction() {
            raise(VaultError::AuditNotEmpty);
        }
        Ok(trigger.new())
    }

    /// Whether a batch visible to the inserting statement was written by
    /// another transaction. Read-only SPI runs under the statement's own
    /// snapshot, so the rows a COPY is inserting are not seen, while rows
    /// of earlier INSERTs of the same restore transaction are, and pass.
    fn audit_held_before_this_transaction() -> bool {
        let query = c"SELECT FROM pii_vault.audit_batches \
                      WHERE xmin <> pg_catalog.xid(pg_catalog.pg_current_xact_id()) LIMIT 1";
        // SAFETY: a read-only query in its own SPI connection, inside the
        // trigger's transaction.
        unsafe {
            if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
                return true;
            }
            let status = pg_sys::SPI_execute(query.as_ptr(), true, 1);
            let found = status != pg_sys::SPI_OK_SELECT as i32 || pg_sys::SPI_processed > 0;
            pg_sys::SPI_finish();
            found
        }
    }
}
