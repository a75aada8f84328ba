//! Field tokens: a token that stands for one value rather than a record.
//!
//! A `text`, `email` or `phone` value gets a random UUID token, as a record
//! does. A card number (`card`, `card_luhn`) gets a format-keeping token: a
//! digit string of the card's length that keeps its last four digits, so
//! that systems which check a card's shape or show its last four keep
//! working. A `card` token fails the Luhn check, so no card check takes it
//! for a card number; a `card_luhn` token passes it, for
//! systems that refuse anything else.
//!
//! Values here are card numbers: no error, panic or `Debug` text in this
//! module names a value or any of its digits.

use crate::error::VaultResult;

/// What a field token stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Card,
    CardLuhn,
    Email,
    Phone,
}

impl FieldKind {
    pub const ALL: [FieldKind; 5] =
        [FieldKind::Text, FieldKind::Card, FieldKind::CardLuhn, FieldKind::Email, FieldKind::Phone];

    /// Parses a kind as the SQL functions take it; exact lowercase names
    /// only, as `LookupKind::parse`.
    pub fn parse(kind: &str) -> Option<FieldKind> {
        FieldKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Card => "card",
            FieldKind::CardLuhn => "card_luhn",
            FieldKind::Email => "email",
            FieldKind::Phone => "phone",
        }
    }

    /// Whether its tokens are card-shaped digit strings (Card, CardLuhn)
    /// rather than UUIDs.
    pub fn is_card(self) -> bool {
        matches!(self, FieldKind::Card | FieldKind::CardLuhn)
    }
}

/// The longest `text` value, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;

/// The fewest and the most digits of a card number (ISO/IEC 7812), and so
/// of a card token; how many trailing digits a card token keeps.
const MIN_DIGITS: usize = 12;
const MAX_DIGITS: usize = 19;
const KEPT: usize = 4;

/// Why a value cannot be tokenized as a card number. The texts name no
/// digit, not even the limits'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CardProblem {
    #[error("a card number holds only digits, spaces and dashes")]
    NotDigits,
    #[error("a card number has twelve to nineteen digits")]
    Length,
    #[error("the card number fails the Luhn check")]
    Luhn,
}

/// A card number's digits. Spaces and dashes are dropped wherever they
/// stand (cards are written in groups of many shapes); any other character,
/// a non-ASCII digit included, is `NotDigits`. Then fewer than 12 or more
/// than 19 digits is `Length`, and failing the Luhn check is `Luhn`, so a
/// mistyped number is refused rather than tokenized.
pub fn card_digits(value: &str) -> Result<String, CardProblem> {
    if !value.bytes().all(|b| b.is_ascii_digit() || b == b' ' || b == b'-') {
        return Err(CardProblem::NotDigits);
    }
    let count = value.bytes().filter(u8::is_ascii_digit).count();
    if !(MIN_DIGITS..=MAX_DIGITS).contains(&count) {
        return Err(CardProblem::Length);
    }
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    if !luhn_valid(&digits) {
        return Err(CardProblem::Luhn);
    }
    Ok(digits)
}

/// Whether a digit string passes the Luhn (mod 10) check. False for an
/// empty string or anything but ASCII digits.
pub fn luhn_valid(digits: &str) -> bool {
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && luhn_sum(digits.as_bytes()).is_multiple_of(10)
}

/// The Luhn sum of ASCII digits: from the right, every second digit
/// doubled (less 9 above 9). A plain loop: iterators are slow in debug.
fn luhn_sum(digits: &[u8]) -> u32 {
    const DOUBLED: [u8; 10] = [0, 2, 4, 6, 8, 1, 3, 5, 7, 9];
    let (mut sum, mut i) = (0u32, digits.len());
    while i > 0 {
        i -= 1;
        let d = digits[i] - b'0';
        sum += u32::from(if (digits.len() - i).is_multiple_of(2) { DOUBLED[usize::from(d)] } else { d });
    }
    sum
}

/// Whether `token` is shaped as a card token: 12 to 19 ASCII digits,
/// nothing else.
pub fn is_card_token_shape(token: &str) -> bool {
    (MIN_DIGITS..=MAX_DIGITS).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_digit())
}

/// Uniform draws below 9 or 10 from uniform random bytes, by rejection: a
/// byte at or above the largest multiple of the bound is skipped, so no
/// value is likelier than another. Bytes are asked for `first` at once,
/// then eight at a time when rejections have used them up.
struct Draws<'a> {
    random: &'a mut dyn FnMut(&mut [u8]) -> VaultResult<()>,
    buf: [u8; MAX_DIGITS],
    len: usize,
    used: usize,
}

