//! Cryptography of the vault, free of PostgreSQL types.
//!
//! - `keyring`: sub-keys derived from the master key with HKDF-SHA256.
//! - `envelope`: per-record data keys, AES-256-GCM, the stored byte format.
//! - `blind_index`: HMAC-SHA256 of normalized lookup values.
//! - `audit_chain`: the MAC chain that makes the audit tamper-evident.

pub mod audit_chain;
pub mod blind_index;
pub mod envelope;
pub mod keyring;

pub use keyring::KeyRing;

use crate::error::{VaultError, VaultResult};

/// Fills `buf` from the operating system's CSPRNG.
///
/// Called per record in each backend (never seeded in the postmaster and
/// inherited through fork, which would repeat nonces across backends).
pub fn fill_random(buf: &mut [u8]) -> VaultResult<()> {
    getrandom::getrandom(buf).map_err(|_| VaultError::RandomFailure)
}

/// A fresh random token: an RFC 4122 version 4 UUID.
pub fn random_token() -> VaultResult<[u8; 16]> {
    let mut token = [0u8; 16];
    fill_random(&mut token)?;
    token[6] = (token[6] & 0x0f) | 0x40; // version 4
    token[8] = (token[8] & 0x3f) | 0x80; // RFC 4122 variant
    Ok(token)
}
