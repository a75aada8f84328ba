//! Where a token or an identifier lives when the vault is split over
//! `shards` servers (README, "Shards").
//!
//! A token's shard is the big-endian number in its first two bytes modulo
//! `shards`: a token minted on shard k has those bytes set to a random
//! value of that residue, so every other bit of a version 4 UUID stays
//! random. Reading it needs no key and no table (a proxy routes with it),
//! and with one shard every token is on shard 0, as tokens always were.
//!
//! An identifier's shard (an email's, say) is its blind index under the
//! routing key version, read as a number, modulo `shards`: a proxy that
//! loads the same key computes it and stores nothing.

use crate::crypto::blind_index::BLIND_INDEX_LEN;
use crate::crypto::{fill_random, random_token};
use crate::error::VaultResult;

/// The most shards a vault may be split over. Each doubling takes one
/// random bit from a token: at this many, 112 of its 122 stay random.
pub const MAX_SHARDS: u32 = 1024;

/// The shard `token` was minted on, in a vault of `shards` shards.
pub fn shard_of(token: &[u8; 16], shards: u32) -> u32 {
    u32::from(u16::from_be_bytes([token[0], token[1]])) % shards.max(1)
}

/// Sets `token`'s first two bytes so that `shard_of(token, shards)` is
/// `shard`, to the `pick`-th value of that residue below 2^16 (`pick` is
/// random; it is taken modulo how many there are). Every value of the
/// residue is reachable, so the two bytes keep log2(65536 / shards) random
/// bits.
pub fn stamp(token: &mut [u8; 16], shard: u32, shards: u32, pick: u16) {
    let shards = shards.clamp(1, MAX_SHARDS);
    let shard = shard % shards;
    // Values v < 65536 with v % shards == shard: shard, shard + shards, ...
    let count = (65535 - shard) / shards + 1;
    let value = shard + shards * (u32::from(pick) % count);
    token[..2].copy_from_slice(&(value as u16).to_be_bytes());
}

/// A fresh random token (version 4) on `shard` of `shards`.
pub fn random_token_on(shard: u32, shards: u32) -> VaultResult<[u8; 16]> {
    let mut token = random_token()?;
    if shards > 1 {
        let mut pick = [0u8; 2];
        fill_random(&mut pick)?;
        stamp(&mut token, shard, shards, u16::from_be_bytes(pick));
    }
    Ok(token)
}

/// The shard that owns an identifier whose blind index under the routing
/// key version is `hash`.
pub fn shard_for_hash(hash: &[u8; BLIND_INDEX_LEN], shards: u32) -> u32 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    (u64::from_be_bytes(first) % u64::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random bits left in a version 4 token minted on one of `shards`
    /// shards: 122 less what the shard number takes (a whole bit per
    /// doubling, rounded up).
    fn random_bits(shards: u32) -> u32 {
        122 - shards.max(1).next_power_of_two().trailing_zeros()
    }

    #[test]
    fn one_shard_holds_every_token() {
        for _ in 0..1000 {
            assert_eq!(shard_of(&random_token().unwrap(), 1), 0);
        }
    }

    #[test]
    fn stamped_tokens_read_back_their_shard_and_stay_version_4() {
        for shards in [2, 3, 7, 16, 1000, MAX_SHARDS] {
            for shard in [0, 1, shards / 2, shards - 1] {
                for pick in [0, 1, 777, u16::MAX] {
                    let mut token = random_token().unwrap();
                    let tail = token[2..].to_vec();
                    stamp(&mut token, shard, shards, pick);
                    assert_eq!(shard_of(&token, shards), shard, "shards {shards} shard {shard} pick {pick}");
                    // Only the first two bytes change: the version and
                    // variant bits (bytes 6 and 8) are untouched.
                    assert_eq!(&token[2..], &tail[..]);
                    assert_eq!(token[6] >> 4, 4);
                    assert_eq!(token[8] >> 6, 2);
                }
            }
        }
    }

    #[test]
    fn every_value_of_the_residue_is_reachable() {
        // So the stamped bytes keep all the randomness the residue leaves.
        let (shards, shard) = (3u32, 2u32);
        let mut seen = std::collections::HashSet::new();
        for pick in 0..=u16::MAX {
            let mut token = [0u8; 16];
            stamp(&mut token, shard, shards, pick);
            seen.insert(u16::from_be_bytes([token[0], token[1]]));
        }
        assert_eq!(seen.len() as u32, (65535 - shard) / shards + 1);
    }

    #[test]
    fn minted_tokens_land_on_their_shard_and_differ() {
        let tokens: Vec<_> = (0..2000).map(|i| random_token_on(i % 5, 5).unwrap()).collect();
        for (i, token) in tokens.iter().enumerate() {
            assert_eq!(shard_of(token, 5), i as u32 % 5);
        }
        let distinct: std::collections::HashSet<_> = tokens.iter().collect();
        assert_eq!(distinct.len(), tokens.len());
    }

    #[test]
    fn random_bits_per_shard_count() {
        assert_eq!(random_bits(1), 122);
        assert_eq!(random_bits(2), 121);
        assert_eq!(random_bits(3), 120);
        assert_eq!(random_bits(16), 118);
        assert_eq!(random_bits(MAX_SHARDS), 112);
    }

    #[test]
    fn identifiers_spread_over_shards() {
        let mut counts = [0u32; 4];
        for i in 0..4000u32 {
            let mut hash = [0u8; BLIND_INDEX_LEN];
            // Any well-mixed 32 bytes stand in for a blind index here.
            let token = random_token().unwrap();
            hash[..16].copy_from_slice(&token);
            hash[16..20].copy_from_slice(&i.to_be_bytes());
            counts[shard_for_hash(&hash, 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(shard_for_hash(&[0xff; BLIND_INDEX_LEN], 1), 0);
    }
}
