//! vault_health(): what a DBA should fix, one row per check.
//!
//! Each check runs in a subtransaction of its own (`run`): a check whose
//! own query fails is a failing row that says so, and the other checks
//! still run. A check never vouches for what it could not see.

use std::panic::AssertUnwindSafe;

use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;

use crate::audit::{self, queue, Operation, Outcome};
use crate::error::KeyProblem;
use crate::keys::source::{check_key_file_mode, server_uid};
use crate::store::KeyCheck;
use crate::{guc, keys, shmem, store};

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

/// What a check found: the problem, or nothing and what it vouches for.
struct Found {
    problem: Option<String>,
    fine: String,
}

fn found(problem: Option<String>, fine: &str) -> Found {
    Found { problem, fine: fine.to_string() }
}

/// Runs the check `name` in a subtransaction, as a PL/pgSQL block with an
/// EXCEPTION clause runs its body: an ERROR inside it (its query failed,
/// was cancelled by a timeout, found a catalog it cannot read) rolls the
/// subtransaction back and makes the check's row fail with the error's
/// SQLSTATE and message (PostgreSQL's own, about catalogs and settings:
/// no check reads a record).
fn run(name: &'static str, check: impl FnOnce() -> Found) -> Check {
    // SAFETY: inside a transaction; what the subtransaction changes
    // (memory context, resource owner) is restored on either path, as
    // plpgsql's exec_stmt_block does.
    let (context, owner) = unsafe { (pg_sys::CurrentMemoryContext, pg_sys::CurrentResourceOwner) };
    // SAFETY: both outlive the subtransaction (they are the caller's).
    let restore = move || unsafe {
        pg_sys::MemoryContextSwitchTo(context);
        pg_sys::CurrentResourceOwner = owner;
    };
    // SAFETY: inside a transaction; released or rolled back below.
    unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) };
    let found = PgTryBuilder::new(AssertUnwindSafe(|| {
        let found = injected_failure(name).unwrap_or_else(check);
        // SAFETY: the subtransaction begun above is the current one.
        unsafe { pg_sys::ReleaseCurrentSubTransaction() };
        restore();
        found
    }))
    .catch_others(|error| {
        // SAFETY: the subtransaction begun above is the current one; the
        // error state was copied and flushed when it was caught.
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        restore();
        let why = match &error {
            CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => {
                format!("{} {}", sqlstate(report.sql_error_code()), report.message())
            }
            CaughtError::RustPanic { .. } => "an internal error".to_string(),
        };
        found(
            Some(format!("the check's own query failed ({why}): it cannot vouch for anything; see the server log")),
            "",
        )
    })
    .execute();
    match found.problem {
        None => Check { name, ok: true, detail: found.fine },
        Some(detail) => Check { name, ok: false, detail },
    }
}

/// The five characters of a SQLSTATE (PostgreSQL's MAKE_SQLSTATE packs
/// each in six bits, the first lowest).
fn sqlstate(code: PgSqlErrorCode) -> String {
    (0..5).map(|i| char::from(((code as i32 >> (6 * i)) & 0x3F) as u8 + b'0')).collect()
}

