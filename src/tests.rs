//! `#[pg_test]`s: the API inside a live backend (run by `cargo pgrx test`).
use pgrx::prelude::*;
