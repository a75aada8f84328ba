//! Phone: libphonenumber's rules (the `phonenumber` crate) to E.164. A
//! number without a leading `+` is read in `pii_vault.default_region`.
//!
//! A number is accepted only when libphonenumber's metadata says it is a
//! valid number (`phonenumber::is_valid`): one that merely parses is not
//! enough, or a foreign national number would be stored as a nonexistent
//! number of the default region.
//!
//! What is read, and what is refused:
//!
//! - The text is a leading `+` (or `＋`), then decimal digits (any script's,
//!   by Unicode value) separated by spaces (Zs), dashes (Pd), `.`, `/` and
//!   parentheses. Every other character is refused, so that spellings of one
//!   number differ only in what carries no digit:
//!   - letters: vanity numbers ("1-800-FLOWERS") would be read through the
//!     keypad, and "x", "ext." introduce extensions;
//!   - extensions in any spelling ("x890", "ext. 12", ";ext=12", ",12",
//!     "#"): the parser would split them off and a store keyed on the main
//!     number would silently merge "(555) 123-4567 x890" and "… x891";
//!   - RFC 3966 `tel:` URIs, whose parameters carry meaning.
//! - With a `+`: an international number, valid in the country its calling
//!   code names. The digits are read as written first (E.164's meaning); when
//!   that is not a valid number, a national (trunk) prefix written after the
//!   calling code ("+44 (0)20 7946 0958", "+49 (0)30 …") is dropped by that
//!   country's rules, as libphonenumber does. Where the leading zero is part
//!   of the number (Italy, "+39 06 …") it is kept.
//! - Without a `+`, beginning with the default region's own international
//!   (IDD) prefix ("011 44 20 7946 0958" in US, "00 44 20 7946 0958" in DE):
//!   read the way a phone in that region dials it, as the international number
//!   after the prefix, which must then be valid in the country it names. A
//!   foreign national number is not read through another region's IDD: with
//!   region US, "020 7946 0958" is a (not valid) US number, and "01174960000"
//!   is "+7 4960000", which is not valid either; both are refused.
//! - Otherwise: a national number of the default region, valid under the
//!   region's calling code. Regions that share a calling code share its
//!   numbering plan and write their numbers alike, so with region US a
//!   Canadian "(604) 555-…" number is accepted as +1 604 ….
//!
//! The parser is never given the separators, only the `+` and the digits:
//! its RFC 3966 grammar takes the digits between a `+` and the first dash as
//! the calling code, so it refused "+55485397-5080" (calling code 55485397)
//! and "+662-60493458", and it reads ";890" and ",890" as extensions.

use std::str::FromStr;

use phonenumber::country;
use phonenumber::metadata::DATABASE;
use phonenumber::Mode;

use super::{has_hidden_characters, LookupKind};
use crate::error::{VaultError, VaultResult};

/// A region code accepted by the phone number library (e.g. `US`, `DE`).
pub type Region = country::Id;

const MAX_PHONE_LEN: usize = 64;
/// E.164: at most 15 digits. Fewer than 7 is refused even when valid: only
/// service numbers (such as Iran's 4-digit UANs) are that short.
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
    canonical_of_any_shape(trimmed, region)
}

fn invalid() -> VaultError {
    VaultError::InvalidValue(LookupKind::Phone)
}

/// The canonical form of a trimmed number written any accepted way. It must
/// read back as itself, or a lookup by the stored form would miss (the fuzzer
/// found "11.1.11" → "+111", which does not).
fn canonical_of_any_shape(trimmed: &str, region: Region) -> VaultResult<String> {
    let dialled = dialled(trimmed).ok_or_else(invalid)?;
    let e164 = e164_of(&dialled, region)?;
    // A number already in E.164 form ("+14155552671", "+44 20 7946 0958")
    // is its own reading: one parse.
    if e164 != dialled && e164_of(&e164, region)? != e164 {
        return Err(invalid());
    }
    Ok(e164)
}