#[cfg(any(test, feature = "pg_test"))]
thread_local! {
    /// The check whose query `run` replaces by one that fails (pg_tests).
    pub(crate) static FAIL: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

/// In the pg_tests, the check named in `FAIL` runs a query that fails
/// instead of its own.
fn injected_failure(name: &'static str) -> Option<Found> {
    #[cfg(any(test, feature = "pg_test"))]
    if FAIL.get() == Some(name) {
        crate::store::select_one::<i32>("SELECT 1 / 0", &[]).expect("division by zero raises");
    }
    let _ = name;
    None
}

/// A problem as the vault's ERROR states it, and its HINT.
fn with_hint(problem: &KeyProblem) -> String {
    format!("{problem}. {}", problem.hint())
}

fn setting(name: &str) -> Option<String> {
    crate::store::select_one::<String>("SELECT pg_catalog.current_setting($1, true)", &[name.into()]).ok().flatten()
}

/// One row per check; a failing row says how to fix it. Works (and is
/// worth running) even when the vault itself cannot.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_health() -> TableIterator<'static, (name!(check_name, String), name!(ok, bool), name!(detail, String))> {
    let checks = vec![
        run("preloaded", || {
            found(
                (!shmem::ready()).then(|| "pii_vault is not in shared_preload_libraries: add it in postgresql.conf and restart".into()),
                "loaded at server start",
            )
        }),
        run("key_loaded", || found(keys::key_set().err().map(|p| with_hint(&p)), "master keys loaded")),
        run("key_check", key_check),
        run("key_versions", key_versions),
        run("keyfile_permissions", keyfile_permissions),
        run("database", || {
            found(
                (!super::guard::in_vault_database())
                    .then(|| "this is not the database named by pii_vault.database: set it to this database and restart".into()),
                "this is the vault's database",
            )
        }),
        run("standby", || {
            // SAFETY: a plain read of shared state.
            let fine = match unsafe { pg_sys::RecoveryInProgress() } {
                true => "this server is a standby: it serves reads; calls that write are refused (25006)",
                false => "this server is not a standby: it serves reads and writes",
            };
            found(None, fine)
        }),
        run("shards", shards),
        log_setting("log_statement", |v| v == "none" || v == "ddl", "set log_statement = none (or ddl): logged statements carry record values"),
        log_setting("log_min_duration_statement", |v| v == "-1", "set log_min_duration_statement = -1: slow statements are logged with their text"),
        log_setting("log_parameter_max_length", |v| v == "0", "set log_parameter_max_length = 0: logged statements would carry their bind parameters"),
        log_setting("log_parameter_max_length_on_error", |v| v == "0", "set log_parameter_max_length_on_error = 0: failing statements would be logged with their bind parameters"),
        log_setting("log_min_error_statement", |v| v == "panic", "set log_min_error_statement = panic: the text of failing statements (values inlined by a client) is logged"),
        log_setting("log_error_verbosity", |v| v == "terse", "set log_error_verbosity = terse: CONTEXT lines of logged errors quote the SQL of functions and DO blocks, values included"),
        log_setting("log_transaction_sample_rate", |v| v == "0", "set log_transaction_sample_rate = 0: the statements of sampled transactions are logged with their text"),
        run("auto_explain", auto_explain),
        run("pg_stat_statements", pg_stat_statements),
        run("role_settings", role_settings),
        run("read_all_data", read_all_data_members),
        run("server_file_roles", server_file_roles),
        run("admin_logins", admin_logins),
        run("function_grants", function_grants),
        run("storage_grants", storage_grants),
        run("audit_writer", audit_writer),
    ];
    // Audited, best effort: health shows no PII, and must run even when the
    // audit cannot be written (that is one of the things it reports).
    let all_ok = checks.iter().all(|c| c.ok);
    audit::record_if_room(Operation::Health, None, None, if all_ok { Outcome::Ok } else { Outcome::Error });
    TableIterator::new(checks.into_iter().map(|c| (c.name.to_string(), c.ok, c.detail)))
}

/// This server's place in a vault split over shards: with more than one,
/// the routing key version must be loaded (vault_shard_for, and every
/// store of the routing kind, need it).
fn shards() -> Found {
    let (shards, shard, version) = (crate::guc::shards(), crate::guc::shard(), crate::guc::routing_key_version());
    if shards == 1 {
        return found(None, "not split: every token is shard 0's");
    }
    let loaded = keys::key_set().is_ok_and(|keys| keys.version(version).is_some());
    found(
        (!loaded).then(|| {
            format!("pii_vault.routing_key_version ({version}) is not loaded: add it to the key source and restart; until then no identifier is routed and no store of pii_vault.shard_key succeeds")
        }),
        &format!("shard {shard} of {shards}, routing key version {version} loaded"),
    )
}

fn log_setting(name: &'static str, fine: impl Fn(&str) -> bool, fix: &str) -> Check {
    run(name, || {
        let value = setting(name).unwrap_or_default();
        found((!fine(&value)).then(|| format!("{name} is {value}: {fix}")), &format!("{name} = {value}"))
    })
}

