//! The audit batch decoder (what `pii_vault.audit_events` runs on stored,
//! possibly tampered bytes) on arbitrary input: never a panic, and whatever
//! decodes in the current format re-encodes to the same bytes (one
//! encoding per batch; older formats decode into the current one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pii_vault_core::crypto::audit_chain::{batch_key_version, decode_batch, encode_batch};

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = decode_batch(1, data) {
        let version = batch_key_version(data).expect("a batch that decodes names its key version");
        let again = encode_batch(version, &records);
        if again[0] == data[0] {
            assert_eq!(again, data, "a batch decodes from a non-canonical encoding");
        }
    }
});
