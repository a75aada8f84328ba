//! The audit forwarder: on a hot standby, sends what the keeper kept in
//! the spill file to the primary (`pii_vault.audit_forward`, over libpq,
//! as a member of `pii_vault_forwarder`), whole frames at a time, and
//! records how far the primary has taken the file (in shared memory and in
//! a file under PGDATA, so a restart resends nothing it need not; the
//! primary skips what it has anyway). The keeper removes the file once
//! all of it is taken. When the primary cannot be reached the events stay
//! kept; the forwarder retries, less often, up to every 10 s.

use std::ffi::CStr;
use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;

use super::libpq::Connection;
use super::{queue, spill};
use crate::guc;
use pii_vault_core::audit_spill::frames_in;

/// At most this many bytes of frames per call (a frame is at most 1 024
/// events of under 1 kB each).
const CHUNK: usize = 4 << 20;
/// How often an idle forwarder looks at the file.
const NAP: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const QUERY: &CStr = c"SELECT vault_audit_forward($1)";

pub fn register() {
    BackgroundWorkerBuilder::new("pii_vault audit forwarder")
        .set_type("pii_vault audit forwarder")
        .set_library("pii_vault")
        .set_function("pii_vault_audit_forwarder_main")
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pii_vault_audit_forwarder_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // SAFETY: a plain read of shared state.
    if !unsafe { pg_sys::RecoveryInProgress() } || crate::keys::key_set().is_err() {
        // A primary, or no key (nothing is kept).
        // SAFETY: ends this process the way PostgreSQL's own exits do.
        unsafe { pg_sys::proc_exit(0) };
    }
    if let Some(mark) = spill::forwarded_mark() {
        queue::set_forwarded(|f| {
            f.file = mark.file;
            f.offset = mark.offset;
            f.last = mark.last;
            f.lsn = mark.lsn;
        });
    }
    let mut connection: Option<Connection> = None;
    let mut backoff = Duration::from_secs(1);
    let mut failing: Option<String> = None;
    // SAFETY: a plain read of shared state, each turn.
    while unsafe { pg_sys::RecoveryInProgress() } {
        if BackgroundWorker::sighup_received() {
            // SAFETY: what a backend does on SIGHUP, between calls.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let pause = match forward_once(&mut connection) {
            Ok(sent) => {
                if failing.take().is_some() {
                    log!("pii_vault audit forwarder: forwarding to the primary again");
                }
                backoff = Duration::from_secs(1);
                if sent {
                    Duration::ZERO
                } else {
                    NAP
                }
            }
            Err(e) => {
                connection = None;
                queue::set_forwarded(|f| f.connected = false);
                // Said once per kind of failure, not once a second.
                if failing.as_deref() != Some(e.as_str()) {
                    log!("pii_vault audit forwarder: cannot forward to the primary ({e}); the events stay kept here, retried every {} s at most", MAX_BACKOFF.as_secs());
                    failing = Some(e);
                }
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
        };
        if !BackgroundWorker::wait_latch(Some(pause)) {
            // SAFETY: ends this process the way PostgreSQL's own exits do.
            unsafe { pg_sys::proc_exit(1) };
        }
    }
    // Promoted: the writer writes what is left, skipping what the old
    // primary took (pii_vault.forwarded, replicated here).
    // SAFETY: ends this process the way PostgreSQL's own exits do.
    unsafe { pg_sys::proc_exit(0) };
}

/// Sends the frames the primary has not taken yet, up to `CHUNK` bytes;
/// whether it sent any.
fn forward_once(connection: &mut Option<Connection>) -> Result<bool, String> {
    let Some((file, offset, chunk)) = spill::read_for_forwarding(CHUNK).map_err(|e| e.to_string())? else {
        queue::set_forwarded(|f| f.oldest = 0);
        return Ok(false);
    };
    let frames = frames_in(&chunk);
    let Some(&(oldest, _)) = frames.first() else {
        queue::set_forwarded(|f| f.oldest = 0);
        return Ok(false);
    };
    queue::set_forwarded(|f| f.oldest = oldest);
    let whole = frames.last().map_or(0, |(_, end)| *end);
    if connection.as_ref().is_none_or(|c| !c.ok()) {
        *connection = Some(Connection::connect(&conninfo())?);
        queue::set_forwarded(|f| f.connected = true);
    }
    let conn = connection.as_mut().expect("connected above");
    // The primary's WAL position once it had committed the events.
    let lsn: i64 = conn.query_bytea(QUERY, &chunk[..whole])?.parse().map_err(|_| "an odd reply".to_string())?;
    let offset = offset + whole as u64;
    let last = frames.last().map_or(0, |(number, _)| *number);
    spill::set_forwarded_mark(file, offset, last, lsn as u64).map_err(|e| e.to_string())?;
    let events: u64 = frames_events(&chunk[..whole]);
    queue::set_forwarded(|f| {
        f.file = file;
        f.offset = offset;
        f.last = last;
        f.lsn = lsn as u64;
        f.events += events;
    });
    Ok(true)
}

/// How many events whole frames hold (their headers' counts).
fn frames_events(bytes: &[u8]) -> u64 {
    pii_vault_core::audit_spill::event_counts(bytes)
}

/// `pii_vault.forward_conninfo`, or the standby's `primary_conninfo`, to
/// the vault's database (`pii_vault.database`), as `pii_vault forwarder`.
fn conninfo() -> String {
    let quoted = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let base = guc::forward_conninfo().unwrap_or_else(|| {
        // SAFETY: reads a setting by name; missing_ok, NULL when unset.
        let primary = unsafe { pg_sys::GetConfigOption(c"primary_conninfo".as_ptr(), true, false) };
        if primary.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated GUC string, copied at once.
            unsafe { CStr::from_ptr(primary) }.to_string_lossy().into_owned()
        }
    });
    // Later keywords win over earlier ones in a libpq connection string.
    format!(
        "{base} dbname={} application_name={} connect_timeout=10",
        quoted(&guc::database()),
        quoted("pii_vault forwarder")
    )
}
