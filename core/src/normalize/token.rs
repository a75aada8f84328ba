//! Token text: the forms PostgreSQL's uuid input accepts (hyphens between
//! groups of four hex digits, optional braces), parsed here so that a bad
//! value never reaches an error message.

use super::LookupKind;
use crate::error::{VaultError, VaultResult};

pub fn parse_token(text: &str) -> VaultResult<[u8; 16]> {
    let invalid = || VaultError::InvalidValue(LookupKind::Token);
    let trimmed = text.trim();
    let inner = match trimmed.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}').ok_or_else(invalid)?,
        None => trimmed,
    };
    let mut out = [0u8; 16];
    let mut digits = 0usize;
    let mut prev_hyphen = true; // no leading hyphen
    for c in inner.chars() {
        if c == '-' {
            if prev_hyphen || !digits.is_multiple_of(4) {
                return Err(invalid());
            }
            prev_hyphen = true;
            continue;
        }
        let v = c.to_digit(16).ok_or_else(invalid)? as u8;
        if digits >= 32 {
            return Err(invalid());
        }
        out[digits / 2] |= if digits.is_multiple_of(2) { v << 4 } else { v };
        digits += 1;
        prev_hyphen = false;
    }
    if digits != 32 || prev_hyphen {
        return Err(invalid());
    }
    Ok(out)
}

/// The canonical text form of a token.
pub fn format_token(token: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in token.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepted_forms() {
        let t = parse_token("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        assert_eq!(format_token(&t), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        for form in [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ",
        ] {
            assert_eq!(parse_token(form).unwrap(), t, "{form}");
        }
    }

    #[test]
    fn rejected_forms() {
        for bad in [
            "",
            "-",
            "a0eebc99",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
            "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eeb-c99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a@b.example",
        ] {
            assert!(parse_token(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn format_parse_round_trip(t in any::<[u8; 16]>()) {
            prop_assert_eq!(parse_token(&format_token(&t)).unwrap(), t);
        }

        #[test]
        fn never_panics(s in "\\PC{0,50}") {
            let _ = parse_token(&s);
        }
    }
}
