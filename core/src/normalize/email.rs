//! Email: trim, exactly one `@`, a non-empty local part, a domain with a
//! dot. The local part is folded to its identity (NFKC_Casefold, see
//! `fold`; a local part mixing scripts is refused), the domain is NFC,
//! lowercased and taken to its ASCII (punycode) form, so `ü.example` and
//! `xn--tda.example` index alike. No whitespace of any kind inside, and no
//! invisible or format character anywhere (see `has_hidden_characters`).

use super::{
    fold, has_confusable_marks, has_hidden_characters, legacy_fold, mixes_scripts, nfc_lower, Fold, LookupKind,
};
use crate::error::{VaultError, VaultResult};

const MAX_LOCAL_LEN: usize = 64;
const MAX_EMAIL_LEN: usize = 254;

fn invalid() -> VaultError {
    VaultError::InvalidValue(LookupKind::Email)
}

pub fn normalize_email(value: &str, how: Fold) -> VaultResult<String> {
    let trimmed = value.trim();
    if trimmed.len() > 4 * MAX_EMAIL_LEN || has_hidden_characters(trimmed) || trimmed.contains(char::is_whitespace) {
        return Err(invalid());
    }
    let (local, domain) = match trimmed.split_once('@') {
        Some((local, domain)) if !domain.contains('@') => (local, domain),
        _ => return Err(invalid()),
    };
    let mut email = match how {
        Fold::Identity => {
            let local = fold(local);
            // Compatibility forms can become an `@` (U+FE6B), a space or
            // another script's letter: the folded part is checked again.
            let refused = local.contains('@')
                || local.contains(char::is_whitespace)
                || has_hidden_characters(&local)
                || mixes_scripts(&local)
                || has_confusable_marks(&local);
            if refused {
                return Err(invalid());
            }
            local
        }
        Fold::Legacy => legacy_fold(local),
    };
    if email.is_empty() || exceeds_chars(&email, MAX_LOCAL_LEN) {
        return Err(invalid());
    }
    // IDNA's own mapping (UTS #46) lowercases the domain: a lowercase
    // taken before it would give a label-final `Σ` as `ς`, not `σ`.
    let ascii_domain = match how {
        Fold::Identity => idna::domain_to_ascii_strict(domain),
        Fold::Legacy => idna::domain_to_ascii_strict(&nfc_lower(domain)),
    }
    .map_err(|_| invalid())?;
    let labels_ok = ascii_domain.split('.').count() >= 2 && ascii_domain.split('.').all(|label| !label.is_empty());
    if !labels_ok {
        return Err(invalid());
    }
    email.push('@');
    email.push_str(&ascii_domain);
    if exceeds_chars(&email, MAX_EMAIL_LEN) {
        return Err(invalid());
    }
    Ok(email)
}

