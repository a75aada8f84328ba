//! Login: trim, NFC, lowercase. Must be non-empty and free of control and
//! invisible formatting characters.

use super::{has_hidden_characters, nfc_lower, LookupKind};
use crate::error::{VaultError, VaultResult};

const MAX_LOGIN_CHARS: usize = 256;

pub fn normalize_login(value: &str) -> VaultResult<String> {
    let invalid = || VaultError::InvalidValue(LookupKind::Login);
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.len() > 4 * MAX_LOGIN_CHARS || has_hidden_characters(trimmed) {
        return Err(invalid());
    }
    let login = nfc_lower(trimmed);
    if login.chars().count() > MAX_LOGIN_CHARS {
        return Err(invalid());
    }
    Ok(login)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(normalize_login("  Alice ").unwrap(), "alice");
        assert_eq!(normalize_login("ZOE\u{0308}").unwrap(), "zoë");
        assert_eq!(normalize_login("'; DROP TABLE users; --").unwrap(), "'; drop table users; --");
    }

    #[test]
    fn rejections() {
        for bad in ["", "   ", "a\u{0007}b", "ad\u{200D}min", "\u{FEFF}root"] {
            assert!(normalize_login(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_login(&"x".repeat(257)).is_err());
    }

    proptest! {
        #[test]
        fn idempotent(s in "\\PC{1,40}") {
            if let Ok(once) = normalize_login(&s) {
                prop_assert_eq!(normalize_login(&once).unwrap(), once.clone());
            }
        }
    }
}
