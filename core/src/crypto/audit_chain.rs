//! The audit's storage format and its tamper evidence.
//!
//! The writer stores events in batches: one row per batch holding the
//! events encoded back to back (`encode_batch`), numbered consecutively
//! from the row's `first_id`. Each batch carries
//! `mac_i = HMAC(audit key, mac_{i-1} ‖ first_id ‖ last_id ‖ events)`, with
//! an all-zero `mac_0`. Without the key nobody can write a batch whose MAC
//! verifies, and because each MAC covers its predecessor, an edited,
//! deleted, inserted or reordered batch breaks the chain from there on.
//!
//! Why batches: one heap row and one primary-key entry per event was most
//! of the writer's cost (and of the audit's disk space); a batch row costs
//! about the same whatever the number of events in it.
//!
//! Key versions: a batch names the key version that MACed it inside its
//! MACed bytes (format 2; format 1, the only one before versions, is
//! version 1), so the chain runs on across a change of active version.
//! Once a version is retired, its batches can no longer be MACed again;
//! an `Anchor` vouches for them instead: a MAC under a loaded version of a
//! SHA-256 digest over every batch up to `sealed_upto`. The anchor also
//! carries where the chain starts once old batches are pruned
//! (`start_id`, and the MAC of the last pruned batch to chain from).

use std::borrow::Cow;

use hmac::Mac;
use sha2::{Digest, Sha256};

use super::keyring::{HmacSha256, KeyRing, KeySet};
use super::token_filter;

pub const GENESIS: [u8; 32] = [0u8; 32];

/// Version byte at the start of every encoded batch: 1, MACed under key
/// version 1; 2, followed by the key version (u32, big-endian); 3, as 2
/// with each event's purpose of access after its outcome (0.3.0 on); 4, as
/// 3 with each event's calling role and its number of calls (u32) after
/// its purpose (0.3.1 on); 5, as 4 with the server the call was served on
/// after its calls (empty: the primary; 0.4.0 on).
const FORMAT_V1: u8 = 1;
const FORMAT_V2: u8 = 2;
const FORMAT_V3: u8 = 3;
const FORMAT_V4: u8 = 4;
const FORMAT_V5: u8 = 5;
/// Marks an absent token or field list.
const ABSENT: u32 = u32::MAX;
/// More events than any batch holds: a count above it is corruption.
pub const MAX_BATCH_EVENTS: usize = 65_536;

/// One audit event as stored (role names resolved). The writer builds
/// records that borrow from its queue copy and role-name cache (no string
/// allocations per event); decoding gives owned ones (`AuditRecord<'static>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord<'a> {
    pub id: i64,
    /// Microseconds since 2000-01-01 UTC (PostgreSQL's timestamptz).
    pub at: i64,
    pub session_role: Cow<'a, str>,
    pub acting_role: Cow<'a, str>,
    pub application_name: Cow<'a, str>,
    pub operation: Cow<'a, str>,
    pub token: Option<[u8; 16]>,
    pub fields: Option<Vec<Cow<'a, str>>>,
    pub outcome: Cow<'a, str>,
    /// `pii_vault.purpose` at the call; empty when none was set (and in
    /// batches written before 0.3.0).
    pub purpose: Cow<'a, str>,
    /// The role whose rights called the vault: the owner of a SECURITY
    /// DEFINER function around the call, else `acting_role` (as in batches
    /// written before 0.3.1, which did not record it).
    pub calling_role: Cow<'a, str>,
    /// How many calls the event stands for: 1, or more for failed calls
    /// folded into one (1 in batches written before 0.3.1).
    pub calls: u32,
    /// The standby the call was served on, its events forwarded here;
    /// empty for a call served by the primary whose audit this is (and in
    /// batches written before 0.4.0).
    pub server: Cow<'a, str>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The events of one batch, back to back; every field is length-prefixed,
