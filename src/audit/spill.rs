//! The spill file: where the audit writer keeps the queued events it could
//! not write to the audit table when it exits (a shutdown while it waits
//! for its database, while the loaded key is refused, or an error), and
//! where the next writer finds them and writes them before anything else.
//! Its format and its MAC are `pii_vault_core::audit_spill`.
//!
//! The file lies at the top of PGDATA under a name beginning `pgsql_tmp`:
//! base backups (`pg_basebackup`, so every standby made from one) skip
//! such files, so a copy of the primary never replays the primary's
//! events as its own; PostgreSQL's start-up clean-up of temporary files
//! looks only in `base/pgsql_tmp` and the tablespaces, never there.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use pgrx::pg_sys;

use crate::audit::AuditEvent;
use crate::crypto::KeySet;
use pii_vault_core::audit_spill::{decode, encode_frame, SpillProblem, Spilled, UNVOUCHED};

pub const FILE_NAME: &str = "pgsql_tmp_pii_vault_audit_spill";

/// The most the file holds: about 400 000 events. Past it the events stay
/// in the queue (lost in a shutdown, as before the file existed), so a
/// writer that fails again and again cannot fill the disk; `vault_health`
/// fails long before.
const MAX_BYTES: u64 = 64 << 20;

fn data_dir() -> PathBuf {
    // SAFETY: DataDir is set before any backend or worker runs extension
    // code and never changes afterwards.
    let dir = unsafe { std::ffi::CStr::from_ptr(pg_sys::DataDir) };
    PathBuf::from(dir.to_string_lossy().into_owned())
}

pub fn path() -> PathBuf {
    data_dir().join(FILE_NAME)
}

/// The file's size in bytes, None when there is none.
pub fn size() -> Option<u64> {
    std::fs::metadata(path()).ok().map(|m| m.len())
}

/// Every file of kept events in PGDATA: the spill file and those set aside
/// (`set_aside`), by name, with their sizes.
pub fn kept() -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(data_dir()) else { return Vec::new() };
    let mut files: Vec<(String, u64)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(FILE_NAME).then(|| (name, e.metadata().map_or(0, |m| m.len())))
        })
        .collect();
    files.sort();
    files
}

/// Renames a spill file that does not verify under the loaded keys out of
/// the writer's way (its events stay there for an operator: renamed back,
/// a server loading the key that wrote it replays them); the new name.
pub fn set_aside() -> std::io::Result<String> {
    let mut n = 1;
    let name = loop {
        let name = format!("{FILE_NAME}.unverified.{n}");
        if !data_dir().join(&name).exists() {
            break name;
        }
        n += 1;
    };
    std::fs::rename(path(), data_dir().join(&name))?;
    File::open(data_dir())?.sync_all()?;
    Ok(name)
}

/// Appends `events` as one frame MACed under the active key (`vouched`:
/// the writer found that key to be the vault's), and fsyncs it (and PGDATA
/// when the file is new) before returning.
pub fn append(keys: &KeySet, vouched: bool, events: &[&AuditEvent]) -> std::io::Result<()> {
    let path = path();
    let before = size();
    let flags = if vouched { 0 } else { UNVOUCHED };
    let frame = encode_frame(keys.active(), flags, before.unwrap_or(0), events);
    if before.unwrap_or(0) + frame.len() as u64 > MAX_BYTES {
        return Err(std::io::Error::other(format!("{} would pass {MAX_BYTES} bytes", path.display())));
    }
    let mut file = OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
    file.write_all(&frame)?;
    file.sync_all()?;
    if before.is_none() {
        File::open(data_dir())?.sync_all()?;
    }
    Ok(())
}

/// What the file holds, None when there is none; with whether its last
/// frame was torn (left out).
pub fn read(keys: &KeySet) -> std::io::Result<Option<Result<(Spilled, bool), SpillProblem>>> {
    match std::fs::read(path()) {
        Ok(bytes) => Ok(Some(decode(keys, &bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the file once its events are committed to the audit table.
pub fn remove() -> std::io::Result<()> {
    std::fs::remove_file(path())?;
    File::open(data_dir())?.sync_all()
}