fn key_check() -> Found {
    let (problem, fine) = match keys::key_set() {
        Err(_) => (Some("no key loaded (see key_loaded)".to_string()), String::new()),
        Ok(keys) => match Spi::connect_mut(|client| store::settle_key_checks(client, keys, false)) {
            Err(e) => (Some(format!("the key check values cannot be read: {e}")), String::new()),
            Ok(KeyCheck::Refused(problem)) => (Some(with_hint(&problem)), String::new()),
            Ok(verdict @ (KeyCheck::Settled | KeyCheck::Pending)) => (
                None,
                format!(
                    "the loaded keys are the vault's; version {} is active{}",
                    keys.active().key_version(),
                    if verdict == KeyCheck::Pending {
                        " (new versions' check values are stored by the next call)"
                    } else {
                        ""
                    }
                ),
            ),
        },
    };
    found(problem, &fine)
}

/// Versions the vault's records, audit or key checks are under that the
/// key source no longer holds.
fn key_versions() -> Found {
    let problem = keys::key_set().ok().and_then(|keys| {
        let in_use = match store::versions_in_use() {
            Ok(in_use) => in_use,
            Err(e) => return Some(format!("the check's own query failed ({e}): it cannot vouch for anything")),
        };
        let missing: Vec<String> = in_use
            .into_iter()
            .filter(|(version, _)| keys.version(*version).is_none())
            .map(|(version, records)| format!("key version {version} ({records} records)"))
            .collect();
        (!missing.is_empty()).then(|| {
            format!(
                "in use but not loaded: {}; records under it fail with 55000: add it back to the key source and restart",
                missing.join(", ")
            )
        })
    });
    found(problem, "every key version in use is loaded")
}

fn keyfile_permissions() -> Found {
    use std::os::unix::fs::MetadataExt;
    let Some(path) = guc::keyfile().filter(|p| !p.is_empty()) else {
        let fine = if guc::key_command().is_some_and(|c| !c.is_empty()) {
            "key from pii_vault.key_command"
        } else {
            "no keyfile configured"
        };
        return found(None, fine);
    };
    let server_uid = server_uid();
    let problem = match std::fs::metadata(&path) {
        Err(_) => Some(with_hint(&KeyProblem::KeyFileUnreadable)),
        Ok(meta) => check_key_file_mode(meta.uid(), meta.mode(), server_uid).err().map(|p| with_hint(&p)),
    };
    found(problem, "keyfile readable by the server's user only")
}

fn auto_explain() -> Found {
    let loaded = ["shared_preload_libraries", "session_preload_libraries", "local_preload_libraries"]
        .iter()
        .any(|s| setting(s).is_some_and(|v| v.contains("auto_explain")));
    let logging = setting("auto_explain.log_min_duration").is_some_and(|v| v != "-1");
    found(
        (loaded || logging).then(|| {
            "auto_explain is loaded: it logs plans with statement text and parameters; remove it or set auto_explain.log_min_duration = -1".into()
        }),
        "auto_explain not loaded",
    )
}

/// The first column of a query's rows; None when the query failed (a
/// check then fails too: it cannot vouch for what it did not see).
fn query_list(sql: &str) -> Option<Vec<String>> {
    Spi::connect(|client| {
        let rows = client.select(sql, None, &[])?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(v) = row.get::<String>(1)? {
                out.push(v);
            }
        }
        Ok::<_, pgrx::spi::SpiError>(out)
    })
    .ok()
}

