//! vault_health(): what a DBA should fix, one row per check.

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

/// A problem as the vault's ERROR states it, and its HINT.
fn with_hint(problem: &KeyProblem) -> String {
    format!("{problem}. {}", problem.hint())
}

fn check(name: &'static str, problem: Option<String>, fine: &str) -> Check {
    match problem {
        None => Check { name, ok: true, detail: fine.to_string() },
        Some(detail) => Check { name, ok: false, detail },
    }
}

fn setting(name: &str) -> Option<String> {
    Spi::get_one_with_args::<String>("SELECT pg_catalog.current_setting($1, true)", &[name.into()]).ok().flatten()
}

/// One row per check; a failing row says how to fix it. Works (and is
/// worth running) even when the vault itself cannot.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_health() -> TableIterator<'static, (name!(check_name, String), name!(ok, bool), name!(detail, String))> {
    let checks = vec![
        check(
            "preloaded",
            (!shmem::ready()).then(|| "pii_vault is not in shared_preload_libraries: add it in postgresql.conf and restart".into()),
            "loaded at server start",
        ),
        check("key_loaded", keys::key_set().err().map(|p| with_hint(&p)), "master keys loaded"),
        key_check(),
        key_versions(),
        keyfile_permissions(),
        check(
            "database",
            (!super::guard::in_vault_database())
                .then(|| "this is not the database named by pii_vault.database: set it to this database and restart".into()),
            "this is the vault's database",
        ),
        log_setting("log_statement", |v| v == "none" || v == "ddl", "set log_statement = none (or ddl): logged statements carry record values"),
        log_setting("log_min_duration_statement", |v| v == "-1", "set log_min_duration_statement = -1: slow statements are logged with their text"),
        log_setting("log_parameter_max_length", |v| v == "0", "set log_parameter_max_length = 0: logged statements would carry their bind parameters"),
        log_setting("log_parameter_max_length_on_error", |v| v == "0", "set log_parameter_max_length_on_error = 0: failing statements would be logged with their bind parameters"),
        log_setting("log_min_error_statement", |v| v == "panic", "set log_min_error_statement = panic: the text of failing statements (values inlined by a client) is logged"),
        log_setting("log_error_verbosity", |v| v == "terse", "set log_error_verbosity = terse: CONTEXT lines of logged errors quote the SQL of functions and DO blocks, values included"),
        log_setting("log_transaction_sample_rate", |v| v == "0", "set log_transaction_sample_rate = 0: the statements of sampled transactions are logged with their text"),
        auto_explain(),
        pg_stat_statements(),
        role_settings(),
        read_all_data_members(),
        server_file_roles(),
        admin_logins(),
        function_grants(),
        storage_grants(),
        audit_writer(),
    ];
    // Audited, best effort: health shows no PII, and must run even when the
    // audit cannot be written (that is one of the things it reports).
    let all_ok = checks.iter().all(|c| c.ok);
    audit::record_if_room(Operation::Health, None, None, if all_ok { Outcome::Ok } else { Outcome::Error });
    TableIterator::new(checks.into_iter().map(|c| (c.name.to_string(), c.ok, c.detail)))
}

fn log_setting(name: &'static str, fine: impl Fn(&str) -> bool, fix: &str) -> Check {
    let value = setting(name).unwrap_or_default();
    check(name, (!fine(&value)).then(|| format!("{name} is {value}: {fix}")), &format!("{name} = {value}"))
}

fn key_check() -> Check {
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
    check("key_check", problem, &fine)
}

