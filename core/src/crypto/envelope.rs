//! Envelope encryption of one record, and the byte format stored in
//! `pii_vault.records.envelope`.
//!
//! ```text
//! offset len  field
//! 0      1    format version (1)
//! 1      1    payload encoding (see PayloadEncoding)
//! 2      4    key version, big-endian
//! 6      12   nonce of the wrapped data key
//! 18     48   data key (32) encrypted under the wrapping key, + GCM tag (16)
//! 66     12   nonce of the record
//! 78     n+16 record encrypted under the data key, + GCM tag
//! ```
//!
//! Both encryptions take as associated data a purpose label, the token and
//! the header (bytes 0..6), so an envelope copied to another token, a data
//! key copied to another envelope or a flipped header byte all fail the tag.
//!
//! Key rotation re-wraps the data key under another key version and leaves
//! the record's ciphertext as it is (`rewrap`). The record stays bound to
//! the header it was sealed with, so a re-wrapped envelope carries both:
//!
//! ```text
//! 0      1    format version (2)
//! 1      1    payload encoding
//! 2      4    key version of the wrapping key, big-endian
//! 6      4    key version the record was sealed under
//! 10     12   nonce of the wrapped data key
//! 22     48   data key encrypted under the wrapping key, + tag
//! 70     12   nonce of the record
//! 82     n+16 record encrypted under the data key, + tag
//! ```
//!
//! The data key's associated data is its purpose, the token and the whole
//! 10-byte header; the record's is its purpose, the token and the format-1
//! header it was sealed with (1, encoding, sealing version), rebuilt from
//! bytes 1 and 6..10. Both formats keep the wrapping version at bytes 2..6
//! (`KEY_VERSION_BYTES`), which is where SQL reads it too
//! (`vault_key_versions`, `vault_rotate`: the extension builds its SQL from
//! this constant).

use zeroize::Zeroizing;

/// Where every envelope format keeps the key version its data key is
/// wrapped under (big-endian), whatever the format.
pub const KEY_VERSION_BYTES: std::ops::Range<usize> = 2..6;

use super::aead::{Aes256Gcm, KEY_LEN as DATA_KEY_LEN, NONCE_LEN, TAG_LEN};
use super::{fill_random, KeyRing, KeySet};
use crate::error::{VaultError, VaultResult};

pub const FORMAT_VERSION: u8 = 1;
/// A re-wrapped envelope (see the module's documentation).
const FORMAT_REWRAPPED: u8 = 2;
const HEADER_LEN: usize = 6;
const REWRAPPED_HEADER_LEN: usize = 10;
const WRAPPED_KEY_AT: usize = HEADER_LEN + NONCE_LEN;
const RECORD_NONCE_AT: usize = WRAPPED_KEY_AT + DATA_KEY_LEN + TAG_LEN;
const RECORD_AT: usize = RECORD_NONCE_AT + NONCE_LEN;
/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = RECORD_AT + TAG_LEN;

const PURPOSE_DATA_KEY: &[u8] = b"pii_vault/data-key/v1";
const PURPOSE_RECORD: &[u8] = b"pii_vault/record/v1";

/// How the plaintext inside an envelope is to be read back: the header's
/// byte 1, so a later encoding can be told apart. Every release has sealed
/// one only; an envelope naming another does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PayloadEncoding {
    /// The bytes of a PostgreSQL jsonb value without its varlena header:
    /// returned to SQL as they are, with no JSON parsing.
    JsonbBinary = 1,
    /// UTF-8 text: a single value tokenized on its own (a field token).
    Utf8Text = 2,
}

impl PayloadEncoding {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::JsonbBinary),
            2 => Some(Self::Utf8Text),
            _ => None,
        }
    }
}

/// Purpose ‖ token ‖ header, on the stack (the buffer fits the longest).
fn associated_data(purpose: &[u8], token: &[u8; 16], header: &[u8]) -> ([u8; 64], usize) {
    let mut aad = [0u8; 64];
    let len = purpose.len() + token.len() + header.len();
    aad[..purpose.len()].copy_from_slice(purpose);
    aad[purpose.len()..purpose.len() + 16].copy_from_slice(token);
    aad[purpose.len() + 16..len].copy_from_slice(header);
    (aad, len)
}

