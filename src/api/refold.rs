//! The upgrade to 0.3.1's re-fold: emails and logins indexed as earlier
//! releases folded them (NFC and lowercase) are re-indexed under their
//! identity (NFKC_Casefold; see `normalize::fold`).

use pgrx::prelude::*;

#[pg_schema]
mod pii_vault {
    use pgrx::prelude::*;
    use pgrx::Uuid;

    use crate::api::call::audited;
    use crate::api::guard;
    use crate::api::records::{holder_of, open_record, reindexed};
    use crate::audit::Operation;
    use crate::crypto::envelope;
    use crate::store::{self, Token};

    /// Records read and locked per step (each step one SPI query).
    const STEP: i64 = 1_000;

    /// Re-indexes every record whose email or login folds to another identity
    /// than the one it is indexed under: a look-alike stored before 0.3.1
    /// (`ａｄｍｉｎ`) becomes findable as what it looks like (`admin`), and a
    /// later store of that identity is a duplicate. Run once by the upgrade
    /// script to 0.3.1, in its transaction, as the extension's owner (granted
    /// to no role); returns how many records it re-indexed. Each record is
    /// locked while it is read. A record that cannot be re-indexed keeps its
    /// index entries and is named (by token) in a WARNING:
    ///
    /// - its value is refused now (a login or local part that mixes
    ///   scripts): no lookup reaches it by that value any more;
    /// - another record already holds its new identity: two records for one
    ///   person, found by lookups as the other one; an admin merges them or
    ///   corrects one with `vault_update`;
    /// - it is under a key version this server has not loaded: it is
    ///   re-indexed when `vault_rotate` moves it.
    ///
    /// Needs the vault's key loaded, as every call does.
    #[pg_extern(volatile)]
    #[search_path(pg_catalog, pii_vault, pg_temp)]
    fn refold_lookup_values() -> i64 {
        audited(Operation::Reindex, |_call| {
            let keys = guard::ready()?;
            let (mut refolded, mut kept, mut unopened) = (0_i64, 0_i64, 0_i64);
            let mut after: Token = [0; 16];
            loop {
                let step = store::indexed_records_after(&after, STEP)?;
                for (token, sealed, stored) in &step {
                    let Some(ring) = envelope::key_version(sealed).and_then(|v| keys.version(v)) else {
                        unopened += 1;
                        continue;
                    };
                    let record = open_record(keys, token, sealed)?;
                    let why = match reindexed(ring, ring, &record, stored)? {
                        Ok(moved) if moved.refolded.is_empty() => continue,
                        Ok(moved) => match holder_of(keys, token, &moved.refolded)? {
                            None => {
                                store::rekey_record(token, sealed, &moved.hashes)?;
                                refolded += 1;
                                continue;
                            }
                            Some((kind, holder)) => {
                                format!("its {kind} now folds to the value record {} holds", Uuid::from_bytes(holder))
                            }
                        },
                        Err(kind) => format!("its {kind} does not normalize to what it is indexed under"),
                    };
                    warning!(
                        "pii_vault: record {} keeps its index entries: {why}; correct it with vault_update",
                        Uuid::from_bytes(*token)
                    );
                    kept += 1;
                }
                match step.last() {
                    Some((token, _, _)) if step.len() as i64 == STEP => after = *token,
                    _ => break,
                }
            }
            if unopened > 0 {
                warning!(
                    "pii_vault: {unopened} records are under key versions that are not loaded and were not re-indexed; CALL vault_rotate() re-indexes them once their versions are loaded"
                );
            }
            notice!("pii_vault: {refolded} records re-indexed under the identity of their email or login; {kept} kept as they were");
            Ok(refolded)
        })
    }
}
