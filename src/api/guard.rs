//! Preconditions every vault function checks first: a key is loaded and it
//! is the key the vault was created with (checked once per backend).

use std::cell::Cell;

use super::errors::raise;
use crate::crypto::KeyRing;
use crate::error::{KeyProblem, VaultError};
use crate::{guc, keys, normalize::Region, store};

thread_local! {
    static KEY_CHECKED: Cell<bool> = const { Cell::new(false) };
}

/// The key ring, once it is known to match the stored key check value.
pub fn ready() -> &'static KeyRing {
    let ring = keys::key_ring().unwrap_or_else(|p| raise(VaultError::Unavailable(p)));
    if !KEY_CHECKED.get() {
        match store::key_check_value(ring.key_version()) {
            None => raise(VaultError::Unavailable(KeyProblem::KeyCheckMissing)),
            Some(stored) if !ring.matches_check_value(&stored) => {
                raise(VaultError::Unavailable(KeyProblem::WrongKey))
            }
            Some(_) => KEY_CHECKED.set(true),
        }
    }
    ring
}

pub fn region() -> Region {
    guc::default_region().unwrap_or_else(|p| raise(VaultError::Unavailable(p)))
}

/// Refuses records larger than `pii_vault.max_record_bytes`.
pub fn check_size(size: usize) {
    let limit = guc::max_record_bytes();
    if size > limit {
        raise(VaultError::RecordTooLarge { size, limit });
    }
}
