//! The record parsers (field names, field selection, merge patch) on
//! arbitrary JSON text: never a panic, never unbounded recursion.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pii_vault_core::record::{merge_patch_text, project, top_level_names};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = project(text, &["email".to_string(), "a".to_string()]);
    let _ = top_level_names(text);
    // The first half as the record, the rest as the patch.
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid -= 1;
    }
    let (record, patch) = text.split_at(mid);
    let _ = merge_patch_text(record, patch);
});
