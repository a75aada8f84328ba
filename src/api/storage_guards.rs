//! Guards on the storage itself, whatever SQL reaches it: no drop of the
//! records while any exist; no restore of a dump's audit into a vault
//! that already keeps its own; an audit that only the audit writer adds to
//! and only pruning removes from; tables changed and locked only by the
//! vault's own code (or a superuser); and every session told when the key
//! check values change.

use std::ffi::c_void;

use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;

use super::errors::raise;
use crate::error::VaultError;
use crate::guc;

static mut PREV_OBJECT_ACCESS: pg_sys::object_access_hook_type = None;
static mut PREV_UTILITY: pg_sys::ProcessUtility_hook_type = None;

/// Installs the drop guard and the lock guard (from `_PG_init`, in every
/// process that loads the library).
pub fn install_hook() {
    // SAFETY: _PG_init runs once per process, single-threaded; the previous
    // hooks are kept and called.
    unsafe {
        PREV_OBJECT_ACCESS = pg_sys::object_access_hook;
        pg_sys::object_access_hook = Some(object_access);
        PREV_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}

// PostgreSQL's standard implementation, called as C calls it (see
// `throttle::statement`): an ERROR passes through the hook as a longjmp.
unsafe extern "C-unwind" {
    #[link_name = "standard_ProcessUtility"]
    fn standard_process_utility(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const std::ffi::c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}
const _: pg_sys::ProcessUtility_hook_type = Some(standard_process_utility);

/// Every utility statement of the server passes here; only `LOCK` is
/// looked at (by `check_lock`, which has pgrx's guard), and the statement
/// then runs as it would without the vault.
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: the hook's contract: `pstmt` is a planned utility statement;
    // then the previous hook or the standard implementation, with the same
    // arguments.
    unsafe {
        let utility = (*pstmt).utilityStmt;
        let lock = (!utility.is_null() && (*utility).type_ == pg_sys::NodeTag::T_LockStmt)
            .then(|| utility.cast::<pg_sys::LockStmt>())
            .filter(|lock| (**lock).mode > pg_sys::RowExclusiveLock as i32);
        let held_before = lock.map(|lock| check_lock(lock)).filter(|held| *held >= 0);
        match PREV_UTILITY {
            Some(prev) => prev(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
            None => standard_process_utility(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
        }
        if let Some(before) = held_before {
            check_locks_held(before);
        }
    }
}

/// Refuses (42501) `LOCK` in a mode stronger than ROW EXCLUSIVE on a
/// table of the vault, or on a view over one (PostgreSQL locks a view's
/// tables too, checked against the view owner's rights), to every role
/// but a superuser. A member of `pg_write_all_data` may lock any table in
/// any mode: an ACCESS EXCLUSIVE lock on the audit stopped the audit
/// writer and, once the queue filled, every vault call of every role. The
/// vault's own code never takes such a lock outside DDL, which needs the
/// owner anyway. Checked before the lock is requested, so a refused
/// request never waits in the audit table's lock queue, where it would
/// hold up the writer behind it; `check_locks_held` catches what a name
/// resolved again later leads to.
///
/// Returns, for a non-superuser, how many such locks of the vault's tables
/// this backend held before the `LOCK` (for `check_locks_held`); -1 for a
/// superuser.
#[pg_guard]
unsafe extern "C-unwind" fn check_lock(lock: *mut pg_sys::LockStmt) -> i64 {
    // SAFETY: `lock` is the LockStmt being run; catalog lookups inside its
    // transaction, missing_ok throughout.
    unsafe {
        if pg_sys::superuser() {
            return -1;
        }
        let relations = pgrx::list::PgList::<pg_sys::RangeVar>::from_pg((*lock).relations);
        for range_var in relations.iter_ptr() {
            let relid = pg_sys::RangeVarGetRelidExtended(
                range_var,
                pg_sys::NoLock as i32,
                pg_sys::RVROption::RVR_MISSING_OK,
                None,
                std::ptr::null_mut(),
            );
            if relid != pg_sys::InvalidOid && reaches_the_vault(relid) {
                raise(VaultError::StorageWriteRefused(LOCK_REFUSED));
            }
        }
    }
    strong_locks_held()
}

const LOCK_REFUSED: &str = "LOCK of the vault's tables in a mode stronger than ROW EXCLUSIVE";

/// After a `LOCK` stronger than ROW EXCLUSIVE by a non-superuser: refuses
/// (42501) if it added such a lock on a table of the vault to the
/// `before` this backend held (the vault's own code may hold one already,
/// `vault_audit_prune` for one). `check_lock` looked the names up before
/// PostgreSQL did; a name or a view redefined by another session while
/// this one waited for its lock can lead elsewhere. The refusal aborts,
/// and the lock goes with it.
#[pg_guard]
unsafe extern "C-unwind" fn check_locks_held(before: i64) {
    if strong_locks_held() > before {
        raise(VaultError::StorageWriteRefused(LOCK_REFUSED));
    }
}

/// How many locks stronger than ROW EXCLUSIVE this backend holds on the
/// vault's tables.
fn strong_locks_held() -> i64 {
    crate::store::select_one::<i64>(
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l \
         JOIN pg_catalog.pg_class c ON c.oid = l.relation \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation' AND l.granted \
           AND l.mode NOT IN ('AccessShareLock', 'RowShareLock', 'RowExclusiveLock') AND n.nspname = 'pii_vault'",
        &[],
    )
    .unwrap_or_else(|e| raise(crate::store::fault(e)))
    .unwrap_or(i64::MAX)
}

/// Whether `relid` is in the vault's schema, or is a view whose
/// definition (or a view's it names, recursively) reads from it.
fn reaches_the_vault(relid: Oid) -> bool {
    crate::store::select_one::<bool>(
        "WITH RECURSIVE reached(oid) AS ( \
             SELECT $1 \
             UNION \
             SELECT d.refobjid FROM reached \
             JOIN pg_catalog.pg_rewrite w ON w.ev_class = reached.oid \
             JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
                  AND d.objid = w.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass) \
         SELECT EXISTS (SELECT FROM reached JOIN pg_catalog.pg_class c ON c.oid = reached.oid \
                        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pii_vault')",
        &[relid.into()],
    )
    .unwrap_or_else(|e| raise(crate::store::fault(e)))
    .unwrap_or(true)
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

    /// BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE on every table of the
    /// vault, once per statement: only the vault's own code writes them.
    /// Its functions run as the extension's owner, a superuser (CREATE
    /// EXTENSION pii_vault needs one), as do its background workers and a
    /// restore. A member of `pg_write_all_data` could otherwise stop the
    /// vault with one `UPDATE pii_vault.key_check`, widen a share, extend a
    /// session, or undo a delete, without reading a row. A superuser can
    /// still disable the trigger, and is outside the vault's reach anyway.
    #[pg_trigger]
    fn storage_guard<'a>(
        trigger: &'a pgrx::PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
        // SAFETY: a catalog lookup (cached) inside the trigger's transaction.
        if !unsafe { pg_sys::superuser() } {
            let what = match trigger.op() {
                Ok(pgrx::PgTriggerOperation::Insert) => "INSERT into the vault's tables",
                Ok(pgrx::PgTriggerOperation::Update) => "UPDATE of the vault's tables",
                Ok(pgrx::PgTriggerOperation::Delete) => "DELETE from the vault's tables",
                _ => "TRUNCATE of the vault's tables",
            };
            raise(VaultError::StorageWriteRefused(what));
        }
        Ok(None)
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
