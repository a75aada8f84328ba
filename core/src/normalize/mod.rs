//! Normalization of lookup values before they are blind-indexed.
//!
//! A store and a later lookup must produce the same bytes for the same
//! person, so every indexed kind has exactly one canonical form. A value
//! that has no canonical form is rejected, never silently left unindexed.

mod email;
mod login;
mod phone;
mod token;

use email::normalize_email;
use login::normalize_login;
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

/// The kinds that are top-level record fields with a blind index: every
/// lookup kind but the token, which is the record's key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexedKind {
    Email,
    Phone,
    Login,
}

impl IndexedKind {
    pub const ALL: [IndexedKind; 3] = [IndexedKind::Email, IndexedKind::Phone, IndexedKind::Login];

    pub fn as_str(self) -> &'static str {
        LookupKind::from(self).as_str()
    }
}

impl From<IndexedKind> for LookupKind {
    fn from(kind: IndexedKind) -> LookupKind {
        match kind {
            IndexedKind::Email => LookupKind::Email,
            IndexedKind::Phone => LookupKind::Phone,
            IndexedKind::Login => LookupKind::Login,
        }
    }
}

impl std::fmt::Display for IndexedKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LookupKind {
    /// The blind-indexed kind this is; None for the token.
    pub fn indexed(self) -> Option<IndexedKind> {
        match self {
            LookupKind::Email => Some(IndexedKind::Email),
            LookupKind::Phone => Some(IndexedKind::Phone),
            LookupKind::Login => Some(IndexedKind::Login),
            LookupKind::Token => None,
        }
    }

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

/// How an email's local part and a login are folded to one identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// From 0.3.1: NFKC_Casefold (`fold`), and mixed scripts refused.
    Identity,
    /// Before 0.3.1: NFC and lowercase; what older records are indexed under.
    Legacy,
}

/// Normalizes `value` as a `kind`.
pub fn normalize(kind: IndexedKind, value: &str, region: Region) -> VaultResult<String> {
    normalize_as(kind, value, region, Fold::Identity)
}

/// `normalize` under a given fold (phones have one form only).
pub fn normalize_as(kind: IndexedKind, value: &str, region: Region, fold: Fold) -> VaultResult<String> {
    match kind {
        IndexedKind::Email => normalize_email(value, fold),
        IndexedKind::Phone => normalize_phone(value, region),
        IndexedKind::Login => normalize_login(value, fold),
    }
}

/// Characters no identifier may contain because they are invisible or
/// alter how the text around them renders, so two identifiers that look
/// alike could index apart (or a stored value could hide text):
///
/// - every Default_Ignorable_Code_Point (zero-width characters, bidi marks,
///   variation selectors, tags, the Hangul fillers, the combining grapheme
///   joiner, ...): Unicode's own list of what renders as nothing;
/// - every character of the Other categories: controls (Cc), format
///   characters (Cf, e.g. U+FFF9 and U+1D173), surrogates (Cs), private use
///   (Co, no agreed rendering) and unassigned code points (Cn, whose meaning
///   a later Unicode version may fix);
/// - line and paragraph separators (Zl, Zp);
/// - the symbols whose glyph is an empty cell (`BLANK_SYMBOLS`).
///
/// Both properties come from `icu_properties`' compiled Unicode data, so the
/// check follows Unicode rather than a list that ages.
/// Text a person can read as given: not blank, no control character, and
/// no invisible or format one (two texts that look alike are not two
/// texts). For names and purposes the vault stores and shows as given.
pub fn is_visible_text(s: &str) -> bool {
    !s.trim().is_empty() && !s.chars().any(char::is_control) && !has_hidden_characters(s)
}

pub(crate) fn has_hidden_characters(s: &str) -> bool {
    if s.is_ascii() {
        // The only hidden ASCII characters are the controls (a byte scan
        // instead of a char walk: this runs on every lookup).
        return s.bytes().any(|b| b.is_ascii_control());
    }
    s.chars().any(is_hidden)
}