/// The grant matrix of README's Roles: every function of the vault and the
/// roles that may execute it (besides its owner). The audit functions
/// PostgreSQL calls for the view and the triggers are granted to nobody.
const GRANTS: &[(&str, &[&str])] = &[
    ("vault_get(uuid)", READERS),
    ("vault_get(uuid,text[])", READERS),
    ("vault_lookup(text,text)", READERS),
    ("vault_normalize(text,text)", READERS),
    ("vault_appdata_get(uuid,text)", READERS),
    ("vault_consents(uuid)", READERS),
    ("vault_consent_history(uuid)", READERS),
    ("vault_get_shared(uuid)", &["pii_vault_share_reader", "pii_vault_reader", "pii_vault_writer", "pii_vault_admin"]),
    ("vault_store(jsonb)", WRITERS),
    ("vault_store(jsonb,timestamp with time zone)", WRITERS),
    ("vault_update(uuid,jsonb)", WRITERS),
    ("vault_delete(uuid)", WRITERS),
    ("vault_set_expiry(uuid,timestamp with time zone)", WRITERS),
    ("vault_share(uuid,text[],interval)", WRITERS),
    ("vault_unshare(uuid)", WRITERS),
    ("vault_session_store(jsonb,interval,uuid)", WRITERS),
    ("vault_session_get(uuid)", WRITERS),
    ("vault_session_delete(uuid)", WRITERS),
    ("vault_sessions(uuid)", WRITERS),
    ("vault_appdata_set(uuid,text,jsonb)", WRITERS),
    ("vault_appdata_delete(uuid,text)", WRITERS),
    ("vault_consent_set(uuid,text,boolean,text,timestamp with time zone)", WRITERS),
    ("vault_shard_of(uuid)", ROUTERS),
    ("vault_shard_for(text,text)", READERS),
    ("vault_route(integer,text,uuid,jsonb)", ROUTERS),
    ("vault_detokenize(text)", READERS),
    ("vault_get_many(uuid[],text[])", READERS),
    ("vault_lookup_many(text,text[])", READERS),
    ("vault_tokenize(text,text,uuid,timestamp with time zone,boolean)", WRITERS),
    ("vault_token_delete(text)", WRITERS),
    ("vault_store_many(jsonb[],timestamp with time zone)", WRITERS),
    ("vault_patch(uuid,jsonb)", WRITERS),
    ("vault_field_token_id(text)", &["pii_vault_reader", "pii_vault_writer", "pii_vault_auditor", "pii_vault_admin"]),
    ("vault_migrate_batch(jsonb[])", ADMINS),
    ("vault_migrate(regclass,name,name[],integer)", ADMINS),
    ("vault_audit(uuid)", AUDITORS),
    ("vault_audit_verify()", AUDITORS),
    ("vault_health()", AUDITORS),
    ("vault_key_versions()", AUDITORS),
    ("vault_stats()", &["pg_monitor", "pii_vault_auditor", "pii_vault_admin"]),
    ("vault_audit_forward(bytea)", &["pii_vault_forwarder"]),
    ("vault_export_all()", ADMINS),
    ("vault_restore(uuid)", ADMINS),
    ("vault_erase(uuid)", ADMINS),
    ("vault_subject_export(uuid)", ADMINS),
    ("vault_rotate_batch(integer,boolean)", ADMINS),
    ("vault_rotate(integer,interval)", ADMINS),
    ("vault_audit_prune(timestamp with time zone)", ADMINS),
];
const READERS: &[&str] = &["pii_vault_reader", "pii_vault_writer", "pii_vault_admin"];
const WRITERS: &[&str] = &["pii_vault_writer", "pii_vault_admin"];
const AUDITORS: &[&str] = &["pii_vault_auditor", "pii_vault_admin"];
const ADMINS: &[&str] = &["pii_vault_admin"];
const ROUTERS: &[&str] =
    &["pii_vault_share_reader", "pii_vault_reader", "pii_vault_writer", "pii_vault_auditor", "pii_vault_admin"];

