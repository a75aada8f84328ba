//! Phone: libphonenumber's rules (the `phonenumber` crate) to E.164. A
//! number without a leading `+` is read in `pii_vault.default_region`.

use std::str::FromStr;

use phonenumber::country;

use super::{has_hidden_characters, LookupKind};
use crate::error::{VaultError, VaultResult};

/// A region code accepted by the phone number library (e.g. `US`, `DE`).
pub type Region = country::Id;

const MAX_PHONE_LEN: usize = 64;
/// E.164: at most 15 digits; the shortest numbers in use have about 7.
const MIN_E164_DIGITS: usize = 7;
const MAX_E164_DIGITS: usize = 15;

/// Parses an ISO 3166 alpha-2 region code (case-insensitive).
pub fn parse_region(code: &str) -> Option<Region> {
    Region::from_str(&code.trim().to_ascii_uppercase()).ok()
}

pub fn normalize_phone(value: &str, region: Region) -> VaultResult<String> {
    let invalid = || VaultError::InvalidValue(LookupKind::Phone);
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.len() > MAX_PHONE_LEN || has_hidden_characters(trimmed) {
        return Err(invalid());
    }
    // The parser is third-party code run on attacker-chosen input: a panic in
    // it must become a rejected value, not a crashed statement.
    let parsed = std::panic::catch_unwind(|| phonenumber::parse(Some(region), trimmed))
        .map_err(|_| invalid())?
        .map_err(|_| invalid())?;
    let e164 = phonenumber::format(&parsed).mode(phonenumber::Mode::E164).to_string();
    let digits = e164.len().saturating_sub(1);
    if !e164.starts_with('+') || !(MIN_E164_DIGITS..=MAX_E164_DIGITS).contains(&digits) {
        return Err(invalid());
    }
    // The canonical form must read back as itself, or a lookup by the stored
    // form would miss (the fuzzer found "11.1.11" → "+111", which does not).
    // Input already in that form was just read: no second parse.
    if e164 == trimmed {
        return Ok(e164);
    }
    let reparsed = std::panic::catch_unwind(|| phonenumber::parse(Some(region), &e164))
        .map_err(|_| invalid())?
        .map_err(|_| invalid())?;
    if phonenumber::format(&reparsed).mode(phonenumber::Mode::E164).to_string() != e164 {
        return Err(invalid());
    }
    Ok(e164)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn us() -> Region {
        parse_region("US").unwrap()
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(normalize_phone("+1 415-555-2671", us()).unwrap(), "+14155552671");
        assert_eq!(normalize_phone("(415) 555-2671", us()).unwrap(), "+14155552671");
        assert_eq!(normalize_phone("+44 20 7946 0958", us()).unwrap(), "+442079460958");
        assert_eq!(normalize_phone(" +14155552671 ", us()).unwrap(), "+14155552671", "already canonical");
        let de = parse_region("de").unwrap();
        assert_eq!(normalize_phone("030 123456", de).unwrap(), "+4930123456");
    }

    #[test]
    fn rejections() {
        for bad in ["", "  ", "abc", "+", "415\u{200F}5552671", "415\n5552671", "'; DROP TABLE x; --", "11.1.11", "+111", "111111331-"] {
            assert!(normalize_phone(bad, us()).is_err(), "{bad:?}");
        }
        assert!(normalize_phone(&"1".repeat(100), us()).is_err());
    }

    #[test]
    fn regions() {
        assert!(parse_region("US").is_some());
        assert!(parse_region("gb").is_some());
        assert!(parse_region("XX").is_none());
        assert!(parse_region("").is_none());
    }

    proptest! {
        #[test]
        fn idempotent(national in "[2-9][0-9]{2}[2-9][0-9]{6}") {
            if let Ok(once) = normalize_phone(&national, us()) {
                prop_assert_eq!(normalize_phone(&once, us()).unwrap(), once.clone());
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = normalize_phone(&s, us());
        }
    }
}