/// Symbols (So) that are assigned, not default-ignorable, and drawn as an
/// empty cell: the blank braille pattern and the null notehead.
const BLANK_SYMBOLS: [char; 2] = ['\u{2800}', '\u{1D159}'];

fn is_hidden(c: char) -> bool {
    use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory, GeneralCategoryGroup};
    use icu_properties::{CodePointMapData, CodePointSetData};
    let category = CodePointMapData::<GeneralCategory>::new().get(c);
    GeneralCategoryGroup::Other.contains(category)
        || matches!(category, GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator)
        || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || BLANK_SYMBOLS.contains(&c)
}

/// Whether `c` is a space separator (Zs): U+0020 and the no-break, ideographic,
/// em, thin, ... spaces, which look like U+0020 or like nothing.
pub(crate) fn is_space_separator(c: char) -> bool {
    use icu_properties::props::GeneralCategory;
    use icu_properties::CodePointMapData;
    CodePointMapData::<GeneralCategory>::new().get(c) == GeneralCategory::SpaceSeparator
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

/// The identity of a login or an email's local part: Unicode NFKC_Casefold,
/// so width variants (`ａｄｍｉｎ`), mathematical letters (`𝐚𝐥𝐢𝐜𝐞`),
/// ligatures and every case form of a letter (`ß`/`ss`, `ς`/`σ`, Cherokee)
/// fold to one form. Computed as NFKC, full case folding, NFKC again until
/// stable (Unicode's toNFKC_Casefold less the removal of default-ignorable
/// code points, which are refused before this runs); ICU4X's compiled
/// data, so the fold follows Unicode. ASCII folds to its lowercase.
///
/// Two releases fold differently (`legacy_fold`): records stored before
/// 0.3.1 are re-indexed by the upgrade (src/api/refold.rs).
pub(crate) fn fold(s: &str) -> String {
    use icu_casemap::CaseMapper;
    use icu_normalizer::ComposingNormalizerBorrowed;
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let casefold = CaseMapper::new();
    let mut folded = nfkc.normalize(s).into_owned();
    // One round is stable for every character Unicode has (a unit test
    // checks all of them); the bound only keeps a future table honest.
    for _ in 0..4 {
        let again = drop_redundant_dots(&nfkc.normalize(&casefold.fold_string(&folded)));
        if again == folded {
            break;
        }
        folded = again;
    }
    folded
}

/// Drops a COMBINING DOT ABOVE right after a soft-dotted letter (`i`, `j`,
/// `į`, ... by Unicode's Soft_Dotted property): it draws nothing more than
/// the letter's own dot. Case folding gives `İ` as `i` and that dot, so
/// `ADMİN` is `admin`, as it reads (the Turkish fold), and `i` with a dot
/// typed after it is `i` too.
fn drop_redundant_dots(s: &str) -> String {
    use icu_properties::props::SoftDotted;
    use icu_properties::CodePointSetData;
    let soft_dotted = CodePointSetData::new::<SoftDotted>();
    let mut out = String::with_capacity(s.len());
    let mut after_soft_dotted = false;
    for c in s.chars() {
        if !(c == '\u{0307}' && after_soft_dotted) {
            out.push(c);
            after_soft_dotted = soft_dotted.contains(c);
        }
    }
    out
}

/// Most nonspacing marks in a row (UTS #39 section 5.4 suggests four).
const MAX_MARKS_IN_A_ROW: usize = 4;

/// Combining marks that make a folded identifier look like another one
/// (UTS #39 section 5.4): a mark with no letter before it (it draws on
/// whatever text precedes the value), an overlay mark (`d` with U+0335
/// draws `đ`, `o` with U+0338 draws `ø`, yet neither composes to that
/// letter), the same nonspacing mark twice in a row (drawn on top of
/// itself), or more than `MAX_MARKS_IN_A_ROW` nonspacing marks in a row.
/// Read in NFD, so a mark a precomposed letter holds counts (`é` and
/// another U+0301). Properties from ICU4X's data (General_Category,
/// Canonical_Combining_Class), not a list.
pub(crate) fn has_confusable_marks(s: &str) -> bool {
    use icu_normalizer::DecomposingNormalizerBorrowed;
    use icu_properties::props::{CanonicalCombiningClass, GeneralCategory, GeneralCategoryGroup};
    use icu_properties::CodePointMapData;
    if s.is_ascii() {
        return false;
    }
    let category = CodePointMapData::<GeneralCategory>::new();
    let combining_class = CodePointMapData::<CanonicalCombiningClass>::new();
    let (mut previous, mut in_a_row) = (None, 0);
    for (i, c) in DecomposingNormalizerBorrowed::new_nfd().normalize_iter(s.chars()).enumerate() {
        let gc = category.get(c);
        if GeneralCategoryGroup::Mark.contains(gc) && i == 0 {
            return true;
        }
        if gc == GeneralCategory::NonspacingMark {
            in_a_row += 1;
            let overlay = combining_class.get(c) == CanonicalCombiningClass::Overlay;
            if overlay || previous == Some(c) || in_a_row > MAX_MARKS_IN_A_ROW {
                return true;
            }
        } else {
            in_a_row = 0;
        }
        previous = Some(c);
    }
    false
}

/// How releases before 0.3.1 folded an identifier (NFC, lowercase): kept
/// to recognise, and re-index, what they indexed.
pub(crate) fn legacy_fold(s: &str) -> String {
    nfc_lower(s)
}

/// Whether `s` mixes scripts beyond UTS #39's Highly Restrictive level: its
/// letters must all share one script (characters used by several scripts,
/// such as digits, punctuation and combining marks, fit any), or be Latin
/// with Han and Hiragana/Katakana, Han and Bopomofo, or Han and Hangul. So
/// `admin` with a Cyrillic `а` is refused, `用户abc` is not. Script sets come
/// from `unicode-security` (Script_Extensions, augmented for Han); unlike
/// UTS #39's identifier profile, symbols and punctuation stay allowed.
pub(crate) fn mixes_scripts(s: &str) -> bool {
    use unicode_script::Script;
    use unicode_security::mixed_script::AugmentedScriptSet;
    if s.is_ascii() {
        return false;
    }
    let mut all = AugmentedScriptSet::default();
    let mut beside_latin = AugmentedScriptSet::default();
    for c in s.chars() {
        let set = AugmentedScriptSet::for_char(c);
        all.intersect_with(set);
        if !set.base.contains_script(Script::Latin) {
            beside_latin.intersect_with(set);
        }
    }
    let single_script = !all.is_empty();
    let highly_restrictive = beside_latin.jpan || beside_latin.hanb || beside_latin.kore;
    !(single_script || highly_restrictive)
}

/// Every Default_Ignorable_Code_Point and every format (Cf) character, for
/// the tests that insert them into otherwise valid values.
#[cfg(test)]
pub(crate) fn ignorable_and_format_chars() -> Vec<char> {
    use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
    use icu_properties::{CodePointMapData, CodePointSetData};
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>().iter_ranges();
    let format = CodePointMapData::<GeneralCategory>::new().iter_ranges_for_value(GeneralCategory::Format);
    let mut chars: Vec<char> = ignorable.chain(format).flatten().filter_map(char::from_u32).collect();
    chars.sort_unstable();
    chars.dedup();
    chars
}

/// Characters an identifier must never hold, one or more of each kind
/// the issue named (tags, interlinear annotation, musical formatting,
/// variation selector, grapheme joiner, Hangul fillers, Braille blank) and
/// of the classic ones (zero-width, bidi, BOM, soft hyphen, separators).
#[cfg(test)]
pub(crate) const INVISIBLE_SAMPLES: [char; 19] = [
    '\u{E0041}',
    '\u{E0020}',
    '\u{FFF9}',
    '\u{1D173}',
    '\u{FE0F}',
    '\u{034F}',
    '\u{3164}',
    '\u{115F}',
    '\u{1160}',
    '\u{FFA0}',
    '\u{2800}',
    '\u{200B}',
    '\u{200E}',
    '\u{202E}',
    '\u{2066}',
    '\u{FEFF}',
    '\u{00AD}',
    '\u{2028}',
    '\u{2029}',
];

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

    #[test]
    fn each_named_invisible_character_is_hidden() {
        for (c, name) in [
            ('\u{E0041}', "TAG LATIN CAPITAL LETTER A"),
            ('\u{E0020}', "TAG SPACE"),
            ('\u{E0001}', "LANGUAGE TAG"),
            ('\u{FFF9}', "INTERLINEAR ANNOTATION ANCHOR"),
            ('\u{1D173}', "MUSICAL SYMBOL BEGIN BEAM"),
            ('\u{FE0F}', "VARIATION SELECTOR-16"),
            ('\u{E0100}', "VARIATION SELECTOR-17"),
            ('\u{034F}', "COMBINING GRAPHEME JOINER"),
            ('\u{3164}', "HANGUL FILLER"),
            ('\u{115F}', "HANGUL CHOSEONG FILLER"),
            ('\u{1160}', "HANGUL JUNGSEONG FILLER"),
            ('\u{FFA0}', "HALFWIDTH HANGUL FILLER"),
            ('\u{2800}', "BRAILLE PATTERN BLANK"),
            ('\u{1D159}', "MUSICAL SYMBOL NULL NOTEHEAD"),
            ('\u{00AD}', "SOFT HYPHEN"),
            ('\u{061C}', "ARABIC LETTER MARK"),
            ('\u{180E}', "MONGOLIAN VOWEL SEPARATOR"),
            ('\u{200B}', "ZERO WIDTH SPACE"),
            ('\u{200C}', "ZERO WIDTH NON-JOINER"),
            ('\u{200D}', "ZERO WIDTH JOINER"),
            ('\u{200E}', "LEFT-TO-RIGHT MARK"),
            ('\u{200F}', "RIGHT-TO-LEFT MARK"),
            ('\u{202A}', "LEFT-TO-RIGHT EMBEDDING"),
            ('\u{202E}', "RIGHT-TO-LEFT OVERRIDE"),
            ('\u{2060}', "WORD JOINER"),
            ('\u{2066}', "LEFT-TO-RIGHT ISOLATE"),
            ('\u{2069}', "POP DIRECTIONAL ISOLATE"),
            ('\u{FEFF}', "ZERO WIDTH NO-BREAK SPACE (BOM)"),
            ('\u{17B4}', "KHMER VOWEL INHERENT AQ"),
            ('\u{1BCA0}', "SHORTHAND FORMAT LETTER OVERLAP"),
            ('\u{2028}', "LINE SEPARATOR"),
            ('\u{2029}', "PARAGRAPH SEPARATOR"),
            ('\u{0085}', "NEXT LINE (C1 control)"),
            ('\u{007F}', "DELETE"),
            ('\u{E000}', "private use"),
            ('\u{F0000}', "supplementary private use"),
            ('\u{0378}', "unassigned"),
            ('\u{FFFF}', "noncharacter"),
        ] {
            assert!(is_hidden(c), "U+{:04X} {name}", c as u32);
            assert!(has_hidden_characters(&format!("ab{c}cd")), "U+{:04X} {name}", c as u32);
        }
    }

    #[test]
    fn the_hangul_fillers_are_default_ignorable() {
        // Unicode lists them itself: no hand list is needed for them.
        use icu_properties::props::DefaultIgnorableCodePoint;
        use icu_properties::CodePointSetData;
        let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
        for c in ['\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}'] {
            assert!(ignorable.contains(c), "U+{:04X}", c as u32);
        }
        assert!(!ignorable.contains('\u{2800}'), "braille blank is a symbol: it needs BLANK_SYMBOLS");
    }

    #[test]
    fn visible_text_is_not_hidden() {
        for s in ["zoë", "Ωμέγα", "имя", "名前", "اسم", "שם", "ภาษาไทย", "😀", "a b", "e\u{0301}", "ß"]
        {
            assert!(!has_hidden_characters(s), "{s:?}");
        }
    }

    #[test]
    fn space_separators() {
        for c in [' ', '\u{00A0}', '\u{2009}', '\u{202F}', '\u{3000}', '\u{1680}'] {
            assert!(is_space_separator(c), "U+{:04X}", c as u32);
        }
        for c in ['a', '\t', '\u{200B}', '\u{2028}'] {
            assert!(!is_space_separator(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn every_ignorable_or_format_character_is_hidden() {
        let chars = ignorable_and_format_chars();
        assert!(chars.len() > 4000, "the whole DI set (tags and reserved ranges included)");
        for c in chars {
            assert!(has_hidden_characters(&c.to_string()), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn one_round_folds_every_character() {
        // fold's bound of four rounds is never reached: each character's
        // fold is stable after one (so the fold is idempotent).
        use icu_casemap::CaseMapper;
        use icu_normalizer::ComposingNormalizerBorrowed;
        let nfkc = ComposingNormalizerBorrowed::new_nfkc();
        let casefold = CaseMapper::new();
        for c in (0..=0x10FFFF_u32).filter_map(char::from_u32).filter(|c| !is_hidden(*c)) {
            let once = drop_redundant_dots(&nfkc.normalize(&casefold.fold_string(&nfkc.normalize(&c.to_string()))));
            let twice = drop_redundant_dots(&nfkc.normalize(&casefold.fold_string(&once)));
            assert_eq!(once, twice, "U+{:04X}", c as u32);
            assert_eq!(fold(&once), once, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn confusable_marks() {
        for bad in [
            "\u{0301}admin",
            "d\u{0335}avid",
            "o\u{0338}ystein",
            "l\u{0337}ukasz",
            "jose\u{0301}\u{0301}",
            "jos\u{00E9}\u{0301}",
            "a\u{0300}\u{0301}\u{0302}\u{0303}\u{0304}",
        ] {
            assert!(has_confusable_marks(bad), "{bad:?}");
        }
        for good in ["josé", "jose\u{0301}", "e\u{0323}\u{0301}", "ẹ́kọ́", "a\u{0300}\u{0301}\u{0302}\u{0303}", "đavid"]
        {
            assert!(!has_confusable_marks(good), "{good:?}");
        }
    }

    #[test]
    fn a_dot_above_a_soft_dotted_letter_folds_away() {
        assert_eq!(fold("ADM\u{0130}N"), "admin");
        assert_eq!(fold("admi\u{0307}n"), "admin");
        assert_eq!(fold("j\u{0307}ane"), "jane");
        assert_eq!(fold("adm\u{0131}n"), "adm\u{0131}n", "a dotless i is another letter");
        assert_eq!(fold("a\u{0307}"), "\u{0227}", "a dot above other letters stays (NFKC composes it)");
    }

    #[test]
    fn scripts_mix_beyond_highly_restrictive() {
        for mixed in ["p\u{0430}ypal", "abcαβγ", "\u{0430}\u{03B1}", "abc\u{0627}"] {
            assert!(mixes_scripts(mixed), "{mixed:?}");
        }
        for single in
            ["paypal", "ελληνικά", "用户abc", "東京tokyoひらがな", "한국abc漢字", "注音ㄅㄆabc", "a\u{0301}-1"]
        {
            assert!(!mixes_scripts(single), "{single:?}");
        }
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