/// Versions the vault's records, audit or key checks are under that the
/// key source no longer holds.
fn key_versions() -> Check {
    let problem = keys::key_set().ok().and_then(|keys| {
        let missing: Vec<String> = store::versions_in_use()
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
    check("key_versions", problem, "every key version in use is loaded")
}

fn keyfile_permissions() -> Check {
    use std::os::unix::fs::MetadataExt;
    let Some(path) = guc::keyfile().filter(|p| !p.is_empty()) else {
        let fine = if guc::key_command().is_some_and(|c| !c.is_empty()) {
            "key from pii_vault.key_command"
        } else {
            "no keyfile configured"
        };
        return check("keyfile_permissions", None, fine);
    };
    let server_uid = server_uid();
    let problem = match std::fs::metadata(&path) {
        Err(_) => Some(with_hint(&KeyProblem::KeyFileUnreadable)),
        Ok(meta) => check_key_file_mode(meta.uid(), meta.mode(), server_uid).err().map(|p| with_hint(&p)),
    };
    check("keyfile_permissions", problem, "keyfile readable by the server's user only")
}

fn auto_explain() -> Check {
    let loaded = ["shared_preload_libraries", "session_preload_libraries", "local_preload_libraries"]
        .iter()
        .any(|s| setting(s).is_some_and(|v| v.contains("auto_explain")));
    let logging = setting("auto_explain.log_min_duration").is_some_and(|v| v != "-1");
    check(
        "auto_explain",
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
    ("vault_audit(uuid)", AUDITORS),
    ("vault_audit_verify()", AUDITORS),
    ("vault_health()", AUDITORS),
    ("vault_key_versions()", AUDITORS),
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

/// Every EXECUTE grant of the vault's functions that differs from
/// `GRANTS`, function by function: granted beyond it (to PUBLIC, to
/// another role, to the wrong vault role) or missing from it.
fn function_grants() -> Check {
    let expected: Vec<String> = GRANTS
        .iter()
        .flat_map(|(function, roles)| roles.iter().map(move |role| format!("{function} to {role}")))
        .collect();
    let found = query_list(
        "SELECT pg_catalog.regexp_replace(p.oid::regprocedure::text, '^.*\\.', '') || ' to ' \
                || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END \
         FROM pg_catalog.pg_proc p \
         JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e' \
         JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pii_vault' \
         CROSS JOIN LATERAL pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) a \
         WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner \
         ORDER BY 1",
    );
    let Some(found) = found else {
        return unknown("function_grants");
    };
    let extra: Vec<&str> = found.iter().filter(|g| !expected.contains(g)).map(String::as_str).collect();
    let missing: Vec<&str> = expected.iter().filter(|g| !found.contains(g)).map(String::as_str).collect();
    let problem = match (extra.is_empty(), missing.is_empty()) {
        (true, true) => None,
        _ => Some(format!(
            "EXECUTE grants differ from the documented matrix (README, Roles); granted beyond it: {}; missing: {}; REVOKE the first, GRANT the second",
            if extra.is_empty() { "none".to_string() } else { extra.join(", ") },
            if missing.is_empty() { "none".to_string() } else { missing.join(", ") },
        )),
    };
    check("function_grants", problem, "EXECUTE exactly as the documented matrix grants it")
}

/// A check that fails when `sql` lists anything (the rows, joined by
/// `separator`, go into `problem`), or when the query itself fails.
fn list_check(
    name: &'static str,
    sql: &str,
    separator: &str,
    problem: impl FnOnce(String) -> String,
    fine: &str,
) -> Check {
    match query_list(sql) {
        None => unknown(name),
        Some(found) => check(name, (!found.is_empty()).then(|| problem(found.join(separator))), fine),
    }
}

/// A check whose own query failed: not ok (it cannot vouch for anything).
fn unknown(name: &'static str) -> Check {
    check(name, Some("the check's own query failed; see the server log".into()), "")
}

/// Roles that can read the keyfile or the data files through the server
/// (`COPY … FROM` a file, `pg_read_file`, `COPY … FROM PROGRAM`): as good
/// as the key for the vault.
fn server_file_roles() -> Check {
    list_check(
        "server_file_roles",
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
fn role_settings() -> Check {
    list_check(
        "role_settings",
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
fn admin_logins() -> Check {
    list_check(
        "admin_logins",
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

fn storage_grants() -> Check {
    list_check(
        "storage_grants",
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

fn pg_stat_statements() -> Check {
    // The setting exists only when the module is loaded.
    let track_utility = setting("pg_stat_statements.track_utility");
    check(
        "pg_stat_statements",
        (track_utility.as_deref() == Some("on")).then(|| {
            "pg_stat_statements.track_utility is on: DO blocks, DECLARE CURSOR, CREATE TABLE AS and EXPLAIN are stored word for word, values included; set it off".to_string()
        }),
        "pg_stat_statements not loaded, or track_utility off (its other statements are stored with constants replaced)",
    )
}

fn read_all_data_members() -> Check {
    list_check(
        "read_all_data",
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

fn audit_writer() -> Check {
    if !shmem::ready() {
        return check("audit_writer", Some("no audit writer without preloading (see preloaded)".into()), "");
    }
    let state = queue::state();
    let alive = state.writer_pid != 0
        && Spi::get_one_with_args::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity WHERE pid = $1)",
            &[state.writer_pid.into()],
        )
        .ok()
        .flatten()
        .unwrap_or(false);
    let problem = if !alive {
        Some(format!(
            "the audit writer is not running ({} events queued): it restarts within seconds; if this persists, check the server log; calls are refused once its queue is full",
            state.pending
        ))
    } else if state.key_mismatch {
        Some("the audit writer refuses to write: the loaded key is not the vault's (see key_check)".to_string())
    } else if state.pending as usize > queue::CAPACITY / 2 {
        Some(format!("the audit writer is behind: {} events queued of {}", state.pending, queue::CAPACITY))
    } else {
        None
    };
    check("audit_writer", problem, &format!("running (pid {}), {} events queued", state.writer_pid, state.pending))
}
