//! pii_vault: personal data encrypted inside PostgreSQL.
//!
//! Layers, calls going one way only:
//! - `api`: the SQL surface (`#[pg_extern]`), thin;
//! - the core, crate `pii_vault_core` (core/, free of pgrx): `crypto`,
//!   `normalize`, `record`, `error`, `keys::source`, `audit::event`,
//!   `throttle::role`, re-exported here under those paths;
//! - `store`: the only code running SQL against the vault's tables;
//! - `audit`: the shared-memory queue and the background writer of the
//!   audit; `throttle`: read limits; `shmem`: their shared memory;
//! - `keys`, `guc`: settings and the master key, loaded at preload;
//!   `purge`: the background worker that removes what expired.

use pgrx::prelude::*;

/// Declares PostgreSQL functions as PostgreSQL exports them, without
/// pgrx's per-call guard (a sigsetjmp and a thread check), for hot paths
/// and for hooks that must let an ERROR pass as a longjmp. Each
/// declaration is pinned to pgrx's binding of the same function: a
/// signature that changes in PostgreSQL's headers (which the bindings are
/// generated from) fails to compile.
#[macro_export]
#[doc(hidden)]
macro_rules! unguarded {
    ($(fn $name:ident($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        unsafe extern "C-unwind" {
            $(pub fn $name($(_: $arg),*) $(-> $ret)?;)*
        }
        $(const _: unsafe fn($($arg),*) $(-> $ret)? = pgrx::pg_sys::$name;)*
    };
}

/// Runs `body` in a transaction of a background worker, then reports the
/// worker's table statistics at once. A backend reports its own when it
/// waits for its client's next command, which a worker never does: the
/// writer's inserts and the purge's deletes would otherwise reach
/// pg_stat_all_tables (and so autovacuum) only when the worker exits.
pub(crate) fn worker_transaction<F, R>(body: F) -> R
where
    F: FnOnce() -> R + std::panic::UnwindSafe + std::panic::RefUnwindSafe,
{
    let result = pgrx::bgworkers::BackgroundWorker::transaction(body);
    // SAFETY: outside a transaction (committed above), in a worker
    // connected to its database.
    unsafe { pg_sys::pgstat_report_stat(true) };
    result
}

mod api;
mod audit;
pub use pii_vault_core::{crypto, error, json_patch, normalize, record};
mod guc;
pub mod keys;
mod purge;
mod shmem;
mod stats;
mod store;
mod throttle;

::pgrx::pg_module_magic!();

extension_sql_file!("../sql/storage.sql", name = "storage", bootstrap);
extension_sql_file!("../sql/roles_and_grants.sql", name = "roles_and_grants", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // pgrx puts a Rust backtrace in the DETAIL of an ERROR that passes
    // through Rust code when std's backtraces are on (RUST_BACKTRACE in the
    // server's environment): clients would see the vault's call stack, and
    // errors would differ by environment. Library backtraces are switched
    // off for this process and its children; panics still print their own.
    // SAFETY: _PG_init runs single-threaded, before anything reads the
    // environment concurrently.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    // SAFETY: a plain global of the postmaster, read once here.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    guc::init(preloading);
    keys::init_at_preload(preloading);
    api::storage_guards::install_hook();
    if preloading {
        shmem::init();
        throttle::statement::install_hooks();
        throttle::caller::install_hook();
        audit::writer::register();
        audit::keeper::register();
        audit::forwarder::register();
        purge::register();
    }
}

#[cfg(feature = "pg_test")]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "shared_preload_libraries = 'pii_vault'",
            // A fresh random key per test cluster start, from a command, so
            // no key is ever written in a setting.
            "pii_vault.key_command = 'od -An -tx1 -N32 /dev/urandom | tr -d \" \\n\"'",
            // The database pgrx's test framework creates and runs tests in.
            "pii_vault.database = 'pgrx_tests'",
        ]
    }
}