/// so no two different batches encode alike. Ids are not stored: event `i`
/// has id `first_id + i`.
pub fn encode_batch(key_version: u32, records: &[AuditRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + records.len() * 84);
    out.push(FORMAT_V5);
    out.extend_from_slice(&key_version.to_be_bytes());
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for r in records {
        out.extend_from_slice(&r.at.to_be_bytes());
        put_str(&mut out, &r.session_role);
        put_str(&mut out, &r.acting_role);
        put_str(&mut out, &r.application_name);
        put_str(&mut out, &r.operation);
        match &r.token {
            Some(t) => {
                out.extend_from_slice(&16u32.to_be_bytes());
                out.extend_from_slice(t);
            }
            None => out.extend_from_slice(&ABSENT.to_be_bytes()),
        }
        match &r.fields {
            Some(fields) => {
                out.extend_from_slice(&(fields.len() as u32).to_be_bytes());
                for f in fields {
                    put_str(&mut out, f);
                }
            }
            None => out.extend_from_slice(&ABSENT.to_be_bytes()),
        }
        put_str(&mut out, &r.outcome);
        put_str(&mut out, &r.purpose);
        put_str(&mut out, &r.calling_role);
        out.extend_from_slice(&r.calls.to_be_bytes());
        put_str(&mut out, &r.server);
    }
    out
}

/// Why a stored batch cannot be read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Unreadable> {
        if self.0.len() < n {
            return Err(Unreadable);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, Unreadable> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn i64(&mut self) -> Result<i64, Unreadable> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn string(&mut self) -> Result<Cow<'static, str>, Unreadable> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map(Cow::Owned).map_err(|_| Unreadable)
    }
}

/// The key version that MACed an encoded batch.
pub fn batch_key_version(bytes: &[u8]) -> Result<u32, Unreadable> {
    let mut r = Reader(bytes);
    match r.take(1)? {
        [FORMAT_V1] => Ok(1),
        [FORMAT_V2] | [FORMAT_V3] | [FORMAT_V4] | [FORMAT_V5] => r.u32(),
        _ => Err(Unreadable),
    }
}

/// The events of a stored batch whose first event has id `first_id`.
pub fn decode_batch(first_id: i64, bytes: &[u8]) -> Result<Vec<AuditRecord<'static>>, Unreadable> {
    let mut r = Reader(bytes);
    let format = r.take(1)?[0];
    match format {
        FORMAT_V1 => {}
        FORMAT_V2 | FORMAT_V3 | FORMAT_V4 | FORMAT_V5 => {
            r.u32()?;
        }
        _ => return Err(Unreadable),
    }
    let count = r.u32()? as usize;
    if count > MAX_BATCH_EVENTS {
        return Err(Unreadable);
    }
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let at = r.i64()?;
        let session_role = r.string()?;
        let acting_role = r.string()?;
        let application_name = r.string()?;
        let operation = r.string()?;
        let token = match r.u32()? {
            ABSENT => None,
            16 => Some(r.take(16)?.try_into().expect("16 bytes")),
            _ => return Err(Unreadable),
        };
        let fields = match r.u32()? {
            ABSENT => None,
            n if n as usize <= r.0.len() / 4 => Some((0..n).map(|_| r.string()).collect::<Result<_, _>>()?),
            _ => return Err(Unreadable),
        };
        let outcome = r.string()?;
        let purpose = if format >= FORMAT_V3 { r.string()? } else { Cow::Borrowed("") };
        let (calling_role, calls) =
            if format >= FORMAT_V4 { (r.string()?, r.u32()?) } else { (acting_role.clone(), 1) };
        let server = if format >= FORMAT_V5 { r.string()? } else { Cow::Borrowed("") };
        let id = first_id.checked_add(i as i64).ok_or(Unreadable)?;
        records.push(AuditRecord {
            id,
            at,
            session_role,
            acting_role,
            application_name,
            operation,
            token,
            fields,
            outcome,
            purpose,
            calling_role,
            calls,
            server,
        });
    }
    if !r.0.is_empty() {
        return Err(Unreadable);
    }
    Ok(records)
}

