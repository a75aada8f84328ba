//! Reading the master key from a file or a command.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use crate::error::KeyProblem;

pub type MasterKey = Zeroizing<[u8; 32]>;

/// The master keys of a key source, one per version, ascending.
pub type MasterKeys = Vec<(u32, MasterKey)>;

/// Largest key file or command output we read: room for every version's
/// line (`32767:` and 64 hex characters) with comments, and no more.
const MAX_KEY_SOURCE_BYTES: u64 = 64 * 1024;

/// Key versions run from 1 to this (they are stored as `integer`s and
/// named in errors; a small range keeps them readable).
pub const MAX_KEY_VERSION: u32 = 32767;

/// Parses a key source: one key per line, `<version>:<64 hex>`, with `#`
/// comments and blank lines; or, as every keyfile before versions was, one
/// bare 64-hex line, which is version 1. Versions are 1..=32767, each at
/// most once; a source with no key, a bare key beside others, or any line
/// that is not one of these is `BadKeyFormat` (the message never quotes
/// the line: it may hold key bytes).
pub fn parse_key_source(text: &[u8]) -> Result<MasterKeys, KeyProblem> {
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .map(|line| line.trim_ascii())
        .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
        .collect();
    if let [only] = lines.as_slice() {
        if !only.contains(&b':') {
            return Ok(vec![(1, parse_hex_key(only)?)]);
        }
    }
    let mut keys: MasterKeys = Vec::with_capacity(lines.len());
    for line in lines {
        let colon = line.iter().position(|b| *b == b':').ok_or(KeyProblem::BadKeyFormat)?;
        let version = std::str::from_utf8(&line[..colon])
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && v.len() <= 5)
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|v| (1..=MAX_KEY_VERSION).contains(v))
            .ok_or(KeyProblem::BadKeyFormat)?;
        if keys.iter().any(|(v, _)| *v == version) {
            return Err(KeyProblem::BadKeyFormat);
        }
        keys.push((version, parse_hex_key(&line[colon + 1..])?));
    }
    if keys.is_empty() {
        return Err(KeyProblem::BadKeyFormat);
    }
    keys.sort_by_key(|(v, _)| *v);
    Ok(keys)
}

/// Parses 64 hexadecimal characters, surrounding ASCII whitespace allowed.
pub fn parse_hex_key(text: &[u8]) -> Result<MasterKey, KeyProblem> {
    let trimmed = text.trim_ascii();
    if trimmed.len() != 64 {
        return Err(KeyProblem::BadKeyFormat);
    }
    let mut key = Zeroizing::new([0u8; 32]);
    for (i, pair) in trimmed.chunks_exact(2).enumerate() {
        let hi = hex_digit(pair[0]).ok_or(KeyProblem::BadKeyFormat)?;
        let lo = hex_digit(pair[1]).ok_or(KeyProblem::BadKeyFormat)?;
        key[i] = (hi << 4) | lo;
    }
    Ok(key)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// PostgreSQL's rule for `ssl_key_file`, applied to the key file: owned by
/// the server's user with no group or world access, or owned by root with at
/// most group read.
pub fn check_key_file_mode(owner_uid: u32, mode: u32, server_uid: u32) -> Result<(), KeyProblem> {
    const GROUP_ALL: u32 = 0o070;
    const WORLD_ALL: u32 = 0o007;
    const GROUP_WRITE_EXEC: u32 = 0o030;
    if owner_uid == server_uid {
        if mode & (GROUP_ALL | WORLD_ALL) != 0 {
            return Err(KeyProblem::KeyFileLoosePermissions);
        }
        Ok(())
    } else if owner_uid == 0 {
        if mode & (GROUP_WRITE_EXEC | WORLD_ALL) != 0 {
            return Err(KeyProblem::KeyFileLoosePermissions);
        }
        Ok(())
    } else {
        Err(KeyProblem::KeyFileWrongOwner)
    }
}

/// Reads and checks the key file.
pub fn read_key_file(path: &str, server_uid: u32) -> Result<MasterKeys, KeyProblem> {
    let file = std::fs::File::open(path).map_err(|_| KeyProblem::KeyFileUnreadable)?;
    let meta = file.metadata().map_err(|_| KeyProblem::KeyFileUnreadable)?;
    if !meta.is_file() {
        return Err(KeyProblem::KeyFileUnreadable);
    }
    check_key_file_mode(meta.uid(), meta.mode(), server_uid)?;
    let mut text = Zeroizing::new(Vec::with_capacity(80));
    file.take(MAX_KEY_SOURCE_BYTES + 1).read_to_end(&mut text).map_err(|_| KeyProblem::KeyFileUnreadable)?;
    if text.len() as u64 > MAX_KEY_SOURCE_BYTES {
        return Err(KeyProblem::BadKeyFormat);
    }
    parse_key_source(&text)
}

/// Runs the key command with `/bin/sh -c` and reads the keys from its
/// standard output (the keyfile's format). Its standard error goes to the
/// server log as is; its standard output is never logged.
pub fn run_key_command(command: &str) -> Result<MasterKeys, KeyProblem> {
    let output = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|_| KeyProblem::KeyCommandFailed)?;
    let stdout = Zeroizing::new(output.stdout);
    if !output.status.success() || stdout.len() as u64 > MAX_KEY_SOURCE_BYTES {
        return Err(KeyProblem::KeyCommandFailed);
    }
    parse_key_source(&stdout)
}

