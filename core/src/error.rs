//! The vault's one error type.
//!
//! Every variant's `Display` text is built from constants and kinds only:
//! never from a record's values and never from key material. The SQL layer
//! (`api::errors`) chooses the SQLSTATE for each variant; the core does not
//! know about SQLSTATEs.

use crate::audit_event::Outcome;
use crate::normalize::LookupKind;

/// Why the vault cannot operate at all (SQLSTATE 55000). The message says
/// what is wrong; `hint` says what to do about it (the ERROR's HINT, the
/// server log's line and `vault_health()` all use both).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("the pii_vault library was not loaded at server start")]
    NotPreloaded,
    #[error("no master key is configured")]
    NotConfigured,
    #[error("the key file named by pii_vault.keyfile does not exist or cannot be read")]
    KeyFileUnreadable,
    #[error("the key file named by pii_vault.keyfile has group or world access")]
    KeyFileLoosePermissions,
    #[error("the key file named by pii_vault.keyfile is not owned by the database user or root")]
    KeyFileWrongOwner,
    #[error("the command in pii_vault.key_command could not be run or exited with an error")]
    KeyCommandFailed,
    #[error("the key source is not one key per line as <version>:<64 hexadecimal characters>, or one bare key")]
    BadKeyFormat,
    #[error("pii_vault.active_key_version names key version {0}, which the key source does not hold")]
    ActiveVersionNotLoaded(u32),
    #[error("the loaded key version {0} does not match the key this vault's data is under (key check failed)")]
    WrongKey(u32),
    #[error("none of the loaded key versions is one this vault's data is under (it has key versions {})", versions_text(.0))]
    NoKnownVersion(Vec<u32>),
    #[error("this vault's key check values come from two vaults: a dump was restored into a vault already in use")]
    TwoVaults,
    #[error("pii_vault.default_region is not an ISO 3166 region code known to the phone number library")]
    BadDefaultRegion,
    #[error("this database is not the one named by pii_vault.database")]
    WrongDatabase,
}

fn versions_text(versions: &[u32]) -> String {
    versions.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

impl KeyProblem {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        use KeyProblem::*;
        match self {
            NotPreloaded => "Add pii_vault to shared_preload_libraries in postgresql.conf and restart the server.",
            NotConfigured => "Set pii_vault.keyfile or pii_vault.key_command in postgresql.conf and restart the server.",
            KeyFileUnreadable => "Check the path, and that the server's OS user can read the file; then restart the server.",
            KeyFileLoosePermissions | KeyFileWrongOwner => {
                "Make the file owned by the server's OS user with mode 0600 (or by root with mode 0640); then restart the server."
            }
            KeyCommandFailed => "Run the command as the server's OS user to see why (its output is never logged); then restart the server.",
            BadKeyFormat => {
                "Versions run from 1 to 32767, each at most once; # starts a comment. A file holding a single bare key is version 1."
            }
            ActiveVersionNotLoaded(_) => {
                "Add that version to the key source, or set pii_vault.active_key_version to a version it holds (0: the highest); then restart the server."
            }
            WrongKey(_) => {
                "Restart the server with the keys this vault's data is under; nothing is read or written under this one."
            }
            NoKnownVersion(_) => {
                "Keep at least one of the vault's key versions in the key source beside new ones; then restart the server."
            }
            BadDefaultRegion => "Set it to a two-letter region code such as US or DE in postgresql.conf and restart the server.",
            TwoVaults => {
                "Restore into a database where pii_vault has just been created (pg_restore --single-transaction); here, drop the extension (as a superuser with pii_vault.allow_drop = on if it holds records) and restore again."
            }
            WrongDatabase => {
                "The vault and its audit writer serve one database: use the vault there, or set pii_vault.database to this database and restart the server."
            }
        }
    }
}

/// Whose per-minute budget a call is charged to: every call is charged to
/// both (once when they are the same role), each unless a superuser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Payer {
    /// The session's login role (which `SET ROLE` does not change).
    #[error("this login role")]
    Login,
    /// The role whose rights called the vault, when it is another: the
    /// owner of a SECURITY DEFINER function around the call, or the role
    /// set by `SET ROLE`.
    #[error("the role calling the vault")]
    Caller,
}

/// Where PostgreSQL runs code for a role without that role being the one
/// charged or named: a vault call there is refused (42501).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unattributable {
    /// ANALYZE (manual or automatic), VACUUM, CREATE INDEX, REINDEX,
    /// CLUSTER, REFRESH MATERIALIZED VIEW: PostgreSQL runs the table
    /// owner's expressions there, and keeps what they return in
    /// statistics, indexes and materialized views.
    #[error(
        "inside a security-restricted operation (ANALYZE, VACUUM, CREATE INDEX, REINDEX, CLUSTER, a materialized view)"
    )]
    RestrictedOperation,
    /// As the bootstrap superuser, with a fresh statement per table.
    #[error("in autovacuum workers")]
    Autovacuum,
    /// Other extensions' workers and logical replication's apply workers.
    #[error("in background workers")]
    BackgroundWorker,
}

