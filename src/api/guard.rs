//! Preconditions every vault function checks first: keys are loaded and
//! they are the keys the vault's data is under (checked once per backend).

use std::cell::RefCell;

use pgrx::pg_sys;

use crate::crypto::KeySet;
use crate::error::{KeyProblem, VaultError, VaultResult};
use crate::store::KeyCheck;
use crate::{guc, keys, normalize::Region, store};

thread_local! {
    /// This backend's judgement of the loaded keys, and the key check
    /// generation (`shmem::key_check_generation`) it was made under: made
    /// again once the stored values change.
    static KEY_CHECK: RefCell<Option<(Result<(), KeyProblem>, u64)>> = const { RefCell::new(None) };
}

/// Whether this is the database named by pii_vault.database (the one the
/// audit writer serves).
pub fn in_vault_database() -> bool {
    thread_local! {
        static ANSWER: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
    }
    ANSWER.get().unwrap_or_else(|| {
        let name = std::ffi::CString::new(guc::database()).unwrap_or_default();
        // SAFETY: a catalog lookup inside a transaction; missing_ok = true.
        let answer = unsafe { pg_sys::get_database_oid(name.as_ptr(), true) == pg_sys::MyDatabaseId };
        ANSWER.set(Some(answer));
        answer
    })
}

/// The loaded keys, once they are known to be the vault's
/// (`store::settle_key_checks`). A loaded version the vault has no check
/// value for yet is stored here, in the caller's transaction, when it can
/// write; the judgement is then kept only once a later transaction finds
/// it stored (a rolled-back one is simply stored again).
pub fn ready() -> VaultResult<&'static KeySet> {
    // SAFETY: a plain global, -1 outside parallel workers. The functions
    // are PARALLEL UNSAFE, so this never fires unless someone altered
    // them: a worker's counts would escape the leader's budgets.
    if unsafe { pg_sys::ParallelWorkerNumber } >= 0 {
        return Err(VaultError::InParallelWorker);
    }
    let keys = keys::key_set().map_err(VaultError::Unavailable)?;
    if !in_vault_database() {
        return Err(VaultError::Unavailable(KeyProblem::WrongDatabase));
    }
    let generation = crate::shmem::key_check_generation();
    let cached = KEY_CHECK.with_borrow(|k| k.as_ref().filter(|(_, g)| *g == generation).map(|(v, _)| v.clone()));
    let verdict = match cached {
        Some(verdict) => verdict,
        None => {
            let judged =
                pgrx::Spi::connect_mut(|client| store::settle_key_checks(client, keys, transaction_can_write()))?;
            let verdict = match &judged {
                KeyCheck::Refused(problem) => {
                    // Only a backend can read the stored check values, so the
                    // server log hears of a wrong key here, once per backend
                    // (the ERROR itself may be caught and never logged).
                    pgrx::log!("pii_vault: {problem}. {}", problem.hint());
                    Err(problem.clone())
                }
                KeyCheck::Settled | KeyCheck::Pending => Ok(()),
            };
            match judged {
                KeyCheck::Settled | KeyCheck::Refused(_) => KEY_CHECK.set(Some((verdict.clone(), generation))),
                KeyCheck::Pending => {}
            }
            verdict
        }
    };
    verdict.map(|()| keys).map_err(VaultError::Unavailable)
}

/// Whether this transaction may store key check values: not read-only,
/// not a standby, and READ COMMITTED (the re-check under the lock in
/// `store::settle_key_checks` needs a fresh snapshot; a REPEATABLE READ
/// one could miss another session's values and add a second vault id).
fn transaction_can_write() -> bool {
    // SAFETY: plain reads of backend globals.
    unsafe {
        !pg_sys::XactReadOnly
            && !pg_sys::RecoveryInProgress()
            && pg_sys::XactIsoLevel <= pg_sys::XACT_READ_COMMITTED as i32
    }
}

/// Whether this backend has found the loaded key to be the vault's.
pub fn key_usable() -> bool {
    KEY_CHECK.with_borrow(|verdict| matches!(verdict, Some((Ok(()), _))))
}

pub fn region() -> VaultResult<Region> {
    guc::default_region().map_err(VaultError::Unavailable)
}

/// How many times `pii_vault.max_record_bytes` a record's JSON text may
/// be before the functions that print it (field selection, merge patch)
/// refuse to: the bound on their time and memory.
pub const TEXT_FACTOR: usize = 4;

/// Refuses to print a value whose JSON text could exceed `TEXT_FACTOR`
/// times `pii_vault.max_record_bytes` (see `JsonbDatum::text_len_bound`).
pub fn check_text_size(value: &super::jsonb::JsonbDatum) -> VaultResult<()> {
    let limit = guc::max_record_bytes();
    match value.text_len_bound() > limit.saturating_mul(TEXT_FACTOR) {
        true => Err(VaultError::RecordTooLarge { limit }),
        false => Ok(()),
    }
}

/// Refuses records larger than `pii_vault.max_record_bytes`.
pub fn check_size(size: usize) -> VaultResult<()> {
    let limit = guc::max_record_bytes();
    match size > limit {
        true => Err(VaultError::RecordTooLarge { limit }),
        false => Ok(()),
    }
}
