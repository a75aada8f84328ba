//! vault_health(): what a DBA should fix, one row per check.

use pgrx::prelude::*;

use crate::audit::{self, queue, Operation, Outcome};
use crate::error::KeyProblem;
use crate::keys::source::{check_key_file_mode, server_uid};
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
        auto_explain(),
        pg_stat_statements(),
        read_all_data_members(),
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
            Ok(Err(problem)) => (Some(with_hint(&problem)), String::new()),
            Ok(Ok(settled)) => (
                None,
                format!(
                    "the loaded keys are the vault's; version {} is active{}",
                    keys.active().key_version(),
                    if settled { "" } else { " (new versions' check values are stored by the next call)" }
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

fn query_list(sql: &str) -> Vec<String> {
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
    .unwrap_or_default()
}

fn function_grants() -> Check {
    let unexpected = query_list(
        "SELECT p.oid::regprocedure::text || ' to ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END \
         FROM pg_catalog.pg_proc p \
         JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e' \
         JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'pii_vault' \
         CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a \
         WHERE a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner \
           AND (a.grantee = 0 OR a.grantee::regrole::text NOT IN \
                ('pii_vault_reader', 'pii_vault_writer', 'pii_vault_auditor', 'pii_vault_admin', \
                 'pii_vault_share_reader')) \
         ORDER BY 1",
    );
    check(
        "function_grants",
        (!unexpected.is_empty()).then(|| {
            format!(
                "EXECUTE granted beyond the vault's roles: {}; REVOKE it and grant pii_vault_* roles instead",
                unexpected.join(", ")
            )
        }),
        "EXECUTE only for the pii_vault_* roles",
    )
}

fn storage_grants() -> Check {
    let unexpected = query_list(
        "SELECT 'schema pii_vault to ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END \
         FROM pg_catalog.pg_namespace n CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a \
         WHERE n.nspname = 'pii_vault' AND a.grantee <> n.nspowner \
         UNION ALL \
         SELECT c.oid::regclass::text || ' to ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END \
         FROM pg_catalog.pg_class c CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a \
         WHERE c.relnamespace = 'pii_vault'::regnamespace AND a.grantee <> c.relowner \
         ORDER BY 1",
    );
    check(
        "storage_grants",
        (!unexpected.is_empty())
            .then(|| format!("direct grants on the storage: {}; REVOKE ALL of them", unexpected.join(", "))),
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
    let members = query_list(
        "SELECT m.oid::regrole::text FROM pg_catalog.pg_roles m \
         WHERE NOT m.rolsuper AND (pg_catalog.pg_has_role(m.oid, 'pg_read_all_data', 'MEMBER') \
             OR pg_catalog.pg_has_role(m.oid, 'pg_write_all_data', 'MEMBER')) \
           AND m.rolname NOT IN ('pg_read_all_data', 'pg_write_all_data') \
         ORDER BY 1",
    );
    check(
        "read_all_data",
        (!members.is_empty()).then(|| {
            format!(
                "members of pg_read_all_data or pg_write_all_data can read the vault's ciphertext and audit metadata, or overwrite them: {}; revoke what is not needed",
                members.join(", ")
            )
        }),
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
