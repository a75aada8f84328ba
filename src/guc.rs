//! Every pii_vault setting, registered once from `_PG_init` and read through
//! the getters below. No setting ever holds key bytes.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use crate::error::KeyProblem;
use crate::normalize::{parse_region, Region};

static KEYFILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static KEY_COMMAND: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static DEFAULT_REGION: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"US"));
static MAX_RECORD_BYTES: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);
static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));
static MAX_READS_PER_STATEMENT: GucSetting<i32> = GucSetting::<i32>::new(100);
/// 100 reads a second, sustained, per login role: see the README's
/// settings section for why.
static MAX_READS_PER_MINUTE: GucSetting<i32> = GucSetting::<i32>::new(6000);
static MAX_WRITES_PER_STATEMENT: GucSetting<i32> = GucSetting::<i32>::new(100);
/// 10 updates or deletes a second, sustained, per login role.
static MAX_WRITES_PER_MINUTE: GucSetting<i32> = GucSetting::<i32>::new(600);
static ALLOW_BULK_EXPORT: GucSetting<bool> = GucSetting::<bool>::new(false);
static ACTIVE_KEY_VERSION: GucSetting<i32> = GucSetting::<i32>::new(0);
static ALLOW_DROP: GucSetting<bool> = GucSetting::<bool>::new(false);
static AUDIT_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(30);
const DAY: i32 = 24 * 60 * 60;
static DELETE_GRACE: GucSetting<i32> = GucSetting::<i32>::new(7 * DAY);
static PURGE_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(60);
static MAX_SHARE_TTL: GucSetting<i32> = GucSetting::<i32>::new(DAY);
static MAX_SESSION_TTL: GucSetting<i32> = GucSetting::<i32>::new(DAY);
static PURPOSE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static REQUIRE_PURPOSE: GucSetting<bool> = GucSetting::<bool>::new(false);
static FORWARD_CONNINFO: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static SHARDS: GucSetting<i32> = GucSetting::<i32>::new(1);
static SHARD: GucSetting<i32> = GucSetting::<i32>::new(0);
static SHARD_KEY: GucSetting<ShardKey> = GucSetting::<ShardKey>::new(ShardKey::Email);
static ROUTING_KEY_VERSION: GucSetting<i32> = GucSetting::<i32>::new(1);
static STANDBY_READS: GucSetting<StandbyReads> = GucSetting::<StandbyReads>::new(StandbyReads::Audited);

/// What a hot standby does with vault calls (`pii_vault.standby_reads`).
#[derive(pgrx::PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum StandbyReads {
    /// Serves reads; their events are kept under PGDATA until they reach
    /// the audit (README, "Replicas").
    #[name = c"audited"]
    Audited,
    /// Refuses every vault call but the operator's (25006).
    #[name = c"refused"]
    Refused,
}

/// The lookup kind unique across shards (`pii_vault.shard_key`).
#[derive(pgrx::PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ShardKey {
    #[name = c"email"]
    Email,
    #[name = c"phone"]
    Phone,
    #[name = c"login"]
    Login,
}

/// How many shards the vault is split over (1: not split).
pub fn shards() -> u32 {
    SHARDS.get().max(1) as u32
}

/// This server's shard, 0 … shards − 1 (checked at server start).
pub fn shard() -> u32 {
    SHARD.get().max(0) as u32
}

pub fn shard_key() -> crate::normalize::IndexedKind {
    use crate::normalize::IndexedKind;
    match SHARD_KEY.get() {
        ShardKey::Email => IndexedKind::Email,
        ShardKey::Phone => IndexedKind::Phone,
        ShardKey::Login => IndexedKind::Login,
    }
}

/// The key version whose blind indexes place identifiers on shards.
pub fn routing_key_version() -> u32 {
    ROUTING_KEY_VERSION.get().max(1) as u32
}

/// `pii_vault.forward_conninfo`, None when empty.
pub fn forward_conninfo() -> Option<String> {
    string_setting(&FORWARD_CONNINFO).filter(|s| !s.trim().is_empty())
}

