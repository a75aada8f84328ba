//! The spill file's format: audit events that were queued and could not be
//! written to the audit table before the audit writer exited, kept in a
//! file so the next writer writes them first.
//!
//! The file is a sequence of frames, each appended whole and fsynced:
//!
//! ```text
//! MAGIC (8) | flags u8 | key version u32 | frame number u64 |
//! event count u32 | body length u32 | body (AuditEvent::encode each) | MAC (32)
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
const HEADER: usize = 8 + 1 + 4 + 8 + 4 + 4;
const MAC_LEN: usize = 32;
/// The frame's writer had not found its key to be the vault's.
pub const UNVOUCHED: u8 = 1;

/// One frame of `events`, numbered `number`, MACed under `ring`; `flags`
/// is 0 or `UNVOUCHED`.
pub fn encode_frame(ring: &KeyRing, flags: u8, number: u64, events: &[&AuditEvent]) -> Vec<u8> {
    let mut body = Vec::with_capacity(events.len() * 96);
    for event in events {
        event.encode(&mut body);
    }
    let mut frame = Vec::with_capacity(HEADER + body.len() + MAC_LEN);
    frame.extend_from_slice(MAGIC);
    frame.push(flags);
    frame.extend_from_slice(&ring.key_version().to_be_bytes());
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

/// What a spill file holds.
#[derive(Default)]
pub struct Spilled {
    /// The events of every frame, oldest first (those of unvouched frames
    /// that did not verify marked `unverified:`).
    pub events: Vec<AuditEvent>,
    /// Frames read.
    pub frames: u64,
    /// Events of unvouched frames that did not verify.
    pub unverified: u64,
    /// The highest frame number read (the next frame appended takes the
    /// one after it).
    pub last_number: Option<u64>,
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

/// Reads every frame of `bytes`. A frame cut short at the very end (a
/// process that died appending it) is left out and counted in `torn`;
/// anything else that does not verify is a `SpillProblem`, and then
/// nothing of the file is replayed (the file stays for an operator).
pub fn decode(keys: &KeySet, bytes: &[u8]) -> Result<(Spilled, bool), SpillProblem> {
    let mut spilled = Spilled::default();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some(header) = rest.get(..HEADER) else {
            return Ok((spilled, true));
        };
        if &header[..8] != MAGIC || header[8] & !UNVOUCHED != 0 {
            return Err(SpillProblem::NotAuthentic { at });
        }
        let unvouched = header[8] & UNVOUCHED != 0;
        let key_version = u32::from_be_bytes(header[9..13].try_into().expect("4 bytes"));
        let number = u64::from_be_bytes(header[13..21].try_into().expect("8 bytes"));
        let count = u32::from_be_bytes(header[21..25].try_into().expect("4 bytes")) as usize;
        let body_len = u32::from_be_bytes(header[25..29].try_into().expect("4 bytes")) as usize;
        let Some(frame) = rest.get(..HEADER + body_len + MAC_LEN) else {
            return Ok((spilled, true));
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
        let mut events = Vec::with_capacity(count);
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
        if !verified {
            spilled.unverified += count as u64;
        }
        spilled.events.extend(events);
        spilled.frames += 1;
        spilled.last_number = Some(spilled.last_number.map_or(number, |n| n.max(number)));
        at += frame.len();
    }
    Ok((spilled, false))
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
        let mut file = encode_frame(set.version(1).unwrap(), 0, 0, &a.iter().collect::<Vec<_>>());
        file.extend(encode_frame(set.active(), 0, 1, &b.iter().collect::<Vec<_>>()));
        let (spilled, torn) = decode(&set, &file).unwrap();
        assert!(!torn);
        assert_eq!(spilled.frames, 2);
        assert_eq!(spilled.last_number, Some(1));
        assert_eq!(spilled.events.iter().map(|e| e.at).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(decode(&set, &[]).unwrap().0.events.len(), 0);
    }

    #[test]
    fn a_torn_last_frame_is_left_out_and_said() {
        let set = keys(&[(1, [1; 32])]);
        let events: Vec<AuditEvent> = (0..4).map(event).collect();
        let refs: Vec<&AuditEvent> = events.iter().collect();
        let first = encode_frame(set.active(), 0, 0, &refs[..2]);
        let second = encode_frame(set.active(), 0, 1, &refs[2..]);
        for cut in 1..second.len() {
            let mut file = first.clone();
            file.extend_from_slice(&second[..cut]);
            let (spilled, torn) = decode(&set, &file).unwrap();
            assert!(torn, "cut at {cut}");
            assert_eq!(spilled.events.len(), 2, "cut at {cut}");
        }
    }

    #[test]
    fn another_key_an_edit_or_a_plant_is_refused() {
        let set = keys(&[(1, [1; 32])]);
        let other = keys(&[(1, [9; 32])]);
        let events: Vec<AuditEvent> = (0..2).map(event).collect();
        let refs: Vec<&AuditEvent> = events.iter().collect();
        let frame = encode_frame(set.active(), 0, 0, &refs);
        assert_eq!(decode(&other, &frame).err(), Some(SpillProblem::NotAuthentic { at: 0 }));
        for i in 0..frame.len() {
            let mut edited = frame.clone();
            edited[i] ^= 0x20;
            assert!(
                match decode(&set, &edited) {
                    Err(_) => true,
                    // A length byte made longer reads as a torn tail: nothing replayed.
                    Ok((spilled, torn)) => torn && spilled.events.is_empty(),
                },
                "byte {i}"
            );
        }
        let v2 = keys(&[(2, [2; 32])]);
        let frame2 = encode_frame(v2.active(), 0, 5, &refs);
        assert_eq!(decode(&set, &frame2).err(), Some(SpillProblem::KeyNotLoaded { frame: 5, key_version: 2 }));
        assert!(decode(&set, b"not a spill file at all, just text").is_err());
    }

    #[test]
    fn an_unvouched_frame_under_another_key_is_replayed_marked() {
        let right = keys(&[(1, [1; 32])]);
        let wrong = keys(&[(1, [9; 32]), (3, [3; 32])]);
        let events: Vec<AuditEvent> = (0..2).map(event).collect();
        let refs: Vec<&AuditEvent> = events.iter().collect();
        let mut file = encode_frame(right.active(), UNVOUCHED, 0, &refs);
        file.extend(encode_frame(wrong.active(), UNVOUCHED, 1, &refs));
        let (spilled, torn) = decode(&right, &file).unwrap();
        assert!(!torn);
        assert_eq!((spilled.frames, spilled.unverified), (2, 2));
        let apps: Vec<String> = spilled.events.iter().map(|e| e.application_name().into_owned()).collect();
        assert_eq!(apps, ["app", "app", "unverified: app", "unverified: app"]);
        // The same frames vouched for are refused instead.
        let vouched = encode_frame(wrong.version(1).unwrap(), 0, 0, &refs);
        assert_eq!(decode(&right, &vouched).err(), Some(SpillProblem::NotAuthentic { at: 0 }));
        // Unknown flags are refused too.
        let mut odd = encode_frame(right.active(), 0, 0, &refs);
        odd[8] = 2;
        assert!(decode(&right, &odd).is_err());
    }
}
