//! The stored-envelope decoder on arbitrary bytes: never a panic, and
//! nothing but a genuine envelope ever decrypts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pii_vault::crypto::envelope::{open, seal, PayloadEncoding};
use pii_vault::crypto::KeyRing;

fuzz_target!(|data: &[u8]| {
    let ring = KeyRing::derive(&[7u8; 32]);
    let token = [3u8; 16];
    assert!(open(&ring, &token, data).is_err(), "arbitrary bytes decrypted");
    // A real envelope of the same bytes round-trips.
    let sealed = seal(&ring, &token, PayloadEncoding::JsonText, data).expect("seal");
    let (_, plain) = open(&ring, &token, &sealed).expect("open");
    assert_eq!(plain.as_slice(), data);
});
