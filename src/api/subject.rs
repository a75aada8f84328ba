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
use crate::error::{VaultError, VaultResult};
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
        let export = store::subject_export(&token, state, &record, apps, documents)?;
        let mut export: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&export).map_err(|_| VaultError::MalformedJson)?;
        let mut field_tokens = Vec::new();
        for (field_token, stored) in store::field_tokens_of(&token)? {
            let value = open_value(keys, &field_token, &stored)?;
            let expires_at = stored.expires_at.map(store::timestamp_text).transpose()?;
            field_tokens.push(serde_json::json!({
                "token": field_token, "kind": stored.kind, "value": value.as_str(), "expires_at": expires_at,
            }));
        }
        export.insert("field_tokens".into(), serde_json::Value::Array(field_tokens));
        let export = serde_json::to_string(&export).map_err(|_| VaultError::MalformedJson)?;
        JsonbDatum::from_text(&export).map(Some)
    })
}