/// `+` (when the number starts with one) and the ASCII digits of `text`, when
/// it holds at least one digit and nothing but digits and separators.
fn dialled(text: &str) -> Option<String> {
    if text.is_ascii() {
        // Every lookup by phone comes here: a byte scan for the usual text,
        // pinned to the char walk by a proptest.
        let (plus, rest) = match text.strip_prefix('+') {
            Some(rest) => ("+", rest),
            None => ("", text),
        };
        let mut out = String::with_capacity(text.len());
        out.push_str(plus);
        for b in rest.bytes() {
            match b {
                b'0'..=b'9' => out.push(b as char),
                b' ' | b'-' | b'.' | b'/' | b'(' | b')' => {}
                _ => return None,
            }
        }
        return (out.len() > plus.len()).then_some(out);
    }
    dialled_unicode(text)
}

fn dialled_unicode(text: &str) -> Option<String> {
    let (plus, rest) = match text.strip_prefix(['+', '\u{FF0B}']) {
        Some(rest) => ("+", rest),
        None => ("", text),
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(plus);
    for c in rest.chars() {
        if let Some(digit) = decimal_digit(c) {
            out.push(digit);
        } else if !is_separator(c) {
            return None;
        }
    }
    (out.len() > plus.len()).then_some(out)
}

/// The ASCII digit of a decimal digit (Nd) of any script. Unicode encodes
/// every decimal digit in a run of ten contiguous code points valued 0 to 9
/// (a stability guarantee), and runs that touch each begin at a zero, so a
/// digit's value is its distance from the start of its maximal Nd run,
/// modulo ten.
fn decimal_digit(c: char) -> Option<char> {
    use icu_properties::props::GeneralCategory;
    use icu_properties::CodePointMapData;
    if c.is_ascii_digit() {
        return Some(c);
    }
    let categories = CodePointMapData::<GeneralCategory>::new();
    if categories.get(c) != GeneralCategory::DecimalNumber {
        return None;
    }
    let mut start = c as u32;
    while start > 0 && categories.get32(start - 1) == GeneralCategory::DecimalNumber {
        start -= 1;
    }
    char::from_digit((c as u32 - start) % 10, 10)
}

/// Characters that only group digits: spaces, dashes (and the minus sign,
/// which typesetting puts in their place), dots, slashes and parentheses
/// (ASCII or fullwidth).
fn is_separator(c: char) -> bool {
    use icu_properties::props::GeneralCategory;
    use icu_properties::CodePointMapData;
    matches!(c, '.' | '/' | '(' | ')' | '\u{2212}' | '\u{FF0E}' | '\u{FF0F}' | '\u{FF08}' | '\u{FF09}')
        || matches!(
            CodePointMapData::<GeneralCategory>::new().get(c),
            GeneralCategory::SpaceSeparator | GeneralCategory::DashPunctuation
        )
}

/// The E.164 form of a valid number given as `dialled` ("+digits", or
/// digits read in `region`), with 7 to 15 digits.
///
/// Readings, in order (the first valid one is the number):
///
/// - international: as written, then with a national prefix after the
///   calling code dropped by that country's rules ("+44 (0)20 …"); the
///   parser is given no region for the latter, so the rules are those of the
///   number's country, not the default region's;
/// - national: with the region's national prefix dropped once, then as
///   the parser reads it (carrier codes, prefix rewrites, the region's
///   calling code written without `+`), then as written.
///
/// The readings as written make up for the parser (phonenumber 0.3), which
/// drops a national prefix from any number that starts with its digits, even
/// when what remains is not a possible number, and from a national number
/// twice: "+7 812 123-45-67" and "8 (812) 123-45-67" (St Petersburg) both
/// lost the 8 of 812. libphonenumber keeps the digits when dropping them
/// leaves no possible number, as these readings do.
fn e164_of(dialled: &str, region: Region) -> VaultResult<String> {
    // The parser is third-party code run on attacker-chosen input: a panic in
    // it must become a rejected value, not a crashed statement.
    let e164 = std::panic::catch_unwind(|| match international_part(dialled, region) {
        Some(international) => {
            first_valid([&|| as_written(&international), &|| phonenumber::parse(None, international.as_ref()).ok()])
        }
        None => {
            let meta = DATABASE.by_id(region.as_ref())?;
            let trunk_stripped =
                meta.national_prefix().and_then(|prefix| dialled.strip_prefix(prefix)).filter(|rest| !rest.is_empty());
            first_valid([
                &|| as_written(&format!("+{}{}", meta.country_code(), trunk_stripped?)),
                &|| {
                    let parsed = phonenumber::parse(Some(region), dialled).ok()?;
                    // The IDD was looked for above, with the parser's own rule;
                    // a national reading has the region's calling code.
                    let national = matches!(parsed.code().source(), country::Source::Default | country::Source::Number);
                    national.then_some(parsed)
                },
                &|| as_written(&format!("+{}{}", meta.country_code(), dialled)),
            ])
        }
    })
    .ok()
    .flatten()
    .ok_or_else(invalid)?;
    let digits = e164.len().saturating_sub(1);
    if !e164.starts_with('+') || !(MIN_E164_DIGITS..=MAX_E164_DIGITS).contains(&digits) {
        return Err(invalid());
    }
    Ok(e164)
}

/// The E.164 form of the first reading that is a valid number without an
/// extension.
fn first_valid<const N: usize>(readings: [&dyn Fn() -> Option<phonenumber::PhoneNumber>; N]) -> Option<String> {
    let valid = readings
        .iter()
        .filter_map(|reading| reading())
        .find(|number| number.extension().is_none() && phonenumber::is_valid(number))?;
    Some(phonenumber::format(&valid).mode(Mode::E164).to_string())
}

/// The international number in `dialled`: itself when it starts with `+`;
/// `+` and what follows the region's IDD prefix when it starts with that
/// prefix followed by anything but `0` (the rule libphonenumber applies); no
/// international number otherwise.
fn international_part(dialled: &str, region: Region) -> Option<std::borrow::Cow<'_, str>> {
    if dialled.starts_with('+') {
        return Some(dialled.into());
    }
    let idd = DATABASE.by_id(region.as_ref())?.international_prefix()?;
    let found = idd.find(dialled).filter(|m| m.start() == 0 && m.end() > 0)?;
    let rest = &dialled[found.end()..];
    if rest.is_empty() || rest.starts_with('0') {
        return None;
    }
    Some(format!("+{rest}").into())
}