impl<'a> Draws<'a> {
    fn new(random: &'a mut dyn FnMut(&mut [u8]) -> VaultResult<()>, first: usize) -> VaultResult<Self> {
        let mut buf = [0; MAX_DIGITS];
        random(&mut buf[..first])?;
        Ok(Draws { random, buf, len: first, used: 0 })
    }

    fn below(&mut self, bound: u8) -> VaultResult<u8> {
        let limit = 256 - 256 % u16::from(bound);
        loop {
            if self.used == self.len {
                self.len = 8;
                (self.random)(&mut self.buf[..self.len])?;
                self.used = 0;
            }
            let byte = self.buf[self.used];
            self.used += 1;
            if u16::from(byte) < limit {
                return Ok(byte % bound);
            }
        }
    }
}

/// A token for the card `digits` (already validated by `card_digits`): the
/// same number of digits, the last four kept, every other digit random from
/// `random` (a source of uniform random bytes, `crate::crypto::fill_random`
/// in the extension; a closure so that tests are deterministic); failing
/// the Luhn check (`luhn: false`) or passing it (`luhn: true`); never equal
/// to `digits`. An error of `random` is returned as it is.
///
/// Every such string is equally likely. The digits before the fifth from
/// the right are drawn uniformly; the fifth from the right is not doubled
/// in the Luhn sum, so each of its ten values gives the sum a different
/// residue and exactly one of them passes: `luhn: true` takes that one,
/// `luhn: false` one of the other nine, uniformly. Each choice of the other
/// digits thus has as many completions, and a draw equal to `digits`
/// (possible only with `luhn: true`, one in 10^7 or fewer) is drawn again.
///
/// Panics (naming no digit) if `digits` is not 12 to 19 ASCII digits, which
/// `card_digits` never returns.
pub fn card_token(
    digits: &str,
    luhn: bool,
    random: &mut dyn FnMut(&mut [u8]) -> VaultResult<()>,
) -> VaultResult<String> {
    assert!(is_card_token_shape(digits), "card_token takes 12 to 19 ASCII digits");
    let digits = digits.as_bytes();
    let (n, free) = (digits.len(), digits.len() - KEPT);
    let mut draws = Draws::new(random, free + 2)?; // what a token needs, and two spare
    let mut token = [0u8; MAX_DIGITS];
    token[..n].copy_from_slice(digits);
    loop {
        for d in &mut token[..free - 1] {
            *d = b'0' + draws.below(10)?;
        }
        // The fifth digit from the right is not doubled: `pass` is the one
        // value of it that makes the sum a multiple of ten.
        token[free - 1] = b'0';
        let pass = ((10 - luhn_sum(&token[..n]) % 10) % 10) as u8;
        let chosen = if luhn { pass } else { draws.below(9).map(|pick| pick + u8::from(pick >= pass))? };
        token[free - 1] = b'0' + chosen;
        if token[..n] != *digits {
            return Ok(String::from_utf8(token[..n].to_vec()).expect("ASCII digits"));
        }
    }
}

/// A card token for `digits` that `taken` says is free: `card_token` drawn
/// again while `taken` answers true, at most `max_tries` draws in all; None
/// if every one was taken. The extension passes a probe of the tokens it
/// has issued: `card_luhn` tokens of a 12-digit card come from only 10^7
/// strings, where a few hundred thousand draws already repeat one.
pub fn issue_unique(
    digits: &str,
    luhn: bool,
    random: &mut dyn FnMut(&mut [u8]) -> VaultResult<()>,
    taken: &mut dyn FnMut(&str) -> bool,
    max_tries: u32,
) -> VaultResult<Option<String>> {
    for _ in 0..max_tries {
        let token = card_token(digits, luhn, random)?;
        if !taken(&token) {
            return Ok(Some(token));
        }
    }
    Ok(None)
}