/// Every EXECUTE grant of the vault's functions that differs from
/// `GRANTS`, function by function: granted beyond it (to PUBLIC, to
/// another role, to the wrong vault role) or missing from it.
fn function_grants() -> Found {
    let expected: Vec<String> = GRANTS
        .iter()
        .flat_map(|(function, roles)| roles.iter().map(move |role| format!("{function} to {role}")))
        .collect();
    let granted = query_list(
        "SELECT pg_catalog.regexp_replace(p.oid::regprocedure::text, '^.*\\.', '') || ' to ' \
                || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END \
         FROM pg_catalog.pg_proc p \
         JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e' \
         JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pii_vault' \
         CROSS JOIN LATERAL pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) a \
         WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner \
         ORDER BY 1",
    );
    let Some(granted) = granted else {
        return unknown();
    };
    let extra: Vec<&str> = granted.iter().filter(|g| !expected.contains(g)).map(String::as_str).collect();
    let missing: Vec<&str> = expected.iter().filter(|g| !granted.contains(g)).map(String::as_str).collect();
    let problem = match (extra.is_empty(), missing.is_empty()) {
        (true, true) => None,
        _ => Some(format!(
            "EXECUTE grants differ from the documented matrix (README, Roles); granted beyond it: {}; missing: {}; REVOKE the first, GRANT the second",
            if extra.is_empty() { "none".to_string() } else { extra.join(", ") },
            if missing.is_empty() { "none".to_string() } else { missing.join(", ") },
        )),
    };
    found(problem, "EXECUTE exactly as the documented matrix grants it")
}

/// A check that fails when `sql` lists anything (the rows, joined by
/// `separator`, go into `problem`), or when the query itself fails.
fn list_check(sql: &str, separator: &str, problem: impl FnOnce(String) -> String, fine: &str) -> Found {
    match query_list(sql) {
        None => unknown(),
        Some(listed) => found((!listed.is_empty()).then(|| problem(listed.join(separator))), fine),
    }
}

/// A check whose own query failed: not ok (it cannot vouch for anything).
fn unknown() -> Found {
    found(Some("the check's own query failed; see the server log".into()), "")
}

/// Roles that can read the keyfile or the data files through the server
/// (`COPY … FROM` a file, `pg_read_file`, `COPY … FROM PROGRAM`): as good
/// as the key for the vault.
fn server_file_roles() -> Found {
    list_check(
        "SELECT m.oid::regrole::text || ' (' || pg_catalog.string_agg(g.rolname, ', ' ORDER BY g.rolname) || ')' \
         FROM pg_catalog.pg_roles m \
         JOIN pg_catalog.pg_roles g ON g.rolname IN ('pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program') \
              AND g.oid <> m.oid AND pg_catalog.pg_has_role(m.oid, g.oid, 'MEMBER') \
         WHERE NOT m.rolsuper \
         GROUP BY m.oid ORDER BY 1",
        ", ",
        |found| format!("members of pg_read_server_files, pg_write_server_files or pg_execute_server_program can read the keyfile or run commands as the server: {found}; revoke those memberships"),
        "no role but superusers can read server files or run server programs",
    )
}

/// Settings made with ALTER ROLE … SET or ALTER DATABASE … SET that log
/// statements or their parameters, for a member of a vault role (or every
/// role) in this database (or every database): postgresql.conf may be
/// right while the application's own role logs every value it sends.
fn role_settings() -> Found {
    list_check(
        "SELECT CASE WHEN s.setrole = 0 THEN 'every role' ELSE 'role ' || s.setrole::regrole::text END \
                || CASE WHEN s.setdatabase = 0 THEN '' ELSE ' in this database' END || ': ' || c.setting \
         FROM pg_catalog.pg_db_role_setting s \
         CROSS JOIN LATERAL pg_catalog.unnest(s.setconfig) AS c(setting) \
         CROSS JOIN LATERAL (SELECT pg_catalog.lower(pg_catalog.split_part(c.setting, '=', 1)) AS name, \
                                    pg_catalog.lower(pg_catalog.substr(c.setting, pg_catalog.strpos(c.setting, '=') + 1)) AS value) v \
         WHERE (s.setdatabase = 0 OR s.setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())) \
           AND (s.setrole = 0 OR EXISTS (SELECT FROM pg_catalog.pg_roles r \
                WHERE r.rolname IN ('pii_vault_reader', 'pii_vault_writer', 'pii_vault_admin', 'pii_vault_share_reader', 'pii_vault_auditor') \
                  AND pg_catalog.pg_has_role(s.setrole, r.oid, 'MEMBER'))) \
           AND ((v.name = 'log_statement' AND v.value NOT IN ('none', 'ddl')) \
             OR (v.name = 'log_min_duration_statement' AND v.value <> '-1') \
             OR (v.name = 'log_min_duration_sample' AND v.value <> '-1') \
             OR (v.name = 'log_transaction_sample_rate' AND v.value NOT IN ('0', '0.0')) \
             OR (v.name IN ('log_parameter_max_length', 'log_parameter_max_length_on_error') AND v.value <> '0') \
             OR (v.name = 'log_min_error_statement' AND v.value <> 'panic') \
             OR (v.name = 'log_error_verbosity' AND v.value <> 'terse') \
             OR (v.name = 'log_duration' AND v.value NOT IN ('off', 'false', '0')) \
             OR (v.name = 'pg_stat_statements.track_utility' AND v.value NOT IN ('off', 'false', '0')) \
             OR (v.name IN ('session_preload_libraries', 'local_preload_libraries') AND v.value LIKE '%auto_explain%') \
             OR (v.name = 'auto_explain.log_min_duration' AND v.value <> '-1')) \
         ORDER BY 1",
        "; ",
        |found| format!("per-role or per-database settings log statements or their values: {found}; ALTER ROLE … RESET (or ALTER DATABASE … RESET) them"),
        "no ALTER ROLE or ALTER DATABASE setting logs statements or parameters of the vault's roles",
    )
}

