//! Guards on the storage itself, whatever SQL reaches it: no drop of the
//! records while any exist; no restore of a dump's audit into a vault
//! that already keeps its own; an audit that only the audit writer adds to
//! and only pruning removes from; and every session told when the key
//! check values change.

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

/// Refuses (55006) to drop the vault's records table while it holds a row,
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
        || !is_records_table(object_id)
    {
        return;
    }
    if has_rows(object_id) {
        raise(VaultError::DropRefused);
    }
}

/// Whether `relid` is the vault's records table: `pii_vault.records`, or,
/// whatever it was renamed or moved to, the extension's member table with
/// an `envelope` column.
fn is_records_table(relid: Oid) -> bool {
    // SAFETY: catalog lookups inside a transaction; missing_ok throughout.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"pii_vault".as_ptr(), true);
        if schema != pg_sys::InvalidOid && pg_sys::get_relname_relid(c"records".as_ptr(), schema) == relid {
            return true;
        }
        let extension = pg_sys::get_extension_oid(c"pii_vault".as_ptr(), true);
        extension != pg_sys::InvalidOid
            && pg_sys::getExtensionOfObject(pg_sys::RelationRelationId, relid) == extension
            && pg_sys::get_attnum(relid, c"envelope".as_ptr()) != pg_sys::InvalidAttrNumber as pg_sys::AttrNumber
    }
}

/// Whether the table holds a row committed by now (or written by this
/// transaction): read under the latest snapshot, not the transaction's,
/// which in REPEATABLE READ may predate records stored since. The drop
/// holds the table's ACCESS EXCLUSIVE lock by now, so no insert is in
/// flight.
fn has_rows(relid: Oid) -> bool {
    // SAFETY: catalog lookups and one read-only query in its own SPI
    // connection, under a snapshot pushed and popped around it.
    unsafe {
        let schema = pg_sys::get_namespace_name(pg_sys::get_rel_namespace(relid));
        let name = pg_sys::get_rel_name(relid);
        if schema.is_null() || name.is_null() {
            return true;
        }
        let quoted = |s: *const std::ffi::c_char| {
            std::ffi::CStr::from_ptr(pg_sys::quote_identifier(s)).to_string_lossy().into_owned()
        };
        let query = std::ffi::CString::new(format!("SELECT FROM {}.{} LIMIT 1", quoted(schema), quoted(name)))
            .expect("identifiers hold no NUL");
        pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot());
        let found = if pg_sys::SPI_connect() == pg_sys::SPI_OK_CONNECT as i32 {
            let status = pg_sys::SPI_execute(query.as_ptr(), true, 1);
            let found = status != pg_sys::SPI_OK_SELECT as i32 || pg_sys::SPI_processed > 0;
            pg_sys::SPI_finish();
            found
        } else {
            true
        };
        pg_sys::PopActiveSnapshot();
        found
    }
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

    /// BEFORE UPDATE OR DELETE (each row) and BEFORE TRUNCATE on
    /// `pii_vault.audit_batches` and `pii_vault.audit_anchor`: the audit is
    /// appended to by the audit writer and shortened only by
    /// `vault_audit_prune` (and re-anchored by `vault_rotate`). A member of
    /// `pg_write_all_data` cannot delete or renumber batches; a superuser
    /// can disable the trigger, and `vault_audit_verify()` still catches
    /// what they change.
    #[pg_trigger]
    fn audit_append_only<'a>(
        trigger: &'a pgrx::PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, impl WhoAllocated>>, PgHeapTupleError> {
        if !crate::audit::writer::is_writer() && !super::super::audit_functions::editing_audit() {
            raise(VaultError::AuditAppendOnly);
        }
        // Let the row through: OLD for a DELETE (NULL would skip it
        // silently), NEW for an UPDATE; a TRUNCATE's result is ignored.
        Ok(trigger.new().or_else(|| trigger.old()))
    }

    /// AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE on
    /// `pii_vault.key_check`, once per statement: when the transaction
    /// commits, every session judges the loaded keys again
    /// (`shmem::key_check_generation`). At commit, not now: a session
    /// judging before the change is visible would keep the old verdict.
    #[pg_trigger]
    fn key_check_changed<'a>(
        _trigger: &'a pgrx::PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, crate::shmem::bump_key_check_generation);
        Ok(None)
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
