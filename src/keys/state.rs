//! The process-wide key state, set once in the postmaster.

use std::sync::OnceLock;

use crate::crypto::KeySet;
use crate::error::KeyProblem;
use crate::guc;
use crate::keys::source::{load_master_keys, server_uid};

static KEY_STATE: OnceLock<Result<KeySet, KeyProblem>> = OnceLock::new();

/// Called from `_PG_init`. In the postmaster (preload) the key is read,
/// sub-keys derived, the master key zeroized, and a failure logged once.
/// Loaded later into a single backend, the library never reads a key: the
/// vault then refuses every call with `NotPreloaded`.
pub fn init_at_preload(preloading: bool) {
    let state = if preloading {
        let keyfile = guc::keyfile();
        let key_command = guc::key_command();
        let loaded = load_master_keys(keyfile.as_deref(), key_command.as_deref(), server_uid())
            .and_then(|masters| KeySet::new(masters.iter().map(|(v, key)| (*v, &**key)), guc::active_key_version()));
        if let Err(problem) = &loaded {
            pgrx::log!("pii_vault: {problem}; every vault function fails until this is fixed. {}", problem.hint());
        }
        loaded
    } else {
        Err(KeyProblem::NotPreloaded)
    };
    let _ = KEY_STATE.set(state);
}

/// The derived keys of every loaded version, or why there are none.
pub fn key_set() -> Result<&'static KeySet, KeyProblem> {
    match KEY_STATE.get() {
        Some(Ok(ring)) => Ok(ring),
        Some(Err(problem)) => Err(problem.clone()),
        None => Err(KeyProblem::NotPreloaded),
    }
}
