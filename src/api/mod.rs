//! The SQL surface: `#[pg_extern]` functions, kept thin. Each parses its
//! arguments, calls the core and the store, writes the audit row, and turns
//! a `VaultError` into an `ereport` with a stable SQLSTATE (`errors`).

mod audit_functions;
mod call;
mod consents;
mod documents;
mod errors;
mod field_tokens;
mod forward;
mod guard;
pub(crate) mod health;
mod install;
pub(crate) mod jsonb;
mod lookup;
mod many;
mod records;
mod refold;
mod rotation;
mod shards;
mod shares;
mod stats;
pub(crate) mod storage_guards;
mod subject;

pub(crate) use field_tokens::audit_id as field_token_audit_id;
