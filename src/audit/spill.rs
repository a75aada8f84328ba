//! The spill file: where the audit writer keeps the queued events it could
//! not write to the audit table when it is stopped (a shutdown or
//! pg_terminate_backend while it waits for its database, while the loaded
//! key is refused, or before the linger ends) or dies connecting, and
//! where the next writer finds them and writes them before anything else;
//! on a standby, where its keeper keeps every event until the primary has
//! taken it (`keeper`, `forwarder`). Its format and its MAC are
//! `pii_vault_core::audit_spill`.
//!
//! The file lies at the top of PGDATA under a name beginning `pgsql_tmp`:
//! base backups (`pg_basebackup`, so every standby made from one) skip
//! such files, so a copy of the primary never replays the primary's
//! events as its own; PostgreSQL's start-up clean-up of temporary files
//! looks only in `base/pgsql_tmp` and the tablespaces, never there.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use pgrx::pg_sys;

use crate::audit::{queue, AuditEvent};
use crate::crypto::KeySet;
pub use pii_vault_core::audit_spill::PRIMARY;
use pii_vault_core::audit_spill::{decode, encode_frame, SpillProblem, Spilled, UNVOUCHED};

pub const FILE_NAME: &str = "pgsql_tmp_pii_vault_audit_spill";

/// The most the file holds: about 400 000 events. Past it the events stay
/// in the queue, so calls are refused once it is full and the disk is not
/// filled; `vault_health` fails long before.
const MAX_BYTES: u64 = 64 << 20;
/// What an exiting consumer may add past MAX_BYTES: a whole queue of the
/// largest events.
const EXIT_ROOM: u64 = 16 << 20;

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

/// Renames the spill file out of the consumer's way, whatever it is (a
/// file that does not verify, or was changed by someone else, or is not a
/// regular file of the server's user): its events stay there for an
/// operator, and `vault_health` names it. The new name.
pub fn set_aside() -> std::io::Result<String> {
    let mut n = 1;
    let name = loop {
        let name = format!("{FILE_NAME}.unverified.{n}");
        if std::fs::symlink_metadata(data_dir().join(&name)).is_err() {
            break name;
        }
        n += 1;
    };
    std::fs::rename(path(), data_dir().join(&name))?;
    File::open(data_dir())?.sync_all()?;
    queue::forget_spill_file();
    Ok(name)
}

/// This standby's id in the frames its keeper writes (`origin`): random,
/// made at its keeper's first start and kept in PGDATA under a name base
/// backups leave out, so every standby made from a backup gets its own.
pub fn standby_origin() -> std::io::Result<[u8; 16]> {
    let path = data_dir().join(ORIGIN_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Some(id) = parse_hex16(text.trim()) {
            return Ok(id);
        }
    }
    let id = crate::crypto::random_token().map_err(|e| std::io::Error::other(e.to_string()))?;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let temporary = data_dir().join(format!("{ORIGIN_FILE}.new"));
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    file.write_all(hex.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &path)?;
    File::open(data_dir())?.sync_all()?;
    Ok(id)
}

const ORIGIN_FILE: &str = "pgsql_tmp_pii_vault_origin";

fn parse_hex16(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

/// The file as this server's consumer last left it: its inode, size and
/// modification time. Kept in shared memory, so a file replaced,
/// truncated, extended or rewritten by anyone else while the server runs
/// (`COPY ... TO` by a member of pg_write_server_files) is refused, never
/// replayed or removed as if it were ours.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Identity {
    pub inode: u64,
    pub size: u64,
    pub mtime_ns: i64,
}

fn identity_of(meta: &std::fs::Metadata) -> Identity {
    use std::os::unix::fs::MetadataExt;
    Identity { inode: meta.ino(), size: meta.size(), mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec() }
}

/// Why the file is not replayed.
#[derive(Debug)]
pub enum Refused {
    /// Not a regular file owned by the server's user (a directory, a
    /// symbolic link, another owner).
    NotOurs,
    /// Changed since this server's consumer last wrote or read it.
    Changed,
    /// Its frames do not verify.
    Problem(SpillProblem),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NotOurs => f.write_str("not a regular file of this server's user with mode 0600"),
            Refused::Changed => f.write_str("changed by someone else since this server last wrote or read it"),
            Refused::Problem(SpillProblem::KeyNotLoaded { key_version, .. }) => {
                write!(f, "its frames are MACed under key version {key_version}, which is not loaded")
            }
            Refused::Problem(SpillProblem::NotAuthentic { at }) => {
                write!(f, "a frame at byte {at} does not verify under the loaded keys")
            }
        }
    }
}