/// Login roles that are members of pii_vault_admin: a person's or a
/// service's everyday login can then restore, erase, export and rotate; a
/// warning (an admin should log in for admin work only).
fn admin_logins() -> Found {
    list_check(
        "SELECT m.rolname::text FROM pg_catalog.pg_roles m \
         WHERE m.rolcanlogin AND NOT m.rolsuper AND m.rolname <> 'pii_vault_admin' \
           AND pg_catalog.pg_has_role(m.oid, 'pii_vault_admin', 'MEMBER') ORDER BY 1",
        ", ",
        |found| {
            format!("warning: login roles in pii_vault_admin: {found}; give admin work its own login role, used only for it, and keep the application's roles out")
        },
        "no login role is a member of pii_vault_admin",
    )
}

fn storage_grants() -> Found {
    list_check(
        "SELECT 'schema pii_vault to ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END \
         FROM pg_catalog.pg_namespace n CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a \
         WHERE n.nspname = 'pii_vault' AND a.grantee <> n.nspowner \
         UNION ALL \
         SELECT c.oid::regclass::text || ' to ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END \
         FROM pg_catalog.pg_class c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a \
         WHERE c.relnamespace = 'pii_vault'::regnamespace AND a.grantee <> c.relowner \
         ORDER BY 1",
        ", ",
        |found| format!("direct grants on the storage: {found}; REVOKE ALL of them"),
        "nothing in schema pii_vault is granted to anyone",
    )
}

fn pg_stat_statements() -> Found {
    // The setting exists only when the module is loaded.
    let track_utility = setting("pg_stat_statements.track_utility");
    found(
        (track_utility.as_deref() == Some("on")).then(|| {
            "pg_stat_statements.track_utility is on: DO blocks, DECLARE CURSOR, CREATE TABLE AS and EXPLAIN are stored word for word, values included; set it off".to_string()
        }),
        "pg_stat_statements not loaded, or track_utility off (its other statements are stored with constants replaced)",
    )
}

fn read_all_data_members() -> Found {
    list_check(
        "SELECT m.oid::regrole::text FROM pg_catalog.pg_roles m \
         WHERE NOT m.rolsuper AND (pg_catalog.pg_has_role(m.oid, 'pg_read_all_data', 'MEMBER') \
             OR pg_catalog.pg_has_role(m.oid, 'pg_write_all_data', 'MEMBER')) \
           AND m.rolname NOT IN ('pg_read_all_data', 'pg_write_all_data') \
         ORDER BY 1",
        ", ",
        |found| {
            format!("members of pg_read_all_data or pg_write_all_data can read the vault's ciphertext and audit metadata, or overwrite them: {found}; revoke what is not needed")
        },
        "no role but superusers can read or write the vault's tables directly",
    )
}

