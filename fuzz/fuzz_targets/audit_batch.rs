//! The audit batch decoder (what `pii_vault.audit_events` runs on stored,
//! possibly tampered bytes) on arbitrary input: never a panic, and whatever
//! decodes re-encodes to the same bytes (one encoding per batch).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pii_vault::crypto::audit_chain::{decode_batch, encode_batch};

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = decode_batch(1, data) {
        assert_eq!(encode_batch(&records), data, "a batch decodes from a non-canonical encoding");
    }
});