/// The distinct tokens a batch names, sorted.
pub fn batch_tokens(records: &[AuditRecord]) -> Vec<[u8; 16]> {
    let mut tokens: Vec<[u8; 16]> = records.iter().filter_map(|r| r.token).collect();
    // Big-endian u128 order is the bytes' order; comparing integers is
    // cheaper than comparing byte arrays.
    tokens.sort_unstable_by_key(|t| u128::from_be_bytes(*t));
    tokens.dedup();
    tokens
}

/// The batch's token filter (the `token_filter` column, which lets
/// `vault_audit` skip the batches that do not name a token).
pub fn batch_filter(records: &[AuditRecord]) -> Vec<u8> {
    token_filter::build(&batch_tokens(records))
}

/// The MAC of the batch of events `first_id..=last_id` encoded as `events`,
/// following a batch whose MAC was `previous`.
pub fn batch_mac(ring: &KeyRing, previous: &[u8; 32], first_id: i64, last_id: i64, events: &[u8]) -> [u8; 32] {
    let mut mac: HmacSha256 = ring.audit_mac.clone();
    mac.update(b"pii_vault audit batch v1");
    mac.update(previous);
    mac.update(&first_id.to_be_bytes());
    mac.update(&last_id.to_be_bytes());
    mac.update(&(events.len() as u64).to_be_bytes());
    mac.update(events);
    mac.finalize().into_bytes().into()
}

/// One stored batch, as read back for verification.
#[derive(Clone, Copy)]
pub struct StoredBatch<'a> {
    pub first_id: i64,
    pub last_id: i64,
    pub token_filter: &'a [u8],
    pub events: &'a [u8],
    pub mac: &'a [u8],
}

/// Result of checking a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    /// Events in the batches checked.
    pub rows_checked: i64,
    /// The id of the first event of the first batch that does not verify
    /// (for a chain cut short, the id the next event should have had).
    pub first_bad_id: Option<i64>,
}

/// Checks a chain batch by batch, in id order, so the audit can be
/// streamed from a cursor rather than read into memory whole. For each
/// batch: ids continue without a gap, the MAC verifies, the events decode to
/// as many events as the ids span, and the token filter is the one the
/// events make. `expected_head`, when known, is the (last id, mac) of a batch the
/// writer committed (read before the batches): a chain that ends before it,
/// or holds another MAC there, lost batches at its end.
/// Where the stored chain starts and which of its batches a digest vouches
/// for (see the module's documentation); MACed under `key_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The last event removed by pruning (0: none); the chain goes on from
    /// `start_id + 1`, MACed after `start_mac`.
    pub start_id: i64,
    pub start_mac: [u8; 32],
    /// Batches after `start_id` up to this event (0: none) are vouched for
    /// by `sealed_digest`, whatever key version MACed them.
    pub sealed_upto: i64,
    pub sealed_digest: [u8; 32],
    pub key_version: u32,
}

