//! Functions the install script calls; not granted to any role.

use pgrx::prelude::*;

#[pg_schema]
mod pii_vault {
    use pgrx::prelude::*;

    use crate::api::errors::raise;
    use crate::error::{KeyProblem, VaultError};
    use crate::{keys, store};

    /// Stores the check value of every loaded key version: from now on, a
    /// server started with other keys refuses to touch this vault. (A
    /// restore runs this too, and then loads the dump's values beside
    /// these: under another key the two cannot both match, and every call
    /// is refused.)
    #[pg_extern(volatile)]
    #[search_path(pg_catalog, pii_vault, pg_temp)]
    fn install_key_check() {
        let keys = keys::key_set().unwrap_or_else(|p| raise(VaultError::Unavailable(p)));
        if !crate::api::guard::in_vault_database() {
            raise(VaultError::Unavailable(KeyProblem::WrongDatabase));
        }
        for ring in keys.rings() {
            store::insert_key_check(ring.key_version(), ring.check_value());
        }
    }
}