/// A region whose metadata has no national (trunk) prefix rules, and whose
/// IDD prefix starts with `0` (no calling code does), so the parser strips
/// nothing from a `+` number read in it (a test pins both).
const AS_WRITTEN_REGION: Region = country::IT;

/// `+digits` read as written: the calling code, then the national number
/// exactly as the digits that follow it.
///
/// The parser applies the given region's national prefix rules to a `+`
/// number (libphonenumber applies those of the number's own country), so a
/// `+` number parsed in a region without such rules keeps its national number
/// as written; the comparison with the digits makes sure that it did.
fn as_written(international: &str) -> Option<phonenumber::PhoneNumber> {
    let parsed = phonenumber::parse(Some(AS_WRITTEN_REGION), international).ok()?;
    let code = parsed.code().value().to_string();
    let national = international.strip_prefix('+')?.strip_prefix(code.as_str())?;
    (parsed.national().to_string() == national).then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonenumber::metadata::Metadata;
    use phonenumber::Type;
    use proptest::prelude::*;

    fn us() -> Region {
        parse_region("US").unwrap()
    }

    fn region(code: &str) -> Region {
        parse_region(code).unwrap()
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(normalize_phone("+1 415-555-2671", us()).unwrap(), "+14155552671");
        assert_eq!(normalize_phone("(415) 555-2671", us()).unwrap(), "+14155552671");
        assert_eq!(normalize_phone("+1 (415) 555-2671", us()).unwrap(), "+14155552671");
        assert_eq!(normalize_phone("+44 20 7946 0958", us()).unwrap(), "+442079460958");
        assert_eq!(normalize_phone(" +14155552671 ", us()).unwrap(), "+14155552671", "already canonical");
        assert_eq!(normalize_phone("030 123456", region("de")).unwrap(), "+4930123456");
        assert_eq!(normalize_phone("+49 30 123456", us()).unwrap(), "+4930123456");
        assert_eq!(normalize_phone("090-1234-5678", region("JP")).unwrap(), "+819012345678");
        assert_eq!(
            normalize_phone("＋８１ ９０−１２３４−５６７８", us()).unwrap(),
            "+819012345678",
            "fullwidth, minus signs"
        );
        assert_eq!(
            normalize_phone("（０９０）１２３４－５６７８", region("JP")).unwrap(),
            "+819012345678",
            "fullwidth"
        );
        assert_eq!(normalize_phone("+٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨", us()).unwrap(), "+442079460958", "Arabic-Indic digits");
        assert_eq!(normalize_phone("+44\u{00A0}20\u{202F}7946\u{2013}0958", us()).unwrap(), "+442079460958");
    }

    #[test]
    fn the_national_trunk_prefix_after_the_calling_code_is_dropped_where_the_country_has_one() {
        for region in ["US", "GB", "DE", "JP"] {
            let region = parse_region(region).unwrap();
            assert_eq!(normalize_phone("+44 (0)20 7946 0958", region).unwrap(), "+442079460958");
            assert_eq!(normalize_phone("+49 (0)30 123456", region).unwrap(), "+4930123456");
            // Italy's leading zero is part of the number, whatever the region.
            assert_eq!(normalize_phone("+39 06 6982 0000", region).unwrap(), "+390669820000");
        }
    }

    #[test]
    fn brazil() {
        // The RFC 3966 grammar read "+55485397-5080" as calling code 55485397.
        for text in ["+55485397-5080", "+55 48 5397-5080", "+55 (48) 5397-5080", "+554853975080"] {
            assert_eq!(normalize_phone(text, us()).unwrap(), "+554853975080", "{text:?}");
        }
        assert_eq!(normalize_phone("(48) 5397-5080", region("BR")).unwrap(), "+554853975080");
        assert_eq!(normalize_phone("0 48 5397-5080", region("BR")).unwrap(), "+554853975080");
    }

    #[test]
    fn idd_prefixes_of_the_default_region_are_read() {
        assert_eq!(normalize_phone("011 44 20 7946 0958", us()).unwrap(), "+442079460958");
        assert_eq!(normalize_phone("00 44 20 7946 0958", region("DE")).unwrap(), "+442079460958");
        assert_eq!(normalize_phone("0044 (0)20 7946 0958", region("DE")).unwrap(), "+442079460958");
        assert_eq!(normalize_phone("011 44 (0)20 7946 0958", us()).unwrap(), "+442079460958");
        assert_eq!(normalize_phone("00 39 06 6982 0000", region("DE")).unwrap(), "+390669820000");
        // Another region's IDD is not an IDD here.
        assert!(normalize_phone("00 44 20 7946 0958", us()).is_err());
    }

    #[test]
    fn foreign_national_numbers_are_refused() {
        for (text, region) in [
            ("020 7946 0958", "US"),
            ("01174960000", "US"),
            ("0117 496 0000", "US"),
            ("090-1234-5678", "US"),
            ("09012345678", "US"),
            ("030 123456", "US"),
            ("(415) 555-2671", "GB"),
            ("0121 234 5678", "US"),
            ("07400 123456", "US"),
            ("0 801 23 45 67", "US"),
            ("0412 345 678", "US"),
            ("8 (912) 345-67-89", "US"),
        ] {
            assert!(normalize_phone(text, parse_region(region).unwrap()).is_err(), "{text:?} in {region}");
        }
    }

    #[test]
    fn extensions_are_refused() {
        for text in [
            "(555) 123-4567 x890",
            "x891",
            "(415) 555-2671 x890",
            "415-555-2671 ext. 12",
            "415-555-2671 ext 12",
            "415-555-2671 extension 12",
            "+1-415-555-2671;ext=12",
            "tel:+1-415-555-2671;ext=12",
            "415-555-2671,12",
            "415-555-2671;12",
            "415-555-2671 #12",
            "415 555 2671#",
            "415-555-2671~12",
            "+44 20 7946 0958 x12",
            "+442079460958 ext. 3",
        ] {
            assert!(normalize_phone(text, us()).is_err(), "{text:?}");
        }
        assert_ne!(normalize_phone("(415) 555-2671 x890", us()), normalize_phone("(415) 555-2671", us()));
    }

    #[test]
    fn letters_are_refused() {
        for text in
            ["12345abc", "1-800-FLOWERS", "1-800-flowers", "+1 800 356 9377a", "tel:+14155552671", "４１５ABC２６７１"]
        {
            assert!(normalize_phone(text, us()).is_err(), "{text:?}");
        }
        assert_eq!(normalize_phone("1-800-356-9377", us()).unwrap(), "+18003569377", "the same number in digits");
    }

    #[test]
    fn rejections() {
        for bad in [
            "",
            "  ",
            "abc",
            "+",
            "415\u{200F}5552671",
            "415\n5552671",
            "'; DROP TABLE x; --",
            "11.1.11",
            "+111",
            "111111331-",
            "+1 555 123 4567",
            "(555) 123-4567",
            "+44 20 7946 095",
            "+49 1234",
            "+800 123456789",
            "++14155552671",
            "+1 415 555 2671+",
            "415*555*2671",
            "+0044 20 7946 0958",
            "()",
            "- -",
        ] {
            assert!(normalize_phone(bad, us()).is_err(), "{bad:?}");
        }
        assert!(normalize_phone(&"1".repeat(100), us()).is_err());
    }

    #[test]
    fn the_as_written_region_strips_nothing() {
        let meta = DATABASE.by_id(AS_WRITTEN_REGION.as_ref()).unwrap();
        assert_eq!(meta.national_prefix(), None);
        assert!(meta.national_prefix_for_parsing().is_none());
        assert!(meta.national_prefix_transform_rule().is_none());
        assert!(meta.international_prefix().unwrap().to_string().starts_with('0'));
        // The trunk prefix of Russia (8) and the leading zero of Italy stay.
        assert_eq!(as_written("+78121234567").map(|n| n.national().to_string()).as_deref(), Some("8121234567"));
        assert_eq!(as_written("+390669820000").map(|n| n.national().to_string()).as_deref(), Some("0669820000"));
    }

    #[test]
    fn russian_numbers_that_start_with_the_trunk_prefix_digit() {
        let ru = region("RU");
        for text in ["8 (812) 123-45-67", "812 123-45-67", "+7 812 123-45-67", "+78121234567", "810 7 812 123 45 67"] {
            assert_eq!(normalize_phone(text, ru).as_deref(), Ok("+78121234567"), "{text:?}");
        }
        for text in ["8 (800) 123-45-67", "+7 800 123-45-67"] {
            assert_eq!(normalize_phone(text, ru).as_deref(), Ok("+78001234567"), "{text:?}");
        }
    }

    #[test]
    fn regions() {
        assert!(parse_region("US").is_some());
        assert!(parse_region("gb").is_some());
        assert!(parse_region("XX").is_none());
        assert!(parse_region("").is_none());
    }

    #[test]
    fn decimal_digits_of_every_script_have_their_value() {
        use icu_properties::props::GeneralCategory;
        use icu_properties::CodePointMapData;
        // The rule `decimal_digit` relies on: every maximal run of Nd code
        // points is whole runs of ten.
        let runs = CodePointMapData::<GeneralCategory>::new().iter_ranges_for_value(GeneralCategory::DecimalNumber);
        for run in runs {
            assert_eq!((run.end() - run.start() + 1) % 10, 0, "{run:X?}");
        }
        for (c, digit) in
            [('٣', '3'), ('۳', '3'), ('३', '3'), ('３', '3'), ('๙', '9'), ('\u{1D7CE}', '0'), ('\u{1D7FF}', '9')]
        {
            assert_eq!(decimal_digit(c), Some(digit), "U+{:04X}", c as u32);
        }
        for c in ['a', '²', '½', 'Ⅻ', '①', ' '] {
            assert_eq!(decimal_digit(c), None, "U+{:04X}", c as u32);
        }
    }

    /// One number per row: its region, its E.164 form, and how it is written
    /// nationally and internationally; every row is also tried with its
    /// spaces turned into dashes, dots and nothing.
    const TABLE: &[(&str, &str, &str, &str)] = &[
        // Region, E.164, national, international.
        ("US", "+12015550123", "(201) 555-0123", "+1 201-555-0123"),
        ("US", "+18002345678", "1 (800) 234-5678", "+1 800-234-5678"),
        ("CA", "+15062345678", "(506) 234-5678", "+1 506-234-5678"),
        ("GB", "+441212345678", "0121 234 5678", "+44 121 234 5678"),
        ("GB", "+447400123456", "07400 123456", "+44 7400 123456"),
        ("GB", "+448001234567", "0800 123 4567", "+44 800 123 4567"),
        ("DE", "+4930123456", "030 123456", "+49 30 123456"),
        ("DE", "+4915123456789", "01512 3456789", "+49 1512 3456789"),
        ("DE", "+498001234567890", "0800 1234567890", "+49 800 1234567890"),
        ("FR", "+33123456789", "01 23 45 67 89", "+33 1 23 45 67 89"),
        ("FR", "+33612345678", "06 12 34 56 78", "+33 6 12 34 56 78"),
        ("FR", "+33801234567", "08 01 23 45 67", "+33 8 01 23 45 67"),
        ("IT", "+390212345678", "02 1234 5678", "+39 02 1234 5678"),
        ("IT", "+393123456789", "312 345 6789", "+39 312 345 6789"),
        ("IT", "+39800123456", "800 123 456", "+39 800 123 456"),
        ("ES", "+34810123456", "810 12 34 56", "+34 810 12 34 56"),
        ("ES", "+34612345678", "612 34 56 78", "+34 612 34 56 78"),
        ("ES", "+34800123456", "800 12 34 56", "+34 800 12 34 56"),
        ("NL", "+31101234567", "010 123 4567", "+31 10 123 4567"),
        ("NL", "+31612345678", "06 12345678", "+31 6 12345678"),
        ("NL", "+318001234", "0800 1234", "+31 800 1234"),
        ("CH", "+41212345678", "021 234 56 78", "+41 21 234 56 78"),
        ("CH", "+41781234567", "078 123 45 67", "+41 78 123 45 67"),
        ("CH", "+41800123456", "0800 123 456", "+41 800 123 456"),
        ("SE", "+468123456", "08-12 34 56", "+46 8 12 34 56"),
        ("SE", "+46701234567", "070-123 45 67", "+46 70 123 45 67"),
        ("PL", "+48123456789", "12 345 67 89", "+48 12 345 67 89"),
        ("PL", "+48512345678", "512 345 678", "+48 512 345 678"),
        ("BR", "+551123456789", "(11) 2345-6789", "+55 11 2345-6789"),
        ("BR", "+5511961234567", "(11) 96123-4567", "+55 11 96123-4567"),
        ("BR", "+558001234567", "0800 123 4567", "+55 800 123 4567"),
        ("MX", "+522001234567", "200 123 4567", "+52 200 123 4567"),
        ("MX", "+528001234567", "800 123 4567", "+52 800 123 4567"),
        ("IN", "+917410410123", "074104 10123", "+91 74104 10123"),
        ("IN", "+918123456789", "081234 56789", "+91 81234 56789"),
        ("IN", "+911800123456", "1800 123 456", "+91 1800 123 456"),
        ("CN", "+861012345678", "010 1234 5678", "+86 10 1234 5678"),
        ("CN", "+8613123456789", "131 2345 6789", "+86 131 2345 6789"),
        ("JP", "+81312345678", "03-1234-5678", "+81 3-1234-5678"),
        ("JP", "+819012345678", "090-1234-5678", "+81 90-1234-5678"),
        ("JP", "+81120123456", "0120-123-456", "+81 120-123-456"),
        ("KR", "+8222123456", "02-212-3456", "+82 2-212-3456"),
        ("KR", "+821020000000", "010-2000-0000", "+82 10-2000-0000"),
        ("AU", "+61212345678", "(02) 1234 5678", "+61 2 1234 5678"),
        ("AU", "+61412345678", "0412 345 678", "+61 412 345 678"),
        ("AU", "+611800123456", "1800 123 456", "+61 1800 123 456"),
        ("ZA", "+27101234567", "010 123 4567", "+27 10 123 4567"),
        ("ZA", "+27711234567", "071 123 4567", "+27 71 123 4567"),
        ("ZA", "+27801234567", "080 123 4567", "+27 80 123 4567"),
        ("RU", "+73011234567", "8 (301) 123-45-67", "+7 301 123-45-67"),
        ("RU", "+79123456789", "8 (912) 345-67-89", "+7 912 345-67-89"),
        ("RU", "+78001234567", "8 (800) 123-45-67", "+7 800 123-45-67"),
        ("NG", "+2348031234567", "0803 123 4567", "+234 803 123 4567"),
    ];

    fn spellings(text: &str) -> Vec<String> {
        let mut forms = vec![text.to_string()];
        for separator in ["-", ".", "", "/"] {
            forms.push(text.replace([' ', '-'], separator));
        }
        forms
    }

    #[test]
    fn a_table_of_valid_numbers() {
        let mut countries: Vec<&str> = TABLE.iter().map(|row| row.0).collect();
        countries.dedup();
        assert!(countries.len() >= 15, "{countries:?}");
        for &(code, e164, national, international) in TABLE {
            let home = region(code);
            assert_eq!(normalize_phone(e164, us()).as_deref(), Ok(e164), "{e164} as given");
            for text in spellings(national) {
                assert_eq!(normalize_phone(&text, home).as_deref(), Ok(e164), "{text:?} in {code}");
            }
            for text in spellings(international) {
                for region in [home, us(), region("DE"), region("JP")] {
                    assert_eq!(normalize_phone(&text, region).as_deref(), Ok(e164), "{text:?} in {region:?}");
                }
            }
        }
    }

    /// The number types whose example is a number a person could have.
    const TYPES: [Type; 10] = [
        Type::FixedLine,
        Type::Mobile,
        Type::TollFree,
        Type::PremiumRate,
        Type::SharedCost,
        Type::PersonalNumber,
        Type::Voip,
        Type::Pager,
        Type::Uan,
        Type::Voicemail,
    ];

    /// Example numbers that libphonenumber's own metadata does not read back
    /// through this crate's parser, by region and type, with the reason.
    const EXAMPLE_EXCEPTIONS: &[(&str, Type, &str)] =
        &[("IR", Type::Uan, "+98 9601 has 6 digits, fewer than the MIN_E164_DIGITS this vault accepts")];

    /// Every example number of libphonenumber's metadata: region (`None` for
    /// the non-geographic calling codes), type, E.164 form (built from the
    /// metadata's digits, not by the parser) and the number.
    fn example_numbers() -> Vec<(Option<Region>, Type, String, phonenumber::PhoneNumber)> {
        let mut examples = Vec::new();
        for meta in DATABASE.iter() {
            let region = parse_region(meta.id());
            for kind in TYPES {
                let Some(example) = example_of(meta, kind) else { continue };
                let e164 = format!("+{}{}", meta.country_code(), example);
                let number = as_written(&e164).unwrap_or_else(|| panic!("{e164} does not parse as written"));
                examples.push((region, kind, e164, number));
            }
        }
        examples
    }

    /// The metadata's name for a region; "001" for non-geographic codes.
    fn region_id(region: &Option<Region>) -> &str {
        region.as_ref().map_or("001", |r| r.as_ref())
    }

    fn example_of(meta: &Metadata, kind: Type) -> Option<&str> {
        meta.descriptors().get(kind)?.example()
    }

    #[test]
    fn every_example_number_of_every_region_is_accepted_in_each_form() {
        let examples = example_numbers();
        assert!(examples.len() > 1000, "{}", examples.len());
        let mut failures = Vec::new();
        for (region, kind, e164, number) in &examples {
            assert_eq!(&phonenumber::format(number).mode(Mode::E164).to_string(), e164);
            let international = phonenumber::format(number).mode(Mode::International).to_string();
            let id = region_id(region);
            if EXAMPLE_EXCEPTIONS.iter().any(|&(r, k, _)| r == id && k == *kind) {
                continue;
            }
            let mut forms = vec![(e164.clone(), us()), (international.clone(), us())];
            let e164 = e164.as_str();
            if let Some(region) = region {
                let national = phonenumber::format(number).mode(Mode::National).to_string();
                forms.push((national, *region));
                forms.push((international, *region));
            }
            for (text, region) in forms {
                if normalize_phone(&text, region).as_deref() != Ok(e164) {
                    failures
                        .push(format!("{id} {kind:?} {text:?} -> {:?} (want {e164})", normalize_phone(&text, region)));
                }
            }
        }
        assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    }

    fn valid_spelling() -> impl Strategy<Value = (String, Region, String)> {
        let examples: Vec<(String, Region, String)> = example_numbers()
            .into_iter()
            .filter_map(|(region, kind, e164, number)| {
                let id = region_id(&region);
                if EXAMPLE_EXCEPTIONS.iter().any(|&(r, k, _)| r == id && k == kind) {
                    return None;
                }
                let national = phonenumber::format(&number).mode(Mode::National).to_string();
                Some((national, region?, e164))
            })
            .collect();
        (prop::sample::select(examples), prop::sample::select(vec![" ", "-", ".", "", "  "]))
            .prop_map(|((national, region, e164), separator)| (national.replace(' ', separator), region, e164))
    }

    proptest! {
        #[test]
        fn idempotent((text, region, e164) in valid_spelling()) {
            let once = normalize_phone(&text, region);
            prop_assert_eq!(once.as_deref(), Ok(e164.as_str()), "{:?} in {:?}", text, region);
            let once = once.unwrap();
            prop_assert_eq!(normalize_phone(&once, region), Ok(once.clone()));
            prop_assert_eq!(normalize_phone(&once, us()), Ok(once.clone()));
        }

        #[test]
        fn idempotent_for_us_numbers(
            area in prop::sample::select(vec!["201", "212", "305", "312", "415", "617", "650", "713", "907"]),
            exchange in "[2-9](1[02-9]|[02-9][0-9])",
            line in "[0-9]{4}",
            shape in 0..4usize,
        ) {
            // Existing area codes with any exchange but N11 and any line.
            let text = match shape {
                0 => format!("({area}) {exchange}-{line}"),
                1 => format!("{area}.{exchange}.{line}"),
                2 => format!("1 {area} {exchange} {line}"),
                _ => format!("+1 {area}-{exchange}-{line}"),
            };
            let once = normalize_phone(&text, us());
            let e164 = format!("+1{area}{exchange}{line}");
            prop_assert_eq!(once.as_deref(), Ok(e164.as_str()), "{:?}", text);
            let once = once.unwrap();
            prop_assert_eq!(normalize_phone(&once, us()), Ok(once.clone()));
        }

        // Separators carry no digit: a number reads the same with any of
        // them, or with none (the parser's RFC 3966 grammar did not:
        // "+662-60493458" was refused, "+66260493458" was not).
        #[test]
        fn separators_do_not_change_the_reading(
            number in prop_oneof![
                "\\+[1-9][0-9]{0,2} ?[0-9]{2,4} ?[0-9]{2,4} ?[0-9]{0,4}",
                "\\+[0-9 ]{0,20}",
                "\\+?[0-9 .()/-]{0,20}",
            ],
            region in prop::sample::select(vec!["US", "GB", "DE", "FR", "IN", "BR"]),
        ) {
            let region = parse_region(region).unwrap();
            let bare: String = number.chars().filter(|c| *c == '+' || c.is_ascii_digit()).collect();
            prop_assert_eq!(normalize_phone(&number, region), normalize_phone(&bare, region));
        }

        // The ASCII byte scan gives what the Unicode char walk gives.
        #[test]
        fn the_ascii_scan_matches_the_char_walk(text in "[+0-9 .()/a-z#;,*x-]{0,24}") {
            prop_assert_eq!(dialled(&text), dialled_unicode(&text));
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = normalize_phone(&s, us());
        }

        #[test]
        fn never_panics_in_any_region(s in "[+0-9 .()-]{0,30}", region in prop::sample::select(region_ids())) {
            let _ = normalize_phone(&s, region);
        }
    }

    fn region_ids() -> Vec<Region> {
        DATABASE.iter().filter_map(|meta| parse_region(meta.id())).collect()
    }
}