/// Opens the file without following a symbolic link; checks that it is a
/// regular file of the server's user (mode 0600) and, when this server
/// has seen it before, that nobody changed it since. None when there is
/// no file.
fn open_ours(append: bool) -> std::io::Result<Option<Result<(File, Identity), Refused>>> {
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    if append {
        options.append(true);
    }
    let file = match options.open(path()) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A symbolic link (ELOOP) or something else we cannot open as ours.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(Some(Err(Refused::NotOurs))),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid has no preconditions.
    let ours = meta.file_type().is_file() && meta.uid() == unsafe { libc::geteuid() };
    if !ours || meta.permissions().mode() & 0o077 != 0 {
        return Ok(Some(Err(Refused::NotOurs)));
    }
    let identity = identity_of(&meta);
    match queue::spill_file_seen() {
        Some(seen) if seen != identity => Ok(Some(Err(Refused::Changed))),
        _ => Ok(Some(Ok((file, identity)))),
    }
}

/// Appends `events` as one frame MACed under the active key (`vouched`:
/// the consumer found that key to be the vault's; `origin`: this server's
/// id, `PRIMARY` on a primary), and fsyncs it (and PGDATA when the file is
/// new) before returning. A file this server has not seen yet is read
/// first: a torn last frame (a process died appending it) is cut off, so
/// nothing appended after it is lost behind it; a file that is not ours,
/// was changed, or does not verify is set aside and a new one begun.
pub fn append(
    keys: &KeySet,
    vouched: bool,
    origin: &[u8; 16],
    events: &[&AuditEvent],
    exiting: bool,
) -> std::io::Result<()> {
    let existing = match open_ours(true)? {
        Some(Ok((file, _))) if queue::spill_file_seen().is_some() => Some(file),
        Some(Ok((file, _))) => {
            let mut bytes = Vec::new();
            (&file).read_to_end(&mut bytes)?;
            match decode(keys, &bytes) {
                Ok(spilled) => {
                    if spilled.torn {
                        file.set_len(spilled.complete_len as u64)?;
                        file.sync_all()?;
                    }
                    Some(file)
                }
                Err(_) => {
                    drop(file);
                    set_aside()?;
                    None
                }
            }
        }
        Some(Err(_)) => {
            set_aside()?;
            None
        }
        None => None,
    };
    let size = match &existing {
        Some(file) => file.metadata()?.len(),
        None => 0,
    };
    let flags = if vouched { 0 } else { UNVOUCHED };
    let (previous, number) = queue::next_frame_numbers();
    let frame = encode_frame(keys.active(), flags, origin, previous, number, events);
    // A process that exits may go past MAX_BYTES by what the queue holds:
    // those events are of calls already served.
    let cap = if exiting { MAX_BYTES + EXIT_ROOM } else { MAX_BYTES };
    if size + frame.len() as u64 > cap {
        return Err(std::io::Error::other(format!("{FILE_NAME} would pass {MAX_BYTES} bytes")));
    }
    let mut file = match existing {
        Some(file) => file,
        None => {
            OpenOptions::new().append(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path())?
        }
    };
    file.write_all(&frame)?;
    file.sync_all()?;
    if size == 0 {
        File::open(data_dir())?.sync_all()?;
    }
    queue::saw_spill_file(identity_of(&file.metadata()?));
    Ok(())
}

/// What the file holds (None when there is none), or why it is refused.
pub fn read(keys: &KeySet) -> std::io::Result<Option<Result<Spilled, Refused>>> {
    let (file, identity) = match open_ours(false)? {
        None => return Ok(None),
        Some(Err(refused)) => return Ok(Some(Err(refused))),
        Some(Ok(opened)) => opened,
    };
    let mut bytes = Vec::new();
    (&file).read_to_end(&mut bytes)?;
    queue::saw_spill_file(identity);
    Ok(Some(decode(keys, &bytes).map_err(Refused::Problem)))
}

/// Removes the file once its events are committed to the audit table; a
/// file changed since it was read is set aside instead (what was read is
/// written, the rest is an operator's to judge).
pub fn remove() -> std::io::Result<()> {
    match open_ours(false)? {
        None => {}
        Some(Ok(_)) => {
            std::fs::remove_file(path())?;
            File::open(data_dir())?.sync_all()?;
            queue::forget_spill_file();
        }
        Some(Err(_)) => {
            set_aside()?;
        }
    }
    Ok(())
}

/// Where the forwarder records how far the primary has taken the spill
/// file: "FILE OFFSET LAST LSN", the file named by its first frame's
/// number, LAST the number of the last frame taken, LSN the primary's WAL
/// position once it had committed them.
const FORWARDED_FILE: &str = "pgsql_tmp_pii_vault_forwarded";

