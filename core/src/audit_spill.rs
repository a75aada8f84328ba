//! The spill file's format: audit events that were queued and could not be
//! written to the audit table before the audit writer exited, kept in a
//! file so the next writer writes them first.
//!
//! The file is a sequence of frames, each appended whole and fsynced:
//!
//! ```text
//! MAGIC (8) | flags u8 | key version u32 | origin (16) | previous u64 |
//! frame number u64 | event count u32 | body length u32 |
//! body (AuditEvent::encode each) | MAC (32)
//! ```
//!
//! `previous` is the number of the origin's frame before this one (0 for
//! its first): the frames of a standby form a chain, so a primary takes
//! them only in order, with none missing, whoever hands them over.
//!
//! ```text
//! ```
//!
//! The MAC is HMAC-SHA256 under the audit sub-key of the named version,
//! over a label, the header and the body. A frame that verifies under a
//! loaded key is replayed as it was queued. One that does not is either
//! planted or edited, or was written by a writer that had not yet found
//! its key to be the vault's (flag `UNVOUCHED`: it was waiting for its
//! database, or the vault refused its key). The first kind is refused and
//! the file set aside; the second is replayed with every event's
//! application name marked `unverified:`, so the events of a server
//! started once with the wrong key are not lost and cannot pass for
//! authenticated ones. (The flag is itself unauthenticated there: whoever
//! can write PGDATA can add events so marked, never unmarked ones.) A
//! frame that ends early (the process died while appending it) was never
//! complete and is reported as a torn tail, not read.

use hmac::Mac;

use crate::audit_event::AuditEvent;
use crate::crypto::keyring::HmacSha256;
use crate::crypto::{KeyRing, KeySet};

const MAGIC: &[u8; 8] = b"PIIVSPL1";
const LABEL: &[u8] = b"pii_vault audit spill v1";
const HEADER: usize = 8 + 1 + 4 + 16 + 8 + 8 + 4 + 4;
const MAC_LEN: usize = 32;
/// No frame's body is longer (a writer keeps at most 64 MiB in all).
const MAX_BODY: usize = 64 << 20;
/// The frame's writer had not found its key to be the vault's.
pub const UNVOUCHED: u8 = 1;
/// The origin of a primary's own frames (a standby's keeper names its
/// standby by a random id of its own).
pub const PRIMARY: [u8; 16] = [0; 16];

/// One frame of `events`: `flags` (0 or `UNVOUCHED`), the server it was
/// kept on (`origin`), the number of that server's frame before it
/// (`previous`, 0: none) and its own (greater), MACed under `ring`.
pub fn encode_frame(
    ring: &KeyRing,
    flags: u8,
    origin: &[u8; 16],
    previous: u64,
    number: u64,
    events: &[&AuditEvent],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.len() * 96);
    for event in events {
        event.encode(&mut body);
    }
    let mut frame = Vec::with_capacity(HEADER + body.len() + MAC_LEN);
    frame.extend_from_slice(MAGIC);
    frame.push(flags);
    frame.extend_from_slice(&ring.key_version().to_be_bytes());
    frame.extend_from_slice(origin);
    frame.extend_from_slice(&previous.to_be_bytes());
    frame.extend_from_slice(&number.to_be_bytes());
    frame.extend_from_slice(&(events.len() as u32).to_be_bytes());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let mac = frame_mac(ring, &frame);
    frame.extend_from_slice(&mac);
    frame
}

fn frame_mac(ring: &KeyRing, header_and_body: &[u8]) -> [u8; 32] {
    let mut mac: HmacSha256 = ring.audit_mac.clone();
    mac.update(LABEL);
    mac.update(header_and_body);
    mac.finalize().into_bytes().into()
}

