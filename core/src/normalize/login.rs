//! Login: trim, then folded to its identity (NFKC_Casefold, see `fold`).
//! Must be non-empty, free of control and invisible formatting characters,
//! and not mix scripts (see `mixes_scripts`). The only space allowed inside
//! is U+0020: the other space separators (no-break, ideographic, thin, ...)
//! look like it, or like nothing, and would let two logins that read alike
//! index apart.

use super::{
    fold, has_confusable_marks, has_hidden_characters, is_space_separator, legacy_fold, mixes_scripts, Fold, LookupKind,
};
use crate::error::{VaultError, VaultResult};

const MAX_LOGIN_CHARS: usize = 256;

pub fn normalize_login(value: &str, how: Fold) -> VaultResult<String> {
    let invalid = || VaultError::InvalidValue(LookupKind::Login);
    let trimmed = value.trim();
    if trimmed.is_empty()
        || trimmed.len() > 4 * MAX_LOGIN_CHARS
        || has_hidden_characters(trimmed)
        || has_other_spaces(trimmed)
    {
        return Err(invalid());
    }
    let login = match how {
        Fold::Identity => {
            let login = fold(trimmed);
            // A spacing accent folds to a space and a combining mark (`´`
            // to U+0020 U+0301): refused at either end, where a later trim
            // would change the identity; checked again as a whole.
            let refused = login.trim() != login
                || has_hidden_characters(&login)
                || has_other_spaces(&login)
                || mixes_scripts(&login)
                || has_confusable_marks(&login);
            if refused {
                return Err(invalid());
            }
            login
        }
        Fold::Legacy => legacy_fold(trimmed),
    };
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

    fn norm(value: &str) -> VaultResult<String> {
        normalize_login(value, Fold::Identity)
    }
    use proptest::prelude::*;

    /// Logins that must be accepted: each of one script (Latin, Greek,
    /// Cyrillic, Arabic or Han) beside digits, ASCII spaces and punctuation
    /// and symbols every script shares that have no compatibility form (a
    /// symbol such as `㎛` folds to letters, `μm`, and is that script's),
    /// with at least one letter.
    fn valid_login() -> impl Strategy<Value = String> {
        const SHARED: &str = "[0-9 _.@'!#$%&*+=?~€£¥©®°±§¶•–—‘’“”«»]";
        let of_script = |script: &str| {
            // Less modifier letters and Arabic's presentation forms: some
            // of each (U+037A, U+FE72) are a spacing mark, which folds to a
            // space and a combining mark, refused at either end.
            let letter =
                format!("[\\p{{scx={script}}}&&\\p{{L}}&&[^\\p{{Lm}}\\u{{FB50}}-\\u{{FDFF}}\\u{{FE70}}-\\u{{FEFF}}]]");
            let pattern = format!("({SHARED}|{letter}){{0,20}}{letter}[0-9 ._-]{{0,19}}");
            proptest::string::string_regex(&pattern).expect("a valid pattern")
        };
        prop_oneof![
            of_script("Latin"),
            of_script("Greek"),
            of_script("Cyrillic"),
            of_script("Arabic"),
            of_script("Han")
        ]
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(norm("  Alice ").unwrap(), "alice");
        assert_eq!(norm("ZOE\u{0308}").unwrap(), "zoë");
        assert_eq!(norm("'; DROP TABLE users; --").unwrap(), "'; drop table users; --");
        assert_eq!(norm("Jean Dupont").unwrap(), "jean dupont", "ASCII space inside");
        assert_eq!(norm("\u{00A0}bob\u{3000}").unwrap(), "bob", "spaces at the ends are trimmed");
    }

    #[test]
    fn look_alikes_fold_to_one_identity() {
        for (variant, identity) in [
            ("ａｄｍｉｎ", "admin"),
            ("ＡＤＭＩＮ", "admin"),
            ("𝐚𝐥𝐢𝐜𝐞", "alice"),
            ("𝔞𝔩𝔦𝔠𝔢", "alice"),
            ("ⓐⓓⓜⓘⓝ", "admin"),
            ("ﬁle", "file"),
            ("Straße", "strasse"),
            ("STRASSE", "strasse"),
            ("ΣΊΣΥΦΟΣ", "σίσυφοσ"),
            ("σίσυφος", "σίσυφοσ"),
            ("ᏣᎳᎩ", "ᏣᎳᎩ"),
            ("ꮳꮃꭹ", "ᏣᎳᎩ"),
            ("Ⅻ", "xii"),
        ] {
            assert_eq!(norm(variant).as_deref(), Ok(identity), "{variant:?}");
        }
    }

    #[test]
    fn mixed_scripts_are_refused() {
        for mixed in ["\u{0430}dmin", "p\u{0430}ypal", "admin\u{03BF}", "аdmin_админ", "abc\u{0661}", "\u{2C9F}ops"]
        {
            assert_eq!(norm(mixed), Err(VaultError::InvalidValue(LookupKind::Login)), "{mixed:?}");
        }
        for single in ["админ", "ελληνικά", "用户abc", "東京tokyoひらがな", "한국abc漢字", "jean-luc o'neil", "δ-42"]
        {
            assert!(norm(single).is_ok(), "{single:?}");
        }
    }

    #[test]
    fn marks_that_fake_a_letter_are_refused() {
        for bad in ["d\u{0335}avid", "o\u{0338}ystein", "jose\u{0301}\u{0301}", "\u{0301}admin"] {
            assert_eq!(norm(bad), Err(VaultError::InvalidValue(LookupKind::Login)), "{bad:?}");
        }
        assert_eq!(norm("ADM\u{0130}N").unwrap(), "admin");
        assert_eq!(norm("e\u{0323}\u{0301}ko\u{0323}\u{0301}").unwrap(), "ẹ́kọ́");
    }

    #[test]
    fn a_spacing_accent_at_an_end_is_refused() {
        // U+00B4 folds to U+0020 U+0301: at the start the identity would
        // begin with a space; inside, it is a space and an accent.
        assert!(norm("\u{00B4}admin").is_err());
        assert!(norm("\u{037A}\u{1D66}").is_err(), "U+037A folds to a space and U+0345");
        assert_eq!(norm("jean\u{00B4}s").unwrap(), "jean \u{0301}s");
    }

    #[test]
    fn the_legacy_fold_is_nfc_and_lowercase() {
        assert_eq!(normalize_login("ａｄｍｉｎ", Fold::Legacy).unwrap(), "ａｄｍｉｎ");
        assert_eq!(normalize_login("Straße", Fold::Legacy).unwrap(), "straße");
        assert_eq!(normalize_login("\u{0430}dmin", Fold::Legacy).unwrap(), "\u{0430}dmin");
        assert_eq!(normalize_login(" Alice ", Fold::Legacy).unwrap(), "alice");
    }

    #[test]
    fn rejections() {
        for bad in ["", "   ", "a\u{0007}b", "ad\u{200D}min", "\u{FEFF}root"] {
            assert!(norm(bad).is_err(), "{bad:?}");
        }
        assert!(norm(&"x".repeat(257)).is_err());
    }

    #[test]
    fn invisible_characters_are_refused() {
        for c in crate::normalize::INVISIBLE_SAMPLES {
            assert!(norm(&format!("ad{c}min")).is_err(), "U+{:04X}", c as u32);
            if !c.is_whitespace() {
                assert!(norm(&format!("admin{c}")).is_err(), "U+{:04X} at the end", c as u32);
            }
        }
        // Line and paragraph separators are whitespace: trimmed at the ends.
        assert_eq!(norm("admin\u{2028}").unwrap(), "admin");
    }

    #[test]
    fn spaces_other_than_ascii_inside_are_refused() {
        for c in ['\u{00A0}', '\u{2000}', '\u{2009}', '\u{202F}', '\u{205F}', '\u{3000}', '\u{1680}'] {
            assert!(norm(&format!("jean{c}dupont")).is_err(), "U+{:04X}", c as u32);
        }
    }

    proptest! {
        #[test]
        fn idempotent(s in valid_login()) {
            let once = norm(&s);
            prop_assert!(once.is_ok(), "{s:?}: {once:?}");
            let once = once.unwrap();
            prop_assert_eq!(norm(&once), Ok(once.clone()));
        }

        #[test]
        fn an_ignorable_or_format_character_anywhere_is_refused(
            s in valid_login(),
            c in prop::sample::select(crate::normalize::ignorable_and_format_chars()),
            at in any::<prop::sample::Index>(),
        ) {
            let mut login = s.clone();
            let boundaries: Vec<usize> = (0..=login.len()).filter(|&i| login.is_char_boundary(i)).collect();
            login.insert(boundaries[at.index(boundaries.len())], c);
            prop_assert!(norm(&login).is_err(), "{login:?}");
        }

        #[test]
        fn whatever_is_accepted_is_stable(s in "\\PC{0,40}") {
            if let Ok(once) = norm(&s) {
                prop_assert_eq!(norm(&once), Ok(once.clone()), "{:?}", s);
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = norm(&s);
        }
    }
}
