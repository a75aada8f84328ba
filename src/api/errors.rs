//! The one place where a core error becomes a PostgreSQL error.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;

use crate::error::{StorageFault, VaultError};
use crate::normalize::LookupKind;

fn sqlstate(error: &VaultError) -> PgSqlErrorCode {
    use PgSqlErrorCode::*;
    use VaultError::*;
    match error {
        Unavailable(_) | UnknownKeyVersion(_) | AuditUnavailable => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        BulkExportDisabled
        | NotAdmin
        | AuditAppendOnly
        | Unattributable(_)
        | CallerMayNotExecute
        | StorageWriteRefused(_) => ERRCODE_INSUFFICIENT_PRIVILEGE,
        ForwardRefused(_) => ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
        ReadsPerStatement(_) | ReadsPerMinute(..) | WritesPerStatement(_) | WritesPerMinute(..) => {
            ERRCODE_PROGRAM_LIMIT_EXCEEDED
        }
        InParallelWorker => ERRCODE_FEATURE_NOT_SUPPORTED,
        NotAnObject
        | PatchNotAnObject
        | MalformedJson
        | UnknownLookupKind
        | FieldNotString(_)
        | InvalidValue(_)
        | NullFieldName
        | WrongShard { .. }
        | BadShard(_)
        | BadRoutedOperation
        | UnknownFieldKind
        | BadCard(_)
        | BadText(_)
        | NotAFieldToken
        | NoSuchRecord
        | Patch(_) => ERRCODE_INVALID_PARAMETER_VALUE,
        TooManyElements(_) => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        RoutingKeyNotLoaded(_) => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        RecordTooLarge { .. } | TooDeep { .. } | TooManyFieldNames(_) => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        Duplicate(_) => ERRCODE_UNIQUE_VIOLATION,
        DecryptFailed | AuditBatchUnreadable(_) | AuditDoesNotVerify(_) => ERRCODE_DATA_CORRUPTED,
        BadBatchSize(_) | ExpiryInThePast | BadTtl { .. } | NoFields | BadName(_) | BadLegalBasis => {
            ERRCODE_INVALID_PARAMETER_VALUE
        }
        PurposeRequired => ERRCODE_INSUFFICIENT_PRIVILEGE,
        DropRefused => ERRCODE_OBJECT_IN_USE,
        AuditNotEmpty => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        ReadOnly(_) => ERRCODE_READ_ONLY_SQL_TRANSACTION,
        RandomFailure | Storage(_) => ERRCODE_INTERNAL_ERROR,
    }
}

/// The SQLSTATE of `error` as its five characters (a batch's rows carry it).
pub fn sqlstate_text(error: &VaultError) -> String {
    // PostgreSQL packs a SQLSTATE six bits a character, first one lowest.
    let mut packed = sqlstate(error) as u32;
    (0..5)
        .map(|_| {
            let c = char::from(b'0' + (packed & 0x3F) as u8);
            packed >>= 6;
            c
        })
        .collect()
}

