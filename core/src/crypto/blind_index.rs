//! Blind index: HMAC-SHA256(index key, kind ‖ 0x00 ‖ normalized value).
//!
//! The kind is part of the MAC input, so the same string indexed as a login
//! and as an email yields unrelated hashes and one UNIQUE column per kind
//! never collides across kinds.

use hmac::Mac;

use super::KeyRing;
use crate::normalize::IndexedKind;

pub const BLIND_INDEX_LEN: usize = 32;

pub fn blind_index(ring: &KeyRing, kind: IndexedKind, normalized: &str) -> [u8; BLIND_INDEX_LEN] {
    let mut mac = ring.index_mac.clone();
    for part in mac_input(kind.as_str(), normalized) {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The keyed hash a share or session id is stored under:
/// HMAC(index key, what ‖ 0x00 ‖ the id's 16 bytes). `what` ("share",
/// "session") is no lookup kind's name, and the id has a fixed length, so
/// no lookup value and no id of another kind feeds the MAC the same bytes.
pub fn id_hash(ring: &KeyRing, what: &str, id: &[u8; 16]) -> [u8; BLIND_INDEX_LEN] {
    let mut mac = ring.index_mac.clone();
    mac.update(what.as_bytes());
    mac.update(&[0u8]);
    mac.update(id);
    mac.finalize().into_bytes().into()
}

/// The keyed hash a deduplicated field token is found by:
/// HMAC(index key, "field/" ‖ kind ‖ 0x00 ‖ record ‖ value), where record
/// is 0x00 for none or 0x01 and its 16 bytes. "field/…" is no lookup
/// kind's name nor an id's label, the record part has a fixed length per
/// tag, and a value holds no NUL (PostgreSQL text cannot), so no other
/// input feeds the MAC the same bytes. The record is part of it: a value
/// tokenized for two subjects is two tokens, each erased with its own.
pub fn field_value_hash(ring: &KeyRing, kind: &str, record: Option<&[u8; 16]>, value: &str) -> [u8; BLIND_INDEX_LEN] {
    let mut mac = ring.index_mac.clone();
    mac.update(b"field/");
    mac.update(kind.as_bytes());
    mac.update(&[0u8]);
    match record {
        Some(token) => {
            mac.update(&[1u8]);
            mac.update(token);
        }
        None => mac.update(&[0u8]),
    }
    mac.update(value.as_bytes());
    mac.finalize().into_bytes().into()
}

/// What is MACed, in pieces: kind ‖ 0x00 ‖ value. A normalized value holds
/// no NUL (control characters are refused), so the first 0x00 splits the
/// input back into its kind and value: no other (kind, value) pair, for any
/// kind names, feeds the MAC the same bytes.
fn mac_input<'a>(kind: &'a str, value: &'a str) -> [&'a [u8]; 3] {
    [kind.as_bytes(), &[0u8], value.as_bytes()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_separates_hashes() {
        let ring = KeyRing::derive(&[1u8; 32]);
        let a = blind_index(&ring, IndexedKind::Email, "a@b.example");
        let b = blind_index(&ring, IndexedKind::Login, "a@b.example");
        assert_ne!(a, b);
        assert_eq!(a, blind_index(&ring, IndexedKind::Email, "a@b.example"));
    }

    #[test]
    fn key_separates_hashes() {
        let r1 = KeyRing::derive(&[1u8; 32]);
        let r2 = KeyRing::derive(&[2u8; 32]);
        assert_ne!(
            blind_index(&r1, IndexedKind::Email, "a@b.example"),
            blind_index(&r2, IndexedKind::Email, "a@b.example")
        );
    }

    #[test]
    fn field_value_hashes_are_apart_from_lookups_and_per_record() {
        let ring = KeyRing::derive(&[1u8; 32]);
        let plain = field_value_hash(&ring, "email", None, "a@b.example");
        // Not the lookup's hash of the same value: a field token's dedup
        // hash says nothing about whether a record holds that email.
        assert_ne!(plain, blind_index(&ring, IndexedKind::Email, "a@b.example"));
        assert_ne!(plain, field_value_hash(&ring, "text", None, "a@b.example"));
        assert_ne!(plain, field_value_hash(&ring, "email", Some(&[7; 16]), "a@b.example"));
        assert_ne!(
            field_value_hash(&ring, "email", Some(&[7; 16]), "x"),
            field_value_hash(&ring, "email", Some(&[8; 16]), "x")
        );
        assert_eq!(plain, field_value_hash(&ring, "email", None, "a@b.example"));
        assert_ne!(plain, field_value_hash(&KeyRing::derive(&[2u8; 32]), "email", None, "a@b.example"));
    }

    fn joined(kind: &str, value: &str) -> Vec<u8> {
        mac_input(kind, value).concat()
    }

    #[test]
    fn separator_prevents_concatenation_ambiguity() {
        // Without the separator a kind and a value could shift their
        // boundary: ("log", "inx") and ("login", "x") would both MAC
        // "loginx".
        assert_ne!(joined("log", "inx"), joined("login", "x"));
        assert_eq!(joined("login", "x"), b"login\0x");
        // And the blind index is exactly the MAC of that input.
        let ring = KeyRing::derive(&[1u8; 32]);
        let mut mac = ring.index_mac.clone();
        mac.update(b"login\0x");
        assert_eq!(blind_index(&ring, IndexedKind::Login, "x"), <[u8; 32]>::from(mac.finalize().into_bytes()));
    }

    proptest::proptest! {
        // For any kind names and NUL-free values, different pairs feed the
        // MAC different bytes.
        #[test]
        fn the_input_is_injective(k1 in "[a-z]{1,6}", v1 in "[^\\x00]{0,8}", k2 in "[a-z]{1,6}", v2 in "[^\\x00]{0,8}") {
            if (k1.as_str(), v1.as_str()) != (k2.as_str(), v2.as_str()) {
                proptest::prop_assert_ne!(joined(&k1, &v1), joined(&k2, &v2));
            }
        }
    }
}