/// One frame read back.
pub struct Frame {
    pub origin: [u8; 16],
    pub previous: u64,
    pub number: u64,
    /// Whether its MAC verified (if not, it was `UNVOUCHED` and its events
    /// are marked).
    pub verified: bool,
    pub events: Vec<AuditEvent>,
    /// Where it ends in the bytes read.
    pub end: usize,
}

/// The number of the frame whose header starts `bytes`, if it is one
/// (the first frame's number names a spill file: numbers only grow).
pub fn first_number(bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..HEADER)?;
    (&header[..8] == MAGIC).then(|| u64::from_be_bytes(header[37..45].try_into().expect("8 bytes")))
}

/// Bytes of a frame's header.
pub const HEADER_LEN: usize = HEADER;

/// The whole frames at the start of `bytes`, by their framing alone (no
/// key: the primary verifies them): each frame's number and where it ends.
/// Stops at the first incomplete or malformed one.
pub fn frames_in(bytes: &[u8]) -> Vec<(u64, usize)> {
    let mut frames = Vec::new();
    let mut at = 0usize;
    while let Some(header) = bytes.get(at..at + HEADER) {
        if &header[..8] != MAGIC {
            break;
        }
        let number = u64::from_be_bytes(header[37..45].try_into().expect("8 bytes"));
        let body_len = u32::from_be_bytes(header[49..53].try_into().expect("4 bytes")) as usize;
        let end = at + HEADER + body_len + MAC_LEN;
        if body_len > MAX_BODY || end > bytes.len() {
            break;
        }
        frames.push((number, end));
        at = end;
    }
    frames
}

/// The events the whole frames at the start of `bytes` hold, by their
/// headers' counts.
pub fn event_counts(bytes: &[u8]) -> u64 {
    let mut total = 0u64;
    let mut at = 0usize;
    for (_, end) in frames_in(bytes) {
        total += u64::from(u32::from_be_bytes(bytes[at + 45..at + 49].try_into().expect("4 bytes")));
        at = end;
    }
    total
}

/// What a spill file holds.
#[derive(Default)]
pub struct Spilled {
    pub frames: Vec<Frame>,
    /// Bytes of the complete frames (the rest is a torn tail).
    pub complete_len: usize,
    /// The bytes end with an incomplete frame (a process died appending
    /// it): left out.
    pub torn: bool,
}

impl Spilled {
    /// Every event, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &AuditEvent> {
        self.frames.iter().flat_map(|f| f.events.iter())
    }

    /// Events of unvouched frames that did not verify.
    pub fn unverified(&self) -> usize {
        self.frames.iter().filter(|f| !f.verified).map(|f| f.events.len()).sum()
    }
}

/// Why a spill file cannot be replayed whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpillProblem {
    /// A vouched frame's key version is not loaded: its events can be
    /// replayed by a server that loads it.
    KeyNotLoaded { frame: u64, key_version: u32 },
    /// A vouched frame's MAC does not verify under its version, or a
    /// body is not events: edited, or not a spill file.
    NotAuthentic { at: usize },
}