/// How far a standby's calls are from the primary's audit, if not near.
fn standby_audit(queued: u64) -> Option<String> {
    let kept: u64 = crate::audit::spill::kept().iter().map(|(_, bytes)| bytes).sum();
    let forwarded = queue::forwarded();
    let lag_s = forward_lag_ms(&forwarded) / 1000;
    if !queue::keeper_running() {
        Some(format!(
            "this server is a standby and its audit keeper is not running ({queued} events queued): it restarts within a second; if this persists, check the server log; calls are refused once the queue is full"
        ))
    } else if !forwarded.connected && kept > 0 {
        Some(format!(
            "this server is a standby whose audit forwarder cannot reach the primary: {kept} bytes of events are kept here (the oldest {lag_s} s old) and reach the primary's audit once it can (see the server log; pii_vault.forward_conninfo, a login role in pii_vault_forwarder)"
        ))
    } else if lag_s >= FORWARD_LAG_LIMIT_S {
        Some(format!("this server is a standby whose audit forwarding is {lag_s} s behind ({kept} bytes kept)"))
    } else {
        None
    }
}

/// A standby's forwarding this far behind fails `vault_health`.
const FORWARD_LAG_LIMIT_S: i64 = 60;

/// How old the oldest event the primary has not taken is, in ms (0: none).
pub(crate) fn forward_lag_ms(forwarded: &queue::Forwarded) -> i64 {
    if forwarded.oldest == 0 {
        0
    } else {
        (store::now() - forwarded.oldest as i64).max(0) / 1000
    }
}

/// Names the files of audit events kept in PGDATA and not written, if any.
pub(crate) fn kept_events() -> Option<String> {
    let kept = crate::audit::spill::kept();
    if kept.is_empty() {
        return None;
    }
    let files: Vec<String> = kept.iter().map(|(name, bytes)| format!("{name} ({bytes} bytes)")).collect();
    let aside = kept.iter().any(|(name, _)| name != crate::audit::spill::FILE_NAME);
    Some(format!(
        "audit events the writer could not write before it stopped are kept in PGDATA, not written yet: {}{}",
        files.join(", "),
        if aside {
            "; a file named .unverified did not verify under the loaded keys: rename it back and start with the key that wrote it, or move it out of PGDATA to accept the loss (see the server log)"
        } else {
            "; the writer writes them before anything else"
        }
    ))
}

fn audit_writer() -> Found {
    if !shmem::ready() {
        return found(Some("no audit writer without preloading (see preloaded)".into()), "");
    }
    let state = queue::state();
    let alive = state.writer_pid != 0
        && crate::store::select_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity WHERE pid = $1)",
            &[state.writer_pid.into()],
        )
        .ok()
        .flatten()
        .unwrap_or(false);
    // SAFETY: a plain read of shared state.
    let standby = unsafe { pg_sys::RecoveryInProgress() };
    let problem = if standby {
        standby_audit(state.pending)
    } else if store::logical_replica().unwrap_or(false) {
        Some(format!(
            "this database is a logical replica (an enabled subscription replicates the audit into it): the audit writer writes nothing until the subscription is disabled or dropped, {} events wait, and calls are refused once the queue is full (README, Logical replication)",
            state.pending
        ))
    } else if !alive {
        Some(format!(
            "the audit writer is not running ({} events queued): it restarts within seconds; if this persists, check the server log; calls are refused once its queue is full",
            state.pending
        ))
    } else if state.key_mismatch {
        Some("the audit writer refuses to write: the loaded key is not the vault's (see key_check)".to_string())
    } else if let Some(kept) = kept_events() {
        Some(kept)
    } else if state.pending as usize > queue::CAPACITY / 2 {
        Some(format!("the audit writer is behind: {} events queued of {}", state.pending, queue::CAPACITY))
    } else {
        None
    };
    if standby {
        let forwarded = queue::forwarded();
        return found(
            problem,
            &format!(
                "a standby: its audit keeper keeps the events of calls served here and its forwarder sends them to the primary's audit ({} forwarded since the start, {} ms behind)",
                forwarded.events,
                forward_lag_ms(&forwarded)
            ),
        );
    }
    found(problem, &format!("running (pid {}), {} events queued", state.writer_pid, state.pending))
}
