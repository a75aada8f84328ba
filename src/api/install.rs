//! Functions the install script calls; not granted to any role.

use pgrx::prelude::*;

#[pg_schema]
mod pii_vault {
    use pgrx::prelude::*;

    use crate::api::errors::raise;
    use crate::error::{KeyProblem, VaultError};
    use crate::{keys, store};

    /// Stores the loaded key's check value: from now on, a server started
    /// with another key refuses to touch this vault.
    #[pg_extern(volatile)]
    #[search_path(pg_catalog, pii_vault, pg_temp)]
    fn install_key_check() {
        let ring = keys::key_ring().unwrap_or_else(|p| raise(VaultError::Unavailable(p)));
        if !crate::api::guard::in_vault_database() {
            raise(VaultError::Unavailable(KeyProblem::WrongDatabase));
        }
        store::insert_key_check(ring.key_version(), ring.check_value());
    }
}