/// Reads every frame of `bytes`. A frame cut short at the very end is
/// left out (`torn`); anything else that does not verify is a
/// `SpillProblem`, and then nothing of the file is replayed (the file
/// stays for an operator).
pub fn decode(keys: &KeySet, bytes: &[u8]) -> Result<Spilled, SpillProblem> {
    let mut spilled = Spilled::default();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some(header) = rest.get(..HEADER) else {
            // A tail shorter than a header is torn only if it begins as
            // one does.
            if rest[..rest.len().min(MAGIC.len())] != MAGIC[..rest.len().min(MAGIC.len())] {
                return Err(SpillProblem::NotAuthentic { at });
            }
            spilled.torn = true;
            break;
        };
        if &header[..8] != MAGIC || header[8] & !UNVOUCHED != 0 {
            return Err(SpillProblem::NotAuthentic { at });
        }
        let unvouched = header[8] & UNVOUCHED != 0;
        let key_version = u32::from_be_bytes(header[9..13].try_into().expect("4 bytes"));
        let origin: [u8; 16] = header[13..29].try_into().expect("16 bytes");
        let previous = u64::from_be_bytes(header[29..37].try_into().expect("8 bytes"));
        let number = u64::from_be_bytes(header[37..45].try_into().expect("8 bytes"));
        let count = u32::from_be_bytes(header[45..49].try_into().expect("4 bytes")) as usize;
        let body_len = u32::from_be_bytes(header[49..53].try_into().expect("4 bytes")) as usize;
        if body_len > MAX_BODY {
            return Err(SpillProblem::NotAuthentic { at });
        }
        let Some(frame) = rest.get(..HEADER + body_len + MAC_LEN) else {
            spilled.torn = true;
            break;
        };
        let (signed, mac) = frame.split_at(HEADER + body_len);
        let verified = match keys.version(key_version) {
            Some(ring) => {
                use subtle::ConstantTimeEq;
                bool::from(frame_mac(ring, signed).ct_eq(mac))
            }
            None if unvouched => false,
            None => return Err(SpillProblem::KeyNotLoaded { frame: number, key_version }),
        };
        if !verified && !unvouched {
            return Err(SpillProblem::NotAuthentic { at });
        }
        let mut body = &signed[HEADER..];
        let mut events = Vec::with_capacity(count.min(body.len()));
        while !body.is_empty() {
            let (mut event, used) = AuditEvent::decode(body).ok_or(SpillProblem::NotAuthentic { at })?;
            if !verified {
                event.mark_unverified();
            }
            events.push(event);
            body = &body[used..];
        }
        if events.len() != count {
            return Err(SpillProblem::NotAuthentic { at });
        }
        at += frame.len();
        spilled.frames.push(Frame { origin, previous, number, verified, events, end: at });
        spilled.complete_len = at;
    }
    Ok(spilled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_event::{Operation, Outcome, Roles};

    fn keys(masters: &[(u32, [u8; 32])]) -> KeySet {
        KeySet::new(masters.iter().map(|(v, m)| (*v, m)), None).unwrap()
    }

    fn event(n: i64) -> AuditEvent {
        let roles = Roles { session: 10, acting: 11, calling: 12 };
        AuditEvent::new(n, roles, "app", "", Operation::Get, Some(&[n as u8; 16]), None, Outcome::Ok)
    }

    #[test]
    fn frames_replay_in_order_under_any_loaded_version() {
        let set = keys(&[(1, [1; 32]), (2, [2; 32])]);
        let a: Vec<AuditEvent> = (0..3).map(event).collect();
        let b: Vec<AuditEvent> = (3..5).map(event).collect();
        let mut file = encode_frame(set.version(1).unwrap(), 0, &PRIMARY, 0, 0, &a.iter().collect::<Vec<_>>());
        file.extend(encode_frame(set.active(), 0, &PRIMARY, 0, 1, &b.iter().collect::<Vec<_>>()));
        let spilled = decode(&set, &file).unwrap();
        assert!(!spilled.torn);
        assert_eq!(spilled.frames.iter().map(|f| f.number).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(spilled.complete_len, file.len());
        assert_eq!(spilled.events().map(|e| e.at).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(decode(&set, &[]).unwrap().events().count(), 0);
    }

    #[test]
    fn frames_are_found_by_their_framing() {
        let set = keys(&[(1, [1; 32])]);
        let events: Vec<AuditEvent> = (0..3).map(event).collect();
        let refs: Vec<&AuditEvent> = events.iter().collect();
        let first = encode_frame(set.active(), 0, &PRIMARY, 0, 7, &refs[..1]);
        let second = encode_frame(set.active(), 0, &PRIMARY, 0, 9, &refs[1..]);
        let file = [first.as_slice(), second.as_slice()].concat();
        assert_eq!(frames_in(&file), [(7, first.len()), (9, file.len())]);
        assert_eq!(frames_in(&file[..file.len() - 1]), [(7, first.len())]);
        assert_eq!(frames_in(b"junk"), []);
    }

    #[test]
    fn a_torn_last_frame_is_left_out_and_said() {
        let set = keys(&[(1, [1; 32])]);
        let events: Vec<AuditEvent> = (0..4).map(event).collect();
        let refs: Vec<&AuditEvent> = events.iter().collect();
        let first = encode_frame(set.active(), 0, &PRIMARY, 0, 0, &refs[..2]);
        let second = encode_frame(set.active(), 0, &PRIMARY, 0, 1, &refs[2..]);
        for cut in 1..second.len() {
            let mut file = first.clone();
            file.extend_from_slice(&second[..cut]);
            let spilled = decode(&set, &file).unwrap();
            assert!(spilled.torn, "cut at {cut}");
            assert_eq!(spilled.events().count(), 2, "cut at {cut}");
            assert_eq!(spilled.complete_len, first.len(), "cut at {cut}");
        }
    }

    #[test]
    fn another_key_an_edit_or_a_plant_is_refused() {
        let set = keys(&[(1, [1; 32])]);
        let other = keys(&[(1, [9; 32])]);
        let events: Vec<AuditEvent> = (0..2).map(event).collect();
        let refs: Vec<&AuditEvent> = events.iter().collect();
        let frame = encode_frame(set.active(), 0, &PRIMARY, 0, 0, &refs);
        assert_eq!(decode(&other, &frame).err(), Some(SpillProblem::NotAuthentic { at: 0 }));
        for i in 0..frame.len() {
            let mut edited = frame.clone();
            edited[i] ^= 0x20;
            assert!(
                match decode(&set, &edited) {
                    Err(_) => true,
                    // A length byte made longer reads as a torn tail: nothing replayed.
                    Ok(spilled) => spilled.torn && spilled.frames.is_empty(),
                },
                "byte {i}"
            );
        }
        let v2 = keys(&[(2, [2; 32])]);
        let frame2 = encode_frame(v2.active(), 0, &PRIMARY, 0, 5, &refs);
        assert_eq!(decode(&set, &frame2).err(), Some(SpillProblem::KeyNotLoaded { frame: 5, key_version: 2 }));
        assert!(decode(&set, b"not a spill file at all, just text").is_err());
    }

    #[test]
    fn an_unvouched_frame_under_another_key_is_replayed_marked() {
        let right = keys(&[(1, [1; 32])]);
        let wrong = keys(&[(1, [9; 32]), (3, [3; 32])]);
        let events: Vec<AuditEvent> = (0..2).map(event).collect();
        let refs: Vec<&AuditEvent> = events.iter().collect();
        let standby = [7; 16];
        let mut file = encode_frame(right.active(), UNVOUCHED, &standby, 0, 0, &refs);
        file.extend(encode_frame(wrong.active(), UNVOUCHED, &standby, 0, 1, &refs));
        let spilled = decode(&right, &file).unwrap();
        assert!(!spilled.torn);
        assert_eq!((spilled.frames.len(), spilled.unverified()), (2, 2));
        assert!(spilled.frames.iter().all(|f| f.origin == standby));
        let apps: Vec<String> = spilled.events().map(|e| e.application_name().into_owned()).collect();
        assert_eq!(apps, ["app", "app", "unverified: app", "unverified: app"]);
        // The same frames vouched for are refused instead.
        let vouched = encode_frame(wrong.version(1).unwrap(), 0, &standby, 0, 0, &refs);
        assert_eq!(decode(&right, &vouched).err(), Some(SpillProblem::NotAuthentic { at: 0 }));
        // Unknown flags are refused too.
        let mut odd = encode_frame(right.active(), 0, &PRIMARY, 0, 0, &refs);
        odd[8] = 2;
        assert!(decode(&right, &odd).is_err());
    }
}