/// The spill file's name (its first frame's number) and size, None when
/// there is none or it holds no whole header yet.
fn current_file() -> std::io::Result<Option<(File, u64, u64)>> {
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path()) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::other(format!("{FILE_NAME} is not a regular file")));
    }
    let mut header = vec![0u8; pii_vault_core::audit_spill::HEADER_LEN];
    use std::os::unix::fs::FileExt;
    if file.read_at(&mut header, 0)? < header.len() {
        return Ok(None);
    }
    match pii_vault_core::audit_spill::first_number(&header) {
        Some(number) => Ok(Some((file, number, meta.len()))),
        None => Err(std::io::Error::other(format!("{FILE_NAME} does not start with a frame"))),
    }
}

/// What the primary has not taken yet, up to `max` bytes from where it
/// stopped: the file's name, the offset read from, the bytes. None when
/// there is no file.
pub fn read_for_forwarding(max: usize) -> std::io::Result<Option<(u64, u64, Vec<u8>)>> {
    let Some((file, name, size)) = current_file()? else { return Ok(None) };
    let mark = queue::forwarded();
    let offset = if mark.file == name { mark.offset.min(size) } else { 0 };
    let len = ((size - offset) as usize).min(max);
    let mut bytes = vec![0u8; len];
    use std::os::unix::fs::FileExt;
    file.read_exact_at(&mut bytes, offset)?;
    Ok(Some((name, offset, bytes)))
}

/// The forwarder's mark as it last recorded it.
pub fn forwarded_mark() -> Option<queue::Forwarded> {
    let text = std::fs::read_to_string(data_dir().join(FORWARDED_FILE)).ok()?;
    let parts: Vec<u64> = text.split_whitespace().map(str::parse::<u64>).collect::<Result<_, _>>().ok()?;
    match parts[..] {
        [file, offset, last, lsn] => Some(queue::Forwarded { file, offset, last, lsn, ..Default::default() }),
        _ => None,
    }
}

/// Records (fsynced) that the primary has taken the spill file `file` up
/// to `offset`, the frame `last` included, committed at `lsn`.
pub fn set_forwarded_mark(file: u64, offset: u64, last: u64, lsn: u64) -> std::io::Result<()> {
    let temporary = data_dir().join(format!("{FORWARDED_FILE}.new"));
    let mut out = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    out.write_all(format!("{file} {offset} {last} {lsn}\n").as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&temporary, data_dir().join(FORWARDED_FILE))?;
    File::open(data_dir())?.sync_all()
}

/// Removes the spill file once the primary has taken all of it (the
/// keeper, its one appender, between appends). A later frame starts a new
/// file, which the forwarder tells apart by its first frame's number.
pub fn remove_if_forwarded() -> std::io::Result<bool> {
    let Some((_, name, size)) = current_file()? else { return Ok(false) };
    let mark = queue::forwarded();
    // SAFETY: reads shared state (the startup process's replay position).
    let replayed = unsafe { pg_sys::GetXLogReplayRecPtr(std::ptr::null_mut()) };
    if mark.file != name || mark.offset != size || replayed < mark.lsn {
        return Ok(false);
    }
    remove()?;
    Ok(true)
}

/// The number of the last frame the spill file holds, if any (the keeper
/// continues the chain of frames after it).
pub fn last_frame_number() -> std::io::Result<Option<u64>> {
    let Some((file, _, size)) = current_file()? else { return Ok(None) };
    let mut bytes = vec![0u8; size as usize];
    use std::os::unix::fs::FileExt;
    file.read_exact_at(&mut bytes, 0)?;
    Ok(pii_vault_core::audit_spill::frames_in(&bytes).last().map(|(number, _)| *number))
}

/// How long `keep_queue` sleeps between looks at an empty queue.
const NAP: Duration = Duration::from_millis(10);

/// Appends the queued events to the spill file, `batch` at a time (each a
/// frame, `vouched()` saying whether the consumer found its key to be the
/// vault's), freeing their slots once the frame is fsynced, until the
/// queue has stayed empty for `linger`. On a failure to write the file the
/// events stay queued (and it is logged). The queue's one consumer only.
pub fn keep_queue(vouched: impl Fn() -> bool, origin: &[u8; 16], batch: usize, linger: Duration, exiting: bool) {
    let Ok(keys) = crate::keys::key_set() else { return };
    let mut quiet = Duration::ZERO;
    loop {
        let pending = queue::peek(batch);
        if pending.is_empty() {
            if quiet >= linger {
                return;
            }
            std::thread::sleep(NAP);
            quiet += NAP;
            continue;
        }
        quiet = Duration::ZERO;
        if let Err(e) = append(keys, vouched(), origin, &pending, exiting) {
            // Once a minute at most: a full file fails every few ms.
            thread_local! {
                static SAID: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
            }
            if SAID.get().is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                SAID.set(Some(std::time::Instant::now()));
                pgrx::log!(
                    "pii_vault: could not keep {} queued audit events in {FILE_NAME}: {e}; they stay queued, and calls are refused once the queue is full",
                    pending.len()
                );
            }
            return;
        }
        let n = pending.len();
        queue::release(n);
        queue::note_spilled(n as u64);
    }
}