/// Encrypts `plaintext` for `token` under a fresh random data key.
pub fn seal(ring: &KeyRing, token: &[u8; 16], encoding: PayloadEncoding, plaintext: &[u8]) -> VaultResult<Vec<u8>> {
    // One system call for the data key and both nonces.
    let mut random = Zeroizing::new([0u8; RANDOM_LEN]);
    fill_random(random.as_mut())?;
    seal_with(ring, token, encoding, plaintext, &random)
}

/// The random bytes one envelope takes: its data key and its two nonces.
const RANDOM_LEN: usize = DATA_KEY_LEN + 2 * NONCE_LEN;

/// `seal` with its random bytes given (fixed ones make the known-answer
/// test below possible).
fn seal_with(
    ring: &KeyRing,
    token: &[u8; 16],
    encoding: PayloadEncoding,
    plaintext: &[u8],
    random: &[u8; RANDOM_LEN],
) -> VaultResult<Vec<u8>> {
    let mut out = vec![0u8; OVERHEAD + plaintext.len()];
    out[0] = FORMAT_VERSION;
    out[1] = encoding as u8;
    out[2..HEADER_LEN].copy_from_slice(&ring.key_version.to_be_bytes());
    let header: [u8; HEADER_LEN] = out[..HEADER_LEN].try_into().expect("header length");

    let data_key: &[u8; DATA_KEY_LEN] = random[..DATA_KEY_LEN].try_into().expect("key length");
    let wrap_nonce: &[u8; NONCE_LEN] = random[DATA_KEY_LEN..DATA_KEY_LEN + NONCE_LEN].try_into().expect("nonce length");
    let record_nonce: &[u8; NONCE_LEN] = random[DATA_KEY_LEN + NONCE_LEN..].try_into().expect("nonce length");
    out[HEADER_LEN..WRAPPED_KEY_AT].copy_from_slice(wrap_nonce);
    out[RECORD_NONCE_AT..RECORD_AT].copy_from_slice(record_nonce);

    // Wrap the data key.
    let (aad, aad_len) = associated_data(PURPOSE_DATA_KEY, token, &header);
    let wrapped = &mut out[WRAPPED_KEY_AT..WRAPPED_KEY_AT + DATA_KEY_LEN];
    wrapped.copy_from_slice(data_key);
    let tag = ring.wrap.seal_in_place(wrap_nonce, &aad[..aad_len], wrapped);
    out[WRAPPED_KEY_AT + DATA_KEY_LEN..RECORD_NONCE_AT].copy_from_slice(&tag);

    // Encrypt the record under the data key.
    let cipher = Aes256Gcm::new(data_key);
    let (aad, aad_len) = associated_data(PURPOSE_RECORD, token, &header);
    let body_end = RECORD_AT + plaintext.len();
    let body = &mut out[RECORD_AT..body_end];
    body.copy_from_slice(plaintext);
    let tag = cipher.seal_in_place(record_nonce, &aad[..aad_len], body);
    out[body_end..].copy_from_slice(&tag);
    Ok(out)
}

/// The parts of a stored envelope of either format.
struct Parts<'a> {
    /// What the data key's associated data names: the whole header.
    header: &'a [u8],
    /// The format-1 header the record was sealed with (its associated data).
    sealed_header: [u8; HEADER_LEN],
    encoding: PayloadEncoding,
    wrap_version: u32,
    wrap_nonce: [u8; NONCE_LEN],
    /// The encrypted data key and its tag.
    wrapped: &'a [u8],
    record_nonce: [u8; NONCE_LEN],
    /// The encrypted record and its tag.
    body: &'a [u8],
}