pub fn standby_reads() -> StandbyReads {
    STANDBY_READS.get()
}

/// Registers the settings. The PGC_POSTMASTER ones can only be defined while
/// the postmaster loads the library; loaded later into one backend, the
/// vault refuses to work anyway (see `keys::init_at_preload`).
pub fn init(preloading: bool) {
    if preloading {
        define_postmaster_settings();
    }
    GucRegistry::define_string_guc(
        c"pii_vault.forward_conninfo",
        c"On a standby: how its audit forwarder connects to the primary (empty: primary_conninfo).",
        c"A libpq connection string; dbname is set to pii_vault.database. Its role must be a member of pii_vault_forwarder.",
        &FORWARD_CONNINFO,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_enum_guc(
        c"pii_vault.standby_reads",
        c"On a hot standby: audited (serve reads, their audit kept under PGDATA) or refused (every vault call but the operator's fails 25006).",
        c"",
        &STANDBY_READS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pii_vault.max_record_bytes",
        c"Largest record, in bytes of its jsonb form, that vault_store and vault_update accept.",
        c"",
        &MAX_RECORD_BYTES,
        1024,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    define_budget(
        c"pii_vault.max_reads_per_statement",
        c"Most reads (vault_get, vault_lookup, refused duplicates) one statement may make (0: no limit).",
        c"A cursor is one statement across its fetches; a DO block or CALL across its commits.",
        &MAX_READS_PER_STATEMENT,
        GucContext::Suset,
    );
    define_budget(
        c"pii_vault.max_reads_per_minute",
        c"Most reads one login role may make in any minute, across sessions (0: no limit).",
        c"A rolling budget: calls at this rate or slower are never refused; a burst of a tenth of it passes at once.",
        &MAX_READS_PER_MINUTE,
        GucContext::Sighup,
    );
    define_budget(
        c"pii_vault.max_writes_per_statement",
        c"Most writes (updates, deletes, expiries, restores, erasures, shares) one statement may make (0: no limit).",
        c"A cursor is one statement across its fetches; a DO block or CALL across its commits.",
        &MAX_WRITES_PER_STATEMENT,
        GucContext::Suset,
    );
    define_budget(
        c"pii_vault.max_writes_per_minute",
        c"Most writes one login role may make in any minute, across sessions (0: no limit).",
        c"A rolling budget: calls at this rate or slower are never refused; a burst of a tenth of it passes at once.",
        &MAX_WRITES_PER_MINUTE,
        GucContext::Sighup,
    );
    GucRegistry::define_bool_guc(
        c"pii_vault.allow_bulk_export",
        c"Allows vault_export_all() for pii_vault_admin.",
        c"Off by default: bulk export is the one way to read every record at once.",
        &ALLOW_BULK_EXPORT,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pii_vault.allow_drop",
        c"Allows DROP EXTENSION pii_vault (and any other drop of its storage) while the vault holds records.",
        c"Off by default: dropping the extension erases every record and the whole audit. Superuser only; set it in the session that drops.",
        &ALLOW_DROP,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pii_vault.audit_retention_days",
        c"Audit events younger than this many days are never pruned, whatever vault_audit_prune is given.",
        c"So an admin cannot erase the audit of their own recent calls. Superuser only (0: no floor).",
        &AUDIT_RETENTION_DAYS,
        0,
        36500,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pii_vault.delete_grace",
        c"How long vault_restore can bring back a record after vault_delete (0: deleted at once).",
        c"The row, without its lookup values, stays until then; the purge worker removes it after. Superuser only.",
        &DELETE_GRACE,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pii_vault.purge_interval",
        c"How often the purge worker removes expired records, records past their delete grace and expired shares.",
        c"Expired and deleted records are invisible at once; this is when their rows go.",
        &PURGE_INTERVAL,
        1,
        DAY,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pii_vault.max_share_ttl",
        c"Longest time-to-live vault_share accepts.",
        c"Superuser only.",
        &MAX_SHARE_TTL,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pii_vault.max_session_ttl",
        c"Longest time-to-live vault_session_store accepts.",
        c"Superuser only.",
        &MAX_SESSION_TTL,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    // SAFETY: the check hook is guarded and only reads the proposed value.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"pii_vault.purpose",
            c"Why this session reads personal data (at most 64 characters); recorded in every audit event.",
            c"Any role may set it, e.g. SET pii_vault.purpose = 'support ticket 4711'.",
            &PURPOSE,
            GucContext::Userset,
            GucFlags::default(),
            Some(check_purpose),
            None,
            None,
        );
    }
    GucRegistry::define_bool_guc(
        c"pii_vault.require_purpose",
        c"Refuses every call that returns personal data while pii_vault.purpose is empty.",
        c"Superuser only.",
        &REQUIRE_PURPOSE,
        GucContext::Suset,
        GucFlags::default(),
    );
    if preloading {
        // Reject misspelled pii_vault.* settings in postgresql.conf.
        // SAFETY: called from _PG_init with a static, NUL-terminated name.
        unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"pii_vault".as_ptr()) };
    }
}

