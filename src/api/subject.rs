//! The right of access: everything the vault holds about one subject.

use pgrx::prelude::*;
use pgrx::Uuid;

use super::call::audited;
use super::documents::app_data_binding;
use super::field_tokens::open_value;
use super::guard;
use super::jsonb::JsonbDatum;
use super::records::open_record;
use crate::audit::{self, Operation, Outcome};
use crate::error::VaultResult;
use crate::store;

/// Everything the vault holds about the subject of `token`, as one JSON
/// object: the record (whatever its state: live, deleted within its
/// grace, expired), its dates, every application's data, its consents and
/// their history, its live shares (fields and expiry, never their ids),
/// how many live sessions it has, its field tokens with their values, and
/// every audit event that names it
/// (who read or changed it, when, why). NULL when there is no such record
/// (erased or purged). Admin only; counts as one read.
#[pg_extern(strict, volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_subject_export(token: Uuid) -> Option<JsonbDatum> {
    audited(Operation::SubjectExport, |call| {
        let token = *token.as_bytes();
        call.token = Some(token);
        let keys = guard::ready()?;
        call.check_purpose()?;
        call.count_read()?;
        let Some((state, sealed)) = store::subject_record(&token)? else {
            call.outcome = Outcome::NotFound;
            return Ok(None);
        };
        let record = open_record(keys, &token, &sealed)?.to_text()?;
        let (apps, documents): (Vec<String>, Vec<String>) = store::app_data_of(&token)?
            .into_iter()
            .map(|(app, sealed)| Ok((open_record(keys, &app_data_binding(&token, &app), &sealed)?.to_text()?, app)))
            .collect::<VaultResult<Vec<_>>>()?
            .into_iter()
            .map(|(document, app)| (app, document))
            .unzip();
        // The audit up to this call (the writer is a moment behind).
        audit::wait_until_written(std::time::Duration::from_secs(2));
        let field_tokens = store::field_tokens_of(&token)?
            .into_iter()
            .map(|(field_token, stored)| {
                let value = open_value(keys, &field_token, &stored)?.to_string();
                Ok((field_token, value))
            })
            .collect::<VaultResult<Vec<_>>>()?;
        let export = store::subject_export(&token, state, &record, apps, documents, field_tokens)?;
        JsonbDatum::from_text(&export).map(Some)
    })
}
