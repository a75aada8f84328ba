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
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.len() > MAX_PHONE_LEN || has_hidden_characters(trimmed) {
        return Err(invalid());
    }
    // The common international shape ("+44 20 7946 0958", "+14155552671")
    // reads as its digits after the `+`: when those read back as themselves
    // they are the canonical form, found with one parse instead of two. A
    // proptest pins this to `canonical_of_any_shape`; with dashes, dots or
    // parentheses the parser's answer differs ("+662-60493458" is refused,
    // "+66260493458" is not), so those shapes take the full path.
    if let Some(candidate) = plus_and_digits(trimmed) {
        if e164_of(&candidate, region).is_ok_and(|e164| e164 == candidate) {
            return Ok(candidate);
        }
    }
    canonical_of_any_shape(trimmed, region)
}

fn invalid() -> VaultError {
    VaultError::InvalidValue(LookupKind::Phone)
}

/// `+` and the digits of `text`, when it is `+` followed by digits and
/// spaces only.
fn plus_and_digits(text: &str) -> Option<String> {
    let rest = text.strip_prefix('+')?;
    if !rest.bytes().all(|b| b.is_ascii_digit() || b == b' ') {
        return None;
    }
    Some(std::iter::once('+').chain(rest.chars().filter(char::is_ascii_digit)).collect())
}

/// The E.164 form libphonenumber gives `text`, if it has 7 to 15 digits.
fn e164_of(text: &str, region: Region) -> VaultResult<String> {
    // The parser is third-party code run on attacker-chosen input: a panic in
    // it must become a rejected value, not a crashed statement.
    let parsed = std::panic::catch_unwind(|| phonenumber::parse(Some(region), text))
        .map_err(|_| invalid())?
        .map_err(|_| invalid())?;
    let e164 = phonenumber::format(&parsed).mode(phonenumber::Mode::E164).to_string();
    let digits = e164.len().saturating_sub(1);
    if !e164.starts_with('+') || !(MIN_E164_DIGITS..=MAX_E164_DIGITS).contains(&digits) {
        return Err(invalid());
    }
    Ok(e164)
}

/// The canonical form of a trimmed number written any way libphonenumber
/// reads. It must read back as itself, or a lookup by the stored form would
/// miss (the fuzzer found "11.1.11" → "+111", which does not).
fn canonical_of_any_shape(trimmed: &str, region: Region) -> VaultResult<String> {
    let e164 = e164_of(trimmed, region)?;
    if e164 != trimmed && e164_of(&e164, region)? != e164 {
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

        // The one-parse path for international numbers gives what the full
        // path gives: shapes that mostly parse, any mix of digits and spaces,
        // and other separators (which must take the full path).
        #[test]
        fn the_international_shortcut_matches_the_full_path(
            number in prop_oneof![
                "\\+[1-9][0-9]{0,2} ?[0-9]{2,4} ?[0-9]{2,4} ?[0-9]{0,4}",
                "\\+[0-9 ]{0,20}",
                "\\+[0-9 .()-]{0,20}",
            ],
            region in prop::sample::select(vec!["US", "GB", "DE", "FR", "IN", "BR"]),
        ) {
            let region = parse_region(region).unwrap();
            prop_assert_eq!(normalize_phone(&number, region), canonical_of_any_shape(number.trim(), region));
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = normalize_phone(&s, us());
        }
    }
}
