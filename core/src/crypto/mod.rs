//! Cryptography of the vault, free of PostgreSQL types.
//!
//! - `keyring`: sub-keys derived from the master key with HKDF-SHA256.
//! - `aead`: AES-256-GCM (ring's implementation), wiped when dropped.
//! - `envelope`: per-record data keys, AES-256-GCM, the stored byte format.
//! - `blind_index`: HMAC-SHA256 of normalized lookup values.
//! - `audit_chain`: the MAC chain that makes the audit tamper-evident;
//!   `token_filter`: the Bloom filter that lets `vault_audit` skip batches.

pub mod aead;
pub mod audit_chain;
pub mod blind_index;
pub mod envelope;
pub mod keyring;
pub mod token_filter;

pub use keyring::{KeyRing, KeySet};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{VaultError, VaultResult};

/// Fills `buf` with cryptographically secure random bytes.
///
/// A ChaCha20 generator per process, seeded from the operating system's
/// CSPRNG (`getrandom`) on first use and re-seeded every `RESEED_AFTER`
/// bytes, instead of a system call per record (a large share of sealing a
/// small record). A process forked from one that used the generator
/// (PostgreSQL forks every backend) re-seeds before its first byte, so no
/// two processes share a stream: a `pthread_atfork` child handler bumps
/// `FORK_GENERATION`, which each use compares with the generation it was
/// seeded in (an atomic load, where asking for the process id was a system
/// call per use).
pub fn fill_random(buf: &mut [u8]) -> VaultResult<()> {
    RNG.with_borrow_mut(|rng| {
        let generation = FORK_GENERATION.load(Ordering::Acquire);
        let stale = match rng.as_ref() {
            Some(state) => state.generation != generation || state.remaining < buf.len(),
            None => true,
        };
        if stale {
            watch_forks();
            let mut seed = zeroize::Zeroizing::new([0u8; 32]);
            getrandom::getrandom(seed.as_mut()).map_err(|_| VaultError::RandomFailure)?;
            *rng = Some(ProcessRng { generation, remaining: RESEED_AFTER, chacha: ChaCha20Rng::from_seed(*seed) });
        }
        let state = rng.as_mut().expect("seeded above");
        state.chacha.fill_bytes(buf);
        state.remaining -= buf.len();
        Ok(())
    })
}

/// Bytes drawn from one seed (larger requests are never made).
const RESEED_AFTER: usize = 1 << 20;

/// Forks since this process image started (each child's copy counts its own).
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn forked_child() {
    FORK_GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Registers the fork handler, once per process image (before the first
/// seed, so any fork after a seed is seen).
#[allow(unsafe_code)] // pthread_atfork: a C call
fn watch_forks() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a handler that only increments an atomic.
    REGISTERED.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(forked_child));
    });
}

struct ProcessRng {
    generation: u64,
    remaining: usize,
    chacha: ChaCha20Rng,
}

thread_local! {
    static RNG: std::cell::RefCell<Option<ProcessRng>> = const { std::cell::RefCell::new(None) };
}

/// A fresh random token: an RFC 4122 version 4 UUID.
pub fn random_token() -> VaultResult<[u8; 16]> {
    let mut token = [0u8; 16];
    fill_random(&mut token)?;
    token[6] = (token[6] & 0x0f) | 0x40; // version 4
    token[8] = (token[8] & 0x3f) | 0x80; // RFC 4122 variant
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_differ_and_are_version_4() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_ne!(a, b);
        assert_eq!(a[6] >> 4, 4);
        assert_eq!(a[8] >> 6, 0b10);
    }

    #[test]
    fn the_generator_reseeds_after_its_budget() {
        let mut chunk = [0u8; 4096];
        for _ in 0..(RESEED_AFTER / chunk.len() + 2) {
            fill_random(&mut chunk).unwrap();
        }
        let remaining = RNG.with_borrow(|rng| rng.as_ref().unwrap().remaining);
        assert!(remaining < RESEED_AFTER && remaining > RESEED_AFTER - 3 * chunk.len());
    }

    #[test]
    #[allow(unsafe_code)] // fork, pipe: C calls
    fn a_forked_child_does_not_repeat_the_parents_stream() {
        let mut before = [0u8; 32];
        fill_random(&mut before).unwrap(); // the parent's generator is seeded
        let mut fds = [0i32; 2];
        // SAFETY: pipe and fork in a test; the child only writes and exits.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let pid = libc::fork();
            if pid == 0 {
                let mut child = [0u8; 32];
                let n = if fill_random(&mut child).is_ok() { 32 } else { 0 };
                libc::write(fds[1], child.as_ptr().cast(), n);
                libc::_exit(0);
            }
            let mut parent = [0u8; 32];
            fill_random(&mut parent).unwrap();
            let mut child = [0u8; 32];
            assert_eq!(libc::read(fds[0], child.as_mut_ptr().cast(), 32), 32);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            assert_ne!(parent, child, "the child re-seeded instead of continuing the parent's stream");
        }
    }
}

/// The 16 bytes the envelope of a document other than a record (a session,
/// an application's data) is sealed for, in place of a token: SHA-256 of
/// what it is and the stored columns that name it, each length-prefixed.
/// An envelope moved to another row, or to another table, fails its tag;
/// rotation recomputes the binding from the same columns.
pub fn document_binding(what: &str, parts: &[&[u8]]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(b"pii_vault/document\0");
    for part in std::iter::once(what.as_bytes()).chain(parts.iter().copied()) {
        hash.update((part.len() as u32).to_be_bytes());
        hash.update(part);
    }
    hash.finalize()[..16].try_into().expect("16 of 32 bytes")
}

#[cfg(test)]
mod document_binding_tests {
    use super::document_binding;

    #[test]
    fn what_and_every_part_separate_bindings() {
        let a = document_binding("app_data", &[&[1; 16], b"shop"]);
        assert_ne!(a, document_binding("session", &[&[1; 16], b"shop"]));
        assert_ne!(a, document_binding("app_data", &[&[2; 16], b"shop"]));
        assert_ne!(a, document_binding("app_data", &[&[1; 16], b"shoe"]));
        // Length prefixes: moving a byte between parts changes the input.
        assert_ne!(document_binding("x", &[b"ab", b"c"]), document_binding("x", &[b"a", b"bc"]));
        assert_eq!(a, document_binding("app_data", &[&[1; 16], b"shop"]));
    }
}