/// What the caller can do about `error` (the HINT), when there is
/// something to say. Built from constants only.
pub fn hint(error: &VaultError) -> Option<&'static str> {
    use VaultError::*;
    match error {
        Unavailable(problem) => Some(problem.hint()),
        Storage(StorageFault::NeedsUpdate | StorageFault::UnknownSchema) => {
            Some("SELECT extversion FROM pg_extension WHERE extname = 'pii_vault' names the release installed; the README's Upgrading section says how to move between releases.")
        }
        InvalidValue(LookupKind::Phone) => Some(
            "Give the number with + and its country code (for example +44 20 7946 0958); a number without + is read in pii_vault.default_region. Extensions and letters are not accepted.",
        ),
        UnknownLookupKind => Some("Use one of email, phone, login, token."),
        UnknownFieldKind => Some("Use one of text, card, card_luhn, email, phone."),
        NotAFieldToken => Some("A field token is a UUID or, for a card, 12 to 19 digits, as vault_tokenize returned it."),
        TooManyElements(_) => Some("Split the array into several calls."),
        RecordTooLarge { .. } => Some("A superuser can raise pii_vault.max_record_bytes."),
        TooManyFieldNames(_) => Some("Each name counts its length plus one; ask for fewer fields per call, so the audit can name every one."),
        WrongShard { .. } => Some(
            "Route the call to the shard vault_shard_for(kind, value) names: values of pii_vault.shard_key are unique across shards because each is stored only on its own.",
        ),
        RoutingKeyNotLoaded(_) => Some(
            "Load that key version on every shard and on the proxy (it routes identifiers even after rotation) and restart the server.",
        ),
        UnknownKeyVersion(_) => Some("Add that key version to the key file or command and restart the server."),
        AuditUnavailable => Some("The audit writer is down or far behind: see SELECT * FROM vault_health() and the server log."),
        PurposeRequired => Some("SET pii_vault.purpose = '…' (why this session reads personal data); pii_vault.require_purpose is on."),
        BadTtl { .. } => Some("A superuser can raise the setting."),
        BadLegalBasis => Some(
            "Use one of GDPR art. 6(1)'s: consent, contract, legal_obligation, vital_interests, public_task, legitimate_interests.",
        ),
        BulkExportDisabled => Some("A superuser can enable it with pii_vault.allow_bulk_export = on and a configuration reload."),
        ReadOnly(crate::error::ReadOnly::Standby) => {
            Some("Run calls that store, change or remove data on the primary; standbys serve reads.")
        }
        ReadOnly(crate::error::ReadOnly::Transaction) => Some("Run the call in a read-write transaction."),
        ReadOnly(crate::error::ReadOnly::StandbyRefusesReads) => {
            Some("Call the vault on the primary, or set pii_vault.standby_reads = audited on this standby.")
        }
        ReadsPerStatement(_) | WritesPerStatement(_) => Some(
            "One statement (a cursor across its fetches, a DO block or CALL across its commits) may reach only so many records; read or write in separate statements, or ask a superuser to raise the budget.",
        ),
        AuditDoesNotVerify(_) => Some(
            "SELECT * FROM vault_audit_verify() names the first bad event; keep the audit as it is for investigation.",
        ),
        DropRefused => Some(
            "Delete the records first; or, as a superuser, SET pii_vault.allow_drop = on in this session and drop again.",
        ),
        AuditNotEmpty => Some(
            "Restore into a database where pii_vault has just been created, with pg_restore --single-transaction so a refused restore leaves nothing; here, DROP EXTENSION pii_vault (allowed while it holds no records) and restore again.",
        ),
        Unattributable(_) => Some(
            "Call the vault from the application's own statements: statistics, an index or a materialized view computed from vault data would keep it in plaintext, and nobody's budget would pay for the calls.",
        ),
        CallerMayNotExecute => Some(
            "The vault was reached with the rights of a role that has no EXECUTE on it: a cursor opened by a SECURITY DEFINER function and fetched after it returned, or an action PostgreSQL runs for a table's owner. Call the vault within the function, as a role granted it.",
        ),
        ReadsPerMinute(..) | WritesPerMinute(..) => Some(
            "The budget refills continuously at its rate per minute; retry later, or ask a superuser to raise it in postgresql.conf.",
        ),
        InvalidValue(LookupKind::Email | LookupKind::Login | LookupKind::Token)
        | NotAnObject
        | PatchNotAnObject
        | TooDeep { .. }
        | MalformedJson
        | FieldNotString(_)
        | BadCard(_)
        | BadText(_)
        | NoSuchRecord
        | Patch(_)
        | NullFieldName
        | Duplicate(_)
        | DecryptFailed
        | RandomFailure
        | AuditBatchUnreadable(_)
        | InParallelWorker
        | StorageWriteRefused(_)
        | NotAdmin
        | BadBatchSize(_)
        | AuditAppendOnly
        | ForwardRefused(_)
        | ExpiryInThePast
        | NoFields
        | BadName(_)
        | BadShard(_)
        | BadRoutedOperation
        | Storage(
            StorageFault::Spi(_)
            | StorageFault::MissingRelation(_)
            | StorageFault::ForeignIndex(_)
            | StorageFault::MissingColumn(_)
            | StorageFault::Shape,
        ) => None,
    }
}

