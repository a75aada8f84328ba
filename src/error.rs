//! The vault's one error type.
//!
//! Every variant's `Display` text is built from constants and kinds only:
//! never from a record's values and never from key material. The SQL layer
//! (`api::errors`) chooses the SQLSTATE for each variant; the core does not
//! know about SQLSTATEs.

use crate::normalize::LookupKind;

/// Why the vault cannot operate at all (SQLSTATE 55000).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("the pii_vault library was not loaded at server start; add pii_vault to shared_preload_libraries in postgresql.conf and restart the server")]
    NotPreloaded,
    #[error("no master key is configured; set pii_vault.keyfile or pii_vault.key_command in postgresql.conf and restart the server")]
    NotConfigured,
    #[error("the key file named by pii_vault.keyfile does not exist or cannot be read")]
    KeyFileUnreadable,
    #[error("the key file named by pii_vault.keyfile has group or world access; it must be owned by the database user with mode 0600 (or by root with mode 0640)")]
    KeyFileLoosePermissions,
    #[error("the key file named by pii_vault.keyfile is not owned by the database user or root")]
    KeyFileWrongOwner,
    #[error("the command in pii_vault.key_command could not be run or exited with an error")]
    KeyCommandFailed,
    #[error("the master key is not 64 hexadecimal characters (32 bytes)")]
    BadKeyFormat,
    #[error("the loaded master key is not the key this vault was created with (key check failed); restart the server with the original key")]
    WrongKey,
    #[error("the vault has no key check value; the extension was not installed correctly")]
    KeyCheckMissing,
    #[error("pii_vault.default_region is not an ISO 3166 region code known to the phone number library")]
    BadDefaultRegion,
    #[error("this database is not the one named by pii_vault.database; the vault and its audit writer serve that database only")]
    WrongDatabase,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("pii_vault: {0}")]
    Unavailable(KeyProblem),

    #[error("pii_vault: the record must be a JSON object")]
    NotAnObject,
    #[error("pii_vault: the patch must be a JSON object")]
    PatchNotAnObject,
    #[error("pii_vault: the record is larger than pii_vault.max_record_bytes ({limit} bytes)")]
    RecordTooLarge { limit: usize },
    #[error("pii_vault: the record or patch nests deeper than {limit} levels, which vault_update cannot merge")]
    TooDeep { limit: usize },
    #[error("pii_vault: the record is not valid JSON text")]
    MalformedJson,
    #[error("pii_vault: unknown lookup kind; use one of email, phone, login, token")]
    UnknownLookupKind,
    #[error("pii_vault: the {0} field must be a JSON string")]
    FieldNotString(LookupKind),
    #[error("pii_vault: the {0} value does not normalize to a valid {0}")]
    InvalidValue(LookupKind),
    #[error("pii_vault: field names must not be NULL")]
    NullFieldName,
    #[error("pii_vault: too many or too long field names: at most {0} bytes of names, counting one more per name, so the audit can name every one")]
    TooManyFieldNames(usize),
    #[error("pii_vault: a record with this {0} already exists")]
    Duplicate(LookupKind),

    #[error("pii_vault: the stored record failed authentication; it was altered, moved to another row or written under another key")]
    DecryptFailed,
    #[error("pii_vault: the stored record is encrypted under key version {0}, which is not loaded")]
    UnknownKeyVersion(u32),
    #[error("pii_vault: the system random number generator failed")]
    RandomFailure,

    #[error("pii_vault: the audit batch starting at event {0} cannot be read; it was altered (vault_audit_verify() checks the whole audit)")]
    AuditBatchUnreadable(i64),
    #[error("pii_vault: the audit writer is not keeping up (its queue stayed full); the call was refused")]
    AuditUnavailable,
    #[error("pii_vault: read limit reached: more than pii_vault.max_reads_per_statement ({0}) reads in one statement")]
    ReadsPerStatement(i32),
    #[error("pii_vault: read limit reached: pii_vault.max_reads_per_minute ({0}) reads by this login role in the last minute")]
    ReadsPerMinute(i32),
    #[error("pii_vault: write limit reached: more than pii_vault.max_writes_per_statement ({0}) updates and deletes in one statement")]
    WritesPerStatement(i32),
    #[error("pii_vault: write limit reached: pii_vault.max_writes_per_minute ({0}) updates and deletes by this login role in the last minute")]
    WritesPerMinute(i32),
    #[error("pii_vault: vault functions do not run in parallel workers")]
    InParallelWorker,
    #[error("pii_vault: bulk export is disabled; a superuser can enable it with pii_vault.allow_bulk_export = on")]
    BulkExportDisabled,
    #[error("pii_vault: bulk export is only for members of pii_vault_admin")]
    NotAdmin,
}

pub type VaultResult<T> = Result<T, VaultError>;