/// The 16-byte id the audit names a card token by: a version 8 UUID (RFC
/// 9562) of the token's digits read as a number (a u64: 19 nines are below
/// 2^64) and of its length, which tells leading zeros apart. The same
/// token always has the same id and different tokens different ids. Anyone
/// holding the token can compute it: the token is not secret, the card
/// number is. None if `token` is not 12 to 19 ASCII digits.
///
/// Layout: custom_a (bytes 0-5) is the number's first six big-endian
/// bytes; custom_b (the low nibble of byte 6 and byte 7) is the length;
/// custom_c holds the number's last two bytes in bytes 9-10, and zeros.
pub fn card_token_id(token: &str) -> Option<[u8; 16]> {
    if !is_card_token_shape(token) {
        return None;
    }
    let number = token.parse::<u64>().ok()?.to_be_bytes();
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&number[..6]);
    id[6] = 0x80; // version 8; the length's high bits are zero
    id[7] = token.len() as u8;
    id[8] = 0x80; // RFC 9562 variant
    id[9..11].copy_from_slice(&number[6..]);
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::VaultError;
    use proptest::prelude::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use std::collections::HashSet;

    const VISA: &str = "4111111111111111";

    /// A deterministic source of random bytes. ChaCha8: the stream's
    /// strength is not under test, and its speed in debug builds is.
    fn seeded(seed: u64) -> impl FnMut(&mut [u8]) -> VaultResult<()> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        move |buf: &mut [u8]| {
            rng.fill_bytes(buf);
            Ok(())
        }
    }

    /// `prefix` with the Luhn check digit appended.
    fn with_check_digit(prefix: &str) -> String {
        let sum = luhn_sum(format!("{prefix}0").as_bytes());
        format!("{prefix}{}", (10 - sum % 10) % 10)
    }

    /// The token `card_token_id` was computed from.
    fn token_of_id(id: &[u8; 16]) -> String {
        let mut number = [0u8; 8];
        number[..6].copy_from_slice(&id[..6]);
        number[6..].copy_from_slice(&id[9..11]);
        format!("{:0width$}", u64::from_be_bytes(number), width = usize::from(id[7]))
    }

    #[test]
    fn kinds_parse_their_names_only() {
        assert!(FieldKind::ALL.into_iter().all(|kind| FieldKind::parse(kind.as_str()) == Some(kind)));
        for name in ["", "Card", "card-luhn", "cardluhn", " text", "login", "token"] {
            assert_eq!(FieldKind::parse(name), None);
        }
        let cards: Vec<_> = FieldKind::ALL.into_iter().filter(|k| k.is_card()).collect();
        assert_eq!(cards, [FieldKind::Card, FieldKind::CardLuhn]);
    }

    #[test]
    fn known_card_numbers_pass_luhn() {
        for number in [VISA, "378282246310005", "6011111111111117", "5555555555554444", "79927398713"] {
            assert!(luhn_valid(number));
        }
        for number in ["4111111111111112", "79927398710", "", "4111-1111", "４１１１"] {
            assert!(!luhn_valid(number));
        }
        assert_eq!(with_check_digit("7992739871"), "79927398713");
    }

    #[test]
    fn card_digits_drops_separators_and_refuses_the_rest() {
        assert_eq!(card_digits("4111 1111-1111 1111").as_deref(), Ok(VISA));
        assert_eq!(card_digits("-3782 822463 10005 ").as_deref(), Ok("378282246310005"));
        for not_digits in ["4111 1111 1111 111a", "4111\t1111 1111 1111", "４１１１ 1111 1111 1111"] {
            assert_eq!(card_digits(not_digits), Err(CardProblem::NotDigits));
        }
        assert_eq!(card_digits(&with_check_digit(&"4".repeat(10))), Err(CardProblem::Length)); // 11
        assert_eq!(card_digits(&with_check_digit(&"4".repeat(19))), Err(CardProblem::Length)); // 20
        assert_eq!(card_digits(" - "), Err(CardProblem::Length));
        assert!(card_digits(&with_check_digit(&"4".repeat(11))).is_ok()); // 12
        assert!(card_digits(&with_check_digit(&"4".repeat(18))).is_ok()); // 19
        assert_eq!(card_digits("4111 1111 1111 1112"), Err(CardProblem::Luhn));
        for problem in [CardProblem::NotDigits, CardProblem::Length, CardProblem::Luhn] {
            for text in [problem.to_string(), format!("{problem:?}")] {
                assert!(!text.bytes().any(|b| b.is_ascii_digit()), "{text}");
            }
        }
    }

    #[test]
    fn bytes_above_the_last_multiple_are_skipped() {
        // Every other byte is 0xff (above 249 and 251): were it used, a
        // digit would be 5 (255 % 10) or 3 (255 % 9).
        let mut odd = false;
        let mut random = |buf: &mut [u8]| {
            buf.iter_mut().for_each(|b| (*b, odd) = (if odd { 7 } else { 0xff }, !odd));
            Ok(())
        };
        let token = card_token(VISA, false, &mut random).unwrap();
        assert_eq!(&token[..11], "77777777777");
        assert!(!luhn_valid(&token));
    }

    #[test]
    fn every_random_digit_is_uniform() {
        // 100 000 tokens: each digit at each drawn position is expected
        // 10 000 times (standard deviation ~95); 600 is over six.
        for luhn in [false, true] {
            let (mut counts, mut random) = ([[0u32; 10]; 12], seeded(3));
            for _ in 0..100_000 {
                let token = card_token(VISA, luhn, &mut random).unwrap();
                token.bytes().take(12).enumerate().for_each(|(at, b)| counts[at][usize::from(b - b'0')] += 1);
            }
            for (at, row) in counts.iter().enumerate() {
                assert!(row.iter().all(|&c| c.abs_diff(10_000) < 600), "luhn {luhn} position {at}: {row:?}");
            }
        }
    }

    #[test]
    fn issue_unique_gives_up_after_max_tries_and_passes_errors_on() {
        let mut asked = 0;
        let mut taken = |_: &str| {
            asked += 1;
            true
        };
        assert_eq!(issue_unique(VISA, false, &mut seeded(2), &mut taken, 5), Ok(None));
        assert_eq!(asked, 5);
        let mut failing = |_: &mut [u8]| Err(VaultError::RandomFailure);
        assert_eq!(card_token(VISA, true, &mut failing), Err(VaultError::RandomFailure));
        assert_eq!(issue_unique(VISA, true, &mut failing, &mut |_| false, 3), Err(VaultError::RandomFailure));
    }

    #[test]
    fn card_token_ids_are_version_8_and_read_back() {
        let id = card_token_id("0000000000001234").unwrap();
        assert_eq!((id[6] >> 4, id[8] >> 6), (8, 0b10));
        assert_eq!(token_of_id(&id), "0000000000001234");
        assert_ne!(card_token_id("000000000000"), card_token_id("0000000000000"));
        assert_eq!(token_of_id(&card_token_id(&"9".repeat(19)).unwrap()), "9".repeat(19));
        for bad in ["", "41111111111", "41111111111111111111", "4111 1111 1111 1111", "４１１１１１１１１１１１"]
        {
            assert_eq!(card_token_id(bad), None);
        }
    }

    #[test]
    fn a_million_card_tokens_never_collide() {
        // 16 digits, luhn false: 9 * 10^11 tokens, where a million draws
        // repeat one about half the time; the retry makes every one new.
        let mut random = seeded(4);
        let mut issued: HashSet<u64> = HashSet::with_capacity(1_000_000);
        for _ in 0..1_000_000 {
            let mut taken = |t: &str| issued.contains(&t.parse().unwrap());
            let token = issue_unique(VISA, false, &mut random, &mut taken, 10).unwrap().unwrap();
            assert!(token.ends_with("1111") && !luhn_valid(&token));
            assert!(issued.insert(token.parse().unwrap()));
        }
        assert_eq!(issued.len(), 1_000_000);
    }

    #[test]
    fn twelve_digit_luhn_tokens_collide_without_the_retry() {
        // 7 drawn digits: 10^7 tokens, so 200 000 draws repeat about
        // 2 000 times (n^2 / 2N).
        let (card, mut random) = (with_check_digit("41111111111"), seeded(5));
        let mut raw = HashSet::new();
        let duplicates = (0..200_000).filter(|_| !raw.insert(card_token(&card, true, &mut random).unwrap())).count();
        assert!(duplicates > 0, "no duplicate: the retry would not be needed");
        let mut issued = HashSet::new();
        for _ in 0..200_000 {
            let token = issue_unique(&card, true, &mut random, &mut |t| issued.contains(t), 10).unwrap().unwrap();
            assert!(luhn_valid(&token) && token != card && issued.insert(token));
        }
    }

    /// A Luhn-valid card number of 12 to 19 digits.
    fn card_number() -> impl Strategy<Value = String> {
        "[0-9]{11,18}".prop_map(|prefix| with_check_digit(&prefix))
    }

    proptest! {
        #[test]
        fn card_numbers_and_their_written_forms_are_accepted(card in card_number(), gap in "[ -]{0,2}") {
            prop_assert_eq!(card_digits(&card), Ok(card.clone()));
            let grouped: Vec<_> = card.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap()).collect();
            prop_assert_eq!(card_digits(&grouped.join(&gap)), Ok(card));
        }

        #[test]
        fn card_tokens_keep_the_shape_and_the_last_four(card in card_number(), luhn: bool, seed: u64) {
            let token = card_token(&card, luhn, &mut seeded(seed)).unwrap();
            prop_assert!(is_card_token_shape(&token) && token.len() == card.len() && token != card);
            prop_assert_eq!(&token[token.len() - 4..], &card[card.len() - 4..]);
            prop_assert_eq!(luhn_valid(&token), luhn);
        }

        #[test]
        fn card_token_ids_are_injective(tokens in prop::collection::hash_set("[0-9]{12,19}", 1..200)) {
            let ids: HashSet<_> = tokens.iter().map(|t| card_token_id(t).unwrap()).collect();
            prop_assert_eq!(ids.len(), tokens.len());
            for token in &tokens {
                prop_assert_eq!(&token_of_id(&card_token_id(token).unwrap()), token);
            }
        }
    }
}