impl Anchor {
    pub fn mac(&self, ring: &KeyRing) -> [u8; 32] {
        let mut mac: HmacSha256 = ring.audit_mac.clone();
        mac.update(b"pii_vault audit anchor v1");
        mac.update(&self.start_id.to_be_bytes());
        mac.update(&self.start_mac);
        mac.update(&self.sealed_upto.to_be_bytes());
        mac.update(&self.sealed_digest);
        mac.update(&self.key_version.to_be_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// The digest an anchor seals batches with: SHA-256 over each batch's ids,
/// events, token filter and MAC, length-prefixed, in chain order.
#[derive(Clone, Default)]
pub struct SealDigest(Sha256);

impl SealDigest {
    pub fn add(&mut self, batch: &StoredBatch<'_>) {
        self.0.update(b"batch");
        self.0.update(batch.first_id.to_be_bytes());
        self.0.update(batch.last_id.to_be_bytes());
        for part in [batch.events, batch.token_filter, batch.mac] {
            self.0.update((part.len() as u64).to_be_bytes());
            self.0.update(part);
        }
    }

    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

pub struct ChainVerifier<'r> {
    keys: &'r KeySet,
    expected_head: Option<(i64, [u8; 32])>,
    previous: [u8; 32],
    last_id: i64,
    checked: i64,
    bad: Option<i64>,
    /// The anchor's sealed range still to be matched, and its digest so far.
    sealed: Option<(i64, [u8; 32], SealDigest)>,
}

impl<'r> ChainVerifier<'r> {
    /// A verifier of the chain from its start: the genesis, or `anchor`
    /// (with the MAC stored beside it), which must verify under a loaded
    /// version.
    pub fn new(keys: &'r KeySet, expected_head: Option<(i64, [u8; 32])>, anchor: Option<(&Anchor, &[u8])>) -> Self {
        let mut v =
            ChainVerifier { keys, expected_head, previous: GENESIS, last_id: 0, checked: 0, bad: None, sealed: None };
        if let Some((anchor, stored_mac)) = anchor {
            let genuine =
                keys.version(anchor.key_version).is_some_and(|ring| anchor.mac(ring).as_slice() == stored_mac);
            v.previous = anchor.start_mac;
            v.last_id = anchor.start_id;
            if !genuine || anchor.start_id < 0 {
                v.bad = Some(anchor.start_id.max(0) + 1);
            } else if anchor.sealed_upto > anchor.start_id {
                v.sealed = Some((anchor.sealed_upto, anchor.sealed_digest, SealDigest::default()));
            }
        }
        v
    }

    pub fn check(&mut self, batch: StoredBatch<'_>) -> bool {
        if self.bad.is_some() {
            return false;
        }
        match self.verdict_on(&batch) {
            Ok((mac, events)) => {
                self.checked += events;
                self.previous = mac;
                self.last_id = batch.last_id;
                true
            }
            Err(()) => {
                self.bad = Some(batch.first_id.min(self.last_id + 1));
                false
            }
        }
    }

    fn verdict_on(&mut self, batch: &StoredBatch<'_>) -> Result<([u8; 32], i64), ()> {
        if batch.first_id != self.last_id + 1 || batch.last_id < batch.first_id {
            return Err(());
        }
        let mut vouched = false;
        if let Some((upto, digest, running)) = self.sealed.as_mut() {
            if batch.last_id > *upto {
                return Err(()); // the sealed range ends inside this batch
            }
            running.add(batch);
            if batch.last_id == *upto {
                if std::mem::take(running).finish() != *digest {
                    return Err(());
                }
                self.sealed = None;
                vouched = true;
            } else {
                // Vouched for once the digest matches at `upto`; until
                // then its MAC is checked if its version is loaded.
                vouched = true;
            }
        }
        let version = batch_key_version(batch.events).map_err(|_| ())?;
        let expected = match self.keys.version(version) {
            Some(ring) => batch_mac(ring, &self.previous, batch.first_id, batch.last_id, batch.events),
            None if vouched => batch.mac.try_into().map_err(|_| ())?,
            None => return Err(()),
        };
        let head_differs = matches!(self.expected_head, Some((id, mac)) if id == batch.last_id && mac != expected);
        if batch.mac != expected.as_slice() || head_differs {
            return Err(());
        }
        let records = decode_batch(batch.first_id, batch.events).map_err(|_| ())?;
        if records.len() as i64 != batch.last_id - batch.first_id + 1 || batch_filter(&records) != batch.token_filter {
            return Err(());
        }
        Ok((expected, records.len() as i64))
    }

    /// The MAC of the last batch checked (the chain's head so far) and its
    /// last event.
    pub fn position(&self) -> (i64, [u8; 32]) {
        (self.last_id, self.previous)
    }

    pub fn finish(self) -> Verdict {
        let cut_short = matches!(self.expected_head, Some((head_id, _)) if head_id > self.last_id);
        // Sealed batches that are gone (the digest never matched).
        let seal_unmatched = self.sealed.is_some();
        match self.bad {
            Some(id) => Verdict { ok: false, rows_checked: self.checked, first_bad_id: Some(id) },
            None if cut_short || seal_unmatched => {
                Verdict { ok: false, rows_checked: self.checked, first_bad_id: Some(self.last_id + 1) }
            }
            None => Verdict { ok: true, rows_checked: self.checked, first_bad_id: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A whole chain held in memory, through `ChainVerifier`
    /// (vault_audit_verify streams it from a cursor instead).
    fn verify<'a>(
        ring: &KeySet,
        batches: impl IntoIterator<Item = StoredBatch<'a>>,
        expected_head: Option<(i64, [u8; 32])>,
    ) -> Verdict {
        let mut verifier = ChainVerifier::new(ring, expected_head, None);
        for batch in batches {
            if !verifier.check(batch) {
                break;
            }
        }
        verifier.finish()
    }

    fn ring() -> KeyRing {
        KeyRing::derive(&[5u8; 32])
    }

    /// Version 1 (the master key of `ring`) and version 2, active.
    fn keys() -> KeySet {
        KeySet::new([(1, &[5u8; 32]), (2, &[6u8; 32])], None).unwrap()
    }

    fn event(id: i64) -> AuditRecord<'static> {
        AuditRecord {
            id,
            at: 1_000 + id,
            session_role: "app".into(),
            acting_role: "app".into(),
            application_name: "psql".into(),
            operation: "get".into(),
            token: if id % 3 == 0 { None } else { Some([(id % 5) as u8; 16]) },
            fields: if id % 2 == 0 { Some(vec!["name".into(), "we\"ird,{}".into()]) } else { None },
            outcome: "ok".into(),
            purpose: if id % 4 == 1 { "ticket 7".into() } else { "".into() },
            calling_role: if id % 3 == 1 { "wrapper_owner".into() } else { "app".into() },
            calls: if id % 5 == 2 { 7 } else { 1 },
            server: if id % 6 == 5 { "standby-1:5433".into() } else { "".into() },
        }
    }

    /// A stored batch, owned.
    struct Row {
        first_id: i64,
        last_id: i64,
        token_filter: Vec<u8>,
        events: Vec<u8>,
        mac: Vec<u8>,
    }

    /// `n` batches of `size` events each, chained.
    fn chain(ring: &KeyRing, n: i64, size: i64) -> Vec<Row> {
        let mut prev = GENESIS;
        (0..n)
            .map(|b| {
                let first_id = b * size + 1;
                let last_id = first_id + size - 1;
                let records: Vec<_> = (first_id..=last_id).map(event).collect();
                let events = encode_batch(1, &records);
                prev = batch_mac(ring, &prev, first_id, last_id, &events);
                Row { first_id, last_id, token_filter: batch_filter(&records), events, mac: prev.to_vec() }
            })
            .collect()
    }

    /// Verifies `rows` under `keys()` (whose version 1 is `ring()`).
    fn check(rows: &[Row], head: Option<(i64, [u8; 32])>) -> Verdict {
        verify(&keys(), batches(rows), head)
    }

    fn head(rows: &[Row]) -> Option<(i64, [u8; 32])> {
        rows.last().map(|r| (r.last_id, r.mac.as_slice().try_into().unwrap()))
    }

    #[test]
    fn events_round_trip() {
        let records: Vec<_> = (7..20).map(event).collect();
        assert_eq!(decode_batch(7, &encode_batch(1, &records)).unwrap(), records);
        assert_eq!(decode_batch(1, &encode_batch(1, &[])).unwrap(), vec![]);
    }

    /// A batch as 0.3.0 wrote it (format 3: no calling role, no count)
    /// reads back with the acting role as calling role and one call.
    #[test]
    fn format_3_batches_read_with_their_acting_role() {
        let mut bytes = vec![FORMAT_V3];
        bytes.extend_from_slice(&2u32.to_be_bytes());
        bytes.extend_from_slice(&1u32.to_be_bytes());
        bytes.extend_from_slice(&5i64.to_be_bytes());
        for s in ["login", "acting", "psql", "get"] {
            put_str(&mut bytes, s);
        }
        bytes.extend_from_slice(&ABSENT.to_be_bytes());
        bytes.extend_from_slice(&ABSENT.to_be_bytes());
        put_str(&mut bytes, "ok");
        put_str(&mut bytes, "ticket 3");
        let decoded = decode_batch(40, &bytes).unwrap();
        assert_eq!(decoded.len(), 1);
        let e = &decoded[0];
        assert_eq!((e.id, e.at, e.session_role.as_ref(), e.acting_role.as_ref()), (40, 5, "login", "acting"));
        assert_eq!((e.calling_role.as_ref(), e.calls, e.purpose.as_ref()), ("acting", 1, "ticket 3"));
        assert_eq!(batch_key_version(&bytes), Ok(2));
    }

    /// A batch as 0.3.1 wrote it (format 4: no server) reads back as served
    /// by the primary.
    #[test]
    fn format_4_batches_read_as_the_primarys() {
        let mut record = event(5);
        record.server = "".into();
        let mut bytes = encode_batch(2, std::slice::from_ref(&record));
        bytes[0] = FORMAT_V4;
        let cut = bytes.len() - 4; // the empty server's length
        bytes.truncate(cut);
        assert_eq!(decode_batch(5, &bytes).unwrap(), vec![record]);
    }

    #[test]
    fn garbage_does_not_decode() {
        let good = encode_batch(1, &[event(1), event(2)]);
        assert_eq!(decode_batch(1, &good[..good.len() - 1]), Err(Unreadable));
        assert_eq!(decode_batch(1, &[good.as_slice(), b"x"].concat()), Err(Unreadable));
        assert_eq!(decode_batch(1, &[]), Err(Unreadable));
        assert_eq!(decode_batch(1, &[6, 0, 0, 0, 0, 0, 0, 0, 0]), Err(Unreadable), "unknown format");
        assert_eq!(decode_batch(1, &[1, 255, 255, 255, 254]), Err(Unreadable), "absurd count");
    }

    #[test]
    fn intact_chain_verifies() {
        let r = ring();
        let rows = chain(&r, 10, 4);
        assert_eq!(check(&rows, head(&rows)), Verdict { ok: true, rows_checked: 40, first_bad_id: None });
        assert!(check(&[], None).ok);
    }

    #[test]
    fn edited_event_names_its_batch() {
        let r = ring();
        let mut rows = chain(&r, 10, 4);
        let last = rows[4].events.len() - 1;
        rows[4].events[last] ^= 1;
        assert_eq!(check(&rows, None).first_bad_id, Some(17));
    }

    #[test]
    fn edited_token_filter_is_found() {
        // Hiding a token from vault_audit by clearing the filter's bits.
        let r = ring();
        let mut rows = chain(&r, 10, 4);
        let records = decode_batch(9, &rows[2].events).unwrap();
        let hidden = records.iter().find_map(|e| e.token).unwrap();
        assert!(token_filter::may_contain(&rows[2].token_filter, &hidden));
        rows[2].token_filter[1..].fill(0);
        assert!(!token_filter::may_contain(&rows[2].token_filter, &hidden));
        assert_eq!(check(&rows, None).first_bad_id, Some(9));
    }

    #[test]
    fn deleted_batch_is_found() {
        let r = ring();
        let mut rows = chain(&r, 10, 4);
        rows.remove(3);
        assert_eq!(check(&rows, None).first_bad_id, Some(13));
    }

    #[test]
    fn deleted_tail_is_found_with_the_head() {
        let r = ring();
        let mut rows = chain(&r, 10, 4);
        let h = head(&rows);
        rows.truncate(7);
        assert!(check(&rows, None).ok, "without the head, a cut tail looks like a short chain");
        assert_eq!(check(&rows, h).first_bad_id, Some(29));
    }

    #[test]
    fn batches_after_the_known_head_are_fine() {
        let r = ring();
        let rows = chain(&r, 10, 4);
        let h = head(&rows[..6]);
        assert!(check(&rows, h).ok);
    }

    #[test]
    fn a_replaced_tail_differs_from_the_head() {
        // Re-chained with the key (which an attacker lacks), the last batch
        // would verify on its own, but not against the writer's head.
        let r = ring();
        let rows = chain(&r, 5, 4);
        let h = head(&rows);
        let mut other = chain(&r, 5, 4);
        let mut records = decode_batch(17, &other[4].events).unwrap();
        records[0].outcome = "error".into();
        other[4].events = encode_batch(1, &records);
        let prev: [u8; 32] = other[3].mac.as_slice().try_into().unwrap();
        other[4].mac = batch_mac(&r, &prev, 17, 20, &other[4].events).to_vec();
        assert!(check(&other, None).ok);
        assert_eq!(check(&other, h).first_bad_id, Some(17));
    }

    #[test]
    fn inserted_and_reordered_batches_are_found() {
        let r = ring();
        let mut rows = chain(&r, 10, 4);
        rows.swap(2, 3);
        assert_eq!(check(&rows, None).first_bad_id, Some(9));
        let mut rows = chain(&r, 10, 4);
        let forged = Row {
            first_id: 13,
            last_id: 13,
            token_filter: vec![],
            events: encode_batch(1, &[event(13)]),
            mac: vec![0; 32],
        };
        rows.insert(3, forged);
        assert_eq!(check(&rows, None).first_bad_id, Some(13));
        // Contents swapped between two batches, ids left in place.
        let mut rows = chain(&r, 10, 4);
        let (a, b) = (rows[5].events.clone(), rows[6].events.clone());
        rows[5].events = b;
        rows[6].events = a;
        assert_eq!(check(&rows, None).first_bad_id, Some(21));
    }

    #[test]
    fn another_key_cannot_forge() {
        let rows = chain(&KeyRing::derive(&[7u8; 32]), 3, 2);
        assert_eq!(check(&rows, None).first_bad_id, Some(1));
    }

    /// A chain whose first `old` batches are MACed under version 1 and the
    /// rest under version 2 (as the writer goes on after a restart with a
    /// new active version).
    fn mixed_chain(keys: &KeySet, n: i64, old: i64) -> Vec<Row> {
        let mut prev = GENESIS;
        (0..n)
            .map(|b| {
                let ring = keys.version(if b < old { 1 } else { 2 }).unwrap();
                let (first_id, last_id) = (b * 3 + 1, b * 3 + 3);
                let records: Vec<_> = (first_id..=last_id).map(event).collect();
                let events = encode_batch(ring.key_version(), &records);
                prev = batch_mac(ring, &prev, first_id, last_id, &events);
                Row { first_id, last_id, token_filter: batch_filter(&records), events, mac: prev.to_vec() }
            })
            .collect()
    }

    fn batches(rows: &[Row]) -> impl Iterator<Item = StoredBatch<'_>> {
        rows.iter().map(|r| StoredBatch {
            first_id: r.first_id,
            last_id: r.last_id,
            token_filter: &r.token_filter,
            events: &r.events,
            mac: &r.mac,
        })
    }

    fn verify_anchored(keys: &KeySet, rows: &[Row], anchor: &Anchor, anchor_mac: &[u8]) -> Verdict {
        let mut v = ChainVerifier::new(keys, None, Some((anchor, anchor_mac)));
        for b in batches(rows) {
            if !v.check(b) {
                break;
            }
        }
        v.finish()
    }

    /// The anchor `vault_rotate` writes: batches up to the last one MACed
    /// under an older version, sealed by digest under the active one.
    fn seal(keys: &KeySet, rows: &[Row], start: (i64, [u8; 32]), upto: i64) -> (Anchor, Vec<u8>) {
        let mut digest = SealDigest::default();
        batches(rows).filter(|b| b.first_id > start.0 && b.last_id <= upto).for_each(|b| digest.add(&b));
        let anchor = Anchor {
            start_id: start.0,
            start_mac: start.1,
            sealed_upto: upto,
            sealed_digest: digest.finish(),
            key_version: 2,
        };
        let mac = anchor.mac(keys.version(2).unwrap()).to_vec();
        (anchor, mac)
    }

    #[test]
    fn the_chain_runs_on_across_versions_and_after_one_is_retired() {
        let keys = keys();
        let rows = mixed_chain(&keys, 6, 4);
        assert_eq!(batch_key_version(&rows[0].events), Ok(1));
        assert_eq!(batch_key_version(&rows[5].events), Ok(2));
        assert!(verify(&keys, batches(&rows), None).ok);
        let retired = KeySet::new([(2, &[6u8; 32])], None).unwrap();
        // Version 1 gone and nothing sealed: its batches cannot be checked.
        assert_eq!(verify(&retired, batches(&rows), None).first_bad_id, Some(1));
        let (anchor, mac) = seal(&keys, &rows, (0, GENESIS), 12);
        assert_eq!(
            verify_anchored(&retired, &rows, &anchor, &mac),
            Verdict { ok: true, rows_checked: 18, first_bad_id: None }
        );
        // A sealed batch edited, removed, or the anchor edited: caught.
        let mut edited = mixed_chain(&keys, 6, 4);
        edited[1].events.push(0);
        assert!(!verify_anchored(&retired, &edited, &anchor, &mac).ok);
        let mut cut = mixed_chain(&keys, 6, 4);
        cut.remove(2);
        assert!(!verify_anchored(&retired, &cut, &anchor, &mac).ok);
        let mut moved = anchor.clone();
        moved.sealed_upto = 15;
        assert!(!verify_anchored(&retired, &rows, &moved, &mac).ok);
        // Sealed batches dropped from the end of the table: caught too.
        assert!(!verify_anchored(&retired, &rows[..2], &anchor, &mac).ok);
    }

    #[test]
    fn a_pruned_chain_verifies_from_its_anchor() {
        let keys = keys();
        let rows = mixed_chain(&keys, 8, 0);
        let start = (rows[2].last_id, rows[2].mac.as_slice().try_into().unwrap());
        let (anchor, mac) = seal(&keys, &rows, start, 0);
        let kept = &rows[3..];
        assert_eq!(
            verify_anchored(&keys, kept, &anchor, &mac),
            Verdict { ok: true, rows_checked: 15, first_bad_id: None }
        );
        // A batch removed in the middle, or the first kept one: caught.
        let mut gap: Vec<Row> = mixed_chain(&keys, 8, 0).into_iter().skip(3).collect();
        gap.remove(2);
        assert_eq!(verify_anchored(&keys, &gap, &anchor, &mac).first_bad_id, Some(16));
        assert_eq!(verify_anchored(&keys, &rows[4..], &anchor, &mac).first_bad_id, Some(10));
        // The anchor moved back (to hide a pruned batch) or forward (to
        // drop more): its MAC no longer verifies.
        let mut forged = anchor.clone();
        forged.start_id = 12;
        forged.start_mac = rows[3].mac.as_slice().try_into().unwrap();
        assert_eq!(verify_anchored(&keys, &rows[4..], &forged, &mac).first_bad_id, Some(13));
        // Without the anchor, a pruned chain does not start at the genesis.
        assert_eq!(verify(&keys, batches(kept), None).first_bad_id, Some(1));
    }

    proptest! {
        #[test]
        fn any_single_field_edit_is_found(n in 1i64..8, size in 1i64..6, victim in any::<prop::sample::Index>(), field in 0usize..6) {
            let r = ring();
            let mut rows = chain(&r, n, size);
            let i = victim.index(rows.len());
            let mut records = decode_batch(rows[i].first_id, &rows[i].events).unwrap();
            let target = &mut records[0];
            match field {
                0 => target.at += 1,
                1 => target.session_role.to_mut().push('x'),
                2 => target.acting_role = "postgres".into(),
                3 => target.token = None,
                4 => target.fields = Some(vec!["email".into()]),
                _ => target.application_name = "".into(),
            }
            let edited = encode_batch(1, &records);
            if edited != rows[i].events {
                rows[i].events = edited;
                prop_assert_eq!(check(&rows, None).first_bad_id, Some(rows[i].first_id));
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_batch(1, &bytes);
            let mut framed = vec![FORMAT_V1, 0, 0, 0, 3];
            framed.extend_from_slice(&bytes);
            let _ = decode_batch(1, &framed);
        }
    }
}
