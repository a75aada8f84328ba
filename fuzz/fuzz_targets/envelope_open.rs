//! The stored-envelope decoder on arbitrary bytes: never a panic, and
//! nothing but a genuine envelope ever decrypts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pii_vault_core::crypto::envelope::{open, seal, PayloadEncoding};
use pii_vault_core::crypto::KeySet;

fuzz_target!(|data: &[u8]| {
    let keys = KeySet::new([(1, &[7u8; 32])], None).expect("one version");
    let token = [3u8; 16];
    assert!(open(&keys, &token, data).is_err(), "arbitrary bytes decrypted");
    // A real envelope of the same bytes round-trips.
    let sealed = seal(keys.active(), &token, PayloadEncoding::JsonbBinary, data).expect("seal");
    let (_, plain) = open(&keys, &token, &sealed).expect("open");
    assert_eq!(plain.as_slice(), data);
});