/// A budget: over it, the call fails with 54000, is audited as throttled,
/// and one WARNING is logged.
fn define_budget(
    name: &'static CStr,
    short: &'static CStr,
    long: &'static CStr,
    setting: &'static GucSetting<i32>,
    context: GucContext,
) {
    GucRegistry::define_int_guc(name, short, long, setting, 0, i32::MAX, context, GucFlags::default());
}

fn define_postmaster_settings() {
    GucRegistry::define_string_guc(
        c"pii_vault.keyfile",
        c"Path of the file holding the vault's master key (64 hex characters).",
        c"Read once at server start. Must be owned by the server's user with mode 0600, or by root with mode 0640.",
        &KEYFILE,
        GucContext::Postmaster,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"pii_vault.key_command",
        c"Shell command whose standard output is the vault's master key.",
        c"Run once at server start when pii_vault.keyfile is not set; for a KMS or secret manager.",
        &KEY_COMMAND,
        GucContext::Postmaster,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"pii_vault.default_region",
        c"Region (ISO 3166 alpha-2) in which phone numbers without a leading + are read.",
        c"Fixed at server start: changing it would index the same number two ways.",
        &DEFAULT_REGION,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pii_vault.active_key_version",
        c"Key version new records, blind indexes and audit batches are written under (0: the highest loaded).",
        c"Read at server start. Records under other loaded versions stay readable; CALL vault_rotate() moves them.",
        &ACTIVE_KEY_VERSION,
        0,
        crate::keys::source::MAX_KEY_VERSION as i32,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pii_vault.shards",
        c"How many shards the vault is split over (1: not split).",
        c"The same on every shard and on the proxy. Read at server start.",
        &SHARDS,
        1,
        pii_vault_core::shard::MAX_SHARDS as i32,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pii_vault.shard",
        c"This server's shard, 0 to pii_vault.shards - 1: every token minted here carries it.",
        c"Read at server start; the server does not start with a shard past the count.",
        &SHARD,
        0,
        pii_vault_core::shard::MAX_SHARDS as i32 - 1,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"pii_vault.shard_key",
        c"The lookup kind unique across shards: a record setting it is stored only on the shard that owns the value.",
        c"The same on every shard and on the proxy. Other kinds are unique per shard. Read at server start.",
        &SHARD_KEY,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pii_vault.routing_key_version",
        c"The key version whose blind indexes place identifiers on shards (vault_shard_for).",
        c"Must stay loaded on every shard and on the proxy while pii_vault.shards > 1, also after rotation.",
        &ROUTING_KEY_VERSION,
        1,
        crate::keys::source::MAX_KEY_VERSION as i32,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    if SHARD.get() >= SHARDS.get() {
        // Raised while the postmaster loads the library: the server does
        // not start, rather than mint tokens that route elsewhere.
        pgrx::error!("pii_vault: pii_vault.shard ({}) must be below pii_vault.shards ({})", SHARD.get(), SHARDS.get());
    }
    GucRegistry::define_string_guc(
        c"pii_vault.database",
        c"The database the vault and its audit writer serve.",
        c"One per server: the audit writer connects to this database.",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

fn string_setting(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().map(|s: CString| CStr::to_string_lossy(&s).into_owned())
}

pub fn keyfile() -> Option<String> {
    string_setting(&KEYFILE)
}

pub fn key_command() -> Option<String> {
    string_setting(&KEY_COMMAND)
}

/// The phone region; fixed for the server's lifetime, so parsed once.
pub fn default_region() -> Result<Region, KeyProblem> {
    static REGION: OnceLock<Option<Region>> = OnceLock::new();
    REGION
        .get_or_init(|| string_setting(&DEFAULT_REGION).as_deref().and_then(parse_region))
        .ok_or(KeyProblem::BadDefaultRegion)
}

pub fn database() -> String {
    string_setting(&DATABASE).unwrap_or_default()
}

pub fn max_reads_per_statement() -> i32 {
    MAX_READS_PER_STATEMENT.get()
}

pub fn max_reads_per_minute() -> i32 {
    MAX_READS_PER_MINUTE.get()
}

pub fn max_writes_per_statement() -> i32 {
    MAX_WRITES_PER_STATEMENT.get()
}

pub fn max_writes_per_minute() -> i32 {
    MAX_WRITES_PER_MINUTE.get()
}

pub fn allow_bulk_export() -> bool {
    ALLOW_BULK_EXPORT.get()
}

/// The configured active key version; None: the highest loaded.
pub fn active_key_version() -> Option<u32> {
    Some(ACTIVE_KEY_VERSION.get()).filter(|v| *v > 0).map(|v| v as u32)
}

pub fn audit_retention_days() -> i32 {
    AUDIT_RETENTION_DAYS.get()
}

pub fn allow_drop() -> bool {
    ALLOW_DROP.get()
}

pub fn max_record_bytes() -> usize {
    MAX_RECORD_BYTES.get().max(0) as usize
}

pub fn delete_grace_seconds() -> i32 {
    DELETE_GRACE.get()
}

pub fn purge_interval_seconds() -> i32 {
    PURGE_INTERVAL.get()
}

pub fn max_share_ttl_seconds() -> i32 {
    MAX_SHARE_TTL.get()
}

pub fn max_session_ttl_seconds() -> i32 {
    MAX_SESSION_TTL.get()
}

pub fn require_purpose() -> bool {
    REQUIRE_PURPOSE.get()
}

/// The purpose set for this session (None when unset or empty), borrowed
/// from the setting: read on every call, so never copied.
pub fn purpose() -> Option<&'static str> {
    // SAFETY: PostgreSQL keeps the setting's string until it is set again,
    // which cannot happen while a call runs; the check hook admitted only
    // valid UTF-8 (the database encoding), so the conversion never fails.
    unsafe {
        let raw = *PURPOSE.as_ptr();
        if raw.is_null() {
            return None;
        }
        CStr::from_ptr(raw).to_str().ok().filter(|p| !p.is_empty())
    }
}

/// Refuses a purpose of more than `PURPOSE_CHARS` characters, one of
/// spaces only, or one with control, invisible or format characters (it
/// is shown in the audit as given).
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_purpose(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pgrx::pg_sys::GucSource::Type,
) -> bool {
    use crate::audit::event::PURPOSE_CHARS;
    // SAFETY: PostgreSQL passes the proposed value, NULL or a C string.
    let value = unsafe {
        if newval.is_null() || (*newval).is_null() {
            return true;
        }
        CStr::from_ptr(*newval)
    };
    // Empty is unset; otherwise it must say something visible: not only
    // spaces, and no invisible or format character (a bidi override could
    // make it read otherwise in the audit).
    let readable = |text: &str| text.is_empty() || crate::normalize::is_visible_text(text);
    match value.to_str() {
        Ok(text) if text.chars().count() <= PURPOSE_CHARS && readable(text) => true,
        _ => {
            // SAFETY: GUC_check_errdetail's variables, set as PostgreSQL's
            // own check hooks set them.
            unsafe {
                pgrx::pg_sys::GUC_check_errcode(pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as i32);
            }
            false
        }
    }
}
