//! Audit rows for vault calls: who (session role, acting role, application),
//! what (operation, token, field names), and the outcome. Never values.
//!
//! First cut: the row is written in the caller's transaction. Making reads
//! survive ROLLBACK (a separate writer) changes only this module.

use std::ffi::CStr;

use pgrx::pg_sys;

use crate::store::{self, AuditRow, Token};

#[derive(Clone, Copy)]
pub enum Outcome {
    Ok,
    NotFound,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
        }
    }
}

/// The role in effect at the caller's top level (SET ROLE), which SECURITY
/// DEFINER hides from `current_user` inside the vault's functions.
fn acting_role() -> String {
    // SAFETY: called inside a transaction; GetUserNameFromId returns a palloc'd
    // C string or raises (noerr = true makes it return NULL for a dropped role).
    unsafe {
        let name = pg_sys::GetUserNameFromId(pg_sys::GetOuterUserId(), true);
        if name.is_null() {
            "?".to_string()
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}

pub fn record(operation: &str, token: Option<&Token>, fields: Option<Vec<String>>, outcome: Outcome) {
    store::insert_audit(AuditRow {
        acting_role: &acting_role(),
        operation,
        token,
        fields,
        outcome: outcome.as_str(),
    });
}
