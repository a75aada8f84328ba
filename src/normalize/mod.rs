//! Normalization of lookup values before they are blind-indexed.
//!
//! A store and a later lookup must produce the same bytes for the same
//! person, so every indexed kind has exactly one canonical form. A value
//! that has no canonical form is rejected, never silently left unindexed.

mod email;
mod login;
mod phone;
mod token;

pub use email::normalize_email;
pub use login::normalize_login;
pub use phone::{normalize_phone, parse_region, Region};
pub use token::{format_token, parse_token};

use crate::error::{VaultError, VaultResult};

/// The kinds `vault_lookup` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LookupKind {
    Email,
    Phone,
    Login,
    Token,
}

impl LookupKind {
    /// The kinds that are top-level record fields with a blind index.
    pub const INDEXED: [LookupKind; 3] = [LookupKind::Email, LookupKind::Phone, LookupKind::Login];

    pub fn as_str(self) -> &'static str {
        match self {
            LookupKind::Email => "email",
            LookupKind::Phone => "phone",
            LookupKind::Login => "login",
            LookupKind::Token => "token",
        }
    }

    /// Parses a kind as given to `vault_lookup`; exact lowercase names only.
    pub fn parse(kind: &str) -> VaultResult<LookupKind> {
        match kind {
            "email" => Ok(LookupKind::Email),
            "phone" => Ok(LookupKind::Phone),
            "login" => Ok(LookupKind::Login),
            "token" => Ok(LookupKind::Token),
            _ => Err(VaultError::UnknownLookupKind),
        }
    }
}

impl std::fmt::Display for LookupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Normalizes `value` as a `kind` (not for `Token`, which is not hashed).
pub fn normalize(kind: LookupKind, value: &str, region: Region) -> VaultResult<String> {
    match kind {
        LookupKind::Email => normalize_email(value),
        LookupKind::Phone => normalize_phone(value, region),
        LookupKind::Login => normalize_login(value),
        LookupKind::Token => Err(VaultError::InvalidValue(LookupKind::Token)),
    }
}

/// Characters no identifier may contain: C0/C1 controls and the invisible
/// format characters used to disguise text (bidi overrides and marks,
/// zero-width spaces and joiners, the BOM, the soft hyphen).
pub(crate) fn has_hidden_characters(s: &str) -> bool {
    if s.is_ascii() {
        // The only hidden ASCII characters are the controls (a byte scan
        // instead of a char walk: this runs on every lookup).
        return s.bytes().any(|b| b.is_ascii_control());
    }
    s.chars().any(is_hidden)
}

fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}')
}

/// Unicode NFC of `s`, lower-cased. Lower-casing can un-normalize a few
/// characters, so NFC runs again afterwards (the result is then stable).
pub(crate) fn nfc_lower(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    if s.is_ascii() {
        // ASCII is already NFC and lowers to ASCII: the same result without
        // the two Unicode passes (most of a lookup's normalization time).
        return s.to_ascii_lowercase();
    }
    let lowered: String = s.nfc().collect::<String>().to_lowercase();
    lowered.nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_exactly() {
        assert_eq!(LookupKind::parse("email").unwrap(), LookupKind::Email);
        assert_eq!(LookupKind::parse("token").unwrap(), LookupKind::Token);
        assert_eq!(LookupKind::parse("EMAIL").unwrap_err(), VaultError::UnknownLookupKind);
        assert_eq!(LookupKind::parse("ssn").unwrap_err(), VaultError::UnknownLookupKind);
        assert_eq!(LookupKind::parse("").unwrap_err(), VaultError::UnknownLookupKind);
    }

    #[test]
    fn hidden_characters_are_detected() {
        assert!(has_hidden_characters("a\u{200F}b"));
        assert!(has_hidden_characters("a\nb"));
        assert!(has_hidden_characters("\u{202E}moc.live"));
        assert!(!has_hidden_characters("zoë"));
    }

    proptest::proptest! {
        #[test]
        fn the_ascii_hidden_character_scan_matches_the_char_walk(s in "[\\x00-\\x7f]{0,40}") {
            proptest::prop_assert_eq!(has_hidden_characters(&s), s.chars().any(is_hidden));
        }

        #[test]
        fn the_ascii_shortcut_matches_unicode_normalization(s in "[\\x00-\\x7f]{0,40}") {
            use unicode_normalization::UnicodeNormalization;
            let slow: String = s.nfc().collect::<String>().to_lowercase().nfc().collect();
            proptest::prop_assert_eq!(nfc_lower(&s), slow);
        }
    }
}