/// More than `max` characters (counted only when there are more than `max`
/// bytes: a character is at least one byte).
fn exceeds_chars(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().count() > max
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(value: &str) -> VaultResult<String> {
        normalize_email(value, Fold::Identity)
    }
    use proptest::prelude::*;

    #[test]
    fn canonical_forms() {
        assert_eq!(norm("  Alice@Example.COM ").unwrap(), "alice@example.com");
        assert_eq!(norm("a+tag@b.example").unwrap(), "a+tag@b.example");
        assert_eq!(norm("Zoë@Bücher.example").unwrap(), "zoë@xn--bcher-kva.example");
        assert_eq!(
            norm("zoe\u{0308}@bu\u{0308}cher.example").unwrap(),
            "zoë@xn--bcher-kva.example",
            "decomposed input reaches the same NFC form"
        );
        assert_eq!(norm("x@xn--bcher-kva.example").unwrap(), "x@xn--bcher-kva.example");
    }

    #[test]
    fn rejections() {
        for bad in [
            "",
            "   ",
            "no-at-sign",
            "@b.example",
            "a@",
            "a@b",
            "a@@b.example",
            "a@b@c.example",
            "a b@c.example",
            "a@b..example",
            "a@.b.example",
            "a@b.example.",
            "a\u{0000}@b.example",
            "a@b\u{200F}.example",
            "\u{202E}a@b.example",
            "a@b_c.example",
            "a@b c.example",
            "a\u{00A0}b@c.example",
            "a@b\u{3000}c.example",
            "a\u{2009}@b.example",
            "a@\u{202F}b.example",
        ] {
            assert_eq!(norm(bad), Err(invalid()), "{bad:?}");
        }
        let long_local = format!("{}@b.example", "a".repeat(65));
        assert!(norm(&long_local).is_err());
        let long = format!("a@{}.example", "b".repeat(300));
        assert!(norm(&long).is_err());
    }

    #[test]
    fn limits_count_characters_not_bytes() {
        // 64 two-byte characters: 128 bytes, within the 64-character limit.
        let local = "é".repeat(64);
        assert_eq!(norm(&format!("{local}@b.example")).unwrap(), format!("{local}@b.example"));
        assert!(norm(&format!("{}@b.example", "é".repeat(65))).is_err());
    }

    #[test]
    fn homoglyph_domain_is_a_different_address() {
        // Cyrillic 'а' (U+0430) looks like Latin 'a' but is another domain.
        let latin = norm("x@paypal.example").unwrap();
        let cyrillic = norm("x@p\u{0430}ypal.example").unwrap();
        assert_ne!(latin, cyrillic);
        assert!(cyrillic.contains("xn--"));
    }

    #[test]
    fn look_alike_local_parts_fold_to_one_address() {
        for variant in ["ａｌｉｃｅ@b.example", "𝐚𝐥𝐢𝐜𝐞@b.example", "ALICE@B.EXAMPLE", "ａｌｉｃｅ@ｂ.example"]
        {
            assert_eq!(norm(variant).unwrap(), "alice@b.example", "{variant:?}");
        }
        assert_eq!(norm("Straße@b.example").unwrap(), "strasse@b.example");
        // The domain keeps IDNA's own mapping: ß stays (`straße.de` and
        // `strasse.de` are two domains under IDNA 2008).
        assert_eq!(norm("a@straße.example").unwrap(), "a@xn--strae-oqa.example");
        assert_eq!(normalize_email("ａｌｉｃｅ@b.example", Fold::Legacy).unwrap(), "ａｌｉｃｅ@b.example");
    }

    #[test]
    fn the_domain_is_lowercased_by_idna_alone() {
        // UTS #46 maps Σ to σ wherever it stands; a final-sigma-aware
        // lowercase would make `ΑΣ-b` another label than `ασ-b`.
        assert_eq!(norm("x@ΑΣ-b.gr").unwrap(), norm("x@ασ-b.gr").unwrap());
        assert_eq!(norm("x@b.ΑΣ").unwrap(), norm("x@b.ασ").unwrap());
        assert_eq!(norm("x@B\u{00DC}CHER.Example").unwrap(), "x@xn--bcher-kva.example");
        assert_eq!(norm("x@bu\u{0308}cher.example").unwrap(), "x@xn--bcher-kva.example");
    }

    #[test]
    fn mixed_script_local_parts_are_refused() {
        for bad in ["\u{0430}lice@b.example", "alice\u{0435}@b.example", "a\u{FE6B}b@c.example", "a\u{FF20}b.example"] {
            assert_eq!(norm(bad), Err(invalid()), "{bad:?}");
        }
        assert_eq!(norm("алиса@b.example").unwrap(), "алиса@b.example");
    }

    #[test]
    fn sql_metacharacters_are_just_characters() {
        assert_eq!(norm("o'brien@b.example").unwrap(), "o'brien@b.example");
    }

    #[test]
    fn invisible_characters_are_refused() {
        for c in crate::normalize::INVISIBLE_SAMPLES {
            let mut emails = vec![format!("al{c}ice@b.example"), format!("alice@b{c}.example")];
            if !c.is_whitespace() {
                emails.push(format!("alice@b.example{c}"));
            }
            for email in emails {
                assert_eq!(norm(&email), Err(invalid()), "U+{:04X} in {email:?}", c as u32);
            }
        }
        // Line and paragraph separators are whitespace: trimmed at the ends.
        assert_eq!(norm("alice@b.example\u{2029}").unwrap(), "alice@b.example");
    }

    /// Addresses that must be accepted: ASCII or accented local parts, and
    /// domains of letter-digit labels (an inner hyphen at most: `ab--cd` and
    /// edge hyphens are not valid IDNA labels), some internationalized.
    fn valid_email() -> impl Strategy<Value = String> {
        (
            "[a-zA-Z0-9._%+-]{0,19}[a-zA-Z0-9éøßü]",
            "[a-zA-Z0-9]{1,12}(-[a-zA-Z0-9]{1,6})?|[a-z]{0,6}[üéñ][a-z]{1,6}",
            "[a-zA-Z]{2,6}",
        )
            .prop_map(|(local, label, tld)| format!("{local}@{label}.{tld}"))
    }

    proptest! {
        #[test]
        fn idempotent(input in valid_email()) {
            let once = norm(&input);
            prop_assert!(once.is_ok(), "{input:?}: {once:?}");
            let once = once.unwrap();
            prop_assert_eq!(norm(&once), Ok(once.clone()));
        }

        #[test]
        fn an_ignorable_or_format_character_anywhere_is_refused(
            input in valid_email(),
            c in prop::sample::select(crate::normalize::ignorable_and_format_chars()),
            at in any::<prop::sample::Index>(),
        ) {
            let mut email = input.clone();
            let boundaries: Vec<usize> = (0..=email.len()).filter(|&i| email.is_char_boundary(i)).collect();
            email.insert(boundaries[at.index(boundaries.len())], c);
            prop_assert_eq!(norm(&email), Err(invalid()), "{:?}", email);
        }

        #[test]
        fn whatever_is_accepted_is_stable(s in "\\PC{0,30}@\\PC{0,10}\\.[a-z]{2}") {
            if let Ok(once) = norm(&s) {
                prop_assert_eq!(norm(&once), Ok(once.clone()), "{:?}", s);
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,80}") {
            let _ = norm(&s);
        }

        #[test]
        fn case_and_space_insensitive(local in "[a-z0-9]{1,16}", domain in "[a-z0-9]{1,16}\\.[a-z]{2,6}") {
            let lower = norm(&format!("{local}@{domain}")).unwrap();
            let upper = norm(&format!("  {}@{} ", local.to_uppercase(), domain.to_uppercase())).unwrap();
            prop_assert_eq!(lower, upper);
        }
    }
}
