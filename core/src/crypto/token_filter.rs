//! The token filter of an audit batch: a Bloom filter over the distinct
//! tokens the batch's events name, stored in the batch row so that
//! `vault_audit(token)` decodes only the batches that may name the token.
//!
//! Why a filter and not an index: a GIN index on the batch's token list was
//! 60 % of the audit writer's CPU (one entry per token per batch, each
//! merged into a posting list, with pending-list clean-ups that stalled the
//! writer long enough to fill the queue). The filter costs the writer a few
//! nanoseconds per event; `vault_audit` pays with a scan of the batch rows
//! (about 2 bytes per event, the events themselves stay unread).
//!
//! Not a secret and not a MAC: `vault_audit_verify` recomputes the filter
//! from the MAC-checked events, so an edited filter (one that hides a token
//! from `vault_audit`) is caught. A false positive only costs decoding one
//! batch; the events are then matched exactly.
//!
//! Format: one byte, the number of probes k, then the bit array (m = 8 ×
//! its length bits; bit i is bit i % 8 of byte i / 8). A token sets the bits
//! (h1 + i·h2) mod m for i in 0..k (double hashing; h1 and h2 mixed from
//! all 128 bits of the token).

/// Probes per token; with BITS_PER_TOKEN bits per token a batch answers
/// "maybe" for about 0.8 % of the tokens it does not name.
const PROBES: u8 = 7;
const BITS_PER_TOKEN: usize = 10;

/// The filter of a batch's distinct tokens (sized by their number; their
/// order does not matter).
pub fn build(tokens: &[[u8; 16]]) -> Vec<u8> {
    let bytes = (tokens.len() * BITS_PER_TOKEN).div_ceil(8).max(1);
    let mut filter = vec![0u8; 1 + bytes];
    filter[0] = PROBES;
    let bits = &mut filter[1..];
    let m = (bytes * 8) as u64;
    for token in tokens {
        for bit in probes(token, PROBES, m) {
            bits[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    }
    filter
}

/// False when the batch with this filter certainly names no event of
/// `token`; true when it may (and for a filter that is not one: the caller
/// then reads the batch, as it would without a filter).
pub fn may_contain(filter: &[u8], token: &[u8; 16]) -> bool {
    let Some((&k, bits)) = filter.split_first() else { return true };
    if bits.is_empty() || k == 0 {
        return true;
    }
    let m = (bits.len() * 8) as u64;
    probes(token, k, m).all(|bit| bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
}

fn probes(token: &[u8; 16], k: u8, m: u64) -> impl Iterator<Item = u64> {
    let a = u64::from_le_bytes(token[..8].try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(token[8..].try_into().expect("8 bytes"));
    let h1 = mix(a ^ mix(b));
    // Odd, so the probes of one token differ whenever m is a power of two.
    let h2 = mix(b ^ mix(a ^ 0x9e37_79b9_7f4a_7c15)) | 1;
    (0..u64::from(k)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % m)
}

/// splitmix64's finalizer: every output bit depends on every input bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn token(n: u64) -> [u8; 16] {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&mix(n).to_le_bytes());
        t[8..].copy_from_slice(&mix(n ^ 0xdead_beef).to_le_bytes());
        t
    }

    #[test]
    fn an_empty_batch_names_no_token() {
        let filter = build(&[]);
        assert_eq!(filter, vec![PROBES, 0]);
        assert!(!may_contain(&filter, &token(1)));
    }

    #[test]
    fn the_format_is_stable() {
        // The filter is stored and recomputed by vault_audit_verify across
        // versions: a change here would make old batches fail to verify.
        let filter = build(&[[0u8; 16], [0xff; 16]]);
        assert_eq!(filter, vec![7, 0x8f, 0x54, 0xa8]);
    }

    #[test]
    fn false_positives_stay_near_one_percent() {
        let members: Vec<[u8; 16]> = (0..200).map(token).collect();
        let filter = build(&members);
        let false_hits = (1_000..101_000).filter(|n| may_contain(&filter, &token(*n))).count();
        assert!(false_hits < 1_500, "{false_hits} false positives in 100 000");
    }

    #[test]
    fn a_malformed_filter_hides_nothing() {
        assert!(may_contain(&[], &token(1)));
        assert!(may_contain(&[7], &token(1)));
        assert!(may_contain(&[0, 0, 0], &token(1)));
    }

    proptest! {
        #[test]
        fn every_member_is_found(tokens in proptest::collection::vec(any::<[u8; 16]>(), 0..300)) {
            let filter = build(&tokens);
            for t in &tokens {
                prop_assert!(may_contain(&filter, t));
            }
        }

        #[test]
        fn order_does_not_change_the_filter(tokens in proptest::collection::vec(any::<[u8; 16]>(), 1..50)) {
            let reversed: Vec<[u8; 16]> = tokens.iter().rev().copied().collect();
            prop_assert_eq!(build(&tokens), build(&reversed));
        }
    }
}
