//! The normalizers and the token parser on arbitrary text: never a panic,
//! and a normalized value normalizes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pii_vault_core::normalize::{normalize, parse_region, parse_token, IndexedKind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let region = parse_region("US").expect("US is a region");
    for kind in IndexedKind::ALL {
        if let Ok(once) = normalize(kind, text, region) {
            assert_eq!(normalize(kind, &once, region).as_ref(), Ok(&once), "{kind} not idempotent");
        }
    }
    let _ = parse_token(text);
});
