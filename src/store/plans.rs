//! The vault's SQL statements, prepared once per backend.

use std::cell::Cell;

use pgrx::pg_sys::PgOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};

pub(super) struct Plans {
    pub insert_record: OwnedPreparedStatement,
    pub fetch_envelope_for_update: OwnedPreparedStatement,
    pub update_record: OwnedPreparedStatement,
    pub delete_record: OwnedPreparedStatement,
    pub records_under: OwnedPreparedStatement,
    pub count_under: OwnedPreparedStatement,
    pub count_not_under: OwnedPreparedStatement,
    pub rekey_record: OwnedPreparedStatement,
}

const UUID: PgOid = PgOid::BuiltIn(PgBuiltInOids::UUIDOID);
const BYTEA: PgOid = PgOid::BuiltIn(PgBuiltInOids::BYTEAOID);
const BYTEA_ARRAY: PgOid = PgOid::BuiltIn(PgBuiltInOids::BYTEAARRAYOID);
const INT8: PgOid = PgOid::BuiltIn(PgBuiltInOids::INT8OID);

impl Plans {
    fn prepare(client: &SpiClient<'_>) -> SpiResult<Plans> {
        let write = |sql: &str, args: &[PgOid]| client.prepare_mut(sql, args).map(|p| p.keep());
        let index_args = [UUID, BYTEA, BYTEA, BYTEA, BYTEA];
        Ok(Plans {
            insert_record: write(
                "INSERT INTO pii_vault.records (token, envelope, email_index, phone_index, login_index) \
                 VALUES ($1, $2, $3, $4, $5)",
                &index_args,
            )?,
            fetch_envelope_for_update: write(
                "SELECT envelope FROM pii_vault.records WHERE token = $1 FOR UPDATE",
                &[UUID],
            )?,
            update_record: write(
                "UPDATE pii_vault.records SET envelope = $2, email_index = $3, phone_index = $4, \
                 login_index = $5, updated_at = pg_catalog.now() WHERE token = $1 RETURNING 1",
                &index_args,
            )?,
            delete_record: write("DELETE FROM pii_vault.records WHERE token = $1 RETURNING 1", &[UUID])?,
            // The wrapping key's version is bytes 2..6 of every envelope
            // (crypto::envelope); a slice of an out-of-line value is
            // fetched without the rest of it.
            records_under: write(
                "SELECT token, envelope, email_index, phone_index, login_index FROM pii_vault.records \
                 WHERE token > $1 AND pg_catalog.substring(envelope, 3, 4) = ANY ($2) \
                 ORDER BY token LIMIT $3 FOR UPDATE SKIP LOCKED",
                &[UUID, BYTEA_ARRAY, INT8],
            )?,
            count_under: write(
                "SELECT pg_catalog.count(*) FROM pii_vault.records \
                 WHERE pg_catalog.substring(envelope, 3, 4) = ANY ($1)",
                &[BYTEA_ARRAY],
            )?,
            count_not_under: write(
                "SELECT pg_catalog.count(*) FROM pii_vault.records \
                 WHERE pg_catalog.substring(envelope, 3, 4) <> $1",
                &[BYTEA],
            )?,
            rekey_record: write(
                "UPDATE pii_vault.records SET envelope = $2, email_index = $3, phone_index = $4, login_index = $5 \
                 WHERE token = $1",
                &index_args,
            )?,
        })
    }
}

thread_local! {
    // Leaked on purpose: kept plans live as long as the backend, and a
    // destructor running SPI_freeplan during process exit would be unsafe.
    static PLANS: Cell<Option<&'static Plans>> = const { Cell::new(None) };
}

/// Runs `f` inside an SPI connection with this backend's prepared plans.
/// An SPI failure here is a bug or a broken installation, not bad input.
pub(super) fn with_plans<R>(f: impl FnOnce(&mut SpiClient<'_>, &Plans) -> SpiResult<R>) -> R {
    Spi::connect_mut(|client| {
        let plans = match PLANS.get() {
            Some(plans) => plans,
            None => {
                let plans: &'static Plans = Box::leak(Box::new(Plans::prepare(client)?));
                PLANS.set(Some(plans));
                plans
            }
        };
        f(client, plans)
    })
    .unwrap_or_else(|e| error!("pii_vault: internal storage error: {e}"))
}
