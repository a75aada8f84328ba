//! AES-256-GCM, the vault's one cipher, behind a small API of its own.
//!
//! The implementation is ring's: its assembly interleaves AES-CTR and GHASH,
//! where the RustCrypto `aes-gcm` crate used before multiplies one GHASH
//! block at a time (about three times slower per record). The bytes are the same
//! AES-256-GCM either way: the known-answer test in `envelope` pins an
//! envelope written before the switch.
//!
//! ring keeps the expanded key inline and does not wipe it when dropped;
//! `Aes256Gcm` does, as the RustCrypto crate did with its `zeroize` feature
//! (moves on the way in can still leave copies on the stack, as before).

use std::mem::MaybeUninit;

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use zeroize::Zeroize;

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// The tag did not match: wrong key, wrong associated data, or altered
/// bytes. The buffer has been wiped.
#[derive(Debug, PartialEq, Eq)]
pub struct NotAuthentic;

/// An AES-256-GCM key, ready for use. The caller supplies each nonce (the
/// envelope draws them at random) and must never repeat one under a key.
pub struct Aes256Gcm {
    /// Always initialized; `MaybeUninit` only so that `drop` can wipe the
    /// bytes once the key is gone.
    key: MaybeUninit<LessSafeKey>,
}

impl Aes256Gcm {
    pub fn new(key: &[u8; KEY_LEN]) -> Aes256Gcm {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("AES-256 takes a 32-byte key");
        Aes256Gcm { key: MaybeUninit::new(LessSafeKey::new(unbound)) }
    }

    #[allow(unsafe_code)] // the key is wiped in place on drop (see the field)
    fn key(&self) -> &LessSafeKey {
        // SAFETY: initialized in `new`, uninitialized only inside `drop`.
        unsafe { self.key.assume_init_ref() }
    }

    /// Encrypts `data` in place; returns the tag.
    pub fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], data: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .key()
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), data)
            // ring refuses only inputs beyond GCM's 64 GB limit; records are
            // capped far below it (pii_vault.max_record_bytes ≤ 2 GB).
            .expect("input within AES-GCM's length limit");
        tag.as_ref().try_into().expect("16-byte tag")
    }

    /// Authenticates and decrypts `data` in place. On failure `data` is
    /// zeroed (ring decrypts while it authenticates, so it would otherwise
    /// hold unauthenticated plaintext).
    pub fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), NotAuthentic> {
        self.key()
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                Tag::from(*tag),
                data,
                0..,
            )
            .map(|_| ())
            .map_err(|_| NotAuthentic)
    }
}

#[allow(unsafe_code)] // wiping the key's bytes in place
impl Drop for Aes256Gcm {
    fn drop(&mut self) {
        // SAFETY: initialized since `new`; after this the bytes are only
        // overwritten, never read as a key again.
        unsafe {
            self.key.assume_init_drop();
            let bytes = std::slice::from_raw_parts_mut(
                self.key.as_mut_ptr().cast::<MaybeUninit<u8>>(),
                std::mem::size_of::<LessSafeKey>(),
            );
            bytes.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // NIST SP 800-38D / McGrew–Viega test case 16: AES-256, 96-bit IV,
    // 60-byte plaintext, 20-byte associated data.
    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
    const KEY: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    const IV: &str = "cafebabefacedbaddecaf888";
    const PT: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const AAD: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
    const CT: &str = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
    const TAG: &str = "76fc6ece0f4e1768cddf8853bb2d551b";

    fn cipher() -> Aes256Gcm {
        Aes256Gcm::new(&hex(KEY).try_into().unwrap())
    }

    #[test]
    fn matches_the_published_test_vector() {
        let mut data = hex(PT);
        let tag = cipher().seal_in_place(&hex(IV).try_into().unwrap(), &hex(AAD), &mut data);
        assert_eq!(data, hex(CT));
        assert_eq!(tag.to_vec(), hex(TAG));
        cipher().open_in_place(&hex(IV).try_into().unwrap(), &hex(AAD), &mut data, &tag).unwrap();
        assert_eq!(data, hex(PT));
    }

    #[test]
    fn a_failed_open_leaves_no_plaintext() {
        let mut data = hex(CT);
        let mut tag: [u8; TAG_LEN] = hex(TAG).try_into().unwrap();
        tag[0] ^= 1;
        let result = cipher().open_in_place(&hex(IV).try_into().unwrap(), &hex(AAD), &mut data, &tag);
        assert_eq!(result, Err(NotAuthentic));
        assert!(data.iter().all(|&b| b == 0));
    }
}