/// The effective user id of this process (the server's OS user).
#[allow(unsafe_code)] // geteuid: a C call
pub fn server_uid() -> u32 {
    extern "C" {
        fn geteuid() -> u32;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() }
}

/// The first configured source wins: the key file, then the key command.
pub fn load_master_keys(
    keyfile: Option<&str>,
    key_command: Option<&str>,
    server_uid: u32,
) -> Result<MasterKeys, KeyProblem> {
    match (keyfile.filter(|s| !s.is_empty()), key_command.filter(|s| !s.is_empty())) {
        (Some(path), _) => read_key_file(path, server_uid),
        (None, Some(cmd)) => run_key_command(cmd),
        (None, None) => Err(KeyProblem::NotConfigured),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F";

    #[test]
    fn parses_hex_with_whitespace() {
        let key = parse_hex_key(format!("  {HEX}\n").as_bytes()).unwrap();
        assert_eq!(key[0], 0);
        assert_eq!(key[31], 0x1f);
    }

    #[test]
    fn rejects_bad_formats() {
        for bad in [
            "",
            "00",
            &HEX[..62],
            &format!("{HEX}00"),
            &HEX.replace('0', "g"),
            &format!("{} {}", &HEX[..32], &HEX[32..]),
        ] {
            assert_eq!(parse_hex_key(bad.as_bytes()).unwrap_err(), KeyProblem::BadKeyFormat, "{bad:?}");
        }
    }

    #[test]
    fn versioned_sources() {
        let other = "AB".repeat(32);
        let versions = |text: &str| -> Result<Vec<(u32, u8)>, KeyProblem> {
            parse_key_source(text.as_bytes()).map(|keys| keys.iter().map(|(v, k)| (*v, k[31])).collect())
        };
        assert_eq!(versions(&format!("{HEX}\n")), Ok(vec![(1, 0x1f)]), "a bare key is version 1");
        assert_eq!(versions(&format!("# keys\n\n  {HEX}  \n")), Ok(vec![(1, 0x1f)]));
        assert_eq!(versions(&format!("7:{other}\n# retired: none\n2:{HEX}\n")), Ok(vec![(2, 0x1f), (7, 0xab)]));
        assert_eq!(versions(&format!("32767:{HEX}")), Ok(vec![(32767, 0x1f)]));
        for bad in [
            String::new(),
            "# only a comment\n".to_string(),
            format!("{HEX}\n{other}"),
            format!("{HEX}\n2:{other}"),
            format!("1:{HEX}\n1:{other}"),
            format!("0:{HEX}"),
            format!("32768:{HEX}"),
            format!("-1:{HEX}"),
            format!("+1:{HEX}"),
            format!(" :{HEX}"),
            format!("1:{}", &HEX[..62]),
            format!("1:{HEX}:"),
            format!("0001:{HEX}\n1:{other}"),
        ] {
            assert_eq!(versions(&bad), Err(KeyProblem::BadKeyFormat), "{bad:?}");
        }
    }

    #[test]
    fn file_modes_follow_postgres_ssl_key_rule() {
        let me = 1000;
        assert!(check_key_file_mode(me, 0o100600, me).is_ok());
        assert!(check_key_file_mode(me, 0o100400, me).is_ok());
        assert_eq!(check_key_file_mode(me, 0o100640, me), Err(KeyProblem::KeyFileLoosePermissions));
        assert_eq!(check_key_file_mode(me, 0o100604, me), Err(KeyProblem::KeyFileLoosePermissions));
        assert!(check_key_file_mode(0, 0o100640, me).is_ok());
        assert_eq!(check_key_file_mode(0, 0o100644, me), Err(KeyProblem::KeyFileLoosePermissions));
        assert_eq!(check_key_file_mode(0, 0o100660, me), Err(KeyProblem::KeyFileLoosePermissions));
        assert_eq!(check_key_file_mode(1234, 0o100600, me), Err(KeyProblem::KeyFileWrongOwner));
    }

    fn temp_key_file(name: &str, contents: &str, mode: u32) -> String {
        let path = std::env::temp_dir().join(format!("pii_vault_test_{}_{name}", std::process::id()));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn key_file_end_to_end() {
        let uid = server_uid();
        let good = temp_key_file("good", HEX, 0o600);
        assert_eq!(read_key_file(&good, uid).unwrap()[0].1[1], 1);
        let loose = temp_key_file("loose", HEX, 0o644);
        // World-readable is refused whether the owner is the server's user or root.
        assert_eq!(read_key_file(&loose, uid).unwrap_err(), KeyProblem::KeyFileLoosePermissions);
        let bad = temp_key_file("bad", "not a key", 0o600);
        assert_eq!(read_key_file(&bad, uid).unwrap_err(), KeyProblem::BadKeyFormat);
        assert_eq!(read_key_file("/nonexistent/pii_vault.key", uid).unwrap_err(), KeyProblem::KeyFileUnreadable);
        for p in [good, loose, bad] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn key_command_end_to_end() {
        assert_eq!(run_key_command(&format!("echo {HEX}")).unwrap()[0].1[2], 2);
        let two = run_key_command(&format!("printf '2:{HEX}\\n# old\\n1:{}\\n'", "ab".repeat(32))).unwrap();
        assert_eq!(two.iter().map(|(v, k)| (*v, k[0])).collect::<Vec<_>>(), [(1, 0xab), (2, 0)]);
        assert_eq!(run_key_command("exit 3").unwrap_err(), KeyProblem::KeyCommandFailed);
        assert_eq!(run_key_command("echo short").unwrap_err(), KeyProblem::BadKeyFormat);
    }

    #[test]
    fn source_precedence() {
        assert_eq!(load_master_keys(None, None, 0).unwrap_err(), KeyProblem::NotConfigured);
        assert_eq!(load_master_keys(Some(""), Some(""), 0).unwrap_err(), KeyProblem::NotConfigured);
        assert_eq!(
            load_master_keys(Some("/nonexistent/k"), Some(&format!("echo {HEX}")), 0).unwrap_err(),
            KeyProblem::KeyFileUnreadable,
            "the key file wins when both are set"
        );
    }
}