fn parts(envelope: &[u8]) -> Option<Parts<'_>> {
    let header_len = match *envelope.first()? {
        FORMAT_VERSION => HEADER_LEN,
        FORMAT_REWRAPPED => REWRAPPED_HEADER_LEN,
        _ => return None,
    };
    if envelope.len() < header_len + OVERHEAD - HEADER_LEN {
        return None;
    }
    let encoding = PayloadEncoding::from_byte(envelope[1])?;
    let wrap_version = u32::from_be_bytes(envelope[KEY_VERSION_BYTES].try_into().ok()?);
    let mut sealed_header = [FORMAT_VERSION, envelope[1], 0, 0, 0, 0];
    sealed_header[2..].copy_from_slice(&envelope[header_len - 4..header_len]);
    let (header, rest) = envelope.split_at(header_len);
    let (wrap_nonce, rest) = rest.split_at(NONCE_LEN);
    let (wrapped, rest) = rest.split_at(DATA_KEY_LEN + TAG_LEN);
    let (record_nonce, body) = rest.split_at(NONCE_LEN);
    Some(Parts {
        header,
        sealed_header,
        encoding,
        wrap_version,
        wrap_nonce: wrap_nonce.try_into().ok()?,
        wrapped,
        record_nonce: record_nonce.try_into().ok()?,
        body,
    })
}

/// Reads the key version an envelope's data key is wrapped under, without
/// decrypting it.
pub fn key_version(envelope: &[u8]) -> Option<u32> {
    parts(envelope).map(|p| p.wrap_version)
}

/// The length of the record an envelope holds; None when it is not an
/// envelope.
pub fn plaintext_len(envelope: &[u8]) -> Option<usize> {
    parts(envelope).map(|p| p.body.len() - TAG_LEN)
}

/// Authenticates and decrypts an envelope written by `seal` (or `rewrap`)
/// for `token`. Any malformed, truncated, moved or altered envelope is
/// `DecryptFailed`; one under a version not loaded, `UnknownKeyVersion`.
pub fn open(keys: &KeySet, token: &[u8; 16], envelope: &[u8]) -> VaultResult<(PayloadEncoding, Zeroizing<Vec<u8>>)> {
    let len = plaintext_len(envelope).ok_or(VaultError::DecryptFailed)?;
    let mut plaintext = Zeroizing::new(vec![0u8; len]);
    let encoding = open_into(keys, token, envelope, plaintext.as_mut_slice())?;
    Ok((encoding, plaintext))
}

/// The data key of an envelope, unwrapped under its version.
fn unwrap_data_key(keys: &KeySet, token: &[u8; 16], p: &Parts<'_>) -> VaultResult<Zeroizing<[u8; DATA_KEY_LEN]>> {
    let ring = keys.version(p.wrap_version).ok_or(VaultError::UnknownKeyVersion(p.wrap_version))?;
    let mut data_key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    data_key.copy_from_slice(&p.wrapped[..DATA_KEY_LEN]);
    let tag: [u8; TAG_LEN] = p.wrapped[DATA_KEY_LEN..].try_into().expect("tag length");
    let (aad, aad_len) = associated_data(PURPOSE_DATA_KEY, token, p.header);
    ring.wrap
        .open_in_place(&p.wrap_nonce, &aad[..aad_len], data_key.as_mut(), &tag)
        .map_err(|_| VaultError::DecryptFailed)?;
    Ok(data_key)
}

/// Whether the data key of an envelope opens under the loaded keys (the
/// record itself is not decrypted): what proves, when a vault has no key
/// check values (one restored from a dump of 0.1.0), that the loaded keys
/// are its keys.
pub fn data_key_opens(keys: &KeySet, token: &[u8; 16], envelope: &[u8]) -> VaultResult<()> {
    let p = parts(envelope).ok_or(VaultError::DecryptFailed)?;
    unwrap_data_key(keys, token, &p).map(drop)
}

