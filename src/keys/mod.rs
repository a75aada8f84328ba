//! The master key: where it comes from, and the one place it lives.
//!
//! - `source`: reading the key from `pii_vault.keyfile` or
//!   `pii_vault.key_command` (plain Rust, unit-tested without PostgreSQL).
//! - `state`: loading it once in the postmaster at preload time; backends
//!   inherit the derived `KeyRing` through fork.
//!
//! The master key's bytes are zeroized as soon as the sub-keys are derived;
//! no GUC, log line, error or file ever holds them.

pub use pii_vault_core::key_source as source;
pub mod state;

pub use state::{init_at_preload, key_set};