/// The circumstances of `error` (the DETAIL), never a value.
fn detail(error: &VaultError) -> Option<String> {
    use VaultError::*;
    match error {
        Duplicate(kind) => Some(format!(
            "The unique index pii_vault.{} already holds this {kind}'s keyed hash.",
            crate::store::unique_index_name(*kind).to_str().unwrap_or_default()
        )),
        DecryptFailed => Some("It was altered, moved to another row, or written under another key.".into()),
        AuditBatchUnreadable(_) => {
            Some("It was altered; SELECT * FROM vault_audit_verify() checks the whole audit.".into())
        }
        Unavailable(_)
        | NotAnObject
        | PatchNotAnObject
        | RecordTooLarge { .. }
        | TooDeep { .. }
        | MalformedJson
        | UnknownLookupKind
        | FieldNotString(_)
        | InvalidValue(_)
        | UnknownFieldKind
        | BadCard(_)
        | BadText(_)
        | NotAFieldToken
        | NoSuchRecord
        | TooManyElements(_)
        | Patch(_)
        | NullFieldName
        | TooManyFieldNames(_)
        | WrongShard { .. }
        | BadShard(_)
        | BadRoutedOperation
        | RoutingKeyNotLoaded(_)
        | UnknownKeyVersion(_)
        | RandomFailure
        | AuditUnavailable
        | ReadsPerStatement(_)
        | ReadsPerMinute(..)
        | WritesPerStatement(_)
        | WritesPerMinute(..)
        | InParallelWorker
        | Unattributable(_)
        | CallerMayNotExecute
        | StorageWriteRefused(_)
        | BulkExportDisabled
        | NotAdmin
        | BadBatchSize(_)
        | AuditDoesNotVerify(_)
        | DropRefused
        | AuditNotEmpty
        | AuditAppendOnly
        | ForwardRefused(_)
        | ExpiryInThePast
        | BadTtl { .. }
        | NoFields
        | PurposeRequired
        | BadName(_)
        | BadLegalBasis
        | ReadOnly(_)
        | Storage(_) => None,
    }
}

/// Raises `error` as an ERROR: the one place a `VaultError` becomes a
/// PostgreSQL error. The message is the error's `Display`, which is built
/// from constants and kinds only (see `crate::error`), as are the DETAIL
/// and the HINT; a duplicate's schema, table and constraint are attached
/// here, to the error reported, and to no other.
pub fn raise(error: VaultError) -> ! {
    if let VaultError::Duplicate(kind) = error {
        name_the_constraint(kind);
    }
    let mut report = ErrorReport::new(sqlstate(&error), error.to_string(), "pii_vault");
    if let Some(detail) = detail(&error) {
        report = report.set_detail(detail);
    }
    if let Some(hint) = hint(&error) {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Unwraps a core result or raises its error.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
}

impl<T> OrRaise<T> for Result<T, VaultError> {
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| raise(e))
    }
}

/// Makes the coming ERROR name the schema, table and constraint of a
/// duplicate, as PostgreSQL's own unique violations do, so a driver tells
/// email from phone from login by `constraint_name` (psycopg's
/// `diag.constraint_name`, node-postgres' `err.constraint`) rather than by
/// the message. pgrx's error report has no such fields; PostgreSQL calls
/// the error context callbacks inside `errfinish`, between the error's
/// start and its end, where they may set any field. The callback sits on
/// `error_context_stack` for the rest of this call only: PostgreSQL's
/// error recovery (and every PG_TRY that catches) restores the stack.
fn name_the_constraint(kind: LookupKind) {
    #[pg_guard]
    unsafe extern "C-unwind" fn set_fields(arg: *mut std::ffi::c_void) {
        // SAFETY: called by errfinish while the error is being built;
        // `arg` is one of the static names of store::unique_index_name.
        unsafe {
            pg_sys::err_generic_string(pg_sys::PG_DIAG_SCHEMA_NAME as i32, c"pii_vault".as_ptr());
            pg_sys::err_generic_string(pg_sys::PG_DIAG_TABLE_NAME as i32, c"records".as_ptr());
            pg_sys::err_generic_string(pg_sys::PG_DIAG_CONSTRAINT_NAME as i32, arg as *const std::ffi::c_char);
        }
    }
    // SAFETY: the callback struct is palloc'd in the call's memory, which
    // lives until the error has been reported; it is pushed on the stack
    // PostgreSQL reads in errfinish.
    unsafe {
        let callback =
            pg_sys::palloc0(std::mem::size_of::<pg_sys::ErrorContextCallback>()).cast::<pg_sys::ErrorContextCallback>();
        (*callback).callback = Some(set_fields);
        (*callback).arg = crate::store::unique_index_name(kind).as_ptr() as *mut std::ffi::c_void;
        (*callback).previous = pg_sys::error_context_stack;
        pg_sys::error_context_stack = callback;
    }
}