/// Opens an envelope into `out`, exactly `plaintext_len(envelope)` bytes:
/// `vault_get` passes the memory of the datum it returns, so the record is
/// decrypted where it is needed, with no copy. On an error `out` holds
/// zeros or ciphertext, never unauthenticated plaintext.
pub fn open_into(keys: &KeySet, token: &[u8; 16], envelope: &[u8], out: &mut [u8]) -> VaultResult<PayloadEncoding> {
    let p = parts(envelope).ok_or(VaultError::DecryptFailed)?;
    if p.body.len() - TAG_LEN != out.len() {
        return Err(VaultError::DecryptFailed);
    }
    let data_key = unwrap_data_key(keys, token, &p)?;
    let cipher = Aes256Gcm::new(&data_key);
    let (aad, aad_len) = associated_data(PURPOSE_RECORD, token, &p.sealed_header);
    let (body, tag) = p.body.split_at(out.len());
    out.copy_from_slice(body);
    cipher
        .open_in_place(&p.record_nonce, &aad[..aad_len], out, &tag.try_into().expect("tag length"))
        .map_err(|_| VaultError::DecryptFailed)?;
    Ok(p.encoding)
}

/// The envelope with its data key re-wrapped under `to` (the active key
/// version): the record's nonce and ciphertext are copied unchanged. The
/// data key is authenticated first, the record itself is not (`open`
/// does that, and `vault_rotate` opens every record it re-wraps to
/// recompute its blind indexes).
pub fn rewrap(keys: &KeySet, to: &KeyRing, token: &[u8; 16], envelope: &[u8]) -> VaultResult<Vec<u8>> {
    let p = parts(envelope).ok_or(VaultError::DecryptFailed)?;
    let data_key = unwrap_data_key(keys, token, &p)?;
    let mut out = Vec::with_capacity(REWRAPPED_HEADER_LEN + envelope.len() - p.header.len());
    out.push(FORMAT_REWRAPPED);
    out.push(p.encoding as u8);
    out.extend_from_slice(&to.key_version.to_be_bytes());
    out.extend_from_slice(&p.sealed_header[2..]);
    let mut wrap_nonce = [0u8; NONCE_LEN];
    fill_random(&mut wrap_nonce)?;
    out.extend_from_slice(&wrap_nonce);
    let (aad, aad_len) = associated_data(PURPOSE_DATA_KEY, token, &out[..REWRAPPED_HEADER_LEN]);
    let mut wrapped = *data_key;
    let tag = to.wrap.seal_in_place(&wrap_nonce, &aad[..aad_len], &mut wrapped);
    out.extend_from_slice(&wrapped);
    zeroize::Zeroize::zeroize(&mut wrapped);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&p.record_nonce);
    out.extend_from_slice(p.body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring() -> KeyRing {
        KeyRing::derive(&[9u8; 32])
    }

    /// Version 1 from the same master key as `ring`, and version 2.
    fn keys() -> KeySet {
        KeySet::new([(1, &[9u8; 32]), (2, &[10u8; 32])], Some(1)).unwrap()
    }

    const TOKEN: [u8; 16] = [1; 16];

    /// Written by `seal_with` before the cipher moved from the RustCrypto
    /// crate to ring (same master key, token, record and random bytes as
    /// below): envelopes stored by earlier builds must keep opening, and
    /// new ones must be byte-identical.
    const KNOWN_ENVELOPE: &str = "010100000001090909090909090909090909045da4bb584ce7ddcc967182ae377a5c5cf29fa0fe157757\
        631734578d9c53c87c632a954b0101fb58bceb20cd4d6b86090909090909090909090909161eccaff5cdff973ae35ad3a908357c\
        24ef1690b7d02249b5720f3c17c511039fc56145146317a5";
    const KNOWN_RECORD: &[u8] = b"{\"email\": \"a@b.example\"}";

    #[test]
    fn envelopes_match_the_known_answer() {
        let known: Vec<u8> = (0..KNOWN_ENVELOPE.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&KNOWN_ENVELOPE[i..i + 2], 16).unwrap())
            .collect();
        let token = [7u8; 16];
        let sealed =
            seal_with(&ring(), &token, PayloadEncoding::JsonbBinary, KNOWN_RECORD, &[9u8; RANDOM_LEN]).unwrap();
        assert_eq!(sealed, known);
        let (encoding, plaintext) = open(&keys(), &token, &known).unwrap();
        assert_eq!(encoding, PayloadEncoding::JsonbBinary);
        assert_eq!(plaintext.as_slice(), KNOWN_RECORD);
    }

    #[test]
    fn round_trip() {
        let r = ring();
        let env = seal(&r, &TOKEN, PayloadEncoding::JsonbBinary, b"{\"a\":1}").unwrap();
        assert_eq!(env.len(), OVERHEAD + 7);
        let (enc, pt) = open(&keys(), &TOKEN, &env).unwrap();
        assert_eq!(enc, PayloadEncoding::JsonbBinary);
        assert_eq!(pt.as_slice(), b"{\"a\":1}");
    }

    #[test]
    fn opens_into_a_buffer_of_exactly_the_record_length() {
        let r = ring();
        let env = seal(&r, &TOKEN, PayloadEncoding::JsonbBinary, b"0123456789").unwrap();
        assert_eq!(plaintext_len(&env), Some(10));
        let mut out = [0u8; 10];
        assert_eq!(open_into(&keys(), &TOKEN, &env, &mut out), Ok(PayloadEncoding::JsonbBinary));
        assert_eq!(&out, b"0123456789");
        let mut short = [0u8; 9];
        assert_eq!(open_into(&keys(), &TOKEN, &env, &mut short), Err(VaultError::DecryptFailed));
        // A bad tag leaves no plaintext in the buffer.
        let mut tampered = env.clone();
        *tampered.last_mut().unwrap() ^= 1;
        let mut out = [0u8; 10];
        assert_eq!(open_into(&keys(), &TOKEN, &tampered, &mut out), Err(VaultError::DecryptFailed));
        assert_ne!(&out, b"0123456789");
        assert_eq!(plaintext_len(&env[..OVERHEAD - 1]), None);
    }

    #[test]
    fn plaintext_does_not_appear_in_envelope() {
        let r = ring();
        let secret = b"canary-4f1d2c-very-personal";
        let env = seal(&r, &TOKEN, PayloadEncoding::JsonbBinary, secret).unwrap();
        assert!(!env.windows(secret.len()).any(|w| w == secret));
    }

    #[test]
    fn same_plaintext_twice_gives_different_envelopes() {
        let r = ring();
        let a = seal(&r, &TOKEN, PayloadEncoding::JsonbBinary, b"x").unwrap();
        let b = seal(&r, &TOKEN, PayloadEncoding::JsonbBinary, b"x").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn moved_to_another_token_fails() {
        let r = ring();
        let env = seal(&r, &TOKEN, PayloadEncoding::JsonbBinary, b"x").unwrap();
        assert_eq!(open(&keys(), &[2u8; 16], &env).unwrap_err(), VaultError::DecryptFailed);
    }

    #[test]
    fn other_master_key_fails() {
        let env = seal(&ring(), &TOKEN, PayloadEncoding::JsonbBinary, b"x").unwrap();
        let other = KeySet::new([(1, &[10u8; 32])], None).unwrap();
        assert_eq!(open(&other, &TOKEN, &env).unwrap_err(), VaultError::DecryptFailed);
    }

    #[test]
    fn swapped_data_key_fails() {
        let r = ring();
        let a = seal(&r, &TOKEN, PayloadEncoding::JsonbBinary, b"first").unwrap();
        let mut b = seal(&r, &TOKEN, PayloadEncoding::JsonbBinary, b"other").unwrap();
        b[HEADER_LEN..RECORD_NONCE_AT].copy_from_slice(&a[HEADER_LEN..RECORD_NONCE_AT]);
        assert_eq!(open(&keys(), &TOKEN, &b).unwrap_err(), VaultError::DecryptFailed);
    }

    #[test]
    fn an_unknown_payload_encoding_does_not_open() {
        let mut env = seal(&ring(), &TOKEN, PayloadEncoding::JsonbBinary, b"x").unwrap();
        for encoding in [0, 3, 255] {
            env[1] = encoding;
            assert_eq!(plaintext_len(&env), None, "encoding {encoding}");
            assert!(open(&keys(), &TOKEN, &env).is_err(), "encoding {encoding}");
        }
    }

    #[test]
    fn a_record_relabelled_as_text_does_not_open() {
        // The encoding is in the authenticated header: a record's envelope
        // passed off as a field token's (or the reverse) fails its tag.
        let mut env = seal(&ring(), &TOKEN, PayloadEncoding::JsonbBinary, b"x").unwrap();
        env[1] = PayloadEncoding::Utf8Text as u8;
        assert_eq!(open(&keys(), &TOKEN, &env).unwrap_err(), VaultError::DecryptFailed);
        let text = seal(&ring(), &TOKEN, PayloadEncoding::Utf8Text, b"4111111111111111").unwrap();
        let (encoding, plaintext) = open(&keys(), &TOKEN, &text).unwrap();
        assert_eq!((encoding, &plaintext[..]), (PayloadEncoding::Utf8Text, &b"4111111111111111"[..]));
    }

    #[test]
    fn unknown_key_version_is_reported() {
        let r = ring();
        let mut env = seal(&r, &TOKEN, PayloadEncoding::JsonbBinary, b"x").unwrap();
        env[KEY_VERSION_BYTES].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(open(&keys(), &TOKEN, &env).unwrap_err(), VaultError::UnknownKeyVersion(7));
    }

    #[test]
    fn a_rewrapped_envelope_keeps_its_record_and_binds_both_versions() {
        let keys = keys();
        let v2 = keys.version(2).unwrap();
        let sealed = seal(&ring(), &TOKEN, PayloadEncoding::JsonbBinary, b"{\"a\":1}").unwrap();
        let moved = rewrap(&keys, v2, &TOKEN, &sealed).unwrap();
        assert_eq!(key_version(&moved), Some(2));
        assert_eq!(plaintext_len(&moved), Some(7));
        // The record's nonce and ciphertext are the sealed ones, byte for byte.
        assert_eq!(&moved[moved.len() - 7 - TAG_LEN - NONCE_LEN..], &sealed[RECORD_NONCE_AT..]);
        let (enc, pt) = open(&keys, &TOKEN, &moved).unwrap();
        assert_eq!((enc, pt.as_slice()), (PayloadEncoding::JsonbBinary, &b"{\"a\":1}"[..]));
        // Back to version 1, and again: still the same record.
        let back = rewrap(&keys, keys.version(1).unwrap(), &TOKEN, &moved).unwrap();
        assert_eq!(key_version(&back), Some(1));
        assert_eq!(open(&keys, &TOKEN, &back).unwrap().1.as_slice(), b"{\"a\":1}");
        // Without version 2 loaded the re-wrapped envelope names it.
        let only_v1 = KeySet::new([(1, &[9u8; 32])], None).unwrap();
        assert_eq!(open(&only_v1, &TOKEN, &moved).unwrap_err(), VaultError::UnknownKeyVersion(2));
        // Another token, a flipped byte anywhere (headers included), or the
        // sealing version edited: all fail.
        assert_eq!(open(&keys, &[2u8; 16], &moved).unwrap_err(), VaultError::DecryptFailed);
        for i in 0..moved.len() {
            let mut bad = moved.clone();
            bad[i] ^= 0x01;
            assert!(open(&keys, &TOKEN, &bad).is_err(), "byte {i}");
        }
    }

    proptest! {
        #[test]
        fn round_trip_any_bytes(pt in proptest::collection::vec(any::<u8>(), 0..4096), token in any::<[u8; 16]>()) {
            let r = ring();
            let env = seal(&r, &token, PayloadEncoding::JsonbBinary, &pt).unwrap();
            let (enc, out) = open(&keys(), &token, &env).unwrap();
            prop_assert_eq!(enc, PayloadEncoding::JsonbBinary);
            prop_assert_eq!(out.as_slice(), pt.as_slice());
        }

        #[test]
        fn any_single_bit_flip_is_detected(pt in proptest::collection::vec(any::<u8>(), 0..256), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let r = ring();
            let mut env = seal(&r, &TOKEN, PayloadEncoding::JsonbBinary, &pt).unwrap();
            let i = pos.index(env.len());
            env[i] ^= 1 << bit;
            prop_assert!(open(&keys(), &TOKEN, &env).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(env in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = open(&keys(), &TOKEN, &env);
            let _ = rewrap(&keys(), &ring(), &TOKEN, &env);
        }
    }
}
