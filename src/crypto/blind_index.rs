//! Blind index: HMAC-SHA256(index key, kind ‖ 0x00 ‖ normalized value).
//!
//! The kind is part of the MAC input, so the same string indexed as a login
//! and as an email yields unrelated hashes and one UNIQUE column per kind
//! never collides across kinds.

use hmac::Mac;

use super::KeyRing;
use crate::normalize::LookupKind;

pub const BLIND_INDEX_LEN: usize = 32;

pub fn blind_index(ring: &KeyRing, kind: LookupKind, normalized: &str) -> [u8; BLIND_INDEX_LEN] {
    let mut mac = ring.index_mac.clone();
    mac.update(kind.as_str().as_bytes());
    mac.update(&[0u8]);
    mac.update(normalized.as_bytes());
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_separates_hashes() {
        let ring = KeyRing::derive(&[1u8; 32]);
        let a = blind_index(&ring, LookupKind::Email, "a@b.example");
        let b = blind_index(&ring, LookupKind::Login, "a@b.example");
        assert_ne!(a, b);
        assert_eq!(a, blind_index(&ring, LookupKind::Email, "a@b.example"));
    }

    #[test]
    fn key_separates_hashes() {
        let r1 = KeyRing::derive(&[1u8; 32]);
        let r2 = KeyRing::derive(&[2u8; 32]);
        assert_ne!(
            blind_index(&r1, LookupKind::Email, "a@b.example"),
            blind_index(&r2, LookupKind::Email, "a@b.example")
        );
    }

    #[test]
    fn separator_prevents_concatenation_ambiguity() {
        let ring = KeyRing::derive(&[1u8; 32]);
        // "email" ‖ 0 ‖ "x" must differ from "emai" ‖ 0 ‖ "lx" style shifts.
        assert_ne!(blind_index(&ring, LookupKind::Login, "x"), blind_index(&ring, LookupKind::Login, "\0x"));
    }
}