/// The vault's storage is not what the vault made, or PostgreSQL failed
/// under it (SQLSTATE XX000). Names come from the code, never from data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageFault {
    /// An SPI call failed; pgrx's text names an SPI code or a type.
    #[error("{0}")]
    Spi(String),
    #[error("relation pii_vault.{0} is missing")]
    MissingRelation(&'static str),
    #[error("index pii_vault.{0} is not the vault's")]
    ForeignIndex(&'static str),
    #[error("a column of the vault's storage is missing: {0}")]
    MissingColumn(&'static str),
    /// A relation, index or entry read without SPI is not of the shape the
    /// vault made (`crate::schema`).
    #[error("the vault's storage is not of the shape the vault reads")]
    Shape,
    /// The extension's version in pg_extension is none this library knows.
    #[error("the installed version of the extension is not one this library knows; install the matching library")]
    UnknownSchema,
    /// A statement of a later schema on an earlier one: reached only by
    /// calling, by hand, a function the schema's SQL does not yet expose.
    #[error("the vault's schema predates 0.3.0; run ALTER EXTENSION pii_vault UPDATE")]
    NeedsUpdate,
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
    #[error("pii_vault: the record or patch nests deeper than {limit} levels, which a patch cannot apply to")]
    TooDeep { limit: usize },
    #[error("pii_vault: the record is not valid JSON text")]
    MalformedJson,
    #[error("pii_vault: unknown lookup kind")]
    UnknownLookupKind,
    #[error("pii_vault: the {0} field must be a JSON string")]
    FieldNotString(LookupKind),
    #[error("pii_vault: the {0} value does not normalize to a valid {0}")]
    InvalidValue(LookupKind),
    #[error("pii_vault: field names must not be NULL")]
    NullFieldName,
    #[error("pii_vault: too many or too long field names (more than {0} bytes)")]
    TooManyFieldNames(usize),
    #[error("pii_vault: a record with this {0} already exists")]
    Duplicate(LookupKind),

    #[error("pii_vault: this {kind} belongs on shard {owner}, not on this server (shard {here})")]
    WrongShard { kind: LookupKind, owner: u32, here: u32 },
    #[error("pii_vault: the shard must be between 0 and {0} (pii_vault.shards - 1)")]
    BadShard(u32),
    #[error("pii_vault: the routed operation must be the audit name of a vault call (get, lookup, store, ...)")]
    BadRoutedOperation,
    #[error(
        "pii_vault: key version {0} (pii_vault.routing_key_version) is not loaded, so identifiers cannot be routed"
    )]
    RoutingKeyNotLoaded(u32),

    #[error("pii_vault: unknown field token kind")]
    UnknownFieldKind,
    #[error("pii_vault: the card number {0}")]
    BadCard(&'static str),
    #[error("pii_vault: a text value to tokenize must be 1 to {0} bytes")]
    BadText(usize),
    #[error("pii_vault: not a field token")]
    NotAFieldToken,
    #[error("pii_vault: no live record has this token")]
    NoSuchRecord,
    #[error("pii_vault: more than {0} elements in one call")]
    TooManyElements(usize),
    #[error("{0}")]
    Patch(crate::json_patch::PatchError),

    #[error("pii_vault: the stored record failed authentication")]
    DecryptFailed,
    #[error("pii_vault: the stored record is encrypted under key version {0}, which is not loaded")]
    UnknownKeyVersion(u32),
    #[error("pii_vault: the system random number generator failed")]
    RandomFailure,

    #[error("pii_vault: the audit batch starting at event {0} cannot be read")]
    AuditBatchUnreadable(i64),
    #[error("pii_vault: the audit queue stayed full; the call was refused")]
    AuditUnavailable,
    #[error("pii_vault: read limit reached: more than pii_vault.max_reads_per_statement ({0}) reads in one statement")]
    ReadsPerStatement(i32),
    #[error("pii_vault: read limit reached: pii_vault.max_reads_per_minute ({0}) reads by {1} in the last minute")]
    ReadsPerMinute(i32, Payer),
    #[error(
        "pii_vault: write limit reached: more than pii_vault.max_writes_per_statement ({0}) writes in one statement"
    )]
    WritesPerStatement(i32),
    #[error("pii_vault: write limit reached: pii_vault.max_writes_per_minute ({0}) writes by {1} in the last minute")]
    WritesPerMinute(i32, Payer),
    #[error("pii_vault: vault functions do not run in parallel workers")]
    InParallelWorker,
    #[error("pii_vault: vault functions do not run {0}")]
    Unattributable(Unattributable),
    #[error("pii_vault: the role calling the vault may not execute this function")]
    CallerMayNotExecute,
    #[error("pii_vault: {0} is refused: only the vault's own code changes or locks them")]
    StorageWriteRefused(&'static str),
    #[error("pii_vault: bulk export is disabled")]
    BulkExportDisabled,
    #[error("pii_vault: this call is only for members of pii_vault_admin")]
    NotAdmin,
    #[error("pii_vault: batch_size must be between 1 and {0}")]
    BadBatchSize(i32),
    #[error("pii_vault: the audit does not verify from event {0}; nothing was changed")]
    AuditDoesNotVerify(i64),
    #[error("pii_vault: the vault holds records; dropping it would erase them and the whole audit")]
    DropRefused,
    #[error(
        "pii_vault: this vault already has an audit; a dump's audit can only be restored into a vault just created"
    )]
    AuditNotEmpty,
    #[error("pii_vault: the audit is append-only; only vault_audit_prune removes batches")]
    AuditAppendOnly,
    /// Forwarded audit events that do not verify under this vault's keys,
    /// or are not a standby's.
    #[error("pii_vault: forwarded audit events refused: {0}")]
    ForwardRefused(&'static str),
    #[error("pii_vault: the expiry must be in the future")]
    ExpiryInThePast,
    #[error("pii_vault: the time-to-live must be positive and at most {setting} ({seconds} seconds)")]
    BadTtl { setting: &'static str, seconds: i32 },
    #[error("pii_vault: a share names at least one field")]
    NoFields,
    #[error("pii_vault: pii_vault.purpose is required for this call")]
    PurposeRequired,
    #[error("pii_vault: the {0} must be 1 to 64 characters, without control, invisible or format characters")]
    BadName(&'static str),
    #[error("pii_vault: unknown legal basis")]
    BadLegalBasis,
    #[error("pii_vault: {0}")]
    ReadOnly(ReadOnly),
    #[error("pii_vault: internal storage error: {0}")]
    Storage(StorageFault),
}

/// Why a call cannot run here: it writes (or, on a standby that refuses
/// them, reads) and this is a read-only server or transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadOnly {
    /// The server is a hot standby (in recovery).
    #[error("this server is a standby: it serves reads only")]
    Standby,
    /// The server is a hot standby with `pii_vault.standby_reads =
    /// refused`.
    #[error("this server is a standby that serves no vault calls (pii_vault.standby_reads = refused)")]
    StandbyRefusesReads,
    /// The transaction is read-only (SET TRANSACTION READ ONLY,
    /// default_transaction_read_only).
    #[error("cannot write in a read-only transaction")]
    Transaction,
}

impl VaultError {
    /// How the audit records a call that ended with this error: refused by
    /// the vault's policy, refused by a budget, or failed.
    pub fn outcome(&self) -> Outcome {
        use VaultError::*;
        match self {
            Unattributable(_) | CallerMayNotExecute | PurposeRequired | BulkExportDisabled | NotAdmin => {
                Outcome::Denied
            }
            ReadsPerStatement(_)
            | ReadsPerMinute(..)
            | WritesPerStatement(_)
            | WritesPerMinute(..)
            | TooManyElements(_) => Outcome::Throttled,
            Unavailable(_)
            | NotAnObject
            | PatchNotAnObject
            | RecordTooLarge { .. }
            | TooDeep { .. }
            | MalformedJson
            | UnknownLookupKind
            | FieldNotString(_)
            | InvalidValue(_)
            | NullFieldName
            | TooManyFieldNames(_)
            | Duplicate(_)
            | UnknownFieldKind
            | BadCard(_)
            | BadText(_)
            | NotAFieldToken
            | NoSuchRecord
            | Patch(_)
            | WrongShard { .. }
            | BadShard(_)
            | BadRoutedOperation
            | RoutingKeyNotLoaded(_)
            | DecryptFailed
            | UnknownKeyVersion(_)
            | RandomFailure
            | AuditBatchUnreadable(_)
            | AuditUnavailable
            | InParallelWorker
            | StorageWriteRefused(_)
            | BadBatchSize(_)
            | AuditDoesNotVerify(_)
            | DropRefused
            | AuditNotEmpty
            | AuditAppendOnly
            | ForwardRefused(_)
            | ExpiryInThePast
            | BadTtl { .. }
            | NoFields
            | BadName(_)
            | BadLegalBasis
            | ReadOnly(_)
            | Storage(_) => Outcome::Error,
        }
    }

    /// Whether the error answers a question about the vault's data, so
    /// that its audit event must stand for its call alone (never folded
    /// with others): a duplicate says the value is taken.
    pub fn answers_a_question(&self) -> bool {
        matches!(self, VaultError::Duplicate(_))
    }
}

impl From<StorageFault> for VaultError {
    fn from(fault: StorageFault) -> Self {
        VaultError::Storage(fault)
    }
}

pub type VaultResult<T> = Result<T, VaultError>;
