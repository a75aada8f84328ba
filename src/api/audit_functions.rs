//! Reading and verifying the audit; bulk export behind its switch.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use pgrx::Uuid;

use super::call::audited;
use super::guard;
use super::jsonb::JsonbDatum;
use super::records::open_record;
use crate::audit::{queue, Operation};
use crate::crypto::audit_chain::{self, AuditRecord};
use crate::error::VaultError;
use crate::{guc, store};

/// Checks the MAC chain of the whole audit: an edited, deleted, inserted or
/// reordered row makes `ok` false and names the first bad row.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_audit_verify() -> TableIterator<'static, (name!(ok, bool), name!(rows_checked, i64), name!(first_bad_id, Option<i64>))> {
    let verdict = audited(Operation::AuditVerify, |_call| {
        let ring = guard::ready();
        // The writer's last committed row (when it committed any since the
        // server started), read before the rows so the snapshot holds it:
        // catches rows deleted from the end of the chain.
        let state = queue::state();
        let table = Spi::get_one::<pg_sys::Oid>("SELECT 'pii_vault.audit_log'::regclass::oid").ok().flatten();
        let same_table = table.is_some_and(|t| u32::from(t) == state.chain_table);
        let head = (state.chain_id > 0 && same_table).then_some((state.chain_id, state.chain_mac));
        let rows = read_audit_chain().unwrap_or_else(|e| error!("pii_vault: could not read the audit: {e}"));
        audit_chain::verify(ring, rows.iter().map(|(r, m)| (r, m.as_slice())), head)
    });
    TableIterator::once((verdict.ok, verdict.rows_checked, verdict.first_bad_id))
}

fn read_audit_chain() -> SpiResult<Vec<(AuditRecord, Vec<u8>)>> {
    Spi::connect(|client| {
        let table = client.select(
            "SELECT id, at, session_role::text, acting_role::text, coalesce(application_name, ''), \
             operation, token, fields, outcome, mac FROM pii_vault.audit_log ORDER BY id",
            None,
            &[],
        )?;
        let mut rows = Vec::with_capacity(table.len());
        for row in table {
            let at: Option<TimestampWithTimeZone> = row.get(2)?;
            let record = AuditRecord {
                id: row.get(1)?.unwrap_or(0),
                at: at.map(pg_sys::TimestampTz::from).unwrap_or(0),
                session_role: row.get(3)?.unwrap_or_default(),
                acting_role: row.get(4)?.unwrap_or_default(),
                application_name: row.get(5)?.unwrap_or_default(),
                operation: row.get(6)?.unwrap_or_default(),
                token: row.get::<Uuid>(7)?.map(|u| *u.as_bytes()),
                fields: row.get::<Vec<Option<String>>>(8)?.map(|f| f.into_iter().map(Option::unwrap_or_default).collect()),
                outcome: row.get(9)?.unwrap_or_default(),
            };
            rows.push((record, row.get::<Vec<u8>>(10)?.unwrap_or_default()));
        }
        Ok(rows)
    })
}

#[pg_schema]
mod pii_vault {
    use pgrx::prelude::*;
    use pgrx::Uuid;

    use crate::api::call::audited;
    use crate::api::guard;
    use crate::audit::Operation;

    /// Waits until every audit event queued so far is committed by the
    /// writer; false after `timeout_ms`. For tests and maintenance scripts.
    #[pg_extern(volatile)]
    #[search_path(pg_catalog, pii_vault, pg_temp)]
    fn audit_wait(timeout_ms: default!(i32, 10000)) -> bool {
        crate::audit::wait_until_written(std::time::Duration::from_millis(timeout_ms.max(0) as u64))
    }

    /// Audits a read of the audit (called by the SQL function vault_audit).
    #[pg_extern(volatile)]
    #[search_path(pg_catalog, pii_vault, pg_temp)]
    fn audit_read_note(token: Option<Uuid>) {
        audited(Operation::AuditRead, |call| {
            call.token = token.map(|t| *t.as_bytes());
            guard::ready();
        })
    }
}

/// Every record, for a member of pii_vault_admin, when a superuser has set
/// `pii_vault.allow_bulk_export = on`. Otherwise 42501, audited as denied.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_export_all() -> TableIterator<'static, (name!(token, Uuid), name!(record, JsonbDatum))> {
    let rows = audited(Operation::Export, |call| {
        let ring = guard::ready();
        if !guc::allow_bulk_export() {
            call.deny(VaultError::BulkExportDisabled);
        }
        if !caller_is_admin() {
            call.deny(VaultError::NotAdmin);
        }
        let rows: Vec<(Uuid, JsonbDatum)> = store::all_envelopes()
            .into_iter()
            .map(|(token, sealed)| (Uuid::from_bytes(token), open_record(ring, &token, &sealed)))
            .collect();
        rows
    });
    TableIterator::new(rows)
}

fn caller_is_admin() -> bool {
    // SAFETY: catalog lookups inside a transaction.
    unsafe {
        let admin = pg_sys::get_role_oid(c"pii_vault_admin".as_ptr(), true);
        admin != pg_sys::InvalidOid && pg_sys::is_member_of_role(pg_sys::GetOuterUserId(), admin)
    }
}
