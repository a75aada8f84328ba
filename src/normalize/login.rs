//! Login: trim, NFC, lowercase. Must be non-empty and free of control and
//! invisible formatting characters. The only space allowed inside is U+0020:
//! the other space separators (no-break, ideographic, thin, ...) look like
//! it, or like nothing, and would let two logins that read alike index apart.

use super::{has_hidden_characters, is_space_separator, nfc_lower, LookupKind};
use crate::error::{VaultError, VaultResult};

const MAX_LOGIN_CHARS: usize = 256;

pub fn normalize_login(value: &str) -> VaultResult<String> {
    let invalid = || VaultError::InvalidValue(LookupKind::Login);
    let trimmed = value.trim();
    if trimmed.is_empty()
        || trimmed.len() > 4 * MAX_LOGIN_CHARS
        || has_hidden_characters(trimmed)
        || has_other_spaces(trimmed)
    {
        return Err(invalid());
    }
    let login = nfc_lower(trimmed);
    if login.chars().count() > MAX_LOGIN_CHARS {
        return Err(invalid());
    }
    Ok(login)
}

/// A space separator other than U+0020 (ASCII text has none: no scan).
fn has_other_spaces(s: &str) -> bool {
    !s.is_ascii() && s.chars().any(|c| c != ' ' && is_space_separator(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Logins that must be accepted: letters, digits, punctuation and symbols
    /// of several scripts (less the few that render blank), with ASCII spaces
    /// inside and at least one visible character.
    const VALID_LOGIN: &str = "([a-zA-Z0-9 _.@'-]|[\\p{L}\\p{N}\\p{P}\\p{S}&&[^\\u{115F}\\u{1160}\\u{3164}\\u{FFA0}\\u{2800}\\u{1D159}]]){0,20}([a-zA-Z0-9]|[\\p{L}&&[\\p{Greek}\\p{Cyrillic}\\p{Han}\\p{Arabic}]])[a-zA-Z0-9 ._-]{0,19}";

    #[test]
    fn canonical_forms() {
        assert_eq!(normalize_login("  Alice ").unwrap(), "alice");
        assert_eq!(normalize_login("ZOE\u{0308}").unwrap(), "zoë");
        assert_eq!(normalize_login("'; DROP TABLE users; --").unwrap(), "'; drop table users; --");
        assert_eq!(normalize_login("Jean Dupont").unwrap(), "jean dupont", "ASCII space inside");
        assert_eq!(normalize_login("\u{00A0}bob\u{3000}").unwrap(), "bob", "spaces at the ends are trimmed");
    }

    #[test]
    fn rejections() {
        for bad in ["", "   ", "a\u{0007}b", "ad\u{200D}min", "\u{FEFF}root"] {
            assert!(normalize_login(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_login(&"x".repeat(257)).is_err());
    }

    #[test]
    fn invisible_characters_are_refused() {
        for c in crate::normalize::INVISIBLE_SAMPLES {
            assert!(normalize_login(&format!("ad{c}min")).is_err(), "U+{:04X}", c as u32);
            if !c.is_whitespace() {
                assert!(normalize_login(&format!("admin{c}")).is_err(), "U+{:04X} at the end", c as u32);
            }
        }
        // Line and paragraph separators are whitespace: trimmed at the ends.
        assert_eq!(normalize_login("admin\u{2028}").unwrap(), "admin");
    }

    #[test]
    fn spaces_other_than_ascii_inside_are_refused() {
        for c in ['\u{00A0}', '\u{2000}', '\u{2009}', '\u{202F}', '\u{205F}', '\u{3000}', '\u{1680}'] {
            assert!(normalize_login(&format!("jean{c}dupont")).is_err(), "U+{:04X}", c as u32);
        }
    }

    proptest! {
        #[test]
        fn idempotent(s in VALID_LOGIN) {
            let once = normalize_login(&s);
            prop_assert!(once.is_ok(), "{s:?}: {once:?}");
            let once = once.unwrap();
            prop_assert_eq!(normalize_login(&once), Ok(once.clone()));
        }

        #[test]
        fn an_ignorable_or_format_character_anywhere_is_refused(
            s in VALID_LOGIN,
            c in prop::sample::select(crate::normalize::ignorable_and_format_chars()),
            at in any::<prop::sample::Index>(),
        ) {
            let mut login = s.clone();
            let boundaries: Vec<usize> = (0..=login.len()).filter(|&i| login.is_char_boundary(i)).collect();
            login.insert(boundaries[at.index(boundaries.len())], c);
            prop_assert!(normalize_login(&login).is_err(), "{login:?}");
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = normalize_login(&s);
        }
    }
}
