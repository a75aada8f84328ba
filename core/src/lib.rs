//! pii_vault's core: everything the extension does that needs no
//! PostgreSQL, testable (and checked under Miri) on its own. Nothing here
//! depends on pgrx, directly or through another crate (`cargo tree -p
//! pii_vault_core` shows it; scripts/test.sh checks it).
//!
//! - `crypto`: the envelope (AES-256-GCM under per-record data keys),
//!   the key ring and its derived keys, blind indexes, the audit chain's
//!   batch format and its token filters, random tokens;
//! - `normalize`: lookup values to their one canonical form;
//! - `record`: JSON merge patches and projections of a record;
//! - `json_patch`: RFC 6902 JSON Patch of a record;
//! - `key_source`: reading the master key from a keyfile or a command;
//! - `audit_event`: one audit event's fixed layout and its byte encoding;
//! - `audit_spill`: the file that keeps events the writer could not write;
//! - `budget`: per-role budgets as GCRA cells in shared memory;
//! - `field_token`: field tokens' kinds, card numbers and their format-keeping tokens;
//! - `schema`: the storage layout of each release, and the shape checks
//!   of what the extension reads without SPI;
//! - `shard`: which shard a token or an identifier lives on;
//! - `error`: `VaultError`, every way a call fails.
//!
//! `unsafe` is denied but in four places, each allowed where it stands
//! with its reason: the AEAD key kept in place (`crypto::aead`), the fork
//! handler that keeps the random generator's stream from repeating in a
//! child (`crypto`), the effective user id for the keyfile's owner check
//! (`key_source`), and the budgets' cells laid out in shared memory that
//! the extension allocates (`budget`).

#![deny(unsafe_code)]

pub mod audit_event;
pub mod audit_spill;
pub mod budget;
pub mod crypto;
pub mod error;
pub mod field_token;
pub mod json_patch;
pub mod key_source;
pub mod normalize;
pub mod record;
pub mod schema;
pub mod shard;
