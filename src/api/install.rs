//! Functions the install script calls; not granted to any role.

use pgrx::prelude::*;

#[pg_schema]
mod pii_vault {
    use pgrx::prelude::*;

    use crate::api::errors::raise;
    use crate::error::{KeyProblem, VaultError};
    use crate::keys;

    /// Refuses CREATE EXTENSION without a loaded key or outside the vault's
    /// database. Stores nothing: the key check values are stored by the
    /// first call (`store::settle_key_checks`), so a restore, which runs
    /// CREATE EXTENSION before loading the dump's values, finds only the
    /// dump's. (Named for what 0.1.0's did, which its install script
    /// calls.)
    #[pg_extern(volatile)]
    #[search_path(pg_catalog, pii_vault, pg_temp)]
    fn install_key_check() {
        keys::key_set().unwrap_or_else(|p| raise(VaultError::Unavailable(p)));
        if !crate::api::guard::in_vault_database() {
            raise(VaultError::Unavailable(KeyProblem::WrongDatabase));
        }
    }
}
